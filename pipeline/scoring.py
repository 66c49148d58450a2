"""Scores of one round: item aggregates, totals, ranks, grades and disagreement flags.

Pure pandas: `score_round` takes the accepted scores (``Ledger.accepted_scores``), the
indicator system, the roster and the workspace settings, and returns a `RoundResult`.
Nothing here reads or writes files, so `report` and `rollup` share the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd

from pipeline import calibration
from pipeline.roster import Roster
from pipeline.systems import LEVEL1, System

METHODS = ("mean", "trimmed")
BY_COLUMNS = {"省份": "province", "城市": "city", "区县": "county"}
NOT_RATED = "未评"
SUBJECT_INFO = ["subject", "name", "type", "province", "city", "county"]
FLAG_COLUMNS = ["subject", "item", "kind", "value", "message"]
FLAG_KINDS = {"item_range": "指标分歧", "total_range": "总分分歧", "few_assessors": "评估人数不足", "decision": "临界"}


@dataclass
class RoundResult:
    """Everything computed for one system and round.

    subjects: one row per subject (roster subjects of the system's type, plus any scored
        subject missing from the roster), ordered by rank then code; columns
        subject, name, type, province, city, county, n_assessors, n_used, total, rank, grade,
        one column per 二级指标 subtotal (named as the 二级指标), one per 一级指标
        (基础指标, 进阶指标), flags (text), and when asked group, group_rank,
        total_lo, total_hi, rank_lo, rank_hi, rank_label, calibrated_total, calibrated_rank.
    items: one row per (subject, item) scored: subject, item, level1, level2, level3, max,
        score (the aggregate rounded half-up to rank_decimals), n, low, high, range,
        share (score / max), exact (the aggregate before rounding).
    totals: one row per accepted sheet: subject, assessor, total, used (kept after trimming).
    assessors: assessor, name, org, n_subjects, n_shared, deviation (mean of own total
        minus the other assessors' mean total, over the subjects shared with others).
    flags: subject, item, kind, value, message (Chinese); kinds are item_range,
        total_range, few_assessors, decision.

    Every total, subtotal and item score is its exact aggregate rounded half-up (四舍五入) to
    ``scoring.rank_decimals`` once; ranks and grades use these rounded values.
    """

    system: System
    method: str
    method_note: str
    params: dict
    subjects: pd.DataFrame
    items: pd.DataFrame
    totals: pd.DataFrame
    assessors: pd.DataFrame
    flags: pd.DataFrame
    agreement: dict = field(default_factory=dict)
    by: str | None = None
    calibrated: bool = False
    effects: pd.DataFrame | None = None
    effects_message: str = ""
    rank_changes: pd.DataFrame | None = None

    @property
    def rated(self) -> pd.DataFrame:
        """The subjects with at least one accepted sheet."""
        return self.subjects[self.subjects["n_assessors"] > 0]

    @property
    def n_rated(self) -> int:
        return int((self.subjects["n_assessors"] > 0).sum())


def half_up(value: float, decimals: int = 2) -> float:
    """四舍五入: `value` rounded half away from zero to `decimals`, as a person would on paper.

    The float is first cut to 9 decimals, which removes binary noise: item means that add up
    to 59.995 (two assessors, totals 60.00 and 59.99) sum to 59.99499999… as floats, which
    round() makes 59.99; 四舍五入 of 59.995 is 60.00.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return math.nan
    exact = Decimal(repr(round(float(value), 9)))
    return float(exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def round_series(values: pd.Series, decimals: int = 2) -> pd.Series:
    """`half_up` over a column; NaN stays NaN."""
    values = values.astype(float)
    # Means of half-point scores repeat a lot: round each distinct value once.
    rounded = {v: half_up(v, decimals) for v in pd.unique(values.dropna())}
    return values.map(rounded).astype(float)


def competition_rank(values: pd.Series, decimals: int = 2) -> pd.Series:
    """1, 2, 2, 4 ranking, highest first, of values rounded half-up to `decimals`; NaN stays NaN."""
    return round_series(values, decimals).rank(method="min", ascending=False)


def grade(total: float, settings: dict) -> str:
    """The grade band of a total (未评 for NaN), judged on the total rounded half-up."""
    if total is None or (isinstance(total, float) and math.isnan(total)):
        return NOT_RATED
    sc = settings["scoring"]
    # Idempotent on an official total; a raw one is judged as it would be shown.
    value = half_up(float(total), int(sc["rank_decimals"]))
    for band in sc["grades"]:
        if value >= band["min"]:
            return band["name"]
    return sc["fail"]


def rounding_note(decimals: int) -> str:
    """The rounding rule in words, for the 说明 sheet and the digest's method note."""
    return (f"每个指标的得分、各二级和一级指标小计与总分，都由未取整的平均值四舍五入保留 {decimals} 位小数，只取整一次；"
            f"排名、等级、打印和写入各文件的都是这个取整后的数。因各项分别取整，各项之和与总分可能相差几个 0.{'0' * (decimals - 1)}1"
            if decimals > 0 else
            "每个指标的得分、各小计与总分，都由未取整的平均值四舍五入取整数，只取整一次；排名、等级、打印和写入各文件的都是这个取整后的数。"
            "因各项分别取整，各项之和与总分可能相差几分") + "，以总分为准。"


def method_note(method: str, trim_min: int) -> str:
    if method == "trimmed":
        return (f"截尾平均：评估人数不少于{trim_min}人的对象，去掉总分最高和最低的评估人各一名，"
                f"其余评估人逐项取平均；不足{trim_min}人的对象逐项取平均。总分为各指标得分之和。")
    return "平均：每个指标取全部有效评分的平均值，总分为各指标平均分之和。"


def _roster_frame(roster: Roster | None, system: System, scored: list[str]) -> pd.DataFrame:
    rows = []
    seen = set()
    if roster is not None:
        for s in roster.subjects.values():
            if s.type == system.subject_type:
                rows.append((s.code, s.name, s.type, s.province, s.city, s.county))
                seen.add(s.code)
    for code in scored:  # scored but no longer in the roster: shown, never dropped silently
        if code not in seen:
            rows.append((code, "（名单中无此对象）", system.subject_type, "", "", ""))
            seen.add(code)
    return pd.DataFrame(rows, columns=SUBJECT_INFO)


def _select(totals: pd.DataFrame, method: str, trim_min: int) -> pd.Series:
    """Which sheets count: all, or without the highest and lowest total when trimming."""
    used = pd.Series(True, index=totals.index)
    if method != "trimmed":
        return used
    for _, group in totals.groupby("subject", sort=False):
        if len(group) >= max(trim_min, 3):
            # Ties are broken by assessor code, so the choice is reproducible.
            order = group.sort_values(["total", "assessor"], kind="mergesort").index
            used[order[0]] = False
            used[order[-1]] = False
    return used


def score_round(
    scores: pd.DataFrame,
    system: System,
    roster: Roster | None,
    settings: dict,
    method: str | None = None,
    by: str | None = None,
    calibrate: bool = False,
    intervals: bool = True,
    apart: bool = False,
) -> RoundResult:
    """Aggregate one round's accepted scores of one system into ranks, grades and flags.

    `method` defaults to settings["scoring"]["method"]; `by` is 省份, 城市 or 区县 for a
    rank within each group; `calibrate` adds assessor-effect calibrated totals and ranks;
    `intervals` adds bootstrap intervals of totals and ranks (settings["calibration"]); `apart`
    works out half of their replicates in a second process (the same numbers, sooner).
    """
    base = score_base(scores, system, roster, settings, method=method, by=by, calibrate=calibrate)
    return with_intervals(base, roster, settings, apart=apart) if intervals else base


def score_base(
    scores: pd.DataFrame,
    system: System,
    roster: Roster | None,
    settings: dict,
    method: str | None = None,
    by: str | None = None,
    calibrate: bool = False,
) -> RoundResult:
    """`score_round` without the bootstrap intervals (`with_intervals` adds them): everything
    else is already final, so what needs only that (most of the summary workbook) can start."""
    sc, fl, cal = settings["scoring"], settings["flags"], settings["calibration"]
    method = method or sc["method"]
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if by is not None and by not in BY_COLUMNS:
        raise ValueError(f"by must be one of {tuple(BY_COLUMNS)}, got {by!r}")
    trim_min, decimals = int(sc["trim_min"]), int(sc["rank_decimals"])
    min_assessors = int(sc["min_assessors"])

    s = scores.loc[scores["item"].isin(system.codes), ["subject", "assessor", "item", "score"]]
    score = s["score"].to_numpy(dtype=float)
    # Grouped on integer codes rather than on the texts (hashing 760,000 texts again for every
    # grouping was most of scoring's time at national size). The codes are in text order, so the
    # groups come out in the order grouping the texts gives, and each group's values are summed in
    # the same (row) order: the same numbers.
    subject_code, subject_keys = pd.factorize(s["subject"].astype(str), sort=True)
    assessor_code, assessor_keys = pd.factorize(s["assessor"].astype(str), sort=True)
    item_code, item_keys = pd.factorize(s["item"].astype(str), sort=True)

    # One total per accepted sheet (subject, assessor).
    n_a, n_i = max(len(assessor_keys), 1), max(len(item_keys), 1)
    sheet_code, sheet_keys = pd.factorize(subject_code.astype(np.int64) * n_a + assessor_code, sort=True)
    totals = pd.DataFrame({
        "subject": subject_keys.take(sheet_keys // n_a),
        "assessor": assessor_keys.take(sheet_keys % n_a),
        "total": pd.Series(score, dtype=float).groupby(sheet_code, sort=True).sum().to_numpy(),
    })
    totals["used"] = _select(totals, method, trim_min)

    info = _roster_frame(roster, system, list(subject_keys))
    codes = list(info["subject"])

    # Item aggregates over the sheets used; spread over all sheets (disagreement is about everyone).
    pair = subject_code.astype(np.int64) * n_i + item_code
    used_row = totals["used"].to_numpy()[sheet_code]
    agg = pd.Series(score[used_row]).groupby(pair[used_row], sort=True).agg(score="mean", n="count")
    spread = pd.Series(score).groupby(pair, sort=True).agg(low="min", high="max")
    items = agg.join(spread, how="outer")
    at = items.index.to_numpy()
    items = items.reset_index(drop=True)
    items.insert(0, "item", item_keys.take(at % n_i))
    items.insert(0, "subject", subject_keys.take(at // n_i))
    meta = pd.DataFrame(
        [(i.code, i.level1, i.level2, i.level3, i.max) for i in system.items],
        columns=["item", "level1", "level2", "level3", "max"],
    )
    items = items.merge(meta, on="item", how="left")
    # The official figures are rounded half-up once, from the exact aggregates: each item,
    # each subtotal and the total. What is ranked, graded, printed and written is that value.
    items["exact"] = items["score"]
    items["score"] = round_series(items["exact"], decimals)
    items["range"] = round_series(items["high"] - items["low"], decimals)
    items["share"] = items["score"] / items["max"]
    order = {c: n for n, c in enumerate(system.codes)}
    subj_order = {c: n for n, c in enumerate(codes)}
    # Subjects in the roster's order, items in the system's: sorted on the codes' places rather
    # than by mapping 190,000 texts (the (subject, item) pairs are unique, so the order is the same).
    where = np.array([subj_order[k] for k in subject_keys], dtype=np.int64)[at // n_i]
    which = np.array([order[k] for k in item_keys], dtype=np.int64)[at % n_i]
    items = items.iloc[np.lexsort((which, where))]
    items = items[["subject", "item", "level1", "level2", "level3", "max", "score", "n", "low", "high", "range", "share",
                   "exact"]]
    items = items.reset_index(drop=True)

    # Subject table.
    subjects = info.copy()
    n_all = totals.groupby("subject").size()
    n_used = totals[totals["used"]].groupby("subject").size()
    subjects["n_assessors"] = subjects["subject"].map(n_all).fillna(0).astype(int)
    subjects["n_used"] = subjects["subject"].map(n_used).fillna(0).astype(int)
    exact_total = subjects["subject"].map(items.groupby("subject")["exact"].sum(min_count=1)).astype(float)
    subjects["total"] = round_series(exact_total, decimals)
    subjects.loc[subjects["n_assessors"] == 0, "total"] = np.nan
    subjects["rank"] = competition_rank(subjects["total"], decimals)
    subjects["grade"] = [grade(t, settings) for t in subjects["total"]]
    for level, column in (("level2", system.level2_names), ("level1", LEVEL1)):
        sub = items.pivot_table(index="subject", columns=level, values="exact", aggfunc="sum")
        for name in column:
            values = subjects["subject"].map(sub[name]) if name in sub else np.nan
            subjects[name] = round_series(pd.Series(np.where(subjects["n_assessors"] > 0, values, np.nan),
                                                    index=subjects.index), decimals)
    if by is not None:
        key = BY_COLUMNS[by]
        subjects["group"] = subjects[key]
        subjects["group_rank"] = subjects.groupby(key)["total"].transform(lambda t: competition_rank(t, decimals))

    # Flags.
    flags: list[tuple] = []
    wide = items["range"] > fl["item_range_share"] * items["max"] + 1e-9  # the test per row, in one go
    for r in items[wide].itertuples(index=False):  # a national month: 190,000 items, few of them wide
        flags.append((r.subject, r.item, "item_range", float(r.range),
                      f"{r.item} {r.level3}：评估人打分相差 {r.range:g} 分（满分 {r.max:g}，"
                      f"超过满分的 {fl['item_range_share']:.0%}）"))
    by_subject = totals.groupby("subject")["total"]
    spread_t = round_series(by_subject.max() - by_subject.min(), decimals)
    n_of, spread_of = n_all.to_dict(), spread_t.to_dict()  # looked up 10,000 times: dicts, not Series
    for subject in codes:
        n = int(n_of.get(subject, 0))
        if 0 < n < min_assessors:
            flags.append((subject, "", "few_assessors", float(n),
                          f"仅 {n} 名评估人评分（少于 {min_assessors} 名），排名仅供参考"))
        rng = spread_of.get(subject)
        if rng is not None and rng > fl["total_range_points"] + 1e-9:
            flags.append((subject, "", "total_range", float(rng),
                          f"评估人总分相差 {rng:.2f} 分（超过 {fl['total_range_points']:g} 分）"))

    rated_totals = totals[["subject", "assessor", "total"]]
    subjects["rank_label"] = [f"第{int(r)}名" if not math.isnan(r) else NOT_RATED for r in subjects["rank"]]
    flag_frame = _flag_frame(flags, subj_order, order)
    subjects["flags"] = _flag_texts(subjects, flag_frame)

    # Calibration: assessor effects removed from the totals.
    effects, effects_message, changes = None, "", None
    if calibrate:
        effects = calibration.assessor_effects(rated_totals)
        effects_message = effects.attrs.get("message", "")
        ct = calibration.calibrated_totals(rated_totals, effects).set_index("subject")["calibrated_total"]
        subjects["calibrated_total"] = round_series(subjects["subject"].map(ct), decimals)
        subjects["calibrated_rank"] = competition_rank(subjects["calibrated_total"], decimals)
        moved = subjects[(subjects["n_assessors"] > 0) & (subjects["rank"] != subjects["calibrated_rank"])]
        changes = moved[["subject", "name", "total", "rank", "calibrated_total", "calibrated_rank"]].copy()
        changes["change"] = changes["rank"] - changes["calibrated_rank"]
        changes = changes.sort_values(["calibrated_rank", "subject"]).reset_index(drop=True)

    subjects = subjects.sort_values(["rank", "subject"], na_position="last", kind="mergesort").reset_index(drop=True)
    assessors = _assessor_table(totals, roster, effects, decimals)
    return RoundResult(
        system=system,
        method=method,
        method_note=method_note(method, trim_min),
        params={
            "method": method, "trim_min": trim_min, "min_assessors": min_assessors, "rank_decimals": decimals,
            "grades": [dict(b) for b in sc["grades"]], "fail": sc["fail"],
            "item_range_share": fl["item_range_share"], "total_range_points": fl["total_range_points"],
            "bootstrap": 0, "seed": int(cal["seed"]),
            "level": float(cal["level"]), "selection_top": int(cal["selection_top"]),
            "boundaries": list(cal["boundaries"]), "official": cal["official"], "by": by,
        },
        subjects=subjects,
        items=items,
        totals=totals,
        assessors=assessors,
        flags=flag_frame,
        agreement=calibration.agreement(rated_totals),
        by=by,
        calibrated=calibrate,
        effects=effects,
        effects_message=effects_message,
        rank_changes=changes,
    )


def with_intervals(base: RoundResult, roster: Roster | None, settings: dict, apart: bool = False) -> RoundResult:
    """`base` (`score_base`) with bootstrap intervals of totals and ranks (rank_label shows them)
    and the flags of decision lines crossed; `apart` works out half of the replicates in a second
    process. The same result as scoring with intervals at once."""
    cal, p = settings["calibration"], base.params
    iv = calibration.bootstrap(base.totals[["subject", "assessor", "total"]], n=int(cal["bootstrap"]),
                               seed=int(cal["seed"]), level=float(cal["level"]),
                               trim_min=p["trim_min"] if base.method == "trimmed" else None, apart=apart)
    iv["subject"] = iv["subject"].astype(object)
    later = [c for c in ("calibrated_total", "calibrated_rank") if c in base.subjects]  # stay last
    subjects = base.subjects.drop(columns=["rank_label", "flags", *later]).merge(iv, on="subject", how="left")
    subjects["rank_label"] = [
        calibration.rank_label(r, lo, hi) if not math.isnan(r) else NOT_RATED
        for r, lo, hi in zip(subjects["rank"], subjects["rank_lo"].fillna(0), subjects["rank_hi"].fillna(0))
    ]
    rated = subjects[subjects["n_assessors"] > 0]
    top = int(cal["selection_top"]) or None
    if top is not None and top >= len(rated):
        top = None  # everyone is selected: no line to cross
    dec = calibration.decision_flags(rated[["subject", "rank"]], iv, top_n=top, boundaries=tuple(cal["boundaries"]))
    # The base's flags are in order already; the decision flags sort in among them as they would
    # have among the unsorted ones (the sort is stable).
    flags = list(base.flags.itertuples(index=False, name=None))
    flags += [(r.subject, "", "decision", math.nan, r.flag) for r in dec.itertuples(index=False)]
    scored = sorted(base.totals["subject"].unique())
    subj_order = {c: n for n, c in enumerate(_roster_frame(roster, base.system, scored)["subject"])}
    flag_frame = _flag_frame(flags, subj_order, {c: n for n, c in enumerate(base.system.codes)})
    subjects["flags"] = _flag_texts(subjects, flag_frame)
    for column in later:
        subjects[column] = base.subjects[column].to_numpy()
    changes = base.rank_changes  # its codes of the type the merged ones have, as when calibrated after it
    if changes is not None:
        changes = changes.astype({"subject": subjects["subject"].dtype})
    return replace(base, subjects=subjects, flags=flag_frame, params={**p, "bootstrap": int(cal["bootstrap"])},
                   rank_changes=changes)


def _flag_frame(flags: list[tuple], subj_order: dict, item_order: dict) -> pd.DataFrame:
    """The flags as a frame, by subject (roster order), kind, then item (system order)."""
    frame = pd.DataFrame(flags, columns=FLAG_COLUMNS)
    if not frame.empty:
        kind_order = {"few_assessors": 0, "total_range": 1, "decision": 2, "item_range": 3}
        frame["_s"] = frame["subject"].map(subj_order)
        frame["_k"] = frame["kind"].map(kind_order)
        frame["_i"] = frame["item"].map(item_order).fillna(-1)
        frame = frame.sort_values(["_s", "_k", "_i"]).drop(columns=["_s", "_k", "_i"]).reset_index(drop=True)
    return frame


def _flag_texts(subjects: pd.DataFrame, flags: pd.DataFrame) -> pd.Series:
    """Each subject's flag messages joined (in the flags' order); 未收到有效评分 for the unrated."""
    messages: dict[str, list[str]] = {}  # a subject's messages in order, joined once
    for subject, message in zip(flags["subject"], flags["message"]):
        messages.setdefault(subject, []).append(message)
    text = {subject: "；".join(texts) for subject, texts in messages.items()}
    shown = subjects["subject"].map(text).astype(object).fillna("")
    shown[subjects["n_assessors"] == 0] = "未收到有效评分"
    return shown


def _assessor_table(totals: pd.DataFrame, roster: Roster | None, effects: pd.DataFrame | None,
                    decimals: int = 2) -> pd.DataFrame:
    """Per assessor: subjects scored and mean deviation from the others on shared subjects."""
    t = totals[["subject", "assessor", "total"]]
    g = t.groupby("subject")["total"]
    count = g.transform("size")
    others_mean = (g.transform("sum") - t["total"]) / (count - 1).where(count > 1)
    frame = t.assign(dev=t["total"] - others_mean, shared=count > 1)
    stats = frame.groupby("assessor").agg(n_subjects=("subject", "size"), n_shared=("shared", "sum"),
                                          deviation=("dev", "mean"))
    people = roster.assessors if roster is not None else {}
    codes = list(people) + sorted(set(t["assessor"]) - set(people))
    out = pd.DataFrame({
        "assessor": codes,
        "name": [people[c].name if c in people else "" for c in codes],
        "org": [people[c].org if c in people else "" for c in codes],
    })
    out["n_subjects"] = out["assessor"].map(stats["n_subjects"]).fillna(0).astype(int)
    out["n_shared"] = out["assessor"].map(stats["n_shared"]).fillna(0).astype(int)
    # NaN devs (subjects nobody else rated) are skipped by the mean; none shared gives NaN.
    out["deviation"] = round_series(out["assessor"].map(stats["deviation"]), decimals)
    if effects is not None and not effects.empty:
        e = effects.set_index("assessor")
        out["effect"] = round_series(out["assessor"].map(e["effect"]), decimals)
        out["effect_se"] = round_series(out["assessor"].map(e["se"]), decimals)
        out["effect_note"] = out["assessor"].map(e["note"]).fillna("")
    return out
