"""No returned file can stop a collection: each is read in a worker process under a memory and a
time cap; one that panics, aborts, runs out of memory or of time is rejected alone."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import openpyxl
import psutil
import pytest
import python_calamine as pc
import xlsxwriter

import pipeline.collect as collect_module
from conftest import fill_form, run
from pipeline import reader
from pipeline.reader import Limits, Size, _form_sized, _xml_size
from pipeline.errors import ConfigError
from pipeline.i18n import _, set_language
from pipeline.workers import CRASHED, NO_MEMORY, START_METHOD, TIMED_OUT, WorkerFailed, Workers
from test_collect import PERIOD, answers, make_forms, returned

MB = 2**20


class PanicException(BaseException):
    """Stands in for pyo3_runtime.PanicException: a BaseException, missed by `except Exception`."""


def abort_xlsx() -> bytes:
    """1 cell at A1 and 1 at XFD1048576: calamine allocates the whole grid (~550 GB) and aborts."""
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    sheet = book.add_worksheet("S")
    sheet.write(0, 0, 1)
    sheet.write(1_048_575, 16_383, 2)
    book.close()
    return buf.getvalue()


def calamine_grid(data: bytes) -> int:
    """Build every sheet's grid with calamine, bypassing happyhome's size checks."""
    book = pc.CalamineWorkbook.from_filelike(io.BytesIO(data))
    return sum(len(book.get_sheet_by_name(name).to_python()) for name in book.sheet_names)


def faulty(data: bytes, name: str, context: object):
    """A worker target that misbehaves as its file name asks."""
    if name == "panic":
        raise PanicException("called `Option::unwrap()` on a `None` value")
    if name == "abort":
        os.abort()
    if name == "native-abort":
        return calamine_grid(data)
    if name == "hang":
        time.sleep(60)
    if name == "memory":
        hog = bytearray(2000 * MB)
        return len(hog)
    return (name, len(data), context)


def slowish(data: bytes, name: str, context: object) -> str:
    time.sleep(0.6)
    return name


def growing(data: bytes, name: str, context: object) -> int:
    """Takes memory 20 MB at a time (bytearray zero-fills: resident at once), up to 3 GB."""
    hog = []
    for _n in range(150):
        hog.append(bytearray(20 * MB))
        time.sleep(0.01)
    return len(hog)


def worded(data: bytes, name: str, context: object) -> str:
    """A message in the worker's terminal language."""
    return _("the disk is full")


def cyclic(data: bytes, name: str, context: object) -> tuple:
    """Make `data`'s length in cyclic garbage; say how the collector is set and how often it ran."""
    import gc

    before = sum(stat["collections"] for stat in gc.get_stats())
    for _ in range(len(data)):
        pair: list = []
        pair.append([pair])  # freed by the cyclic collector only
    return gc.get_threshold()[0], gc.get_freeze_count(), sum(s["collections"] for s in gc.get_stats()) - before


def test_a_worker_collects_cycles_but_seldom_and_leaves_what_it_inherited_alone():
    # A worker reading files makes tens of thousands of short-lived lists: its collector runs
    # every COLLECT_EVERY net new objects, not Python's default 700, and never looks at what it
    # inherited (frozen). Cyclic garbage is still collected.
    from pipeline.workers import COLLECT_EVERY

    with Workers(cyclic, None, n=1) as workers:
        threshold, frozen, runs = workers.result(workers.submit(b"x" * 10, "few"))
        assert threshold == COLLECT_EVERY and runs == 0
        assert frozen > 0  # under fork what the main process had, under spawn the worker's imports
        _, _, runs = workers.result(workers.submit(b"x" * 4 * COLLECT_EVERY, "many"))
        assert runs >= 4  # 8 * COLLECT_EVERY lists in cycles: collected along the way


# -- the worker processes on their own -----------------------------------------------------------
@pytest.mark.parametrize("bad, code", [("panic", CRASHED), ("abort", CRASHED), ("native-abort", CRASHED),
                                       ("hang", TIMED_OUT), ("memory", NO_MEMORY)])
