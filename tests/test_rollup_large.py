"""The roll-up of a large programme (more subjects than report.digest_full_max): its heatmap is
the digest's paged, searchable, filterable table (the same partial and script), printed whole;
the page stays under 3 MB at national size. And `--pdf` at that size: the browser's time limit
([report] pdf_timeout, or by the page's size) and the untagged print of a large page."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from chromium import Browser, find_chromium
from pipeline import pdf
from pipeline.config import Workspace
from pipeline.errors import ConfigError
from pipeline.rollup import NO_DATA, compute_rollup, render_rollup
from pipeline.roster import write_roster
from test_digest import EXTERNAL
from test_digest_large import PROVINCES, XSS, synthetic_round
from test_pdf import FAKE, executable
from test_rollup import TOTALS, _fill
from tests.conftest import ASSESSORS, PAIRS, SUBJECTS, run

HOSTILE = "南湖<script>alert(1)</script>社区"


def settings(workspace: Path, **values) -> None:
    """Set [report] values in the workspace's happyhome.toml (each is there already)."""
    toml = workspace / "happyhome.toml"
    text = toml.read_text(encoding="utf-8")
    for name, value in values.items():
        text, n = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value}", text)
        assert n == 1, name
    toml.write_text(text, encoding="utf-8")


def table_data(page: BeautifulSoup) -> dict:
    return json.loads(page.select_one("script#ranking-data").string)


# -- the small case of test_rollup, above a threshold set low -------------------------------
def test_a_rollup_above_the_threshold_is_the_paged_table_with_every_subject_once(workspace):
    subjects = [s if s[0] != "C003" else (s[0], HOSTILE, *s[2:]) for s in SUBJECTS]
    write_roster(workspace / "input" / "roster.xlsx", subjects, ASSESSORS, PAIRS)
    _fill(workspace)
    settings(workspace, digest_full_max=2, digest_page_rows=2, digest_flags_max=1)
    run(workspace, "rollup", "--system", "community", "--to", "2027-01")
    html = (workspace / "output" / "rollup" / "rollup-community-2026-09_2027-01.html").read_text(encoding="utf-8")
    page = BeautifulSoup(html, "html.parser")
    data = table_data(page)
    # Nothing drawn in the HTML: the script draws the rows, ordered by the latest month's rank
    # (2026-12: C003 90, C001 80, C002 79), every subject once.
    assert page.select("#heat-rows tr") == [] and page.select_one("#ranking-search") is not None
    rows = data["rows"]
    assert [r[0] for r in rows] == ["C003", "C001", "C002"] and data["body"] == "heat-rows"
    months = ["2026-09", "2026-10", "2026-11", "2026-12", "2027-01"]
    for r in rows:  # the totals by month, hand-computed in test_rollup; None where there is none
        assert r[2] == [TOTALS[r[0]].get(m) for m in months]
    assert [c[0] for c in data["columns"][2:7]] == ["heat", "heat", "nodata", "heat", "nodata"]
    assert rows[1][5] == "2" and rows[1][7] == "良好" and rows[0][7] == "优秀"  # 最新排名, 最新等级
    assert rows[2][4] is None  # 较上月: 2026-11 has no data
    assert [data["provinces"][r[8]] for r in rows] == ["湖北省", "浙江省", "四川省"]
    assert sorted(o.get_text() for o in page.select("#ranking-province option")[1:]) == sorted(["四川省", "湖北省", "浙江省"])
    assert [o["value"] for o in page.select("#ranking-grade option")][1:] == ["优秀", "良好", "合格"]  # C003 90, C001 80, C002 79
    # 标记: C001 fell 7 points in 2026-10, C003 was not rated then; one row listed, the other counted.
    assert {r[0]: r[9] for r in rows} == {"C001": "下降", "C003": "未评", "C002": ""}
    assert len(page.select("#flags tbody tr")) == 1
    assert "另有 1 条未列出" in page.select_one("#flags-note").get_text()
    assert [t.get_text() for t in page.select("#headline .tile .value")][1:] == ["3", "1 次", "1 次"]
    # The hostile name is data, never markup; the page fetches nothing.
    assert HOSTILE not in html and rows[0][1] == HOSTILE
    assert [s.get("type") for s in page.find_all("script")] == ["application/json", None]
    assert not EXTERNAL.findall(html) and "http" not in page.find_all("script")[1].string
    # The same partial as the digest's ranking: the same tools, the same script.
    digest_script = (Path(__file__).parents[1] / "templates" / "_ranking_paged.html").read_text(encoding="utf-8")
    assert "function drawForPrint(list)" in page.find_all("script")[1].string
    assert page.find_all("script")[1].string.strip() in digest_script.replace("{{ table.page_rows | int }}", "2")


def test_at_the_threshold_the_rollup_is_the_plain_page(workspace):
    _fill(workspace)
    settings(workspace, digest_full_max=3)
    run(workspace, "rollup", "--system", "community")
    page = BeautifulSoup((workspace / "output" / "rollup" / "rollup-community-2026-09_2026-12.html")
                         .read_text(encoding="utf-8"), "html.parser")
    assert page.find("script") is None and len(page.select("#heat-rows tr.subject-row")) == 3


