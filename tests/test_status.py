"""`happyhome status`: exactly the missing assignments, and a chase list fit for mail merge."""

from __future__ import annotations

from datetime import datetime

import openpyxl
import pytest

from conftest import open_ledger
from pipeline.config import Workspace
from pipeline.ledger import FileRecord, Ledger, SheetRecord
from pipeline.roster import read_roster
from pipeline.status import CHASE_COLUMNS, CHASE_DETAIL_COLUMNS, CONFLICT, NOT_RECEIVED, REJECTED, round_status
from pipeline.systems import load_system
from tests.conftest import run

BOTH_BACKENDS = True  # tests/conftest.py: each test on SQLite and on PostgreSQL, but the sqlite_only ones
pytestmark = pytest.mark.usefixtures("backend")
PERIOD = "2026-11"


def _file(sha: str, assessor: str, sheets: list[tuple[str, bool]], system: str = "community",
          saved: datetime = datetime(2026, 11, 20, 9)) -> FileRecord:
    items = load_system(system).codes
    return FileRecord(
        sha256=sha, name=f"{sha}.xlsx", original_path=f"/in/{sha}.xlsx", size=1, received_at=saved,
        saved_at=saved, archive_path=f"/archive/{sha}", period=PERIOD, system=system, assessor=assessor,
        format="xlsx", status="accepted" if all(ok for _, ok in sheets) else "partial",
        sheets=[SheetRecord(subject, assessor, subject, ok,
                            [(item, "3", 3.0, "", f"G{7 + n}") for n, item in enumerate(items)] if ok else [])
                for subject, ok in sheets],
    )


def _ledger(workspace) -> None:
    ws = Workspace.open(workspace)
    with open_ledger(ws.root) as ledger:
        ledger.add_file(_file("a1", "E01", [("C001", True), ("C002", True), ("C003", True)]))
        # E01 re-sends C001 later: the old sheet is superseded, the assignment stays received
        ledger.add_file(_file("a2", "E01", [("C001", True)], saved=datetime(2026, 11, 22, 9)))
        ledger.add_file(_file("b1", "E02", [("C001", True), ("C002", False)]))  # C002 failed validation
        ledger.add_file(_file("z1", "E03", [("Z01", True), ("Z02", True)], system="zone"))  # another system


def test_status_lists_exactly_the_missing_assignments(workspace):
    _ledger(workspace)
    ws = Workspace.open(workspace)
    roster = read_roster(ws.path("roster"))
    with open_ledger(ws.root) as ledger:
        result = round_status(ws, load_system("community"), PERIOD, roster, ledger)
        zones = round_status(ws, load_system("zone"), PERIOD, roster, ledger)
    by = {a.code: a for a in result.assessors}
    assert [(a.code, a.assigned, a.received) for a in result.assessors] == [("E01", 3, 3), ("E02", 3, 1), ("E03", 3, 0)]
    assert [(m.subject, m.reason) for m in by["E02"].missing] == [("C002", REJECTED), ("C003", NOT_RECEIVED)]
    assert [m.subject for m in by["E03"].missing] == ["C001", "C002", "C003"]
    assert (result.assigned, result.received, result.missing) == (9, 4, 5)
    assert by["E03"].contact == "wangfang@example.org"
    # the zone round: only E03 returned (both zones); E01 and E02 owe both
    assert [(a.code, a.received, len(a.missing)) for a in zones.assessors] == [("E01", 0, 2), ("E02", 0, 2), ("E03", 2, 0)]


def test_status_cli_and_chase_list_workbook(workspace, tmp_path):
    _ledger(workspace)
    out = tmp_path / "chase" / "催收.xlsx"
    result = run(workspace, "status", "--system", "community", "--period", PERIOD, "--export", str(out))
    assert "缺 5" in result.output
    assert "王芳" in result.output and "wangfang@example.org" in result.output
    book = openpyxl.load_workbook(out)
    sheet = book.worksheets[0]
    rows = [tuple(c.value for c in row) for row in sheet.iter_rows()]
    assert rows[0][:len(CHASE_COLUMNS)] == CHASE_COLUMNS  # today's columns first, unchanged
    assert rows[0][len(CHASE_COLUMNS):] == CHASE_DETAIL_COLUMNS
    assert not sheet.merged_cells.ranges
    assert [(r[0], r[4]) for r in rows[1:]] == [("E02", "C002"), ("E02", "C003"), ("E03", "C001"), ("E03", "C002"), ("E03", "C003")]
    first = rows[1]
    assert first[:len(CHASE_COLUMNS)] == ("E02", "李强", "四川大学", "13800000002", "C002", "玉林街道黉门街社区", PERIOD,
                                          "2026-11-25", REJECTED)
    assert first[len(CHASE_COLUMNS):] == ("", "", "", "", "")  # a rejected sheet with no problem recorded
    assert all(isinstance(v, str) for r in rows for v in r)  # a phone number stays text for mail merge
    assert not list(out.parent.glob(".*"))  # written atomically: no temporary file left


