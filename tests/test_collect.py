"""`happyhome collect`: forms filled as an assessor would, collected through the CLI, the ledger
and the collection workbook read back."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings, strategies as st

from conftest import ASSESSORS, PAIRS, SUBJECTS, fill_form, run, soffice_convert, ledger_rows, open_ledger
from pipeline.collect import find_header, find_identity, normalise_score
from pipeline.config import Workspace
from pipeline.forms import META_SHEET
from pipeline.ledger import Ledger
from pipeline.lock import workspace_lock
from pipeline.messages import problem
from pipeline.roster import write_roster
from pipeline.systems import load_system

BOTH_BACKENDS = True  # tests/conftest.py: each test on SQLite and on PostgreSQL, but the sqlite_only ones
pytestmark = pytest.mark.usefixtures("backend")
PERIOD = "2026-11"
SYSTEM = load_system("community")
COMMUNITIES = ("C001", "C002", "C003")


# -- helpers ----------------------------------------------------------------------------------
def make_forms(workspace: Path, period: str = PERIOD, system: str = "community") -> dict[str, Path]:
    run(workspace, "forms", "--system", system, "--period", period)
    out = workspace / "output" / "forms" / period / system
    return {p.name.split("_")[2]: p for p in sorted(out.glob("*.xlsx"))}


def answers(assessor: str, subjects=COMMUNITIES) -> dict[str, dict[str, float]]:
    """A distinct, valid score for every (assessor, subject, item): max minus a small step."""
    a = int(assessor[1:])
    return {s: {item.code: item.max - ((a + n + k) % 3) * 0.5 for k, item in enumerate(SYSTEM.items)}
            for n, s in enumerate(subjects)}


def returned(workspace: Path) -> Path:
    folder = workspace / "input" / "returned" / PERIOD
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def collect(workspace: Path, *args: str, expect: int = 0):
    return run(workspace, "collect", "--system", "community", "--period", PERIOD, *args, expect=expect)


def ledger_scores(workspace: Path) -> dict[tuple[str, str, str], float]:
    with open_ledger(workspace) as ledger:
        frame = ledger.accepted_scores(PERIOD, "community")
    return {(r.assessor, r.subject, r.item): r.score for r in frame.itertuples()}


def expected_scores(*assessors: str, subjects=COMMUNITIES) -> dict[tuple[str, str, str], float]:
    return {(a, s, i): v for a in assessors for s, items in answers(a, subjects).items() for i, v in items.items()}


def counts(workspace: Path) -> dict[str, int]:
    return {t: ledger_rows(workspace, f"SELECT COUNT(*) FROM {t}")[0][0]
            for t in ("files", "aliases", "sheets", "scores", "problems")}


def report(workspace: Path) -> dict[str, list[dict]]:
    book = openpyxl.load_workbook(workspace / "output" / PERIOD / "collection-community.xlsx")
    out = {}
    for ws in book.worksheets:
        rows = list(ws.iter_rows(values_only=True))
        out[ws.title] = [dict(zip(rows[0], r)) for r in rows[1:]]
    return out


def problems(workspace: Path) -> list[tuple[str, str, str, str, str]]:
    """(file, sheet, cell, value, code) of every problem in the ledger."""
    return ledger_rows(workspace, """SELECT f.name, p.sheet, p.cell, p.value, p.code FROM problems p
                                     JOIN files f ON f.id = p.file_id ORDER BY p.id""")


def set_setting(workspace: Path, old: str, new: str) -> None:
    config = workspace / "happyhome.toml"
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new), encoding="utf-8")


def set_saved(path: Path, when: datetime) -> None:
    """Rewrite the workbook's own last-saved time (docProps/core.xml), as Excel would store it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                              rb"\g<1>" + when.strftime("%Y-%m-%dT%H:%M:%SZ").encode() + rb"\g<2>", data)
            dst.writestr(info, data)
    path.write_bytes(buffer.getvalue())


def sheet_of(book, subject: str):
    return next(ws for ws in book.worksheets if ws["G2"].value == subject)


# -- the score normaliser (pure) --------------------------------------------------------------
@pytest.mark.parametrize("value, score, note, error", [
    (3, 3.0, None, None),
    (3.5, 3.5, None, None),
    (0, 0.0, None, None),
    (4, 4.0, None, None),
    ("3", 3.0, "文本格式的数字", None),
    ("３．５", 3.5, "文本格式的数字，全角字符已转为半角", None),
    ("4分", 4.0, "文本格式的数字，已去掉“分”字", None),
    (" 2 ", 2.0, "文本格式的数字，已去掉空格", None),
    ("\u3000１\u3000分", 1.0, "文本格式的数字，全角字符已转为半角，已去掉空格，已去掉“分”字", None),
    (None, None, None, "blank_score"),
    ("", None, None, "blank_score"),
    ("   ", None, None, "blank_score"),
    ("四", None, None, "not_a_number"),
    ("满分", None, None, "not_a_number"),
    ("分", None, None, "not_a_number"),
    ("3,5", None, None, "not_a_number"),
    ("nan", None, None, "not_a_number"),
    (True, None, None, "not_a_number"),
    (False, None, None, "not_a_number"),
    (float("nan"), None, None, "not_a_number"),
    (float("inf"), None, None, "not_a_number"),
    (datetime(2026, 1, 3), None, None, "not_a_number"),
    (-1, None, None, "out_of_range"),
    ("-0.5", None, None, "out_of_range"),
    (4.01, None, None, "out_of_range"),
    ("5分", None, None, "out_of_range"),
    ("#DIV/0!", None, None, "error_value"),
    ("#VALUE!", None, None, "error_value"),
    ("#N/A", None, None, "error_value"),
    ("Err:502", None, None, "error_value"),
])
def test_normalise_score(value, score, note, error):
    assert normalise_score(value, 4) == (score, note, error)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(), st.binary(), st.datetimes(), st.lists(st.integers(), max_size=3)),
       st.one_of(st.floats(allow_nan=True), st.integers(min_value=-5, max_value=100), st.text(max_size=3)))
def test_normalise_never_raises_and_accepts_only_scores_in_range(value, maximum):
    score, note, error = normalise_score(value, maximum)
    assert (score is None) == (error is not None)
    if score is not None:
        assert 0 <= score <= float(maximum) + 1e-9 and math.isfinite(score)
        assert note is None or isinstance(value, str)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=10, allow_nan=False), st.sampled_from([str, lambda x: f"{x}分", lambda x: f" {x} "]))
def test_normalise_accepts_every_number_in_range_typed_or_as_text(x, shape):
    assert normalise_score(x, 10) == (x, None, None)
    score, note, error = normalise_score(shape(x), 10)
    assert error is None and score == float(str(x)) and note.startswith("文本格式的数字")


