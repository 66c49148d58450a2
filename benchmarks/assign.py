"""Time `plan_assignment` at the programme's size and at 10,000 subjects x 2,000 assessors, and
`--replace` of one assessor (with the moves that keep loads within one) on each plan.

Run: python benchmarks/assign.py
"""

from __future__ import annotations

import time

import numpy as np

from pipeline.assign import plan_assignment
from pipeline.roster import Assessor, Roster, Subject
from pipeline.systems import load_system


def roster(n: int, m: int, counties: int, seed: int = 0) -> Roster:
    rng = np.random.default_rng(seed)
    t = load_system("community").subject_type
    subjects = {f"C{i:05d}": Subject(f"C{i:05d}", f"社区{i}", t, f"省{c % 31}", f"市{c % 300}", f"区{c}")
                for i, c in enumerate(rng.integers(0, counties, n))}
    assessors = {f"E{j:04d}": Assessor(f"E{j:04d}", f"专家{j}", f"单位{j}", "", f"省{c % 31}", f"市{c % 300}", f"区{c}")
                 for j, c in enumerate(rng.integers(0, counties, m))}
    return Roster(subjects, assessors)


if __name__ == "__main__":
    system = load_system("community")
    for n, m, k in ((100, 12, 3), (100, 40, 5), (10_000, 2_000, 4)):
        r = roster(n, m, counties=max(10, n // 10))
        start = time.perf_counter()
        plan = plan_assignment(r, system, k, avoid=("区县", "单位"), seed=1)
        took = time.perf_counter() - start
        loads = plan.loads().values()
        print(f"{n} subjects x {m} assessors, K={k}: {took:.3f} s, loads {min(loads)}-{max(loads)}, "
              f"checks {'all hold' if all(ok for _t, ok in plan.checks) else 'FAILED'}")
        r.pairs = list(plan.pairs)
        gone = plan.pairs[0][0]
        start = time.perf_counter()
        again = plan_assignment(r, system, k, avoid=("区县", "单位"), seed=1, replace=[gone])
        took = time.perf_counter() - start
        loads = [v for v in again.loads().values() if v]
        print(f"  --replace {gone}: {took:.3f} s, {len(again.moved)} other pair(s) moved, loads {min(loads)}-{max(loads)}, "
              f"checks {'all hold' if all(ok for _t, ok in again.checks) else 'FAILED'}")