def test_a_failing_file_is_reported_and_the_next_one_is_read(bad, code):
    data = abort_xlsx() if bad == "native-abort" else b"x"
    with Workers(faulty, "ctx", n=1, max_memory_mb=300, max_seconds=2) as workers:
        before = workers.submit(b"abc", "good-1")
        failing = workers.submit(data, bad)
        after = workers.submit(b"abcd", "good-2")
        assert workers.result(before) == ("good-1", 3, "ctx")
        with pytest.raises(WorkerFailed) as failed:
            workers.result(failing)
        assert workers.result(after) == ("good-2", 4, "ctx")  # a fresh worker took over
    assert failed.value.code == code
    if bad == "panic":
        assert "PanicException" in failed.value.technical
    if bad in ("abort", "native-abort"):
        assert "SIGABRT" in failed.value.technical


def test_results_are_kept_until_asked_for_in_any_order():
    with Workers(faulty, 7, n=2) as workers:
        tickets = [workers.submit(b"x" * n, f"f{n}") for n in range(10)]
        assert [workers.result(t) for t in reversed(tickets)] == [(f"f{n}", n, 7) for n in reversed(range(10))]


def test_a_time_cap_counts_from_when_the_file_reached_a_worker():
    """Files queued behind a slow one are not charged for the wait."""
    with Workers(slowish, None, n=1, max_seconds=1) as workers:
        tickets = [workers.submit(b"", f"f{n}") for n in range(3)]
        assert [workers.result(t) for t in tickets] == ["f0", "f1", "f2"]


def test_the_watchdog_ends_a_worker_that_grows_past_the_memory_cap():
    """Where the kernel has no RLIMIT_AS (Windows), the main process watches each worker's
    resident memory and ends one past its cap; forced here on Linux, where RLIMIT_AS is not set."""
    with Workers(growing, None, n=1, max_memory_mb=200, max_seconds=30, watchdog=True) as workers:
        assert workers.watchdog
        before = workers.submit(b"abc", "good-1")
        failing = workers.submit(b"", "grow")
        started = time.monotonic()
        with pytest.raises(WorkerFailed) as failed:
            workers.result(failing)
        took = time.monotonic() - started
        workers.target = faulty  # the replacement worker reads the next file as usual
    assert failed.value.code == NO_MEMORY and "(watchdog)" in failed.value.technical
    resident = int(failed.value.technical.split(" MB")[0])
    assert 200 < resident < 1000, failed.value.technical  # stopped near the cap, far below 3 GB
    assert took < 10


def test_the_watchdog_leaves_a_file_within_the_cap_alone():
    with Workers(faulty, "ctx", n=2, max_memory_mb=200, watchdog=True) as workers:
        tickets = [workers.submit(b"x" * n, f"f{n}") for n in range(6)]
        assert [workers.result(t) for t in tickets] == [(f"f{n}", n, "ctx") for n in range(6)]


def _started_by(pid: int) -> str:
    """spawn or fork, from the worker's command line: a spawned one runs multiprocessing.spawn."""
    return "spawn" if "multiprocessing.spawn" in " ".join(psutil.Process(pid).cmdline()) else "fork"


def test_workers_start_the_way_this_run_asks():
    """fork on Linux unless HAPPYHOME_START_METHOD says otherwise: the spawn run of this suite
    (tests/test_portable.py) sets it to spawn, the way Windows starts every worker."""
    with Workers(faulty, None, n=1) as workers:
        assert workers.result(workers.submit(b"", "x")) == ("x", 0, None)  # started (a spawned one has run exec)
        assert _started_by(workers._slots[0].process.pid) == (os.environ.get(START_METHOD) or "fork")


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_the_start_method_can_be_forced_and_the_terminal_language_reaches_the_workers(monkeypatch, method):
    monkeypatch.setenv(START_METHOD, method)
    for lang, words in (("en", "the disk is full"), ("zh", "磁盘已满")):
        set_language(lang)
        with Workers(worded, None, n=1) as workers:
            assert workers.result(workers.submit(b"", "x")) == words
            assert workers.method == method and _started_by(workers._slots[0].process.pid) == method