def test_identity_block_and_header_are_found_by_their_text():
    rows = [["评分表", ""], ["", "", ""], ["备注行"], ["评估对象：", "", "某社区", "对象编号", "C002"],
            ["评估人", "张敏", "评估人编号", "", "E01"], ["期次", "2026-11", "指标体系", "community"],
            ["x", "得分", "编号"], ["C01", 3, "?"]]
    block = find_identity(rows)
    assert block.values == {"subject_name": "某社区", "subject": "C002", "assessor_name": "张敏", "assessor": "E01",
                            "period": "2026-11", "system": "community"}
    assert block.cells["subject"] == "E4" and block.cells["assessor"] == "E5"
    assert find_header(rows) == (6, {"x": 0, "得分": 1, "编号": 2})


@pytest.mark.parametrize("layout", ["form", "header_text_spaced", "score_cell_without_code", "no_header", "late_header",
                                    "declared_below_header"])
def test_the_top_rows_worked_out_once_read_as_each_reader_alone(layout):
    # examine works out a sheet's top rows once (top_facts) for the identity block, 回避 and the
    # header; each reader must find what it finds reading the rows itself, whatever the layout.
    from pipeline.collect import find_declared, top_facts

    block = [["评估对象", "某社区", "对象编号", "C002"], ["评估人", "张敏", "评估人编号", "E01"], ["回避", "是"],
             ["回避原因", "亲属"]]
    rows = {"form": [*block, ["编号", "得分", "备注"], ["C01", 3, ""]],
            "header_text_spaced": [*block, ["编号", " 得分 "], ["期次", "2026-11"], ["C01", 3]],
            "score_cell_without_code": [block[0], ["x", "得分"], *block[1:], ["编号", "得分"], ["C01", 3]],
            "no_header": [*block, ["C01", 3]] * 12,
            "late_header": [*block, *[["说明"]] * 20, ["编号", "得分"]],
            "declared_below_header": [block[0], ["编号", "得分"], ["回避", "是"]]}[layout]
    top = top_facts(rows)
    assert find_identity(rows, top) == find_identity(rows)
    assert find_declared(rows, top) == find_declared(rows)
    assert find_header(rows, top) == find_header(rows)


def test_a_row_met_again_reads_the_same_and_equal_values_of_other_types_read_as_typed():
    """The top rows are remembered per worker (collect._row_facts): the same row again reads the
    same, and 1, 1.0 and TRUE, equal as Python values, still read as what was typed."""
    def block(code) -> dict:
        return find_identity([["评估对象", "某社区", "对象编号", code], ["评估人编号", "E01"], ["编号", "得分"]]).values

    assert block("C002") == block("C002") == {"subject_name": "某社区", "subject": "C002", "assessor": "E01"}
    assert [block(v)["subject"] for v in (1, 1.0, True, 1.5, "1")] == ["1", "1", "True", "1.5", "1"]
    assert [block(v)["subject"] for v in (True, 1.0, 1)] == ["True", "1", "1"]


# -- end to end ---------------------------------------------------------------------------------
def test_filled_forms_are_collected_with_every_score_traceable(workspace):
    forms = make_forms(workspace)
    folder = returned(workspace)
    for a, path in forms.items():
        fill_form(path, answers(a), remarks={"C002": {"C05": "-资料不全 @张"}}, save_as=folder / path.name)
    (folder / "~$lock.xlsx").write_bytes(b"owner")  # an office lock file: ignored
    (folder / ".DS_Store").write_bytes(b"\0")
    result = collect(workspace)
    assert "已接收" in result.output and "collection-community.xlsx" in result.output
    assert ledger_scores(workspace) == expected_scores("E01", "E02", "E03")
    with open_ledger(workspace) as ledger:
        frame = ledger.accepted_scores(PERIOD, "community")
        files = ledger.files(PERIOD, "community")
    row = frame[(frame.assessor == "E02") & (frame.subject == "C002") & (frame.item == "C05")].iloc[0]
    assert (row.sheet, row.cell, row.remark, row.file) == ("C002 玉林街道黉门街社区", "G11", "-资料不全 @张", forms["E02"].name)
    assert sorted(files.status) == ["accepted"] * 3
    for f in files.itertuples():  # every original archived under its hash
        archived = Path(f.archive_path)
        assert archived.name == f.sha256 + ".xlsx" and archived.parent.name == f.sha256[:2]
        assert archived.read_bytes() == Path(f.original_path).read_bytes()
    book = report(workspace)
    assert [(r["文件名"], r["评估人"], r["状态"], r["接收对象数"], r["问题数"]) for r in book["文件"]] == [
        (forms[a].name, f"{n}（{a}）", "已接收", 3, 0) for a, n, *_ in ASSESSORS]
    assert book["问题"] == [] and book["未交"] == []
    raw = openpyxl.load_workbook(workspace / "output" / PERIOD / "collection-community.xlsx")
    assert raw["文件"].freeze_panes == "A2" and raw["文件"].auto_filter.ref


def test_moved_and_inserted_rows_and_columns_are_matched_by_code(workspace):
    path = make_forms(workspace)["E01"]
    target = returned(workspace) / "moved.xlsx"
    fill_form(path, answers("E01"), save_as=target)
    book = openpyxl.load_workbook(target)
    ws = sheet_of(book, "C001")
    for c in range(1, 9):  # swap the rows of C02 and C10
        ws.cell(8, c).value, ws.cell(16, c).value = ws.cell(16, c).value, ws.cell(8, c).value
    ws.insert_rows(12, 2)
    ws.cell(12, 1).value = "说明：以下为补充"
    ws = sheet_of(book, "C002")
    ws.insert_cols(3)  # the 得分 column moves from G to H
    ws.insert_rows(1)  # and everything one row down
    book.save(target)
    collect(workspace)
    assert ledger_scores(workspace) == expected_scores("E01")
    assert problems(workspace) == []
    with open_ledger(workspace) as ledger:
        frame = ledger.accepted_scores(PERIOD, "community")
    cells = {(r.subject, r.item): r.cell for r in frame.itertuples()}
    assert cells["C001", "C02"] == "G18" and cells["C001", "C10"] == "G8" and cells["C002", "C01"] == "H8"


