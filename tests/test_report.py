"""`happyhome report`: the summary workbook, results CSV and digest, read back and checked."""

from __future__ import annotations

import csv
import hashlib
from datetime import datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from conftest import run, open_ledger
from pipeline.config import Workspace
from pipeline.ledger import FileRecord, Ledger, SheetRecord
from pipeline.report import RANK_HEAD, report
from pipeline.systems import load_system

BOTH_BACKENDS = True  # tests/conftest.py: each test on SQLite and on PostgreSQL, but the sqlite_only ones
pytestmark = pytest.mark.usefixtures("backend")
PERIOD = "2026-11"
COMMUNITY = load_system("community")
# Each sheet scores every item at the same share of its 满分, so a sheet total is 100 x share
# and each 二级指标 subtotal is its 满分 x the mean share: easy to compute by hand.
SHARES = {
    "C001": {"E01": 0.90, "E02": 0.95, "E03": 0.85},  # 90.00 优秀, rank 1
    "C002": {"E01": 0.80, "E02": 0.80, "E03": 0.80},  # 80.00 良好, rank 2
    "C003": {"E01": 0.50, "E02": 0.70},               # 60.00 合格, rank 3; E03 has not returned it
}
EXPECTED = {"C001": 90.0, "C002": 80.0, "C003": 60.0}
REMARKS = {("E01", "C001", "C01"): "<script>alert(1)</script>", ("E02", "C001", "C02"): "=1+1",
           ("E03", "C002", "C05"): "+86 138 0000 0000 居民反映良好"}


def add_returns(root: Path, shares=SHARES, remarks=REMARKS, system=COMMUNITY, period=PERIOD) -> None:
    """Put accepted sheets in the ledger the way collect does: one FileRecord per assessor."""
    ws = Workspace.open(root)
    by_assessor: dict[str, list[SheetRecord]] = {}
    for subject, people in shares.items():
        for assessor, share in people.items():
            scores = []
            for row, item in enumerate(system.items, start=7):
                value = round(item.max * share, 4)
                scores.append((item.code, f"{value:g}", value, remarks.get((assessor, subject, item.code), ""), f"G{row}"))
            by_assessor.setdefault(assessor, []).append(SheetRecord(f"{subject}表", assessor, subject, True, scores))
    with open_ledger(ws.root) as ledger:
        for assessor, sheets in by_assessor.items():
            name = f"{period}-{system.id}-{assessor}.xlsx"
            sha = hashlib.sha256(name.encode()).hexdigest()
            ledger.add_file(FileRecord(sha, name, f"input/returned/{period}/{name}", 1000, datetime(2026, 11, 20, 9),
                                       datetime(2026, 11, 20, 8), f"ledger/archive/{sha}", period, system.id, assessor,
                                       "xlsx", "accepted", sheets=sheets))


def sheet(path: Path, name: str) -> pd.DataFrame:
    return pd.read_excel(path, sheet_name=name, dtype={"编号": str, "对象编号": str})


