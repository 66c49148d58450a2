"""happyhome benchmark: forms, collect and report against bare-library baselines, in one run.

    python benchmarks/bench.py                 # quick: about a minute
    python benchmarks/bench.py --national      # 2,000 workbooks x 20 subjects (several minutes)
    python benchmarks/bench.py --province --only collect   # 360 workbooks x 40 subjects
    python benchmarks/bench.py --national --ledger-url postgresql://…/bench   # SQLite vs PostgreSQL

Each stage runs --repeat times; the table shows the median wall time, the ratio to its
baseline measured in the same run on the same files, and the peak memory (RSS high-water mark
of the process that ran it: ru_maxrss of this process, or of the CLI child for collect/report).
Collect and its bare-read baseline run interleaved (bare, collect, bare, collect, ...), so that
a busy neighbour slows both alike; their CPU time (user + system of the process and all its
children, the pool workers included) is shown beside the wall time, being far less noisy. The
package is byte-compiled before the collect rounds, as an installed happyhome is, and the
collect/bare ratio is printed against issue 11 part 7's goal (1.2x). happyhome's reader alone (one
process, what collect's workers read, the size proof included) runs in the same rounds, to show
what part 1's bounds cost apart from the rest of collect.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import xlsxwriter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Workspace  # noqa: E402
from pipeline.forms import FormSpec, HEADER, write_form, write_forms  # noqa: E402
from pipeline.officekey import ensure_key  # noqa: E402
from pipeline.roster import Assessor, Subject, write_roster  # noqa: E402
from pipeline.systems import load_system  # noqa: E402

PERIOD = "2026-11"
COLLECT_GOAL = 1.2  # happyhome collect's wall time against the bare python-calamine read (issue 11 part 7)


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# -- the synthetic round --------------------------------------------------------------------
def design(n_subjects: int, n_assessors: int, per_subject: int, seed: int = 7):
    """Subjects, assessors and a balanced assignment: each subject rated by `per_subject`."""
    subjects = [Subject(f"C{n:05d}", f"第{n}社区", "创新实践社区", "浙江省", "杭州市", "上城区") for n in range(1, n_subjects + 1)]
    assessors = [Assessor(f"E{n:04d}", f"评估人{n}", "某大学", f"1380000{n:04d}") for n in range(1, n_assessors + 1)]
    pairs = []
    for i, subject in enumerate(subjects):
        for k in range(per_subject):
            pairs.append((assessors[(i * per_subject + k) % n_assessors].code, subject.code))
    return subjects, assessors, pairs


def answers_for(system, subject_codes, rng: random.Random):
    out = {}
    for code in subject_codes:
        quality = rng.uniform(0.55, 0.95)
        out[code] = {i.code: (min(i.max, max(0.0, round((quality + rng.uniform(-0.1, 0.1)) * i.max * 2) / 2)), "")
                     for i in system.items}
    return out


def bare_xlsxwriter(spec: FormSpec) -> None:
    """The baseline: the same sheets, cells and validation written with xlsxwriter directly."""
    book = xlsxwriter.Workbook(str(spec.path), {"in_memory": True})
    book.add_worksheet("填表说明").write(0, 0, spec.system.name)
    summary = book.add_worksheet("汇总")
    summary.write_row(0, 0, ["编号", "名称", "已填项数", "指标项数", "合计", "满分", "状态"])
    n_items = len(spec.system.items)
    last = 6 + n_items
    for r, subject in enumerate(spec.subjects, start=1):
        ws = book.add_worksheet(subject.code)
        ws.write_row(1, 0, ["评估对象", subject.name, "", "", "", "对象编号", subject.code])
        ws.write_row(2, 0, ["评估人", spec.assessor.name, "", "", "", "评估人编号", spec.assessor.code])
        ws.write_row(3, 0, ["期次", spec.period, "", "", "", "指标体系", spec.system.id])
        ws.write_row(5, 0, HEADER)
        for n, item in enumerate(spec.system.items):
            ws.write_row(6 + n, 0, [item.code, item.level1, item.level2, item.level3, item.criterion, item.max])
            ws.data_validation(6 + n, 6, 6 + n, 6, {"validate": "decimal", "criteria": "between", "minimum": 0, "maximum": item.max})
        ws.write_row(last, 0, ["合计", "", "", "", "", f"=SUM(F7:F{last})", f"=SUM(G7:G{last})", f'=COUNT(G7:G{last})'])
        for k, level2 in enumerate(spec.system.level2_names, start=1):
            ws.write_row(last + k, 2, [level2, "小计", "", f"=SUMIF($C$7:$C${last},C{last + k + 1},$G$7:$G${last})"])
        summary.write_row(r, 0, [subject.code, subject.name, f"=COUNT('{subject.code}'!G7:G{last})", n_items,
                                 f"=SUM('{subject.code}'!G7:G{last})", spec.system.total, f'=IF(C{r + 1}=D{r + 1},"已完成","未完成")'])
    book.add_worksheet("_happyhome").write_row(0, 0, ["form_id", spec.period])
    book.close()


def bench_forms(args, work: Path) -> list[dict]:
    system = load_system("community")
    subjects, assessors, pairs = design(args.form_subjects, args.form_assessors, args.form_assessors)
    key = os.urandom(32)  # forms are sealed with an office key, as `happyhome forms` writes them
    specs = [FormSpec(work / "forms" / f"{a.code}.xlsx", system, PERIOD, a, tuple(subjects), key=key) for a in assessors]
    (work / "forms").mkdir(parents=True, exist_ok=True)
    rows = []
    base = timed(lambda: [bare_xlsxwriter(s) for s in specs], args.repeat)
    one = timed(lambda: write_forms(specs, force=True, workers=1), args.repeat)
    two = timed(lambda: write_forms(specs, force=True, workers=2), args.repeat)
    label = f"forms: {len(specs)} workbooks x {len(subjects)} subjects"
    rows.append(row(f"{label}, bare xlsxwriter (1 core)", base))
    rows.append(row(f"{label}, happyhome (1 core)", one, base))
    rows.append(row(f"{label}, happyhome (2 cores)", two, base))
    return rows


# -- the returned month -----------------------------------------------------------------------
def _write_returns(batch):
    for spec in batch:
        write_form(spec)
    return len(batch)


def build_month(args, root: Path) -> Path:
    """A workspace whose returned folder holds `files` filled workbooks of `subjects_per_file` each."""
    if args.reuse and (root / "input" / "roster.xlsx").exists():
        return root
    n_subjects = args.files * args.subjects_per_file // args.raters
    subjects, assessors, pairs = design(n_subjects, args.files, args.raters)
    root.mkdir(parents=True, exist_ok=True)
    (root / "input").mkdir(exist_ok=True)
    write_roster(root / "input" / "roster.xlsx", [(s.code, s.name, s.type, s.province, s.city, s.county) for s in subjects],
                 [(a.code, a.name, a.org, a.contact) for a in assessors], pairs)
    system = load_system("community")
    by_code = {s.code: s for s in subjects}
    mine: dict[str, list[str]] = {}
    for a, s in pairs:
        mine.setdefault(a, []).append(s)
    rng = random.Random(11)
    returned = root / "input" / "returned" / PERIOD
    key, _ = ensure_key(Workspace.open(root))  # returns sealed by this workspace's key, as in a real round
    specs = [FormSpec(returned / f"{PERIOD}_community_{a.code}.xlsx", system, PERIOD, a,
                      tuple(by_code[c] for c in mine[a.code]), answers=answers_for(system, mine[a.code], rng), key=key)
             for a in assessors]
    start = time.perf_counter()
    batches = [specs[i::8] for i in range(8)]
    with ProcessPoolExecutor(2) as pool:
        sum(pool.map(_write_returns, batches))
    print(f"built {len(specs)} returned workbooks ({n_subjects} subjects, {len(pairs)} sheets) "
          f"in {time.perf_counter() - start:.1f} s")
    return root


def child(code: str, *argv: str, root: Path = ROOT) -> dict:
    """Run `code` in a fresh interpreter; it returns its wall seconds, CPU seconds (user + system,
    its children included) and peak RSS in MB (its children included). What comes before a line
    `# -- timed --` in `code` is setup (a fresh workspace), neither timed nor counted."""
    setup, _, timed = code.rpartition("# -- timed --")
    script = f"""