def test_numbers_as_text_full_width_and_fen_are_normalised_with_a_warning(workspace):
    path = make_forms(workspace)["E01"]
    scores = answers("E01")
    scores["C001"].update({"C01": "3", "C02": "４", "C03": "4分", "C04": " 2 "})
    fill_form(path, scores, save_as=returned(workspace) / "text.xlsx")
    collect(workspace)
    got = ledger_scores(workspace)
    assert [got["E01", "C001", c] for c in ("C01", "C02", "C03", "C04")] == [3, 4, 4, 2]
    assert len(got) == 3 * 19
    found = problems(workspace)
    assert [(p[2], p[3], p[4]) for p in found] == [("G7", "3", "normalised"), ("G8", "４", "normalised"),
                                                   ("G9", "4分", "normalised"), ("G10", " 2 ", "normalised")]
    with open_ledger(workspace) as ledger:
        frame = ledger.accepted_scores(PERIOD, "community")
    assert frame[(frame.subject == "C001") & (frame.item == "C02")].raw.iloc[0] == "４"
    assert report(workspace)["文件"][0]["状态"] == "已接收"


def test_an_error_rejects_only_its_sheet_and_strict_makes_it_exit_6(workspace):
    forms = make_forms(workspace)
    folder = returned(workspace)
    bad = {"E01": {"C001": ("C05", None), "C002": ("C06", "四")},
           "E02": {"C001": ("C17", 11), "C002": ("C01", -1)},
           "E03": {"C001": ("C02", "#DIV/0!"), "C002": ("C03", "=B8*2")}}
    for a, path in forms.items():
        scores = answers(a)
        for subject, (item, value) in bad[a].items():
            scores[subject][item] = value
        fill_form(path, scores, save_as=folder / f"{a}.xlsx")
    first = collect(workspace, "--strict", expect=6)
    assert "部分接收  E01.xlsx：3 张对象表中 2 张被退回" in first.output
    got = ledger_scores(workspace)
    assert {(a, s) for a, s, _ in got} == {(a, "C003") for a in ("E01", "E02", "E03")}
    assert got == {k: v for k, v in expected_scores("E01", "E02", "E03").items() if k[1] == "C003"}
    found = {(p[0], p[2], p[3], p[4]) for p in problems(workspace)}
    assert found == {("E01.xlsx", "G11", "", "blank_score"), ("E01.xlsx", "G12", "四", "not_a_number"),
                     ("E02.xlsx", "G23", "11", "out_of_range"), ("E02.xlsx", "G7", "-1", "out_of_range"),
                     ("E03.xlsx", "G8", "#DIV/0!", "error_value"), ("E03.xlsx", "G9", "=B8*2", "formula_no_value")}
    book = report(workspace)
    assert {r["状态"] for r in book["文件"]} == {"部分接收"}
    assert [r["接收对象数"] for r in book["文件"]] == [1, 1, 1]
    chase = {(r["评估人编号"], r["评估对象编号"]): r for r in book["未交"]}
    assert set(chase) == {(a, s) for a in ("E01", "E02", "E03") for s in ("C001", "C002")}
    assert chase["E03", "C001"]["联系方式"] == "wangfang@example.org"
    assert chase["E03", "C001"]["情况"].startswith("已交但未通过检查")
    messages = {r["单元格"]: r["问题"] for r in book["问题"] if r["文件"] == "E02.xlsx"}
    assert messages["G23"] == "C17 模式创新 的得分 11 超出范围，应在 0 到 10 之间，本表未计入。"
    raw = openpyxl.load_workbook(workspace / "output" / PERIOD / "collection-community.xlsx")["问题"]
    typed = [row[3] for row in raw.iter_rows(min_row=2) if row[3].value == "=B8*2"]
    assert typed and typed[0].data_type == "s"  # what the assessor typed stays text, never a formula


def test_metadata_gone_collects_from_the_identity_block(workspace):
    forms = make_forms(workspace)
    folder = returned(workspace)
    # E01 copies the sheets' values into a new workbook; E02 deletes the hidden sheet
    fill_form(forms["E01"], answers("E01"), save_as=folder / "filled.xlsx")
    source = openpyxl.load_workbook(folder / "filled.xlsx")
    fresh = openpyxl.Workbook()
    fresh.remove(fresh.active)
    for ws in source.worksheets:
        if ws.sheet_state == "visible":
            copy = fresh.create_sheet("表" + ws.title[:4])
            for row in ws.iter_rows():
                for cell in row:
                    copy.cell(cell.row, cell.column).value = cell.value
    (folder / "filled.xlsx").unlink()
    fresh.save(folder / "copied.xlsx")
    fill_form(forms["E02"], answers("E02"), save_as=folder / "nometa.xlsx")
    book = openpyxl.load_workbook(folder / "nometa.xlsx")
    del book[META_SHEET]
    book.save(folder / "nometa.xlsx")
    collect(workspace)
    assert ledger_scores(workspace) == expected_scores("E01", "E02")
    assert {r["状态"] for r in report(workspace)["文件"]} == {"已接收"}


def test_visible_block_disagreeing_with_metadata_rejects_that_sheet(workspace):
    path = make_forms(workspace)["E01"]
    target = fill_form(path, answers("E01"), save_as=returned(workspace) / "edited.xlsx")
    book = openpyxl.load_workbook(target)
    sheet_of(book, "C002")["G3"].value = "E02"  # someone else's code typed into the block
    book.save(target)
    collect(workspace)
    assert {s for _, s, _ in ledger_scores(workspace)} == {"C001", "C003"}
    assert problems(workspace) == [("edited.xlsx", "C002 玉林街道黉门街社区", "G3", "E02", "identity_mismatch")]
    assert report(workspace)["文件"][0]["状态"] == "部分接收"


