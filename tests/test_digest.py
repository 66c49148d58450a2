"""The HTML digest: parsed, opened in headless Chromium with the network cut, and installed from a wheel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from chromium import Browser, find_chromium
from pipeline.config import Workspace
from pipeline.digest import environment, fmt_num, fmt_pct, template_dirs
from pipeline.report import report
from test_report import PERIOD, SHARES, add_returns

ROOT = Path(__file__).resolve().parent.parent
XSS = "<script>alert(1)</script>"
EXTERNAL = re.compile(r"""(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*(?!#|data:)[a-z][a-z0-9+.-]*:""", re.I)


@pytest.fixture
def digest(workspace) -> Path:
    add_returns(workspace)
    return report(Workspace.open(workspace), "community", PERIOD).digest


def soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def test_digest_content(digest):
    page = soup(digest)
    rows = page.select("tbody#ranking-rows > tr.subject-row")
    assert [r["data-subject"] for r in rows] == ["C001", "C002", "C003"]
    first = [td.get_text(strip=True) for td in rows[0].find_all("td")]
    assert first[:6] == ["1", "C001", "湖滨街道东坡路社区", "浙江省 杭州市", "90.00", "优秀"]
    tiles = {t.select_one(".label").get_text(strip=True): t.select_one(".value").get_text(" ", strip=True)
             for t in page.select("#headline .tile")}
    assert tiles["已评对象"] == "3 / 3"
    # Sheets and files apart: 8 of 9 subject sheets (E03 has not returned C003), from 3 files.
    assert tiles["已收工作表 / 应收"] == "8 / 9" and tiles["收到文件"] == "3 份，计入 3 份"
    assert page.select_one("#sources").get_text().startswith("计入评分的 3 个文件（本期共收到 3 个")
    assert tiles["平均总分"] == "76.67"
    # Category averages as a share of 满分: every subject scores each item at one share, so the mean share is 76.7%.
    shares = [tr.find_all("td")[-1].get_text() for tr in page.select("#categories table tbody tr")]
    assert shares == ["76.7%"] * 7
    assert page.select_one("#category-chart svg") is not None and page.select_one("#grade-chart svg") is not None
    # Cards: total, grade, rank, strongest/weakest items and remarks.
    card = page.select_one("#card-C001")
    assert "90.00" in card.get_text() and "第1名" in card.get_text() and "90.0%" in card.get_text()
    # The chase list names the missing return; the method note reads the agreement in Chinese.
    chase = page.select_one("#chase").get_text()
    assert "王芳" in chase and "南湖街道南湖社区（C003）" in chase
    assert "一致性" in page.select_one("#agreement").get_text()
    assert "平均" in page.select_one("#method").get_text()
    people = {tr.find_all("td")[0].get_text(): [td.get_text() for td in tr.find_all("td")] for tr in page.select("#assessors tbody tr")}
    assert people["E02"][1:6] == ["李强", "四川大学", "3", "3", "9.17"]  # (7.5 + 0 + 20) / 3
    flags = page.select_one("#flags").get_text()
    assert "C003" in flags and "总分分歧" in flags
    # The ranking names the kind of flag; the message is in 争议 (and the cell's title).
    c003 = page.select_one('tr.subject-row[data-subject="C003"] td.flagkinds')
    assert c003.get_text(strip=True) == "总分分歧、临界" and "评估人总分相差 20.00 分" in c003["title"]


def test_agreement_note_and_flags_section_agree(workspace):
    """A high alpha over all subjects must not read as 'no problems' beside a list of disputes."""
    add_returns(workspace)
    page = soup(report(Workspace.open(workspace), "community", PERIOD).digest)
    summary = page.select_one("#flags-summary").get_text()
    note = page.select_one("#agreement").get_text()
    kinds = [tr.find_all("td")[2].get_text() for tr in page.select("#flags tbody tr")]
    for kind in sorted(set(kinds)):
        subjects = {tr.find_all("td")[0].get_text() for tr in page.select("#flags tbody tr")
                    if tr.find_all("td")[2].get_text() == kind}
        assert f"{kind} {len(subjects)} 个对象" in summary and f"{kind} {len(subjects)} 个对象" in note
    assert f"共 {len(kinds)} 条提示" in summary and "见“争议与提示”" in note


def test_agreement_note_without_flags_says_so(workspace):
    shares = {"C001": {"E01": 0.90, "E02": 0.91}, "C002": {"E01": 0.70, "E02": 0.71}, "C003": {"E01": 0.80, "E02": 0.80}}
    add_returns(workspace, shares=shares, remarks={})
    page = soup(report(Workspace.open(workspace), "community", PERIOD).digest)
    assert page.select_one("#flags-summary") is None and "没有需要提示的分歧" in page.select_one("#flags").get_text()
    assert "本期没有需要提示的分歧或临界对象" in page.select_one("#agreement").get_text()


def test_digest_escapes_and_is_self_contained(digest):
    html = digest.read_text(encoding="utf-8")
    page = BeautifulSoup(html, "html.parser")
    assert page.find("script") is None  # the remark's script is text, not an element
    assert XSS in page.select_one("#card-C001").get_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not page.find_all("link") and not page.find_all("img") and not page.find_all("iframe")
    assert not EXTERNAL.findall(html), EXTERNAL.findall(html)
    assert "@import" not in html and not re.search(r"url\(\s*['\"]?(?!#|data:)", html)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert "@media print" in html and "size: A4" in html


def test_unrated_subjects_are_listed_not_ranked(workspace):
    add_returns(workspace, shares={k: v for k, v in SHARES.items() if k != "C003"})
    page = soup(report(Workspace.open(workspace), "community", PERIOD).digest)
    rows = page.select("#ranking-rows tr")
    assert [r["data-subject"] for r in rows] == ["C001", "C002", "C003"]
    last = [td.get_text(strip=True) for td in rows[-1].find_all("td")]
    assert last[0] == "—" and last[4] == "—" and last[5] == "未评"
    assert "南湖街道南湖社区（C003）" in page.select_one("#unrated").get_text()
    assert page.select_one("#card-C003") is None


def test_environment_is_shared_and_escapes():
    env = environment()
    assert env is environment() and env.autoescape is True
    assert {"num", "pct", "int0"} <= set(env.filters)
    assert template_dirs()[-1] == ROOT / "templates" or (template_dirs()[0] / "digest.html").is_file()
    assert fmt_num(float("nan")) == "—" and fmt_num(3.14159) == "3.14" and fmt_pct(0.5) == "50.0%"
    out = env.from_string("{{ x }}").render(x=XSS)
    assert out == "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.mark.browser
def test_digest_in_headless_chromium(workspace, tmp_path):
    binary = find_chromium()
    if not binary:
        pytest.skip("chromium is not installed")
    add_returns(workspace)
    digest = report(Workspace.open(workspace), "community", PERIOD, calibrate=True).digest
    shot = tmp_path / "digest.png"
    with Browser(binary, tmp_path / "profile") as browser:
        browser.offline()  # any request off this machine would fail and be recorded
        browser.open(digest.as_uri())
        assert browser.evaluate("document.querySelectorAll('#ranking-rows > tr').length") == 3
        assert browser.evaluate("document.scripts.length") == 0
        assert XSS in browser.evaluate("document.getElementById('card-C001').innerText")
        # The Chinese actually laid out: the page title text has width (a missing font still has
        # width, so also check the heading uses a CJK font family).
        assert browser.evaluate("document.querySelector('h1').getBoundingClientRect().width") > 200
        assert "Noto Sans CJK SC" in browser.evaluate("getComputedStyle(document.body).fontFamily")
        assert browser.failures() == []
        assert browser.console_errors() == []
        assert all(url.startswith("file://") for url in browser.requests()), browser.requests()
        browser.screenshot(shot)
        pdf = browser.pdf(tmp_path / "digest.pdf")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    # Printed on A4 (595 x 842 points) by the page's own @page rules: portrait, and landscape for the ranking.
    boxes = [tuple(sorted((round(float(w)), round(float(h))))) + (float(w) > float(h),)
             for w, h in re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf.read_bytes())]
    assert boxes and all(b[:2] == (595, 842) for b in boxes), boxes
    assert any(b[2] for b in boxes) and not all(b[2] for b in boxes)
    print(f"screenshot: {shot}")


def dependency_paths() -> list[str]:
    """The site-packages this test runs with: where the wheel's dependencies are found."""
    return [p for p in sys.path if Path(p).name == "site-packages" and Path(p).is_dir()]


@pytest.mark.slow
def test_wheel_ships_templates(workspace, tmp_path):
    """Build the wheel, install it (not editable) into a fresh venv, and render a digest from it.

    The venv sees no other site-packages: one that includes the system's, made inside a venv,
    sees the base interpreter's packages, not ours, so the result would depend on what the base
    Python happens to have. Its dependencies come from this test's own site-packages, added by a .pth
    file after the venv's own, so the installed wheel is what `import pipeline` finds.
    """
    import hatchling  # noqa: F401  (a test extra: the wheel is built offline with it)

    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next(wheels.glob("happyhome-*.whl"))
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    assert {"pipeline/templates/base.html", "pipeline/templates/digest.html", "pipeline/templates/_partials.html"} <= set(names)
    assert "pipeline/templates/letter.txt" in names  # status --letters
    assert "pipeline/locale/zh_CN/LC_MESSAGES/happyhome.mo" in names  # the terminal's Chinese

    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=False, with_pip=False)
    python = env_dir / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "happyhome-test-deps.pth").write_text("\n".join(dependency_paths()) + "\n", encoding="utf-8")

    add_returns(workspace)
    script = textwrap.dedent(f"""
        import sys, pipeline, pipeline.digest as d
        from pipeline.config import Workspace
        from pipeline.report import report
        assert sys.prefix == {str(env_dir)!r}, sys.prefix
        assert pipeline.__file__.startswith({str(env_dir)!r}), pipeline.__file__
        assert d.template_dirs()[0] == __import__('pathlib').Path(pipeline.__file__).parent / 'templates', d.template_dirs()
        assert len(d.template_dirs()) == 1, d.template_dirs()  # no source tree beside an installed package
        res = report(Workspace.open({str(workspace)!r}), 'community', '{PERIOD}')
        from pipeline.letters import text_environment
        assert text_environment().get_template('letter.txt')
        print(res.digest)
    """)
    # Run away from the source tree, so the checkout cannot be imported by accident.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "HAPPYHOME_LANG")}
    ran = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    html = Path(ran.stdout.strip()).read_text(encoding="utf-8")
    assert len(BeautifulSoup(html, "html.parser").select("#ranking-rows tr")) == 3
    # the installed package speaks Chinese from its own catalogue, English on request
    for extra, words in (({}, ("指标数", "对象类型")), ({"HAPPYHOME_LANG": "en"}, ("items", "subject type"))):
        listed = subprocess.run([str(python), "-m", "pipeline", "systems"], capture_output=True, text=True,
                                encoding="utf-8", timeout=300, cwd=tmp_path, env={**env, **extra, "LANG": "en_US.UTF-8"})
        assert listed.returncode == 0 and all(w in listed.stdout for w in words), listed.stdout + listed.stderr


