"""Run real-world spreadsheets through the reader and print a table of outcome classes.

Usage: python benchmarks/realworld.py FOLDER [--mb 1024] [--seconds 20] [--csv out.csv] [--jobs 4]

Every file under FOLDER (by extension: xlsx xlsm xlsb xls ods and friends) is read by
`pipeline.collect.examine` in a child process of its own with an address-space cap and a
timeout, against a small roster, so that a crash, an abort, a panic, a hang or a memory
blow-up shows as an outcome instead of stopping the hunt. The table counts outcome classes:
crash (killed by a signal or died), timeout, memout (MemoryError under the cap), raised (an
exception escaped examine), english (a Chinese message that carries ASCII library text), and
the problem code for every file examine judged normally.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import multiprocessing.connection
import os
import re
import resource
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # each BLAS thread reserves address space under the cap

from pipeline.collect import Context, examine  # noqa: E402 - imported once, before the children fork
from pipeline.systems import load_system  # noqa: E402

EXTENSIONS = {".xlsx", ".xlsm", ".xlsb", ".xls", ".ods", ".xla", ".xlam", ".xltx", ".xltm", ".xlt"}
QUOTED = re.compile(r"“[^”]*”")  # a sheet's own name or a value, quoted in a message, is not library text
# Runs of Latin words in a message: library text leaking into what an office forwards.
ENGLISH = re.compile(r"[A-Za-z]{3,}(?:[ :_-]+[A-Za-z]{2,}){2,}")


def _context() -> Context:
    return Context(load_system("community"), "2026-11", frozenset({"E01"}), frozenset({"C001"}),
                   {"E01": frozenset({"C001"})})


def _child(path: str, mb: int, conn) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    try:
        data = Path(path).read_bytes()
        start = time.monotonic()
        out = examine(data, Path(path).name, _context())
        seconds = time.monotonic() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        problems = [(p.code, p.message, p.technical) for p in out.problems]
        conn.send(("ok", out.status, out.format, problems, seconds, peak))
    except MemoryError:
        conn.send(("memout", "", "", [], 0, 0))
    except BaseException as err:  # noqa: BLE001 - a panic is a BaseException: record it
        conn.send(("raised", f"{type(err).__name__}: {str(err)[:200]}", "", [], 0, 0))


def _start(path: Path, mb: int):
    ctx = mp.get_context("fork")  # forked from the main thread: the imports are already done
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(path), mb, send))
    proc.start()
    send.close()
    return proc, recv, time.monotonic()


def _finish(path: Path, proc, recv, start: float, timed_out: bool) -> dict:
    """A child's outcome as a row."""
    row = {"file": str(path), "size": path.stat().st_size, "outcome": "", "codes": "", "detail": "",
           "seconds": 0.0, "peak_mb": 0.0}
    kind, status, problems, secs, peak = "timeout", "", [], 0.0, 0.0
    if not timed_out:
        try:
            kind, status, _, problems, secs, peak = recv.recv()
        except (EOFError, OSError):
            kind = "crash"
    if timed_out:
        proc.kill()
    proc.join(5)
    recv.close()
    if kind == "crash":
        status = f"exit {proc.exitcode}"
    row.update(seconds=round(secs if kind == "ok" else time.monotonic() - start, 2), peak_mb=round(peak))
    if kind != "ok":
        row.update(outcome=kind, detail=status)
        return row
    codes = sorted({c for c, _, _ in problems})
    english = [m for _, m, _ in problems if ENGLISH.search(QUOTED.sub("", m))]
    row.update(outcome="english" if english else status, codes=" ".join(codes),
               detail=(english[0] if english else next((f"{m} [{t}]" for _, m, t in problems if t), ""))[:300])
    return row


def run_all(files: list[Path], mb: int, seconds: float, jobs: int) -> list[dict]:
    """Examine each file in a capped child, `jobs` at a time."""
    todo, running, rows = list(reversed(files)), {}, []
    while todo or running:
        while todo and len(running) < jobs:
            path = todo.pop()
            proc, recv, start = _start(path, mb)
            running[recv] = (path, proc, start)
        ready = mp.connection.wait(list(running), timeout=0.2)
        now = time.monotonic()
        for recv in list(running):
            path, proc, start = running[recv]
            if recv in ready or now - start > seconds:
                del running[recv]
                rows.append(_finish(path, proc, recv, start, timed_out=recv not in ready))
    return sorted(rows, key=lambda r: r["file"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--mb", type=int, default=1024, help="address-space cap of each child (MB)")
    parser.add_argument("--seconds", type=float, default=20, help="time allowed to each file")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--csv", type=Path, help="write every file's row here")
    args = parser.parse_args()
    files = sorted(p for p in args.folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
    rows = run_all(files, args.mb, args.seconds, args.jobs)
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    outcomes = Counter(r["outcome"] for r in rows)
    codes = Counter(c for r in rows if r["codes"] for c in r["codes"].split())
    print(f"{len(rows)} files under {args.folder}")
    print(f"{'outcome':<12} {'files':>6}")
    for name, n in outcomes.most_common():
        print(f"{name:<12} {n:>6}")
    print(f"\n{'code':<20} {'files':>6}")
    for name, n in codes.most_common():
        print(f"{name:<20} {n:>6}")
    slow = sorted(rows, key=lambda r: -r["peak_mb"])[:5]
    print("\nlargest peak memory: " + ", ".join(f"{Path(r['file']).name} {r['peak_mb']} MB" for r in slow))
    bad = [r for r in rows if r["outcome"] in ("crash", "timeout", "memout", "raised", "english")]
    for r in bad:
        print(f"{r['outcome']:<8} {r['file']}  {r['detail'][:160]}")


if __name__ == "__main__":
    main()