def test_summary_workbook_matches_hand_computed_values(workspace):
    add_returns(workspace)
    res = report(Workspace.open(workspace), "community", PERIOD)
    out = workspace / "output" / PERIOD
    assert res.summary == out / "summary-community.xlsx" and res.summary.is_file()
    assert res.csv == out / "results-community.csv" and res.digest == out / "digest-community.html"

    book = openpyxl.load_workbook(res.summary)
    assert book.sheetnames[:1] == ["排名"]
    assert {"排名", "指标明细", "评分明细", "评估人", "争议", "说明"} <= set(book.sheetnames)
    assert "排名变化" not in book.sheetnames
    head = [c.value for c in book["排名"][1]]
    level2 = list(COMMUNITY.level2_names)
    assert head[:9] == RANK_HEAD
    assert head[9:9 + len(level2)] == level2
    assert head[9 + len(level2)] == "标记"

    rank = sheet(res.summary, "排名").set_index("编号")
    assert list(rank.index) == ["C001", "C002", "C003"]
    for code, total in EXPECTED.items():
        assert rank.loc[code, "总分"] == pytest.approx(total, abs=0.01)
    assert rank["排名"].tolist() == [1, 2, 3]
    assert rank["等级"].tolist() == ["优秀", "良好", "合格"]
    assert rank["评估人数"].tolist() == [3, 3, 2]
    # 二级指标 subtotal = its 满分 x the subject's mean share.
    full = {n: sum(i.max for i in COMMUNITY.items if i.level2 == n) for n in level2}
    for code, total in EXPECTED.items():
        for name in level2:
            assert rank.loc[code, name] == pytest.approx(full[name] * total / 100, abs=0.01)
    assert "评估人总分相差 20.00 分" in rank.loc["C003", "标记"]
    assert rank.loc["C003", "排名（90%区间）"].startswith("第3名")

    # Frozen headers, a filter, print setup, number formats.
    ws = book["排名"]
    assert ws.freeze_panes == "D2"
    assert ws.auto_filter.ref.startswith("A1:")
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.paperSize == 9
    assert ws.print_title_rows == "$1:$1"
    assert ws.cell(2, 7).number_format == "0.00"
    assert ws.conditional_formatting  # data bar, grade highlight, colour scales

    items = sheet(res.summary, "指标明细")
    assert items.iloc[0]["编号"] == "满分" and items.iloc[0]["总分"] == 100
    c01 = [c for c in items.columns if c.startswith("C01 ")][0]
    assert items.iloc[0][c01] == 4
    assert items.set_index("编号").loc["C001", c01] == pytest.approx(4 * 0.9)

    detail = sheet(res.summary, "评分明细")
    n_sheets = sum(len(v) for v in SHARES.values())
    assert len(detail) == n_sheets * len(COMMUNITY.items)
    row = detail[(detail["评估人编号"] == "E02") & (detail["对象编号"] == "C001") & (detail["指标编号"] == "C02")].iloc[0]
    assert row["备注"] == "=1+1" and row["单元格"] == "G8" and row["来源文件"] == "2026-11-community-E02.xlsx"
    assert row["得分"] == pytest.approx(4 * 0.95)
    # A remark that starts with "=" is stored as text, never as a formula.
    cells = [c for r in book["评分明细"].iter_rows() for c in r if c.value == "=1+1"]
    assert cells and all(c.data_type == "s" for c in cells)

    people = sheet(res.summary, "评估人").dropna(subset=["姓名"]).set_index("编号")
    assert people.loc["E01", "评估对象数"] == 3 and people.loc["E03", "评估对象数"] == 2
    # E02: C001 95 - 87.5, C002 0, C003 70 - 50 -> (7.5 + 0 + 20) / 3
    assert people.loc["E02", "平均偏差"] == pytest.approx(27.5 / 3, abs=0.01)

    flags = sheet(res.summary, "争议")
    assert ("C003", "总分分歧") in set(zip(flags["对象编号"], flags["类别"]))

    about = {r[0].value: r[1].value for r in book["说明"].iter_rows(min_row=2, max_col=2) if r[0].value}
    assert about["指标体系版本"] == COMMUNITY.version and about["结构校验"] == COMMUNITY.checksum
    assert about["计分方法"] == "平均（mean）"
    # Why an interval may leave out the rank is said where intervals are explained (see
    # test_a_crowded_top_can_leave_the_rank_out_of_its_interval), in the workbook and the digest.
    assert about["排名区间"].startswith("自助法 2000 次，种子 20261129，90% 区间。") and "可能不含本期名次" in about["排名区间"]
    assert "可能不含本期名次" in res.digest.read_text(encoding="utf-8")
    assert "α" in about["一致性解读"] or "一致" in about["一致性解读"]
    shas = {c.value for r in book["说明"].iter_rows() for c in r if isinstance(c.value, str) and len(c.value) == 64}
    assert shas == {hashlib.sha256(f"{PERIOD}-community-{a}.xlsx".encode()).hexdigest() for a in ("E01", "E02", "E03")}

    # Native charts: totals and category averages.
    charts = book["图表"]._charts
    assert len(charts) == 2


