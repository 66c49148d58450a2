"""`happyhome rollup`: monthly totals equal the per-month reports; deltas, rank movement,
flags and returns hand-checked on a small three-subject case with a month missing."""

from __future__ import annotations

import math
from datetime import datetime

import openpyxl
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from conftest import open_ledger
from pipeline.config import Workspace
from pipeline.ledger import FileRecord, Ledger, SheetRecord
from pipeline.report import report
from pipeline.roster import read_roster, write_roster
from pipeline.rollup import DROP, NO_DATA, UNRATED, compute_rollup, month_range
from pipeline.scoring import score_round
from pipeline.systems import load_system
from tests.conftest import ASSESSORS, PAIRS, SUBJECTS, run

BOTH_BACKENDS = True  # tests/conftest.py: each test on SQLite and on PostgreSQL, but the sqlite_only ones
pytestmark = pytest.mark.usefixtures("backend")
COMMUNITY = load_system("community")
# (period, assessor) -> (received, {subject: share of 满分 given on every item}); a subject's
# total is then 100 x the mean share, so the totals below are easy to check by hand.
ROUNDS = {
    ("2026-09", "E01"): (datetime(2026, 9, 20, 10), {"C001": 0.90, "C002": 0.80, "C003": 0.70}),
    ("2026-09", "E02"): (datetime(2026, 9, 27, 10), {"C001": 0.80, "C002": 0.80, "C003": 0.70}),  # late
    ("2026-09", "E03"): (datetime(2026, 9, 25, 23, 0), {"C001": 0.85, "C002": 0.80, "C003": 0.70}),
    ("2026-10", "E01"): (datetime(2026, 10, 21, 9), {"C001": 0.78, "C002": 0.82}),
    ("2026-10", "E02"): (datetime(2026, 10, 22, 9), {"C001": 0.78, "C002": 0.82}),
    ("2026-10", "E03"): (datetime(2026, 10, 23, 9), {"C001": 0.78}),
    # 2026-11: nothing at all
    ("2026-12", "E01"): (datetime(2026, 12, 1, 9), {"C001": 0.80, "C002": 0.79, "C003": 0.90}),
    ("2026-12", "E02"): (datetime(2026, 12, 2, 9), {"C001": 0.80, "C002": 0.79, "C003": 0.90}),
    ("2026-12", "E03"): (datetime(2026, 12, 3, 9), {"C001": 0.80, "C002": 0.79, "C003": 0.90}),
}
TOTALS = {  # by hand: 100 x mean share
    "C001": {"2026-09": 85.0, "2026-10": 78.0, "2026-12": 80.0},
    "C002": {"2026-09": 80.0, "2026-10": 82.0, "2026-12": 79.0},
    "C003": {"2026-09": 70.0, "2026-12": 90.0},
}


def _record(period: str, assessor: str, received: datetime, shares: dict[str, float]) -> FileRecord:
    sha = f"{period}-{assessor}"
    return FileRecord(
        sha256=sha, name=f"{sha}.xlsx", original_path=f"/in/{sha}.xlsx", size=1, received_at=received,
        saved_at=received, archive_path=f"/a/{sha}", period=period, system="community", assessor=assessor,
        format="xlsx", status="accepted",
        sheets=[SheetRecord(subject, assessor, subject, True,
                            [(i.code, str(i.max * share), i.max * share, "", f"G{7 + n}") for n, i in enumerate(COMMUNITY.items)])
                for subject, share in shares.items()],
    )


def _fill(workspace) -> Workspace:
    ws = Workspace.open(workspace)
    with open_ledger(ws.root) as ledger:
        for (period, assessor), (received, shares) in ROUNDS.items():
            ledger.add_file(_record(period, assessor, received, shares))
    return ws


def _rollup(ws, **kw):
    roster = read_roster(ws.path("roster"))
    with open_ledger(ws.root) as ledger:
        return compute_rollup(ws, COMMUNITY, roster, ledger, **kw), roster


