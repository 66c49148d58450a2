"""Self-assessment (自评) forms, their collection, the expert forms that show them, the 自评 vs 核定
comparison, and the 扣分理由 rule."""

from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path

import openpyxl
import pytest
from bs4 import BeautifulSoup

from conftest import fill_form, reason_rule, run, soffice_convert
from pipeline.config import Workspace
from pipeline.forms import EVIDENCE, HEADER, HEADER_ROW, SELF_HEADER
from pipeline.ledger import Ledger
from pipeline.systems import load_system

SYSTEM = load_system("community")
ITEMS = [i.code for i in SYSTEM.items]
MAX = {i.code: i.max for i in SYSTEM.items}
SELF_DIR = Path("output/forms/2026-11/community/自评")
EXPERT_DIR = Path("output/forms/2026-11/community")


def full_marks(**lower: float) -> dict[str, float]:
    """满分 on every item but those given."""
    return {code: lower.get(code, MAX[code]) for code in ITEMS}


def self_form(workspace: Path, subject: str) -> Path:
    return next((workspace / SELF_DIR).glob(f"*_{subject}_*.xlsx"))


def expert_form(workspace: Path, assessor: str) -> Path:
    return next((workspace / EXPERT_DIR).glob(f"*_{assessor}_*.xlsx"))


def fill_self(path: Path, subject: str, scores: dict[str, float], evidence: dict[str, str], save_as: Path) -> Path:
    fill_form(path, {subject: scores}, save_as=save_as)
    book = openpyxl.load_workbook(save_as)
    sheet = next(ws for ws in book.worksheets if ws.sheet_state == "visible" and ws.cell(2, 7).value == subject)
    col = SELF_HEADER.index(EVIDENCE) + 1
    for row in range(HEADER_ROW + 2, sheet.max_row + 1):
        if sheet.cell(row, 1).value in evidence:
            sheet.cell(row, col).value = evidence[sheet.cell(row, 1).value]
    book.save(save_as)
    return save_as


def returned(workspace: Path) -> Path:
    folder = workspace / "input" / "returned" / "2026-11"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# Hand-made case: every expert gives C001 满分 except C17 (10) = 2, so its verified total is 92;
# C002 gets 满分 but C01 = 2 (4) from every expert: 98. C001's self-assessment is 满分 (100):
# gap 8, not 自评偏高 (10); C17's gap is 8 > 10 / 2, listed. C002 rates itself 满分 too: gap 2.
# C003's experts give 满分 − 2 on C18, C19 and every 4-point item (9 × 2 = 18) − ... see below.
EXPERT_C001 = full_marks(C17=2)
EXPERT_C002 = full_marks(C01=2)
# C003: 4-point items 2 each (9 × 2 lost = 18), so its verified total is 82; self 满分: gap 18 > 10.
EXPERT_C003 = full_marks(**{c: 2 for c in ITEMS if MAX[c] == 4})


@pytest.fixture
def round_with_self(workspace: Path) -> Path:
    run(workspace, "forms", "--system", "community", "--period", "2026-11", "--kind", "self")
    run(workspace, "forms", "--system", "community", "--period", "2026-11")
    folder = returned(workspace)
    for assessor in ("E01", "E02", "E03"):
        remarks = {"C001": {"C17": "台账不全"}, "C002": {"C01": "活动记录偏少"}}
        fill_form(expert_form(workspace, assessor), {"C001": EXPERT_C001, "C002": EXPERT_C002, "C003": EXPERT_C003},
                  remarks, save_as=folder / f"{assessor}.xlsx")
    fill_self(self_form(workspace, "C001"), "C001", full_marks(), {"C01": "附件1 党建台账", "C17": "附件7"},
              folder / "自评-C001.xlsx")
    fill_self(self_form(workspace, "C003"), "C003", full_marks(), {}, folder / "自评-C003.xlsx")
    return workspace


