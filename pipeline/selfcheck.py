"""Comparing 自评 and 核定: each subject's self-assessment against the experts' verified scores.

A subject's self-scores come from its latest accepted self-assessment sheet
(`Ledger.self_scores`); they are never part of the experts' aggregate. The verified (核定)
figures are the round's official ones (`RoundResult`: each item's aggregate, each 二级指标
subtotal and the total, rounded half-up as ranked). Every gap is 自评 − 核定, rounded half-up to
`scoring.rank_decimals`:

- a subject whose self total exceeds its verified total by more than `[scoring]
  self_gap_points` (10) is flagged 自评偏高;
- an item whose self-score differs from its verified score by more than half of its 满分 (either
  way) is listed.

Nothing here exists for a round without self-assessments: `compare` returns None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from pipeline.scoring import RoundResult, half_up

OVERRATED = "自评偏高"
SHEET_HEAD = ["编号", "名称", "自评总分", "核定总分", "差值"]  # then one 差值 column per 二级指标, then 标记


@dataclass
class SelfComparison:
    """rows: one per subject with a self-assessment (subject, name, self_total, verified_total, gap,
    per 二级指标 `gaps`, overrated); items: the items whose gap exceeds half of 满分 (subject, name,
    item, level3, max, self, verified, gap); totals: subject -> self total (for every subject with one)."""

    gap_points: float
    rows: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    by_item: dict[tuple[str, str], float] = field(default_factory=dict)  # (subject, item) -> self-score

    @property
    def overrated(self) -> list[dict]:
        return [r for r in self.rows if r["overrated"]]


def _gap(a: float, b: float, decimals: int) -> float:
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return math.nan
    return half_up(a - b, decimals)


def compare(result: RoundResult, self_scores: pd.DataFrame, gap_points: float) -> SelfComparison | None:
    """The round's 自评 vs 核定 comparison, or None when no self-assessment is in."""
    if self_scores is None or not len(self_scores):
        return None
    system = result.system
    decimals = result.params["rank_decimals"]
    out = SelfComparison(float(gap_points))
    own = {(r.subject, r.item): float(r.score) for r in self_scores.itertuples()}
    out.by_item = own
    verified_items = {(r.subject, r.item): float(r.score) for r in result.items.itertuples()}
    subjects = result.subjects.set_index("subject")
    for subject in dict.fromkeys(self_scores["subject"]):
        mine = {code: own[(subject, code)] for code in (i.code for i in system.items) if (subject, code) in own}
        self_total = half_up(sum(mine.values()), decimals)
        out.totals[subject] = self_total
        row = subjects.loc[subject] if subject in subjects.index else None
        verified = float(row["total"]) if row is not None and pd.notna(row["total"]) else math.nan
        gaps = {}
        for level2 in system.level2_names:
            codes = [i.code for i in system.items if i.level2 == level2]
            got = row[level2] if row is not None and level2 in row.index else math.nan
            gaps[level2] = _gap(sum(mine.get(c, 0.0) for c in codes), float(got) if pd.notna(got) else math.nan, decimals)
        gap = _gap(self_total, verified, decimals)
        name = str(row["name"]) if row is not None else ""
        out.rows.append({"subject": subject, "name": name, "self_total": self_total, "verified_total": verified,
                         "gap": gap, "gaps": gaps, "overrated": not math.isnan(gap) and gap > gap_points + 1e-9})
        for item in system.items:
            if item.code not in mine or (subject, item.code) not in verified_items:
                continue
            item_gap = _gap(mine[item.code], verified_items[(subject, item.code)], decimals)
            if abs(item_gap) > item.max / 2 + 1e-9:
                out.items.append({"subject": subject, "name": name, "item": item.code, "level3": item.level3,
                                  "max": item.max, "self": mine[item.code],
                                  "verified": verified_items[(subject, item.code)], "gap": item_gap})
    out.rows.sort(key=lambda r: (-(r["gap"] if not math.isnan(r["gap"]) else -math.inf), r["subject"]))
    return out


def sheet_rows(comparison: SelfComparison, level2_names: list[str]) -> tuple[list[str], list[list]]:
    """The 自评对比 sheet: 编号 | 名称 | 自评总分 | 核定总分 | 差值 | one 差值 column per 二级指标 | 标记."""
    header = SHEET_HEAD + [f"{name}差值" for name in level2_names] + ["标记"]
    rows = [[r["subject"], r["name"], r["self_total"], r["verified_total"], r["gap"]]
            + [r["gaps"][name] for name in level2_names] + [OVERRATED if r["overrated"] else ""]
            for r in comparison.rows]
    return header, rows


def digest_part(comparison: SelfComparison) -> dict:
    """The digest's 自评与核定 section."""
    return {"gap_points": comparison.gap_points, "rows": comparison.rows, "overrated": comparison.overrated,
            "items": comparison.items, "n": len(comparison.rows)}
