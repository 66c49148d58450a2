"""Faults: collect killed halfway, two collects at once, an output that cannot be written.

A round of 40 returned workbooks (40 assessors x 3 communities) is collected by
`python -m pipeline collect` in a child process, so that it can be killed with SIGKILL and
run twice at once. The ledger must stay consistent, count nothing twice, and end with the
same scores as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import openpyxl
import pytest

from conftest import run
from pipeline.config import Workspace
from pipeline.forms import plan_forms, write_forms
from pipeline.roster import read_roster, write_roster
from pipeline.systems import load_system

PERIOD, SYSTEM = "2026-11", "community"
N_FILES = 40
SUBJECTS = [
    ("C001", "湖滨街道东坡路社区", "创新实践社区", "浙江省", "杭州市", "上城区"),
    ("C002", "玉林街道黉门街社区", "创新实践社区", "四川省", "成都市", "武侯区"),
    ("C003", "南湖街道南湖社区", "创新实践社区", "湖北省", "武汉市", "洪山区"),
]
N_ITEMS = len(load_system(SYSTEM).items)
TEMP_NAME = re.compile(r"^\..+\.[^.]+$")  # atomic.atomic_path's temporary files: .<stem>.<random><suffix>


def make_round(root: Path, n: int = N_FILES, settings: str = "", workers: int = 1) -> Path:
    """A workspace whose returned folder holds n filled workbooks, one per assessor."""
    run(root, "init", str(root))
    assessors = [(f"A{k:02d}", f"评估人{k}", "测试单位", f"a{k}@example.org") for k in range(1, n + 1)]
    write_roster(root / "input" / "roster.xlsx", SUBJECTS, assessors, [(a[0], s[0]) for a in assessors for s in SUBJECTS])
    # few workers: files go into the ledger one by one, slowly enough to be killed in between
    (root / "happyhome.toml").write_text(f"[collect]\nworkers = {workers}\npool_min_files = 2\n" + settings,
                                         encoding="utf-8")
    ws = Workspace.open(root)
    system = load_system(SYSTEM)
    specs = plan_forms(ws, system, PERIOD, read_roster(root / "input" / "roster.xlsx"), ws.returned(PERIOD))
    specs = [dataclasses.replace(spec, answers={
        s.code: {item.code: (max(0.0, item.max - (k + j + m) % 3), f"{spec.assessor.name} 的说明 {j}")
                 for m, item in enumerate(system.items)}
        for j, s in enumerate(spec.subjects)}) for k, spec in enumerate(specs)]
    write_forms(specs)
    return root


def collect_cmd(ws: Path, *paths: Path) -> list[str]:
    return [sys.executable, "-m", "pipeline", "-w", str(ws), "collect", "--system", SYSTEM, "--period", PERIOD,
            *map(str, paths)]


def ledger_path(ws: Path) -> Path:
    return Workspace.open(ws).path("ledger")


def count_files(ws: Path) -> int:
    path = ledger_path(ws)
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def wait_for_files(ws: Path, proc: subprocess.Popen, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = count_files(ws)
        if n >= at_least or proc.poll() is not None:
            return n
        time.sleep(0.005)
    raise AssertionError("collect made no progress")


def accepted(ws: Path) -> list[tuple]:
    conn = sqlite3.connect(ledger_path(ws))
    rows = conn.execute(
        """SELECT s.assessor, s.subject, c.item, c.raw, c.score, c.remark, f.name, s.sheet, c.cell
           FROM scores c JOIN sheets s ON s.id = c.sheet_id JOIN files f ON f.id = s.file_id
           WHERE s.status = 'accepted' ORDER BY 1, 2, 3""").fetchall()
    conn.close()
    return rows


def dump(ws: Path) -> list[str]:
    conn = sqlite3.connect(ledger_path(ws))
    lines = list(conn.iterdump())
    conn.close()
    return lines


def assert_consistent(ws: Path) -> int:
    """Every file in the ledger is whole: its 3 sheets, each with every item's score."""
    conn = sqlite3.connect(ledger_path(ws))
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    files = conn.execute("SELECT id, status, archive_path, sha256 FROM files").fetchall()
    for file_id, status, archive, sha in files:
        assert status == "accepted"
        sheets = conn.execute("SELECT id, status FROM sheets WHERE file_id = ?", (file_id,)).fetchall()
        assert len(sheets) == len(SUBJECTS) and all(s == "accepted" for _, s in sheets)
        for sheet_id, _ in sheets:
            assert conn.execute("SELECT count(*) FROM scores WHERE sheet_id = ?", (sheet_id,)).fetchone()[0] == N_ITEMS
        assert Path(archive).is_file() and Path(archive).name.startswith(sha)  # archived before it was recorded
    assert conn.execute("SELECT count(*) FROM sheets WHERE file_id NOT IN (SELECT id FROM files)").fetchone()[0] == 0
    conn.close()
    return len(files)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.is_file() and TEMP_NAME.match(p.name) and not p.name.startswith(".lo")]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2], ids=["one worker", "two workers"])
