"""`happyhome status --letters`: a letter per assessor who owes something, from a real small round.

The round: E01 returns everything correctly (no letter), E02 leaves out one subject, E03 types
“abc” into a score; then E03 sends a corrected return and the problem leaves the letters.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest

from conftest import fill_form, run
from test_collect import set_saved
from pipeline.config import Workspace
from pipeline.ledger import Ledger
from pipeline.letters import BOOK_NAME, LETTER_COLUMNS, MANIFEST, OVERVIEW_COLUMNS, OVERVIEW_SHEET, plan_letters
from pipeline.roster import read_roster_for
from pipeline.status import CHASE_COLUMNS, CHASE_DETAIL_COLUMNS, REJECTED, round_status
from pipeline.systems import load_system

PERIOD = "2026-11"
SYSTEM = load_system("community")
COMMUNITIES = ("C001", "C002", "C003")
NAMES = {"C001": "湖滨街道东坡路社区", "C002": "玉林街道黉门街社区", "C003": "南湖街道南湖社区"}
CONTACT = '张老师 "办公室" 028-1234\\5678'  # quotes and a backslash must survive TOML
ORGANISER = "成都市武侯区民政局 幸福家园行动项目办公室"


def full(subjects=COMMUNITIES) -> dict[str, dict[str, float]]:
    return {s: {item.code: item.max for item in SYSTEM.items} for s in subjects}


@pytest.fixture
def round_ws(workspace: Path) -> Path:
    """The round collected: E01 all correct, E02 without C003, E03 with “abc” in C002's first score."""
    run(workspace, "init", str(workspace), "--organiser", ORGANISER, "--contact", CONTACT, "--deadline-day", "20")
    run(workspace, "forms", "--system", "community", "--period", PERIOD)
    forms = {p.name.split("_")[2]: p for p in (workspace / "output" / "forms" / PERIOD / "community").glob("*.xlsx")}
    folder = workspace / "input" / "returned" / PERIOD
    folder.mkdir(parents=True, exist_ok=True)
    first = SYSTEM.items[0]
    typed = full()
    typed["C001"][first.code] = f"{first.max:g}分"  # taken with a warning: a reminder, nothing owed
    fill_form(forms["E01"], typed, save_as=folder / "张敏.xlsx")
    fill_form(forms["E02"], typed | {"C003": {}}, save_as=folder / "李强.xlsx")
    bad = full()
    bad["C002"][SYSTEM.items[0].code] = "abc"
    set_saved(fill_form(forms["E03"], bad, save_as=folder / "王芳-v1.xlsx"), datetime(2026, 11, 18, 9))
    run(workspace, "collect", "--system", "community", "--period", PERIOD)
    return workspace


def letters(workspace: Path, folder: Path) -> dict[str, str]:
    result = run(workspace, "status", "--system", "community", "--period", PERIOD, "--letters", str(folder))
    assert "封信" in result.output
    return {p.name: p.read_bytes().decode("utf-8") for p in folder.glob("*.txt")}  # UTF-8, or this raises


def test_a_letter_for_each_assessor_who_owes_and_none_for_the_others(round_ws, tmp_path):
    out = tmp_path / "letters"
    texts = letters(round_ws, out)
    assert sorted(texts) == ["E02-李强.txt", "E03-王芳.txt"]  # E01 owes nothing
    e02, e03 = texts["E02-李强.txt"], texts["E03-王芳.txt"]
    assert e02.startswith("李强老师：您好！")
    owed = e02[e02.index("一、"):e02.index("二、")]
    assert "C003 南湖街道南湖社区" in owed and "C001" not in owed and "C002" not in owed
    # its sheet came back blank: one line, not one per item
    (blank,) = [l for l in e02.splitlines() if "未填写" in l]
    assert "文件 李强.xlsx" in blank and "工作表 C003" in blank and f"{len(SYSTEM.items)} 项得分均未填写" in blank
    # E03: the file, sheet, cell, the value found and what to enter instead
    item = SYSTEM.items[0]
    line = next(l for l in e03.splitlines() if "abc" in l)
    assert "文件 王芳-v1.xlsx" in line and "工作表 C002" in line and re.search(r"单元格 G\d+", line)
    assert f"请填写 0 到 {item.max:g} 之间的数字" in line and item.code in line
    assert f"C002 玉林街道黉门街社区（{REJECTED}）" in e03
    for text in (e02, e03):  # the round, its deadline, the office's contact and organiser (set by init)
        assert "2026-11 创新实践社区评价指标体系督导评分" in text
        assert "2026年11月20日" in text
        assert CONTACT in text and ORGANISER in text
    assert "{{" not in e02 + e03 and "None" not in e02 + e03
    # a warning on a sheet that counts is a reminder, in its own part, never a reason to write
    first, reminder = SYSTEM.items[0], e02[e02.index("三、提醒"):]
    assert "工作表 C001" in reminder and f"“{first.max:g}分”已按 {first.max:g} 计入" in reminder
    assert "提醒" not in e03