import json, resource, sys, time
sys.argv = {["bench-child", *argv]!r}
{setup}
def used():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
cpu_before = used()
start = time.perf_counter()
{timed}
seconds = time.perf_counter() - start
cpu = used() - cpu_before  # the timed part, its children included; interpreter start and setup excluded
own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
peak = max(own.ru_maxrss, kids.ru_maxrss)
print("BENCH", json.dumps({{"seconds": seconds, "cpu": cpu, "peak_mb": peak / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root)})
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr[-3000:]}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("BENCH ")][-1]
    return json.loads(line[6:])


BARE_CALAMINE = """
from pathlib import Path
import python_calamine as pc
for path in sorted(Path(sys.argv[1]).glob("*.xlsx")):
    book = pc.CalamineWorkbook.from_path(str(path))
    for name in book.sheet_names:
        book.get_sheet_by_name(name).to_python()
    book.close()
"""

# What collect's workers read, in one process and nothing else of collect: happyhome's reader
# (pipeline.reader.read_workbook) over every file, each sheet part's size proven before calamine
# parses it (part 1), the rows handed to Python, the sheets collect never reads left out as there.
# Its import is setup: pipeline.collect (for that list) is most of happyhome's import.
READER_ALONE = """
from pathlib import Path
from pipeline.collect import UNREAD_SHEETS
from pipeline.reader import Limits, read_workbook
limits = Limits()
# -- timed --
for path in sorted(Path(sys.argv[1]).glob("*.xlsx")):
    read_workbook(path, limits, skip=UNREAD_SHEETS)
"""