def test_sigkill_midway_leaves_whole_files_and_a_rerun_finishes_the_same(tmp_path, workers):
    import psutil

    round40 = make_round(tmp_path / "ws", workers=workers)
    twin = tmp_path / "twin"
    shutil.copytree(round40, twin)

    proc = subprocess.Popen(collect_cmd(round40), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = wait_for_files(round40, proc, at_least=3)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) == workers  # returned files are always read in worker processes
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "collect finished before it could be killed"
    # the pool's workers go too: orphaned, they would hold the inherited workspace lock
    gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    kept = assert_consistent(round40)
    assert seen <= kept < N_FILES
    assert len(accepted(round40)) == kept * len(SUBJECTS) * N_ITEMS
    assert not (round40 / "output" / PERIOD / f"collection-{SYSTEM}.xlsx").exists()

    again = subprocess.run(collect_cmd(round40), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert re.search(rf"此前已收取\s*│\s*{kept}\s*│", again.stdout), again.stdout
    assert assert_consistent(round40) == N_FILES

    whole = subprocess.run(collect_cmd(twin), capture_output=True, text=True, timeout=120)
    assert whole.returncode == 0, whole.stderr
    assert accepted(round40) == accepted(twin)
    assert len(accepted(twin)) == N_FILES * len(SUBJECTS) * N_ITEMS
    assert temp_files(round40 / "output") == []


def _two_at_once(ws: Path) -> tuple[subprocess.Popen, subprocess.Popen]:
    """Two collects started together on one workspace; the first to lock it is `winner`."""
    a = subprocess.Popen(collect_cmd(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(collect_cmd(ws), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for proc in (a, b):
        proc.out, proc.err = proc.communicate(timeout=180)
    return a, b


@pytest.mark.slow
def test_a_second_collect_refuses_while_the_first_holds_the_workspace(tmp_path):
    ws = make_round(tmp_path / "ws", settings="lock_wait = 0\n")
    a, b = _two_at_once(ws)
    assert sorted([a.returncode, b.returncode]) == [0, 5], (a.err, b.err)
    winner, loser = (a, b) if a.returncode == 0 else (b, a)
    assert "另一个 happyhome 运行" in loser.err and "Traceback" not in loser.err
    assert f"（进程 {winner.pid}）" in loser.err
    assert assert_consistent(ws) == N_FILES
    assert len(accepted(ws)) == N_FILES * len(SUBJECTS) * N_ITEMS


@pytest.mark.slow
def test_a_second_collect_waits_for_the_first_and_counts_nothing_twice(tmp_path):
    ws = make_round(tmp_path / "ws", settings="lock_wait = 60\n")
    a, b = _two_at_once(ws)
    assert a.returncode == 0 and b.returncode == 0, (a.err, b.err)
    already = [re.search(r"此前已收取\s*│\s*(\d+)\s*│", p.out) for p in (a, b)]
    assert sorted(int(m.group(1)) for m in already) == [0, N_FILES], (a.out, b.out)
    assert assert_consistent(ws) == N_FILES
    conn = sqlite3.connect(ledger_path(ws))
    assert conn.execute("SELECT count(*) FROM aliases").fetchone()[0] == 0
    assert len(accepted(ws)) == N_FILES * len(SUBJECTS) * N_ITEMS


def test_an_output_folder_that_cannot_be_written_stops_before_the_ledger_changes(tmp_path):
    """The period's output folder is a file (a real failure even for root): exit 4, a one-line
    reason, no traceback, the ledger as it was, no temporary file left behind."""
    ws = make_round(tmp_path / "ws", n=6)
    returned = sorted((ws / "input" / "returned" / PERIOD).glob("*.xlsx"))
    first = subprocess.run(collect_cmd(ws, *returned[:3]), capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    before = dump(ws)
    out = ws / "output" / PERIOD
    shutil.rmtree(out)
    out.write_text("not a folder")

    failed = subprocess.run(collect_cmd(ws), capture_output=True, text=True, timeout=60)
    assert failed.returncode == 4, (failed.stdout, failed.stderr)
    assert "Traceback" not in failed.stderr
    assert re.search(r"错误：无法写入 .*2026-11", failed.stderr), failed.stderr
    assert dump(ws) == before
    assert temp_files(ws) == []

    out.unlink()
    again = subprocess.run(collect_cmd(ws), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert assert_consistent(ws) == 6


def test_a_full_disk_while_archiving_gives_a_clear_error_and_keeps_the_ledger_whole(tmp_path, monkeypatch):
    """ENOSPC on the first write of a returned file's archive copy (simulated in-process: any write
    to a file under the archive folder fails, whichever call writes it)."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to tell which file a descriptor writes")
    ws = make_round(tmp_path / "ws", n=3)
    real_bytes, real_write = Path.write_bytes, os.write

    def full(self, data):
        if "archive" in self.parts:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_bytes(self, data)

    def full_fd(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if "archive" in Path(target).parts:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    monkeypatch.setattr(os, "write", full_fd)
    result = run(ws, "collect", "--system", SYSTEM, "--period", PERIOD, expect=4)
    assert "磁盘已满" in result.output
    assert count_files(ws) == 0
    assert temp_files(ws) == []
    monkeypatch.undo()
    run(ws, "collect", "--system", SYSTEM, "--period", PERIOD)
    assert assert_consistent(ws) == 3


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_a_really_full_output_disk_gives_a_clear_error_and_leaves_the_ledger_unchanged(tmp_path):
    """The output folder on a 1 MB tmpfs filled to the last byte (needs mount; skipped without)."""
    ws = make_round(tmp_path / "ws", n=3)
    out = ws / "output"
    if not _mount_tmpfs(out, "1m"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        filler = out / "filler.bin"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
        finally:
            os.close(fd)
        result = subprocess.run(collect_cmd(ws), capture_output=True, text=True, timeout=60)
        assert result.returncode == 4, (result.stdout, result.stderr)
        assert "磁盘已满" in result.stderr and "Traceback" not in result.stderr
        assert count_files(ws) == 0
        assert temp_files(ws) == []
        filler.unlink()
        again = subprocess.run(collect_cmd(ws), capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        assert assert_consistent(ws) == 3
        report = out / PERIOD / f"collection-{SYSTEM}.xlsx"
        assert openpyxl.load_workbook(report).sheetnames == ["文件", "问题", "未交"]
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True, timeout=10)


def test_outputs_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A disk that fills while the collection workbook or the summary is being written: exit 4,
    the previous workbook untouched, no temporary file; the ledger keeps whole files only and a
    re-run writes the report."""
    import xlsxwriter

    ws = make_round(tmp_path / "ws", n=4)
    returned = sorted((ws / "input" / "returned" / PERIOD).glob("*.xlsx"))
    run(ws, "collect", "--system", SYSTEM, "--period", PERIOD, *map(str, returned[:3]))
    run(ws, "report", "--system", SYSTEM, "--period", PERIOD)
    out = ws / "output" / PERIOD
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {f"collection-{SYSTEM}.xlsx", f"summary-{SYSTEM}.xlsx", f"digest-{SYSTEM}.html"} <= set(before)

    real = xlsxwriter.Workbook.close

    def full(self):
        real(self)  # the temporary file is written, then the disk is "full"
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xlsxwriter.Workbook, "close", full)
    failed = run(ws, "collect", "--system", SYSTEM, "--period", PERIOD, str(returned[3]), expect=4)
    assert "磁盘已满" in failed.output
    failed = run(ws, "report", "--system", SYSTEM, "--period", PERIOD, expect=4)
    assert "磁盘已满" in failed.output
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(after) == set(before)
    for name in before:  # every output is the previous one, or (a CSV written before the failure) whole
        if name.endswith((".xlsx", ".html")):
            assert after[name] == before[name], name
        else:
            assert after[name].endswith(b"\n") and after[name].count(b"\n") >= before[name].count(b"\n"), name
    assert temp_files(ws) == []
    assert assert_consistent(ws) == 4  # the fourth file is in, whole; its report was not written

    monkeypatch.undo()
    again = run(ws, "collect", "--system", SYSTEM, "--period", PERIOD, str(returned[3]))
    assert "此前已收取" in again.output
    files = openpyxl.load_workbook(out / f"collection-{SYSTEM}.xlsx")["文件"]
    assert returned[3].name in [r[0] for r in files.iter_rows(min_row=2, values_only=True)]


def test_a_read_only_output_file_system_gives_a_clear_error_and_leaves_the_ledger_unchanged(tmp_path):
    """The output folder on a read-only mount, which stops root too (needs mount; skipped without)."""
    ws = make_round(tmp_path / "ws", n=3)
    returned = sorted((ws / "input" / "returned" / PERIOD).glob("*.xlsx"))
    run(ws, "collect", "--system", SYSTEM, "--period", PERIOD, str(returned[0]))
    before = dump(ws)
    out = ws / "output"
    if not _mount_tmpfs(out, "1m,ro"):
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        result = subprocess.run(collect_cmd(ws), capture_output=True, text=True, timeout=60)
        assert result.returncode == 4, (result.stdout, result.stderr)
        assert "只读文件系统" in result.stderr and "Traceback" not in result.stderr
        assert dump(ws) == before
        assert temp_files(ws) == []
    finally:
        subprocess.run(["umount", "-l", str(out)], capture_output=True, timeout=10)
    again = subprocess.run(collect_cmd(ws), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert assert_consistent(ws) == 3
