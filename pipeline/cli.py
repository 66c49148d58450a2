"""The `happyhome` command: each command parses options, calls one library function, prints.

Exit codes: 0 done (rejected returns included); 1 an error; 2 a usage or config error;
3 an unusable input; 4 an output that cannot be written; 5 the workspace is busy;
6 `collect --strict` saw a rejection.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline import __version__
from pipeline.config import Workspace, check_period
from pipeline.errors import HappyhomeError, UsageError
from pipeline.i18n import _
from pipeline.rounds import check_stage, round_key
from pipeline.systems import BUILTIN, load_system

console = Console(highlight=False, soft_wrap=True)  # paths stay whole, copy-pasteable
err_console = Console(stderr=True, highlight=False)


class HappyhomeGroup(click.Group):
    """Turns library errors into one-line messages and exit codes; tracebacks only with --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HappyhomeError as err:
            if ctx.meta.get("debug"):
                raise
            err_console.print(f"[bold red]Error:[/] {err}", markup=True, soft_wrap=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print("Interrupted: finished files are kept; run the command again to continue.")
            sys.exit(130)


@click.group(cls=HappyhomeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="happyhome")
@click.option("-w", "--workspace", "workspace", type=click.Path(file_okay=False, path_type=Path),
              default=".", show_default=True, envvar="HAPPYHOME_WORKSPACE",
              help="The workspace folder (holds happyhome.toml, input/, output/).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, workspace: Path, debug: bool) -> None:
    """happyhome — scoring rounds of the 社区高质量发展幸福家园行动.

    Send forms to assessors, collect and validate their returns, rank and grade the
    subjects, and roll the monthly supervision rounds up into trends.
    """
    ctx.meta["debug"] = debug
    ctx.obj = workspace


def open_workspace(ctx: click.Context) -> Workspace:
    return Workspace.open(ctx.obj)


def system_option(f):
    return click.option("--system", "system_ref", required=True, metavar="ID|PATH",
                        help=f"Indicator system: {' or '.join(BUILTIN)}, or the path of a YAML file in the same schema.")(f)


def period_option(f):
    return click.option("--period", required=True, callback=lambda c, p, v: _period(v), metavar="YYYY-MM",
                        help="The round, a month such as 2026-11.")(f)


def stage_option(f):
    return click.option("--stage", default="督导", show_default=True, callback=lambda c, p, v: _stage(v),
                        metavar="遴选|督导|评估|验收",
                        help="The programme stage of the round (selection|supervision|evaluation|acceptance "
                             "also accepted). Rounds of other stages than 督导 keep their files in "
                             "<period>-<stage> folders, e.g. output/2027-03-遴选/.")(f)


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
    table = Table("id", "name", "subject type", "items", "total", "version")
    for column in table.columns[:3]:
        column.no_wrap = True
    for sys_id in BUILTIN:
        s = load_system(sys_id)
        table.add_row(s.id, s.name, s.subject_type, str(len(s.items)), f"{s.total:g}", s.version)
    console.print(table)


@systems.command("show")
@click.argument("system_ref", metavar="ID|PATH")
@click.option("--full", is_flag=True, help="Print each criterion's whole text.")
def systems_show(system_ref: str, full: bool) -> None:
    """Print one system's items.

    Example: happyhome systems show community
    """
    s = load_system(system_ref)
    table = Table("编号", "一级指标", "二级指标", "三级指标", "满分", "评价内容", title=f"{s.name} ({s.id} {s.version})")
    for item in s.items:
        text = item.criterion if full else (item.criterion[:24] + "…" if len(item.criterion) > 24 else item.criterion)
        table.add_row(item.code, item.level1, item.level2, item.level3, f"{item.max:g}", text)
    table.add_row("", "", "", "合计", f"{s.total:g}", "")
    console.print(table)
    for decision in s.decisions:
        console.print(f"• {decision}")


# -- init -----------------------------------------------------------------------------------
@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
def init(directory: Path) -> None:
    """Create a workspace: input/, output/, happyhome.toml and an example roster.

    Example: happyhome init my-round
    """
    from pipeline.workspace import init_workspace

    from shlex import quote

    result = init_workspace(directory)
    # Quoted where a shell needs it (a space, a bracket), so a path or the hint can be copied.
    for path in result.created:
        console.print(f"已创建  {quote(str(path))}", markup=False)
    for path in result.kept:
        console.print(f"已保留  {quote(str(path))}（已存在，未改动）", markup=False)
    console.print(f"下一步：编辑 {quote(str(result.root / 'input' / 'roster.xlsx'))}，然后运行 "
                  f"`happyhome -w {quote(str(directory))} forms --system community --period YYYY-MM`", markup=False)


# -- forms ----------------------------------------------------------------------------------
@main.command()
@system_option
@period_option
@stage_option
@click.option("--roster", type=click.Path(dir_okay=False, path_type=Path), help="Roster workbook [default: paths.roster].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the forms [default: output/forms/<period>/<system>/].")
@click.option("--force", is_flag=True, help="Replace forms of this round that exist already.")
@click.pass_context
def forms(ctx: click.Context, system_ref: str, period: str, stage: str, roster: Path | None, out_dir: Path | None,
          force: bool) -> None:
    """Write one fillable workbook per assessor for a round.

    Example: happyhome forms --system community --period 2026-11
    """
    from pipeline.forms import plan_forms, write_forms
    from pipeline.roster import read_roster_for

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = read_roster_for(roster or ws.path("roster"), system)
    specs = plan_forms(ws, system, round_key(period, stage), people, out_dir)
    workers = workers_for(ws["collect"]["workers"]) if len(specs) >= 8 else 1
    with progress_bar("Writing forms", len(specs)) as advance:
        result = write_forms(specs, force=force, workers=workers, progress=advance)
    console.print(f"Wrote {len(result.paths)} form(s) ({result.subjects} subject sheets) to {result.out_dir}")


# -- status, rollup, demo ---------------------------------------------------------------------
def _roster_for(ws: Workspace, system):
    from pipeline.roster import read_roster_for

    return read_roster_for(ws.path("roster"), system)


@main.command()
@system_option
@period_option
@stage_option
@click.option("--export", "export", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the chase list (one row per missing assignment) to this .xlsx for mail merge.")
@click.pass_context
def status(ctx: click.Context, system_ref: str, period: str, stage: str, export: Path | None) -> None:
    """Per assessor: assigned, received and missing for a round, with contacts.

    Example: happyhome status --system community --period 2026-11 --export chase.xlsx
    """
    from pipeline.ledger import Ledger
    from pipeline.status import CONFLICT, NOT_RECEIVED, REJECTED, round_status, write_chase_list

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = _roster_for(ws, system)
    period = round_key(period, stage)
    with Ledger.for_reading(ws.path("ledger")) as ledger:
        result = round_status(ws, system, period, people, ledger)
    table = Table(title=f"{system.name} {period} 期回收情况（截止 {result.deadline:%Y-%m-%d %H:%M}）")
    for name in ("编号", "姓名", "联系方式"):
        table.add_column(name, no_wrap=True)
    for name in ("应评", "已收", "缺"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("缺的对象")
    marks = {NOT_RECEIVED: "", REJECTED: "*", CONFLICT: "!"}
    for a in result.assessors:
        owed = " ".join(m.subject + marks[m.reason] for m in a.missing)
        table.add_row(a.code, a.name, a.contact, str(a.assigned), str(a.received),
                      f"[red]{len(a.missing)}[/]" if a.missing else "0", owed)
    console.print(table)
    reasons = {m.reason for a in result.assessors for m in a.missing}
    notes = [note for reason, note in ((REJECTED, "* came back but failed validation"),
                                       (CONFLICT, "! 冲突：两份保存时间相同但评分不同的文件，办公室移除其中一份后重新收取"))
             if reason in reasons]
    console.print(f"Assigned {result.assigned}, received {result.received}, missing {result.missing}"
                  + (f" ({'; '.join(notes)})" if notes else ""))
    if export:
        write_chase_list(result, export)
        console.print(f"Chase list: {export} ({result.missing} row(s))")


# -- collect --------------------------------------------------------------------------------
@main.command()
@system_option
@period_option
@stage_option
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--roster", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Roster workbook [default: paths.roster].")
@click.option("--strict", is_flag=True, help="Exit with status 6 when any file or sheet was rejected.")
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

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = read_roster_for(roster or ws.path("roster"), system)
    period = round_key(period, stage)
    targets = list(paths) or [ws.returned(period)]
    with workspace_lock(ws):
        total = len(find_files(targets))
        with progress_bar("Collecting", total) as advance:
            result = run_collect(ws, system, period, targets, people, progress=advance)
    if not paths and not ws.returned(period).is_dir():
        err_console.print(f"Nothing to collect: {ws.returned(period)} does not exist.")
    table = Table(title=f"{system.name} {period}", show_header=True)
    table.add_column("files")
    table.add_column("count", justify="right")
    rows = [
        ("accepted", result.count("accepted")),
        ("partly accepted", result.count("partial")),
        ("rejected", result.count("rejected") + result.count(STATUS_UNREADABLE)),
        ("duplicates", result.count(STATUS_DUPLICATE)),
        ("already collected", result.count(STATUS_ALREADY)),
        ("forms of another round", result.count(STATUS_OTHER_ROUND)),
        ("superseded sheets", result.superseded),
        ("still missing (assignments)", result.missing),
    ]
    for label, n in rows:
        table.add_row(label, str(n))
    console.print(table)
    for f in result.files:
        if f.status in ("rejected", STATUS_UNREADABLE):
            console.print(f"rejected  {f.name}: {f.reason}", soft_wrap=True)
        elif f.status == "partial":
            console.print(f"partly    {f.name}: {f.sheets - f.accepted_sheets} of {f.sheets} subject sheets "
                          f"rejected (see sheet 问题 of the report)", soft_wrap=True)
        elif f.status == STATUS_OTHER_ROUND:
            console.print(f"other round  {f.name}: {f.reason}", soft_wrap=True)
        for earlier, sheet in f.replaced:
            console.print(f"replaced  {earlier} ({sheet}) by {f.name}", soft_wrap=True)
        for subject, other in f.conflicts:
            console.print(f"冲突      {f.name} 与 {other}：{subject} 保存时间相同但评分不同，均未计入（见“问题”表）",
                          soft_wrap=True)
    for settled in result.settled:
        kept = f"，以 {settled.kept} 为准" if settled.kept else ""
        console.print(f"冲突已处理  {settled.subject}（{settled.assessor}）：{'、'.join(settled.withdrawn)} 已移除{kept}",
                      soft_wrap=True)
    console.print(f"Collection report: {result.report}")
    if strict and result.rejected_any:
        ctx.exit(6)


# -- report ---------------------------------------------------------------------------------
@main.command()
@system_option
@period_option
@stage_option
@click.option("--method", type=click.Choice(["mean", "trimmed"]), default=None,
              help="How assessors' scores combine [default: scoring.method in happyhome.toml].")
@click.option("--by", type=click.Choice(["省份", "城市", "区县"]), default=None,
              help="Also rank within each province, city or county.")
@click.option("--calibrate", is_flag=True, help="Add totals and ranks with assessor leniency removed.")
@click.option("--top", default=10, show_default=True, help="Ranks to print.")
@click.pass_context
def report(ctx: click.Context, system_ref: str, period: str, stage: str, method: str | None, by: str | None,
           calibrate: bool, top: int) -> None:
    """Rank and grade a round: summary workbook, results CSV and HTML digest.

    Example: happyhome report --system community --period 2026-11 --by 省份
    """
    from pipeline.report import report as run_report

    ws = open_workspace(ctx)
    period = round_key(period, stage)
    result = run_report(ws, system_ref, period, method=method, by=by, calibrate=calibrate)
    res = result.scores
    decimals = res.params["rank_decimals"]
    table = Table(title=f"{result.system.name} {period}（{res.method}）")
    for name, justify in (("排名", "right"), ("编号", "left"), ("名称", "left"), ("总分", "right"),
                          ("等级", "left"), ("评估人数", "right"), ("区间", "left")):
        table.add_column(name, justify=justify, no_wrap=True)
    for r in res.subjects.head(top).to_dict("records"):
        rated = r["n_assessors"] > 0
        table.add_row(f"{int(r['rank'])}" if rated else "", r["subject"], r["name"],
                      f"{r['total']:.{decimals}f}" if rated else "", r["grade"], str(r["n_assessors"]), r["rank_label"])
    console.print(table)
    console.print(f"Rated {res.n_rated} of {len(res.subjects)}; returns {result.received}/{result.assigned}; "
                  f"{len(res.flags)} flag(s). {res.agreement.get('reading', '')}", soft_wrap=True)
    if result.acceptance is not None:
        counted = "，".join(f"{name} {n}" for name, n in result.acceptance.counts)
        console.print(_("Acceptance: {counts}; {notices} rectification notice(s).").format(
            counts=counted, notices=len(result.acceptance.notices)), soft_wrap=True)
    for path in result.paths:
        console.print(f"wrote    {path}", soft_wrap=True)


# -- rollup ---------------------------------------------------------------------------------
def _month(ctx, param, value):
    return None if value is None else _period(value)


@main.command()
@system_option
@click.option("--from", "start", callback=_month, metavar="YYYY-MM", help="First month [default: the first on record].")
@click.option("--to", "end", callback=_month, metavar="YYYY-MM", help="Last month [default: the last on record].")
@click.option("--method", type=click.Choice(["mean", "trimmed"]), default=None,
              help="How assessors' scores combine [default: scoring.method in happyhome.toml].")
@stage_option
@click.pass_context
def rollup(ctx: click.Context, system_ref: str, start: str | None, end: str | None, method: str | None,
           stage: str) -> None:
    """Roll the monthly rounds up: totals, changes, ranks, flags and returns by month.

    Writes output/rollup/rollup-<system>-<from>_<to>.xlsx and .html. A month in the range
    with nothing collected is shown as 无数据.

    Example: happyhome rollup --system community --from 2026-06 --to 2026-11
    """
    from pipeline.ledger import Ledger
    import pandas as pd

    from pipeline.rollup import DROP, UNRATED, rollup as run_rollup

    ws = open_workspace(ctx)
    system = load_system(system_ref)
    people = _roster_for(ws, system)
    with Ledger.for_reading(ws.path("ledger")) as ledger:
        result = run_rollup(ws, system, people, ledger, start, end, method, stage=stage)
    table = Table(title=f"{system.name} {result.start} … {result.end}")
    for name, justify in (("期次", "left"), ("已评", "right"), ("平均总分", "right"), ("按时", "right"),
                          ("逾期", "right"), ("未收", "right"), ("下降", "right"), ("未评", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    monthly, flags = result.monthly, result.flags
    for r in result.returns_month.itertuples(index=False):
        if not r.has_data:
            table.add_row(r.period, "[dim]无数据[/]", "", "", "", "", "", "")
            continue
        month = monthly[monthly["period"] == r.period]
        kinds = flags[flags["period"] == r.period]["kind"]
        mean = month["total"].mean()
        table.add_row(r.period, str(int(month["total"].notna().sum())), "—" if pd.isna(mean) else f"{mean:.2f}",
                      str(int(r.on_time)), str(int(r.late)), str(int(r.missing)),
                      str(int((kinds == DROP).sum())), str(int((kinds == UNRATED).sum())))
    console.print(table)
    console.print(f"wrote    {result.xlsx}", soft_wrap=True)
    console.print(f"wrote    {result.html}", soft_wrap=True)


# -- demo -----------------------------------------------------------------------------------
@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="demo")
@click.option("--small", is_flag=True, help="A small programme (6 zones, 12 communities, 5 assessors, 2 months), for tests.")
@click.option("--end", default="2026-11", show_default=True, callback=_month, metavar="YYYY-MM",
              help="The last of the six monthly rounds.")
@click.option("--seed", default=20261129, show_default=True, help="Random seed: the same seed gives the same files.")
def demo(directory: Path, small: bool, end: str, seed: int) -> None:
    """Build an example workspace in DIRECTORY and run six monthly rounds in it.

    A synthetic programme (30 zones, 100 communities, 12 assessors) with plausible scores
    and a few faulty returns: forms, returns, collect and report for both systems every
    month, then the roll-ups, and last a 验收 round of the zones the month after (results,
    rectification list and notices). A previous demo in DIRECTORY is cleared and rebuilt; any
    other non-empty folder is refused.

    Example: happyhome demo ./demo
    """
    import time

    from pipeline.demo import FULL, SMALL, build_demo

    started = time.perf_counter()
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console) as bar:
        def stage(label: str, total: int):
            task = bar.add_task(label, total=total)
            return lambda n=1: bar.advance(task, n)

        result = build_demo(directory, SMALL if small else FULL, end=end, seed=seed, stage=stage)
    elapsed = time.perf_counter() - started
    console.print(f"Demo workspace: {result.root}  ({result.subjects} subjects, {result.assessors} assessors, "
                  f"{len(result.periods)} months {result.periods[0]}…{result.periods[-1]}, {result.files} workbooks)",
                  soft_wrap=True)
    table = Table(title="Faulty returns planted in the demo", show_lines=False)
    table.add_column("期次", no_wrap=True)
    table.add_column("文件", overflow="fold")
    table.add_column("问题", overflow="fold")
    for period, name, note in result.faults:
        if note != "逾期":
            table.add_row(period, name, note)
    console.print(table)
    late = sum(1 for _, _, note in result.faults if note == "逾期")
    console.print(f"…and {late} returns that arrived after the deadline.")
    for system, path in result.digests.items():
        console.print(f"latest digest  {system:<10} {path}", soft_wrap=True)
    for system, (xlsx, html) in result.rollups.items():
        console.print(f"roll-up        {system:<10} {html}", soft_wrap=True)
        console.print(f"{'':<26}{xlsx}", soft_wrap=True)
    if result.acceptance is not None:
        accepted = result.acceptance
        console.print(_("acceptance     {system:<10} {path}").format(system=accepted.system.id, path=accepted.summary),
                      soft_wrap=True)
        counted = "，".join(f"{name} {n}" for name, n in accepted.acceptance.counts)
        console.print(_("{indent}{counts}; rectification list and {notices} notice(s) in {folder}").format(
            indent=" " * 26, counts=counted, notices=len(accepted.acceptance.notices),
            folder=accepted.acceptance.rectification.parent), soft_wrap=True)
    steps = ", ".join(f"{name} {sec:.1f} s" for name, sec in result.seconds.items())
    console.print(f"Done in {elapsed:.1f} s ({steps}). Try: happyhome -w {directory} status --system community --period {result.periods[-1]}",
                  soft_wrap=True)