# -- national size ------------------------------------------------------------------------
class Months:
    """A ledger of the same synthetic round in every month, each month's scores moved by its own
    seeded noise (±1 point on a quarter of them)."""

    def __init__(self, scores: pd.DataFrame, system, months: list[str]):
        self.scores, self.maxes, self.months = scores, scores["item"].map({i.code: i.max for i in system.items}), months

    def round_keys(self, system: str) -> list[str]:
        return self.months

    def accepted_scores(self, key: str, system: str) -> pd.DataFrame:
        rng = np.random.default_rng(self.months.index(key))
        out = self.scores.copy()
        hit = rng.random(len(out)) < 0.25
        out.loc[hit, "score"] = np.clip(out.loc[hit, "score"] + rng.choice([-1.0, 1.0], hit.sum()), 0, self.maxes[hit])
        return out

    def sheets(self, key: str, system: str) -> pd.DataFrame:
        return pd.DataFrame(columns=["assessor", "subject", "status", "received_at"])


def synthetic_rollup(workspace: Path, n_subjects: int, months: list[str], seed: int = 3):
    result, scores, roster = synthetic_round(n_subjects, seed=seed)
    pairs = list(zip(scores["assessor"], scores["subject"]))
    roster.pairs = list(dict.fromkeys(pairs))
    ws = Workspace.open(workspace)
    return compute_rollup(ws, result.system, roster, Months(scores, result.system, months)), ws


@pytest.mark.slow
def test_a_national_rollup_of_three_months_is_under_3_mb_and_holds_every_subject(workspace):
    result, ws = synthetic_rollup(workspace, 10_000, ["2026-09", "2026-10", "2026-11"])
    html = render_rollup(result, "幸福家园行动项目办公室", layout=ws["report"])
    assert len(html.encode("utf-8")) < 3_000_000, len(html.encode("utf-8"))
    page = BeautifulSoup(html, "html.parser")
    data = table_data(page)
    assert [r[0] for r in data["rows"]] == list(result.subjects["subject"]) and len(data["rows"]) == 10_000
    first = result.subjects.iloc[0]
    assert data["rows"][0][2] == [result.wide("total").at[first["subject"], p] for p in result.periods]
    assert data["rows"][0][5] == "1" and XSS in [r[1] for r in data["rows"]] and XSS not in html
    assert page.select("#heat-rows tr") == []


def visible(browser) -> list[list[str]]:
    return browser.evaluate("[...document.querySelectorAll('#heat-rows tr')].map(tr => "
                            "[...tr.children].map(td => td.innerText))")


