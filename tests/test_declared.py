"""回避 declared in the form, end to end: forms -> an assessor marks 是 -> collect -> status ->
assign --replace-declared -> forms --update -> the replacement's return -> report; and --replace
releasing an assessor through forms, status and a full re-plan."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from pipeline.config import Workspace
from pipeline.ledger import Ledger
from pipeline.roster import read_roster, write_roster
from pipeline.status import SHORT_SHEET, round_status
from pipeline.systems import load_system

from conftest import fill_form, run
from test_collect import set_saved

PERIOD = "2026-11"
T = "创新实践社区"
ITEMS = load_system("community").codes
# 4 communities, 5 assessors from elsewhere: K = 2 gives 8 pairs, loads 1-2
SUBJECTS = [(f"C{i}", f"社区{i}", T, "浙江省", "杭州市", "上城区") for i in range(1, 5)]
ASSESSORS = [(f"E0{i}", name, f"大学{i}", str(i), "四川省", "成都市", "武侯区")
             for i, name in enumerate("甲乙丙丁戊", start=1)]
# a hand-made 分配: E01 C1 C2; E02 C1 C3; E03 C2 C4; E04 C3 C4. E05 rates nothing yet.
PAIRS = [("E01", "C1"), ("E01", "C2"), ("E02", "C1"), ("E02", "C3"), ("E03", "C2"), ("E03", "C4"),
         ("E04", "C3"), ("E04", "C4"), ("E05", "C1")]


@pytest.fixture
def round_ws(workspace: Path) -> Path:
    write_roster(workspace / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    run(workspace, "forms", "--system", "community", "--period", PERIOD)
    return workspace


def form_of(ws: Path, code: str) -> Path:
    return next((ws / "output" / "forms" / PERIOD / "community").glob(f"*_{code}_*.xlsx"))


def returned(ws: Path, code: str, declare: dict[str, str] | None = None, saved: datetime | None = None,
             name: str | None = None) -> Path:
    """The assessor's form, every assigned sheet scored 3 a item, the subjects in `declare`
    marked 回避 = 是 with that reason (and their scores left blank), saved into the returned folder."""
    folder = ws / "input" / "returned" / PERIOD
    folder.mkdir(parents=True, exist_ok=True)
    subjects = read_roster(ws / "input" / "roster.xlsx").assignments(T)[code]
    target = fill_form(form_of(ws, code), {s: {i: 3 for i in ITEMS} for s in subjects if s not in (declare or {})},
                       save_as=folder / (name or form_of(ws, code).name))
    if declare:
        book = openpyxl.load_workbook(target)
        for sheet in book.worksheets:
            if sheet["F2"].value == "对象编号" and sheet["G2"].value in declare:
                assert (sheet["A5"].value, sheet["B5"].value, sheet["C5"].value) == ("回避", "否", "回避原因")
                sheet["B5"] = "是"
                sheet["D5"] = declare[sheet["G2"].value]
        book.save(target)
    if saved:
        set_saved(target, saved)
    return target


def status_of(ws: Path):
    w = Workspace.open(ws)
    with Ledger(w.path("ledger")) as ledger:
        return round_status(w, load_system("community"), PERIOD, read_roster(w.path("roster")), ledger)


def test_declared_conflict_end_to_end(round_ws):
    ws = round_ws
    for code in ("E01", "E03", "E04", "E05"):
        returned(ws, code)
    returned(ws, "E02", declare={"C1": "曾在该社区挂职"})
    out = run(ws, "collect", "--system", "community", "--period", PERIOD, "--strict").output
    assert "声明回避" in out  # the summary's row; --strict: a declaration is no rejection (exit 0)
    w = Workspace.open(ws)
    with Ledger(w.path("ledger")) as ledger:
        [d] = ledger.declarations(PERIOD, "community")
        files = ledger.files(PERIOD, "community")
        problems = ledger.problems(PERIOD, "community")
        scored = set(ledger.accepted_scores(PERIOD, "community")["subject"].astype(str) + "/" +
                     ledger.accepted_scores(PERIOD, "community")["assessor"].astype(str))
    assert (d.assessor, d.subject, d.reason) == ("E02", "C1", "曾在该社区挂职")
    assert set(files["verified"]) == {"signed"} and set(files["status"]) == {"accepted"}  # the seal still verifies
    assert not (problems["severity"] == "error").any()
    assert "C1/E02" not in scored and "C3/E02" in scored
    book = openpyxl.load_workbook(w.output / PERIOD / "collection-community.xlsx")
    rows = [r for r in book["问题"].iter_rows(min_row=2, values_only=True) if r[6] == "声明回避"]
    assert [(r[1], r[3], r[5]) for r in rows] == [("C1 社区1", "C1", "提示")] and "曾在该社区挂职" in rows[0][4]
    assert [r for r in book["未交"].iter_rows(min_row=2, values_only=True)] == []

    # status: E02 owes nothing; C1 has 3 assigned (K = 2 is the usual number), 1 declared: 2 valid, not short
    result = status_of(ws)
    assert result.missing == 0 and result.declared == 1 and result.short == []

    # E05 declares too (a later return of the same form): now C1 has 1 valid of 2
    returned(ws, "E05", declare={"C1": "亲属在该社区工作"}, saved=datetime(2030, 1, 1, 9), name="E05-again.xlsx")
    run(ws, "collect", "--system", "community", "--period", PERIOD)
    result = status_of(ws)
    [short] = result.short
    assert (short.subject, short.planned, short.assigned, short.valid, short.lacking) == ("C1", 2, 3, 1, 1)
    out = run(ws, "status", "--system", "community", "--period", PERIOD, "--export", str(ws / "chase.xlsx")).output
    assert "C1" in out and "--replace-declared" in out
    sheet = openpyxl.load_workbook(ws / "chase.xlsx")[SHORT_SHEET]
    assert [c.value for c in sheet[2]][:7] == ["C1", "社区1", 2, 3, 2, 1, 1]

    # --replace-declared: one replacement for C1, the lowest load (E03 or E04 at 2, E01 at 2 is on C1 already)
    run(ws, "assign", "--system", "community", "--per-subject", "2", "--replace-declared", expect=2)  # needs --period
    out = run(ws, "assign", "--system", "community", "--per-subject", "2", "--replace-declared",
              "--period", PERIOD, "--write").output
    after = read_roster(ws / "input" / "roster.xlsx")
    added = set(after.pairs) - set(PAIRS)
    assert len(added) == 1 and set(PAIRS) <= set(after.pairs)
    [(new, subject)] = added
    assert subject == "C1" and new in ("E03", "E04") and f"C1 → {new}" in out
    plan = openpyxl.load_workbook(ws / "output" / "assign-community.xlsx")
    assert [c.value for c in plan["变动"][2]] == ["C1", "社区1", None, new, "声明回避后补充"]
    assert status_of(ws).short == []
    # running it again adds nobody: C1 has its two valid assessors
    run(ws, "assign", "--system", "community", "--per-subject", "2", "--replace-declared", "--period", PERIOD, "--write")
    assert set(read_roster(ws / "input" / "roster.xlsx").pairs) == set(after.pairs)

    # forms --update: only the replacement's form is rewritten; the others are left byte for byte
    folder = ws / "output" / "forms" / PERIOD / "community"
    before = {p.name: p.read_bytes() for p in folder.glob("*.xlsx")}
    out = run(ws, "forms", "--system", "community", "--period", PERIOD, "--update").output
    now = {p.name: p.read_bytes() for p in folder.glob("*.xlsx")}
    assert [n for n in now if now[n] != before[n]] == [form_of(ws, new).name] and new in out
    returned(ws, new, saved=datetime(2030, 1, 2, 9), name="replacement.xlsx")
    run(ws, "collect", "--system", "community", "--period", PERIOD)
    assert status_of(ws).missing == 0

    # the report: 声明回避 per assessor, and the digest's method note
    run(ws, "report", "--system", "community", "--period", PERIOD)
    sheet = openpyxl.load_workbook(w.output / PERIOD / "summary-community.xlsx")["评估人"]
    head = [c.value for c in sheet[1]]
    column = head.index("声明回避")
    counts = {r[0]: r[column] for r in sheet.iter_rows(min_row=2, values_only=True) if r[0] and r[0].startswith("E0")}
    assert counts == {"E01": 0, "E02": 1, "E03": 0, "E04": 0, "E05": 1}
    assert head[column - 1] == "表格验证"  # the new column comes last: the others stay where they were
    html = (w.output / PERIOD / "digest-community.html").read_text(encoding="utf-8")
    assert "本轮评估人声明回避 2 次（已从评分中排除）" in html


def test_a_later_scored_return_supersedes_the_declaration_and_vice_versa(round_ws):
    ws = round_ws
    returned(ws, "E02", declare={"C1": "挂职"}, saved=datetime(2026, 11, 20, 9), name="a.xlsx")
    returned(ws, "E02", saved=datetime(2026, 11, 21, 9), name="b.xlsx")  # scored, later: it counts
    run(ws, "collect", "--system", "community", "--period", PERIOD)
    w = Workspace.open(ws)
    with Ledger(w.path("ledger")) as ledger:
        assert ledger.declarations(PERIOD, "community") == []
        assert ("E02", "C1") in set(zip(ledger.accepted_scores(PERIOD, "community")["assessor"],
                                        ledger.accepted_scores(PERIOD, "community")["subject"]))
    returned(ws, "E02", declare={"C1": "后来想起曾挂职"}, saved=datetime(2026, 11, 22, 9), name="c.xlsx")
    run(ws, "collect", "--system", "community", "--period", PERIOD)
    with Ledger(w.path("ledger")) as ledger:
        assert [(d.subject, d.reason, d.file) for d in ledger.declarations(PERIOD, "community")] == [
            ("C1", "后来想起曾挂职", "c.xlsx")]
        scores = ledger.accepted_scores(PERIOD, "community")
        assert ("E02", "C1") not in set(zip(scores["assessor"], scores["subject"]))
        assert ("E02", "C3") in set(zip(scores["assessor"], scores["subject"]))


def test_an_old_form_without_the_declare_cells_collects_as_before(round_ws):
    ws = round_ws
    path = returned(ws, "E02")
    book = openpyxl.load_workbook(path)
    for sheet in book.worksheets:
        if sheet["A5"].value == "回避":  # as a form made before the cells: the row held the prompt only
            sheet.unmerge_cells("D5:E5")
            for cell in ("A5", "B5", "C5", "D5"):
                sheet[cell] = None
    book.save(path)
    run(ws, "collect", "--system", "community", "--period", PERIOD)
    w = Workspace.open(ws)
    with Ledger(w.path("ledger")) as ledger:
        assert ledger.declarations(PERIOD, "community") == []
        assert set(ledger.accepted_scores(PERIOD, "community")["subject"]) == {"C1", "C3"}


def test_replace_releases_the_assessor_through_forms_status_and_a_new_plan(workspace):
    write_roster(workspace / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, [])
    run(workspace, "assign", "--system", "community", "--per-subject", "2", "--seed", "3", "--write")
    first = read_roster(workspace / "input" / "roster.xlsx")
    gone = next(a for a in first.assessors if a in dict(first.pairs))
    out = run(workspace, "assign", "--system", "community", "--per-subject", "2", "--seed", "3",
              "--replace", gone, "--write").output
    assert f"已释放 {gone}" in out
    roster = read_roster(workspace / "input" / "roster.xlsx")  # reads: a released assessor is no roster problem
    assert gone in roster.assessors and gone not in dict(roster.pairs)
    assert sorted(roster.released) == sorted(p for p in first.pairs if p[0] == gone)
    plan = openpyxl.load_workbook(workspace / "output" / "assign-community.xlsx")
    notes = {r[0]: r[1] for r in plan["说明"].iter_rows(min_row=2, values_only=True)}
    assert any(k.startswith("已释放的评估人") and gone in v for k, v in notes.items())
    run(workspace, "forms", "--system", "community", "--period", PERIOD)
    forms = [p.name for p in (workspace / "output" / "forms" / PERIOD / "community").glob("*.xlsx")]
    assert len(forms) == 4 and not any(f"_{gone}_" in f for f in forms)
    out = run(workspace, "status", "--system", "community", "--period", PERIOD).output
    assert gone not in out
    # a full re-plan keeps the released assessor out (and their 已替换 rows)
    run(workspace, "assign", "--system", "community", "--per-subject", "2", "--seed", "5", "--write")
    again = read_roster(workspace / "input" / "roster.xlsx")
    assert gone not in dict(again.pairs) and sorted(again.released) == sorted(roster.released)


def test_a_declaration_survives_libreoffice_and_ods(round_ws, tmp_path):
    from conftest import soffice_convert

    path = returned(round_ws, "E02", declare={"C3": "合作项目负责人"})
    ods = soffice_convert(path, "ods", tmp_path / "lo")
    path.unlink()
    ods.rename(path.with_suffix(".ods"))
    run(round_ws, "collect", "--system", "community", "--period", PERIOD)
    w = Workspace.open(round_ws)
    with Ledger(w.path("ledger")) as ledger:
        assert [(d.assessor, d.subject, d.reason) for d in ledger.declarations(PERIOD, "community")] == [
            ("E02", "C3", "合作项目负责人")]
        assert set(ledger.accepted_scores(PERIOD, "community")["subject"]) == {"C1"}
