"""Runs where offices run: Windows too.

Nothing here runs on Windows (this project has no Windows machine); what can be proved on Linux
is: the workspace lock's behaviour through portalocker, every module and a whole collect without
`fcntl` or `resource`, the collect suite with workers started by `spawn` (as Windows starts
them), the console's UTF-8 on Windows, Windows' shell quoting, and Chinese names end to end.
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import openpyxl
import pytest

from conftest import fill_form, run
from pipeline.cli import shell_quote, utf8_console
from pipeline.config import Workspace
from pipeline.errors import LockedError
from pipeline.lock import lock_path, workspace_lock
from pipeline.workers import START_METHOD
from test_collect import PERIOD, answers, make_forms, returned

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


# -- the workspace lock (portalocker) ----------------------------------------------------------
def hold(workspace: Path, seconds: float) -> subprocess.Popen:
    """Another process that takes the workspace lock, says so, and holds it for `seconds`."""
    script = ("import sys, time\n"
              "from pipeline.config import Workspace\nfrom pipeline.lock import workspace_lock\n"
              f"with workspace_lock(Workspace.open({str(workspace)!r}), wait=0):\n"
              f"    print('held', flush=True); time.sleep({seconds})\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_run_waits_for_the_lock_and_takes_it_when_the_holder_finishes(workspace):
    holder = hold(workspace, 1.0)
    try:
        started = time.monotonic()
        with workspace_lock(Workspace.open(workspace), wait=20) as path:
            waited = time.monotonic() - started
            assert path.read_text().strip() == str(os.getpid())  # the holder's id, readable while locked
            assert holder.wait(timeout=15) == 0  # it had finished its hold: the lock was not taken from it
    finally:
        holder.kill()
        holder.wait()
    assert 0.3 < waited < 15


def test_a_refusal_comes_after_the_wait_and_names_the_holder(workspace):
    holder = hold(workspace, 30)
    try:
        started = time.monotonic()
        with pytest.raises(LockedError) as refused:
            with workspace_lock(Workspace.open(workspace), wait=0.5):
                pass
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert waited >= 0.5
    assert f"（进程 {holder.pid}）" in str(refused.value) and str(lock_path(Workspace.open(workspace))) in str(refused.value)


def test_a_killed_holder_leaves_files_that_block_nobody(workspace):
    """SIGKILL (Task Manager's End task on Windows): no release, no cleanup, but the system drops
    the lock; the files left behind name the dead process and are simply taken over."""
    ws = Workspace.open(workspace)
    holder = hold(workspace, 30)
    holder.kill()
    holder.wait()
    assert lock_path(ws).read_text().strip() == str(holder.pid)  # left behind, stale
    started = time.monotonic()
    with workspace_lock(ws, wait=0) as path:
        assert time.monotonic() - started < 1
        assert path.read_text().strip() == str(os.getpid())
    assert sorted(p.name for p in path.parent.iterdir() if ".lock" in p.name) == []  # released: nothing left


def test_the_lock_is_not_reentrant_within_one_process(workspace):
    """Two runs in one process (the tests' CliRunner) exclude each other as two processes do."""
    ws = Workspace.open(workspace)
    with workspace_lock(ws, wait=0):
        with pytest.raises(LockedError, match=f"（进程 {os.getpid()}）"):
            with workspace_lock(ws, wait=0.2):
                pass


# -- no POSIX-only module on a command's path ----------------------------------------------------
def test_every_module_imports_and_a_collect_runs_without_fcntl_and_resource(workspace):
    """As on Windows: `fcntl` and `resource` cannot be imported (portalocker and psutil, whose job
    the platform's own calls are, have already chosen theirs: Linux's), workers are spawned, and the memory cap
    falls to the watchdog. A file that eats memory and one that hangs are rejected with their
    reasons; the good ones are collected."""
    forms = make_forms(workspace)
    folder = returned(workspace)
    for assessor in ("E01", "E02"):
        fill_form(forms[assessor], answers(assessor), save_as=folder / f"{assessor}.xlsx")
    (folder / "memory.xlsx").write_bytes(b"memory")
    (folder / "hang.xlsx").write_bytes(b"hang")
    (workspace / "happyhome.toml").write_text(
        "[limits]\nmax_seconds_per_file = 3\nmax_memory_mb = 300\n[collect]\nworkers = 2\npool_min_files = 1\n",
        encoding="utf-8")
    script = textwrap.dedent(f"""\
        import importlib, pkgutil, sys
        import portalocker, psutil
        sys.modules["fcntl"] = None
        sys.modules["resource"] = None
        sys.path.insert(0, {str(TESTS)!r})
        import pipeline
        for module in pkgutil.iter_modules(pipeline.__path__):
            importlib.import_module("pipeline." + module.name)
        import pipeline.collect, pipeline.workers
        import test_isolation  # its module-level `misbehaving`: a spawned worker imports it by name
        assert pipeline.workers.resource is None and not pipeline.workers.kernel_caps_memory()
        pipeline.collect.examine = test_isolation.misbehaving
        from pipeline.cli import main
        main(["-w", {str(workspace)!r}, "collect", "--system", "community", "--period", "{PERIOD}"])
        """)
    env = {**os.environ, START_METHOD: "spawn"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    conn = sqlite3.connect(workspace / "ledger" / "happyhome.sqlite")
    files = dict(conn.execute("SELECT name, status FROM files"))
    reasons = dict(conn.execute("SELECT name, reason FROM files"))
    technical = dict(conn.execute("SELECT f.name, p.technical FROM problems p JOIN files f ON f.id = p.file_id"))
    conn.close()
    assert files == {"E01.xlsx": "accepted", "E02.xlsx": "accepted", "memory.xlsx": "rejected", "hang.xlsx": "rejected"}
    assert reasons["memory.xlsx"].startswith("文件读取所需内存超出上限（300 MB）")
    assert "(watchdog)" in technical["memory.xlsx"]
    assert reasons["hang.xlsx"].startswith("文件读取超时（超过 3 秒）")


# -- the collect suite with spawned workers -------------------------------------------------------
@pytest.mark.slow
def test_the_collect_suite_passes_with_workers_started_by_spawn(tmp_path):
    """tests/test_collect.py and tests/test_isolation.py once more, every worker started by spawn
    (HAPPYHOME_START_METHOD=spawn), the only way Windows starts a process: worker targets must
    import by name, the context, caps and language must travel as arguments."""
    env = {**os.environ, START_METHOD: "spawn"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'pt'}",
         "tests/test_collect.py", "tests/test_isolation.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    tail = "\n".join(done.stdout.splitlines()[-40:])
    assert done.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail and " error" not in tail, tail


# -- the console and the shell on Windows ---------------------------------------------------------
def test_the_windows_console_is_switched_to_utf8_and_posix_is_left_alone():
    for system, encoding in (("nt", "utf-8"), ("posix", "cp1252")):
        raw = io.BytesIO()
        stream = io.TextIOWrapper(raw, encoding="cp1252", errors="strict")  # an English Windows' code page
        utf8_console([stream], system=system)
        assert stream.encoding == encoding
        if system == "nt":
            stream.write("收取完成 ┃ 张敏-评分表.xlsx • 🎉\n")
            stream.flush()
            assert raw.getvalue().decode("utf-8") == "收取完成 ┃ 张敏-评分表.xlsx • 🎉\n"
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    utf8_console([stream], system="nt")  # already UTF-8: untouched
    assert stream.errors == "strict"


@pytest.mark.parametrize("text, posix, nt", [
    ("demo", "demo", "demo"),
    ("/srv/第 11 期", "'/srv/第 11 期'", '"/srv/第 11 期"'),
    (r"C:\Users\张敏\第11期", r"'C:\Users\张敏\第11期'", r"C:\Users\张敏\第11期"),
    (r"D:\评估 (2026)\happyhome.toml", r"'D:\评估 (2026)\happyhome.toml'", r'"D:\评估 (2026)\happyhome.toml"'),
    ("C:\\", "'C:\\'", "C:\\"),
    ("D:\\第 11 期\\", "'D:\\第 11 期\\'", '"D:\\第 11 期\\\\"'),  # a trailing backslash would escape the quote
    ("A&B", "'A&B'", '"A&B"'),
])
def test_paths_are_quoted_for_the_shell_of_the_system(text, posix, nt):
    assert shell_quote(text, system="posix") == posix
    assert shell_quote(text, system="nt") == nt


def test_the_command_runs_through_the_utf8_entry_point():
    from importlib.metadata import entry_points

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "happyhome"]
    assert script.value == "pipeline.cli:run"
    done = subprocess.run([sys.executable, "-m", "pipeline", "--version"], capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout.decode("utf-8").startswith("happyhome ")


# -- Chinese names end to end --------------------------------------------------------------------
def test_chinese_folder_and_file_names_round_trip_through_forms_collect_and_report(tmp_path):
    """A workspace in 第 11 轮（测试）, a return named as an assessor names it in a folder of its
    own: the terminal (a real process, UTF-8), the ledger, the collection workbook and the report
    keep every name whole."""
    root = tmp_path / "第 11 轮（测试）"
    env = {**os.environ, "HAPPYHOME_LANG": "zh", START_METHOD: "spawn"}

    def happyhome(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pipeline", "-w", str(root), *args],
                              capture_output=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr.decode("utf-8")
        return done.stdout.decode("utf-8")  # strict: what the terminal gets is UTF-8

    out = happyhome("init", str(root))
    assert shell_quote(str(root / "happyhome.toml")) in out
    from conftest import ASSESSORS, PAIRS, SUBJECTS, reason_rule
    from pipeline.roster import write_roster

    reason_rule(root, 0)
    write_roster(root / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    happyhome("forms", "--system", "community", "--period", PERIOD)
    [form] = (root / "output" / "forms" / PERIOD / "community").glob("*_E01_张敏.xlsx")
    inbox = root / "input" / "returned" / PERIOD / "张敏 发回"
    inbox.mkdir(parents=True)
    name = "张敏-评分表（终稿）.xlsx"
    fill_form(form, answers("E01"), save_as=inbox / name)
    out = happyhome("collect", "--system", "community", "--period", PERIOD)
    assert "已接收" in out
    conn = sqlite3.connect(root / "ledger" / "happyhome.sqlite")
    [(stored, original)] = conn.execute("SELECT name, original_path FROM files").fetchall()
    conn.close()
    assert stored == name and Path(original) == inbox / name
    book = openpyxl.load_workbook(root / "output" / PERIOD / "collection-community.xlsx")
    rows = list(book["文件"].iter_rows(values_only=True))
    assert [r[0] for r in rows[1:]] == [name]
    out = happyhome("report", "--system", "community", "--period", PERIOD)
    digest = root / "output" / PERIOD / "digest-community.html"
    assert digest.is_file() and str(digest) in out.replace("\n", "")