def test_a_start_method_this_system_does_not_offer_is_a_config_error(workspace, monkeypatch):
    monkeypatch.setenv(START_METHOD, "threads")
    with pytest.raises(ConfigError, match="HAPPYHOME_START_METHOD"):
        Workers(faulty, None)
    forms = make_forms(workspace)
    fill_form(forms["E01"], answers("E01"), save_as=returned(workspace) / "E01.xlsx")
    result = run(workspace, "collect", "--system", "community", "--period", PERIOD, expect=2)
    assert "HAPPYHOME_START_METHOD 设置为 threads" in result.output


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_end_when_their_collect_is_killed(method):
    """An orphaned worker must not live on (under fork it holds the workspace lock's file)."""
    script = ("import sys, time\n"
              "from pipeline.workers import Workers\n"
              "workers = Workers(print, None, n=2)\n"  # print(data, name, context): to the worker's null output
              "assert [workers.result(workers.submit(b'', str(n))) for n in range(4)] == [None] * 4\n"
              "print(' '.join(str(s.process.pid) for s in workers._slots), flush=True)\n"
              "time.sleep(60)\n")
    env = {**os.environ, START_METHOD: method}
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pids = [int(p) for p in holder.stdout.readline().split()]
        children = [psutil.Process(p) for p in pids]
        assert len(children) == 2 and all(_started_by(p) == method for p in pids)
    finally:
        holder.kill()
        holder.wait()
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []


def test_workers_exit_when_closed():
    workers = Workers(faulty, None, n=2)
    procs = [psutil.Process(s.process.pid) for s in workers._slots]
    workers.close()
    gone, alive = psutil.wait_procs(procs, timeout=5)
    assert alive == []


# -- a whole collect -------------------------------------------------------------------------------
def _peak_tree_memory(stop: threading.Event, out: list[int]) -> None:
    """The highest memory of this process and its workers together, as proportional set size:
    forked workers share the parent's pages, which RSS would count once per process."""
    me = psutil.Process()
    peak = 0
    while not stop.is_set():
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_full_info().pss
            except psutil.Error:
                pass
        peak = max(peak, total)
        time.sleep(0.01)
    out.append(peak)


examine = collect_module.examine
READS: list[str] = []  # appended to in the workers only: it stays empty in this process


def misbehaving(data: bytes, name: str, ctx: collect_module.Context) -> collect_module.Examined:
    """collect's examine, but some files panic, abort, hang, eat memory or really abort calamine.
    Module-level so that a spawned worker (Windows; HAPPYHOME_START_METHOD=spawn) can import it."""
    READS.append(name)
    if data == b"panic":
        raise PanicException("called `Result::unwrap()` on an `Err` value")
    if data == b"abort":
        os.abort()
    if data == b"hang":
        time.sleep(60)
    if data == b"memory":
        bytearray(2000 * MB)
    if name == "grid.xlsx":
        calamine_grid(data)  # a real native abort, past every size check
    return examine(data, name, ctx)


