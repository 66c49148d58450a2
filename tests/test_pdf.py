"""`report --pdf` and `rollup --pdf`: the digest and roll-up printed by a Chromium-family browser.

The PDF is read back with poppler (pdfinfo, pdftotext, pdffonts): A4 pages, the ranking's first
and last subjects, the footer with the round and page numbers, an embedded Chinese font. Finding
the browser and the failures of printing are tested with fake browsers on a temporary PATH.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from chromium import find_chromium
from pipeline import i18n, pdf
from pipeline.config import Workspace
from pipeline.digest import css_string, environment
from pipeline.errors import OutputError
from pipeline.roster import write_roster
from test_report import PERIOD, add_returns
from tests.conftest import ASSESSORS, SUBJECTS, run

POPPLER = all(shutil.which(tool) for tool in ("pdfinfo", "pdftotext", "pdffonts"))
# A round big enough for the ranking to run over more than one landscape page: 60 communities
# in three provinces, rated by three assessors at shares that put C001 first and C060 last.
PROVINCES = [("浙江省", "杭州市", "上城区"), ("四川省", "成都市", "武侯区"), ("湖北省", "武汉市", "洪山区")]
MANY = [(f"C{n:03d}", f"第{n}街道幸福家园示范社区", "创新实践社区", *PROVINCES[n % 3]) for n in range(1, 61)]
MANY_SHARES = {code: {a: round(0.99 - n * 0.008 - k * 0.01, 3) for k, (a, *_) in enumerate(ASSESSORS)}
               for n, (code, *_) in enumerate(MANY)}
ORGANISER = '幸福家园"项目"办公室 </style>'  # a quote and an end tag: the CSS string must hold them


@pytest.fixture
def english():
    """Terminal messages in English (the msgids), whatever the default language is."""
    before = i18n.language()
    i18n.set_language("en")
    yield
    i18n.set_language(before)


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


FAKE = """#!/bin/sh
# A fake browser: records its arguments, then writes a PDF where --print-to-pdf says.
printf '%s\\n' "$@" > "$(dirname "$0")/args.txt"
for a in "$@"; do case "$a" in --print-to-pdf=*) printf '%%PDF-1.4 fake\\n%%%%EOF\\n' > "${a#--print-to-pdf=}";; esac; done
"""


def no_browsers(monkeypatch, tmp_path: Path, configured: str | None = None) -> None:
    """A PATH without any browser (and no install folders on Linux), HAPPYHOME_BROWSER as given."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))
    if configured is None:
        monkeypatch.delenv(pdf.ENV, raising=False)
    else:
        monkeypatch.setenv(pdf.ENV, configured)


