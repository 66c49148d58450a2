"""Time `report.summary_book` alone: run the round's report once (in one process) keeping the
summary's inputs, then write the summary workbook from them RUNS times, to a scratch file.

Run: python benchmarks/summary_book.py WORKSPACE [--system community] [--period 2026-11] [--runs 3]
(the national month: a workspace made by `python benchmarks/bench.py --national`). Prints each
run's wall and CPU time and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import pipeline.report as reporting
from pipeline.config import Workspace


def summary_inputs(root: Path, system: str, period: str) -> tuple:
    """The RoundResult and options `summary_book` is called with by one (serial) report."""
    kept = {}
    real = reporting.summary_book

    def keep(tmp, res, **options):
        kept.update(res=res, options={k: v for k, v in options.items() if k != "steps"})
        return real(tmp, res, **options)

    reporting.summary_book, reporting.second_process = keep, lambda ws, n=None: False
    try:
        reporting.report(Workspace.open(root), system, period)
    finally:
        reporting.summary_book = real
    return kept["res"], kept["options"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--system", default="community")
    parser.add_argument("--period", default="2026-11")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    res, options = summary_inputs(args.workspace, args.system, args.period)
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.runs):
            wall, cpu = time.perf_counter(), os.times()
            reporting.summary_book(Path(scratch) / "summary.xlsx", res, **options)
            spent = os.times()
            print(f"summary_book: {time.perf_counter() - wall:.2f} s wall, "
                  f"{spent.user - cpu.user + spent.system - cpu.system:.2f} s CPU")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB (with the report run before)")