def test_edited_metadata_wrong_period_wrong_system_and_foreign_files_are_rejected(workspace):
    forms = make_forms(workspace)
    folder = returned(workspace)
    target = fill_form(forms["E01"], answers("E01"), save_as=folder / "tampered.xlsx")
    book = openpyxl.load_workbook(target)
    book[META_SHEET]["B7"].value = "E02"  # the assessor row, edited by hand
    book.save(target)
    old = make_forms(workspace, period="2026-10")["E02"]
    fill_form(old, answers("E02"), save_as=folder / "october.xlsx")
    zone = make_forms(workspace, system="zone")["E03"]
    zone_items = load_system("zone").items
    fill_form(zone, {z: {i.code: i.max for i in zone_items} for z in ("Z01", "Z02")}, save_as=folder / "zone.xlsx")
    foreign = openpyxl.Workbook()
    foreign.active.append(["编号", "得分"])
    foreign.active.append(["C01", 3])
    foreign.save(folder / "foreign.xlsx")
    fill_form(forms["E03"], answers("E03"), save_as=folder / "good.xlsx")
    result = collect(workspace)
    assert ledger_scores(workspace) == expected_scores("E03")
    codes = {p[0]: p[4] for p in problems(workspace)}
    assert codes == {"tampered.xlsx": "meta_tampered", "foreign.xlsx": "no_identity", "october.xlsx": "wrong_period",
                     "zone.xlsx": "wrong_system"}
    book = report(workspace)
    rows = {r["文件名"]: r for r in book["文件"]}
    assert rows["october.xlsx"]["状态"] == "已拒收" and rows["zone.xlsx"]["状态"] == "已拒收"
    assert rows["october.xlsx"]["说明"] == ("这是 2026-10 期的评分表，本轮收取的是 2026-11 期。"
                                          "请放入 input/returned/2026-10/ 文件夹，收取该期时计入。")
    assert "这是“zone”的评分表，本轮收取的是“community”。" in {r["问题"] for r in book["问题"]}
    assert "非本轮    zone.xlsx：这是“zone”的评分表" in result.output
    assert re.search(r"非本轮的评分表\s*│\s*2\s", result.output)
    # a file is recorded once per round: the zone run over the same (shared) folder takes the zone form
    zone_run = run(workspace, "collect", "--system", "zone", "--period", PERIOD)
    assert re.search(r"已接收\s*│\s*1\s", zone_run.output)
    with open_ledger(workspace) as ledger:
        zone_scores = ledger.accepted_scores(PERIOD, "zone")
    assert len(zone_scores) == 2 * len(zone_items) and set(zone_scores.assessor) == {"E03"}


