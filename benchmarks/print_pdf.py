"""Time the browser printing one HTML output to PDF, as `report --pdf` and `rollup --pdf` do.

The browser runs with `pipeline.pdf.browser_command` (the same switches); its process tree is
polled every 0.2 s for CPU time (user + system), because the renderer and helper processes are
not children this process waits for. Prints wall time, CPU time, pages and the PDF's size.

    flock /tmp/happyhome-bench.lock python benchmarks/print_pdf.py WS/output/2026-11/digest-community.html /tmp/d.pdf --untagged
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from pipeline.pdf import browser_command, find_browser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("pdf", type=Path)
    parser.add_argument("--untagged", action="store_true", help="as for a page above report.digest_full_max")
    args = parser.parse_args()
    browser = find_browser()
    if not browser:
        raise SystemExit("no Chromium-family browser found")
    with tempfile.TemporaryDirectory() as profile:
        command = browser_command(browser, args.html, args.pdf.resolve(), Path(profile), tagged=not args.untagged)
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu: dict[int, float] = {}
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        t = p.cpu_times()
                        cpu[p.pid] = t.user + t.system
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            time.sleep(0.2)
        wall = time.monotonic() - started
    info = subprocess.run(["pdfinfo", str(args.pdf)], capture_output=True, text=True).stdout
    pages = next((line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")), "?")
    print(f"{args.html.name}: {wall:.1f} s wall, {sum(cpu.values()):.1f} s CPU (browser processes), {pages} pages, "
          f"{os.path.getsize(args.pdf) / 1e6:.2f} MB; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