def test_status_with_an_empty_ledger_owes_everything(workspace):
    result = run(workspace, "status", "--system", "zone", "--period", "2026-10")
    assert "应评 6，已收 0，缺 6" in result.output
    run(workspace, "status", "--system", "zone", "--period", "2026-13", expect=2)


def test_reading_commands_do_not_create_a_ledger(workspace):
    from conftest import run

    run(workspace, "status", "--system", "community", "--period", "2026-11")
    run(workspace, "report", "--system", "community", "--period", "2026-11", expect=3)  # nothing collected: refused
    # ledger/ holds the office key since init; no database may appear beside it
    assert sorted(p.name for p in (workspace / "ledger").iterdir()) == ["office.key"]


def test_a_conflict_is_owed_and_says_so_until_settled(workspace, tmp_path):
    ws = Workspace.open(workspace)
    same = datetime(2026, 11, 21, 9)
    with open_ledger(ws.root) as ledger:
        ledger.add_file(_file("c1", "E03", [("C001", True), ("C002", True), ("C003", True)], saved=same))
        other = _file("c2", "E03", [("C003", True)], saved=same)  # the same second, other scores for C003
        other.sheets[0].scores = [(item, "2", 2.0, "", cell) for item, _, _, _, cell in other.sheets[0].scores]
        ledger.add_file(other)
        ledger.add_file(_file("d1", "E02", [("C001", False)], saved=same))
        ledger.add_file(_file("d2", "E02", [("C001", True)], saved=datetime(2026, 11, 22, 9)))  # fixes d1
    roster = read_roster(ws.path("roster"))
    with open_ledger(ws.root) as ledger:
        result = round_status(ws, load_system("community"), PERIOD, roster, ledger)
    by = {a.code: a for a in result.assessors}
    assert [(m.subject, m.reason) for m in by["E03"].missing] == [("C003", CONFLICT)]
    from pipeline.report import chase_list

    digest = {row["assessor"]: row["missing"] for row in chase_list(result)}
    assert digest["E03"] == ["南湖街道南湖社区（C003），两份评分冲突"]  # the digest's chase list says so too
    assert [(m.subject, m.reason) for m in by["E02"].missing] == [("C002", NOT_RECEIVED), ("C003", NOT_RECEIVED)]
    out = tmp_path / "chase.xlsx"
    printed = run(workspace, "status", "--system", "community", "--period", PERIOD, "--export", str(out)).output
    e03 = next(line for line in printed.splitlines() if "王芳" in line)
    assert "C003!" in e03 and "C001" not in e03
    assert "! 冲突" in printed and "failed validation" not in printed  # E02's rejected C001 was fixed by d2
    rows = [tuple(c.value for c in row) for row in openpyxl.load_workbook(out).worksheets[0].iter_rows(min_row=2)]
    assert [(r[0], r[4], r[8]) for r in rows if r[0] == "E03"] == [("E03", "C003", CONFLICT)]


def test_errors_of_a_whole_file_go_with_the_assessor_until_a_later_return_is_taken_in(workspace):
    from pipeline.messages import problem

    ws = Workspace.open(workspace)
    roster = read_roster(ws.path("roster"))
    old = _file("o1", "E02", [], saved=datetime(2026, 11, 20, 9))
    old.status = "rejected"
    old.problems = [problem("old_structure", file="o1.xlsx", sheet="_happyhome", value="abc", expected="def"),
                    problem("wrong_period", file="o1.xlsx", sheet="_happyhome", value="2026-10", expected=PERIOD)]
    with open_ledger(ws.root) as ledger:
        ledger.add_file(old)
        result = round_status(ws, load_system("community"), PERIOD, roster, ledger)
        by = {a.code: a for a in result.assessors}
        # the outdated form is E02's to replace; a form of another round is the office's to file
        assert [p.code for p in by["E02"].file_problems] == ["old_structure"]
        rows = [r for r in result.chase_detail_rows() if r[0] == "E02"]
        assert len(rows) == 3 and all(r[9] == "o1.xlsx" and "版本已过期" in r[13] for r in rows)
        ledger.add_file(_file("n1", "E02", [("C001", True)], saved=datetime(2026, 11, 21, 9)))
        result = round_status(ws, load_system("community"), PERIOD, roster, ledger)
    by = {a.code: a for a in result.assessors}
    assert by["E02"].file_problems == [] and len(by["E02"].missing) == 2  # replaced by a return taken in
