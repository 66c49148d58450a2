"""Output safety: roster and assessor text is inert in every workbook, escaped in every HTML
page, and never steers a file name or sheet name, or a write outside the workspace.

One round is run end to end (forms, filling, collect, status --export, report, rollup) with a
roster whose names, units and contacts start with = + - @, hold <script>, ../, / \\ :, control
characters or 300 characters, and with remarks of the same kind. Every workbook written is
read back with openpyxl: a cell holding such text is a string cell (data_type "s"), never a
formula; every HTML page is parsed: no element, attribute or script came from the data.
"""

from __future__ import annotations

import csv
import os
import re
import stat
from pathlib import Path

import openpyxl
import pytest
from bs4 import BeautifulSoup

from conftest import fill_form, run
from pipeline.forms import META_SHEET
from pipeline.roster import write_roster
from pipeline.systems import load_system

PERIOD, SYSTEM = "2026-11", "community"
LONG = "长" * 300
SUBJECTS = [
    ("Z01", "杭州市上城区", "创新实践区", "浙江省", "杭州市", "上城区"),
    ("C001", '=HYPERLINK("http://evil.example","点我")', "创新实践社区", "+浙江省", "@杭州市", "-上城区"),
    ("C002", "<script>alert('subject')</script>社区", "创新实践社区", "四川省", "成都市", "武侯区"),
    ("C003", "../../../../../../../../tmp/pwn_subject:a/b\\c[d]*?\x07" + LONG, "创新实践社区", "湖北省", "武汉市", "洪山区"),
]
ASSESSORS = [
    ("E01", "+SUM(1,2)", "=cmd|' /C calc'!A0", "-1+1"),
    ("E02", "@张三", "<script>alert('org')</script>", "=1+1"),
    ("E03", "../../../../../../../../tmp/pwn_assessor/\\:*?\x1b" + "名" * 300, "机构\x1f", "@contact"),
    ("E/04", "<img src=x onerror=alert('name')>", "", ""),
]
PAIRS = [(a[0], s[0]) for a in ASSESSORS for s in SUBJECTS if s[0].startswith("C")]
REMARKS = {"C01": "=1+2", "C02": "+SUM(A1:A3)", "C03": "-3", "C04": "@A1",
           "C05": "<script>alert('remark')</script>", "C06": "<img src=x onerror=alert('remark')>"}
FORMULA_LEAD = ("=", "+", "-", "@")
# texts that must survive as text wherever they are written (control characters may be dropped)
PAYLOADS = [s[1] for s in SUBJECTS[1:3]] + [a[1] for a in ASSESSORS[:2]] + [a[3] for a in ASSESSORS[:3]] + \
    [ASSESSORS[0][2]] + list(REMARKS.values())[1:4]  # a remark typed as =1+2 is a formula in the returned file


def tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.fixture(scope="module")
def round_(tmp_path_factory):
    """The whole round, with everything it wrote."""
    top = tmp_path_factory.mktemp("safety")
    ws = top / "ws"
    run(ws, "init", str(ws))
    write_roster(ws / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    outside_before = tree(top) - tree(ws) - {ws}
    tmp_before = set(Path("/tmp").glob("pwn*"))

    run(ws, "forms", "--system", SYSTEM, "--period", PERIOD)
    forms = sorted((ws / "output" / "forms" / PERIOD / SYSTEM).glob("*.xlsx"))
    returned = ws / "input" / "returned" / PERIOD
    returned.mkdir(parents=True)
    system = load_system(SYSTEM)
    for n, form in enumerate(forms):
        scores = {s[0]: {i.code: i.max - (n % 2) for i in system.items} for s in SUBJECTS[1:]}
        if n == 0:
            scores["C002"]["C01"] = "=2+2"  # a formula typed as a score: its text reaches the 问题 sheet
        fill_form(form, scores, remarks={"C001": REMARKS, "C002": REMARKS}, save_as=returned / form.name)
    collect = run(ws, "collect", "--system", SYSTEM, "--period", PERIOD)
    export = ws / "output" / "chase.xlsx"
    run(ws, "status", "--system", SYSTEM, "--period", PERIOD, "--export", str(export))
    run(ws, "report", "--system", SYSTEM, "--period", PERIOD)
    run(ws, "rollup", "--system", SYSTEM)
    return top, ws, forms, outside_before, tmp_before, collect


def workbooks(ws: Path) -> list[Path]:
    return sorted(p for p in (ws / "output").rglob("*.xlsx"))


def test_every_kind_of_output_was_written(round_):
    _, ws, forms, *_ = round_
    names = {re.sub(r"-community.*|_.*|\.xlsx$", "", p.name) for p in workbooks(ws)}
    assert {"collection", "summary", "rollup", "chase", "2026-11"} <= names, names
    assert len(forms) == len(ASSESSORS)
    assert list((ws / "output").rglob("*.html"))


def test_nothing_is_written_outside_the_workspace(round_):
    top, ws, _, outside_before, tmp_before, _ = round_
    assert tree(top) - tree(ws) - {ws} == outside_before
    assert set(Path("/tmp").glob("pwn*")) == tmp_before
    for path in tree(ws):
        assert ws.resolve() in path.resolve().parents or path.resolve() == ws.resolve()


def test_file_names_from_roster_text_are_safe(round_):
    _, ws, forms, *_ = round_
    for path in forms:
        assert path.parent == ws / "output" / "forms" / PERIOD / SYSTEM
        assert not re.search(r'[<>:"/\\|?*\x00-\x1f]', path.name), path.name
        assert len(path.name.encode("utf-8")) <= 255
        assert ".." not in path.name


def test_sheet_names_from_roster_text_are_safe(round_):
    _, ws, forms, *_ = round_
    for path in workbooks(ws):
        book = openpyxl.load_workbook(path)
        for name in book.sheetnames:
            assert len(name) <= 31 and not re.search(r"[\[\]:*?/\\\x00-\x1f]", name), (path.name, name)
        assert len({n.lower() for n in book.sheetnames}) == len(book.sheetnames)


def _cells(path: Path):
    book = openpyxl.load_workbook(path)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if cell.value is not None:
                    yield sheet.title, cell


def test_roster_and_assessor_text_is_never_a_formula_in_any_workbook(round_):
    _, ws, *_ = round_
    found: set[str] = set()
    for path in workbooks(ws):
        for sheet, cell in _cells(path):
            value = str(cell.value)
            risky = value.startswith(FORMULA_LEAD) and cell.data_type == "f"
            if risky:  # the only formulas allowed are happyhome's own, over its own cells
                assert not any(p in value for p in PAYLOADS + ["HYPERLINK", "cmd|"]), (path.name, sheet, cell.coordinate, value)
                assert re.fullmatch(r"=[A-Z(][A-Z0-9$:!'(),.\"&+\-*/=<> 一-龥]*", value) or "'" in value, value
            for payload in PAYLOADS:
                if value == payload or (len(payload) >= 5 and payload in value):
                    assert cell.data_type == "s", (path.name, sheet, cell.coordinate, value)
                    found.add(payload)
    assert found == set(PAYLOADS), set(PAYLOADS) - found


def test_the_identity_block_and_summary_of_a_form_hold_names_as_text(round_):
    _, ws, forms, *_ = round_
    by_code = {a[0]: a for a in ASSESSORS}
    for path in forms:
        book = openpyxl.load_workbook(path)
        meta = {r[0]: r[1] for r in book[META_SHEET].iter_rows(values_only=True)}
        assessor = by_code[meta["assessor"]]
        for sheet in book.worksheets[2:-1]:
            for ref in ("B2", "B3"):
                assert sheet[ref].data_type == "s"
            # a control character is stored escaped (_x001B_), as Excel does
            assert re.sub(r"_x[0-9A-F]{4}_", "", sheet["B3"].value) == re.sub(r"[\x00-\x1f]", "", assessor[1])
        summary = book["汇总"]
        names = [summary.cell(r, 2) for r in range(2, summary.max_row + 1)]
        assert [c.data_type for c in names] == ["s"] * len(names)
        assert SUBJECTS[1][1] in [c.value for c in names]


def test_the_results_csv_is_inert(round_):
    _, ws, *_ = round_
    for path in (ws / "output").rglob("*.csv"):
        with open(path, encoding="utf-8-sig", newline="") as handle:
            for row in csv.reader(handle):
                for field in row:
                    if field.startswith(FORMULA_LEAD):
                        assert re.fullmatch(r"-?\d+(\.\d+)?", field), (path.name, field)


def test_html_outputs_escape_names_and_remarks(round_):
    _, ws, *_ = round_
    pages = sorted((ws / "output").rglob("*.html"))
    seen = ""
    for page in pages:
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for script in soup.find_all("script"):
            assert "alert(" not in script.get_text(), page.name
        for tag in soup.find_all(True):
            assert not any(attr.lower().startswith("on") for attr in tag.attrs), (page.name, tag.name, tag.attrs)
            if tag.name == "img":
                assert tag.get("src") != "x"
        seen += soup.get_text()
    assert "<script>alert('subject')</script>" in seen  # shown as text, not run
    assert "<img src=x onerror=alert('name')>" in seen or "<script>alert('remark')</script>" in seen


def test_the_collect_listing_shows_the_formula_typed_as_a_score_as_text(round_):
    *_, collect = round_
    report = collect.output
    assert "收取报告：" in report
    _, ws, *_ = round_
    problems = openpyxl.load_workbook(ws / "output" / PERIOD / f"collection-{SYSTEM}.xlsx")["问题"]
    cells = [row[3] for row in problems.iter_rows(min_row=2) if row[3].value == "=2+2"]
    assert cells and all(c.data_type == "s" for c in cells)


def test_a_symbolic_link_in_the_returned_folder_is_not_followed(tmp_path):
    """A link unpacked from an attachment (评分表.xlsx -> /etc/passwd) reads nothing outside."""
    ws = tmp_path / "ws"
    run(ws, "init", str(ws))
    returned = ws / "input" / "returned" / PERIOD
    returned.mkdir(parents=True)
    (returned / "评分表.xlsx").symlink_to("/etc/passwd")
    run(ws, "collect", "--system", SYSTEM, "--period", PERIOD)
    secret = Path("/etc/passwd").read_text().splitlines()[0].encode()
    assert [p for p in ws.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()] == []


@pytest.fixture
def umask():
    """Set the process umask for one test, then put the old one back."""
    import os

    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def test_written_files_get_the_users_umask_not_0600(tmp_path, umask):
    import stat

    from pipeline.atomic import write_text
    from test_report import add_returns

    umask(0o022)
    assert stat.S_IMODE(write_text(tmp_path / "a.txt", "x").stat().st_mode) == 0o644
    umask(0o027)  # a whole round: forms, archive, collection report, chase list, summary, CSVs, digest, roll-up
    ws = tmp_path / "ws"
    run(ws, "init", str(ws))
    write_roster(ws / "input" / "roster.xlsx", SUBJECTS[:2], ASSESSORS[:1], [])
    run(ws, "forms", "--system", SYSTEM, "--period", PERIOD)
    form = next((ws / "output" / "forms" / PERIOD / SYSTEM).glob("*.xlsx"))
    returned = ws / "input" / "returned" / PERIOD
    returned.mkdir(parents=True)
    fill_form(form, {"C001": {i.code: i.max for i in load_system(SYSTEM).items}}, save_as=returned / form.name)
    run(ws, "collect", "--system", SYSTEM, "--period", PERIOD)
    run(ws, "status", "--system", SYSTEM, "--period", PERIOD, "--export", str(ws / "output" / "chase.xlsx"))
    run(ws, "report", "--system", SYSTEM, "--period", PERIOD)
    run(ws, "rollup", "--system", SYSTEM)
    files = [p for p in ws.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".xlsx", ".csv", ".html", ".toml"} <= kinds and any("archive" in p.parts for p in files)
    modes = {str(p.relative_to(ws)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert modes.pop("ledger/office.key") == "0o600"  # the office key alone is the owner's only
    assert {m for m in modes.values()} == {"0o640"}, modes


def test_write_bytes_makes_its_folder_and_steps_round_a_leftover_temporary(tmp_path, umask, monkeypatch):
    # collect's archive writes each original through write_bytes: the folder is made when missing,
    # and a temporary file left by an earlier process with the same pid does not stop the write.
    import itertools

    import pipeline.atomic as atomic

    umask(0o027)
    target = tmp_path / "archive" / "ab" / "ab12.xlsx"
    assert atomic.write_bytes(target, b"one") == target and target.read_bytes() == b"one"
    monkeypatch.setattr(atomic, "_serial", itertools.count(7))
    leftover = target.with_name(f".{target.stem}.{os.getpid()}.7{target.suffix}")
    leftover.write_bytes(b"stale")
    atomic.write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and leftover.read_bytes() == b"stale"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, leftover.name])