def test_month_range_and_gaps_are_kept(workspace):
    assert month_range("2026-11", "2027-02") == ["2026-11", "2026-12", "2027-01", "2027-02"]
    ws = _fill(workspace)
    result, _ = _rollup(ws)
    assert result.periods == ["2026-09", "2026-10", "2026-11", "2026-12"]  # the empty month is kept
    assert result.with_data == ["2026-09", "2026-10", "2026-12"]
    narrow, _ = _rollup(ws, start="2026-10", end="2026-11")
    assert (narrow.periods, narrow.with_data) == (["2026-10", "2026-11"], ["2026-10"])
    late, _ = _rollup(ws, start="2026-11")
    assert late.periods == ["2026-11", "2026-12"]


def test_deltas_ranks_movement_grades_and_flags_by_hand(workspace):
    ws = _fill(workspace)
    result, _ = _rollup(ws)
    totals = result.wide("total")
    for code, by_month in TOTALS.items():
        for period in result.periods:
            expected = by_month.get(period, math.nan)
            got = totals.at[code, period]
            assert (math.isnan(expected) and math.isnan(got)) or abs(got - expected) < 1e-9, (code, period, got)
    delta, rank, move = result.wide("delta"), result.wide("rank"), result.wide("rank_move")
    assert round(delta.at["C001", "2026-10"], 6) == -7.0 and round(delta.at["C002", "2026-10"], 6) == 2.0
    assert math.isnan(delta.at["C003", "2026-10"])  # not rated that month
    assert delta.loc[:, "2026-12"].isna().all()  # the month before had no data: no change is claimed
    assert dict(rank["2026-09"]) == {"C001": 1, "C002": 2, "C003": 3}
    assert dict(rank["2026-10"].dropna()) == {"C002": 1, "C001": 2}
    assert dict(rank["2026-12"]) == {"C003": 1, "C001": 2, "C002": 3}
    assert (move.at["C001", "2026-10"], move.at["C002", "2026-10"]) == (-1, 1)
    # ordered by the latest rank; latest = 2026-12
    assert list(result.subjects["subject"]) == ["C003", "C001", "C002"]
    grades = dict(zip(result.subjects["subject"], result.subjects["latest_grade"]))
    assert grades == {"C003": "优秀", "C001": "良好", "C002": "合格"}
    flags = [(f.subject, f.period, f.kind) for f in result.flags.itertuples()]
    assert flags == [("C001", "2026-10", DROP), ("C003", "2026-10", UNRATED)]
    assert "85.00 降至 78.00" in result.flags.iloc[0]["message"]
    # per 二级指标 the average share: 2026-09 every item of C001 at .85, C002 .8, C003 .7
    level2 = result.level2.set_index("level2")
    assert level2.at["治理体系", "2026-09"] == 0.783  # (0.85 + 0.8 + 0.7) / 3, kept at the 0.1% it is shown with
    assert level2.at["总分", "2026-10"] == 0.80
    assert math.isnan(level2.at["治理体系", "2026-11"])


def test_drop_threshold_comes_from_the_settings(workspace):
    toml = workspace / "happyhome.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("drop_points = 5", "drop_points = 7.5"), encoding="utf-8")
    ws = _fill(workspace)
    result, _ = _rollup(ws)
    assert DROP not in set(result.flags["kind"])  # C001 fell by 7, not more than 7.5


