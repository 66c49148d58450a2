"""happyhome assign: K assessors per subject, rules kept, loads balanced, graph connected."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.assign import check, plan_assignment
from pipeline.errors import InputError
from pipeline.roster import Assessor, Roster, Subject, read_roster, write_roster
from pipeline.systems import load_system

from conftest import run

COMMUNITY = load_system("community")
T = COMMUNITY.subject_type

# 6 communities in 3 counties of one city; 4 assessors, one of them in 上城区
SUBJECTS = [(f"C{i}", f"社区{i}", T, "浙江省", "杭州市", county)
            for i, county in enumerate(["上城区", "上城区", "西湖区", "西湖区", "拱墅区", "拱墅区"], start=1)]
ASSESSORS = [("E01", "甲", "浙江大学", "1", "浙江省", "杭州市", "上城区"),
             ("E02", "乙", "四川大学", "2", "四川省", "成都市", "武侯区"),
             ("E03", "丙", "湖北大学", "3", "湖北省", "武汉市", "洪山区"),
             ("E04", "丁", "南京大学", "4", "江苏省", "南京市", "鼓楼区")]
ZONE = ("Z01", "杭州市上城区", "创新实践区", "浙江省", "杭州市", "上城区")


def small_roster(tmp_path: Path, subjects=SUBJECTS, assessors=ASSESSORS, pairs=(), conflicts=None) -> Roster:
    path = write_roster(tmp_path / "roster.xlsx", subjects, assessors, list(pairs), conflicts=conflicts)
    return read_roster(path)


def test_hand_checked_six_by_four(tmp_path):
    roster = small_roster(tmp_path, conflicts=[("E02", "C3", "曾在该社区挂职")])
    plan = plan_assignment(roster, COMMUNITY, 2, avoid=["区县"], seed=1)
    assert len(plan.pairs) == 12
    assert plan.loads() == {"E01": 3, "E02": 3, "E03": 3, "E04": 3}
    assert not {("E01", "C1"), ("E01", "C2"), ("E02", "C3")} & set(plan.pairs)
    assert all(ok for _text, ok in plan.checks) and len(plan.checks) == 5
    assert plan.pairs == plan_assignment(roster, COMMUNITY, 2, avoid=["区县"], seed=1).pairs


def test_old_rosters_without_places_or_conflicts_still_read(tmp_path):
    roster = small_roster(tmp_path, assessors=[row[:4] for row in ASSESSORS])
    assert roster.assessors["E01"].county == "" and roster.conflicts == {}


def test_unknown_code_in_conflicts_is_a_roster_problem(tmp_path):
    with pytest.raises(InputError, match="回避.*E99"):
        small_roster(tmp_path, conflicts=[("E99", "C1", "")])


def test_unit_rule_avoids_an_assessor_whose_organisation_is_in_the_name(tmp_path):
    subjects = [*SUBJECTS[:5], ("C6", "浙江大学社区", T, "浙江省", "杭州市", "拱墅区")]
    roster = small_roster(tmp_path, subjects)
    plan = plan_assignment(roster, COMMUNITY, 3, avoid=["单位"], seed=3)
    assert ("E01", "C6") not in plan.pairs and all(ok for _t, ok in plan.checks)


def random_roster(n: int, m: int, counties: list[int]) -> Roster:
    """n subjects and m assessors of one province and city, their 区县 drawn from `counties`."""
    subjects = {f"S{i}": Subject(f"S{i}", f"社区{i}", T, "省", "市", f"区{counties[i]}") for i in range(n)}
    assessors = {f"A{j}": Assessor(f"A{j}", f"人{j}", "", "", "省", "市", f"区{counties[19 - j]}")
                 for j in range(m)}
    return Roster(subjects, assessors)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(2, 12), m=st.integers(2, 8), k=st.integers(2, 4), seed=st.integers(0, 10**6),
       counties=st.lists(st.integers(0, 3), min_size=20, max_size=20))
def test_property_plans_keep_every_guarantee(n, m, k, seed, counties):
    k = min(k, m)
    roster = random_roster(n, m, counties)
    try:
        plan = plan_assignment(roster, COMMUNITY, k, avoid=["区县"], seed=seed)
    except InputError as err:
        assert "未写入任何文件" in str(err)
        return
    assert all(ok for _text, ok in check(plan, roster))
    per = {}
    for a, s in plan.pairs:
        per.setdefault(s, set()).add(a)
        assert roster.assessors[a].county != roster.subjects[s].county
    assert all(len(per[s]) == k for s in roster.subjects)
    busy = [v for v in plan.loads().values() if v]
    assert max(busy) - min(busy) <= 1
    assert plan.pairs == plan_assignment(roster, COMMUNITY, k, avoid=["区县"], seed=seed).pairs


def test_infeasible_names_the_subject_and_writes_nothing(workspace):
    assessors = [(*row[:4], "浙江省", "杭州市", "上城区") for row in ASSESSORS]
    write_roster(workspace / "input" / "roster.xlsx", [*SUBJECTS, ZONE], assessors, [])
    result = run(workspace, "assign", "--system", "community", "--per-subject", "2", "--avoid", "区县", expect=3)
    assert "C1" in result.output and "C2" in result.output and "per-subject" in result.output
    assert not (workspace / "output" / "assign-community.xlsx").exists()


def test_write_keeps_other_systems_rows_and_a_dated_copy(workspace):
    roster_path = workspace / "input" / "roster.xlsx"
    pairs = [("E01", "Z01"), *((a, s) for a, *_ in ASSESSORS[1:] for s, *_ in SUBJECTS)]
    write_roster(roster_path, [*SUBJECTS, ZONE], ASSESSORS, pairs)
    run(workspace, "assign", "--system", "community", "--per-subject", "2", "--avoid", "区县", "--seed", "7")
    out = openpyxl.load_workbook(workspace / "output" / "assign-community.xlsx")
    assert out.sheetnames == ["分配", "负荷", "说明"]
    assert read_roster(roster_path).pairs == pairs  # without --write the roster is untouched
    result = run(workspace, "assign", "--system", "community", "--per-subject", "2", "--avoid", "区县",
                 "--seed", "7", "--write")
    assert "✓" in result.output
    after = read_roster(roster_path)
    assert ("E01", "Z01") in after.pairs
    assert sorted(p for p in after.pairs if p[1] != "Z01") == sorted(
        tuple(r) for r in [[c.value for c in row] for row in out["分配"].iter_rows(min_row=2)])
    assert len(list((workspace / "input").glob("roster-*.xlsx"))) == 1


def test_replace_reassigns_only_that_assessors_pairs(tmp_path):
    assessors = [*ASSESSORS, ("E05", "戊", "武汉大学", "5", "湖北省", "武汉市", "武昌区")]
    roster = small_roster(tmp_path, assessors=assessors)
    plan = plan_assignment(roster, COMMUNITY, 3, avoid=["区县"], seed=2)
    roster.pairs = list(plan.pairs)
    replaced = plan_assignment(roster, COMMUNITY, 3, avoid=["区县"], seed=2, replace=["E05"])
    kept = [p for p in plan.pairs if p[0] != "E05"]
    assert set(kept) <= set(replaced.pairs)
    assert not any(a == "E05" for a, _s in replaced.pairs)
    assert len(replaced.pairs) == len(plan.pairs)
    assert all(ok for _t, ok in replaced.checks)


def test_max_load_when_equal_loads_are_impossible(tmp_path):
    conflicts = [("E04", f"C{i}", "") for i in range(2, 7)]  # E04 may rate C1 only
    roster = small_roster(tmp_path, conflicts=conflicts)
    with pytest.raises(InputError, match="负荷均衡"):
        plan_assignment(roster, COMMUNITY, 2, seed=0)
    plan = plan_assignment(roster, COMMUNITY, 2, max_load=4, seed=0)
    assert max(plan.loads().values()) <= 4 and all(ok for _t, ok in plan.checks)
    assert not any(a == "E04" and s != "C1" for a, s in plan.pairs)


# -- --replace: rebalancing --------------------------------------------------------------------
# Four subjects, K = 2; X, A, B rate two each, C and D one each (loads 2,2,2,1,1). C and D may not
# rate C1 (回避 sheet). Replacing X frees C1 and C2: C1 can only go to B (A is on it), C2 to the
# lower of C and D, leaving loads A 2, B 3 and 2, 1 for C and D: one move of one of B's pairs to
# the one at 1 restores 2,2,2,2, and no fewer can (that assessor needs one more pair).
REB_SUBJECTS = [(f"C{i}", f"社区{i}", T, "", "", "") for i in range(1, 5)]
REB_ASSESSORS = [(code, code, "", "") for code in ("X", "A", "B", "C", "D")]
REB_PAIRS = [("X", "C1"), ("X", "C2"), ("A", "C1"), ("A", "C3"), ("B", "C2"), ("B", "C4"), ("C", "C3"), ("D", "C4")]
REB_CONFLICTS = [("C", "C1", ""), ("D", "C1", "")]


@pytest.mark.parametrize("seed", range(6))
def test_replace_moves_the_fewest_other_pairs_to_keep_loads_within_one(tmp_path, seed):
    roster = small_roster(tmp_path, REB_SUBJECTS, REB_ASSESSORS, REB_PAIRS, REB_CONFLICTS)
    plan = plan_assignment(roster, COMMUNITY, 2, seed=seed, replace=["X"])
    assert plan.loads() == {"A": 2, "B": 2, "C": 2, "D": 2}
    [(subject, old, new, why)] = plan.moved
    assert old == "B" and new in ("C", "D") and why == "balance" and subject != "C1"
    assert set(plan.pairs) >= {p for p in REB_PAIRS if p[0] != "X" and p != (old, subject)}
    assert [c[:2] for c in plan.changes if c[3] == "replaced"] == [("C1", "X"), ("C2", "X")]
    assert all(ok for _t, ok in plan.checks) and plan.released == ["X"]
    assert any("另调整了其他评估人的 1 个分配" in text for text, _ok in plan.checks)


def test_replace_says_clearly_when_no_move_can_balance(tmp_path):
    # C and D may rate only C3 and C4 respectively: nothing can reach them
    conflicts = [(a, s, "") for a in ("C", "D") for s in ("C1", "C2")] + [("C", "C4", ""), ("D", "C3", "")]
    roster = small_roster(tmp_path, REB_SUBJECTS, REB_ASSESSORS, REB_PAIRS, conflicts)
    with pytest.raises(InputError, match="无法通过调整其他评估人的分配消除") as err:
        plan_assignment(roster, COMMUNITY, 2, seed=0, replace=["X"])
    assert "--max-load" in str(err.value)
    plan = plan_assignment(roster, COMMUNITY, 2, seed=0, replace=["X"], max_load=3)  # the way out it names
    assert plan.moved == [] and max(plan.loads().values()) == 3


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(n=st.integers(2, 10), m=st.integers(3, 8), k=st.integers(2, 3), seed=st.integers(0, 10**6),
       counties=st.lists(st.integers(0, 3), min_size=20, max_size=20), who=st.integers(0, 7))
def test_property_replace_keeps_every_other_pair_but_the_moves_it_lists(n, m, k, seed, counties, who):
    k = min(k, m - 1)
    roster = random_roster(n, m, counties)
    try:
        plan = plan_assignment(roster, COMMUNITY, k, avoid=["区县"], seed=seed)
    except InputError:
        return
    roster.pairs = list(plan.pairs)
    gone = f"A{who % m}"
    try:
        again = plan_assignment(roster, COMMUNITY, k, avoid=["区县"], seed=seed, replace=[gone])
    except InputError as err:
        assert "未写入任何文件" in str(err)
        return
    assert all(ok for _t, ok in again.checks)
    others = {p for p in plan.pairs if p[0] != gone}
    lost = others - set(again.pairs)
    assert lost == {(a, s) for s, a, _to, why in again.moved}  # every other pair kept but those listed
    assert not any(a == gone for a, _s in again.pairs) and len(again.pairs) == len(plan.pairs)
    busy = [v for v in again.loads().values() if v]
    assert max(busy) - min(busy) <= 1
    if not lost:  # nothing moved: each freed pair went to an assessor that could take it
        assert set(again.pairs) >= others