@pytest.mark.parametrize("workers", [1, 2], ids=["one worker", "two workers"])
def test_collect_goes_on_past_files_that_panic_abort_hang_or_eat_memory(workspace, monkeypatch, workers):
    """The bad files are rejected with a plain reason, the good ones counted, the report written,
    and a second run does not read the bad files again (they are known by their hash)."""
    forms = make_forms(workspace)
    folder = returned(workspace)
    for assessor in ("E01", "E02"):
        fill_form(forms[assessor], answers(assessor), save_as=folder / f"{assessor}.xlsx")
    bad = {"panic.xlsx": b"panic", "abort.xlsx": b"abort", "grid.xlsx": abort_xlsx(),
           "hang.xlsx": b"hang", "memory.xlsx": b"memory"}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    (workspace / "happyhome.toml").write_text(
        f"[limits]\nmax_seconds_per_file = 3\nmax_memory_mb = 300\n[collect]\nworkers = {workers}\npool_min_files = 1\n",
        encoding="utf-8")
    monkeypatch.setattr(collect_module, "examine", misbehaving)
    stop, peak = threading.Event(), []
    watch = threading.Thread(target=_peak_tree_memory, args=(stop, peak))
    watch.start()
    started = time.monotonic()
    try:
        result = run(workspace, "collect", "--system", "community", "--period", PERIOD)
    finally:
        stop.set()
        watch.join()
    took = time.monotonic() - started
    assert READS == []  # no returned file was parsed in the collect process itself
    assert peak[0] < 1000 * MB, f"peak {peak[0] / MB:.0f} MB"
    assert took < 30
    conn = sqlite3.connect(workspace / "ledger" / "happyhome.sqlite")
    files = dict(conn.execute("SELECT name, status FROM files"))
    reasons = dict(conn.execute("SELECT name, reason FROM files"))
    technical = dict(conn.execute("SELECT f.name, p.technical FROM problems p JOIN files f ON f.id = p.file_id"))
    conn.close()
    assert files == {"E01.xlsx": "accepted", "E02.xlsx": "accepted", **{n: "rejected" for n in bad}}
    for name in ("panic.xlsx", "abort.xlsx", "grid.xlsx"):
        assert reasons[name].startswith("文件无法读取（读取时出错）"), reasons[name]
    assert reasons["hang.xlsx"].startswith("文件读取超时（超过 3 秒）")
    assert reasons["memory.xlsx"].startswith("文件读取所需内存超出上限（300 MB）")
    for name in bad:  # the reason is for the office: the technical words are kept apart, for support
        assert not any(word in reasons[name] for word in ("Panic", "SIG", "MemoryError", "worker", "unwrap"))
    assert "PanicException" in technical["panic.xlsx"]
    assert "SIGABRT" in technical["abort.xlsx"] and "SIGABRT" in technical["grid.xlsx"]
    assert "MemoryError" in technical["memory.xlsx"] and "3 s" in technical["hang.xlsx"]

    report = openpyxl.load_workbook(workspace / "output" / PERIOD / "collection-community.xlsx")
    listed = {row[0].value: row[2].value for row in report["文件"].iter_rows(min_row=2)}
    assert {n: listed[n] for n in bad} == {n: "已拒收" for n in bad}
    assert listed["E01.xlsx"] == listed["E02.xlsx"] == "已接收"

    again_started = time.monotonic()
    again = run(workspace, "collect", "--system", "community", "--period", PERIOD)
    assert time.monotonic() - again_started < 10  # the hanging file is not read again
    assert "already collected" in again.output or "已收取" in again.output
    assert READS == []


def _sheet_zip(sheet_data: str, dimension: str = "A1:B2", prefix: str = "") -> zipfile.ZipFile:
    p = f"{prefix}:" if prefix else ""
    xml = (f'<?xml version="1.0"?><{p}worksheet xmlns{":" + prefix if prefix else ""}="urn:x">'
           f'<{p}dimension ref="{dimension}"/><{p}sheetData>{sheet_data}</{p}sheetData></{p}worksheet>')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", xml)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


FORM_ROWS = '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="H1"/></row><row r="999"><c r="Z999"><v>5</v></c></row>'


def test_a_form_sized_sheet_is_measured_in_one_pass_and_anything_else_is_counted():
    limits = Limits()
    part = "xl/worksheets/sheet1.xml"
    assert _form_sized(_sheet_zip(FORM_ROWS, "A1:Z999"), part, limits) == Size(999, 26)
    # the declared dimension still counts: a sheet that says it is huge is measured carefully
    assert _xml_size(_sheet_zip(FORM_ROWS, "A1:XFD1048576"), part, limits).over(limits)
    for beyond in ('<row r="1"><c r="AA1"/></row>',          # a column past Z
                   '<row r="1000"><c r="A1000"/></row>',     # a row with four digits
                   '<row r="1"><c r="XFD1048576"/></row>',
                   '<row r="1"><c t="s" r="A1"/></row>',     # the reference not first
                   '<row r="1"><c r="$A$1"/></row>',
                   '<row r="1"><c/><c/></row>',              # cells placed by position
                   '<row><c r="A1"/></row>',
                   '<row r="1"><c\tr="A1"/></row>'):
        assert _form_sized(_sheet_zip(beyond), part, limits) is None, beyond
    assert _form_sized(_sheet_zip(FORM_ROWS, prefix="x"), part, limits) is None  # <x:c ...: counted
    big = '<row r="1">' + '<c r="A1"/>' * (limits.max_rows * 64 + 1) + "</row>"  # more cells than allowed
    assert _form_sized(_sheet_zip(big), part, limits) is None
    assert _xml_size(_sheet_zip(big), part, limits).over(limits)
    # what the careful count finds for the far ones, the one-pass check never hides
    assert _xml_size(_sheet_zip('<row r="1"><c r="XFD1048576"/></row>'), part, limits).over(limits)
    assert _xml_size(_sheet_zip('<row r="1"><c/></row>' * 1001), part, limits).over(limits)
    # calamine reads any tag named c as a cell, whatever its prefix or the white space after its
    # name: a far one in a row of a short number is found by both passes
    for odd in ('<row r="1"><x:c r="XFD1048576"><x:v>1</x:v></x:c></row>',
                '<row r="1"><c\nr="XFD1048576"><v>1</v></c></row>',
                '<row r="1"><c\r\nr="XFD1048576"><v>1</v></c></row>',
                '<x:row r="1"><c r="A1"/></x:row><x:row\tr="1048576"><c r="A1"/></x:row>'):
        assert _form_sized(_sheet_zip(FORM_ROWS + odd), part, limits) is None, odd
        assert _xml_size(_sheet_zip(FORM_ROWS + odd), part, limits).over(limits), odd


