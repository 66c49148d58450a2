"""The digest of a large round (more subjects than report.digest_full_max): the ranking as data
drawn by a small inline script, searchable, filterable and paged offline, printed whole; cards
only for the subjects worth a look; the page under 3 MB at national size (10,000 subjects)."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from chromium import Browser, find_chromium
from pipeline.config import defaults
from pipeline.digest import LAYOUT, card_choice, digest_context, fmt_num, render_digest
from pipeline.roster import Assessor, Roster, Subject
from pipeline.scoring import score_round
from pipeline.systems import load_system
from test_digest import EXTERNAL

PROVINCES = ["浙江省", "江苏省", "四川省", "北京市", "广东省", "云南省"]
XSS = "</script><script>alert(1)</script>"


def synthetic_round(n_subjects: int, n_raters: int = 4, seed: int = 3):
    """A scored round built directly (no workbooks): each subject rated by `n_raters` of
    n_subjects/5 assessors at a quality of its own, item scores on half points."""
    system = load_system("community")
    rng = np.random.default_rng(seed)
    n_assessors = max(n_raters, n_subjects // 5)
    subjects = {f"C{n:05d}": Subject(f"C{n:05d}", XSS if n == 7 else f"第{n}社区", system.subject_type,
                                     PROVINCES[n % len(PROVINCES)], "某市" if n % 2 else PROVINCES[n % len(PROVINCES)])
                for n in range(1, n_subjects + 1)}
    assessors = {f"E{n:04d}": Assessor(f"E{n:04d}", f"评估人{n}", "某大学") for n in range(1, n_assessors + 1)}
    codes = list(subjects)
    maxes = np.array([i.max for i in system.items])
    quality = rng.uniform(0.5, 0.97, n_subjects)
    frames = []
    for k in range(n_raters):
        noise = rng.uniform(-0.06, 0.06, (n_subjects, len(maxes)))
        score = np.clip(np.round((quality[:, None] + noise) * maxes * 2) / 2, 0, maxes)
        frames.append(pd.DataFrame({
            "subject": np.repeat(codes, len(maxes)),
            "assessor": np.repeat([f"E{(i * n_raters + k) % n_assessors + 1:04d}" for i in range(n_subjects)], len(maxes)),
            "item": np.tile([i.code for i in system.items], n_subjects),
            "score": score.ravel(),
        }))
    scores = pd.concat(frames, ignore_index=True)
    scores["remark"] = ""
    scores.loc[scores.index[:3], "remark"] = "资料不全"
    settings = defaults()
    settings["calibration"]["bootstrap"] = 100  # the page's layout does not depend on it
    result = score_round(scores, system, Roster(subjects, assessors), settings)
    return result, scores, Roster(subjects, assessors)


def digest_html(result, scores, roster, **layout) -> str:
    context = digest_context(result, period="2026-11", scores=scores, roster=roster, chase=[],
                             assigned=len(scores) // 19, received=len(scores) // 19, files=[],
                             generated=datetime(2026, 11, 30, 9, 0), layout={**LAYOUT, **layout})
    return render_digest(context)


def ranking_data(page: BeautifulSoup) -> dict:
    return json.loads(page.select_one("script#ranking-data").string)


@pytest.fixture(scope="module")
def national():
    result, scores, roster = synthetic_round(10_000)
    return result, digest_html(result, scores, roster)


@pytest.mark.slow
def test_national_digest_is_under_3_mb_and_holds_the_whole_ranking(national):
    result, html = national
    assert len(html.encode("utf-8")) < 3_000_000, len(html.encode("utf-8"))
    page = BeautifulSoup(html, "html.parser")
    data = ranking_data(page)
    subjects = result.subjects
    assert len(data["rows"]) == 10_000 and [r[1] for r in data["rows"]] == list(subjects["subject"])
    first, top = data["rows"][0], subjects.iloc[0]
    assert first[0] == str(int(top["rank"])) and first[4] == fmt_num(top["total"]) and first[5] == top["grade"]
    assert data["regions"][first[3]].startswith(top["province"]) and data["provinces"][first[-2]] == top["province"]
    assert first[6] == top["rank_label"] and first[8:15] == [fmt_num(top[n]) for n in result.system.level2_names]
    # Nothing is drawn in the HTML itself: the script draws the rows.
    assert page.select("#ranking-rows tr") == [] and page.select_one("#ranking-search") is not None
    assert sorted(o.get_text() for o in page.select("#ranking-province option")[1:]) == sorted(PROVINCES)
    # Offline: two scripts of its own (the data and the code), nothing fetched.
    assert [s.get("type") for s in page.find_all("script")] == ["application/json", None]
    assert not EXTERNAL.findall(html) and "http" not in page.find_all("script")[1].string
    # A name that tries to close the data's <script> stays data.
    assert XSS not in html and XSS in [r[2] for r in data["rows"]]


@pytest.mark.slow
def test_national_digest_cards_are_the_top_bottom_disputed_and_near_a_line(national):
    result, html = national
    page = BeautifulSoup(html, "html.parser")
    cards = page.select("#subjects article.card")
    rated = list(result.rated["subject"])
    shown = [c["id"].removeprefix("card-") for c in cards]
    assert 40 < len(shown) <= LAYOUT["digest_cards_max"]
    assert set(rated[:20]) | set(rated[-20:]) <= set(shown)
    assert shown == [code for code in rated if code in set(shown)]  # in ranking order
    totals = dict(zip(result.subjects["subject"], result.subjects["total"]))
    disputed = set(result.flags.loc[result.flags["kind"].isin(["total_range", "item_range", "few_assessors"]),
                                    "subject"])
    for card in cards:
        code, why = card["id"].removeprefix("card-"), card.select_one(".why").get_text()
        if "临近" in why:
            line = float(re.search(r"临近 (\d+) 分", why).group(1))
            assert abs(totals[code] - line) <= LAYOUT["digest_near_points"] + 1e-9
        elif why == "列出原因：争议":
            assert code in disputed
        else:
            assert why in ("列出原因：前 20 名", "列出原因：后 20 名")
    note = page.select_one("#cards-note").get_text()
    assert f"卡片只列出 {len(cards)} 个" in note and "本期共 10000 个对象" in note


def test_card_choice_keeps_its_priorities_and_its_limit():
    result, _, _ = synthetic_round(600, seed=5)
    why, more = card_choice(result, each=5, near_points=0.5, limit=30)
    codes = list(result.rated["subject"])
    assert len(why) == 30 and [why[c] for c in codes[:5]] == ["前 5 名"] * 5 and [why[c] for c in codes[-5:]] == ["后 5 名"] * 5
    totals = dict(zip(result.subjects["subject"], result.subjects["total"]))
    near = sorted(min(abs(t - line) for line in (60, 80, 90)) for c, t in totals.items() if c not in codes[:5] + codes[-5:])
    picked = sorted(min(abs(totals[c] - line) for line in (60, 80, 90)) for c, w in why.items() if w.startswith("临近"))
    assert picked == near[:len(picked)]  # the nearest to a line first
    n_near = sum(d <= 0.5 + 1e-9 for d in near)
    assert more["near"] == n_near - len(picked)
    everyone, rest = card_choice(result, each=5, near_points=0.5, limit=10_000)
    assert rest == {"disputed": 0, "near": 0} and len(everyone) >= 10 + n_near


def test_small_rounds_keep_the_plain_page_up_to_the_threshold():
    result, scores, roster = synthetic_round(40, seed=9)
    plain = BeautifulSoup(digest_html(result, scores, roster, digest_full_max=40), "html.parser")
    assert plain.find("script") is None and len(plain.select("#ranking-rows tr.subject-row")) == 40
    assert len(plain.select("article.card")) == 40 and plain.select_one(".card .why") is None
    paged = BeautifulSoup(digest_html(result, scores, roster, digest_full_max=39, digest_cards_each=3,
                                      digest_cards_max=10), "html.parser")
    assert paged.select("#ranking-rows tr") == [] and len(ranking_data(paged)["rows"]) == 40
    assert 6 <= len(paged.select("article.card")) <= 10


def visible(browser) -> list[list[str]]:
    return browser.evaluate("[...document.querySelectorAll('#ranking-rows tr')].map(tr => "
                            "[...tr.children].map(td => td.innerText))")


@pytest.mark.browser
def test_large_ranking_searches_filters_pages_and_prints_whole(tmp_path):
    binary = find_chromium()
    if not binary:
        pytest.skip("chromium is not installed")
    result, scores, roster = synthetic_round(650, seed=4)
    path = tmp_path / "digest.html"
    path.write_text(digest_html(result, scores, roster), encoding="utf-8")
    subjects = result.subjects
    with Browser(binary, tmp_path / "profile", width=1400, height=1000) as browser:
        browser.offline()
        browser.open(path.as_uri())
        rows = visible(browser)
        assert [r[1] for r in rows] == list(subjects["subject"][:100])
        assert rows[0][:6] == [str(int(subjects["rank"][0])), subjects["subject"][0], subjects["name"][0],
                               subjects["province"][0] + ("" if subjects["city"][0] == subjects["province"][0]
                                                          else " " + subjects["city"][0]),
                               fmt_num(subjects["total"][0]), subjects["grade"][0]]
        assert browser.evaluate("document.getElementById('ranking-page').innerText") == "第 1 / 7 页（每页 100 行）"
        browser.evaluate("document.getElementById('ranking-next').click()")
        assert [r[1] for r in visible(browser)] == list(subjects["subject"][100:200])
        browser.evaluate("document.getElementById('ranking-last').click()")
        assert [r[1] for r in visible(browser)] == list(subjects["subject"][600:])

        def type_in(text: str) -> None:
            browser.evaluate(f"(s => {{ s.value = {json.dumps(text)}; s.dispatchEvent(new Event('input')); }})"
                             "(document.getElementById('ranking-search'))")

        type_in("第12")  # by name: 第12社区, 第120社区 … 第129社区
        want = [c for c, n in zip(subjects["subject"], subjects["name"]) if "第12" in n]
        assert [r[1] for r in visible(browser)] == want and len(want) == 11
        assert browser.evaluate("document.getElementById('ranking-count').innerText") == "筛选出 11 个（共 650 个）"
        type_in("c0000")  # by code, any case
        assert [r[1] for r in visible(browser)] == [c for c in subjects["subject"] if "C0000" in c]
        type_in("<script>")  # the hostile name is found, and shown as text
        assert [r[2] for r in visible(browser)] == [XSS]
        type_in("")

        def choose(select: str, value: str) -> None:
            browser.evaluate(f"(s => {{ s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})"
                             f"(document.getElementById('{select}'))")

        choose("ranking-province", "四川省")
        choose("ranking-grade", "良好")
        want = subjects[(subjects["province"] == "四川省") & (subjects["grade"] == "良好")]["subject"]
        assert 0 < len(want) <= 100 and [r[1] for r in visible(browser)] == list(want)
        # Printing prints every row that matches (here: the filter), not just the page on screen.
        choose("ranking-grade", "")
        sichuan = list(subjects[subjects["province"] == "四川省"]["subject"])
        assert len(sichuan) > 100 and len(visible(browser)) == 100
        filtered_pdf = browser.pdf(tmp_path / "sichuan.pdf")
        assert len(visible(browser)) == 100  # and the screen's page is back afterwards
        choose("ranking-province", "")
        whole_pdf = browser.pdf(tmp_path / "whole.pdf")
        assert browser.failures() == [] and browser.console_errors() == []
        assert all(url.startswith("file://") for url in browser.requests())
    text = subprocess.run(["pdftotext", "-layout", str(whole_pdf), "-"], capture_output=True, text=True, check=True).stdout
    ranking = ranking_part(text)
    assert re.findall(r"C\d{5}", ranking) == list(subjects["subject"])
    assert "全部 650 个对象。" in ranking and "搜索" not in ranking and "下一页" not in ranking
    text = subprocess.run(["pdftotext", "-layout", str(filtered_pdf), "-"], capture_output=True, text=True, check=True).stdout
    ranking = ranking_part(text)
    assert re.findall(r"C\d{5}", ranking) == sichuan and f"按筛选条件打印 {len(sichuan)} 个对象（共 650 个）" in ranking


def ranking_part(text: str) -> str:
    """The printed ranking: from its heading (after the overview) to the next section's."""
    start = text.index("排名\n", text.index("各类指标得分率"))
    return text[start:text.index("评估对象", start)]


def test_layout_settings_are_checked(tmp_path):
    from pipeline.config import Workspace
    from pipeline.errors import ConfigError

    for line, name in (("digest_page_rows = 0", "digest_page_rows"), ("digest_cards_max = -1", "digest_cards_max"),
                       ("digest_near_points = -0.5", "digest_near_points")):
        (tmp_path / "happyhome.toml").write_text(f"[report]\n{line}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=f"report.{name}"):
            Workspace.open(tmp_path)
    (tmp_path / "happyhome.toml").write_text("[report]\ndigest_page_rows = 50\ndigest_near_points = 1\n", encoding="utf-8")
    assert Workspace.open(tmp_path)["report"]["digest_page_rows"] == 50
