"""`happyhome amend`: corrections after 公示, recorded beside the originals, used by every report.

The round below is computed by hand. Every sheet scores each item at one share of its 满分, so
a sheet's total is 100 x its share (community: 19 items, 满分 100, C17 满分 10):

    C001  E01 0.80  E02 0.80  E03 0.80  -> 80.00, rank 1
    C002  E01 0.78  E02 0.80  E03 0.80  -> 79.33, rank 2
    C003  E01 0.60                      -> 60.00, rank 3 (E02 assigned, not returned; E03 not assigned)

Correcting E01's C17 for C001 from 8 to 4 makes E01's C001 total 76 and C001's mean
(76 + 80 + 80) / 3 = 78.67: C002 (79.33) goes first and C001 second. Undoing it restores 80.00.
"""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from conftest import ASSESSORS, SUBJECTS, run, open_ledger
from pipeline.config import Workspace
from pipeline.ledger import SCHEMA_VERSION, FileRecord, Ledger, SheetRecord
from pipeline.roster import write_roster
from pipeline.systems import load_system
from test_ledger import PERIOD as V1_PERIOD, columns, version_1_ledger

BOTH_BACKENDS = True  # tests/conftest.py: each test on SQLite and on PostgreSQL, but the sqlite_only ones
pytestmark = pytest.mark.usefixtures("backend")
PERIOD = "2026-11"
COMMUNITY = load_system("community")
SHARES = {
    "E01": {"C001": 0.80, "C002": 0.78, "C003": 0.60},
    "E02": {"C001": 0.80, "C002": 0.80},
    "E03": {"C001": 0.80, "C002": 0.80},
}
ROUND = ("--system", "community", "--period", PERIOD)
AMEND = ("amend", *ROUND, "--subject", "C001", "--assessor", "E01", "--item", "C17")


def add_file(root: Path, assessor: str, shares: dict[str, float], saved: datetime, period: str = PERIOD) -> None:
    """One accepted return of `assessor` in the ledger, as collect records it."""
    sheets = []
    for subject, share in shares.items():
        scores = [(item.code, f"{round(item.max * share, 4):g}", round(item.max * share, 4), "", f"G{row}")
                  for row, item in enumerate(COMMUNITY.items, start=7)]
        sheets.append(SheetRecord(f"{subject}表", assessor, subject, True, scores))
    name = f"{period}-community-{assessor}-{saved:%d%H%M}.xlsx"
    sha = hashlib.sha256(name.encode()).hexdigest()
    with open_ledger(root) as ledger:
        ledger.add_file(FileRecord(sha, name, f"input/returned/{period}/{name}", 1000, saved, saved,
                                   f"ledger/archive/{sha}", period, "community", assessor, "xlsx", "accepted",
                                   sheets=sheets))


@pytest.fixture
def round_ws(workspace: Path, monkeypatch):
    """The round above; E03 is not assigned C003; the operator is wangli; terminal lines in English
    (the msgids), whatever the catalogue translates them to."""
    from pipeline import i18n

    monkeypatch.setenv("LOGNAME", "wangli")
    pairs = [(a, s) for a, *_ in ASSESSORS for s, *_ in SUBJECTS if (a, s) != ("E03", "C003")]
    write_roster(workspace / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, pairs)
    for assessor, shares in SHARES.items():
        add_file(workspace, assessor, shares, datetime(2026, 11, 20, 9))
    before = i18n.language()
    i18n.set_language("en")
    yield workspace
    i18n.set_language(before)


def ranking(root: Path) -> pd.DataFrame:
    run(root, "report", *ROUND)
    path = root / "output" / PERIOD / "summary-community.xlsx"
    return pd.read_excel(path, sheet_name="排名", dtype={"编号": str}).set_index("编号")


