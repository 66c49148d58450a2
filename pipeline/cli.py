"""The `happyhome` command: each command parses options, calls one library function, prints.

Exit codes: 0 done (rejected returns included); 1 an error (send: a message failed); 2 a usage or
config error (also a mail login refused);
3 an unusable input; 4 an output that cannot be written; 5 the workspace is busy;
6 `collect --strict` saw a rejection.

Every word for people goes through `_()` (pipeline/i18n.py): Simplified Chinese unless
`--lang en` or HAPPYHOME_LANG=en. Help texts are English in the decorators (marked `N_()`, or
docstrings) and translated when --help is shown, so the language chosen at run time applies.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

import click
import click.formatting
from rich.cells import cell_len
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from pipeline import __version__
from pipeline.config import Workspace, check_period
from pipeline.errors import HappyhomeError, UsageError
from pipeline.i18n import N_, _, set_language
from pipeline.rounds import check_stage, cli_args, round_key
from pipeline.systems import BUILTIN, load_system

console = Console(highlight=False, soft_wrap=True)  # paths stay whole, copy-pasteable
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """Print a line as it is: file names and sheet names may hold [brackets], which are not markup."""
    console.print(text, markup=False)


def utf8_console(streams=None, system: str = os.name) -> None:
    """On Windows, write the terminal's words as UTF-8 (unencodable ones as ?), whatever the code
    page. A console shows them either way (Python writes to it in UTF-16), but output redirected
    to a file or a pipe would be in the ANSI code page, which on an English Windows (cp1252) has
    no Chinese at all and even in cp936 lacks some of the tables' symbols: a crash, not a report."""
    if system != "nt":
        return
    for stream in streams or (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
        if hasattr(stream, "reconfigure") and encoding != "utf8":
            stream.reconfigure(encoding="utf-8", errors="replace")


def shell_quote(text: str, system: str = os.name) -> str:
    """A path or argument as it is typed back into this system's shell. POSIX: shlex.quote.
    Windows (cmd and PowerShell alike): in double quotes when it has a space or a character
    either shell treats specially; a path cannot hold a double quote itself."""
    if system != "nt":
        return shlex.quote(text)
    if text and not any(c in text for c in " \t&()[]{}^=;!'+,`~$%@#|<>"):
        return text
    return '"' + (text + "\\" if text.endswith("\\") else text) + '"'  # C:\ -> "C:\\": no escaped quote


def pad(text: str, width: int) -> str:
    """Pad to `width` terminal cells: a Chinese character takes two, so str.ljust misaligns."""
    return text + " " * max(width - cell_len(text), 0)


# Chinese has no spaces and each character takes two cells, while click wraps help text by
# character count at spaces: its lines would run past the terminal. Wrap by display width instead,
# breaking between Chinese characters, never inside a word, option or path (they stay copyable).
_WIDE = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"
# a space, one wide character (with any opening brackets before it), a run of anything else
_TOKENS = re.compile(rf"\s+|[\[(（《「『［“]*[{_WIDE}]|[^\s{_WIDE}]+|.")
_NO_LINE_START = set("，。；：、）》」』！？］”,.;:)]")


def _fill(text: str, width: int, initial_indent: str = "", subsequent_indent: str = "") -> str:
    lines: list[list[str]] = [[initial_indent]]
    gap, joined = "", False
    for token in _TOKENS.findall(text):
        line = lines[-1]
        if token.isspace():
            gap = (" " if "\n" in token else token) if len(line) > 1 else ""
            joined = "\n" in token  # a source line break between two Chinese characters is not a space
            continue
        if gap and joined and cell_len(line[-1][-1]) == 2 and cell_len(token[0]) == 2:
            gap = ""
        if len(line) > 1 and cell_len("".join(line) + gap + token) > width:
            moved = [token]
            if token[0] in _NO_LINE_START and len(line) > 2 and not line[-1].isspace():
                moved.insert(0, line.pop())  # the character before it goes down with it
            while line and line[-1].isspace():
                line.pop()
            lines.append([subsequent_indent, *moved])
        else:
            line += [gap, token] if gap else [token]
        gap = ""
    return "\n".join("".join(line).rstrip() for line in lines)


def wrap_text(text: str, width: int = 78, initial_indent: str = "", subsequent_indent: str = "",
              preserve_paragraphs: bool = False) -> str:
    """click.formatting.wrap_text measured in terminal cells (same paragraphs and \\b blocks)."""
    text = text.expandtabs()
    if not preserve_paragraphs:
        return _fill(text, width, initial_indent, subsequent_indent)
    paragraphs: list[tuple[int, bool, list[str]]] = []
    block: list[str] = []
    indent = 0

    def flush() -> None:
        if block:
            raw = block[0].strip() == "\b"
            paragraphs.append((indent, raw, block[1:] if raw else list(block)))
            block.clear()

    for line in text.splitlines():
        if not line:
            flush()
        else:
            if not block:
                indent = len(line) - len(line.lstrip())
            block.append(line.lstrip() if not block or block[0].strip() != "\b" else line)
    flush()
    out = []
    for indent, raw, lines in paragraphs:
        pad_ = " " * indent
        if raw:
            out.append("\n".join(f"{initial_indent}{pad_}{line}" for line in lines))
        else:
            out.append(_fill("\n".join(lines), width, initial_indent + pad_, subsequent_indent + pad_))
    return "\n\n".join(out)


# HelpFormatter (write_text, write_dl, write_usage) looks both up in its module: measure in cells.
click.formatting.wrap_text = wrap_text
click.formatting.term_len = lambda text: cell_len(click.unstyle(text))


class TranslatedHelp:
    """Translates help texts when they are shown: the decorators ran at import, before --lang."""

    def get_short_help_str(self, limit: int = 45) -> str:
        saved = self.help, self.short_help
        self.help, self.short_help = (_(inspect.cleandoc(t)) if t else t for t in saved)
        try:
            return super().get_short_help_str(limit)
        finally:
            self.help, self.short_help = saved

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        saved = self.help
        self.help = _(inspect.cleandoc(saved)) if saved else saved
        try:
            super().format_help_text(ctx, formatter)
        finally:
            self.help = saved

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        params = [p for p in self.get_params(ctx) if getattr(p, "help", None)]
        saved = [p.help for p in params]
        help_option = self.get_help_option(ctx)
        for p in params:  # click's help option was worded in the language of its first use
            p.help = _("Show this message and exit.") if p is help_option else _(p.help)
        try:
            super().format_options(ctx, formatter)
        finally:
            for p, text in zip(params, saved):
                p.help = text


class HappyhomeCommand(TranslatedHelp, click.Command):
    pass


class HappyhomeGroup(TranslatedHelp, click.Group):
    """Turns library errors into one-line messages and exit codes; tracebacks only with --debug."""

    command_class = HappyhomeCommand
    group_class = type  # subgroups are HappyhomeGroup too

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HappyhomeError as err:
            if ctx.meta.get("debug"):
                raise
            head, _placeholder, tail = _("Error: {message}").partition("{message}")  # click's words for it
            err_console.print(Text.assemble((head, "bold red"), str(err), tail))
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print(_("Interrupted: finished files are kept; run the command again to continue."),
                              markup=False)
            sys.exit(130)


class PathType(click.Path):
    """click.Path whose kind ("file", "directory") is worded when a value is checked, not at import."""

    def convert(self, value, param, ctx):
        kind = "path" if self.file_okay == self.dir_okay else "file" if self.file_okay else "directory"
        self.name = _(kind)  # the msgids are click's own (pipeline.i18n.CLICK_MESSAGES)
        return super().convert(value, param, ctx)


def _choose_language(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # Without --lang, set_language reads HAPPYHOME_LANG itself, leniently ("zh_CN", "en_US.UTF-8").
    set_language(value)


@click.group(cls=HappyhomeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--lang", type=click.Choice(["zh", "en"]), is_eager=True, expose_value=False, callback=_choose_language,
              help=N_("Language of the terminal: zh (Simplified Chinese, the default) or en. "
                      "Also HAPPYHOME_LANG; LANG and LC_ALL are not consulted."))
@click.version_option(__version__, prog_name="happyhome", message="%(prog)s %(version)s",
                      help=N_("Show the version and exit."))
@click.option("-w", "--workspace", "workspace", type=PathType(file_okay=False, path_type=Path),
              default=".", show_default=True, envvar="HAPPYHOME_WORKSPACE", metavar="DIR",
              help=N_("The workspace folder (holds happyhome.toml, input/, output/)."))
@click.option("--debug", is_flag=True, help=N_("Show tracebacks."))
@click.pass_context
def main(ctx: click.Context, workspace: Path, debug: bool) -> None:
    """happyhome — scoring rounds of the 社区高质量发展幸福家园行动.

    Send forms to assessors, collect and validate their returns, rank and grade the
    subjects, and roll the monthly supervision rounds up into trends.
    """
    ctx.meta["debug"] = debug
    ctx.obj = workspace


def run() -> None:
    """The `happyhome` command (console script and `python -m pipeline`)."""
    utf8_console()
    main()


def open_workspace(ctx: click.Context) -> Workspace:
    return Workspace.open(ctx.obj)


def system_option(f):
    return click.option("--system", "system_ref", required=True, metavar="ID|PATH",
                        help=N_("Indicator system: the id of a built-in one (see `happyhome systems`), "
                                "or the path of a YAML file in the same schema."))(f)


def period_option(f):
    return click.option("--period", required=True, callback=lambda c, p, v: _period(v), metavar="YYYY-MM",
                        help=N_("The round, a month such as 2026-11."))(f)


def stage_option(f):
    return click.option("--stage", default="督导", show_default=True, callback=lambda c, p, v: _stage(v),
                        metavar="遴选|督导|评估|验收",
                        help=N_("The programme stage of the round (selection|supervision|evaluation|acceptance "
                                "also accepted). Rounds of other stages than 督导 keep their files in "
                                "<period>-<stage> folders, e.g. output/2027-03-遴选/."))(f)


def _stage(value: str) -> str:
    try:
        return check_stage(value)
    except UsageError as err:
        raise click.BadParameter(str(err)) from err


def _period(value: str) -> str:
    try:
        return check_period(value)
    except UsageError as err:
        raise click.BadParameter(str(err)) from err


@contextmanager
def progress_bar(label: str, total: int, enabled: bool = True):
    """A rich progress bar on stderr; yields a callback that advances it."""
    if not enabled or total <= 1:
        yield lambda n=1: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n=1: bar.advance(task, n)


def workers_for(setting: int) -> int:
    return setting if setting > 0 else (os.cpu_count() or 1)


# -- systems ---------------------------------------------------------------------------------
@main.group(invoke_without_command=True)
@click.pass_context
def systems(ctx: click.Context) -> None:
    """List the indicator systems.

    Example: happyhome systems
    """
    if ctx.invoked_subcommand:
        return
    table = Table(_("id"), _("name"), _("subject type"), _("items"), _("total"), _("version"))
    for column in table.columns[:3]:
        column.no_wrap = True
    for sys_id in BUILTIN:
        s = load_system(sys_id)
        table.add_row(s.id, s.name, s.subject_type, str(len(s.items)), f"{s.total:g}", s.version)
    console.print(table)


@systems.command("show")
@click.argument("system_ref", metavar="ID|PATH")
@click.option("--full", is_flag=True, help=N_("Print each criterion's whole text."))
def systems_show(system_ref: str, full: bool) -> None:
    """Print one system's items.

    Example: happyhome systems show community
    """
    s = load_system(system_ref)
    table = Table(_("Code"), _("Level 1"), _("Level 2"), _("Level 3"), _("Max"), _("Criterion"),
                  title=f"{s.name} ({s.id} {s.version})")
    for item in s.items:
        text = item.criterion if full else (item.criterion[:24] + "…" if len(item.criterion) > 24 else item.criterion)
        table.add_row(item.code, item.level1, item.level2, item.level3, f"{item.max:g}", text)
    table.add_row("", "", "", _("Total"), f"{s.total:g}", "")
    console.print(table)
    for decision in s.decisions:
        console.print(f"• {decision}")


# -- init -----------------------------------------------------------------------------------
@main.command()
@click.argument("directory", type=PathType(file_okay=False, path_type=Path), default=".")
@click.option("--organiser", help=N_("Who runs the round, printed on forms, digests and letters ([round] organiser)."))
@click.option("--contact", help=N_("Whom assessors ask, printed on forms and letters ([round] contact)."))
@click.option("--deadline-day", type=click.IntRange(1, 28),
              help=N_("Returns are due by this day of each month, 23:59 ([round] deadline_day)."))
def init(directory: Path, organiser: str | None, contact: str | None, deadline_day: int | None) -> None:
    """Create a workspace: input/, output/, happyhome.toml, an example roster and the office key.

    The office key (ledger/office.key) seals every form this workspace writes, so that collect
    can refuse forms that were edited or made elsewhere; see `happyhome key`.

    --organiser, --contact and --deadline-day are written into happyhome.toml (also into
    an existing one), so forms and letters carry them from the first round.

    Example: happyhome init my-round --organiser 某某区民政局 --contact "张老师 010-12345678" --deadline-day 25
    """
    from pipeline.workspace import init_workspace

    quote = shell_quote
    result = init_workspace(directory, organiser=organiser, contact=contact, deadline_day=deadline_day)
    # Quoted where a shell needs it (a space, a bracket), so a path or the hint can be copied.
    for path in result.created:
        console.print(_("created  {path}").format(path=quote(str(path))), markup=False)
    for path in result.kept:
        console.print(_("kept     {path} (exists, left unchanged)").format(path=quote(str(path))), markup=False)
    for path in result.updated:
        console.print(_("Updated  {path}").format(path=quote(str(path))), markup=False)
    config = quote(str(result.root / "happyhome.toml"))
    for key, value in result.settings.items():
        console.print(_("Set [round] {key} = {value} in {config}").format(key=key, value=value, config=config),
                      markup=False)
    if not result.settings:
        console.print(_("Forms and letters name the round's organiser and contact and its deadline day: set them "
                        "in {config} under [round] (organiser, contact, deadline_day), or run init again with "
                        "--organiser, --contact and --deadline-day.").format(config=config), markup=False)
    command = f"happyhome -w {quote(str(directory))} forms --system community --period YYYY-MM"
    console.print(_("Next: edit {roster}, then run `{command}`").format(
        roster=quote(str(result.root / 'input' / 'roster.xlsx')), command=command), markup=False)


# -- key ------------------------------------------------------------------------------------
@main.command("key")
@click.pass_context
def key_command(ctx: click.Context) -> None:
    """Show where the office key is and how to back it up.

    The key seals this workspace's forms: collect refuses a form whose seal does not verify.
    It is shown by its fingerprint only, never printed.

    Example: happyhome key
    """
    from pipeline.officekey import key_info

    info = key_info(open_workspace(ctx))
    say(_("Office key:  {path}").format(path=info.path))
    if not info.exists:
        say(_("Not created yet: `happyhome init` or the next `happyhome forms` creates it. Until then no "
              "form can be verified as this office's."))
        return
    say(_("Fingerprint: {fingerprint} (the first 8 hex digits of its sha256; the key itself is never shown)")
        .format(fingerprint=info.fingerprint))
    say(_("Back it up: copy this file with the ledger folder to a safe place (a USB drive kept by the office). "
          "If it is lost, forms already sent out can no longer be verified: send new forms. Never mail it, "
          "never put it in the archive or a shared folder, and never share it with another office: each office "
          "has its own key, and a form sealed with another office's key is refused."))


# -- forms ----------------------------------------------------------------------------------
@main.command()
@system_option
@period_option
@stage_option
@click.option("--roster", type=PathType(dir_okay=False, path_type=Path), metavar="FILE",
              help=N_("Roster workbook [default: paths.roster]."))
@click.option("--out", "out_dir", type=PathType(file_okay=False, path_type=Path), metavar="DIR",
              help=N_("Where to write the forms [default: output/forms/<period>/<system>/]."))
@click.option("--force", is_flag=True, help=N_("Replace forms of this round that exist already."))
@click.option("--update", is_flag=True,
              help=N_("Write only new forms and forms whose subjects changed (e.g. after assign --replace-declared); "
                      "forms already there for the same subjects are left as they are."))
@click.option("--kind", type=click.Choice(["expert", "self"]), default="expert", show_default=True,
              help=N_("expert: one workbook per assessor; self: one self-assessment workbook per subject "
                      "(in the forms folder's 自评/ sub-folder)."))
@click.pass_context
def forms(ctx: click.Context, system_ref: str, period: str, stage: str, roster: Path | None, out_dir: Path | None,
          force: bool, update: bool, kind: str) -> None:
    """Write one fillable workbook per assessor (or per subject, --kind self) for a round.

    Expert forms of a round whose self-assessments are in the ledger show each subject's
    自评分 and 佐证材料 in two read-only columns after 备注. Each subject sheet of an expert form
    has a 回避 cell (否/是) and a 回避原因 cell: a sheet marked 是 is a declared conflict. --update
    writes only what changed (a replacement assessor's form), leaving forms already sent as they are.

    Example: happyhome forms --system community --period 2026-11 --kind self
    """
    from pipeline.forms import SELF, plan_forms, shown_self_scores, write_forms
    from pipeline.ledger import Ledger
    from pipeline.officekey import ensure_key, fingerprint
    from pipeline.roster import read_roster_for

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = read_roster_for(roster or ws.path("roster"), system)
    office_key, created = ensure_key(ws)
    if created:  # a workspace made before the key: its forms are sealed from now on
        console.print(_("Created the office key {path} (fingerprint {fingerprint}); back it up with the ledger "
                        "(see `happyhome key`).").format(path=ws.path("key"), fingerprint=fingerprint(office_key)),
                      markup=False)
    key = round_key(period, stage)
    shown = None
    if kind != SELF:
        with Ledger.open(ws, reading=True) as ledger:
            shown = shown_self_scores(ledger, key, system.id)
    specs = plan_forms(ws, system, key, people, out_dir, office_key=office_key, kind=kind, shown_self=shown)
    workers = workers_for(ws["collect"]["workers"]) if len(specs) >= 8 else 1
    with progress_bar(_("Writing forms"), len(specs)) as advance:
        result = write_forms(specs, force=force, update=update, workers=workers, progress=advance)
    if update:
        console.print(_("{new} new form(s), {changed} rewritten because their subjects changed, {same} unchanged "
                        "and left as they were.").format(new=len(result.paths) - len(result.changed),
                                                         changed=len(result.changed), same=len(result.unchanged)),
                      markup=False)
        for path in result.paths:
            console.print(f"  {path.name}", markup=False)
    if kind == SELF:
        console.print(_("Wrote {n} self-assessment form(s), one per subject, to {folder}").format(
            n=len(result.paths), folder=result.out_dir), markup=False)
    else:
        console.print(_("Wrote {n} form(s) ({subjects} subject sheets) to {folder}").format(
            n=len(result.paths), subjects=result.subjects, folder=result.out_dir), markup=False)


@main.command()
@system_option
@click.option("--per-subject", "k", type=click.IntRange(1), required=True, metavar="K",
              help=N_("How many distinct assessors rate each subject."))
@click.option("--avoid", multiple=True, type=click.Choice(["区县", "城市", "省份", "单位"]),
              help=N_("Never pair an assessor with a subject in the same county, city or province, or whose "
                      "name contains the assessor's organisation (repeatable)."))
@click.option("--max-load", type=click.IntRange(1), metavar="N",
              help=N_("At most N subjects per assessor (when equal loads are impossible)."))
@click.option("--seed", type=int, default=0, show_default=True, help=N_("The same seed gives the same plan."))
@click.option("--replace", multiple=True, metavar="ASSESSOR",
              help=N_("Release this assessor from the system and reassign their pairs; other pairs move only "
                      "where loads would otherwise differ by more than one (repeatable)."))
@click.option("--replace-declared", is_flag=True,
              help=N_("Add one replacement assessor for each conflict declared (回避 = 是) in the round's returned "
                      "forms, keeping every other pair; needs --period."))
@click.option("--period", default=None, callback=lambda c, p, v: v if v is None else _period(v), metavar="YYYY-MM",
              help=N_("The round whose declared conflicts (回避) are read: needed by --replace-declared; with "
                      "--replace they are not counted towards K."))
@stage_option
@click.option("--write", is_flag=True,
              help=N_("Also replace this system's rows in the roster's assignment sheet (a dated copy is kept)."))
@click.pass_context
def assign(ctx: click.Context, system_ref: str, k: int, avoid: tuple[str, ...], max_load: int | None, seed: int,
           replace: tuple[str, ...], replace_declared: bool, period: str | None, stage: str, write: bool) -> None:
    """Plan who rates whom for one system: K assessors per subject, balanced and conflict-free.

    Writes output/assign-<system>.xlsx; with --write also updates input/roster.xlsx. Nothing is
    written when the rules cannot all be met; the message names the subjects concerned.
    --replace E05 releases E05 from this system (E05 stays in 评估人); --replace-declared gives
    each subject whose assessor declared a conflict in the round (回避 = 是) a replacement.

    Example: happyhome assign --system community --per-subject 3 --avoid 区县 --avoid 单位
    """
    from pipeline.assign import CHANGE_TEXT, DECLARED, plan_assignment, write_plan, write_roster_pairs
    from pipeline.ledger import Ledger

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    roster = _roster_for(ws, system)
    declared = None
    if replace_declared and period is None:
        raise UsageError(_("--replace-declared needs --period (and --stage for a round of another stage)."))
    if period is not None:  # the round's declared conflicts: with --replace they are not counted as K
        with Ledger.open(ws, reading=True) as ledger:
            declared = [(d.assessor, d.subject) for d in ledger.declarations(round_key(period, stage), system.id)]
    plan = plan_assignment(roster, system, k, avoid, max_load, seed, replace, declared, replace_declared)
    target = write_plan(plan, roster, ws.output / f"assign-{system.id}.xlsx")
    loads = [v for v in plan.loads().values() if v]
    table = Table(box=box.SIMPLE)
    table.add_column(_("Check"))
    table.add_column(_("Holds"))
    for text, ok in plan.checks:
        table.add_row(escape(text), "✓" if ok else "✗")
    console.print(_("{pairs} pair(s): {subjects} subject(s) x {k} assessor(s); loads {low}-{high} over "
                    "{assessors} assessor(s).").format(pairs=len(plan.pairs), subjects=len(plan.subjects), k=k,
                                                       low=min(loads), high=max(loads), assessors=len(loads)),
                  markup=False)
    console.print(table)
    for a in plan.released:
        console.print(_("Released {code} ({name}): nothing left to rate in {system}; kept in 评估人, no form and no "
                        "chasing for this system.").format(code=a, name=roster.assessors[a].name, system=system.id),
                      markup=False, soft_wrap=True)
    if plan.moved:
        console.print(_("{n} pair(s) of other assessors moved to keep loads within one (sheet 变动).").format(
            n=len(plan.moved)), markup=False)
    if plan.replace_declared:
        added = [c for c in plan.changes if c[3] == DECLARED]
        console.print(_("{declared} declared conflict(s) in the round; {added} replacement(s) added.").format(
            declared=len(plan.declared), added=len(added)), markup=False)
        for subject, _old, new, why in added:
            console.print(f"  {subject} → {new} ({CHANGE_TEXT[why]})", markup=False)
    console.print(_("Wrote {path}").format(path=target), markup=False)
    if write:
        backup = write_roster_pairs(plan, roster, ws.path("roster"))
        console.print(_("Updated {roster} (the previous roster is kept as {backup}).").format(
            roster=ws.path("roster"), backup=backup), markup=False)


# -- status, rollup, demo ---------------------------------------------------------------------
def _roster_for(ws: Workspace, system):
    from pipeline.roster import read_roster_for

    return read_roster_for(ws.path("roster"), system)


@main.command()
@system_option
@period_option
@stage_option
@click.option("--export", "export", type=PathType(dir_okay=False, path_type=Path), metavar="FILE",
              help=N_("Write the chase list (one row per missing assignment) to this .xlsx for mail merge."))
@click.option("--letters", "letters_dir", type=PathType(file_okay=False, path_type=Path), metavar="DIR",
              help=N_("Write a letter to every assessor who owes something into this folder: one .txt each and "
                      "letters.xlsx."))
@click.pass_context
def status(ctx: click.Context, system_ref: str, period: str, stage: str, export: Path | None,
           letters_dir: Path | None) -> None:
    """Per assessor: assigned, received and missing for a round, with contacts.

    --letters DIR writes, for every assessor who still owes a subject, a letter listing what
    is missing and every open problem (file, sheet, cell, value, what to enter), the deadline
    and the office's contact: <编号>-<姓名>.txt to paste into WeChat or an e-mail, and one
    sheet each of DIR/letters.xlsx. Letters of an earlier run no longer needed are removed.

    Example: happyhome status --system community --period 2026-11 --export chase.xlsx --letters letters
    """
    from pipeline.ledger import Ledger
    from pipeline.status import CONFLICT, NOT_RECEIVED, REJECTED, round_status, write_chase_list

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = _roster_for(ws, system)
    period = round_key(period, stage)
    with Ledger.open(ws, reading=True) as ledger, ledger.snapshot():
        result = round_status(ws, system, period, people, ledger)
    table = Table(title=_("{system} {period}: returns (deadline {deadline})").format(
        system=system.name, period=period, deadline=f"{result.deadline:%Y-%m-%d %H:%M}"))
    for name in (_("Code"), _("Assessor"), _("Contact")):
        table.add_column(name, no_wrap=True)
    for name in (_("Due"), _("In"), _("Owed")):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column(_("Subjects owed"))
    marks = {NOT_RECEIVED: "", REJECTED: "*", CONFLICT: "!"}
    for a in result.assessors:
        owed = " ".join(m.subject + marks[m.reason] for m in a.missing)
        table.add_row(escape(a.code), escape(a.name), escape(a.contact), str(a.assigned), str(a.received),
                      f"[red]{len(a.missing)}[/]" if a.missing else "0", escape(owed))
    console.print(table)
    reasons = {m.reason for a in result.assessors for m in a.missing}
    notes = [note for reason, note in (
        (REJECTED, _("* came back but failed validation")),
        (CONFLICT, _("! conflict: two files saved at the same time with different scores; "
                     "the office removes one and collects again")))
             if reason in reasons]
    line = _("Assigned {assigned}, received {received}, missing {missing}").format(
        assigned=result.assigned, received=result.received, missing=result.missing)
    console.print(line + (_(" ({notes})").format(notes=_("; ").join(notes)) if notes else ""), markup=False)
    if result.short:
        short = Table(title=_("Subjects short of an assessor: {n} declared conflict(s)").format(n=result.declared))
        for name in (_("Subject"), _("Name")):
            short.add_column(name, no_wrap=True)
        for name in (_("Planned"), _("Valid")):
            short.add_column(name, justify="right", no_wrap=True)
        short.add_column(_("Declared by (reason)"))
        for x in result.short:
            short.add_row(escape(x.subject), escape(x.name), str(x.planned), f"[red]{x.valid}[/]",
                          escape("；".join(f"{code}（{reason}）" if reason else code for code, _n, reason in x.declared)))
        console.print(short)
        console.print(_("Add a replacement for each: happyhome assign --system {system} --per-subject {k} "
                        "--replace-declared {round} --write").format(system=system.id, k=result.short[0].planned,
                                                                    round=cli_args(period)), markup=False, soft_wrap=True)
    if result.self_missing is not None:
        owed = " ".join(m.subject + marks[m.reason] for m in result.self_missing)
        console.print(_("Self-assessments: {received} of {expected} in, missing {missing}{subjects}").format(
            received=result.self_expected - len(result.self_missing), expected=result.self_expected,
            missing=len(result.self_missing), subjects=_(": {codes}").format(codes=owed) if owed else ""),
            markup=False, soft_wrap=True)
    if export:
        write_chase_list(result, export)
        console.print(_("Chase list: {path} ({n} row(s))").format(path=export, n=len(result.chase_detail_rows())),
                      markup=False)
    if letters_dir:
        from pipeline.letters import plan_letters, write_letters

        written = write_letters(plan_letters(ws, result), letters_dir)
        console.print(_("Wrote {n} letter(s) to {folder} (and {book})").format(
            n=len(written.paths), folder=written.folder, book=written.book.name), soft_wrap=True, markup=False)
        if written.removed:
            console.print(_("Removed {n} letter(s) of an earlier run: {names}").format(
                n=len(written.removed), names=" ".join(p.name for p in written.removed)), soft_wrap=True, markup=False)


# -- collect --------------------------------------------------------------------------------
@main.command()
@system_option
@period_option
@stage_option
@click.argument("paths", nargs=-1, type=PathType(exists=True, path_type=Path))
@click.option("--roster", type=PathType(dir_okay=False, exists=True, path_type=Path), metavar="FILE",
              help=N_("Roster workbook [default: paths.roster]."))
@click.option("--strict", is_flag=True, help=N_("Exit with status 6 when any file or sheet was rejected."))
@click.pass_context
def collect(ctx: click.Context, system_ref: str, period: str, stage: str, paths: tuple[Path, ...],
            roster: Path | None, strict: bool) -> None:
    """Take in returned workbooks: validate, record in the ledger, report.

    PATHS are files and folders (searched recursively) [default: input/returned/<period>/].
    A sheet with an error is not counted; the other sheets of its file are. The later-saved
    of two returns for one assessor and subject wins; the earlier stays in the ledger.

    \b
    Exit status:
      0  the run completed (rejected files included)
      2  usage error
      5  another run holds the workspace
      6  --strict and a file or sheet taken in by this run was rejected
         (files collected by earlier runs are not judged again)

    Example: happyhome collect --system community --period 2026-11
    """
    from pipeline.collect import (STATUS_ALREADY, STATUS_DUPLICATE, STATUS_OTHER_ROUND, STATUS_UNREADABLE,
                                  collect as run_collect, find_files)
    from pipeline.lock import workspace_lock
    from pipeline.roster import read_roster_for

    from pipeline.officekey import key_info

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = read_roster_for(roster or ws.path("roster"), system)
    period = round_key(period, stage)
    targets = list(paths) or [ws.returned(period)]
    if not key_info(ws).exists:
        err_console.print(_("This workspace has no office key ({path}): no form can be verified as this office's; "
                            "each is collected with a warning (see `happyhome key`).").format(path=ws.path("key")),
                          markup=False)
    with workspace_lock(ws):
        total = len(find_files(targets))
        with progress_bar(_("Collecting"), total) as advance:
            result = run_collect(ws, system, period, targets, people, progress=advance)
    if not paths and not ws.returned(period).is_dir():
        err_console.print(_("Nothing to collect: {folder} does not exist.").format(folder=ws.returned(period)),
                          markup=False)
    table = Table(title=escape(f"{system.name} {period}"), show_header=True)
    table.add_column(_("files"))
    table.add_column(_("count"), justify="right")
    rows = [
        (_("accepted"), result.count("accepted")),
        (_("partly accepted"), result.count("partial")),
        (_("rejected"), result.count("rejected") + result.count(STATUS_UNREADABLE)),
        (_("duplicates"), result.count(STATUS_DUPLICATE)),
        (_("already collected"), result.count(STATUS_ALREADY)),
        (_("forms of another round"), result.count(STATUS_OTHER_ROUND)),
        (_("superseded sheets"), result.superseded),
        (_("still missing (assignments)"), result.missing),
        *([(_("declared conflicts (回避)"), result.declared)] if result.declared else []),
    ]
    for label, n in rows:
        table.add_row(label, str(n))
    console.print(table)
    for f in result.files:
        if f.status in ("rejected", STATUS_UNREADABLE):
            say(_("rejected  {file}: {reason}").format(file=f.name, reason=f.reason))
        elif f.status == "partial":
            say(_("partly    {file}: {rejected} of {sheets} subject sheets rejected (see sheet 问题 of the report)")
                .format(file=f.name, rejected=f.sheets - f.accepted_sheets, sheets=f.sheets))
        elif f.status == STATUS_OTHER_ROUND:
            say(_("other round  {file}: {reason}").format(file=f.name, reason=f.reason))
        for earlier, sheet in f.replaced:
            say(_("replaced  {earlier} ({sheet}) by {file}").format(earlier=earlier, sheet=sheet, file=f.name))
        for subject, other in f.conflicts:
            say(_("conflict  {file} and {other}: {subject} saved at the same time with different scores; "
                  "neither is counted (see sheet 问题)").format(file=f.name, other=other, subject=subject))
    for settled in result.settled:
        if settled.kept:
            text = _("conflict settled  {subject} ({assessor}): {withdrawn} removed, {kept} stands")
        else:
            text = _("conflict settled  {subject} ({assessor}): {withdrawn} removed")
        say(text.format(subject=settled.subject, assessor=settled.assessor, withdrawn=_(", ").join(settled.withdrawn),
                        kept=settled.kept))
    say(_("Collection report: {path}").format(path=result.report))
    if strict and result.rejected_any:
        ctx.exit(6)


# -- send, fetch ------------------------------------------------------------------------------
def _ask_password(prompt: str) -> str:
    return click.prompt(prompt, hide_input=True, err=True)


def _asker():
    """The password prompt, only when a person can answer it."""
    return _ask_password if sys.stdin.isatty() else None


@main.command()
@system_option
@period_option
@stage_option
@click.option("--to", "to", multiple=True, metavar="ASSESSOR",
              help=N_("Send only to this assessor (their 编号; repeatable)."))
@click.option("--letters", is_flag=True,
              help=N_("Send each assessor who owes something their chase or problem letter (as `status --letters` "
                      "writes it), attaching nothing."))
@click.option("--dry-run", is_flag=True,
              help=N_("Write the messages as .eml files under output/<period>/mail/ to review; send nothing."))
@click.option("--resend", is_flag=True, help=N_("Send again to assessors who were sent this form already."))
@click.pass_context
def send(ctx: click.Context, system_ref: str, period: str, stage: str, to: tuple[str, ...], letters: bool,
         dry_run: bool, resend: bool) -> None:
    """E-mail each assessor their own form (made by `happyhome forms`), or with --letters their letter.

    The server, sender and subjects are in happyhome.toml [mail]; the password or 授权码 comes
    from HAPPYHOME_MAIL_PASSWORD or the system keyring, or is asked for once on a terminal.
    Every message is recorded in the ledger: a second send goes only to assessors not yet sent
    the form as it is now, so after a failure re-running sends just what failed. A message that
    failed (the others still go) makes the exit status 1.

    Example: happyhome send --system community --period 2026-11 --dry-run
    """
    from pipeline.mail import send_round

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = _roster_for(ws, system)
    key = round_key(period, stage)
    result = send_round(ws, system, key, people, to=to, letters=letters, dry_run=dry_run, resend=resend,
                        ask=_asker())
    for a in result.no_address:
        say(_("no address  {code} {name}: no 邮箱 in the roster's 评估人 sheet").format(code=a.code, name=a.name))
    for a in result.no_form:
        say(_("no form     {code} {name}: not in the forms folder (run `happyhome forms` again)").format(
            code=a.code, name=a.name))
    for t in result.failed:
        say(_("failed      {code} {name} <{address}>: {answer}").format(code=t.assessor.code, name=t.assessor.name,
                                                                       address=t.recipient, answer=t.answer))
    if dry_run:
        say(_("Wrote {n} message(s) to {folder} (nothing sent)").format(n=len(result.written), folder=result.folder))
    else:
        say(_("Sent {n} message(s); {failed} failed; {already} already sent (--resend to send again); "
              "{missing} without an address").format(n=len(result.sent), failed=len(result.failed),
                                                     already=len(result.already), missing=len(result.no_address)))
        if result.failed:
            say(_("Run the same command again to send the failed ones."))
    if result.failed:
        ctx.exit(1)


@main.command()
@system_option
@period_option
@stage_option
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help=N_("Read mail received since this day [default: when the round's first form was sent, or the "
                      "1st of its month]."))
@click.option("--move-to", metavar="FOLDER",
              help=N_("Move the messages taken to this mail folder (without it the mailbox is never changed)."))
@click.option("--collect", "then_collect", is_flag=True, help=N_("Run collect after fetching."))
@click.pass_context
def fetch(ctx: click.Context, system_ref: str, period: str, stage: str, since, move_to: str | None,
          then_collect: bool) -> None:
    """Save the workbooks mailed back into the round's returned folder (input/returned/<period>/).

    Reads the mailbox of happyhome.toml [mail] imap read-only: nothing is marked read, moved or
    deleted unless --move-to. Each message is taken once (recorded in the ledger); spreadsheets,
    also inside .zip attachments, are saved as <date>_<sender>_<name>; anything else is listed.

    Example: happyhome fetch --system community --period 2026-11 --collect
    """
    from pipeline.mail import DUPLICATE, IGNORED, SAVED, fetch_round

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = _roster_for(ws, system)
    key = round_key(period, stage)
    result = fetch_round(ws, system, key, people, since=since.date() if since else None, move_to=move_to,
                         ask=_asker())
    for f in result.of(SAVED):
        say(_("saved      {path}  (from {sender})").format(path=f.path.name, sender=f.sender))
    for f in result.of(DUPLICATE):
        say(_("duplicate  {name} from {sender}: the same file as {path}").format(name=f.name, sender=f.sender,
                                                                             path=f.path.name))
    for f in result.of(IGNORED):
        say(_("ignored    {name} from {sender}: {reason}").format(name=f.name, sender=f.sender, reason=f.reason))
    for sender in result.unknown_senders:
        say(_("not in the roster  {sender}: its files are examined as any other (发件人不在名单)").format(sender=sender))
    say(_("{n} new message(s) since {since} ({seen} taken before): {saved} file(s) saved to {folder}").format(
        n=result.messages, since=result.since, seen=result.seen, saved=len(result.of(SAVED)), folder=result.folder))
    if result.moved:
        say(_("Moved {n} message(s) to {folder}").format(n=result.moved, folder=move_to))
    if then_collect:
        ctx.invoke(collect, system_ref=system_ref, period=period, stage=stage, paths=(), roster=None, strict=False)


# -- report ---------------------------------------------------------------------------------
PDF_HELP = {  # one message each: the help is translated when shown, a formatted string could not be
    "report": N_("Also print the HTML to digest-<system>.pdf beside it, with a Chromium-family browser "
                 "(Chromium, Google Chrome or Microsoft Edge; HAPPYHOME_BROWSER names one). Without one: a "
                 "warning, the other outputs, exit status 0."),
    "rollup": N_("Also print the HTML to rollup-<system>-<from>_<to>.pdf beside it, with a Chromium-family "
                 "browser (Chromium, Google Chrome or Microsoft Edge; HAPPYHOME_BROWSER names one). Without "
                 "one: a warning, the other outputs, exit status 0."),
}


def _print_pdf(html: Path, ws: Workspace, subjects: int) -> Path | None:
    """Print an HTML output to PDF beside it; a missing browser or a failed print is a warning,
    not an error, because every other output of the command is written and valid. The page of a
    large round (more than report.digest_full_max subjects) is printed without PDF tags."""
    from pipeline.errors import OutputError
    from pipeline.pdf import BrowserNotFound, pdf_beside

    settings = ws["report"]
    try:
        path = pdf_beside(html, timeout=settings["pdf_timeout"], tagged=subjects <= settings["digest_full_max"])
    except BrowserNotFound as err:
        err_console.print(_("Warning: no PDF written. {reason} The HTML was written: {path}").format(
            reason=err, path=html), markup=False, soft_wrap=True)
        return None
    except OutputError as err:
        err_console.print(_("Warning: no PDF written. {reason} The HTML was written and can be printed "
                            "from a browser: {path}").format(reason=err, path=html), markup=False, soft_wrap=True)
        return None
    console.print(_("wrote    {path}").format(path=path), soft_wrap=True)
    return path


@main.command()
@system_option
@period_option
@stage_option
@click.option("--method", type=click.Choice(["mean", "trimmed"]), default=None,
              help=N_("How assessors' scores combine [default: scoring.method in happyhome.toml]."))
@click.option("--by", type=click.Choice(["省份", "城市", "区县"]), default=None,
              help=N_("Also rank within each province, city or county."))
@click.option("--calibrate", is_flag=True, help=N_("Add totals and ranks with assessor leniency removed."))
@click.option("--top", default=10, show_default=True, help=N_("Ranks to print."))
@click.option("--pdf", "pdf", is_flag=True, help=PDF_HELP["report"])
@click.pass_context
def report(ctx: click.Context, system_ref: str, period: str, stage: str, method: str | None, by: str | None,
           calibrate: bool, top: int, pdf: bool) -> None:
    """Rank and grade a round: summary workbook, results CSV and HTML digest.

    With --pdf the digest is also printed to digest-<system>.pdf beside it. When no
    browser is found or printing fails, a warning says why and what to install; every
    other output is still written and the exit status stays 0.

    Example: happyhome report --system community --period 2026-11 --by 省份
    """
    from pipeline.report import report as run_report

    ws = open_workspace(ctx)
    period = round_key(period, stage)
    result = run_report(ws, system_ref, period, method=method, by=by, calibrate=calibrate)
    res = result.scores
    decimals = res.params["rank_decimals"]
    table = Table(title=escape(f"{result.system.name} {period}（{res.method}）"))
    for name, justify in ((_("Rank"), "right"), (_("Code"), "left"), (_("Name"), "left"), (_("Total score"), "right"),
                          (_("Grade"), "left"), (_("Assessors"), "right"), (_("Interval"), "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    for r in res.subjects.head(top).to_dict("records"):
        rated = r["n_assessors"] > 0
        table.add_row(f"{int(r['rank'])}" if rated else "", escape(r["subject"]), escape(r["name"]),
                      f"{r['total']:.{decimals}f}" if rated else "", escape(r["grade"]), str(r["n_assessors"]),
                      escape(r["rank_label"]))
    console.print(table)
    console.print(_("Rated {rated} of {subjects}; returns {received}/{assigned}; {flags} flag(s). {reading}").format(
        rated=res.n_rated, subjects=len(res.subjects), received=result.received, assigned=result.assigned,
        flags=len(res.flags), reading=res.agreement.get("reading", "")).rstrip(), markup=False)
    if result.selection is not None:
        from pipeline.selection import RESERVE, SELECTED, TIED, VETOED

        counts = result.selection.counts()
        console.print(_("Selection: {selected} selected for {places} places, {tied} tied for the office to decide, "
                        "{reserve} in reserve, {vetoed} vetoed.").format(
            selected=counts[SELECTED], places=result.selection.places, tied=counts[TIED], reserve=counts[RESERVE],
            vetoed=counts[VETOED]), markup=False)
    if result.corrections:
        console.print(_("Includes {n} correction(s) made after publication (sheet 更正记录; happyhome amend --list).")
                      .format(n=result.corrections), markup=False)
    if result.acceptance is not None:
        counted = "，".join(f"{name} {n}" for name, n in result.acceptance.counts)
        console.print(_("Acceptance: {counts}; {notices} rectification notice(s).").format(
            counts=counted, notices=len(result.acceptance.notices)), markup=False)
    for path in result.paths:
        console.print(_("wrote    {path}").format(path=path), markup=False)
    if pdf:
        _print_pdf(result.digest, ws, len(res.subjects))


# -- amend ----------------------------------------------------------------------------------
AMEND_FIELDS = (("subject", "--subject"), ("assessor", "--assessor"), ("item", "--item"), ("score", "--score"),
                ("reason", "--reason"))


@main.command()
@system_option
@period_option
@stage_option
@click.option("--subject", metavar="ID", help=N_("The subject whose score is corrected."))
@click.option("--assessor", metavar="ID", help=N_("The assessor whose score is corrected."))
@click.option("--item", metavar="CODE", help=N_("The item code, e.g. C01."))
@click.option("--score", metavar="N", help=N_("The new score, 0..满分 of the item."))
@click.option("--reason", metavar="TEXT", help=N_("Why (required for a correction; optional with --undo)."))
@click.option("--list", "show", is_flag=True, help=N_("List the round's corrections and undos."))
@click.option("--undo", "number", type=int, metavar="N", help=N_("Withdraw correction N (recorded too)."))
@click.pass_context
def amend(ctx: click.Context, system_ref: str, period: str, stage: str, subject: str | None, assessor: str | None,
          item: str | None, score: str | None, reason: str | None, show: bool, number: int | None) -> None:
    """Correct an accepted score after publication, list the corrections, or undo one.

    A correction is recorded in the ledger beside the return it corrects (who ran it, when,
    why, the old and new value); the return is never changed. It is checked like a returned
    score: the item exists, the score is within 0..满分, the assessor is assigned the subject
    and there is an accepted score to correct. report, the digest and rollup then use the
    corrected value and show every correction (sheet 更正记录, marked cells in 评分明细).
    A newer return for the same assessor and subject supersedes the corrections of the old one.

    \b
    Modes:
      amend --subject ID --assessor ID --item CODE --score N --reason TEXT
      amend --list
      amend --undo N [--reason TEXT]

    \b
    Exit status:
      0  recorded (or listed)
      2  usage error: a missing option, or a correction or undo that is refused
      3  the roster cannot be used
      5  another run holds the workspace

    Example: happyhome amend --system community --period 2026-11 --subject C001 --assessor E01 --item C01 --score 3 --reason 公示异议复核
    """
    from pipeline import corrections
    from pipeline.lock import workspace_lock

    values = {"subject": subject, "assessor": assessor, "item": item, "score": score, "reason": reason}
    given = [flag for name, flag in AMEND_FIELDS if values[name] is not None and name != "reason"]
    if show and number is not None:
        raise UsageError(_("--list and --undo cannot be used together"))
    if (show or number is not None) and given:
        raise UsageError(_("{options} cannot be used with {mode}").format(
            options=", ".join(given), mode="--list" if show else "--undo"))
    ws = open_workspace(ctx)
    system = load_system(system_ref)
    key = round_key(period, stage)
    if show:
        _print_corrections(corrections.round_history(ws, system, key), system, key)
        return
    if number is not None:
        with workspace_lock(ws):
            done = corrections.undo(ws, system, key, number, reason=reason or "")
        console.print(_("Recorded undo {n} of correction {target}: {subject} {assessor} {item} {old} → {new}").format(
            n=done.id, target=done.undoes, subject=done.subject, assessor=done.assessor, item=done.item,
            old=corrections.shown(done.old), new=corrections.shown(done.new)), markup=False)
    else:
        missing = [flag for name, flag in AMEND_FIELDS if values[name] is None]
        if missing:
            raise UsageError(_("Missing option(s) {options}: a correction needs --subject, --assessor, --item, "
                               "--score and --reason (or use --list or --undo N)").format(options=", ".join(missing)))
        people = _roster_for(ws, system)
        with workspace_lock(ws):
            done = corrections.amend(ws, system, key, people, subject=subject, assessor=assessor, item=item,
                                     score=score, reason=reason)
        console.print(_("Recorded correction {n}: {subject} {assessor} {item} {old} → {new}").format(
            n=done.id, subject=done.subject, assessor=done.assessor, item=done.item,
            old=corrections.shown(done.old), new=corrections.shown(done.new)), markup=False)
    console.print(_("Run `happyhome report --system {system} {round}` to bring the summary and digest up to date.").format(
        system=system.id, round=cli_args(key)), markup=False)


def _print_corrections(rows, system, key: str) -> None:
    from pipeline.corrections import UNDO, shown
    table = Table(title=f"{system.name} {key} 更正记录", box=box.SIMPLE_HEAD, pad_edge=False)
    # Ten columns in an 80-column terminal: codes and numbers stay whole, the time, the reason and
    # the status wrap; nothing is cut off.
    for name, wide in (("编号", 0), ("时间", 10), ("操作人", 6), ("对象", 0), ("评估人", 0), ("指标", 0), ("原分", 0),
                       ("新分", 0), ("理由", 8), ("状态", 6)):
        table.add_column(name, justify="right" if name in ("编号", "原分", "新分") else "left",
                         no_wrap=not wide, min_width=wide or None, overflow="fold")
    for r in rows.itertuples(index=False):
        # Text, not markup: a reason typed as "[red]" is shown as typed.
        table.add_row(*(Text(str(v)) for v in (r.id, r.created_at, r.operator, r.subject, r.assessor, r.item,
                                                shown(r.old_score), shown(r.new_score), r.reason, r.status)),
                      style="dim" if r.action == UNDO else None)
    console.print(table)
    console.print(_("{n} correction(s) and {u} undo(s) in this round.").format(
        n=int((rows["action"] != UNDO).sum()) if len(rows) else 0, u=int((rows["action"] == UNDO).sum()) if len(rows) else 0))


# -- rollup ---------------------------------------------------------------------------------
def _month(ctx, param, value):
    return None if value is None else _period(value)


@main.command()
@system_option
@click.option("--from", "start", callback=_month, metavar="YYYY-MM",
              help=N_("First month [default: the first on record]."))
@click.option("--to", "end", callback=_month, metavar="YYYY-MM", help=N_("Last month [default: the last on record]."))
@click.option("--method", type=click.Choice(["mean", "trimmed"]), default=None,
              help=N_("How assessors' scores combine [default: scoring.method in happyhome.toml]."))
@stage_option
@click.option("--pdf", "pdf", is_flag=True, help=PDF_HELP["rollup"])
@click.pass_context
def rollup(ctx: click.Context, system_ref: str, start: str | None, end: str | None, method: str | None,
           stage: str, pdf: bool) -> None:
    """Roll the monthly rounds up: totals, changes, ranks, flags and returns by month.

    Writes output/rollup/rollup-<system>-<from>_<to>.xlsx and .html. A month in the range
    with nothing collected is shown as 无数据. With --pdf the HTML is also printed to a PDF
    beside it; without a browser (or when printing fails) a warning says why, the other
    outputs are written and the exit status stays 0.

    Example: happyhome rollup --system community --from 2026-06 --to 2026-11
    """
    from pipeline.ledger import Ledger
    import pandas as pd

    from pipeline.rollup import DROP, UNRATED, rollup as run_rollup

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = _roster_for(ws, system)
    with Ledger.open(ws, reading=True) as ledger, ledger.snapshot():
        result = run_rollup(ws, system, people, ledger, start, end, method, stage=stage)
    table = Table(title=escape(f"{system.name} {result.start} … {result.end}"))
    for name, justify in ((_("Month"), "left"), (_("Rated"), "right"), (_("Mean"), "right"),
                          (_("On time"), "right"), (_("Late"), "right"), (_("Not received"), "right"),
                          (_("Drops"), "right"), (_("Unrated"), "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    monthly, flags = result.monthly, result.flags
    for r in result.returns_month.itertuples(index=False):
        if not r.has_data:
            table.add_row(r.period, Text(_("no data"), style="dim"), "", "", "", "", "", "")
            continue
        month = monthly[monthly["period"] == r.period]
        kinds = flags[flags["period"] == r.period]["kind"]
        mean = month["total"].mean()
        table.add_row(r.period, str(int(month["total"].notna().sum())), "—" if pd.isna(mean) else f"{mean:.2f}",
                      str(int(r.on_time)), str(int(r.late)), str(int(r.missing)),
                      str(int((kinds == DROP).sum())), str(int((kinds == UNRATED).sum())))
    console.print(table)
    console.print(_("wrote    {path}").format(path=result.xlsx), markup=False)
    console.print(_("wrote    {path}").format(path=result.html), markup=False)
    if pdf:
        _print_pdf(result.html, ws, len(result.subjects))


# -- ledger ---------------------------------------------------------------------------------
@main.group("ledger")
def ledger_group() -> None:
    """Copy the ledger between SQLite and PostgreSQL, and check its integrity.

    The ledger is `[paths] ledger` in happyhome.toml (an SQLite file, or a postgresql:// URL);
    HAPPYHOME_LEDGER_URL overrides it.

    Example: happyhome ledger check
    """


def _row_counts(counts: dict[str, int]) -> str:
    """Rows per table, as `ledger copy` and `ledger check` report them."""
    return _(", ").join(f"{table} {n}" for table, n in counts.items())


@ledger_group.command("copy")
@click.option("--to", "to", required=True, metavar="URL|FILE",
              help=N_("The new ledger: a postgresql:// URL (an empty database) or an SQLite file that does not exist yet."))
@click.option("--from", "source", metavar="URL|FILE", help=N_("Copy this ledger instead of the workspace's."))
@click.pass_context
def ledger_copy(ctx: click.Context, to: str, source: str | None) -> None:
    """Copy every row of the ledger into a new one, then verify the row counts and a checksum of every score.

    Point `[paths] ledger` (or HAPPYHOME_LEDGER_URL) at the new ledger afterwards.

    Example: happyhome ledger copy --to postgresql://happyhome@db.example.org/happyhome
    """
    from pipeline.ledger import copy_into

    with progress_bar(_("Copying the ledger"), 0, enabled=False) as advance:
        result = copy_into(open_workspace(ctx), to, source, advance)
    say(_("Copied {source} to {target}: {counts}.").format(
        source=result.source, target=result.target,
        counts=_row_counts(result.counts)))
    say(_("Verified: the same rows in every table and the same checksum of every score ({checksum}).").format(
        checksum=result.checksum[:16]))


@ledger_group.command("check")
@click.option("--ledger", "location", metavar="URL|FILE", help=N_("Check this ledger instead of the workspace's."))
@click.pass_context
def ledger_check(ctx: click.Context, location: str | None) -> None:
    """Check the ledger's integrity: references, one counting sheet per assessor and subject, the engine's own checks.

    Example: happyhome ledger check
    """
    from pipeline.errors import OutputError
    from pipeline.ledger import check_ledger

    result = check_ledger(open_workspace(ctx), location)
    say(_("Ledger {path}, schema version {version}: {counts}; score checksum {checksum}.").format(
        path=result.path, version=result.version,
        counts=_row_counts(result.counts), checksum=result.checksum[:16]))
    for finding in result.findings:
        say(f"  ✗ {finding}")
    if result.findings:
        raise OutputError(_("The ledger {path} failed {n} checks.").format(path=result.path, n=len(result.findings)))
    say(_("No problems found."))


# -- demo -----------------------------------------------------------------------------------
@main.command()
@click.argument("directory", type=PathType(file_okay=False, path_type=Path), default="demo")
@click.option("--small", is_flag=True,
              help=N_("A small programme (6 zones, 12 communities, 5 assessors, 2 months), for tests."))
@click.option("--end", default="2026-11", show_default=True, callback=_month, metavar="YYYY-MM",
              help=N_("The last of the six monthly rounds."))
@click.option("--seed", default=20261129, show_default=True,
              help=N_("Random seed: the same seed gives the same files."))
def demo(directory: Path, small: bool, end: str, seed: int) -> None:
    """Build an example workspace in DIRECTORY and run selection, six monthly and acceptance rounds in it.

    A synthetic programme (30 zones, 100 communities, 12 assessors) with plausible scores
    and a few faulty returns: a selection round of the communities (more candidates than places,
    provincial quotas, a veto) the month before, then forms, returns, collect and report for
    both systems every month, then the roll-ups, and last an acceptance round of the zones the
    month after (results, rectification list and notices). A previous demo in DIRECTORY is cleared and rebuilt; any
    other non-empty folder is refused.

    Example: happyhome demo ./demo
    """
    import time

    from pipeline.demo import FULL, LATE, SMALL, build_demo

    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console) as bar:
        def stage(label: str, total: int):
            task = bar.add_task(pad(_(label), 28), total=total)  # the stages' labels are marked N_() in demo.py
            return lambda n=1: bar.advance(task, n)

        result = build_demo(directory, SMALL if small else FULL, end=end, seed=seed, stage=stage)
    elapsed = time.perf_counter() - started
    say(_("Demo workspace: {root}  ({subjects} subjects, {assessors} assessors, {months} months {first}…{last}, "
          "{files} workbooks)").format(root=result.root, subjects=result.subjects, assessors=result.assessors,
                                       months=len(result.periods), first=result.periods[0],
                                       last=result.periods[-1], files=result.files))
    table = Table(title=_("Faulty returns planted in the demo"), show_lines=False)
    table.add_column(_("Month"), no_wrap=True)
    table.add_column(_("File"), overflow="fold")
    table.add_column(_("Problem"), overflow="fold")
    for period, name, note in result.faults:
        if note != LATE:
            table.add_row(period, escape(name), escape(_(note)))
    console.print(table)
    late = sum(1 for fault in result.faults if fault[2] == LATE)
    say(_("…and {n} returns that arrived after the deadline.").format(n=late))
    digest, rollup_label = _("latest digest"), _("roll-up")
    width = max(cell_len(digest), cell_len(rollup_label)) + 2
    for system, path in result.digests.items():
        say(f"{pad(digest, width)}{system:<10} {path}")
    if result.selection is not None:
        chosen, label = result.selection, _("selection")
        say(f"{pad(label, width)}{chosen.system.id:<10} {chosen.digest}")
        for path in chosen.publicity:
            say(f"{'':<{width + 11}}{path}")
    for system, (xlsx, html) in result.rollups.items():
        say(f"{pad(rollup_label, width)}{system:<10} {html}")
        say(f"{'':<{width + 11}}{xlsx}")
    if result.acceptance is not None:
        accepted, label = result.acceptance, _("acceptance result")
        say(f"{pad(label, width)}{accepted.system.id:<10} {accepted.summary}")
        counted = "，".join(f"{name} {n}" for name, n in accepted.acceptance.counts)
        say(_("{indent}{counts}; rectification list and {notices} notice(s) in {folder}").format(
            indent=" " * (width + 11), counts=counted, notices=len(accepted.acceptance.notices),
            folder=accepted.acceptance.rectification.parent))
    if result.mail is not None:
        mail, label = result.mail, _("mail")
        say(f"{pad(label, width)}{'community':<10} " + _("{n} message(s) in {folder} (--dry-run: nothing sent)").format(
            n=len(mail.written), folder=mail.folder))
        args = f"-w {shell_quote(str(directory))} {{}} --system community {cli_args(mail.key)}"
        say(" " * (width + 11) + _("to send them: {send}; then to fetch the returns: {fetch}").format(
            send="happyhome " + args.format("send"), fetch="happyhome " + args.format("fetch") + " --collect"))
    steps = _(", ").join(_("{step} {seconds:.1f} s").format(step=_(name), seconds=sec)
                         for name, sec in result.seconds.items())
    try_it = f"happyhome -w {shell_quote(str(directory))} status --system community --period {result.periods[-1]}"
    say(_("Done in {seconds:.1f} s ({steps}). Try: {command}").format(seconds=elapsed, steps=steps, command=try_it))