def test_charts_are_offline_reproducible_svg():
    from pipeline.charts import count_bars, share_bars

    one = share_bars(["治理体系", "社区环境", "项目运作"], [85.0, 72.5, None], "cats")
    assert one == share_bars(["治理体系", "社区环境", "项目运作"], [85.0, 72.5, None], "cats")  # no random ids
    two = count_bars(["优秀", "良好", "合格", "不合格"], [1, 0, 2, 0], "grades")
    for svg in (one, two):
        assert svg.startswith("<svg ") and "<?xml" not in svg
        assert "<script" not in svg and "<!--" not in svg
        assert set(re.findall(r"https?://[^\s\"'<>)]+", svg)) == {"http://www.w3.org/2000/svg"}
    assert "治理体系" in one and "85.0%" in one and 'id="chart-cats"' in one
    # A value is printed beside its bar's end, not centred on it (half on the bar, crossed by the
    # guides); a bar too long to leave room (90 % and more) has it just inside, in white.
    values = dict((text, anchor) for anchor, text in re.findall(
        r'<text text-anchor="(\w+)"[^>]*class="value"[^>]*>([^<]*)</text>', share_bars(["甲", "乙"], [85.0, 95.0], "two")))
    assert values == {"85.0%": "start", "95.0%": "end"}, values


