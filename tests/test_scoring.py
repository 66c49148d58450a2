"""Scoring on small hand-computed rounds: mean, trimmed, ties, grades, flags, deviation."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import defaults
from pipeline.roster import Assessor, Roster, Subject
from pipeline.scoring import competition_rank, grade, score_round
from pipeline.systems import parse_system

TYPE = "创新实践社区"
# A four-item system small enough to compute by hand: 甲 = A1 + A2, 乙 = B1, 丙 = P1.
MINI = parse_system({
    "id": "mini", "name": "小体系", "version": "1", "subject_type": TYPE, "total": 100,
    "items": [
        {"code": "A1", "一级指标": "基础指标", "二级指标": "甲", "三级指标": "甲一", "满分": 40, "评价内容": "x"},
        {"code": "A2", "一级指标": "基础指标", "二级指标": "甲", "三级指标": "甲二", "满分": 30, "评价内容": "x"},
        {"code": "B1", "一级指标": "基础指标", "二级指标": "乙", "三级指标": "乙一", "满分": 20, "评价内容": "x"},
        {"code": "P1", "一级指标": "进阶指标", "二级指标": "丙", "三级指标": "丙一", "满分": 10, "评价内容": "x"},
    ],
}, Path("mini.yaml"))

# subject, assessor, A1, A2, B1, P1  (sheet totals in the comments)
SHEETS = [
    ("S1", "E1", 36, 27, 18, 9),      # 90
    ("S1", "E2", 38, 28, 19, 9),      # 94
    ("S1", "E3", 34, 26, 17, 9),      # 86   -> mean 90.00 优秀
    ("S2", "E1", 32, 24, 16, 8),      # 80
    ("S2", "E2", 32, 24, 16, 8),
    ("S2", "E3", 32, 24, 16, 8),      #      -> 80.00 良好, rank 2
    ("S3", "E1", 32, 24, 16, 8),
    ("S3", "E2", 32, 24, 16, 8),
    ("S3", "E3", 32, 24, 16, 7.99),   # 79.99 -> 79.99667 = 80.00 at 2 decimals: tie, rank 2
    ("S4", "E1", 10, 20, 15, 5),      # 50
    ("S4", "E2", 35, 20, 10, 5),      # 70
    ("S4", "E3", 15, 20, 15, 10),     # 60   -> 60.00 合格, rank 4; A1 range 25 > 20; totals range 20 > 15
    ("S5", "E1", 20, 15, 10, 5),      # 50   -> 不合格, one assessor only
]
SUBJECTS = [
    Subject("S1", "一号社区", TYPE, "浙江省", "杭州市", "上城区"),
    Subject("S2", "二号社区", TYPE, "浙江省", "杭州市", "西湖区"),
    Subject("S3", "三号社区", TYPE, "四川省", "成都市", "武侯区"),
    Subject("S4", "四号社区", TYPE, "四川省", "成都市", "锦江区"),
    Subject("S5", "五号社区", TYPE, "四川省", "绵阳市", "涪城区"),
    Subject("S6", "六号社区", TYPE, "湖北省", "武汉市", "洪山区"),
    Subject("Z1", "某区", "创新实践区", "湖北省", "武汉市", "洪山区"),
]


def roster(assessors=("E1", "E2", "E3")) -> Roster:
    return Roster({s.code: s for s in SUBJECTS}, {a: Assessor(a, f"评估人{a}", "某单位") for a in assessors})


def scores_frame(sheets) -> pd.DataFrame:
    """The shape Ledger.accepted_scores returns."""
    rows = []
    for n, (subject, assessor, *values) in enumerate(sheets):
        for code, value in zip(MINI.codes, values):
            rows.append(("2026-11", "mini", assessor, subject, code, str(value), float(value), "",
                         f"{assessor}.xlsx", subject, "G7", "ab" * 32, n + 1))
    return pd.DataFrame(rows, columns=["period", "system", "assessor", "subject", "item", "raw", "score", "remark",
                                       "file", "sheet", "cell", "sha256", "sheet_id"])


def settings(**scoring):
    s = defaults()
    s["scoring"].update(scoring)
    return s


@pytest.fixture(scope="module")
def result():
    return score_round(scores_frame(SHEETS), MINI, roster(), settings())


def row(res, code):
    return res.subjects.set_index("subject").loc[code]


def test_mean_totals_subtotals_ranks_and_grades(result):
    subj = result.subjects.set_index("subject")
    # Only subjects of the system's type; ordered by rank, the unrated one last.
    assert list(result.subjects["subject"]) == ["S1", "S2", "S3", "S4", "S5", "S6"]
    # Official totals are rounded half-up to two decimals once: S3's 79.99667 is 80.00.
    assert subj["total"].tolist()[:5] == [90.0, 80.0, 80.0, 60.0, 50.0]
    assert math.isnan(subj.loc["S6", "total"])
    assert subj["rank"].tolist()[:5] == [1, 2, 2, 4, 5]
    assert math.isnan(subj.loc["S6", "rank"])
    assert subj["grade"].tolist() == ["优秀", "良好", "良好", "合格", "不合格", "未评"]
    assert subj["n_assessors"].tolist() == [3, 3, 3, 3, 1, 0]
    # S4 item means 20, 20, 13.333, 6.667: subtotals by 二级指标 and 一级指标, rounded, add up to the total.
    s4 = subj.loc["S4"]
    assert [s4[k] for k in ("甲", "乙", "丙", "基础指标", "进阶指标")] == [40.0, 13.33, 6.67, 53.33, 6.67]
    for code in ["S1", "S2", "S3", "S4", "S5"]:
        r = subj.loc[code]
        assert r["甲"] + r["乙"] + r["丙"] == pytest.approx(r["total"])
        assert r["基础指标"] + r["进阶指标"] == pytest.approx(r["total"])
    assert subj.loc["S3", "丙"] == 8.0  # (8 + 8 + 7.99) / 3 = 7.99667
    assert result.method == "mean" and "平均" in result.method_note


def test_items_table(result):
    it = result.items.set_index(["subject", "item"])
    assert it.loc[("S4", "A1"), "score"] == pytest.approx(20)
    assert it.loc[("S4", "A1"), "range"] == 25
    assert it.loc[("S4", "A1"), "share"] == pytest.approx(0.5)
    assert it.loc[("S1", "A2"), "score"] == 27
    assert it.loc[("S1", "A2"), "n"] == 3
    assert len(result.items) == 5 * 4  # S6 has none


def test_flags(result):
    f = result.flags
    kinds = set(zip(f["subject"], f["item"], f["kind"]))
    assert ("S4", "A1", "item_range") in kinds          # 25 > 50% of 40
    assert ("S4", "P1", "item_range") not in kinds      # 5 is not more than 50% of 10
    assert ("S4", "", "total_range") in kinds           # 70 - 50 = 20 > 15
    assert ("S1", "", "total_range") not in kinds       # 94 - 86 = 8
    assert ("S5", "", "few_assessors") in kinds
    # 60 is a decision line by default: S4's totals straddle it (50..70).
    assert ("S4", "", "decision") in kinds
    assert not f[f["kind"].isin(["item_range", "total_range", "few_assessors"]) & ~f["subject"].isin(["S4", "S5"])].shape[0]
    assert "评估人打分相差 25 分" in row(result, "S4")["flags"]
    assert row(result, "S6")["flags"] == "未收到有效评分"
    assert row(result, "S2")["flags"] == ""


def test_assessor_deviation(result):
    a = result.assessors.set_index("assessor")
    assert a["n_subjects"].tolist() == [5, 4, 4]
    assert a["n_shared"].tolist() == [4, 4, 4]
    # E1: S1 90-90, S2 0, S3 80-79.995, S4 50-65 -> (0 + 0 + 0.005 - 15) / 4
    # Shown rounded half-up (away from zero) to two decimals, like every other figure.
    assert a.loc["E1", "deviation"] == -3.75   # (0.005 - 15) / 4 = -3.74875
    assert a.loc["E2", "deviation"] == 5.25    # (6 + 0 + 0.005 + 15) / 4 = 5.25125
    assert a.loc["E3", "deviation"] == -1.5    # (-6 + 0 - 0.01 + 0) / 4 = -1.5025
    assert a.loc["E1", "name"] == "评估人E1"


def test_intervals_and_agreement(result):
    s2 = row(result, "S2")
    assert s2["total_lo"] == s2["total_hi"] == 80  # identical scores: zero-width interval
    s1 = row(result, "S1")
    assert s1["total_lo"] >= 86 and s1["total_hi"] <= 94
    assert s1["rank_label"].startswith("第1名")
    assert row(result, "S6")["rank_label"] == "未评"
    assert result.agreement["n_assessors"] == 3 and "α" in result.agreement["reading"]
    again = score_round(scores_frame(SHEETS), MINI, roster(), settings())
    pd.testing.assert_frame_equal(result.subjects, again.subjects)  # seeded


def test_group_rank():
    res = score_round(scores_frame(SHEETS), MINI, roster(), settings(), by="省份")
    subj = res.subjects.set_index("subject")
    assert subj.loc[["S1", "S2", "S3", "S4", "S5"], "group_rank"].tolist() == [1, 2, 1, 2, 3]
    assert subj.loc["S3", "group"] == "四川省"
    with pytest.raises(ValueError):
        score_round(scores_frame(SHEETS), MINI, roster(), settings(), by="国家")


TRIM = [
    ("T", "F1", 30, 20, 10, 5),    # 65
    ("T", "F2", 40, 30, 20, 10),   # 100 highest: left out
    ("T", "F3", 10, 10, 5, 0),     # 25 lowest: left out
    ("T", "F4", 32, 24, 16, 8),    # 80
    ("T", "F5", 28, 22, 14, 6),    # 70
    ("T", "F6", 36, 26, 18, 10),   # 90
    ("U", "F1", 30, 20, 10, 5),    # four assessors: below trim_min, plain mean
    ("U", "F2", 40, 30, 20, 10),
    ("U", "F3", 10, 10, 5, 0),
    ("U", "F4", 32, 24, 16, 8),
]


def trim_roster():
    subjects = [Subject("T", "截尾社区", TYPE), Subject("U", "四人社区", TYPE)]
    return Roster({s.code: s for s in subjects}, {f"F{i}": Assessor(f"F{i}", f"F{i}") for i in range(1, 7)})


def test_trimmed_drops_highest_and_lowest_total():
    res = score_round(scores_frame(TRIM), MINI, trim_roster(), settings(), method="trimmed")
    it = res.items.set_index(["subject", "item"])
    assert it.loc[("T", "A1"), "score"] == pytest.approx((30 + 32 + 28 + 36) / 4)
    assert it.loc[("T", "A2"), "score"] == pytest.approx(23)
    assert it.loc[("T", "B1"), "score"] == pytest.approx(14.5)
    assert it.loc[("T", "P1"), "score"] == pytest.approx(7.25)
    t = row(res, "T")
    assert t["total"] == pytest.approx(76.25)
    assert (t["n_assessors"], t["n_used"]) == (6, 4)
    u = row(res, "U")
    assert u["total"] == pytest.approx((65 + 100 + 25 + 80) / 4) and u["n_used"] == 4
    used = res.totals.set_index(["subject", "assessor"])["used"]
    assert not used[("T", "F2")] and not used[("T", "F3")] and used[("T", "F1")]
    assert "截尾" in res.method_note and res.method == "trimmed"
    # The plain mean of the same data, and trimming's threshold from settings.
    assert row(score_round(scores_frame(TRIM), MINI, trim_roster(), settings()), "T")["total"] == 71.67  # 430 / 6
    res7 = score_round(scores_frame(TRIM), MINI, trim_roster(), settings(trim_min=7), method="trimmed")
    assert row(res7, "T")["total"] == 71.67  # 430 / 6
    # Disagreement is judged over everyone, including the left-out assessors.
    assert row(res, "T")["flags"].count("评估人总分相差 75.00 分") == 1


def test_trimmed_with_tied_extremes_drops_one_each():
    sheets = [("T", f"F{i}", *vals) for i, vals in enumerate(
        [(40, 30, 20, 10), (40, 30, 20, 10), (30, 20, 10, 5), (10, 10, 5, 0), (10, 10, 5, 0)], start=1)]
    res = score_round(scores_frame(sheets), MINI, trim_roster(), settings(), method="trimmed")
    # 100, 100, 65, 25, 25: one 100 and one 25 go, leaving 100, 65, 25.
    assert row(res, "T")["total"] == 63.33  # (100 + 65 + 25) / 3
    assert row(res, "T")["n_used"] == 3


def test_grade_bands_and_rank_helpers():
    s = defaults()
    assert [grade(v, s) for v in (90, 89.99, 80, 79.999, 60, 59.99, float("nan"))] == \
        ["优秀", "良好", "良好", "良好", "合格", "不合格", "未评"]
    custom = settings(grades=[{"name": "A", "min": 50}], fail="B")
    assert grade(50, custom) == "A" and grade(49.9, custom) == "B"
    assert competition_rank(pd.Series([3.001, 3.004, 5, float("nan"), 1])).tolist()[:3] == [2, 2, 1]


def test_calibrate_adds_calibrated_totals():
    # E2 is lenient by +6 on S1 and S4 only; calibration moves S4 and S1 relative to others.
    res = score_round(scores_frame(SHEETS), MINI, roster(), settings(), calibrate=True)
    subj = res.subjects.set_index("subject")
    assert {"calibrated_total", "calibrated_rank"} <= set(subj.columns)
    eff = res.assessors.set_index("assessor")["effect"]
    assert eff.sum() == pytest.approx(0, abs=1e-9)
    assert eff["E2"] > 0 > eff["E1"]
    # Every subject rated by all three: the calibrated total equals the plain mean (effects sum to 0).
    assert subj.loc["S1", "calibrated_total"] == pytest.approx(subj.loc["S1", "total"])
    # S5 was rated by the severe E1 only: its calibrated total is lifted.
    assert subj.loc["S5", "calibrated_total"] == round(50 - eff["E1"], 2)
    assert math.isnan(subj.loc["S6", "calibrated_rank"])
    assert res.rank_changes is not None and set(res.rank_changes.columns) >= {"subject", "rank", "calibrated_rank"}


def test_no_scores_everyone_unrated():
    empty = scores_frame([])
    res = score_round(empty, MINI, roster(), settings(), calibrate=True)
    assert res.n_rated == 0
    assert res.subjects["grade"].eq("未评").all()
    assert res.subjects["rank"].isna().all()
    assert res.flags.empty and res.items.empty


def test_half_up_rounds_the_number_as_computed():
    from pipeline.scoring import half_up

    mean_a1 = (24 + 23.99) / 2  # 23.994999999999997 as a float
    assert round(mean_a1, 2) == 23.99 and round(mean_a1 + 36, 2) == 59.99  # what round() does with the float
    assert half_up(mean_a1) == 24.00 and half_up((60.00 + 59.99) / 2) == 60.00  # 四舍五入 of 23.995, 59.995
    assert half_up(84.16666666666669) == 84.17 and half_up(2.395) == 2.40 and half_up(0.125) == 0.13
    assert half_up(-3.74875) == -3.75 and half_up(12.345, 1) == 12.3 and half_up(12.5, 0) == 13.0
    assert math.isnan(half_up(float("nan")))


def test_a_total_of_59_995_is_60_00_and_passes():
    # Two assessors, totals 60.00 and 59.99 (one cent apart on A1): the mean is 59.995.
    sheets = [("S1", "E1", 24, 18, 12, 6), ("S1", "E2", 23.99, 18, 12, 6)]
    res = score_round(scores_frame(sheets), MINI, roster(), settings())
    s1 = row(res, "S1")
    assert s1["total"] == 60.00 and s1["grade"] == "合格" and s1["rank"] == 1
    items = res.items.set_index("item")
    assert items.loc["A1", "score"] == 24.00 and items.loc["A1", "exact"] == pytest.approx(23.995)
    assert s1["甲"] == 42.00 and s1["基础指标"] == 54.00  # 23.995 + 18 = 41.995; + 12 = 53.995
