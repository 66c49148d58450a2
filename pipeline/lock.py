"""The workspace lock: one run at a time writes a workspace's ledger.

An advisory `fcntl.flock` on a lock file beside the ledger (on Windows, where there is no
fcntl, `msvcrt.locking` of one byte past the end of the file, so that the holder's process id at
its start stays readable). The system drops the lock when the holder exits, however it exits
(even SIGKILL), so a stale lock file never blocks anyone.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline.atomic import explain
from pipeline.config import Workspace
from pipeline.errors import LockedError
from pipeline.i18n import _

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

WINDOWS_LOCK_AT = 1 << 20  # the byte msvcrt locks: beyond the process id written at the start


def lock_path(ws: Workspace) -> Path:
    ledger = ws.path("ledger")
    return ledger.with_name(ledger.name + ".lock")


@contextmanager
def workspace_lock(ws: Workspace, wait: float | None = None) -> Iterator[Path]:
    """Hold the workspace lock; wait up to `wait` seconds (collect.lock_wait) for another run,
    then raise LockedError."""
    path = lock_path(ws)
    wait = float(ws["collect"].get("lock_wait", 5) if wait is None else wait)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise explain(err, path) from err
    try:
        deadline = time.monotonic() + wait
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                holder = _holder(path)
                raise LockedError(
                    _("Another happyhome run{holder} is using the workspace {root} (lock {lock}); "
                      "waited {wait} s. Run again when it has finished.").format(
                        holder=holder, root=ws.root, lock=path, wait=f"{wait:g}"))
            time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield path
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """Take the lock without waiting; False when another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, WINDOWS_LOCK_AT, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    os.lseek(fd, WINDOWS_LOCK_AT, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _holder(path: Path, patience: float = 0.5) -> str:
    """" (process 123)" for the run holding the lock. A run that has just taken it writes its id a
    moment later (after emptying the file), so an empty file is read again for up to `patience` s."""
    until = time.monotonic() + patience
    while True:
        try:
            pid = path.read_text().strip()
        except OSError:
            return ""
        if pid.isdigit() or time.monotonic() >= until:
            return _(" (process {pid})").format(pid=pid) if pid.isdigit() else ""
        time.sleep(0.02)