def test_self_forms_one_per_subject_with_evidence_column(workspace: Path):
    result = run(workspace, "forms", "--system", "community", "--period", "2026-11", "--kind", "self")
    assert "3" in result.output
    names = sorted(p.name for p in (workspace / SELF_DIR).iterdir())
    assert names == ["2026-11_community_自评_C001_湖滨街道东坡路社区.xlsx",
                     "2026-11_community_自评_C002_玉林街道黉门街社区.xlsx",
                     "2026-11_community_自评_C003_南湖街道南湖社区.xlsx"]
    book = openpyxl.load_workbook(workspace / SELF_DIR / names[0])
    assert [ws.title for ws in book.worksheets if ws.sheet_state == "visible"] == ["填表说明", "C001 湖滨街道东坡路社区"]
    sheet = book["C001 湖滨街道东坡路社区"]
    header = [c.value for c in sheet[HEADER_ROW + 1]]
    assert header == list(HEADER) + ["佐证材料"] and header[:8] == list(HEADER)
    assert [sheet.cell(r, c).value for r, c in ((2, 1), (2, 7), (3, 1), (3, 2), (3, 6), (3, 7))] == [
        "评估对象", "C001", "评估人", "自评", "评估人编号", "C001"]
    assert sheet.protection.sheet
    first = HEADER_ROW + 2
    assert not sheet.cell(first, 7).protection.locked and not sheet.cell(first, 9).protection.locked
    assert sheet.cell(first, 5).protection.locked
    assert sheet.data_validations.dataValidation  # 得分 validated as on expert forms
    assert sheet.page_setup.orientation == "landscape"
    meta = {row[0].value: row[1].value for row in book["_happyhome"].iter_rows()}
    assert meta["kind"] == "self" and meta["assessor"] == "C001" and meta["stage"] == "督导"
    rows = [r[0].value for r in book["_happyhome"].iter_rows()]
    assert rows.index("kind") == rows.index("stage") + 1
    # the expert forms are as before, plus the kind row
    run(workspace, "forms", "--system", "community", "--period", "2026-11")
    expert = openpyxl.load_workbook(expert_form(workspace, "E01"))
    assert [c.value for c in expert.worksheets[2][HEADER_ROW + 1]] == list(HEADER)
    assert {row[0].value: row[1].value for row in expert["_happyhome"].iter_rows()}["kind"] == "expert"


def test_self_scores_are_collected_apart_from_the_experts(round_with_self: Path):
    ws = round_with_self
    run(ws, "collect", "--system", "community", "--period", "2026-11")
    with Ledger(Workspace.open(ws).path("ledger")) as ledger:
        experts = ledger.accepted_scores("2026-11", "community")
        own = ledger.self_scores("2026-11", "community")
    assert set(experts["assessor"]) == {"E01", "E02", "E03"}
    assert sorted(set(own["subject"])) == ["C001", "C003"]
    assert own[(own.subject == "C001") & (own.item == "C01")]["evidence"].item() == "附件1 党建台账"
    files = {r[0]: r for r in openpyxl.load_workbook(ws / "output/2026-11/collection-community.xlsx")["文件"]
             .iter_rows(min_row=2, values_only=True)}
    assert files["自评-C001.xlsx"][1:4] == ("自评（C001）", "已接收", 1)
    # the experts' mean is unchanged by the self-assessment: 100 − 8 = 92 for C001
    run(ws, "report", "--system", "community", "--period", "2026-11")
    with open(ws / "output/2026-11/results-community.csv", encoding="utf-8-sig") as fh:
        rows = {r["编号"]: r for r in csv.DictReader(fh)}
    assert rows["C001"]["总分"] == "92.00" and rows["C001"]["评估人数"] == "3"
    assert rows["C001"]["自评总分"] == "100.00" and rows["C002"]["自评总分"] == ""
    assert list(rows["C001"])[-1] == "自评总分"
    # status lists the subject whose self-assessment is missing
    out = run(ws, "status", "--system", "community", "--period", "2026-11", "--export", str(ws / "chase.xlsx")).output
    line = next(l for l in out.splitlines() if l.startswith("自评表"))
    assert line == "自评表：应交 3，已收 2，缺 1：C002"
    chase = openpyxl.load_workbook(ws / "chase.xlsx")
    assert [c.value for c in chase["自评未交"][2]][:2] == ["C002", "玉林街道黉门街社区"]
    assert chase["自评未交"].max_row == 2