@pytest.mark.browser
def test_a_large_rollup_searches_filters_pages_and_prints_whole(workspace, tmp_path):
    binary = find_chromium()
    if not binary:
        pytest.skip("chromium is not installed")
    result, ws = synthetic_rollup(workspace, 650, ["2026-10", "2026-11"], seed=4)
    path = tmp_path / "rollup.html"
    path.write_text(render_rollup(result, layout=ws["report"]), encoding="utf-8")
    subjects, totals = result.subjects, result.wide("total")
    with Browser(binary, tmp_path / "profile", width=1400, height=1000) as browser:
        browser.offline()
        browser.open(path.as_uri())
        rows = visible(browser)
        assert [r[0] for r in rows] == list(subjects["subject"][:100])
        code = rows[0][0]
        assert rows[0][:4] == [code, subjects["name"][0], f"{totals.at[code, '2026-10']:.2f}",
                               f"{totals.at[code, '2026-11']:.2f}"]
        for shown, s in zip(rows, subjects.head(100).to_dict("records")):
            move = s["latest_move"]
            assert shown[5:] == [f"{s['latest_delta']:+.2f}", str(int(s["latest_rank"])),
                                 "–" if move == 0 else f"↑{int(move)}" if move > 0 else f"↓{int(-move)}", s["latest_grade"]]
        assert browser.evaluate("document.querySelectorAll('#heat-rows svg.spark polyline').length") == 100
        assert browser.evaluate("document.getElementById('ranking-page').innerText") == "第 1 / 7 页（每页 100 行）"
        browser.evaluate("document.getElementById('ranking-last').click()")
        assert [r[0] for r in visible(browser)] == list(subjects["subject"][600:])

        def set_value(element: str, value: str, event: str) -> None:
            browser.evaluate(f"(s => {{ s.value = {json.dumps(value)}; s.dispatchEvent(new Event('{event}')); }})"
                             f"(document.getElementById('{element}'))")

        set_value("ranking-search", "<script>", "input")
        assert [r[1] for r in visible(browser)] == [XSS]
        set_value("ranking-search", "", "input")
        set_value("ranking-province", "四川省", "change")
        set_value("ranking-grade", "良好", "change")
        want = subjects[(subjects["province"] == "四川省") & (subjects["latest_grade"] == "良好")]["subject"]
        assert 0 < len(want) <= 100 and [r[0] for r in visible(browser)] == list(want)
        set_value("ranking-grade", "", "change")
        set_value("ranking-province", "", "change")
        browser.screenshot(tmp_path / "rollup.png", full_page=False)
        whole_pdf = browser.pdf(tmp_path / "whole.pdf")
        assert len(visible(browser)) == 100  # the screen's page is back after printing
        assert browser.evaluate("document.querySelectorAll('table.heat').length") == 1
        assert browser.failures() == [] and browser.console_errors() == []
        assert all(url.startswith("file://") for url in browser.requests())
    text = subprocess.run(["pdftotext", "-layout", str(whole_pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    heat = text[:text.index("进步与退步最多的对象")]
    assert re.findall(r"C\d{5}", heat) == list(subjects["subject"])  # every subject once, in order
    assert "全部 650 个对象。" in heat and "搜索" not in heat and "下一页" not in heat
    # The header on every page of the heatmap (it runs over several), and once more where the
    # second printed table (rows 401-650) starts.
    pages = [p for p in heat.split("\f") if re.search(r"C\d{5}", p)]
    assert len(pages) > 5 and all(re.search(r"编号\s+名称\s+2026-10\s+2026-11", p) for p in pages)


def test_the_threshold_is_the_digests(workspace):
    result, ws = synthetic_rollup(workspace, 40, ["2026-11"], seed=9)
    plain = BeautifulSoup(render_rollup(result, layout={**ws["report"], "digest_full_max": 40}), "html.parser")
    assert plain.find("script") is None and len(plain.select("#heat-rows tr.subject-row")) == 40
    paged = BeautifulSoup(render_rollup(result, layout={**ws["report"], "digest_full_max": 39}), "html.parser")
    assert paged.select("#heat-rows tr") == [] and len(table_data(paged)["rows"]) == 40
    assert "本期" not in paged.select_one("noscript").get_text() and ".xlsx" in paged.select_one("noscript").get_text()


# -- the PDF's time limit -------------------------------------------------------------------
def test_the_browser_gets_the_setting_or_time_by_the_pages_size(tmp_path):
    html = tmp_path / "page.html"
    html.write_bytes(b"x" * 2_000_000)
    assert pdf.timeout_for(html) == pytest.approx(pdf.TIMEOUT + 2 * pdf.PER_MB) == pytest.approx(420)
    assert pdf.timeout_for(html, 45) == 45
    html.write_bytes(b"<p>x</p>")
    assert pdf.timeout_for(html) == pytest.approx(120, abs=0.01)


def test_pdf_timeout_is_checked(tmp_path):
    for value in ("-1", '"soon"', "true"):
        (tmp_path / "happyhome.toml").write_text(f"[report]\npdf_timeout = {value}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match="report.pdf_timeout"):
            Workspace.open(tmp_path)
    (tmp_path / "happyhome.toml").write_text("[report]\npdf_timeout = 2.5\n", encoding="utf-8")
    assert Workspace.open(tmp_path)["report"]["pdf_timeout"] == 2.5
    (tmp_path / "happyhome.toml").write_text("", encoding="utf-8")
    assert Workspace.open(tmp_path)["report"]["pdf_timeout"] == 0  # the shipped default


@pytest.mark.skipif(sys.platform == "win32", reason="fake browsers are shell scripts")
def test_rollup_pdf_stops_the_browser_at_pdf_timeout(workspace, tmp_path, monkeypatch):
    _fill(workspace)
    slow = executable(tmp_path / "bin" / "chromium", "#!/bin/sh\nsleep 30\n")
    monkeypatch.setenv(pdf.ENV, str(slow))
    settings(workspace, pdf_timeout=1)
    started = time.monotonic()
    out = run(workspace, "rollup", "--system", "community", "--pdf")
    assert time.monotonic() - started < 20
    assert not (workspace / "output" / "rollup" / "rollup-community-2026-09_2026-12.pdf").exists()
    assert re.search(r"在 1 秒内没有打印完|within 1 seconds", out.output), out.output


@pytest.mark.skipif(sys.platform == "win32", reason="fake browsers are shell scripts")
def test_a_large_page_is_printed_untagged_a_small_one_tagged(workspace, tmp_path, monkeypatch):
    _fill(workspace)
    fake = executable(tmp_path / "bin" / "chromium", FAKE)
    monkeypatch.setenv(pdf.ENV, str(fake))
    args = tmp_path / "bin" / "args.txt"
    run(workspace, "rollup", "--system", "community", "--pdf")
    assert "--disable-pdf-tagging" not in args.read_text(encoding="utf-8").splitlines()
    settings(workspace, digest_full_max=2)
    run(workspace, "rollup", "--system", "community", "--pdf")
    assert "--disable-pdf-tagging" in args.read_text(encoding="utf-8").splitlines()
    assert (workspace / "output" / "rollup" / "rollup-community-2026-09_2026-12.pdf").read_bytes().startswith(b"%PDF")