def test_letters_workbook_has_an_overview_and_a_sheet_per_letter(round_ws, tmp_path):
    out = tmp_path / "letters"
    letters(round_ws, out)
    book = openpyxl.load_workbook(out / BOOK_NAME)
    assert book.sheetnames == [OVERVIEW_SHEET, "E02 李强", "E03 王芳"]
    overview = [tuple(c.value for c in row) for row in book[OVERVIEW_SHEET].iter_rows()]
    assert overview[0] == OVERVIEW_COLUMNS
    assert [(r[0], r[1], r[4], r[5], r[6], r[7]) for r in overview[1:]] == [("E02", "李强", 1, 1, 1, "E02-李强.txt"),
                                                                            ("E03", "王芳", 1, 1, 0, "E03-王芳.txt")]
    sheet = book["E03 王芳"]
    rows = [tuple(c.value for c in row) for row in sheet.iter_rows()]
    assert rows[0][0] == "王芳老师：您好！"
    header = rows.index(LETTER_COLUMNS)
    assert sheet.freeze_panes == f"A{header + 2}"
    fix = rows[header + 1]
    assert fix[:4] == ("需修改", "C002 玉林街道黉门街社区", "王芳-v1.xlsx", fix[3]) and fix[3].startswith("C002")
    assert re.fullmatch(r"G\d+", fix[4]) and fix[5] == "abc" and "不是数字" in fix[6]
    assert sheet.page_setup.paperSize == 9 and sheet.page_setup.orientation == "landscape"
    assert any(ORGANISER == v for r in rows for v in r)
    e02 = [tuple(c.value for c in row) for row in book["E02 李强"].iter_rows()]
    assert [r[0] for r in e02 if r[0] in ("需修改", "提醒")] == ["需修改", "提醒"]
    assert [r[:3] for r in e02 if r[0] == "需修改"] == [("需修改", "C003 南湖街道南湖社区", "李强.xlsx")]


def test_a_corrected_return_takes_the_problem_out_and_stale_letters_go(round_ws, tmp_path):
    out = tmp_path / "letters"
    out.mkdir()
    (out / "notes.txt").write_text("the office's own file", encoding="utf-8")
    letters(round_ws, out)
    forms = {p.name.split("_")[2]: p for p in (round_ws / "output" / "forms" / PERIOD / "community").glob("*.xlsx")}
    fixed = fill_form(forms["E03"], full(), save_as=round_ws / "input" / "returned" / PERIOD / "王芳-v2.xlsx")
    set_saved(fixed, datetime(2026, 11, 19, 9))
    run(round_ws, "collect", "--system", "community", "--period", PERIOD)
    again = run(round_ws, "status", "--system", "community", "--period", PERIOD, "--letters", str(out))
    assert "E03-王芳.txt" in again.output  # named as removed
    assert sorted(p.name for p in out.glob("*.txt")) == ["E02-李强.txt", "notes.txt"]  # never another file
    assert (out / "notes.txt").read_text(encoding="utf-8") == "the office's own file"
    assert openpyxl.load_workbook(out / BOOK_NAME).sheetnames == [OVERVIEW_SHEET, "E02 李强"]
    assert MANIFEST in {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != MANIFEST]  # no temporary file left


def test_a_later_rejected_return_speaks_for_the_subject_not_the_earlier_one(round_ws):
    """Two rejected returns of one subject: only the later one's problems are open."""
    forms = {p.name.split("_")[2]: p for p in (round_ws / "output" / "forms" / PERIOD / "community").glob("*.xlsx")}
    worse = full()
    worse["C002"][SYSTEM.items[1].code] = 99
    again = fill_form(forms["E03"], worse, save_as=round_ws / "input" / "returned" / PERIOD / "王芳-v2.xlsx")
    set_saved(again, datetime(2026, 11, 19, 9))
    run(round_ws, "collect", "--system", "community", "--period", PERIOD)
    ws = Workspace.open(round_ws)
    with Ledger.for_reading(ws.path("ledger")) as ledger:
        status = round_status(ws, SYSTEM, PERIOD, read_roster_for(ws.path("roster"), SYSTEM), ledger)
    (letter,) = [l for l in plan_letters(ws, status, today=date(2026, 11, 25)) if l.assessor == "E03"]
    assert [(p.file, p.value) for p in letter.to_fix] == [("王芳-v2.xlsx", "99")]
    assert letter.overdue and "已过期" in letter.opening