def test_comparison_on_a_hand_made_case(round_with_self: Path):
    ws = round_with_self
    run(ws, "collect", "--system", "community", "--period", "2026-11")
    run(ws, "report", "--system", "community", "--period", "2026-11")
    book = openpyxl.load_workbook(ws / "output/2026-11/summary-community.xlsx")
    sheet = book["自评对比"]
    header = [c.value for c in sheet[1]]
    assert header[:5] == ["编号", "名称", "自评总分", "核定总分", "差值"]
    assert header[5:-1] == [f"{n}差值" for n in SYSTEM.level2_names] and header[-1] == "标记"
    rows = {r[0]: r for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert set(rows) == {"C001", "C003"}
    assert rows["C003"][2:5] == (100, 82, 18) and rows["C003"][-1] == "自评偏高"
    assert rows["C001"][2:5] == (100, 92, 8) and rows["C001"][-1] in ("", None)
    c17_level2 = next(i.level2 for i in SYSTEM.items if i.code == "C17")
    assert rows["C001"][header.index(f"{c17_level2}差值")] == 8
    items = book["指标明细"]
    head = [c.value for c in items[1]]
    assert "自评分" in head and head.index("自评分") > head.index("进阶指标")
    by_code = {r[0]: r for r in items.iter_rows(min_row=3, values_only=True)}
    assert by_code["C001"][head.index("自评分")] == 100 and by_code["C002"][head.index("自评分")] is None
    assert by_code["C001"][head.index("C17 自评")] == 10
    html = BeautifulSoup((ws / "output/2026-11/digest-community.html").read_text(encoding="utf-8"), "html.parser")
    section = html.select_one("#selfcheck")
    assert section is not None
    assert [tr["data-subject"] for tr in section.select("#selfcheck-rows tr")] == ["C003"]
    listed = {(tr["data-subject"], tr["data-item"]) for tr in section.select("#selfcheck-items tr")}
    assert ("C001", "C17") in listed  # 10 − 2 = 8 > 5
    assert ("C003", "C01") not in listed  # 4 − 2 = 2, not more than half of 4
    assert not any(s == "C002" for s, _ in listed)


def test_expert_forms_regenerated_show_the_self_assessment(round_with_self: Path):
    ws = round_with_self
    run(ws, "collect", "--system", "community", "--period", "2026-11")
    run(ws, "forms", "--system", "community", "--period", "2026-11", "--force")
    book = openpyxl.load_workbook(expert_form(ws, "E01"))
    sheets = {ws_.cell(2, 7).value: ws_ for ws_ in book.worksheets if ws_.sheet_state == "visible" and ws_.cell(2, 6).value == "对象编号"}
    header = [c.value for c in sheets["C001"][HEADER_ROW + 1]]
    assert header == list(HEADER) + ["自评分", "佐证材料"]
    first = HEADER_ROW + 2
    assert sheets["C001"].cell(first, 1).value == "C01"
    assert sheets["C001"].cell(first, 9).value == 4 and sheets["C001"].cell(first, 10).value == "附件1 党建台账"
    assert sheets["C001"].cell(first, 9).protection.locked and sheets["C001"].cell(first, 10).protection.locked
    assert sheets["C002"].cell(first, 9).value is None  # no self-assessment returned
    # such a form, filled, is collected as before (saved a second later: it replaces the first return)
    time.sleep(1.1)
    folder = returned(ws)
    fill_form(expert_form(ws, "E01"), {"C001": full_marks()}, save_as=folder / "E01-again.xlsx")
    run(ws, "collect", "--system", "community", "--period", "2026-11")
    with Ledger(Workspace.open(ws).path("ledger")) as ledger:
        experts = ledger.accepted_scores("2026-11", "community")
    assert experts[(experts.assessor == "E01") & (experts.subject == "C001")]["score"].sum() == 100


def test_self_form_resaved_by_libreoffice_and_a_newer_return_supersedes(workspace: Path, tmp_path: Path):
    run(workspace, "forms", "--system", "community", "--period", "2026-11", "--kind", "self")
    folder = returned(workspace)
    filled = fill_self(self_form(workspace, "C002"), "C002", full_marks(C01=1), {"C01": "材料 3"},
                       tmp_path / "自评-C002.xlsx")
    converted = soffice_convert(filled, "xlsx", tmp_path / "lo")
    shutil.copy(converted, folder / "自评-C002-lo.xlsx")
    result = run(workspace, "collect", "--system", "community", "--period", "2026-11")
    with Ledger(Workspace.open(workspace).path("ledger")) as ledger:
        own = ledger.self_scores("2026-11", "community")
    assert own[own.item == "C01"]["score"].item() == 1 and own[own.item == "C01"]["evidence"].item() == "材料 3"
    assert "missing_reason" not in result.output
    # a newer self-assessment of the same subject replaces it
    later = fill_self(self_form(workspace, "C002"), "C002", full_marks(C01=3), {}, folder / "自评-C002-新.xlsx")
    stamp = time.time() + 120
    os.utime(later, (stamp, stamp))
    run(workspace, "collect", "--system", "community", "--period", "2026-11")
    with Ledger(Workspace.open(workspace).path("ledger")) as ledger:
        own = ledger.self_scores("2026-11", "community")
        assert ledger.accepted_scores("2026-11", "community").empty
    assert own[own.item == "C01"]["score"].item() == 3 and len(own) == len(ITEMS)


def _reason_round(workspace: Path, mode: str | None) -> Path:
    reason_rule(workspace, 1.0, mode or "warning")  # the shipped default is 1.0, "warning"
    run(workspace, "forms", "--system", "community", "--period", "2026-11")
    folder = returned(workspace)
    # C001 has a deduction with a reason, C002 one without
    fill_form(expert_form(workspace, "E01"), {"C001": full_marks(C01=3), "C002": full_marks(C02=3),
                                              "C003": full_marks()},
              {"C001": {"C01": "台账不全"}}, save_as=folder / "E01.xlsx")
    return workspace


def test_missing_reason_is_a_warning_by_default(workspace: Path):
    ws = _reason_round(workspace, None)
    run(ws, "collect", "--system", "community", "--period", "2026-11")
    with Ledger(Workspace.open(ws).path("ledger")) as ledger:
        problems = ledger.problems("2026-11", "community")
        accepted = set(ledger.accepted_scores("2026-11", "community")["subject"])
    found = problems[problems.code == "missing_reason"]
    assert len(found) == 1 and found.severity.item() == "warning"
    assert found.message.item() == "C02 三驾马车 得分 3 低于满分 4，请在备注中说明扣分理由。"
    assert found.cell.item() == "H8"
    assert accepted == {"C001", "C002", "C003"}
    guide = openpyxl.load_workbook(expert_form(ws, "E01"))["填表说明"]
    assert any("扣分理由" in str(c.value) for c in guide["A"])


def test_missing_reason_as_an_error_holds_the_sheet_back(workspace: Path):
    ws = _reason_round(workspace, "error")
    result = run(ws, "collect", "--system", "community", "--period", "2026-11")
    assert "部分接收" in result.output
    with Ledger(Workspace.open(ws).path("ledger")) as ledger:
        problems = ledger.problems("2026-11", "community")
        accepted = set(ledger.accepted_scores("2026-11", "community")["subject"])
    found = problems[problems.code == "missing_reason"]
    assert len(found) == 1 and found.severity.item() == "error" and "本表未计入" in found.message.item()
    assert found.sheet.item().startswith("C002") and found.cell.item().startswith("H")
    assert accepted == {"C001", "C003"}


def test_a_self_sheet_copied_into_a_new_workbook_is_still_a_self_assessment(workspace: Path, tmp_path: Path):
    run(workspace, "forms", "--system", "community", "--period", "2026-11", "--kind", "self")
    filled = fill_self(self_form(workspace, "C003"), "C003", full_marks(C05=2), {"C05": "照片"}, tmp_path / "f.xlsx")
    source = openpyxl.load_workbook(filled)["C003 南湖街道南湖社区"]
    book = openpyxl.Workbook()
    copy = book.active
    for row in source.iter_rows(values_only=True):
        copy.append(list(row))
    book.save(returned(workspace) / "复制的自评.xlsx")
    run(workspace, "collect", "--system", "community", "--period", "2026-11")
    with Ledger(Workspace.open(workspace).path("ledger")) as ledger:
        own = ledger.self_scores("2026-11", "community")
        assert ledger.accepted_scores("2026-11", "community").empty
    assert set(own["subject"]) == {"C003"} and own[own.item == "C05"]["evidence"].item() == "照片"
    assert own["score"].sum() == 100 - MAX["C05"] + 2