@pytest.mark.parametrize("where", ["before", "after", "second"])
def test_calamine_reads_cells_only_inside_the_first_sheetData(tmp_path, where):
    # The one-pass size proof searches only between the first and the last mention of sheetData,
    # because calamine reads cells nowhere else. Should a calamine read a cell placed outside (in
    # front of the sheetData, after it, or in a second one), this fails and the proof must widen.
    import xlsxwriter as xw

    book = tmp_path / "plain.xlsx"
    wb = xw.Workbook(str(book))
    wb.add_worksheet("S").write(0, 0, 1)
    wb.close()
    stray = '<c r="E9"><v>7</v></c>'
    change = {"before": lambda x: x.replace("<sheetData>", stray + "<sheetData>", 1),
              "after": lambda x: x.replace("</sheetData>", "</sheetData>" + stray, 1),
              "second": lambda x: x.replace("</sheetData>", f'</sheetData><sheetData><row r="9">{stray}</row></sheetData>', 1)}
    out = tmp_path / f"{where}.xlsx"
    with zipfile.ZipFile(book) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = change[where](data.decode()).encode()
            zout.writestr(info.filename, data)
    sheet = pc.CalamineWorkbook.from_path(str(out)).get_sheet_by_name("S")
    assert sheet.end == (0, 0) and sheet.to_python() == [[1.0]]


def _patched(archive: zipfile.ZipFile, at: int, value: bytes, central: bool = True) -> zipfile.ZipFile:
    """The same zip with `value` written `at` bytes into its (first) central directory or local header."""
    data = bytearray(archive.fp.getvalue())
    start = data.find(b"PK\x01\x02" if central else b"PK\x03\x04")
    data[start + at:start + at + len(value)] = value
    return zipfile.ZipFile(io.BytesIO(bytes(data)))