def leftovers(folder: Path) -> list[str]:
    """Temporary files an interrupted write would leave: hidden names and .tmp."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp")


# -- finding the browser ------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="fake browsers are shell scripts")
def test_find_browser_on_path_in_order_and_from_the_environment(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    edge = executable(bin_dir / "msedge", FAKE)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv(pdf.ENV, raising=False)
    assert pdf.find_browser() == str(edge)
    chromium = executable(bin_dir / "chromium", FAKE)
    assert pdf.find_browser() == str(chromium)  # Chromium's names come before Edge's
    (bin_dir / "chromium").chmod(0o644)  # a file that cannot be run is no browser
    assert pdf.find_browser() == str(edge)

    mine = executable(tmp_path / "apps" / "my chrome", FAKE)
    monkeypatch.setenv(pdf.ENV, f'"{mine}"')  # as Windows' "Copy as path" gives it, quotes included
    assert pdf.find_browser() == str(mine)
    monkeypatch.setenv(pdf.ENV, "msedge")  # a command name is looked up on PATH
    assert pdf.find_browser() == str(edge)
    monkeypatch.setenv("APPS", str(tmp_path / "apps"))
    monkeypatch.setenv(pdf.ENV, "$APPS/my chrome")  # %ProgramFiles%\… on Windows
    assert pdf.find_browser() == str(mine)
    # A setting that names nothing is not replaced by another browser: it is reported.
    monkeypatch.setenv(pdf.ENV, str(tmp_path / "gone" / "chrome.exe"))
    assert pdf.find_browser() is None
    assert str(tmp_path / "gone" / "chrome.exe") in pdf.no_browser_reason() and pdf.ENV in pdf.no_browser_reason()


def test_find_browser_in_windows_install_folders(monkeypatch, tmp_path):
    no_browsers(monkeypatch, tmp_path)
    monkeypatch.setattr(pdf.sys, "platform", "win32")
    for var in ("ProgramFiles", "ProgramFiles(x86)", "LocalAppData"):
        monkeypatch.setenv(var, str(tmp_path / var))
    assert pdf.find_browser() is None
    edge = tmp_path / "ProgramFiles(x86)" / "Microsoft" / "Edge" / "Application" / "msedge.exe"
    edge.parent.mkdir(parents=True)
    edge.write_bytes(b"MZ")
    assert pdf.find_browser() == str(edge)
    chrome = tmp_path / "LocalAppData" / "Google" / "Chrome" / "Application" / "chrome.exe"
    chrome.parent.mkdir(parents=True)
    chrome.write_bytes(b"MZ")
    assert pdf.find_browser() == str(chrome)  # Chrome before Edge, a per-user install included


def test_no_browser_reason_says_what_to_install(monkeypatch, tmp_path, english):
    no_browsers(monkeypatch, tmp_path)
    assert pdf.find_browser() is None
    reason = pdf.no_browser_reason()
    assert all(name in reason for name in ("Chromium", "Google Chrome", "Microsoft Edge", "HAPPYHOME_BROWSER"))


# -- printing with a fake browser -----------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="fake browsers are shell scripts")
def test_print_pdf_runs_the_browser_headless_offline_with_a_throwaway_profile(tmp_path):
    browser = executable(tmp_path / "bin" / "chromium", FAKE)
    html = tmp_path / "out" / "digest-community.html"
    html.parent.mkdir()
    html.write_text("<p>x</p>", encoding="utf-8")
    out = pdf.pdf_beside(html, str(browser))
    assert out == html.with_suffix(".pdf") and out.read_bytes().startswith(b"%PDF-1.4 fake")
    args = (tmp_path / "bin" / "args.txt").read_text(encoding="utf-8").splitlines()
    assert args[-1] == html.resolve().as_uri()
    for flag in ("--headless", "--no-pdf-header-footer", "--disable-background-networking", "--no-first-run",
                 "--disable-component-update", "--disable-sync"):
        assert flag in args
    target = next(a for a in args if a.startswith("--print-to-pdf="))[len("--print-to-pdf="):]
    assert Path(target).parent == html.parent and Path(target).name != out.name  # a temporary file, renamed
    profile = Path(next(a for a in args if a.startswith("--user-data-dir="))[len("--user-data-dir="):])
    assert not profile.exists()  # thrown away
    assert ("--no-sandbox" in args) == (sys.platform.startswith("linux") and os.geteuid() == 0)
    assert out.stat().st_mode & 0o777 == 0o666 & ~pdf_umask()
    assert leftovers(html.parent) == []


def pdf_umask() -> int:
    from pipeline.atomic import current_umask

    return current_umask()


@pytest.mark.skipif(sys.platform == "win32", reason="fake browsers are shell scripts")
@pytest.mark.parametrize("script, words", [
    ("echo 'ERROR: printing failed: boom' >&2; exit 3", ["exit status 3", "printing failed: boom"]),
    ("exit 0", ["wrote no PDF"]),
    ("for a in \"$@\"; do case \"$a\" in --print-to-pdf=*) : > \"${a#--print-to-pdf=}\";; esac; done", ["wrote no PDF"]),
    ("sleep 30", ["within 1 seconds"]),
    # Cut off: a PDF's start without its %%EOF marker, then a crash.
    ("for a in \"$@\"; do case \"$a\" in --print-to-pdf=*) printf '%%PDF-1.4 cut' > \"${a#--print-to-pdf=}\";; esac; done; exit 139",
     ["exit status 139"]),
])
def test_a_failing_browser_is_an_output_error_and_leaves_nothing(tmp_path, english, script, words):
    browser = executable(tmp_path / "bin" / "chromium", "#!/bin/sh\n" + script + "\n")
    html = tmp_path / "out" / "digest-community.html"
    html.parent.mkdir()
    html.write_text("<p>x</p>", encoding="utf-8")
    old = html.with_suffix(".pdf")
    old.write_bytes(b"%PDF-1.4 last month's")
    with pytest.raises(OutputError) as caught:
        pdf.print_pdf(html, old, str(browser), timeout=1)
    assert all(w in str(caught.value) for w in words), str(caught.value)
    assert old.read_bytes() == b"%PDF-1.4 last month's"  # the previous PDF is untouched
    assert leftovers(html.parent) == []


def _ended(pid: int) -> bool:
    """The process is gone (or a zombie nobody has reaped yet) within 5 s."""
    import psutil

    try:
        proc = psutil.Process(pid)
        psutil.wait_procs([proc], timeout=5)
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="fake browsers are shell scripts")
@pytest.mark.parametrize("groups", [True, False], ids=["process group", "tree only (as on Windows)"])
def test_a_hanging_browser_is_stopped_with_its_helper_processes(tmp_path, english, monkeypatch, groups):
    helper = tmp_path / "helper.pid"
    browser = executable(tmp_path / "bin" / "chromium", f"#!/bin/sh\nsleep 60 &\necho $! > '{helper}'\nwait\n")
    if not groups:
        monkeypatch.delattr(os, "killpg")  # Windows has no process groups: psutil's tree alone
    html = tmp_path / "digest.html"
    html.write_text("<p>x</p>", encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(OutputError, match="within 1 seconds"):
        pdf.print_pdf(html, tmp_path / "digest.pdf", str(browser), timeout=1)
    assert time.monotonic() - started < 10  # a helper left alive would hold stderr open for its 60 s
    assert _ended(int(helper.read_text()))


@pytest.mark.skipif(sys.platform == "win32", reason="fake browsers are shell scripts")
def test_a_whole_pdf_counts_even_if_the_browser_then_exits_badly(tmp_path):
    browser = executable(tmp_path / "bin" / "chromium", FAKE + "exit 1\n")
    html = tmp_path / "digest.html"
    html.write_text("<p>x</p>", encoding="utf-8")
    assert pdf.print_pdf(html, tmp_path / "digest.pdf", str(browser)).read_bytes().endswith(b"%%EOF\n")


def test_missing_browser_executable_is_an_output_error(tmp_path, english):
    html = tmp_path / "digest.html"
    html.write_text("<p>x</p>", encoding="utf-8")
    with pytest.raises(OutputError, match="Cannot start the browser"):
        pdf.print_pdf(html, tmp_path / "digest.pdf", str(tmp_path / "no-such-browser"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digest.html"]


# -- the footer's text in CSS ---------------------------------------------------------------
def test_css_string_escapes_what_would_break_the_stylesheet():
    assert css_string("幸福家园 · 2026-11") == '"幸福家园 · 2026-11"'
    out = str(css_string('a"b\\c</style>\nd'))
    assert out == '"a\\22 b\\5c c\\3c /style\\3e \\a d"'
    assert out.count('"') == 2 and "<" not in out
    page = environment().from_string("<style>p { content: {{ x | css_string }}; }</style>").render(x=ORGANISER)
    assert "&#34;" not in page and "&lt;" not in page and page.count("</style>") == 1


# -- the real browser -----------------------------------------------------------------------
def real_browser(monkeypatch) -> str:
    """The Chromium the other browser tests use, named to happyhome through HAPPYHOME_BROWSER."""
    binary = find_chromium()
    if not binary:
        pytest.skip("chromium is not installed")
    if not POPPLER:
        pytest.skip("poppler-utils (pdfinfo, pdftotext, pdffonts) are not installed")
    monkeypatch.setenv(pdf.ENV, binary)
    return binary


def pages(path: Path) -> list[tuple[float, float]]:
    """Each page's (width, height) in points, from pdfinfo."""
    info = subprocess.run(["pdfinfo", "-f", "1", "-l", "9999", str(path)], capture_output=True, text=True, check=True).stdout
    count = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    sizes = [(float(w), float(h)) for w, h in re.findall(r"^Page\s+\d+ size:\s+([\d.]+) x ([\d.]+) pts", info, re.M)]
    assert len(sizes) == count, info
    return sizes