def test_results_csv_has_bom_and_inert_text(workspace):
    add_returns(workspace)
    res = report(Workspace.open(workspace), "community", PERIOD)
    raw = res.csv.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert [r["编号"] for r in rows] == ["C001", "C002", "C003"]
    assert [r["总分"] for r in rows] == ["90.00", "80.00", "60.00"]
    assert rows[0]["名称"] == "湖滨街道东坡路社区" and rows[0]["排名"] == "1"
    assert list(rows[0])[:9] == RANK_HEAD


def test_csv_neutralises_formula_like_roster_text(workspace):
    from pipeline.roster import write_roster
    from conftest import ASSESSORS, PAIRS, SUBJECTS
    subjects = [s if s[0] != "C002" else (s[0], "=HYPERLINK(1)", *s[2:]) for s in SUBJECTS]
    write_roster(workspace / "input" / "roster.xlsx", subjects, ASSESSORS, PAIRS)
    add_returns(workspace)
    res = report(Workspace.open(workspace), "community", PERIOD)
    rows = list(csv.DictReader(res.csv.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[1]["名称"] == "'=HYPERLINK(1)"
    cell = [c for r in openpyxl.load_workbook(res.summary)["排名"].iter_rows() for c in r if c.value == "=HYPERLINK(1)"]
    assert cell and cell[0].data_type == "s"


def test_trimmed_by_province_and_calibrate(workspace):
    add_returns(workspace)
    res = report(Workspace.open(workspace), "community", PERIOD, method="trimmed", by="省份", calibrate=True)
    book = openpyxl.load_workbook(res.summary)
    assert "排名变化" in book.sheetnames
    head = [c.value for c in book["排名"][1]]
    assert {"省份内排名", "校准总分", "校准排名"} <= set(head)
    rank = sheet(res.summary, "排名").set_index("编号")
    # Three assessors at most: fewer than trim_min (5), so trimming changes nothing.
    assert rank.loc["C001", "总分"] == pytest.approx(90, abs=0.01)
    assert rank["省份内排名"].tolist() == [1, 1, 1]  # one community per province
    about = {r[0].value: r[1].value for r in book["说明"].iter_rows(min_row=2, max_col=2) if r[0].value}
    assert about["计分方法"] == "截尾平均（trimmed）" and about["分组排名"] == "省份"
    assert "截尾" in res.digest.read_text(encoding="utf-8")


def test_report_refuses_a_round_with_nothing_collected(workspace):
    out = workspace / "output" / PERIOD
    result = run(workspace, "report", "--system", "community", "--period", PERIOD, expect=3)
    assert "本轮（创新实践社区评价指标体系 2026-11）还没有收取到任何评分表，无法生成报告" in result.output
    assert "happyhome collect --system community --period 2026-11" in result.output
    assert not out.exists() or not any(out.iterdir())  # nothing written
    assert not (workspace / "ledger" / "happyhome.sqlite").exists()  # report does not create a ledger
    # Files came in but none passed: the message says so and where the reasons are.
    folder = workspace / "input" / "returned" / PERIOD
    folder.mkdir(parents=True)
    (folder / "微信图片.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a workbook")
    run(workspace, "collect", "--system", "community", "--period", PERIOD)
    before = set(out.iterdir())
    result = run(workspace, "report", "--system", "community", "--period", PERIOD, expect=3)
    assert "没有一张评分表通过校验" in result.output and "collection-community.xlsx" in result.output
    assert set(out.iterdir()) == before  # only the collection report, written by collect


def test_cli_report_prints_paths_and_top_ranks(workspace):
    add_returns(workspace)
    result = run(workspace, "report", "--system", "community", "--period", PERIOD)
    assert "summary-community.xlsx" in result.output and "digest-community.html" in result.output
    assert "湖滨街道东坡路社区" in result.output and "90.00" in result.output
    bad = run(workspace, "report", "--system", "community", "--period", PERIOD, "--by", "国家", expect=2)
    assert "国家" in bad.output
    empty = run(workspace, "report", "--system", "zone", "--period", "2026-12", expect=3)
    assert "还没有收取到任何评分表" in empty.output


def test_full_path_forms_fill_collect_report(workspace):
    """forms -> assessors fill them -> collect -> report, all through the CLI."""
    from conftest import fill_form

    run(workspace, "forms", "--system", "community", "--period", PERIOD)
    forms = {code: next((workspace / "output" / "forms" / PERIOD / "community").glob(f"*{code}*.xlsx"))
             for code in ("E01", "E02", "E03")}
    folder = workspace / "input" / "returned" / PERIOD
    folder.mkdir(parents=True)
    # Typed into Excel, "=1+1" would become a formula, not a remark: leave it to the ledger tests above.
    typed = {k: v for k, v in REMARKS.items() if not v.startswith("=")}
    for assessor, form in forms.items():
        scores = {s: {i.code: round(i.max * people[assessor], 4) for i in COMMUNITY.items}
                  for s, people in SHARES.items() if assessor in people}
        remarks = {s: {c: text for (a, s2, c), text in typed.items() if a == assessor and s2 == s} for s in scores}
        fill_form(form, scores, remarks, save_as=folder / form.name)
    run(workspace, "collect", "--system", "community", "--period", PERIOD)
    result = run(workspace, "report", "--system", "community", "--period", PERIOD, "--calibrate")
    assert "已写入" in result.output
    out = workspace / "output" / PERIOD
    rank = sheet(out / "summary-community.xlsx", "排名").set_index("编号")
    for code, total in EXPECTED.items():
        assert rank.loc[code, "总分"] == pytest.approx(total, abs=0.01)
    assert rank["评估人数"].tolist() == [3, 3, 2]
    detail = sheet(out / "summary-community.xlsx", "评分明细")
    assert set(detail["备注"].dropna()) == set(typed.values())
    assert detail["单元格"].str.match(r"^G\d+$").all()
    page = (out / "digest-community.html").read_text(encoding="utf-8")
    assert "南湖街道南湖社区（C003），已交但未通过校验" in page  # E03 sent the form with C003 blank


def test_calibrated_official_ranking_and_rank_changes(workspace):
    # E01 is 10 points lenient; every pair of assessors shares one subject (a connected design).
    shares = {"C001": {"E01": 0.95, "E02": 0.85}, "C002": {"E02": 0.88, "E03": 0.88}, "C003": {"E01": 0.99, "E03": 0.89}}
    add_returns(workspace, shares=shares, remarks={})
    toml = workspace / "happyhome.toml"
    text = toml.read_text(encoding="utf-8")
    assert 'official = "plain"' in text
    toml.write_text(text.replace('official = "plain"', 'official = "calibrated"'), encoding="utf-8")
    res = report(Workspace.open(workspace), "community", PERIOD)  # no --calibrate: the config implies it
    rank = sheet(res.summary, "排名").set_index("编号")
    assert rank["排名"].to_dict() == {"C003": 1, "C001": 2, "C002": 3}  # plain: 94, 90, 88
    # Effects sum to zero: E01 +20/3, E02 = E03 = -10/3; calibrated 92.33, 88.33, 91.33.
    assert rank["校准总分"].to_dict() == pytest.approx({"C003": 92 + 1 / 3, "C001": 88 + 1 / 3, "C002": 91 + 1 / 3}, abs=0.01)
    assert rank["校准排名"].to_dict() == {"C003": 1, "C001": 3, "C002": 2}
    changes = sheet(res.summary, "排名变化")
    assert changes[["编号", "排名", "校准排名", "名次变化"]].values.tolist() == [["C002", 3, 2, 1], ["C001", 2, 3, -1]]
    people = sheet(res.summary, "评估人").dropna(subset=["姓名"]).set_index("编号")
    assert people.loc["E01", "宽严效应"] == pytest.approx(20 / 3, abs=0.01)
    book = openpyxl.load_workbook(res.summary)
    about = {r[0].value: r[1].value for r in book["说明"].iter_rows(min_row=2, max_col=2) if r[0].value}
    assert about["正式排名"] == "校准排名"
    page = res.digest.read_text(encoding="utf-8")
    assert "本期以校准排名为正式排名" in page and 'id="rank-changes"' in page
    assert "6.67（" in page  # E01's effect, with its standard error, in the digest's assessor table


def test_every_score_also_goes_to_a_csv_and_a_large_detail_moves_out_of_the_workbook(workspace):
    add_returns(workspace)
    (workspace / "happyhome.toml").write_text("[report]\ndetail_max_rows = 50\n", encoding="utf-8")
    res = report(Workspace.open(workspace), "community", PERIOD)
    n_scores = sum(len(v) for v in SHARES.values()) * len(COMMUNITY.items)  # 8 sheets x 19 = 152 > 50
    with open(res.detail_csv, encoding="utf-8") as fh:
        assert fh.read(1) == "\ufeff"  # a byte-order mark, so Excel reads the Chinese
    detail = pd.read_csv(res.detail_csv, encoding="utf-8-sig", dtype=str)
    assert res.detail_csv.name == "scores-community.csv" and len(detail) == n_scores
    row = detail[(detail["评估人编号"] == "E02") & (detail["对象编号"] == "C001") & (detail["指标编号"] == "C02")].iloc[0]
    assert row["备注"] == "'=1+1"  # inert in a spreadsheet
    assert float(row["得分"]) == pytest.approx(4 * 0.95) and row["单元格"] == "G8"
    note = openpyxl.load_workbook(res.summary)["评分明细"]["A1"].value
    assert f"{n_scores:,} 条评分" in note and "scores-community.csv" in note


def test_the_number_shown_is_the_number_used(workspace):
    """Totals 60.00 and 59.99 make 59.995: 60.00 and 合格 in the terminal, every workbook cell, CSV and digest."""
    from bs4 import BeautifulSoup

    from conftest import ASSESSORS, SUBJECTS, fill_form
    from pipeline.roster import write_roster

    write_roster(workspace / "input" / "roster.xlsx", SUBJECTS, ASSESSORS[:2], [("E01", "C001"), ("E02", "C001")])
    run(workspace, "forms", "--system", "community", "--period", PERIOD)
    folder = workspace / "input" / "returned" / PERIOD
    folder.mkdir(parents=True)
    first = COMMUNITY.items[0]  # C01, 满分 4
    for form in (workspace / "output" / "forms" / PERIOD / "community").glob("*.xlsx"):
        scores = {i.code: round(i.max * 0.6, 2) for i in COMMUNITY.items}  # a sheet total of 60.00
        if "E02" in form.name:
            scores[first.code] = 2.39  # 59.99
        fill_form(form, {"C001": scores}, save_as=folder / form.name)
    run(workspace, "collect", "--system", "community", "--period", PERIOD)
    printed = run(workspace, "report", "--system", "community", "--period", PERIOD).output
    line = next(x for x in printed.splitlines() if "C001" in x)
    assert "60.00" in line and "合格" in line

    out = workspace / "output" / PERIOD
    book = openpyxl.load_workbook(out / "summary-community.xlsx")
    rank = book["排名"]
    head = [c.value for c in rank[1]]
    c001 = next(r for r in rank.iter_rows(min_row=2, values_only=True) if r[1] == "C001")
    assert c001[head.index("总分")] == 60.0 and c001[head.index("等级")] == "合格" and c001[0] == 1
    # 二级指标 subtotal 治理体系 (C01–C03, 满分 12): 2.395 + 2 x 2.4 = 7.195 -> 7.20.
    level2 = COMMUNITY.items[0].level2
    assert c001[head.index(level2)] == 7.2
    items = book["指标明细"]
    ihead = [c.value for c in items[1]]
    row = next(r for r in items.iter_rows(min_row=3, values_only=True) if r[0] == "C001")
    assert row[ihead.index("总分")] == 60.0 and row[ihead.index(f"{first.code} {first.level3}")] == 2.4  # 2.395
    about = {r[0].value: r[1].value for r in book["说明"].iter_rows(min_row=2, max_col=2) if r[0].value}
    assert "四舍五入" in about["取整规则"] and "只取整一次" in about["取整规则"]
    # No cell anywhere holds more than its format shows (0.00: two decimals; 0.0%: three).
    shown = {"0.00": 2, "0.0%": 3, "0": 0, "0.##": 2}
    for ws in book.worksheets:
        for cell in (c for r in ws.iter_rows() for c in r if isinstance(c.value, float)):
            places = shown.get(cell.number_format, 2)
            assert round(cell.value, places) == cell.value, (ws.title, cell.coordinate, cell.value, cell.number_format)

    rows = list(csv.DictReader((out / "results-community.csv").read_text(encoding="utf-8-sig").splitlines()))
    assert (rows[0]["编号"], rows[0]["总分"], rows[0]["等级"], rows[0][level2]) == ("C001", "60.00", "合格", "7.20")

    page = BeautifulSoup((out / "digest-community.html").read_text(encoding="utf-8"), "html.parser")
    cells = [td.get_text(strip=True) for td in page.select_one('tr.subject-row[data-subject="C001"]').find_all("td")]
    assert cells[4:6] == ["60.00", "合格"]
    assert page.select_one("#card-C001 .total").get_text(strip=True) == "60.00"
    assert "四舍五入" in page.select_one("#rounding").get_text()


def col_widths(sheet) -> dict[int, float]:
    """Column index (1-based) -> width; openpyxl groups adjacent equal widths into one range."""
    return {i: d.width for d in sheet.column_dimensions.values() if d.min for i in range(d.min, d.max + 1)}


def test_summary_prints_legibly(workspace):
    """Widths from content, rank and 编号 apart, long texts whole, 指标明细 narrow enough for A4 landscape."""
    from pipeline.report import text_width

    add_returns(workspace)
    res = report(Workspace.open(workspace), "community", PERIOD)
    book = openpyxl.load_workbook(res.summary)
    rank = book["排名"]
    head = [c.value for c in rank[1]]
    width = {h: col_widths(rank)[n] for n, h in enumerate(head, 1)}
    longest = max(text_width(r[2]) for r in rank.iter_rows(min_row=2, values_only=True))
    assert longest + 2 <= width["名称"] <= longest + 4  # 玉林街道黉门街社区, not a fixed 24
    assert width["排名"] < 8 and width["标记"] <= 37
    # A right-aligned rank beside a left-aligned code printed as "1 C001": both are centred.
    assert rank.cell(2, 1).alignment.horizontal == "center" and rank.cell(2, 2).alignment.horizontal == "center"
    assert rank.cell(2, head.index("等级") + 1).alignment.horizontal == "center"
    # 指标明细: 19 items and 2 一级指标 at 6 columns each, the headers wrapping onto lines of their own.
    items = book["指标明细"]
    widths = [col_widths(items)[n] for n in range(4, 4 + 19 + 2)]
    assert max(widths) <= 6.72 and items.row_dimensions[1].height >= 44
    # 说明: a wrapped text gets the rows it needs (neither Excel nor LibreOffice grows the row itself).
    about = book["说明"]
    row = next(r[0].row for r in about.iter_rows(max_col=1) if r[0].value == "取整规则")
    assert about.row_dimensions[row].height >= 2 * 14


def test_a_roster_that_cannot_be_read_is_the_error_even_while_the_ledger_is_read(workspace):
    """The roster is read in a thread beside the ledger: its problem is still the one reported,
    whether the ledger read succeeds or fails too, and nothing is written."""
    from pipeline.errors import InputError

    add_returns(workspace)
    roster = workspace / "input" / "roster.xlsx"
    roster.write_bytes(b"not a workbook")
    with pytest.raises(InputError, match="roster"):
        report(Workspace.open(workspace), "community", PERIOD)
    for ledger in (workspace / "ledger").glob("*.sqlite"):
        ledger.write_bytes(b"not a database either")
    with pytest.raises(InputError, match="roster"):
        report(Workspace.open(workspace), "community", PERIOD)
    assert not (workspace / "output" / PERIOD / "summary-community.xlsx").exists()