def test_returns_by_month_and_assessor(workspace):
    ws = _fill(workspace)
    result, _ = _rollup(ws)
    months = result.returns_month.set_index("period")
    # deadline is the 25th 23:59:59: E02's September file came on the 27th
    assert tuple(months.loc["2026-09", ["assigned", "on_time", "late", "missing"]]) == (9, 6, 3, 0)
    assert tuple(months.loc["2026-10", ["assigned", "on_time", "late", "missing"]]) == (9, 5, 0, 4)
    assert not months.at["2026-11", "has_data"] and math.isnan(months.at["2026-11", "on_time"])
    # December's files came in December, after November's deadline but before December's
    assert tuple(months.loc["2026-12", ["on_time", "late", "missing"]]) == (9, 0, 0)
    people = result.returns_assessor.set_index("assessor")
    # E02: September 3 late; October C001, C002 on time, C003 missing; December 3 on time
    assert tuple(people.loc["E02", ["assigned", "on_time", "late", "missing"]]) == (9, 5, 3, 1)
    assert tuple(people.loc["E03", ["assigned", "on_time", "late", "missing"]]) == (9, 7, 0, 2)
    assert people.at["E03", "2026-10"] == 2 and people.at["E01", "2026-10"] == 1


def test_monthly_totals_equal_the_monthly_reports(workspace):
    ws = _fill(workspace)
    result, roster = _rollup(ws)
    totals = result.wide("total")
    with open_ledger(ws.root) as ledger:
        for period in result.with_data:
            direct = score_round(ledger.accepted_scores(period, "community"), COMMUNITY, roster, ws.settings)
            summary = report(ws, COMMUNITY, period).summary
            sheet = pd.read_excel(summary, sheet_name="排名", dtype={"编号": str}, engine="openpyxl")
            from_report = dict(zip(sheet["编号"], sheet["总分"]))
            for code, total in zip(direct.subjects["subject"], direct.subjects["total"]):
                mine = totals.at[code, period]
                if math.isnan(total):
                    assert math.isnan(mine)
                    continue
                assert abs(mine - total) < 1e-9
                assert abs(mine - float(from_report[code])) < 0.005, (code, period)