def page_texts(path: Path) -> list[str]:
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1]  # one form feed ends each page


def check_pdf(path: Path, running: str) -> tuple[list[tuple[float, float]], list[str]]:
    """A4 pages, every page footed with the round and 第 n 页 / 共 N 页, fonts embedded, Chinese
    given back as text. Returns the page sizes and each page's text."""
    assert path.read_bytes()[:5] == b"%PDF-"
    sizes = pages(path)
    assert sizes and all(sorted((round(w), round(h))) == [595, 842] for w, h in sizes), sizes
    texts = page_texts(path)
    assert len(texts) == len(sizes)
    for n, text in enumerate(texts, start=1):
        flat = re.sub(r"\s+", "", text)
        assert f"第{n}页/共{len(sizes)}页" in flat, (n, text[-300:])
        assert re.sub(r"\s+", "", running) in flat, (n, text[-300:])
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout.splitlines()[2:]
    assert fonts and all(line.split()[-5] == "yes" for line in fonts), fonts  # the emb column
    # Skia embeds CFF fonts (Noto Sans CJK) as Type 3 without a name, but keeps the family in the descriptor.
    families = set(re.findall(rb"/FontFamily \(([^)]*)\)", path.read_bytes()))
    assert any(re.search(rb"CJK|YaHei|PingFang|Source Han|DengXian|SimSun", f) for f in families), families
    return sizes, texts


