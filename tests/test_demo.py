"""`happyhome demo`: the synthetic programme, its faulty returns, and the whole job end to end."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from pipeline.config import Workspace
from pipeline.demo import (BLANK_SCORE, FULL, LAST_MONTHS_FORM, MARKER, OUT_OF_RANGE, SMALL, build_demo, make_data,
                           months_ending, plan_rounds)
from pipeline.ledger import Ledger
from pipeline.roster import read_roster
from pipeline.status import NOT_RECEIVED, REJECTED, round_status
from pipeline.systems import load_system
from tests.chromium import Browser, find_chromium
from tests.conftest import run


def test_full_size_programme_shape():
    data = make_data(FULL)
    zones = [s for s in data.subjects if s[2] == "创新实践区"]
    communities = [s for s in data.subjects if s[2] == "创新实践社区"]
    assert [s[0] for s in zones] == [f"Z{n:02d}" for n in range(1, 31)]
    assert [s[0] for s in communities] == [f"C{n:03d}" for n in range(1, 101)]
    assert len({s[1] for s in data.subjects}) == 130  # names unique
    assert all(s[3] and s[4] and s[5] for s in data.subjects)  # every subject has a province, city and district
    assert [a[0] for a in data.assessors] == [f"E{n:02d}" for n in range(1, 13)]
    assert all(a[2] and a[3] for a in data.assessors)  # 单位 and 联系方式
    raters = Counter(s for _, s in data.pairs)
    assert all(raters[z[0]] == 5 for z in zones)
    assert all(3 <= raters[c[0]] <= 5 for c in communities)
    # the 分配 is made by `assign` (K = 4 per community): loads within one in each system
    assert all(raters[c[0]] == 4 for c in communities)
    for kind in ("创新实践区", "创新实践社区"):
        mine = {s[0] for s in data.subjects if s[2] == kind}
        loads = Counter(a for a, s in data.pairs if s in mine)
        assert len(loads) == 12 and max(loads.values()) - min(loads.values()) <= 1
    assert len(set(data.pairs)) == len(data.pairs)
    assert data.periods == ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]
    assert months_ending("2027-02", 3) == ["2026-12", "2027-01", "2027-02"]
    assert make_data(FULL) == data  # seeded
    assert make_data(FULL, seed=1).quality != data.quality


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "demo"
    out = run(root.parent, "demo", str(root), "--small")
    assert "最新简报" in out.output and "汇总" in out.output and "演示中特意放入的问题回执" in out.output
    assert "遴选结果" in out.output and "验收结果" in out.output
    assert str(root / "output" / "2026-11" / "digest-community.html") in out.output.replace("\n", "")
    return root


def _returned(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "input" / "returned").rglob("*")) if p.is_file()}


def test_demo_outputs_exist_and_read_back(small_demo):
    root = small_demo
    ws = Workspace.open(root)
    roster = read_roster(ws.path("roster"))
    assert len(roster.subjects) == SMALL.zones + SMALL.communities and len(roster.assessors) == SMALL.assessors
    for period in ("2026-10", "2026-11"):
        for system in ("zone", "community"):
            summary = root / "output" / period / f"summary-{system}.xlsx"
            ranking = pd.read_excel(summary, sheet_name="排名", engine="openpyxl")
            assert len(ranking) == (SMALL.zones if system == "zone" else SMALL.communities)
            assert ranking["总分"].dropna().between(0, 100).all() and ranking["总分"].notna().sum() >= len(ranking) - 1
            assert (root / "output" / period / f"digest-{system}.html").is_file()
            assert list((root / "output" / "forms" / period / system).glob("*.xlsx"))
    plan = plan_rounds(ws, make_data(SMALL), roster, [load_system("zone"), load_system("community")])
    [postponed] = plan[0].postponed  # one community's October visit: every assessor left it blank
    for system in ("zone", "community"):
        book = openpyxl.load_workbook(root / "output" / "rollup" / f"rollup-{system}-2026-10_2026-11.xlsx")
        totals = list(book["总分"].iter_rows(min_row=2, values_only=True))
        assert len(totals) == (SMALL.zones if system == "zone" else SMALL.communities)
        unrated = {r[0] for r in totals if r[4] is None}
        assert unrated == ({postponed} if system == "community" else set())
        assert all(isinstance(r[5], (int, float)) for r in totals)  # November: everyone rated
        flags = [(r[0], r[2], r[3]) for r in book["标记"].iter_rows(min_row=2, values_only=True) if r[3] == "未评"]
        assert flags == ([(postponed, "2026-10", "未评")] if system == "community" else [])
    assert (root / MARKER).is_file()
    # November: the communities' self-assessments, compared with the experts' scores
    own = list((root / "output" / "forms" / "2026-11" / "community" / "自评").glob("*.xlsx"))
    assert len(own) == SMALL.communities
    book = openpyxl.load_workbook(root / "output" / "2026-11" / "summary-community.xlsx", read_only=True)
    rows = list(book["自评对比"].iter_rows(min_row=2, values_only=True))
    assert 0 < len(rows) < SMALL.communities and all(r[2] is not None and r[3] is not None for r in rows)
    assert "自评与核定" in (root / "output" / "2026-11" / "digest-community.html").read_text(encoding="utf-8")
    assert "自评对比" not in openpyxl.load_workbook(root / "output" / "2026-10" / "summary-community.xlsx",
                                                 read_only=True).sheetnames


def test_demo_selection_round(small_demo):
    # the month before the monthly rounds, the communities' 遴选: more candidates than places,
    # a provincial quota that makes a reserve, and a community vetoed in the roster
    folder = small_demo / "output" / "2026-09-遴选"
    table = pd.read_excel(folder / "summary-community.xlsx", sheet_name="遴选结果", engine="openpyxl",
                          nrows=SMALL.communities)
    assert list(table.columns) == ["排名", "编号", "名称", "省份", "城市", "区县", "总分", "结果", "说明"]
    counts = table["结果"].value_counts().to_dict()
    assert counts["入选"] == SMALL.communities * 4 // 5 and counts["候补"] >= 1 and counts["否决"] >= 1
    assert table.loc[table["编号"] == "C003", "说明"].item() == "一票否决：发生重大安全责任事故（示例）"
    assert (folder / "公示名单-community.docx").is_file() and (folder / "公示名单-community.xlsx").is_file()
    assert not list((small_demo / "output" / "2026-10").glob("公示名单-*"))  # monthly rounds as before


def test_demo_ends_with_an_acceptance_round_of_the_zones(small_demo):
    folder = small_demo / "output" / "2026-12-验收"
    results = pd.read_excel(folder / "summary-zone.xlsx", sheet_name="验收结果", engine="openpyxl")
    assert len(results) == SMALL.zones
    assert set(results["结果"]) == {"通过", "整改后复验", "不通过"}  # every band shows
    not_passed = results[results["结果"] != "通过"]
    notices = sorted(p.name for p in (folder / "整改通知").glob("*.docx"))
    assert notices == sorted(f"{r.编号}-{r.名称}.docx" for r in not_passed.itertuples())
    listed = pd.read_excel(folder / "整改清单-zone.xlsx", engine="openpyxl")
    listed = listed[listed["编号"].astype(str).str.fullmatch(r"Z\d+")]  # the table, not the note below it
    assert set(listed["编号"]) == set(not_passed["编号"]) and listed["指标编号"].notna().any()
    assert listed["评估人意见"].notna().any()  # the assessors' remarks on weak items come along
    assert "验收结果" in (folder / "digest-zone.html").read_text(encoding="utf-8")
    # the monthly outputs are those of the 督导 rounds only
    assert not (small_demo / "output" / "2026-12").exists()
    assert (small_demo / "output" / "rollup" / "rollup-zone-2026-10_2026-11.xlsx").is_file()


def test_demo_faults_are_caught(small_demo):
    root = small_demo
    ws = Workspace.open(root)
    roster = read_roster(ws.path("roster"))
    with Ledger(ws.path("ledger")) as ledger:
        problems = ledger.problems("2026-11", "community")
        codes = set(problems["code"])
        assert {"out_of_range", "blank_score", "not_spreadsheet"} <= codes, codes
        sheets = ledger.sheets("2026-11", "community")
        # the corrected resubmission: its fixed sheet counts and marks the first file's errors 已更正; its other
        # sheets repeat the first file's scores, so they are one submission, not replacements
        assert (sheets["status"] == "duplicate").any() and not (sheets["status"] == "superseded").any()
        fixed = problems[problems["code"] == "out_of_range"]
        assert fixed["resolved_by"].notna().sum() == 1 and fixed["resolved_by"].isna().sum() == 1
        assert set(ledger.periods("community")) == {"2026-09-遴选", "2026-10", "2026-11"}
        status = round_status(ws, load_system("community"), "2026-11", roster, ledger)
    # exactly what the plan left out: one assessor's whole file, the out-of-range sheet and the blank one
    plan = plan_rounds(ws, make_data(SMALL), roster, [load_system("zone"), load_system("community")])[-1]
    [(_, absent)] = plan.missing
    expected = {(absent, s, NOT_RECEIVED) for s in roster.assignments("创新实践社区")[absent]}
    for r in plan.returns:
        if r.note in (OUT_OF_RANGE, BLANK_SCORE) and r.spec.system.id == "community":
            subject = r.spec.subjects[0 if r.note == OUT_OF_RANGE else -1].code
            expected.add((r.spec.assessor.code, subject, REJECTED))
    got = {(a.code, m.subject, m.reason) for a in status.assessors for m in a.missing}
    assert got == expected and len(expected) > 2
    # last month's form filled with this month's scores: not counted, and the collection report says why
    [wrong] = [r for r in plan.returns if r.note == LAST_MONTHS_FORM]
    assert wrong.path.name.startswith("2026-10_community_")
    report = openpyxl.load_workbook(root / "output" / "2026-11" / "collection-community.xlsx")
    cells = [str(v) for sheet in report.worksheets for row in sheet.iter_rows(values_only=True) for v in row if v]
    assert wrong.path.name in cells
    assert any("这是 2026-10 期的评分表" in c for c in cells)


def test_status_export_on_the_demo(small_demo, tmp_path):
    out = tmp_path / "chase.xlsx"
    run(small_demo, "status", "--system", "community", "--period", "2026-11", "--export", str(out))
    rows = list(openpyxl.load_workbook(out).active.iter_rows(values_only=True))
    assert rows[0][:8] == ("评估人编号", "姓名", "单位", "联系方式", "评估对象编号", "名称", "期次", "截止日期")
    assert len(rows) > 3 and all(r[6] == "2026-11" for r in rows[1:])


@pytest.mark.browser
def test_demo_html_renders_in_headless_chromium(small_demo, tmp_path):
    binary = find_chromium()
    if not binary:
        pytest.skip("chromium is not installed")
    pages = {
        "digest": (small_demo / "output" / "2026-11" / "digest-community.html", "#ranking-rows > tr"),
        "rollup": (small_demo / "output" / "rollup" / "rollup-community-2026-10_2026-11.html", "#heat-rows > tr"),
    }
    with Browser(binary, tmp_path / "profile") as browser:
        browser.offline()
        for name, (page, rows) in pages.items():
            browser.open(page.as_uri())
            assert browser.evaluate(f"document.querySelectorAll('{rows}').length") == SMALL.communities, name
            assert browser.evaluate("document.scripts.length") == 0
            assert browser.failures() == [] and browser.console_errors() == [], name
            assert all(url.startswith("file://") for url in browser.requests()), browser.requests()
            shot = browser.screenshot(tmp_path / f"{name}.png")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
            print(f"screenshot: {shot}")
        browser.open(pages["rollup"][0].as_uri())
        assert browser.evaluate("document.querySelectorAll('#trend-chart svg, #level2-chart svg').length") == 2


def test_demo_is_deterministic_and_rebuilds_only_its_own_folder(small_demo, tmp_path):
    before = _returned(small_demo)
    again = tmp_path / "again"
    build_demo(again, SMALL)
    assert _returned(again) == before  # same seed, same bytes
    build_demo(again, SMALL)  # a previous demo is cleared and rebuilt
    assert _returned(again) == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    out = run(tmp_path, "demo", str(other), "--small", expect=2)
    assert "不是空文件夹" in out.output and (other / "notes.txt").read_text() == "keep me"
