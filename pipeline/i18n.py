"""The words people read in the terminal: gettext catalogues, Simplified Chinese by default.

Source strings are English (the msgids); `pipeline/locale/zh_CN/LC_MESSAGES/happyhome.mo`
translates them. `HAPPYHOME_LANG=en` or the global `--lang en` gives the English text.
`LANG`/`LC_ALL` are deliberately ignored: an office server's locale says nothing about its staff.

Click's own words (Usage:, Options:, "Missing option", "Try 'happyhome -h' for help.") are
looked up in the same catalogue: `set_language` points click's gettext at ours.

Refresh the catalogue after changing any string (needs Babel, a test extra):

    python -m pipeline.i18n update

It extracts `_()`, `N_()`, `ngettext()` and the docstrings of click commands from pipeline/,
writes pipeline/locale/happyhome.pot (with each message's file and line), merges it into the
zh_CN .po (keeping translations, dropping stale entries; sorted by msgid, without line numbers, so
branches merge cleanly) and compiles the .mo. New entries have an empty msgstr until translated;
`python -m pipeline.i18n check` lists them (tests/test_i18n.py fails while any is left).
"""

from __future__ import annotations

import gettext
import os
import sys
from pathlib import Path

DOMAIN = "happyhome"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"zh": "zh_CN", "en": "en"}
DEFAULT = "zh"
CLICK_MODULES = ("core", "decorators", "exceptions", "formatting", "parser", "types", "termui", "utils")

_translation: gettext.NullTranslations = gettext.NullTranslations()
_current = "en"


def normalise(lang: str | None) -> str:
    """'zh', 'zh_CN', 'zh-cn', 'en_US.UTF-8' -> 'zh' or 'en'; anything else -> the default."""
    key = (lang or "").strip().lower().replace("-", "_").split(".")[0].split("_")[0]
    return key if key in LANGUAGES else DEFAULT


def set_language(lang: str | None = None) -> str:
    """Choose the terminal language: the argument, else HAPPYHOME_LANG, else Chinese."""
    global _translation, _current
    _current = normalise(lang or os.environ.get("HAPPYHOME_LANG"))
    if _current == "en":
        _translation = gettext.NullTranslations()
    else:
        _translation = gettext.translation(DOMAIN, LOCALE_DIR, languages=[LANGUAGES[_current]], fallback=True)
    _route_click()
    return _current


def language() -> str:
    return _current


def _(message: str) -> str:
    """Translate a terminal message (the English text is the key)."""
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _translation.ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated later, where it is shown (e.g. --help)."""
    return message


def _route_click() -> None:
    """Click wraps its words in stdlib gettext (the global domain); send them to our catalogue."""
    for name in CLICK_MODULES:
        module = sys.modules.get(f"click.{name}")
        if module is None:
            try:
                module = __import__(f"click.{name}", fromlist=["_"])
            except ImportError:
                continue
        if hasattr(module, "_"):
            module._ = _
        if hasattr(module, "ngettext"):
            module.ngettext = ngettext


# Click's words an officer meets (click 8.1-8.5 msgids; tests/test_i18n.py checks them against the
# installed click). Listed here so extraction puts them in our catalogue.
CLICK_MESSAGES = (
    N_("Usage:"), N_("Options"), N_("Commands"),
    N_("Show this message and exit."), N_("Show the version and exit."),
    N_("Error: {message}"), N_("Try '{command} {option}' for help."),
    N_("Missing argument"), N_("Missing option"), N_("Missing parameter"),
    N_("No such option {name!r}."), N_("No such command {name!r}."),
    N_("Invalid value: {message}"), N_("Invalid value for {param_hint}: {message}"),
    N_("Option {name!r} does not take a value."),
    N_("{value!r} is not a valid {number_type}."),
    N_("{value!r} is not a valid boolean. Recognized values: {states}"),
    N_("{name} {filename!r} does not exist."), N_("{name} {filename!r} is a file."),
    N_("{name} {filename!r} is a directory."),
    N_("file"), N_("directory"), N_("path"),
    N_("default: {default}"), N_("required"), N_("env var: {var}"), N_("Aborted!"),
    ngettext("Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})", 1),
    ngettext("Option {name!r} requires an argument.", "Option {name!r} requires {nargs} arguments.", 1),
    ngettext("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)", 1),
    ngettext("{value!r} is not {choice}.", "{value!r} is not one of {choices}.", 1),
)


# -- catalogue maintenance (Babel, a test extra; the runtime needs only stdlib gettext) ---------
PACKAGE = Path(__file__).parent
POT = LOCALE_DIR / f"{DOMAIN}.pot"
PO = LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / f"{DOMAIN}.po"
MO = PO.with_suffix(".mo")
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}


def _extract_python(fileobj, keywords, comment_tags, options):
    """Babel's Python extractor plus the docstrings of click commands (their --help text)."""
    import ast

    from babel.messages.extract import extract_python

    source = fileobj.read()
    fileobj.seek(0)
    yield from extract_python(fileobj, keywords, comment_tags, options)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ("command", "group")
                for d in node.decorator_list):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield node.lineno, None, doc, ["The --help text of a command; keep 示例： and the example command."]