OPENPYXL_LOOP = """
from pathlib import Path
import openpyxl
n = int(sys.argv[2])
paths = sorted(Path(sys.argv[1]).glob("*.xlsx"))
paths = paths[:n] if n else paths
scores = 0
for path in paths:
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    for ws in book.worksheets:
        if ws.title in ("填表说明", "汇总", "_happyhome"):
            continue
        for row in ws.iter_rows(min_row=7, max_col=8, values_only=True):
            if row and isinstance(row[0], str) and row[0][:1] == "C" and row[6] is not None:
                scores += 1
    book.close()
print("SCORES", scores)
"""

COLLECT = """
import os, shutil
from pathlib import Path
root = Path(sys.argv[1]); ws = Path(sys.argv[2])
shutil.rmtree(ws, ignore_errors=True); (ws / "input").mkdir(parents=True)
shutil.copy(root / "input" / "roster.xlsx", ws / "input" / "roster.xlsx")
(ws / "ledger").mkdir()
shutil.copy(root / "ledger" / "office.key", ws / "ledger" / "office.key")  # the office that sent the forms
# The synthetic experts write no 备注: with the 扣分理由 rule on, every deduction would be a warning
# (hundreds of thousands), which measures the flood, not collect. RULE=on keeps the default rule.
if os.environ.get("RULE") != "on":
    (ws / "happyhome.toml").write_text("[forms]\\nreason_below_share = 0\\n", encoding="utf-8")
# happyhome's import is timed, as the bare read's import of python_calamine is
# -- timed --
from pipeline.cli import main
try:
    main(["-w", str(ws), "collect", "--system", "community", "--period", "2026-11", str(root / "input" / "returned" / "2026-11")])
except SystemExit as exit:
    assert not exit.code, exit.code
"""

REPORT = """
from pathlib import Path
from pipeline.cli import main
try:
    main(["-w", sys.argv[1], "report", "--system", "community", "--period", "2026-11"])
except SystemExit as exit:
    assert not exit.code, exit.code
"""