def test_broken_files_are_one_rejected_row_each_and_the_run_continues(workspace):
    from msoffcrypto.format.ooxml import OOXMLFile

    forms = make_forms(workspace)
    folder = returned(workspace)
    good = fill_form(forms["E01"], answers("E01"), save_as=folder / "good.xlsx")
    data = good.read_bytes()
    (folder / "empty.xlsx").write_bytes(b"")
    (folder / "truncated.xlsx").write_bytes(data[: len(data) // 2])
    (folder / "report.pdf").write_bytes(b"%PDF-1.4 not a workbook")
    (folder / "notes.txt").write_text("评分见附件", encoding="utf-8")
    with open(good, "rb") as plain, open(folder / "locked.xlsx", "wb") as locked:
        office = OOXMLFile(plain)
        office.encrypt("secret", locked)
    collect(workspace)
    assert ledger_scores(workspace) == expected_scores("E01")
    rows = {r["文件名"]: (r["状态"], r["说明"]) for r in report(workspace)["文件"]}
    assert rows == {
        "good.xlsx": ("已接收", ""),
        "empty.xlsx": ("已拒收", "文件是空的（0 字节），请重新发送填好的评分表。"),
        "truncated.xlsx": ("已拒收", rows["truncated.xlsx"][1]),
        "report.pdf": ("已拒收", "这不是 Excel/WPS 电子表格文件（PDF 文档），请发送系统下发的评分表（.xlsx）。"),
        "notes.txt": ("已拒收", "这不是 Excel/WPS 电子表格文件（文本文件），请发送系统下发的评分表（.xlsx）。"),
        "locked.xlsx": ("已拒收", "文件设置了密码（已加密），无法读取。请在 Excel 或 WPS 中取消密码后另存，再重新发送。"),
    }
    assert rows["truncated.xlsx"][1].startswith("文件已损坏或不完整")
    assert counts(workspace)["files"] == 6  # every one is in the ledger ...
    archived = list((workspace / "ledger" / "archive").rglob("*.*"))
    assert len(archived) == 6  # ... and archived, rejected ones included


def test_running_again_changes_nothing_and_a_copy_under_another_name_is_a_duplicate(workspace):
    forms = make_forms(workspace)
    folder = returned(workspace)
    for a, path in forms.items():
        fill_form(path, answers(a), save_as=folder / path.name)
    collect(workspace)
    before = counts(workspace)
    again = collect(workspace)
    assert counts(workspace) == before
    assert re.search(r"此前已收取\s*│\s*3", again.output)
    copy = folder / "resent" / "张敏-再发一次.xlsx"
    copy.parent.mkdir()
    copy.write_bytes((folder / forms["E01"].name).read_bytes())
    third = collect(workspace)
    assert re.search(r"重复文件\s*│\s*1", third.output)
    after = counts(workspace)
    assert after == {**before, "aliases": 1}
    assert ledger_scores(workspace) == expected_scores("E01", "E02", "E03")
    rows = [r for r in report(workspace)["文件"] if r["文件名"] == "张敏-再发一次.xlsx"]
    assert [(r["状态"], r["评估人"], r["说明"]) for r in rows] == [
        ("重复", "张敏（E01）", f"与已收取的文件 {forms['E01'].name} 内容完全相同，不重复计入。")]
    collect(workspace)
    assert counts(workspace) == after


def test_a_later_saved_resubmission_supersedes_and_an_earlier_saved_one_does_not(workspace):
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    first = fill_form(path, answers("E01"), save_as=folder / "v1.xlsx")
    set_saved(first, datetime(2026, 11, 20, 9, 0))
    collect(workspace)
    changed = answers("E01")
    changed["C001"]["C01"] = 1.5
    second = fill_form(path, changed, save_as=folder / "v2.xlsx")
    set_saved(second, datetime(2026, 11, 22, 9, 0))
    older = answers("E01")
    older["C001"]["C01"] = 0.5
    third = fill_form(path, older, save_as=folder / "v0.xlsx")
    set_saved(third, datetime(2026, 11, 21, 9, 0))  # arrives last, but was saved before v2
    result = collect(workspace)
    assert "已被取代  v1.xlsx（C001 湖滨街道东坡路社区），以 v2.xlsx 为准" in result.output
    got = ledger_scores(workspace)
    assert got["E01", "C001", "C01"] == 1.5
    assert len(got) == 3 * 19
    with open_ledger(workspace) as ledger:
        sheets = ledger.sheets(PERIOD, "community")
    status = {(r.file, r.subject): (r.status, r.replaced_by_file) for r in sheets.itertuples()}
    assert status["v1.xlsx", "C001"] == ("superseded", "v2.xlsx")
    assert status["v0.xlsx", "C001"] == ("superseded", "v2.xlsx")
    assert status["v2.xlsx", "C001"][0] == "accepted"
    assert counts(workspace)["scores"] == 3 * 3 * 19  # the earlier scores stay in the ledger
    # v2 and v0 repeat v1's C002 and C003 score for score: one submission, nothing replaced there
    assert result.output.count("已被取代") == 1
    assert status["v2.xlsx", "C002"][0] == status["v0.xlsx", "C003"][0] == "duplicate"
    assert status["v1.xlsx", "C002"][0] == status["v1.xlsx", "C003"][0] == "accepted"
    rows = {r["文件名"]: r for r in report(workspace)["文件"]}
    assert rows["v1.xlsx"]["状态"] == "已接收" and rows["v1.xlsx"]["接收对象数"] == 2
    assert rows["v0.xlsx"]["状态"] == "已被替换"
    assert rows["v2.xlsx"]["状态"] == "已接收" and "替换了 v1.xlsx 中的 C001" in rows["v2.xlsx"]["说明"]
    assert "C002、C003 与文件 v1.xlsx 的评分相同" in rows["v2.xlsx"]["说明"]
    assert "C001 已由 v2.xlsx（C001 湖滨街道东坡路社区）替换" in rows["v1.xlsx"]["说明"]


def test_in_one_run_the_later_saved_wins_whatever_the_order_of_arrival(workspace):
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    changed = answers("E01")
    changed["C002"]["C07"] = 0
    late = fill_form(path, changed, save_as=folder / "a-late.xlsx")
    set_saved(late, datetime(2026, 11, 23, 9, 0))
    early = fill_form(path, answers("E01"), save_as=folder / "b-early.xlsx")
    set_saved(early, datetime(2026, 11, 21, 9, 0))
    os.utime(late, (1_700_000_000, 1_700_000_000))  # the later-saved one reached the folder first
    collect(workspace)
    assert ledger_scores(workspace)["E01", "C002", "C07"] == 0


def test_item_rows_missing_duplicated_or_unknown_and_two_sheets_for_one_subject(workspace):
    path = make_forms(workspace)["E01"]
    target = fill_form(path, answers("E01"), save_as=returned(workspace) / "rows.xlsx")
    book = openpyxl.load_workbook(target)
    sheet_of(book, "C001")["A9"].value = "C99"  # C03's code overwritten: C03 missing, C99 unknown
    sheet_of(book, "C002")["A10"].value = "C01"  # C04's row now says C01 again
    book.copy_worksheet(sheet_of(book, "C003"))  # a second sheet for C003
    book.save(target)
    collect(workspace)
    assert ledger_scores(workspace) == {}
    found = {(p[1][:4], p[2], p[3], p[4]) for p in problems(workspace)}
    assert ("C001", "A9", "C99", "unknown_item") in found
    assert ("C001", "", "C03", "missing_item") in found
    assert ("C002", "A10", "C01", "duplicate_item") in found
    assert ("C002", "", "C04", "missing_item") in found
    assert sum(p[4] == "duplicate_subject" for p in problems(workspace)) == 2
    assert report(workspace)["文件"][0]["状态"] == "已拒收"


def test_subjects_not_assigned_or_unknown_to_the_roster_are_refused(workspace, tmp_path):
    forms = make_forms(workspace)
    fill_form(forms["E01"], answers("E01"), save_as=returned(workspace) / "e01.xlsx")
    narrow = tmp_path / "narrow.xlsx"  # E01 no longer rates C003; C002 has left the programme
    write_roster(narrow, [s for s in SUBJECTS if s[0] != "C002"], ASSESSORS,
                 [p for p in PAIRS if p != ("E01", "C003") and p[1] != "C002"])
    collect(workspace, "--roster", str(narrow))
    assert {s for _, s, _ in ledger_scores(workspace)} == {"C001"}
    assert {(p[3], p[4]) for p in problems(workspace)} == {("C002", "unknown_subject"), ("C003", "not_assigned")}


def test_remarks_are_kept_and_cut_at_the_limit(workspace):
    set_setting(workspace, "max_remark_chars = 2000", "max_remark_chars = 10")
    path = make_forms(workspace)["E01"]
    fill_form(path, answers("E01"), remarks={"C001": {"C02": "短备注", "C03": "这条备注一共有十六个字是很长的"}},
              save_as=returned(workspace) / "remarks.xlsx")
    collect(workspace)
    with open_ledger(workspace) as ledger:
        frame = ledger.accepted_scores(PERIOD, "community")
    remark = {r.item: r.remark for r in frame.itertuples() if r.subject == "C001"}
    assert remark["C02"] == "短备注" and remark["C03"] == "这条备注一共有十六个" and remark["C01"] == ""
    assert [(p[2], p[4]) for p in problems(workspace)] == [("H9", "remark_cut")]


@pytest.mark.sqlite_only  # the second workspace needs a ledger of its own: a file
def test_the_pool_gives_the_same_result_as_one_process(workspace, tmp_path):
    forms = make_forms(workspace)
    folder = returned(workspace)
    for n in range(3):
        for a, path in forms.items():
            scores = answers(a)
            scores["C001"]["C01"] = n  # later copies differ, so each is a new file
            fill_form(path, scores, save_as=folder / f"{n}-{path.name}")
    (folder / "broken.xlsx").write_bytes(b"PK\x03\x04 broken")
    set_setting(workspace, "pool_min_files = 16", "pool_min_files = 2")
    set_setting(workspace, "workers = 0", "workers = 2")
    collect(workspace)
    pooled = (ledger_scores(workspace), counts(workspace))
    serial_ws = tmp_path / "serial"
    serial_ws.mkdir()
    import shutil

    shutil.copytree(workspace, serial_ws / "ws")
    # a fresh ledger and archive; the office key stays, as the office's backup would restore it
    shutil.rmtree(serial_ws / "ws" / "ledger" / "archive")
    for db in (serial_ws / "ws" / "ledger").glob("happyhome.sqlite*"):
        db.unlink()
    set_setting(serial_ws / "ws", "workers = 2", "workers = 1")
    collect(serial_ws / "ws")
    assert (ledger_scores(serial_ws / "ws"), counts(serial_ws / "ws")) == pooled
    assert pooled[1]["files"] == 10 and pooled[1]["sheets"] == 27


def test_a_second_run_on_the_same_workspace_is_refused_while_the_first_holds_the_lock(workspace):
    set_setting(workspace, "lock_wait = 5", "lock_wait = 0.3")
    with workspace_lock(Workspace.open(workspace)):
        result = collect(workspace, expect=5)
    assert "另一个 happyhome 运行" in result.output and "请待其结束后再运行" in result.output
    assert not (workspace / "output" / PERIOD / "collection-community.xlsx").exists()
    collect(workspace)  # released: the next run goes ahead


def test_the_lock_holds_across_processes(workspace):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pipeline.config import Workspace; from pipeline.lock import workspace_lock\n"
         f"with workspace_lock(Workspace.open({str(workspace)!r})):\n"
         "    print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        set_setting(workspace, "lock_wait = 5", "lock_wait = 0.2")
        result = collect(workspace, expect=5)
        assert f"（进程 {holder.pid}）" in result.output
    finally:
        holder.kill()
        holder.wait()
    collect(workspace)  # the kernel released the lock of the killed process


@pytest.mark.slow
@pytest.mark.libreoffice
@pytest.mark.parametrize("fmt", ["xlsx", "ods", "xls"])
def test_a_form_resaved_by_libreoffice_collects_the_same_scores(workspace, tmp_path, fmt):
    path = make_forms(workspace)["E02"]
    filled = fill_form(path, answers("E02"), remarks={"C003": {"C19": "很好"}}, save_as=tmp_path / "filled.xlsx")
    converted = soffice_convert(filled, fmt, tmp_path / "lo")
    target = returned(workspace) / f"resaved.{fmt}"
    target.write_bytes(converted.read_bytes())
    collect(workspace)
    assert ledger_scores(workspace) == expected_scores("E02")
    assert [p[4] for p in problems(workspace)] == []
    with open_ledger(workspace) as ledger:
        frame = ledger.accepted_scores(PERIOD, "community")
        files = ledger.files(PERIOD, "community")
    assert files.format.tolist() == [fmt] and files.assessor.tolist() == ["E02"]
    assert frame[(frame.subject == "C003") & (frame.item == "C19")].remark.iloc[0] == "很好"


def test_two_copies_in_one_run_are_one_file_and_one_duplicate(workspace):
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    first = fill_form(path, answers("E01"), save_as=folder / "a.xlsx")
    (folder / "b.xlsx").write_bytes(first.read_bytes())
    result = collect(workspace)
    assert re.search(r"已接收\s*│\s*1\s", result.output) and re.search(r"重复文件\s*│\s*1\s", result.output)
    assert counts(workspace)["files"] == 1 and counts(workspace)["aliases"] == 1
    assert [r["状态"] for r in report(workspace)["文件"]] == ["已接收", "重复"]


def test_collect_help_documents_exit_codes(workspace):
    text = run(workspace, "collect", "--help").output
    assert "--strict" in text and "6  使用了 --strict，且本次收取的文件或评分表有被退回的" in text and "示例：happyhome collect" in text
    text = run(workspace, "--lang", "en", "collect", "--help").output
    assert "--strict" in text and "6  --strict and a file or sheet taken in by this run was rejected" in text and "Example: happyhome collect" in text
    assert run(workspace, "collect", "--system", "community", "--period", "2026-13", expect=2).exit_code == 2


def test_a_zone_form_without_metadata_in_the_shared_folder_is_left_to_the_zone_round(workspace):
    zone = make_forms(workspace, system="zone")["E01"]
    items = load_system("zone").items
    target = fill_form(zone, {z: {i.code: i.max for i in items} for z in ("Z01", "Z02")},
                       save_as=returned(workspace) / "zone-nometa.xlsx")
    book = openpyxl.load_workbook(target)
    del book[META_SHEET]
    book.save(target)
    community = collect(workspace)
    assert "非本轮    zone-nometa.xlsx" in community.output and counts(workspace)["files"] == 1
    assert "非本轮    zone-nometa.xlsx" in collect(workspace).output  # and says so again, changing nothing
    assert counts(workspace)["files"] == 1
    run(workspace, "collect", "--system", "zone", "--period", PERIOD)
    with open_ledger(workspace) as ledger:
        assert len(ledger.accepted_scores(PERIOD, "zone")) == 2 * len(items)


def test_a_sheet_without_its_identity_block_is_matched_by_the_metadata_sheet_list(workspace):
    path = make_forms(workspace)["E02"]
    target = fill_form(path, answers("E02"), save_as=returned(workspace) / "noblock.xlsx")
    book = openpyxl.load_workbook(target)
    for ws in book.worksheets:
        if ws.title.startswith("C002"):
            ws.delete_rows(1, 5)  # the title, the identity block and the note are gone; the header is row 1
    book.save(target)
    collect(workspace)
    assert ledger_scores(workspace) == expected_scores("E02")
    with open_ledger(workspace) as ledger:
        frame = ledger.accepted_scores(PERIOD, "community")
    assert frame[(frame.subject == "C002") & (frame.item == "C01")].cell.iloc[0] == "G2"


def test_totals_and_the_summary_sheet_are_never_read(workspace):
    path = make_forms(workspace)["E03"]
    target = fill_form(path, answers("E03"), save_as=returned(workspace) / "totals.xlsx")
    book = openpyxl.load_workbook(target)
    for ws in book.worksheets:
        if ws.title[:4] in COMMUNITIES:
            ws["G26"].value = "合计写错了"  # the 合计 row
            ws["G27"].value = 999  # a 小计 row
    book["汇总"]["E2"].value = "#REF!"
    book.save(target)
    collect(workspace)
    assert ledger_scores(workspace) == expected_scores("E03")
    assert problems(workspace) == []


def test_a_rejected_resubmission_does_not_replace_the_accepted_sheet(workspace):
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    set_saved(fill_form(path, answers("E01"), save_as=folder / "v1.xlsx"), datetime(2026, 11, 20, 9, 0))
    collect(workspace)
    broken = answers("E01")
    broken["C001"]["C01"] = "四"
    broken["C002"]["C01"] = 2
    set_saved(fill_form(path, broken, save_as=folder / "v2.xlsx"), datetime(2026, 11, 22, 9, 0))
    collect(workspace)
    got = ledger_scores(workspace)
    assert got["E01", "C001", "C01"] == answers("E01")["C001"]["C01"]  # v1's sheet still counts
    assert got["E01", "C002", "C01"] == 2  # v2's good sheets replace v1's
    assert len(got) == 3 * 19


# -- resubmissions and duplicates say what happened ----------------------------------------------
def test_a_copy_of_a_rejected_file_says_it_failed_with_it(workspace):
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    bad = answers("E01")
    for subject in COMMUNITIES:
        bad[subject]["C01"] = "四"
    fill_form(path, bad, save_as=folder / "v1.xlsx")
    collect(workspace)
    (folder / "v1-再发.xlsx").write_bytes((folder / "v1.xlsx").read_bytes())
    result = collect(workspace)
    assert re.search(r"重复文件\s*│\s*1\s", result.output)
    book = report(workspace)
    [copy] = [r for r in book["文件"] if r["文件名"] == "v1-再发.xlsx"]
    assert (copy["状态"], copy["说明"]) == ("重复", "与文件 v1.xlsx 内容相同，v1.xlsx 未通过校验，本文件同样未计入。")
    [row] = [r for r in book["问题"] if r["文件"] == "v1-再发.xlsx"]
    assert (row["问题"], row["级别"], row["状态"]) == (copy["说明"], "错误", "待处理")
    assert "已收取" not in copy["说明"]


def test_the_same_scores_saved_again_are_one_submission(workspace):
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    set_saved(fill_form(path, answers("E01"), save_as=folder / "first.xlsx"), datetime(2026, 11, 20, 9, 0))
    collect(workspace)
    # the assessor opens the form again and saves it, changing nothing: other bytes, other saved time
    set_saved(fill_form(path, answers("E01"), save_as=folder / "again.xlsx"), datetime(2026, 11, 21, 9, 0))
    result = collect(workspace)
    assert "已被取代" not in result.output and re.search(r"被替换的评分表\s*│\s*0\s", result.output)
    assert re.search(r"重复文件\s*│\s*1\s", result.output) and re.search(r"此前已收取\s*│\s*1\s", result.output)
    rows = {r["文件名"]: r for r in report(workspace)["文件"]}
    assert (rows["first.xlsx"]["状态"], rows["first.xlsx"]["接收对象数"], rows["first.xlsx"]["说明"]) == ("已接收", 3, "")
    assert rows["again.xlsx"]["状态"] == "重复"
    assert rows["again.xlsx"]["说明"] == "C001、C002、C003 与文件 first.xlsx 的评分相同，是同一份评分，不重复计入。"
    with open_ledger(workspace) as ledger:
        frame = ledger.accepted_scores(PERIOD, "community")
    assert set(frame.file) == {"first.xlsx"} and ledger_scores(workspace) == expected_scores("E01")
    before = counts(workspace)
    collect(workspace)
    assert counts(workspace) == before


@pytest.mark.slow
@pytest.mark.libreoffice
def test_the_same_form_returned_as_xlsx_and_as_ods_is_one_submission(workspace, tmp_path):
    path = make_forms(workspace)["E02"]
    folder = returned(workspace)
    filled = fill_form(path, answers("E02"), remarks={"C002": {"C05": "资料齐全"}}, save_as=folder / "评分.xlsx")
    os.utime(filled, (1_700_000_000, 1_700_000_000))  # the .xlsx reached the folder first
    (folder / "评分.ods").write_bytes(soffice_convert(filled, "ods", tmp_path / "lo").read_bytes())
    result = collect(workspace)
    assert "已被取代" not in result.output
    rows = {r["文件名"]: r["状态"] for r in report(workspace)["文件"]}
    assert rows == {"评分.xlsx": "已接收", "评分.ods": "重复"}
    assert ledger_scores(workspace) == expected_scores("E02")


def same_second_conflict(workspace: Path) -> Path:
    """E01 returns a.xlsx and b.xlsx, saved in the same second, differing in C001's C01 score."""
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    changed = answers("E01")
    changed["C001"]["C01"] = 1.5
    same_second = datetime(2026, 11, 20, 9, 0)
    set_saved(fill_form(path, answers("E01"), save_as=folder / "a.xlsx"), same_second)
    set_saved(fill_form(path, changed, save_as=folder / "b.xlsx"), same_second)
    return folder


def test_returns_saved_in_the_same_second_with_different_scores_are_a_conflict(workspace):
    folder = same_second_conflict(workspace)
    os.utime(folder / "b.xlsx", (1_700_000_000, 1_700_000_000))  # b arrived first: order decides nothing
    result = collect(workspace)
    assert "冲突      a.xlsx 与 b.xlsx：C001 保存时间相同但评分不同" in result.output
    got = ledger_scores(workspace)
    assert not any(s == "C001" for _, s, _ in got)  # neither counts
    assert got == {k: v for k, v in expected_scores("E01").items() if k[1] != "C001"}
    book = report(workspace)
    rows = {r["文件名"]: r for r in book["文件"]}
    # b came first: its C002 and C003 count, a repeats them; of C001 neither counts
    assert (rows["a.xlsx"]["状态"], rows["b.xlsx"]["状态"]) == ("冲突", "已接收")
    assert "C001 与 b.xlsx 冲突" in rows["a.xlsx"]["说明"] and "C001 与 a.xlsx 冲突" in rows["b.xlsx"]["说明"]
    assert rows["a.xlsx"]["待处理问题数"] == rows["b.xlsx"]["待处理问题数"] == 1
    clashes = [r for r in book["问题"] if r["状态"] == "冲突"]
    assert [(r["文件"], r["原值"], r["级别"]) for r in clashes] == [("b.xlsx", "C001", "错误"), ("a.xlsx", "C001", "错误")]
    assert "C001 还有一份评分不同的文件 a.xlsx，两份的保存时间相同" in clashes[0]["问题"]
    [chase] = [r for r in book["未交"] if r["评估人编号"] == "E01"]
    assert (chase["评估人编号"], chase["评估对象编号"], chase["情况"]) == ("E01", "C001", "两份评分冲突（保存时间相同），见“问题”表")
    status = run(workspace, "status", "--system", "community", "--period", PERIOD)
    assert "C001!" in status.output and "! 冲突" in status.output
    assert "缺 7" in status.output  # E01: C001; E02 and E03: all three
    # the office keeps a: removes b and collects again
    (folder / "b.xlsx").unlink()
    settled = collect(workspace)
    assert "冲突已处理  C001（E01）：b.xlsx 已移除，以 a.xlsx 为准" in settled.output
    assert ledger_scores(workspace) == expected_scores("E01")
    rows = {r["文件名"]: r for r in report(workspace)["文件"]}
    assert rows["b.xlsx"]["状态"] == "已接收" and "C001 的冲突已处理：本文件已从收取文件夹移除，以 a.xlsx 为准" in rows["b.xlsx"]["说明"]
    assert rows["a.xlsx"]["状态"] == "已接收" and rows["a.xlsx"]["待处理问题数"] == 0
    book = report(workspace)
    assert not [r for r in book["问题"] if r["状态"] == "冲突"] and not [r for r in book["未交"] if r["评估人编号"] == "E01"]
    before = counts(workspace)
    again = collect(workspace)
    assert "冲突" not in again.output and counts(workspace) == before


def test_strict_counts_a_conflict_as_a_sheet_not_taken_in(workspace):
    folder = same_second_conflict(workspace)
    result = collect(workspace, "--strict", expect=6)  # neither C001 counts: the office must act
    assert "C001" in result.output
    (folder / "b.xlsx").unlink()
    collect(workspace, "--strict", expect=0)  # settled: a counts


def test_a_newer_return_settles_a_conflict(workspace):
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    for name, value in (("a.xlsx", 1.0), ("b.xlsx", 2.0)):
        scores = answers("E01")
        scores["C003"]["C02"] = value
        set_saved(fill_form(path, scores, save_as=folder / name), datetime(2026, 11, 20, 9, 0))
    collect(workspace)
    assert ("E01", "C003", "C02") not in ledger_scores(workspace)
    scores = answers("E01")
    scores["C003"]["C02"] = 3.0
    set_saved(fill_form(path, scores, save_as=folder / "c.xlsx"), datetime(2026, 11, 20, 9, 0, 1))  # one second later
    result = collect(workspace)
    assert "已被取代  a.xlsx（C003 南湖街道南湖社区），以 c.xlsx 为准" in result.output
    assert "已被取代  b.xlsx（C003 南湖街道南湖社区），以 c.xlsx 为准" in result.output
    assert ledger_scores(workspace)["E01", "C003", "C02"] == 3.0
    assert not [r for r in report(workspace)["未交"] if r["评估人编号"] == "E01"]


def test_a_fixed_resubmission_marks_the_earlier_problems_fixed(workspace):
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    bad = answers("E01")
    bad["C002"]["C06"] = "四"
    bad["C002"]["C07"] = 9  # out of range (满分 4)
    set_saved(fill_form(path, bad, save_as=folder / "v1.xlsx"), datetime(2026, 11, 20, 9, 0))
    collect(workspace)
    book = report(workspace)
    assert [(r["单元格"], r["状态"]) for r in book["问题"]] == [("G12", "待处理"), ("G13", "待处理")]
    assert book["文件"][0]["待处理问题数"] == 2 and book["文件"][0]["问题数"] == 2
    assert [r["评估对象编号"] for r in book["未交"] if r["评估人编号"] == "E01"] == ["C002"]
    assert "C002*" in run(workspace, "status", "--system", "community", "--period", PERIOD).output
    set_saved(fill_form(path, answers("E01"), save_as=folder / "v2.xlsx"), datetime(2026, 11, 21, 9, 0))
    collect(workspace)
    book = report(workspace)
    assert [(r["文件"], r["单元格"], r["状态"]) for r in book["问题"] if r["单元格"]] == [
        ("v1.xlsx", "G12", "已更正"), ("v1.xlsx", "G13", "已更正")]
    rows = {r["文件名"]: r for r in book["文件"]}
    assert (rows["v1.xlsx"]["问题数"], rows["v1.xlsx"]["待处理问题数"]) == (2, 0)  # counted, but none open
    assert "已更正：C002 已由 v2.xlsx 重新提交并通过校验。" in rows["v1.xlsx"]["说明"]
    assert not [r for r in book["未交"] if r["评估人编号"] == "E01"]
    status = run(workspace, "status", "--system", "community", "--period", PERIOD)
    e01 = next(line for line in status.output.splitlines() if "张敏" in line)
    assert "C002" not in e01 and "未通过校验" not in status.output
    assert ledger_scores(workspace) == expected_scores("E01")


def test_the_problems_sheet_keeps_the_library_words_in_its_last_column(workspace):
    from pipeline.ledger import FileRecord

    ws = Workspace.open(workspace)
    with open_ledger(ws.root) as ledger:
        p = problem("corrupt", file="x.xlsx", detail="zip 不完整", technical="BadZipFile: File is not a zip file")
        ledger.add_file(FileRecord("ab" * 32, "x.xlsx", "/in/x.xlsx", 10, datetime(2026, 11, 20), None, "/archive/x",
                                   PERIOD, "community", None, None, "rejected", p.message, problems=[p]))
    collect(workspace)  # the collection workbook is rebuilt from the ledger on every run
    raw = openpyxl.load_workbook(workspace / "output" / PERIOD / "collection-community.xlsx")
    header = [c.value for c in raw["问题"][1]]
    assert header == ["文件", "工作表", "单元格", "原值", "问题", "级别", "状态", "技术信息"]
    [row] = report(workspace)["问题"]
    assert (row["文件"], row["状态"], row["技术信息"]) == ("x.xlsx", "待处理", "BadZipFile: File is not a zip file")
    assert "BadZipFile" not in row["问题"]


def test_a_form_of_another_month_says_which_folder_it_belongs_in(workspace):
    set_setting(workspace, 'returned = "input/returned"', 'returned = "收件"')
    old = make_forms(workspace, period="2026-10")["E02"]
    folder = workspace / "收件" / PERIOD
    folder.mkdir(parents=True)
    fill_form(old, answers("E02"), save_as=folder / "october.xlsx")
    result = collect(workspace)
    assert "请放入 收件/2026-10/ 文件夹" in result.output
    [row] = report(workspace)["问题"]
    assert row["问题"] == "这是 2026-10 期的评分表，本轮收取的是 2026-11 期。请放入 收件/2026-10/ 文件夹，收取该期时计入。"


def test_a_partly_rejected_file_repeating_the_rest_is_still_partly_rejected(workspace):
    path = make_forms(workspace)["E01"]
    folder = returned(workspace)
    set_saved(fill_form(path, answers("E01"), save_as=folder / "v1.xlsx"), datetime(2026, 11, 20, 9, 0))
    collect(workspace)
    broken = answers("E01")
    broken["C001"]["C01"] = "四"
    set_saved(fill_form(path, broken, save_as=folder / "v2.xlsx"), datetime(2026, 11, 21, 9, 0))
    result = collect(workspace, "--strict", expect=6)
    assert "部分接收  v2.xlsx：3 张对象表中 1 张被退回" in result.output and "已被取代" not in result.output
    rows = {r["文件名"]: r for r in report(workspace)["文件"]}
    assert rows["v2.xlsx"]["状态"] == "部分接收" and rows["v2.xlsx"]["待处理问题数"] == 1
    assert "C002、C003 与文件 v1.xlsx 的评分相同" in rows["v2.xlsx"]["说明"]
    assert ledger_scores(workspace) == expected_scores("E01")  # v1 still counts for all three


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_find_files_lists_real_files_once_by_their_real_paths(tmp_path):
    from pipeline.collect import find_files

    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / ".hidden").mkdir()
    for name in ("b.xlsx", "a.xlsx", ".a.xlsx", "~$a.xlsx", "sub/c.ods", ".hidden/d.xlsx"):
        (real / name).write_bytes(b"x")
    (real / "link.xlsx").symlink_to("/etc/passwd")  # a link in the folder: never taken
    (real / "linked").symlink_to(real / "sub", target_is_directory=True)  # a linked folder: not entered
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)  # the folder named through a link: its real paths
    found = find_files([alias, real / "a.xlsx", real])
    assert found == [real / "a.xlsx", real / "b.xlsx", real / "sub" / "c.ods"]
    assert find_files([tmp_path / "missing"]) == []