def extract():
    """The template catalogue: every marked string in pipeline/."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir

    from pipeline import __version__

    template = Catalog(project="happyhome", version=__version__, charset="utf-8", fuzzy=False,
                       language_team="happyhome")
    for filename, lineno, message, comments, context in extract_from_dir(
            PACKAGE, method_map=[("**.py", _extract_python)], keywords=KEYWORDS,
            comment_tags=("TRANSLATORS:",), strip_comment_tags=True):
        template.add(message, None, [(f"pipeline/{filename}", lineno)], auto_comments=comments, context=context)
    return template


def read_po(path: Path = PO):
    from babel.messages.pofile import read_po as _read

    with open(path, "rb") as fh:
        return _read(fh, locale="zh_CN", domain=DOMAIN)


def untranslated(catalog) -> list[str]:
    """Entries with no (or a fuzzy) translation."""
    missing = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, (tuple, list)) else (message.string,)
        if message.fuzzy or not all(strings):
            missing.append(message.id if isinstance(message.id, str) else message.id[0])
    return missing


def update() -> None:
    """Extract -> happyhome.pot; merge into the zh_CN .po (translations kept, stale dropped); compile."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import write_po

    from babel.messages.pofile import read_po as _read

    template = extract()
    if POT.exists():  # the same messages: keep the date, so a refresh that changes nothing changes no file
        with open(POT, "rb") as fh:
            previous = _read(fh)
        if [(m.id, m.locations) for m in previous] == [(m.id, m.locations) for m in template]:
            template.creation_date = previous.creation_date
    PO.parent.mkdir(parents=True, exist_ok=True)
    with open(POT, "wb") as fh:
        write_po(fh, template, width=100, omit_header=False, sort_output=False)
    if PO.exists():
        catalog = read_po()
    else:
        from babel.messages.catalog import Catalog

        catalog = Catalog(locale="zh_CN", domain=DOMAIN, project="happyhome", fuzzy=False)
    catalog.update(template, no_fuzzy_matching=True, update_header_comment=False)
    catalog.obsolete.clear()
    for message in catalog:  # a new plural entry comes in fuzzy (nplurals differs); empty is flag enough
        strings = message.string if isinstance(message.string, (tuple, list)) else (message.string,)
        if message.id and not any(strings):
            message.flags.discard("fuzzy")
            if isinstance(message.id, (tuple, list)):
                message.string = ("",) * catalog.num_plurals
    with open(PO, "wb") as fh:  # sorted, no line numbers: branches that add messages merge cleanly
        write_po(fh, catalog, width=100, ignore_obsolete=True, no_location=True, sort_output=True)
    with open(MO, "wb") as fh:
        write_mo(fh, catalog, use_fuzzy=False)
    left = untranslated(catalog)
    print(f"{len(catalog)} entries in {PO}; {len(left)} without a translation.")
    for msgid in left:
        print(f"  untranslated: {msgid!r}")


def check() -> int:
    left = untranslated(read_po())
    for msgid in left:
        print(f"untranslated: {msgid!r}")
    return 1 if left else 0


if __name__ == "__main__":  # python -m pipeline.i18n update|check
    try:
        import babel  # noqa: F401
    except ImportError:
        sys.exit("python -m pipeline.i18n needs Babel: pip install -e '.[test]'")
    command = sys.argv[1] if len(sys.argv) > 1 else "update"
    if command == "update":
        update()
    elif command == "check":
        sys.exit(check())
    else:
        sys.exit("usage: python -m pipeline.i18n update|check")
else:
    set_language()