def reset_pg(url: str) -> None:
    """Empty the benchmark's PostgreSQL database (untimed), as a fresh workspace has a fresh ledger."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def pg_child(url: str, code: str, *argv: str) -> dict:
    os.environ["HAPPYHOME_LEDGER_URL"] = url
    try:
        return child(code, *argv)
    finally:
        del os.environ["HAPPYHOME_LEDGER_URL"]


def bench_ledgers(args, month: Path) -> list[dict]:
    """collect and report on SQLite and on PostgreSQL (--ledger-url), runs interleaved so that the
    machine's noise falls on both alike. Peak RSS is happyhome's processes, not the server's."""
    label = f"{args.files} workbooks x {args.subjects_per_file} subjects"
    lite, pg = [], []
    for i in range(args.repeat):
        lite.append(child(COLLECT, str(month), str(month / "ws-lite")))
        reset_pg(args.ledger_url)
        pg.append(pg_child(args.ledger_url, COLLECT, str(month), str(month / "ws-pg")))
    lite_t, pg_t = [r["seconds"] for r in lite], [r["seconds"] for r in pg]
    rows = [row(f"collect {label}, SQLite ledger", lite_t, peak_mb=max(r["peak_mb"] for r in lite)),
            row(f"collect {label}, PostgreSQL ledger (vs SQLite)", pg_t, lite_t, peak_mb=max(r["peak_mb"] for r in pg))]
    lite_r, pg_r = [], []
    for i in range(args.repeat):
        lite_r.append(child(REPORT, str(month / "ws-lite")))
        pg_r.append(pg_child(args.ledger_url, REPORT, str(month / "ws-pg")))
    rows += [row(f"report {label}, SQLite ledger", [r["seconds"] for r in lite_r], peak_mb=max(r["peak_mb"] for r in lite_r)),
             row(f"report {label}, PostgreSQL ledger (vs SQLite)", [r["seconds"] for r in pg_r],
                 [r["seconds"] for r in lite_r], peak_mb=max(r["peak_mb"] for r in pg_r))]
    return rows