def test_the_chase_list_carries_the_problem_details(round_ws, tmp_path):
    out = tmp_path / "chase.xlsx"
    printed = run(round_ws, "status", "--system", "community", "--period", PERIOD, "--export", str(out)).output
    rows = [tuple(c.value for c in row) for row in openpyxl.load_workbook(out).worksheets[0].iter_rows()]
    assert rows[0] == CHASE_COLUMNS + CHASE_DETAIL_COLUMNS
    assert f"（{len(rows) - 1} 行）" in printed
    by = {r[0]: r for r in rows[1:]}
    assert by["E02"][:9] == ("E02", "李强", "四川大学", "13800000002", "C003", "南湖街道南湖社区", PERIOD, "2026-11-20",
                             REJECTED)
    assert by["E02"][9:12] == ("李强.xlsx", by["E02"][10], "") and "均未填写" in by["E02"][13]
    e03 = by["E03"]
    assert e03[4] == "C002" and e03[8] == REJECTED
    assert e03[9] == "王芳-v1.xlsx" and e03[10].startswith("C002") and re.fullmatch(r"G\d+", e03[11])
    assert e03[12] == "abc" and "不是数字" in e03[13]


def test_nobody_owes_anything_means_no_letters(workspace, tmp_path):
    run(workspace, "forms", "--system", "zone", "--period", PERIOD)
    forms = {p.name.split("_")[2]: p for p in (workspace / "output" / "forms" / PERIOD / "zone").glob("*.xlsx")}
    zone = load_system("zone")
    folder = workspace / "input" / "returned" / PERIOD
    folder.mkdir(parents=True)
    for code, form in forms.items():
        fill_form(form, {s: {i.code: i.max for i in zone.items} for s in ("Z01", "Z02")}, save_as=folder / f"{code}.xlsx")
    run(workspace, "collect", "--system", "zone", "--period", PERIOD)
    out = tmp_path / "letters"
    printed = run(workspace, "status", "--system", "zone", "--period", PERIOD, "--letters", str(out)).output
    assert not list(out.glob("*.txt"))
    assert "已写出 0 封信" in printed
    assert openpyxl.load_workbook(out / BOOK_NAME).sheetnames == [OVERVIEW_SHEET]


# -- init -----------------------------------------------------------------------------------
@pytest.mark.parametrize("contact", [CONTACT, "line\none\ttab \x01 \x7f", "'single' and \"\"\" triple", "中文：电话 010-1"])
def test_init_writes_the_round_settings_as_valid_toml(tmp_path, contact):
    root = tmp_path / "w"
    out = run(tmp_path, "init", str(root), "--organiser", ORGANISER, "--contact", contact, "--deadline-day", "12").output
    assert "deadline_day" in out
    text = (root / "happyhome.toml").read_text(encoding="utf-8")
    assert tomllib.loads(text)["round"] == {"contact": contact, "organiser": ORGANISER, "deadline_day": 12,
                                            "deadlines": {}}
    ws = Workspace.open(root)
    assert (ws["round"]["contact"], ws["round"]["organiser"]) == (contact, ORGANISER)
    assert ws.deadline("2026-11") == datetime(2026, 11, 12, 23, 59, 59)
    assert "# Who assessors contact with questions" in text  # the commented template is kept
    # one contact key (the 公示's objection_contact is another setting, left as it was)
    assert len(re.findall(r"(?m)^contact =", text)) == 1 and text.count("[round]") == 1
    assert tomllib.loads(text)["selection"]["objection_contact"] == ""


def test_init_sets_the_round_in_an_existing_workspace_and_hints_without_options(tmp_path):
    root = tmp_path / "w"
    first = run(tmp_path, "init", str(root)).output
    assert "[round]" in first and "--contact" in first  # how to set them later
    run(tmp_path, "init", str(root), "--contact", "王老师")
    ws = Workspace.open(root)
    assert ws["round"]["contact"] == "王老师" and ws["round"]["deadline_day"] == 25
    run(tmp_path, "init", str(root), "--deadline-day", "29", expect=2)
    run(tmp_path, "init", str(root), "--deadline-day", "0", expect=2)


def test_forms_show_the_contact_and_organiser_set_by_init(round_ws):
    form = next((round_ws / "output" / "forms" / PERIOD / "community").glob("*.xlsx"))
    guide = [c.value for c in openpyxl.load_workbook(form)["填表说明"]["A"] if c.value]
    assert any(CONTACT in line for line in guide) and ORGANISER in guide
    assert any("2026-11-20" in line for line in guide)


def test_a_hand_edited_manifest_cannot_remove_other_files(tmp_path):
    from pipeline.letters import write_letters

    folder = tmp_path / "letters"
    folder.mkdir()
    outside = tmp_path / "outside.txt"
    for path in (outside, folder / "notes.md", folder / "E09-旧.txt"):
        path.write_text("x", encoding="utf-8")
    (folder / MANIFEST).write_text('{"files": ["../outside.txt", "notes.md", "E09-旧.txt", 3, "/etc/passwd"]}',
                                   encoding="utf-8")
    result = write_letters([], folder)
    assert [p.name for p in result.removed] == ["E09-旧.txt"]  # a letter it wrote: gone
    assert outside.exists() and (folder / "notes.md").exists()
    (folder / MANIFEST).write_text("not json", encoding="utf-8")
    assert write_letters([], folder).removed == []