def big_round(workspace: Path) -> None:
    write_roster(workspace / "input" / "roster.xlsx", MANY, ASSESSORS,
                 [(a, s) for a, *_ in ASSESSORS for s, *_ in MANY])
    toml = workspace / "happyhome.toml"
    text = toml.read_text(encoding="utf-8")
    assert 'organiser = "幸福家园行动项目办公室"' in text
    # A JSON string is a TOML basic string for these characters.
    toml.write_text(text.replace('organiser = "幸福家园行动项目办公室"', f"organiser = {json.dumps(ORGANISER, ensure_ascii=False)}"),
                    encoding="utf-8")
    assert Workspace.open(workspace)["round"]["organiser"] == ORGANISER
    add_returns(workspace, shares=MANY_SHARES, remarks={})


@pytest.mark.browser
def test_report_pdf(workspace, english, monkeypatch):
    real_browser(monkeypatch)
    big_round(workspace)
    result = run(workspace, "report", "--system", "community", "--period", PERIOD, "--pdf")
    out = Workspace.open(workspace).period_output(PERIOD)
    target = out / "digest-community.pdf"
    assert f"已写入  {target}" in result.output
    with open(out / "results-community.csv", encoding="utf-8-sig") as fh:
        ranking = list(csv.DictReader(fh))
    first, last = ranking[0]["名称"], ranking[-1]["名称"]
    assert (ranking[0]["编号"], ranking[-1]["编号"]) == ("C001", "C060")

    sizes, texts = check_pdf(target, f"{ORGANISER} · 创新实践社区评价指标体系 · {PERIOD} 评估结果")
    landscape = [n for n, (w, h) in enumerate(sizes) if w > h]
    # The headline on a portrait first page, the ranking on consecutive landscape pages of its own
    # (60 rows need two at about 33 rows a page), then portrait pages: category shares, 60 cards
    # two to a row, the rest.
    assert sizes[0][0] < sizes[0][1]
    assert len(landscape) == 2 and landscape == [1, 2], sizes
    assert 6 <= len(sizes) <= 20, len(sizes)
    ranking_text = "".join(texts[n] for n in landscape)
    assert first in ranking_text and last in ranking_text
    assert ranking_text.index("C001") < ranking_text.index("C060")
    # The header row is repeated on the ranking's second page; no subject's row is split between pages.
    for n in landscape:
        assert "排名区间" in texts[n] and "评估人数" in texts[n]
    for row in ranking:  # each row whole on one page: its code, name, total and rank interval together
        on = [n for n in landscape if row["编号"] in texts[n]]
        assert len(on) == 1, row["编号"]
        flat = re.sub(r"\s+", "", texts[on[0]])
        assert row["名称"] in flat and row["总分"] in flat and re.sub(r"\s+", "", row["排名（90%区间）"]) in flat, row
    whole = "".join(texts)
    assert "方法说明" in whole and "催交名单" in whole
    assert leftovers(out) == []