def test_the_one_pass_check_reads_a_part_as_zipfile_would_and_leaves_anything_odd_to_the_careful_count():
    limits = Limits()
    part = "xl/worksheets/sheet1.xml"
    # stored rather than deflated: read as it is
    xml = f'<worksheet><dimension ref="A1:Z999"/><sheetData>{FORM_ROWS}</sheetData></worksheet>'
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(part, xml)
    assert _form_sized(zipfile.ZipFile(io.BytesIO(buf.getvalue())), part, limits) == Size(999, 26)
    # a directory that understates the size: inflating stops past the cap and proves nothing (the
    # careful path then sees the damage, and calamine refuses a part larger than it declares)
    big = _sheet_zip('<row r="1">' + '<c r="A1"/>' * (limits.max_rows * 64 + 1) + "</row>")
    lying = _patched(big, 24, (100).to_bytes(4, "little"))
    assert lying.getinfo(part).file_size == 100
    assert _form_sized(lying, part, limits) is None
    # a deflate stream cut short, and a local header naming another part: not read in one pass
    form = _sheet_zip(FORM_ROWS, "A1:Z999")
    cut = _patched(form, 20, (form.getinfo(part).compress_size // 2).to_bytes(4, "little"))
    assert _form_sized(cut, part, limits) is None
    assert _form_sized(_patched(form, 30, b"y", central=False), part, limits) is None
    assert _form_sized(form, part, limits) == Size(999, 26)


def _three_sheet_xlsx(far: bool = False) -> bytes:
    """A small workbook as xlsxwriter writes a form: two filled sheets and a guide; with `far`, the
    second sheet also has a cell at XFD1048576."""
    buf = io.BytesIO()
    book = xlsxwriter.Workbook(buf, {"in_memory": True})
    guide = book.add_worksheet("填表说明")
    guide.write(0, 0, "说明")
    for n, name in enumerate(("C001", "C002")):
        sheet = book.add_worksheet(name)
        sheet.write_row(0, 0, ["编号", "得分", "备注"])
        for r in range(1, 20):
            sheet.write_row(r, 0, [f"C{r:02d}", r + n * 0.5, "理由" * (r % 3)])
    if far:
        book.get_worksheet_by_name("C002").write(1_048_575, 16_383, 1)
    book.close()
    return buf.getvalue()


def _calamine_rows(data: bytes) -> dict[str, list[list]]:
    book = pc.CalamineWorkbook.from_filelike(io.BytesIO(data))
    return {name: book.get_sheet_by_name(name).to_python(skip_empty_area=False) for name in book.sheet_names}


def test_calamine_parses_the_very_bytes_the_size_proof_inflated_stored_in_a_rebuilt_package():
    data = _three_sheet_xlsx()
    opened = reader.sniff(data)
    kept = reader.Inflated()
    assert reader.oversize_sheets(opened, Limits(), frozenset({"填表说明"}), kept) == {}
    assert sorted(kept.parts) == ["xl/worksheets/sheet2.xml", "xl/worksheets/sheet3.xml"]  # not the skipped guide
    package = reader.stored_package(opened.archive, kept.parts)
    rebuilt = zipfile.ZipFile(io.BytesIO(package))
    assert rebuilt.testzip() is None  # every CRC-32 is the original's, and holds
    original = {i.filename: i for i in opened.archive.infolist()}
    assert [i.filename for i in rebuilt.infolist()] == list(original)
    for info in rebuilt.infolist():
        assert info.CRC == original[info.filename].CRC and info.file_size == original[info.filename].file_size
        assert info.compress_type == (zipfile.ZIP_STORED if info.filename in kept.parts
                                      else original[info.filename].compress_type)
        assert rebuilt.read(info.filename) == opened.archive.read(info.filename)
        if info.filename in kept.parts:
            assert kept.parts[info.filename] == opened.archive.read(info.filename)
    # what collect reads is what calamine reads from the file as it came
    book = reader.read_workbook("form.xlsx", data=data, skip=frozenset({"填表说明"}))
    assert {s.name: s.rows for s in book.sheets} == {k: v for k, v in _calamine_rows(data).items() if k != "填表说明"}
    assert book.sheets[1].rows[19] == ["C19", 19.5, "理由"]


def test_a_sheet_with_a_far_reference_is_never_kept_nor_parsed():
    data = _three_sheet_xlsx(far=True)
    opened = reader.sniff(data)
    kept = reader.Inflated()
    assert set(reader.oversize_sheets(opened, Limits(), frozenset(), kept)) == {"C002"}
    assert "xl/worksheets/sheet3.xml" not in kept.parts and "xl/worksheets/sheet2.xml" in kept.parts
    book = reader.read_workbook("far.xlsx", data=data)  # would abort the process if calamine built C002's grid
    assert book.sheet("C002").too_long == "超过 1000 行" and book.sheet("C002").rows == []
    assert book.sheet("C001").rows[1] == ["C01", 1.0, "理由"]


def _no_package(monkeypatch, data: bytes) -> list:
    """read_workbook's sheets as calamine reads the file as it came (the path before the package)."""
    with monkeypatch.context() as m:
        m.setattr(reader, "stored_package", lambda archive, parts: None)
        book = reader.read_workbook("x.xlsx", data=data)
    return [(s.name, s.rows, s.error, s.too_long) for s in book.sheets]


def test_a_part_whose_sizes_lie_is_left_as_it_came(monkeypatch):
    data = _three_sheet_xlsx()
    part = "xl/worksheets/sheet2.xml"
    archive = zipfile.ZipFile(io.BytesIO(data))
    true_size = archive.getinfo(part).file_size
    # the directory understates the inflated size: proven small, but not as long as it says, so
    # not stored: calamine gets the original entry and judges it as it did before
    lying = bytearray(data)
    central = lying.find(b"PK\x01\x02")
    while lying[central + 46:central + 46 + len(part)] != part.encode():
        central = lying.find(b"PK\x01\x02", central + 4)
    lying[central + 24:central + 28] = (true_size - 10).to_bytes(4, "little")
    lying = bytes(lying)
    opened = reader.sniff(lying)
    kept = reader.Inflated()
    reader.oversize_sheets(opened, Limits(), frozenset(), kept)
    assert part not in kept.parts and "xl/worksheets/sheet3.xml" in kept.parts
    package = reader.stored_package(opened.archive, kept.parts)
    assert zipfile.ZipFile(io.BytesIO(package)).getinfo(part).compress_type == zipfile.ZIP_DEFLATED
    assert [(s.name, s.rows, s.error, s.too_long) for s in reader.read_workbook("x.xlsx", data=lying).sheets] \
        == _no_package(monkeypatch, lying)
    # a local header that lies about the sizes (the directory is what counts, for zipfile and the proof):
    # the rebuilt package has honest local headers and reads as the file did
    local = data.rfind(b"PK\x03\x04", 0, data.find(part.encode()))
    fibbing = bytearray(data)
    fibbing[local + 18:local + 26] = (5).to_bytes(4, "little") * 2
    fibbing = bytes(fibbing)
    assert [(s.name, s.rows) for s in reader.read_workbook("x.xlsx", data=fibbing).sheets] \
        == [(s[0], s[1]) for s in _no_package(monkeypatch, fibbing)] \
        == [(k, v) for k, v in _calamine_rows(data).items()]


def test_a_bomb_like_part_within_the_limits_is_kept_only_within_the_budget():
    # 600 KB of padding that deflates to under 1 KB: too small a part for check_zip's ratio rule, and
    # proven cell by cell like any other; kept only while the budget lasts
    padding = " " * 600_000
    xml = (f'<worksheet><dimension ref="A1:B1"/><sheetData>{padding}<row r="1"><c r="A1" t="n"><v>1</v></c>'
           f'</row></sheetData></worksheet>')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", xml)
    archive = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    part = "xl/worksheets/sheet1.xml"
    assert archive.getinfo(part).compress_size < 2_000
    kept = reader.Inflated(budget=500_000)
    assert _form_sized(archive, part, Limits(), kept) == Size(1, 2)
    assert kept.parts == {} and kept.budget == 500_000  # over the budget: left for calamine to inflate
    kept = reader.Inflated()
    assert _form_sized(archive, part, Limits(), kept) == Size(1, 2)
    assert kept.parts[part] == xml.encode() and kept.budget == reader.Inflated().budget - len(xml)
    # beyond what a form-sized part may hold: not proven in one pass, so never kept
    far = xml.replace(padding, " " * 800_000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(part, far)
    kept = reader.Inflated()
    assert _form_sized(zipfile.ZipFile(io.BytesIO(buf.getvalue())), part, Limits(), kept) is None
    assert kept.parts == {}


def test_a_package_that_cannot_be_copied_plainly_goes_to_calamine_as_it_came():
    data = _three_sheet_xlsx()
    archive = zipfile.ZipFile(io.BytesIO(data))
    parts = {"xl/worksheets/sheet2.xml": archive.read("xl/worksheets/sheet2.xml")}
    assert reader.stored_package(archive, parts) is not None
    # two entries of one name: which one a reader takes differs between zip libraries
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info in archive.infolist():
            z.writestr(info.filename, archive.read(info.filename))
        with pytest.warns(UserWarning):
            z.writestr("xl/worksheets/sheet2.xml", b"<worksheet/>")
    assert reader.stored_package(zipfile.ZipFile(io.BytesIO(buf.getvalue())), parts) is None
    # a local header naming another part
    patched = bytearray(data)
    at = patched.find(b"xl/worksheets/sheet3.xml")
    patched[at:at + 2] = b"yy"
    assert reader.stored_package(zipfile.ZipFile(io.BytesIO(bytes(patched))), parts) is None
    # not in memory (zipfile reading a real file): nothing to copy from
    assert reader.stored_package(zipfile.ZipFile(io.BytesIO(data)).__class__(io.BufferedReader(io.BytesIO(data))),
                                 parts) is None
