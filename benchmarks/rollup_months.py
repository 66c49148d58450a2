"""The size of a national roll-up page over several months, from one month in the ledger.

The ledger of a national benchmark holds one month; the roll-up page's size depends on subjects
x months, not on the scores, so a stand-in ledger gives every month of the range that month's
accepted scores moved by seeded noise (±1 point on a quarter of them) and the returns of the real
month. Writes the roll-up's HTML (and .xlsx) to OUT and prints its size.

    flock -s /tmp/happyhome-bench.lock python benchmarks/rollup_months.py /tmp/national-work/month/ws0 2026-11 12 /tmp/rollup-12.html
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pipeline.config import Workspace
from pipeline.ledger import Ledger
from pipeline.rollup import compute_rollup, month_range, render_rollup, write_rollup_xlsx
from pipeline.roster import read_roster_for
from pipeline.systems import load_system


class Months:
    """Every month of `months` is `real`'s round with its own noise."""

    def __init__(self, ledger: Ledger, system, real: str, months: list[str]):
        self.ledger, self.system, self.real, self.months, self.scores = ledger, system, real, months, None

    def round_keys(self, system: str) -> list[str]:
        return self.months

    def accepted_scores(self, key: str, system: str):
        if self.scores is None:
            self.scores = self.ledger.accepted_scores(self.real, system)
        out = self.scores.copy()
        rng = np.random.default_rng(self.months.index(key))
        hit = rng.random(len(out)) < 0.25
        maxes = out["item"].map({i.code: i.max for i in self.system.items})
        out.loc[hit, "score"] = np.clip(out.loc[hit, "score"] + rng.choice([-1.0, 1.0], hit.sum()), 0, maxes[hit])
        return out

    def sheets(self, key: str, system: str):
        return self.ledger.sheets(self.real, system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("month", help="the month in the ledger, YYYY-MM")
    parser.add_argument("n", type=int, help="how many months the roll-up spans (ending with MONTH)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--system", default="community")
    args = parser.parse_args()
    ws = Workspace.open(args.workspace)
    system = load_system(args.system)
    roster = read_roster_for(ws.path("roster"), system)
    year, month = map(int, args.month.split("-"))
    first = year * 12 + month - 1 - (args.n - 1)  # months since year 0, January = 0
    start = f"{first // 12:04d}-{first % 12 + 1:02d}"
    months = month_range(start, args.month)
    with Ledger.open(ws, reading=True) as ledger:
        started = time.monotonic()
        result = compute_rollup(ws, system, roster, Months(ledger, system, args.month, months), months[0], months[-1])
    html = render_rollup(result, ws["round"]["organiser"], layout=ws["report"])
    args.out.write_text(html, encoding="utf-8")
    write_rollup_xlsx(result, args.out.with_suffix(".xlsx"))
    print(f"{len(months)} months ({months[0]} … {months[-1]}), {len(result.subjects)} subjects: "
          f"{len(html.encode('utf-8')) / 1e6:.2f} MB of HTML, computed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