@pytest.mark.browser
def test_rollup_pdf(workspace, english, monkeypatch):
    real_browser(monkeypatch)
    from test_rollup import _fill

    _fill(workspace)
    result = run(workspace, "rollup", "--system", "community", "--from", "2026-09", "--to", "2026-12", "--pdf")
    folder = Workspace.open(workspace).path("output") / "rollup"
    html = folder / "rollup-community-2026-09_2026-12.html"
    target = html.with_suffix(".pdf")
    assert f"已写入  {target}" in result.output
    rows = BeautifulSoup(html.read_text(encoding="utf-8"), "html.parser").select("#heat-rows tr.subject-row")
    names = {code: name for code, name, *_ in SUBJECTS}
    first, last = names[rows[0]["data-subject"]], names[rows[-1]["data-subject"]]
    sizes, texts = check_pdf(target, "幸福家园行动项目办公室 · 创新实践社区评价指标体系 · 月度汇总 2026-09 至 2026-12")
    assert 1 <= len(sizes) <= 6, len(sizes)
    whole = "".join(texts)
    assert first in whole and last in whole and "评分表回收情况" in whole
    assert leftovers(folder) == []


# -- without a browser ----------------------------------------------------------------------
def test_report_pdf_without_a_browser_warns_and_writes_the_rest(workspace, monkeypatch, tmp_path, english):
    add_returns(workspace)
    no_browsers(monkeypatch, tmp_path, configured=str(tmp_path / "nowhere" / "chrome.exe"))
    result = run(workspace, "report", "--system", "community", "--period", PERIOD, "--pdf")  # exit 0
    out = Workspace.open(workspace).period_output(PERIOD)
    html = out / "digest-community.html"
    flat = " ".join(result.output.split())
    assert "提醒：未生成 PDF。" in flat and f"{pdf.ENV} 设为 {tmp_path / 'nowhere' / 'chrome.exe'}" in flat
    assert f"HTML 已写出：{html}" in flat
    assert html.is_file() and (out / "summary-community.xlsx").is_file() and (out / "results-community.csv").is_file()
    assert not html.with_suffix(".pdf").exists() and leftovers(out) == []

    monkeypatch.delenv(pdf.ENV)
    result = run(workspace, "report", "--system", "community", "--period", PERIOD, "--pdf")
    flat = " ".join(result.output.split())
    assert ("找不到 Chromium 系浏览器：请安装 Chromium、Google Chrome 或 Microsoft Edge，"
            "或把 HAPPYHOME_BROWSER 设为浏览器程序的路径。") in flat
    assert "已写入" not in flat.split("提醒")[1] and not html.with_suffix(".pdf").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="fake browsers are shell scripts")
def test_rollup_pdf_with_a_failing_browser_warns_and_exits_0(workspace, monkeypatch, tmp_path, english):
    from test_rollup import _fill

    _fill(workspace)
    broken = executable(tmp_path / "bin" / "chromium", "#!/bin/sh\necho 'ERROR: cannot print' >&2\nexit 21\n")
    no_browsers(monkeypatch, tmp_path, configured=str(broken))
    result = run(workspace, "rollup", "--system", "community", "--pdf")
    folder = Workspace.open(workspace).path("output") / "rollup"
    html = folder / "rollup-community-2026-09_2026-12.html"
    flat = " ".join(result.output.split())
    assert "提醒：未生成 PDF。" in flat and "退出状态 21" in flat and "cannot print" in flat
    assert f"可在浏览器中打印：{html}" in flat
    assert html.is_file() and html.with_suffix(".xlsx").is_file() and not html.with_suffix(".pdf").exists()
    assert leftovers(folder) == []


def test_without_pdf_no_browser_is_looked_for(workspace, monkeypatch):
    add_returns(workspace)
    monkeypatch.setattr(pdf, "find_browser", lambda: pytest.fail("looked for a browser"))
    result = run(workspace, "report", "--system", "community", "--period", PERIOD)
    assert ".pdf" not in result.output


def test_the_print_footer_is_in_the_page_itself(workspace):
    """Ctrl+P gets the same footer as --pdf: the round and page numbers are in the page's @page rule,
    with the organiser's text escaped for CSS (a quote or an end tag cannot break the stylesheet)."""
    from pipeline.report import report

    big_round(workspace)
    html = report(Workspace.open(workspace), "community", PERIOD).digest.read_text(encoding="utf-8")
    page = BeautifulSoup(html, "html.parser")
    styles = page.head.find_all("style")
    css = styles[0].get_text()
    assert len(styles) == 1 and "@bottom-right" in css and page.head.find("title") is not None
    assert 'content: "第 " counter(page) " 页 / 共 " counter(pages) " 页"' in css
    assert f"content: {css_string(ORGANISER + ' · 创新实践社区评价指标体系 · ' + PERIOD + ' 评估结果')};" in css
    assert "size: A4" in css and "thead { display: table-header-group; }" in css
