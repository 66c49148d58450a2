"""The words people read in the terminal: gettext catalogues, Simplified Chinese by default.

Source strings are English (the msgids); `pipeline/locale/zh_CN/LC_MESSAGES/happyhome.mo`
translates them. `HAPPYHOME_LANG=en` or the global `--lang en` gives the English text.
`LANG`/`LC_ALL` are deliberately ignored: an office server's locale says nothing about its staff.
"""

from __future__ import annotations

import gettext
import os
from pathlib import Path

DOMAIN = "happyhome"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"zh": "zh_CN", "en": "en"}
DEFAULT = "zh"

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


set_language()