@pytest.mark.browser
def test_ranking_fits_a_1400_pixel_window(workspace, tmp_path):
    """Every column of the ranking, 标记 included, is visible without scrolling at 1,400 px."""
    binary = find_chromium()
    if not binary:
        pytest.skip("chromium is not installed")
    add_returns(workspace)
    digest = report(Workspace.open(workspace), "community", PERIOD, by="省份", calibrate=True).digest
    with Browser(binary, tmp_path / "profile", width=1400, height=1000) as browser:
        browser.offline()
        browser.open(digest.as_uri())
        wrap = browser.evaluate("(w => [w.scrollWidth, w.clientWidth])(document.querySelector('#ranking .table-wrap'))")
        assert wrap[0] <= wrap[1], wrap
        # Each 标记 cell shows its whole text on one line (no clipping, no squeezing into a narrow column).
        cells = browser.evaluate("[...document.querySelectorAll('td.flagkinds')].map(td => "
                                 "[td.innerText, td.scrollWidth <= td.clientWidth, td.getClientRects()[0].height])")
        row = browser.evaluate("document.querySelector('#ranking-rows td').getClientRects()[0].height")
    assert [text for text, _, _ in cells] == ["", "", "总分分歧、临界"]
    assert all(whole and height <= row + 1 for _, whole, height in cells), (cells, row)


