"""The corpus of bad returned files (tests/corpus.py), collected in one run beside good files.

Each bad file or sheet must get its plain reason; the good files must come out exactly as
when collected alone; the ledger must gain nothing from a bad part; hostile files must be
refused within bounded time and memory; docs/corpus.md must list every case as it behaves.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import openpyxl
import pytest

import corpus
from conftest import reason_rule, run
from pipeline.collect import Context, examine
from pipeline.config import Workspace
from pipeline.messages import CATALOGUE, ERROR, WARNING
from pipeline.roster import read_roster
from pipeline.systems import load_system

PERIOD, SYSTEM = corpus.PERIOD, corpus.SYSTEM
DOCS = Path(__file__).resolve().parent.parent / "docs" / "corpus.md"
HOSTILE_SECONDS = 10  # the whole hostile set, collected beside the good files
HOSTILE_MB = 250      # peak resident memory of the collect process and its workers (good files alone: ~80 MB)


def collect_subprocess(ws: Path, *paths: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m pipeline collect` as a child process; returns (result, wall seconds)."""
    args = [sys.executable, "-m", "pipeline", "-w", str(ws), "collect", "--system", SYSTEM, "--period", PERIOD,
            *map(str, paths)]
    start = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    return result, time.monotonic() - start


def measured_collect(ws: Path, *paths: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    """Collect in a fresh wrapper process that waits for collect with wait4, so the peak RSS is
    that of collect and its worker processes alone."""
    code = (
        "import os, subprocess, sys, time, json\n"
        "t = time.monotonic()\n"
        "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
        "out, err = b'', b''\n"
        "import threading\n"
        "chunks = {}\n"
        "def pump(name, stream): chunks[name] = stream.read()\n"
        "ts = [threading.Thread(target=pump, args=(n, s)) for n, s in (('out', p.stdout), ('err', p.stderr))]\n"
        "[x.start() for x in ts]\n"
        "_, status, usage = os.wait4(p.pid, 0)\n"
        "[x.join() for x in ts]\n"
        "print(json.dumps({'rc': os.waitstatus_to_exitcode(status), 'seconds': time.monotonic() - t,\n"
        "                  'maxrss_kb': usage.ru_maxrss, 'out': chunks['out'].decode(), 'err': chunks['err'].decode()}))\n"
    )
    import json

    args = [sys.executable, "-m", "pipeline", "-w", str(ws), "collect", "--system", SYSTEM, "--period", PERIOD,
            *map(str, paths)]
    wrapper = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    info = json.loads(wrapper.stdout)
    result = subprocess.CompletedProcess(args, info["rc"], info["out"], info["err"])
    return result, info["seconds"], info["maxrss_kb"] / 1024


def new_workspace(root: Path, office_of: Path | None = None) -> Path:
    """A new workspace; with `office_of`, of the same office (its key restored from that one's),
    so the forms that workspace wrote verify here."""
    if office_of is not None:
        key = Workspace.open(office_of).path("key")
        (root / key.relative_to(office_of.resolve())).parent.mkdir(parents=True)
        shutil.copyfile(key, root / key.relative_to(office_of.resolve()))
    run(root, "init", str(root))
    reason_rule(root, 0)  # the corpus's good forms have deductions without remarks
    corpus.write_corpus_roster(root)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Good files and every case's bad file, built once."""
    tmp = tmp_path_factory.mktemp("corpus")
    ws = new_workspace(tmp / "ws")
    good, bad, base = corpus.build(ws, tmp / "returned")
    return ws, good, bad, base


def ledger(ws: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(Workspace.open(ws).path("ledger"))
    conn.row_factory = sqlite3.Row
    return conn


@pytest.fixture(scope="module")
def mixed(built):
    """One run over the good files and the whole corpus together."""
    ws, good, bad, _ = built
    folder = good[0].parent
    result, seconds = collect_subprocess(ws, folder)
    return ws, result, seconds


@pytest.fixture(scope="module")
def good_only(built, tmp_path_factory):
    """The same good files collected alone, in a workspace of their own."""
    built_ws, good, _, _ = built
    tmp = tmp_path_factory.mktemp("good-only")
    ws = new_workspace(tmp / "ws", office_of=built_ws)
    folder = tmp / "returned"
    folder.mkdir()
    for path in good:
        shutil.copy2(path, folder / path.name)
    result, _ = collect_subprocess(ws, folder)
    assert result.returncode == 0, result.stderr
    return ws


def test_the_corpus_has_thirty_distinct_bad_files(built):
    _, good, bad, _ = built
    assert len(corpus.CASES) >= 30
    assert len({c.name for c in corpus.CASES}) == len(corpus.CASES)
    contents = {p.read_bytes() for p in bad.values()}
    assert len(contents) == len(bad)  # no two cases are the same file
    assert all(c.expect.outcome in ("file", "sheet", "warning", "accepted", "duplicate") for c in corpus.CASES)
    for c in corpus.CASES:
        assert c.expect.code is None or c.expect.code in CATALOGUE, c.name
    # the hostile ones really are what they claim, and still small on disk
    assert bad["zip_bomb"].stat().st_size < 5_000_000
    import zipfile

    with zipfile.ZipFile(bad["zip_bomb"]) as z:
        assert max(i.file_size for i in z.infolist()) >= corpus.BOMB_BYTES
    assert bad["million_rows"].stat().st_size < 15_000_000


def test_the_run_over_everything_completes(mixed):
    ws, result, _ = mixed
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "收取报告：" in result.stdout


def _file_row(conn, name):
    return conn.execute("SELECT * FROM files WHERE name = ?", (name,)).fetchone()


@pytest.mark.parametrize("case", corpus.CASES, ids=[c.name for c in corpus.CASES])
def test_each_bad_file_gets_its_reason_in_the_mixed_run(built, mixed, case):
    ws, _, bad, _ = built
    path = bad[case.name]
    conn = ledger(ws)
    exp = case.expect
    if exp.outcome == "duplicate":
        assert _file_row(conn, path.name) is None
        aliases = [r["path"] for r in conn.execute("SELECT path FROM aliases")]
        assert str(path.resolve()) in aliases
        return
    row = _file_row(conn, path.name)
    assert row is not None, f"{path.name} is not in the ledger"
    problems = conn.execute("SELECT * FROM problems WHERE file_id = ?", (row["id"],)).fetchall()
    sheets = conn.execute("SELECT * FROM sheets WHERE file_id = ?", (row["id"],)).fetchall()
    scores = conn.execute("SELECT s.sheet, c.item FROM scores c JOIN sheets s ON s.id = c.sheet_id WHERE s.file_id = ?",
                          (row["id"],)).fetchall()
    codes = {(p["code"], p["sheet"]) for p in problems}
    if exp.outcome == "file":
        assert row["status"] == "rejected"
        assert any(code == exp.code for code, _ in codes), codes
        assert row["reason"] == next(p["message"] for p in problems if p["code"] == exp.code)
        assert not scores and not [s for s in sheets if s["status"] != "rejected"]
    elif exp.outcome == "sheet":
        assert row["status"] in ("partial", "rejected")
        assert (exp.code, exp.sheet) in codes, codes
        bad_sheet = [s for s in sheets if s["sheet"] == exp.sheet]
        assert bad_sheet and all(s["status"] == "rejected" for s in bad_sheet)
        assert not [s for s in scores if s["sheet"] == exp.sheet]  # nothing from the bad sheet
    else:
        assert row["status"] == "accepted", [dict(p) for p in problems]
        errors = [p for p in problems if p["severity"] == ERROR]
        assert not errors, [dict(p) for p in errors]
        if exp.outcome == "warning":
            assert (exp.code, exp.sheet) in codes
            assert CATALOGUE[exp.code][0] == WARNING
        else:
            assert not problems, [dict(p) for p in problems]
        assert {s["sheet"] for s in sheets} == {s for s, _ in scores}


def _read_sheet(path: Path, name: str) -> list[tuple]:
    book = openpyxl.load_workbook(path, read_only=True)
    rows = list(book[name].iter_rows(values_only=True))
    book.close()
    return rows


def test_the_collection_workbook_lists_every_bad_file_with_its_reason(built, mixed):
    ws, _, bad, _ = built
    report = ws / "output" / PERIOD / f"collection-{SYSTEM}.xlsx"
    files = _read_sheet(report, "文件")
    problems = _read_sheet(report, "问题")
    assert files[0][:5] == ("文件名", "评估人", "状态", "接收对象数", "问题数")
    assert problems[0][:5] == ("文件", "工作表", "单元格", "原值", "问题")
    status = {}
    for r in files[1:]:
        status.setdefault(r[0], set()).add(r[2])
    conn = ledger(ws)
    for case in corpus.CASES:
        name = bad[case.name].name
        exp = case.expect
        expected = {"file": {"已拒收"}, "sheet": {"部分接收", "已拒收", "已被替换"}, "warning": {"已接收", "已被替换"},
                    "accepted": {"已接收", "已被替换"}, "duplicate": {"重复"}}[exp.outcome]
        if exp.outcome in ("accepted", "warning") and status.get(name) == {"重复"}:
            # a variant whose scores equal an earlier variant's is the same submission (重复), by the
            # ledger's rule — and says so
            sheets = conn.execute("SELECT s.status FROM sheets s JOIN files f ON f.id = s.file_id WHERE f.name = ?",
                                  (name,)).fetchall()
            assert sheets and {row[0] for row in sheets} == {"duplicate"}, (case.name, sheets)
        else:
            assert status.get(name, set()) & expected, (case.name, status.get(name))
        if exp.code and exp.outcome != "duplicate":
            message = conn.execute(
                "SELECT p.message FROM problems p JOIN files f ON f.id = p.file_id WHERE f.name = ? AND p.code = ?",
                (name, exp.code)).fetchone()[0]
            listed = [r for r in problems[1:] if r[0] == name and r[4] == message]
            assert listed, (case.name, message)
            if exp.sheet:
                assert any(r[1] == exp.sheet for r in listed)
    dup = bad["twice"].name
    assert any(r[0] == dup and "twice_first.xlsx" in r[4] for r in problems[1:])


def _scores(ws: Path, assessors=("E01", "E02", "E03")) -> list[tuple]:
    conn = ledger(ws)
    marks = ",".join("?" * len(assessors))
    rows = conn.execute(
        f"""SELECT s.assessor, s.subject, c.item, c.raw, c.score, c.remark, f.name, s.sheet, c.cell
            FROM scores c JOIN sheets s ON s.id = c.sheet_id JOIN files f ON f.id = s.file_id
            WHERE s.status = 'accepted' AND s.assessor IN ({marks}) ORDER BY 1, 2, 3""", assessors).fetchall()
    return [tuple(r) for r in rows]


def test_good_files_are_collected_as_if_the_bad_ones_were_absent(mixed, good_only):
    ws, _, _ = mixed
    together, alone = _scores(ws), _scores(good_only)
    assert together == alone
    assert len(alone) == 3 * 3 * 19
    # and they are the scores the assessors typed
    for assessor, subject, item, _, score, *_ in alone:
        assert score == corpus.good_scores(assessor, subject)[item]


def test_the_bad_files_add_only_their_good_sheets(mixed):
    """E09's files all carry the base answers: whatever survived is exactly the base."""
    ws, _, _ = mixed
    e09 = _scores(ws, ("E09",))
    assert {(a, s) for a, s, *_ in e09} == {("E09", "C001"), ("E09", "C002")}
    for _, subject, item, _, score, *_ in e09:
        assert score == corpus.base_scores()[item]
    conn = ledger(ws)
    leaked = conn.execute("SELECT count(*) FROM scores c JOIN sheets s ON s.id = c.sheet_id "
                          "WHERE s.status = 'rejected'").fetchone()[0]
    assert leaked == 0
    rejected_files = conn.execute("SELECT count(*) FROM sheets s JOIN files f ON f.id = s.file_id "
                                  "WHERE f.status = 'rejected' AND s.status != 'rejected'").fetchone()[0]
    assert rejected_files == 0
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_no_local_file_content_reaches_the_ledger_or_any_output(built, mixed):
    """The XXE cases point at /etc/passwd: its content must appear nowhere happyhome wrote."""
    ws, _, bad, _ = built
    secret = Path(corpus.XXE_TARGET).read_text().splitlines()[0].encode()
    assert secret  # e.g. root:x:0:0:root:/root:/bin/bash
    hits = []
    for path in ws.rglob("*"):
        if path.is_file() and secret in path.read_bytes():
            hits.append(path)
    assert hits == []
    problems = ledger(ws).execute(
        "SELECT p.value, p.message FROM problems p JOIN files f ON f.id = p.file_id WHERE f.name IN (?, ?)",
        (bad["xxe"].name, bad["xxe_remark"].name)).fetchall()
    assert problems and all("root:" not in (p["value"] + p["message"]) for p in problems)


def test_a_huge_value_is_quoted_short(built, mixed):
    ws, _, bad, _ = built
    row = ledger(ws).execute(
        "SELECT p.value, p.message FROM problems p JOIN files f ON f.id = p.file_id WHERE f.name = ?",
        (bad["long_string"].name,)).fetchone()
    assert len(row["value"]) <= 200
    assert len(row["message"]) < 300 and "共 3000000 字" in row["message"]


def test_hostile_files_are_refused_within_bounded_time_and_memory(built, tmp_path):
    built_ws, good, bad, _ = built
    ws = new_workspace(tmp_path / "ws", office_of=built_ws)
    hostile = [bad[c.name] for c in corpus.CASES if c.hostile]
    assert len(hostile) >= 7
    result, seconds, peak_mb = measured_collect(ws, *good, *hostile)
    assert result.returncode == 0, result.stderr
    assert seconds < HOSTILE_SECONDS, seconds
    assert peak_mb < HOSTILE_MB, peak_mb
    conn = ledger(ws)
    assert conn.execute("SELECT count(*) FROM files").fetchone()[0] == len(good) + len(hostile)
    for case in corpus.CASES:
        if case.hostile and case.expect.outcome in ("file", "sheet"):
            codes = {r[0] for r in conn.execute(
                "SELECT p.code FROM problems p JOIN files f ON f.id = p.file_id WHERE f.name = ?", (bad[case.name].name,))}
            assert case.expect.code in codes, case.name


@pytest.fixture(scope="module")
def context(built):
    ws, *_ = built
    workspace = Workspace.open(ws)
    return Context.build(workspace, load_system(SYSTEM), PERIOD, read_roster(workspace.path("roster")))


@pytest.mark.parametrize("case", [c for c in corpus.CASES if c.expect.outcome != "duplicate"],
                         ids=[c.name for c in corpus.CASES if c.expect.outcome != "duplicate"])
def test_each_bad_file_alone(built, context, case):
    """The same verdict when the file is judged on its own, from its bytes."""
    _, _, bad, _ = built
    path = bad[case.name]
    found = examine(path.read_bytes(), path.name, context)
    exp = case.expect
    codes = {(p.code, p.sheet) for p in found.problems}
    if exp.outcome == "file":
        assert found.status == "rejected" and exp.code in {c for c, _ in codes}
        assert not any(s.accepted for s in found.sheets)
    elif exp.outcome == "sheet":
        assert (exp.code, exp.sheet) in codes
        assert all(not s.accepted and not s.scores for s in found.sheets if s.sheet == exp.sheet)
    else:
        assert found.status == "accepted"
        assert ((exp.code, exp.sheet) in codes) if exp.outcome == "warning" else not found.problems


@pytest.mark.parametrize("limit, value, code", [
    ("max_rows", 20, "sheet_too_long"),              # a form's subject sheet has 33 rows
    ("max_unzipped_mb", 0.05, "zip_bomb"),
    ("max_file_mb", 0.005, "too_large"),
    ("max_sheets", 3, "too_many_sheets"),
    ("max_columns", 5, "sheet_unreadable"),          # a form's subject sheet has 8 columns
])
def test_the_limits_are_settings(built, limit, value, code):
    """Each limit of [limits] in happyhome.toml refuses the good base form once set below it."""
    import copy

    ws, _, _, base = built
    workspace = Workspace.open(ws)
    settings = copy.deepcopy(workspace.settings)
    settings["limits"][limit] = value
    tight = Context.build(Workspace(workspace.root, settings), load_system(SYSTEM), PERIOD,
                          read_roster(workspace.path("roster")))
    data = base.read_bytes()
    assert examine(data, base.name, context_of(ws)).status == "accepted"
    found = examine(data, base.name, tight)
    assert found.status == "rejected" and code in {p.code for p in found.problems}


def context_of(ws: Path) -> Context:
    workspace = Workspace.open(ws)
    return Context.build(workspace, load_system(SYSTEM), PERIOD, read_roster(workspace.path("roster")))


# -- what the reader makes of odd containers and sizes ------------------------------------------------
def test_hostile_cases_really_are_what_they_claim(built):
    """The size cases declare what their titles say, in files of a few KB."""
    import zipfile

    _, _, bad, _ = built
    for name in ("far_cell", "wide_sheet", "abort_xlsx", "xls_declared_range", "xls_far_cell"):
        assert bad[name].stat().st_size < 25_000, name
    with zipfile.ZipFile(bad["abort_xlsx"]) as z:
        assert b'r="XFD1048576"' in z.read("xl/worksheets/sheet1.xml")
    stream = __import__("olefile").OleFileIO(str(bad["xls_declared_range"])).openstream("Workbook").read()
    assert b"\x00\x02\x0e\x00" + (0).to_bytes(4, "little") + (65536).to_bytes(4, "little") + (0).to_bytes(2, "little") \
        + (256).to_bytes(2, "little") in stream  # DIMENSIONS: rows 0..65536, columns 0..256


def test_a_calamine_panic_keeps_its_words_apart_from_the_message(built):
    """The panicking .xls is refused in Chinese; calamine's own words go to `technical` only."""
    ws, _, bad, _ = built
    found = examine(bad["panic_xls"].read_bytes(), bad["panic_xls"].name, context_of(ws))
    (p,) = found.problems
    assert p.code == "read_failed" and p.message == CATALOGUE["read_failed"][1]
    assert p.technical.startswith("PanicException: ")


def test_sheet_read_errors_keep_the_library_text_apart(built):
    ws, _, bad, _ = built
    found = examine(bad["missing_part"].read_bytes(), bad["missing_part"].name, context_of(ws))
    (p,) = [p for p in found.problems if p.code == "sheet_unreadable"]
    assert p.message == "工作表无法读取（工作表的内容在文件中缺失），本表未计入。"
    assert p.technical.startswith("WorksheetNotFound")


@pytest.mark.parametrize("name", ["backslash_zip", "workbook_elsewhere", "xlsb_workbook_elsewhere"])
def test_a_rezipped_form_is_read_with_the_same_scores(built, name):
    """The genuine form re-zipped with backslash names, or with its workbook elsewhere (xlsx or
    xlsb), gives exactly the records of the form itself."""
    ws, _, bad, base = built
    ctx = context_of(ws)
    want = examine(base.read_bytes(), base.name, ctx)
    got = examine(bad[name].read_bytes(), bad[name].name, ctx)
    assert want.status == got.status == "accepted"
    assert [(s.subject, s.scores) for s in got.sheets] == [(s.subject, s.scores) for s in want.sheets]
    assert len(got.sheets) == 2 and all(s.scores for s in got.sheets)


# Runs of Latin words: library text (e.g. "Cannot detect file format") leaking into a message.
LIBRARY_TEXT = re.compile(r"[A-Za-z]{3,}(?:[ :_-]+[A-Za-z]{2,}){2,}")


def test_every_recorded_message_is_chinese_only(built, mixed):
    """No message an office may forward carries the library's English (values quoted from the
    file itself, in “…”, are the assessor's own words)."""
    ws, _, _, _ = built
    conn = ledger(ws)
    messages = [m for (m,) in conn.execute("SELECT DISTINCT message FROM problems")]
    assert len(messages) > 30
    for message in messages:
        assert not LIBRARY_TEXT.search(re.sub(r"“[^”]*”", "", message)), message


# -- docs/corpus.md ---------------------------------------------------------------------------------
OUTCOME_TEXT = {"file": "file rejected", "sheet": "sheet rejected", "warning": "accepted with a warning",
                "accepted": "accepted", "duplicate": "not counted again (重复)"}


def corpus_table(ws: Path, bad: dict[str, Path]) -> str:
    """docs/corpus.md, from the cases and the messages the mixed run actually recorded."""
    conn = ledger(ws)
    lines = [
        "# The corpus of bad returned files",
        "",
        "Generated by `tests/test_corpus.py` from `tests/corpus.py` and checked on every test run",
        "(regenerate with `HAPPYHOME_WRITE_DOCS=1 python -m pytest tests/test_corpus.py`).",
        "Every case is collected in one run beside three good files; each row is what that run recorded:",
        "the outcome, the problem code and the message the office receives (the 问题 sheet of the",
        "collection workbook). A rejected sheet leaves the other sheets of the same file counted.",
        "",
        f"{len(corpus.CASES)} cases; the hostile ones (†) are also collected on their own, within "
        f"{HOSTILE_SECONDS} s and {HOSTILE_MB} MB.",
        "",
        "| # | case | outcome | code | message (as recorded) |",
        "|---|------|---------|------|-----------------------|",
    ]
    for n, case in enumerate(corpus.CASES, start=1):
        exp = case.expect
        message = "—"
        if exp.outcome == "duplicate":
            same = conn.execute("SELECT f.name FROM aliases a JOIN files f ON f.sha256 = a.sha256 WHERE a.path = ?",
                                (str(bad[case.name].resolve()),)).fetchone()
            message = CATALOGUE["duplicate_file"][1].format(detail=same[0]) if same else "?"
        elif exp.code:
            row = conn.execute(
                "SELECT p.message FROM problems p JOIN files f ON f.id = p.file_id WHERE f.name = ? AND p.code = ?"
                + (" AND p.sheet = ?" if exp.sheet else "") + " ORDER BY p.id",
                (bad[case.name].name, exp.code, *([exp.sheet] if exp.sheet else []))).fetchone()
            message = row[0] if row else "?"
        title = case.title + (" †" if case.hostile else "")
        where = f" ({exp.sheet})" if exp.outcome == "sheet" else ""
        cells = [str(n), title, OUTCOME_TEXT[exp.outcome] + where, f"`{exp.code}`" if exp.code else "",
                 message.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


HAND_WRITTEN = "<!-- generated above; written by hand below -->\n"


def test_docs_corpus_table_matches_the_run(built, mixed):
    """The table at the top of docs/corpus.md is what the run recorded; the notes after the
    marker (the hunt through real-world files) are kept as they are."""
    ws, _, bad, _ = built
    text = corpus_table(ws, bad)
    if os.environ.get("HAPPYHOME_WRITE_DOCS"):
        old = DOCS.read_text(encoding="utf-8") if DOCS.is_file() else ""
        notes = old[old.index(HAND_WRITTEN):] if HAND_WRITTEN in old else ""
        DOCS.parent.mkdir(exist_ok=True)
        DOCS.write_text(text + ("\n" + notes if notes else ""), encoding="utf-8")
    assert DOCS.is_file(), "run with HAPPYHOME_WRITE_DOCS=1 to create docs/corpus.md"
    assert DOCS.read_text(encoding="utf-8").split("\n" + HAND_WRITTEN)[0] == text


def test_a_sheet_too_large_to_read_is_named_as_such_not_as_missing(built, mixed):
    """The form lists the sheet and it is there: it is refused for its size, and nothing says it
    has disappeared."""
    ws, _, bad, _ = built
    conn = ledger(ws)
    for case in ("far_cell", "wide_sheet", "xlsb_far_cell"):
        codes = {code for (code,) in conn.execute(
            "SELECT p.code FROM problems p JOIN files f ON f.id = p.file_id WHERE f.name = ?", (bad[case].name,))}
        assert codes & {"sheet_too_long", "sheet_unreadable"}, (case, codes)
        assert "missing_sheet" not in codes, (case, codes)
