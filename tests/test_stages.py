"""Rounds have a stage (遴选、督导、评估、验收): its own folders, forms stamped with it, a ledger
that keeps the stages apart, and 督导 exactly as before when no --stage is given."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from conftest import fill_form, run
from pipeline.forms import META_SHEET
from pipeline.rounds import check_key, check_stage, cli_args, round_key, split_key
from pipeline.errors import UsageError
from test_collect import answers, ledger_scores

PERIOD = "2027-03"
KEY = "2027-03-遴选"


def forms(workspace: Path, *stage: str) -> dict[str, Path]:
    run(workspace, "forms", "--system", "community", "--period", PERIOD, *stage)
    key = round_key(PERIOD, stage[1] if stage else None)
    out = workspace / "output" / "forms" / key / "community"
    return {p.name.split("_")[2]: p for p in sorted(out.glob("*.xlsx"))}


def folder(workspace: Path, key: str) -> Path:
    path = workspace / "input" / "returned" / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_stage_names_aliases_and_keys():
    assert [check_stage(s) for s in ("遴选", "selection", "Supervision", None, "acceptance", "评估")] == \
        ["遴选", "遴选", "督导", "督导", "验收", "评估"]
    with pytest.raises(UsageError):
        check_stage("复核")
    assert round_key("2027-03", "督导") == "2027-03" and round_key("2027-03", "selection") == KEY
    assert split_key(KEY) == ("2027-03", "遴选") and split_key("2027-03") == ("2027-03", "督导")
    assert split_key("2027-03-督导") is None and split_key("2027-13") is None
    with pytest.raises(UsageError):
        check_key("2027-03-复核")
    assert cli_args(KEY) == "--period 2027-03 --stage 遴选" and cli_args("2027-03") == "--period 2027-03"
    assert round_key("2027-03", "acceptance") == "2027-03-验收"


def test_a_selection_round_has_its_own_forms_folders_and_outputs(workspace):
    made = forms(workspace, "--stage", "selection")  # the English alias names the same stage
    assert sorted(made) == ["E01", "E02", "E03"]
    assert all(p.name.startswith(f"{KEY}_community_") for p in made.values())
    book = openpyxl.load_workbook(made["E01"])
    meta = {row[0]: row[1] for row in book[META_SHEET].iter_rows(values_only=True)}
    assert meta["stage"] == "遴选" and meta["period"] == PERIOD
    assert book["填表说明"]["A1"].value == "创新实践社区评价指标体系·遴选评分表 · 2027-03 期"
    assert book[book.sheetnames[2]]["A1"].value == "创新实践社区评价指标体系·遴选评分表"

    returned = folder(workspace, KEY)
    for code, path in made.items():
        fill_form(path, answers(code), save_as=returned / path.name)
    out = run(workspace, "collect", "--system", "community", "--period", PERIOD, "--stage", "遴选")
    assert "Nothing to collect" not in out.output
    assert (workspace / "output" / KEY / "collection-community.xlsx").is_file()
    run(workspace, "status", "--system", "community", "--period", PERIOD, "--stage", "遴选")
    run(workspace, "report", "--system", "community", "--period", PERIOD, "--stage", "selection")
    for name in ("summary-community.xlsx", "results-community.csv", "scores-community.csv", "digest-community.html"):
        assert (workspace / "output" / KEY / name).is_file(), name
    assert not (workspace / "output" / PERIOD).exists()  # nothing of the 督导 round was made

    # the ledger keeps the stages apart: the 督导 round of the same month has nothing yet
    assert len(ledger_scores_of(workspace, KEY)) == 3 * 3 * 19
    assert ledger_scores_of(workspace, PERIOD) == {}
    run(workspace, "report", "--system", "community", "--period", PERIOD, expect=3)


def ledger_scores_of(workspace: Path, key: str) -> dict:
    from pipeline.ledger import Ledger

    with Ledger(workspace / "ledger" / "happyhome.sqlite") as ledger:
        frame = ledger.accepted_scores(key, "community")
    return {(r.assessor, r.subject, r.item): r.score for r in frame.itertuples()}


def test_a_form_of_another_stage_is_another_rounds_and_says_where_it_belongs(workspace):
    selection = forms(workspace, "--stage", "遴选")
    supervision = forms(workspace)
    # a 督导 form dropped into the 遴选 folder, and a 遴选 form into the 督导 folder
    fill_form(supervision["E01"], answers("E01"), save_as=folder(workspace, KEY) / "督导表.xlsx")
    fill_form(selection["E02"], answers("E02"), save_as=folder(workspace, PERIOD) / "遴选表.xlsx")
    out = run(workspace, "collect", "--system", "community", "--period", PERIOD, "--stage", "遴选")
    assert "督导表.xlsx" in out.output
    book = openpyxl.load_workbook(workspace / "output" / KEY / "collection-community.xlsx")
    problems = [dict(zip([c.value for c in book["问题"][1]], row)) for row in book["问题"].iter_rows(min_row=2, values_only=True)]
    [wrong] = [p for p in problems if p["文件"] == "督导表.xlsx"]
    assert "这是督导阶段的评分表，本轮是遴选阶段" in wrong["问题"] and "input/returned/2027-03/" in wrong["问题"]
    out = run(workspace, "collect", "--system", "community", "--period", PERIOD)
    book = openpyxl.load_workbook(workspace / "output" / PERIOD / "collection-community.xlsx")
    problems = [dict(zip([c.value for c in book["问题"][1]], row)) for row in book["问题"].iter_rows(min_row=2, values_only=True)]
    [wrong] = [p for p in problems if p["文件"] == "遴选表.xlsx"]
    assert "这是遴选阶段的评分表，本轮是督导阶段" in wrong["问题"] and "input/returned/2027-03-遴选/" in wrong["问题"]
    assert ledger_scores_of(workspace, KEY) == {} and ledger_scores_of(workspace, PERIOD) == {}
    # moved where it belongs, each is taken in by its own round
    (folder(workspace, KEY) / "督导表.xlsx").rename(folder(workspace, PERIOD) / "督导表.xlsx")
    (folder(workspace, PERIOD) / "遴选表.xlsx").rename(folder(workspace, KEY) / "遴选表.xlsx")
    run(workspace, "collect", "--system", "community", "--period", PERIOD)
    run(workspace, "collect", "--system", "community", "--period", PERIOD, "--stage", "遴选")
    assert {a for a, _, _ in ledger_scores_of(workspace, PERIOD)} == {"E01"}
    assert {a for a, _, _ in ledger_scores_of(workspace, KEY)} == {"E02"}


def test_rollup_rolls_up_supervision_unless_told_another_stage(workspace):
    supervision, selection = forms(workspace), forms(workspace, "--stage", "遴选")
    fill_form(supervision["E01"], answers("E01"), save_as=folder(workspace, PERIOD) / "a.xlsx")
    fill_form(selection["E02"], answers("E02"), save_as=folder(workspace, KEY) / "b.xlsx")
    run(workspace, "collect", "--system", "community", "--period", PERIOD)
    run(workspace, "collect", "--system", "community", "--period", PERIOD, "--stage", "遴选")
    run(workspace, "rollup", "--system", "community")
    plain = openpyxl.load_workbook(workspace / "output" / "rollup" / "rollup-community-2027-03_2027-03.xlsx")
    rows = list(plain["回收（按评估人）"].iter_rows(min_row=2, values_only=True))
    run(workspace, "rollup", "--system", "community", "--stage", "遴选")
    staged = workspace / "output" / "rollup" / "rollup-community-2027-03_2027-03-遴选.xlsx"
    assert staged.is_file()
    other = list(openpyxl.load_workbook(staged)["回收（按评估人）"].iter_rows(min_row=2, values_only=True))
    received = lambda table: {r[0] for r in table if r[5] or r[6]}  # noqa: E731 - 按时 or 逾期
    assert received(rows) == {"E01"} and received(other) == {"E02"}


def test_an_unknown_stage_is_a_usage_error(workspace):
    out = run(workspace, "forms", "--system", "community", "--period", PERIOD, "--stage", "复核", expect=2)
    assert "--stage" in out.output