def test_files_received_and_counted_are_told_apart(workspace):
    from datetime import datetime

    from pipeline.ledger import FileRecord, Ledger, SheetRecord

    add_returns(workspace)
    with Ledger(Workspace.open(workspace).path("ledger")) as ledger:  # a file that was not a workbook
        ledger.add_file(FileRecord("f" * 64, "微信图片.jpg", f"input/returned/{PERIOD}/微信图片.jpg", 10,
                                   datetime(2026, 11, 21), datetime(2026, 11, 21), "ledger/archive/x", PERIOD,
                                   "community", None, "unknown", "rejected", reason="不是 Excel 文件"))
    page = soup(report(Workspace.open(workspace), "community", PERIOD).digest)
    tiles = {t.select_one(".label").get_text(strip=True): t.select_one(".value").get_text(" ", strip=True)
             for t in page.select("#headline .tile")}
    assert tiles["收到文件"] == "4 份，计入 3 份" and tiles["已收工作表 / 应收"] == "8 / 9"
    assert page.select_one("#sources").get_text().startswith("计入评分的 3 个文件（本期共收到 4 个；")
    # A subject's own self-assessment form is told apart: never scored, it is no file left out
    with Ledger(Workspace.open(workspace).path("ledger")) as ledger:
        ledger.add_file(FileRecord("s" * 64, "自评_C002.xlsx", f"input/returned/{PERIOD}/自评_C002.xlsx", 10,
                                   datetime(2026, 11, 22), datetime(2026, 11, 22), "ledger/archive/s", PERIOD,
                                   "community", "C002", "xlsx", "accepted",
                                   sheets=[SheetRecord("C002", "C002", "C002", True, [], kind="self")]))
    page = soup(report(Workspace.open(workspace), "community", PERIOD).digest)
    tiles = {t.select_one(".label").get_text(strip=True): t.select_one(".value").get_text(" ", strip=True)
             for t in page.select("#headline .tile")}
    assert tiles["收到文件"] == "4 份，计入 3 份 另有自评表 1 份", tiles["收到文件"]
    assert page.select_one("#sources").get_text().startswith(
        "计入评分的 3 个文件（本期共收到 4 个，另有评估对象的自评表 1 个，不计入评分；")