def test_cli_writes_workbook_and_html(workspace):
    # a roster name that is markup must come out as text
    subjects = [s if s[0] != "C003" else (s[0], "南湖<script>alert(1)</script>社区", *s[2:]) for s in SUBJECTS]
    write_roster(workspace / "input" / "roster.xlsx", subjects, ASSESSORS, PAIRS)
    _fill(workspace)
    out = run(workspace, "rollup", "--system", "community", "--to", "2027-01")
    assert NO_DATA in out.output
    xlsx = workspace / "output" / "rollup" / "rollup-community-2026-09_2027-01.xlsx"
    html = workspace / "output" / "rollup" / "rollup-community-2026-09_2027-01.html"
    assert xlsx.is_file() and html.is_file()
    book = openpyxl.load_workbook(xlsx)
    assert book.sheetnames == ["总分", "较上月", "排名", "二级指标", "标记", "回收（按月）", "回收（按评估人）", "说明"]
    sheet = book["总分"]
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["编号", "名称", "省份", "城市"]
    assert header[4:9] == ["2026-09", "2026-10", f"2026-11（{NO_DATA}）", "2026-12", f"2027-01（{NO_DATA}）"]
    assert header[9:] == ["趋势", "较上月", "最新排名", "名次变化", "最新等级", "标记数"]
    rows = {r[0]: r for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert rows["C001"][4:9] == (pytest.approx(85.0), pytest.approx(78.0), NO_DATA, pytest.approx(80.0), NO_DATA)
    assert rows["C003"][5] is None and rows["C003"][1] == "南湖<script>alert(1)</script>社区"
    assert sheet.freeze_panes == "C2" and sheet.auto_filter.ref
    # one sparkline per subject row, over that row's month cells
    with __import__("zipfile").ZipFile(xlsx) as z:
        sheet_xml = z.read("xl/worksheets/sheet1.xml").decode()
    assert sheet_xml.count("<x14:sparkline>") == 3 and "'总分'!E2:I2" in sheet_xml
    flags = list(book["标记"].iter_rows(min_row=2, values_only=True))
    assert [(f[0], f[2], f[3]) for f in flags] == [("C001", "2026-10", DROP), ("C003", "2026-10", UNRATED)]

    soup = BeautifulSoup(html.read_text(encoding="utf-8"), "html.parser")
    assert len(soup.select("#heat-rows tr.subject-row")) == 3
    assert soup.select_one("#no-data") is not None and "2026-11" in soup.select_one("#no-data").text
    assert not soup.find_all("script") and "<script>alert(1)</script>" in soup.get_text()
    assert "http://" not in html.read_text(encoding="utf-8").replace("http://www.w3.org/", "")
    assert soup.select_one("#trend-chart svg") is not None and soup.select_one("#level2-chart svg") is not None


def test_rollup_with_nothing_collected_is_a_usage_error(workspace):
    out = run(workspace, "rollup", "--system", "zone", expect=2)
    assert "collect" in out.output
    run(workspace, "rollup", "--system", "zone", "--from", "2026-12", "--to", "2026-10", expect=2)


def test_heatmap_colours_by_grade_band_not_by_the_months_spread(workspace):
    _fill(workspace)
    run(workspace, "rollup", "--system", "community")
    stem = workspace / "output" / "rollup" / "rollup-community-2026-09_2026-12"
    soup = BeautifulSoup(stem.with_suffix(".html").read_text(encoding="utf-8"), "html.parser")
    cell = {(tr["data-subject"], n): td for tr in soup.select("#heat-rows tr.subject-row")
            for n, td in enumerate(tr.select("td.m"))}
    colour = {key: td.get("style", "") for key, td in cell.items()}
    # 2026-09: C001 85.00 and C002 80.00 are both 良好, so they share one colour; C003 70.00 is 合格.
    assert cell["C001", 0].get_text() == "85.00" and cell["C002", 0].get_text() == "80.00"
    assert colour["C001", 0] == colour["C002", 0] != colour["C003", 0]
    # 2026-12: 80.00 良好, 79.00 合格 (the colour of 70.00 in September), 90.00 优秀.
    assert colour["C001", 3] == colour["C001", 0] and colour["C002", 3] == colour["C003", 0]
    assert colour["C003", 3] not in (colour["C001", 0], colour["C003", 0])
    legend = soup.select_one("#heat-legend").get_text(" ", strip=True)
    assert legend.split() == ["优秀", "≥", "90", "良好", "≥", "80", "合格", "≥", "60", "不合格", "<", "60"]
    # The workbook's 总分 sheet uses the same bands; its legend is on 说明, so 总分 stays a plain table.
    book = openpyxl.load_workbook(stem.with_suffix(".xlsx"))
    sheet = book["总分"]
    rules = [r.formula[0] for cf in sheet.conditional_formatting for r in cf.rules if r.type == "expression"]
    assert rules[:4] == ["AND(ISNUMBER(E2),E2>=90)", "AND(ISNUMBER(E2),E2>=80)", "AND(ISNUMBER(E2),E2>=60)", "ISNUMBER(E2)"]
    assert sheet.max_row == 4  # header and three subjects
    about = list(book["说明"].iter_rows(values_only=True))
    at = next(n for n, r in enumerate(about) if r[0] == "总分表底色")
    assert [v for v in about[at + 1] if v] == ["优秀 ≥ 90", "良好 ≥ 80", "合格 ≥ 60", "不合格 < 60"]


def test_the_workbook_shows_totals_with_the_decimals_they_are_compared_at(workspace):
    toml = workspace / "happyhome.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("rank_decimals = 2", "rank_decimals = 1"), encoding="utf-8")
    _fill(workspace)
    run(workspace, "rollup", "--system", "community", "--to", "2026-12")
    book = openpyxl.load_workbook(workspace / "output" / "rollup" / "rollup-community-2026-09_2026-12.xlsx")
    assert book["总分"]["E2"].number_format == "0.0"
    deltas = [c for row in book["较上月"].iter_rows(min_row=2, min_col=3) for c in row if isinstance(c.value, (int, float))]
    assert deltas and {c.number_format for c in deltas} <= {"+0.0;[Red]-0.0;0.0", "0.0"}
