"""happyhome benchmark: forms, collect and report against bare-library baselines, in one run.

    python benchmarks/bench.py                 # quick: about a minute
    python benchmarks/bench.py --national      # 2,000 workbooks x 20 subjects (several minutes)

Each stage runs --repeat times; the table shows the median wall time, the ratio to its
baseline measured in the same run on the same files, and the peak memory (RSS high-water mark
of the process that ran it: ru_maxrss of this process, or of the CLI child for collect/report).
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
from pipeline.roster import Assessor, Subject, write_roster  # noqa: E402
from pipeline.systems import load_system  # noqa: E402

PERIOD = "2026-11"


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
    ws = Workspace.open(work)
    specs = [FormSpec(work / "forms" / f"{a.code}.xlsx", system, PERIOD, a, tuple(subjects)) for a in assessors]
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


def row(name: str, times: list[float], baseline: list[float] | None = None, peak_mb: float | None = None) -> dict:
    med = statistics.median(times)
    return {"stage": name, "median_s": med, "runs": len(times),
            "ratio": med / statistics.median(baseline) if baseline else None,
            "peak_mb": peak_mb if peak_mb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def print_table(rows: list[dict]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table("stage", "median (s)", "runs", "x baseline", "peak RSS (MB)")
        for r in rows:
            table.add_row(r["stage"], f"{r['median_s']:.3f}", str(r["runs"]),
                          f"{r['ratio']:.2f}" if r["ratio"] is not None else "—", f"{r['peak_mb']:.0f}")
        Console().print(table)
    except ImportError:
        for r in rows:
            print(r)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="runs per stage (the median is reported)")
    p.add_argument("--form-subjects", type=int, default=100)
    p.add_argument("--form-assessors", type=int, default=10)
    p.add_argument("--only", choices=["forms", "collect", "report", "calibration"], action="append")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    stages = args.only or ["forms"]
    rows: list[dict] = []
    if "forms" in stages:
        rows += bench_forms(args, work / "forms-bench")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
