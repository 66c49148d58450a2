"""`happyhome collect`: forms filled as an assessor would, collected through the CLI, the ledger
and the collection workbook read back."""

from __future__ import annotations

import io
import math
import os
import re
import sqlite3
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest
from hypothesis import given, settings, strategies as st

from conftest import ASSESSORS, PAIRS, SUBJECTS, fill_form, run, soffice_convert
from pipeline.collect import find_header, find_identity, normalise_score
from pipeline.config import Workspace
from pipeline.forms import META_SHEET
from pipeline.ledger import Ledger
from pipeline.lock import workspace_lock
from pipeline.roster import write_roster
from pipeline.systems import load_system

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
    with Ledger(workspace / "ledger" / "happyhome.sqlite") as ledger:
        frame = ledger.accepted_scores(PERIOD, "community")
    return {(r.assessor, r.subject, r.item): r.score for r in frame.itertuples()}


def expected_scores(*assessors: str, subjects=COMMUNITIES) -> dict[tuple[str, str, str], float]:
    return {(a, s, i): v for a in assessors for s, items in answers(a, subjects).items() for i, v in items.items()}


def counts(workspace: Path) -> dict[str, int]:
    conn = sqlite3.connect(workspace / "ledger" / "happyhome.sqlite")
    try:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("files", "aliases", "sheets", "scores", "problems")}
    finally:
        conn.close()


def report(workspace: Path) -> dict[str, list[dict]]:
    book = openpyxl.load_workbook(workspace / "output" / PERIOD / "collection-community.xlsx")
    out = {}
    for ws in book.worksheets:
        rows = list(ws.iter_rows(values_only=True))
        out[ws.title] = [dict(zip(rows[0], r)) for r in rows[1:]]
    return out


def problems(workspace: Path) -> list[tuple[str, str, str, str, str]]:
    """(file, sheet, cell, value, code) of every problem in the ledger."""
    conn = sqlite3.connect(workspace / "ledger" / "happyhome.sqlite")
    try:
        return conn.execute("""SELECT f.name, p.sheet, p.cell, p.value, p.code FROM problems p
                               JOIN files f ON f.id = p.file_id ORDER BY p.id""").fetchall()
    finally:
        conn.close()


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


# -- end to end ---------------------------------------------------------------------------------
def test_filled_forms_are_collected_with_every_score_traceable(workspace):
    forms = make_forms(workspace)
    folder = returned(workspace)
    for a, path in forms.items():
        fill_form(path, answers(a), remarks={"C002": {"C05": "-资料不全 @张"}}, save_as=folder / path.name)
    (folder / "~$lock.xlsx").write_bytes(b"owner")  # an office lock file: ignored
    (folder / ".DS_Store").write_bytes(b"\0")
    result = collect(workspace)
    assert "accepted" in result.output and "collection-community.xlsx" in result.output
    assert ledger_scores(workspace) == expected_scores("E01", "E02", "E03")
    with Ledger(workspace / "ledger" / "happyhome.sqlite") as ledger:
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
    with Ledger(workspace / "ledger" / "happyhome.sqlite") as ledger:
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
    with Ledger(workspace / "ledger" / "happyhome.sqlite") as ledger:
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
    collect(workspace, "--strict", expect=6)
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