def bench_collect(args, month: Path) -> list[dict]:
    returned = str(month / "input" / "returned" / PERIOD)
    label = f"collect: {args.files} workbooks x {args.subjects_per_file} subjects"
    bare, reader, runs, older = [], [], [], []
    # Bytecode first, as an installed happyhome has it (pip compiles it; a checkout caches it on its
    # first run): where PYTHONDONTWRITEBYTECODE is set, every timed run would compile the package again.
    for tree in (ROOT, *([args.against] if args.against else [])):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(tree) / "pipeline")], check=True,
                       capture_output=True, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    load = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    # Each run gets a workspace never used before, and they are all removed after the last run:
    # removing the previous run's ~400 files just before a run made ext4 skip those recently freed
    # inodes while collect archived its files (~0.4 s of the main process's system time), a cost
    # of the benchmark, not of an office's collect.
    fresh = month / f"runs-{os.getpid()}"
    for i in range(args.repeat):  # interleaved: a busy neighbour slows both alike
        bare.append(child(BARE_CALAMINE, returned))
        reader.append(child(READER_ALONE, returned))
        runs.append(child(COLLECT, str(month), str(fresh / f"ws{i}")))
        if args.against:  # another checkout's collect, in the same rounds
            older.append(child(COLLECT, str(month), str(fresh / f"ws-against{i}"), root=args.against))
        load += [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    shutil.rmtree(fresh, ignore_errors=True)
    if load:  # the machine's 1-minute load average before and after each round: 2 cores, so above 2 is busy
        print("load average (1 min) during the collect rounds: " + " ".join(f"{x:.2f}" for x in load))
    n_open = args.openpyxl_files or args.files
    opx = [child(OPENPYXL_LOOP, returned, str(n_open)) for _ in range(max(1, args.repeat - 1))]
    scale = args.files / n_open
    opx_scaled = [r["seconds"] * scale for r in opx]
    bare_t = [r["seconds"] for r in bare]
    bare_cpu = [r["cpu"] for r in bare]
    rows = [row(f"{label}, bare python-calamine read", bare_t, peak_mb=max(r["peak_mb"] for r in bare), cpu=bare_cpu,
                load=load),
            row(f"{label}, happyhome collect (ledger, archive, report)", [r["seconds"] for r in runs], bare_t,
                peak_mb=max(r["peak_mb"] for r in runs), cpu=[r["cpu"] for r in runs], cpu_baseline=bare_cpu)]
    if older:
        rows.append(row(f"{label}, collect of {args.against}", [r["seconds"] for r in older], bare_t,
                        peak_mb=max(r["peak_mb"] for r in older), cpu=[r["cpu"] for r in older], cpu_baseline=bare_cpu))
    reader_t = [r["seconds"] for r in reader]
    rows.append(row(f"{label}, happyhome's reader alone, one process (as collect reads)", reader_t, bare_t,
                    peak_mb=max(r["peak_mb"] for r in reader), cpu=[r["cpu"] for r in reader], cpu_baseline=bare_cpu))
    # issue 11 part 7's goal: collect within 1.2x the bare read of the same files (wall, medians)
    ratio = rows[1]["ratio"]
    print(f"collect / bare read: {ratio:.2f}x wall, {rows[1]['cpu_ratio']:.2f}x CPU (goal: <= {COLLECT_GOAL:g}x wall: "
          f"{'met' if ratio <= COLLECT_GOAL else 'not met'})")
    # What part 1's bounds cost alone (the reader in one process against the bare read), and what the
    # rest of collect (validation, ledger, archive, report) adds on top once it has both cores.
    collect_med, reader_med = statistics.median(r["seconds"] for r in runs), statistics.median(reader_t)
    print(f"reader alone / bare read: {reader_med / statistics.median(bare_t):.2f}x wall; "
          f"collect / reader alone: {collect_med / reader_med:.2f}x wall")
    note = "" if n_open == args.files else f" ({n_open} files, scaled x{scale:g})"
    rows.append(row(f"{label}, openpyxl read-only loop{note}", opx_scaled, bare_t, peak_mb=max(r["peak_mb"] for r in opx)))
    rows.append({"stage": f"{label}: openpyxl loop / happyhome collect", "median_s": statistics.median(opx_scaled) / collect_med,
                 "runs": len(opx), "ratio": None, "peak_mb": 0, "is_ratio": True})
    return rows


def bench_report(args, month: Path) -> list[dict]:
    ws = month / "ws0"
    if not (ws / "ledger").exists() or args.reuse:
        child(COLLECT, str(month), str(ws))
    runs = [child(REPORT, str(ws)) for _ in range(args.repeat)]
    return [row(f"report: {args.files * args.subjects_per_file} sheets "
                f"({args.files * args.subjects_per_file // args.raters} subjects x {args.raters} assessors)",
                [r["seconds"] for r in runs], peak_mb=max(r["peak_mb"] for r in runs))]


def bench_calibration(args) -> list[dict]:
    import numpy as np
    import pandas as pd

    from pipeline import calibration

    rng = np.random.default_rng(5)
    rows = [(f"S{s:03d}", f"A{a}", float(np.clip(rng.normal(75, 8), 0, 100))) for s in range(100) for a in range(5)]
    totals = pd.DataFrame(rows, columns=["subject", "assessor", "total"])
    effects = timed(lambda: calibration.calibrated_totals(totals, calibration.assessor_effects(totals)), args.repeat)
    boot = timed(lambda: calibration.bootstrap(totals, n=2000, seed=1), args.repeat)
    agree = timed(lambda: calibration.agreement(totals), args.repeat)
    return [row("calibration: assessor effects + calibrated totals, 100 subjects x 5 assessors", effects),
            row("calibration: bootstrap 2,000 replicates, 100 subjects x 5 assessors", boot),
            row("calibration: Krippendorff's alpha, 100 subjects x 5 assessors", agree)]


def row(name: str, times: list[float], baseline: list[float] | None = None, peak_mb: float | None = None,
        cpu: list[float] | None = None, cpu_baseline: list[float] | None = None, load: list[float] | None = None) -> dict:
    med = statistics.median(times)
    out = {"stage": name, "median_s": med, "runs": len(times),
           "ratio": med / statistics.median(baseline) if baseline else None,
           "peak_mb": peak_mb if peak_mb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if cpu:  # CPU seconds of the process and its children: far less noisy than wall time on a shared machine
        out["cpu_s"] = statistics.median(cpu)
        out["times"], out["cpu_times"] = times, cpu
        if cpu_baseline:
            out["cpu_ratio"] = out["cpu_s"] / statistics.median(cpu_baseline)
    if load:
        out["load_average"] = load
    return out


def print_table(rows: list[dict]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table("stage", "median (s)", "runs", "x baseline", "CPU (s)", "CPU x baseline", "peak RSS (MB)")
        for r in rows:
            if r.get("is_ratio"):
                table.add_row(r["stage"], f"{r['median_s']:.1f}x faster", "", "", "", "", "")
                continue
            table.add_row(r["stage"], f"{r['median_s']:.3f}", str(r["runs"]),
                          f"{r['ratio']:.2f}" if r["ratio"] is not None else "—",
                          f"{r['cpu_s']:.2f}" if "cpu_s" in r else "", f"{r['cpu_ratio']:.2f}" if "cpu_ratio" in r else "",
                          f"{r['peak_mb']:.0f}")
        Console().print(table)
    except ImportError:
        for r in rows:
            print(r)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="runs per stage (the median is reported)")
    p.add_argument("--form-subjects", type=int, default=100)
    p.add_argument("--form-assessors", type=int, default=10)
    p.add_argument("--files", type=int, default=200, help="returned workbooks in the collect/report month")
    p.add_argument("--subjects-per-file", type=int, default=20)
    p.add_argument("--raters", type=int, default=4, help="assessors per subject in the collect/report month")
    p.add_argument("--openpyxl-files", type=int, default=0,
                   help="time the openpyxl baseline on this many of the files and scale per file (0 = all)")
    p.add_argument("--national", action="store_true",
                   help="the national month: 2,000 workbooks x 20 subjects, 4 assessors each; openpyxl on 200 files")
    p.add_argument("--province", action="store_true",
                   help="a province's month: 360 workbooks x 40 subjects, 4 assessors each; openpyxl on 20 files")
    p.add_argument("--only", choices=["forms", "collect", "report", "calibration"], action="append")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    p.add_argument("--reuse", action="store_true", help="reuse the returned month already in --work (same sizes)")
    p.add_argument("--ledger-url", metavar="URL",
                   help="a postgresql:// database (emptied by the benchmark): collect and report the month on "
                        "SQLite and on PostgreSQL, interleaved, instead of the collect/report stages")
    p.add_argument("--against", type=Path, help="also time the collect of this checkout (e.g. a worktree of main), "
                                                "interleaved with this one's")
    args = p.parse_args(argv)
    if args.national:
        args.files, args.subjects_per_file, args.raters = 2000, 20, 4
        args.openpyxl_files = args.openpyxl_files or 200
        args.repeat = min(args.repeat, 3)
    if args.province:
        args.files, args.subjects_per_file, args.raters = 360, 40, 4
        args.openpyxl_files = args.openpyxl_files or 20
    work = args.work
    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    stages = args.only or ["forms", "collect", "report", "calibration"]
    rows: list[dict] = []
    if "forms" in stages:
        rows += bench_forms(args, work / "forms-bench")
    if args.ledger_url:
        rows += bench_ledgers(args, build_month(args, work / "month"))
        stages = [s for s in stages if s not in ("collect", "report")]
    if "collect" in stages or "report" in stages:
        month = build_month(args, work / "month")
        if "collect" in stages:
            rows += bench_collect(args, month)
        if "report" in stages:
            rows += bench_report(args, month)
            # and at programme scale: 100 subjects x 5 assessors (25 workbooks of 20 subjects)
            small = argparse.Namespace(**{**vars(args), "files": 25, "subjects_per_file": 20, "raters": 5,
                                          "reuse": False})
            rows += bench_report(small, build_month(small, work / "month-100x5"))
    if "calibration" in stages:
        rows += bench_calibration(args)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