def test_a_correction_swaps_two_ranks_and_its_undo_restores_them(round_ws):
    before = ranking(round_ws)
    assert before["排名"].to_dict() == {"C001": 1, "C002": 2, "C003": 3}
    assert before.loc["C001", "总分"] == pytest.approx(80.00, abs=0.01)
    assert before.loc["C002", "总分"] == pytest.approx(79.33, abs=0.01)

    done = run(round_ws, *AMEND, "--score", "4", "--reason", "公示异议复核：C17 佐证材料不全")
    assert "1" in done.output and "8 → 4" in done.output
    after = ranking(round_ws)
    assert "含 1 处公示后的更正" in run(round_ws, "report", *ROUND).output
    assert after.loc["C001", "总分"] == pytest.approx(78.67, abs=0.01)
    assert after.loc["C002", "总分"] == pytest.approx(79.33, abs=0.01)
    assert after["排名"].to_dict() == {"C002": 1, "C001": 2, "C003": 3}
    results = pd.read_csv(round_ws / "output" / PERIOD / "results-community.csv", dtype={"编号": str}).set_index("编号")
    assert results.loc["C001", "总分"] == pytest.approx(78.67, abs=0.01) and results.loc["C002", "排名"] == 1

    undone = run(round_ws, "amend", *ROUND, "--undo", "1", "--reason", "复核后维持原分")
    assert "4 → 8" in undone.output
    again = ranking(round_ws)
    assert again["排名"].to_dict() == {"C001": 1, "C002": 2, "C003": 3}
    assert again.loc["C001", "总分"] == pytest.approx(80.00, abs=0.01)

    with open_ledger(round_ws) as ledger:
        rows = ledger.corrections(PERIOD, "community")
        original = ledger.accepted_scores(PERIOD, "community")
    # the history is append-only: the amend and the undo, each with who, when, why, before and after
    assert rows[["id", "action", "old_score", "new_score", "operator"]].values.tolist() == [
        [1, "amend", 8.0, 4.0, "wangli"], [2, "undo", 4.0, 8.0, "wangli"]]
    assert pd.isna(rows["undoes"][0]) and rows["undoes"][1] == 1 and rows["undone_by"][0] == 2
    assert rows["reason"].tolist() == ["公示异议复核：C17 佐证材料不全", "复核后维持原分"]
    assert all(rows["created_at"].str.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    # the return itself was never touched
    c17 = original[(original.subject == "C001") & (original.assessor == "E01") & (original.item == "C17")].iloc[0]
    assert (c17.score, c17.original, c17.raw) == (8.0, 8.0, "8") and pd.isna(c17.correction)


def test_the_summary_shows_every_correction_and_marks_the_corrected_cells(round_ws):
    run(round_ws, *AMEND, "--score", "4", "--reason", "公示异议")
    run(round_ws, "amend", *ROUND, "--subject", "C002", "--assessor", "E02", "--item", "c01", "--score", "２",
        "--reason", "复核")  # a lower-case code and a full-width digit are read as a returned score is
    run(round_ws, "amend", *ROUND, "--undo", "2")
    run(round_ws, "amend", *ROUND, "--subject", "C002", "--assessor", "E02", "--item", "C01", "--score", "3.5",
        "--reason", "<b>再次复核</b>")
    run(round_ws, "report", *ROUND)
    path = round_ws / "output" / PERIOD / "summary-community.xlsx"

    register = pd.read_excel(path, sheet_name="更正记录", dtype={"对象编号": str})
    assert register.columns.tolist() == ["编号", "时间", "操作人", "操作", "对象编号", "对象名称", "评估人编号", "评估人",
                                         "指标编号", "三级指标", "原分", "新分", "填写值", "理由", "状态"]
    assert register[["编号", "操作", "对象编号", "评估人", "指标编号", "原分", "新分", "状态"]].values.tolist() == [
        [1, "更正", "C001", "张敏", "C17", 8.0, 4.0, "有效"],
        [2, "更正", "C002", "李强", "C01", 3.2, 2.0, "已撤销"],
        [3, "撤销", "C002", "李强", "C01", 2.0, 3.2, "撤销 #2"],
        [4, "更正", "C002", "李强", "C01", 3.2, 3.5, "有效"],
    ]
    assert register["填写值"].tolist()[1] == "２" and register["操作人"].eq("wangli").all()

    detail = pd.read_excel(path, sheet_name="评分明细", dtype={"对象编号": str})
    assert detail.columns.tolist()[-2:] == ["原分", "更正"]
    fixed = detail[detail["更正"].notna()]
    assert fixed[["对象编号", "评估人编号", "指标编号", "得分", "原分"]].values.tolist() == [
        ["C001", "E01", "C17", 4.0, 8.0], ["C002", "E02", "C01", 3.5, 3.2]]
    assert fixed["更正"].iloc[0].startswith("更正 #1：原分 8 → 新分 4（公示异议；wangli ")
    # the corrected 得分 cells, and only they, are filled and carry a comment saying 原分 → 新分
    book = openpyxl.load_workbook(path)
    sheet = book["评分明细"]
    score_col = [c.value for c in sheet[1]].index("得分") + 1
    marked = [(sheet.cell(r, 4).value, sheet.cell(r, 2).value, sheet.cell(r, 6).value)
              for r in range(2, sheet.max_row + 1) if sheet.cell(r, score_col).fill.fgColor.rgb == "FFFFE699"]
    assert marked == [("C001", "E01", "C17"), ("C002", "E02", "C01")]
    commented = [sheet.cell(r, score_col).comment.text for r in range(2, sheet.max_row + 1)
                 if sheet.cell(r, score_col).comment]
    assert len(commented) == 2 and "原分 3.2 → 新分 3.5" in commented[1]
    csv = pd.read_csv(round_ws / "output" / PERIOD / "scores-community.csv", dtype={"对象编号": str})
    row = csv[(csv["对象编号"] == "C001") & (csv["评估人编号"] == "E01") & (csv["指标编号"] == "C17")].iloc[0]
    assert (row["得分"], row["原分"], row["填写值"]) == (4.0, 8.0, 8)

    html = (round_ws / "output" / PERIOD / "digest-community.html").read_text(encoding="utf-8")
    soup = BeautifulSoup(html, "html.parser")
    note = soup.select_one("#card-C002 .correction-note")
    assert note is not None and note.get_text(strip=True) == "✎ 含 1 处更正"
    lines = [li.get_text() for li in soup.select("#card-C002 .corrections li")]
    assert len(lines) == 1 and "李强（E02）" in lines[0] and "原分 3.2 → 新分 3.5" in lines[0]
    assert "<b>再次复核</b>" in lines[0] and "<b>再次复核</b>" not in html  # escaped, shown as typed
    assert soup.select_one("#card-C001 .correction-note").get_text(strip=True) == "✎ 含 1 处更正"
    assert soup.select_one("#card-C003 .correction-note") is None
    # the ranking marks the corrected subjects and links to their cards
    marks = {tr["data-subject"]: tr.select_one("a.corrected") for tr in soup.select("#ranking-rows tr.subject-row")}
    assert marks["C001"]["href"] == "#card-C001" and marks["C002"]["title"].startswith("含 1 处更正")
    assert marks["C003"] is None
    assert "2 处" in soup.select_one("#corrections-note").get_text()


def test_amend_list_shows_the_round_history_with_status(round_ws):
    empty = run(round_ws, "amend", *ROUND, "--list")
    assert "本轮共有 0 处更正、0 次撤销。" in empty.output
    run(round_ws, *AMEND, "--score", "4", "--reason", "公示异议")
    run(round_ws, *AMEND, "--score", "5", "--reason", "[red]二次复核[/]")
    run(round_ws, "amend", *ROUND, "--undo", "2")
    listed = run(round_ws, "amend", *ROUND, "--list").output
    for text in ("编号", "操作人", "原分", "新分", "理由", "状态", "wangli", "公示异议", "[red]",
                 "已撤销", "撤销 #2", "有效"):
        assert text in listed, text
    lines = [line for line in listed.splitlines() if "C17" in line]
    assert len(lines) == 3
    assert "8" in lines[0] and "4" in lines[0] and "有效" in lines[0]
    assert "已撤销" in lines[1] and "撤销 #2" in lines[2]
    # another round has its own (empty) history
    other = run(round_ws, "amend", "--system", "community", "--period", "2026-10", "--list").output
    assert "C17" not in other


@pytest.mark.parametrize("args, message", [
    (("--item", "C17", "--score", "11", "--reason", "复核"), "C17 的新得分 11 超出范围，应在 0 到 10 之间。"),
    (("--item", "C17", "--score", "-1", "--reason", "复核"), "C17 的新得分 -1 超出范围"),
    (("--item", "C17", "--score", "八", "--reason", "复核"), "C17 的新得分“八”不是数字，请填写 0 到 10 之间的数字。"),
    (("--item", "C99", "--score", "3", "--reason", "复核"), "指标编号 C99 不是“创新实践社区评价指标体系”的指标"),
    (("--item", "C17", "--score", "4", "--reason", "  "), "请用 --reason 写明更正理由"),
    (("--item", "C17", "--score", "8", "--reason", "复核"), "C001 / E01 / C17 的现行得分已是 8，与新得分相同，未记录更正。"),
])
def test_a_correction_is_checked_like_a_returned_score(round_ws, args, message):
    out = run(round_ws, "amend", *ROUND, "--subject", "C001", "--assessor", "E01", *args, expect=2).output
    assert message in out
    with open_ledger(round_ws) as ledger:
        assert len(ledger.corrections(PERIOD, "community")) == 0


@pytest.mark.parametrize("who, message", [
    (("--subject", "C003", "--assessor", "E03"), "评估对象 C003 未分配给评估人 E03，不能更正其评分。"),
    (("--subject", "C003", "--assessor", "E02"), "该评估人（E02）本轮没有已接收的 C003 评分，无法更正；请先收取其评分表。"),
    (("--subject", "C009", "--assessor", "E01"), "评估对象编号 C009 不在名单中"),
    (("--subject", "Z01", "--assessor", "E01"), "评估对象编号 Z01 不在名单中（创新实践社区）"),
    (("--subject", "C001", "--assessor", "E09"), "评估人编号 E09 不在名单中。"),
])
def test_a_correction_needs_an_assigned_returned_score(round_ws, who, message):
    out = run(round_ws, "amend", *ROUND, *who, "--item", "C01", "--score", "1", "--reason", "复核", expect=2).output
    assert message in out


def test_the_modes_and_their_options(round_ws):
    missing = run(round_ws, "amend", *ROUND, "--subject", "C001", "--score", "3", expect=2).output
    assert "--assessor" in missing and "--item" in missing and "--reason" in missing
    assert "--score" in run(round_ws, "amend", *ROUND, "--list", "--score", "3", expect=2).output
    run(round_ws, "amend", *ROUND, "--list", "--undo", "1", expect=2)


def test_undo_refuses_what_cannot_be_undone(round_ws):
    run(round_ws, *AMEND, "--score", "4", "--reason", "第一次")
    run(round_ws, *AMEND, "--score", "5", "--reason", "第二次")
    from pipeline.corrections import round_history

    assert round_history(Workspace.open(round_ws), COMMUNITY, PERIOD)["status"].tolist() == ["已被 #2 更正", "有效"]
    assert "同一评分又有更正 #2，请先撤销 #2" in run(round_ws, "amend", *ROUND, "--undo", "1", expect=2).output
    assert "没有编号为 9 的更正" in run(round_ws, "amend", *ROUND, "--undo", "9", expect=2).output
    # another round (another stage) cannot undo this round's correction
    other = run(round_ws, "amend", *ROUND, "--stage", "验收", "--undo", "1", expect=2).output
    assert "没有编号为 1 的更正" in other
    run(round_ws, "amend", *ROUND, "--undo", "2")
    assert "已于" in run(round_ws, "amend", *ROUND, "--undo", "2", expect=2).output
    assert "是一条撤销记录" in run(round_ws, "amend", *ROUND, "--undo", "3", expect=2).output
    run(round_ws, "amend", *ROUND, "--undo", "1")  # now #1 is the latest of its score
    with open_ledger(round_ws) as ledger:
        scores = ledger.accepted_scores(PERIOD, "community")
        rows = ledger.corrections(PERIOD, "community")
    assert scores[scores.correction.notna()].empty
    assert rows[["action", "old_score", "new_score"]].values.tolist() == [
        ["amend", 8.0, 4.0], ["amend", 4.0, 5.0], ["undo", 5.0, 4.0], ["undo", 4.0, 8.0]]


def test_a_newer_return_supersedes_the_corrections_of_the_old_one(round_ws):
    run(round_ws, *AMEND, "--score", "4", "--reason", "公示异议")
    assert ranking(round_ws).loc["C001", "总分"] == pytest.approx(78.67, abs=0.01)
    # E01 sends C001 again, saved later, at 0.70 of every 满分 (C17: 7): that return counts as it is
    add_file(round_ws, "E01", {"C001": 0.70}, datetime(2026, 11, 25, 9))
    after = ranking(round_ws)
    assert after.loc["C001", "总分"] == pytest.approx((70 + 80 + 80) / 3, abs=0.01)
    listed = run(round_ws, "amend", *ROUND, "--list").output
    assert "已失效" in listed
    assert "更正 #1 已失效" in run(round_ws, "amend", *ROUND, "--undo", "1", expect=2).output
    register = pd.read_excel(round_ws / "output" / PERIOD / "summary-community.xlsx", sheet_name="更正记录")
    assert register["状态"].tolist() == ["已失效"]
    # the newer return can be corrected in its turn, from its own value
    done = run(round_ws, *AMEND, "--score", "6", "--reason", "新表复核")
    assert "7 → 6" in done.output


def test_the_rollup_uses_corrected_scores(round_ws):
    run(round_ws, *AMEND, "--score", "4", "--reason", "公示异议")
    from pipeline.rollup import compute_rollup
    from pipeline.roster import read_roster_for

    ws = Workspace.open(round_ws)
    with open_ledger(ws.root) as ledger:
        result = compute_rollup(ws, COMMUNITY, read_roster_for(ws.path("roster"), COMMUNITY), ledger, PERIOD, PERIOD)
    totals = result.monthly.set_index("subject")
    assert totals.loc["C001", "total"] == pytest.approx(78.67, abs=0.01) and totals.loc["C001", "rank"] == 2


@pytest.mark.sqlite_only
def test_a_version_2_ledger_gains_the_corrections_table(tmp_path, monkeypatch):
    import pipeline.ledger.sqlite as module

    path = tmp_path / "happyhome.sqlite"
    version_1_ledger(path)
    monkeypatch.setattr(module, "MIGRATIONS", module.MIGRATIONS[:2])
    monkeypatch.setattr(module, "SCHEMA_VERSION", 2)
    Ledger(path).close()  # the ledger as happyhome made it before corrections
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2 and "corrections" not in columns(conn)
    conn.close()
    monkeypatch.undo()
    with Ledger(path) as ledger:
        scores = ledger.accepted_scores(V1_PERIOD, "community")
        assert len(ledger.corrections(V1_PERIOD, "community")) == 0
    assert scores[["subject", "score", "original"]].values.tolist() == [["C001", 4.0, 4.0], ["C002", 2.0, 2.0]]
    assert scores["correction"].isna().all()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    assert columns(conn)["corrections"][-2:] == ["created_at", "undoes"]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with pytest.raises(sqlite3.IntegrityError):  # an action other than amend or undo
        conn.execute("INSERT INTO corrections (action, period, system, assessor, subject, item, sheet_id, old_score, "
                     "new_score, reason, operator, created_at) VALUES ('edit', ?, 'community', 'E01', 'C001', 'C01', "
                     "2, 4, 3, 'x', 'y', 'z')", (V1_PERIOD,))
    conn.close()


def test_the_operator_is_the_login_name_with_a_fallback(monkeypatch):
    import getpass

    from pipeline.corrections import operator

    monkeypatch.setattr(getpass, "getuser", lambda: "wangli")
    assert operator() == "wangli"

    def no_login():
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_login)
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.setenv("USERNAME", "liu")
    assert operator() == "liu"
    monkeypatch.delenv("USERNAME")
    assert operator() == "unknown"
