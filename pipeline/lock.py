"""The workspace lock: one run at a time writes a workspace's ledger.

portalocker's `PidFileLock` does the platform work: the operating system's own lock (`flock` on
POSIX, `msvcrt.locking` on Windows) is taken on a side file, `happyhome.sqlite.lock.lock`, and the
holder's process id is published in `happyhome.sqlite.lock` (the file the refusal names), which
stays readable while locked even on Windows, whose byte-range locks keep other processes from
reading the locked bytes. The system drops the lock when the holder exits, however it exits (even
SIGKILL or Task Manager's End task), so a file left behind by a killed run never blocks anyone.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import portalocker

from pipeline.atomic import explain
from pipeline.config import Workspace
from pipeline.errors import LockedError
from pipeline.i18n import _

POLL = 0.1  # seconds between attempts while another run holds the lock


def lock_path(ws: Workspace) -> Path:
    """The file named in a refusal: it holds the process id of the run that has the lock."""
    ledger = ws.path("ledger")
    return ledger.with_name(ledger.name + ".lock")


@contextmanager
def workspace_lock(ws: Workspace, wait: float | None = None) -> Iterator[Path]:
    """Hold the workspace lock; wait up to `wait` seconds (collect.lock_wait) for another run,
    then raise LockedError."""
    path = lock_path(ws)
    wait = float(ws["collect"].get("lock_wait", 5) if wait is None else wait)
    lock = portalocker.PidFileLock(path, timeout=wait, check_interval=POLL, fail_when_locked=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except portalocker.AlreadyLocked:
        raise LockedError(
            _("Another happyhome run{holder} is using the workspace {root} (lock {lock}); "
              "waited {wait} s. Run again when it has finished.").format(
                holder=_holder(lock), root=ws.root, lock=path, wait=f"{wait:g}")) from None
    except OSError as err:
        raise explain(err, path) from err
    try:
        yield path
    finally:
        lock.release()


def _holder(lock: portalocker.PidFileLock, patience: float = 0.5) -> str:
    """" (process 123)" for the run holding the lock. The very first run on a workspace publishes
    its id a moment after taking the lock, so a missing id is read again for up to `patience` s."""
    until = time.monotonic() + patience
    while True:
        pid = lock.read_pid()
        if pid is not None or time.monotonic() >= until:
            return _(" (process {pid})").format(pid=pid) if pid is not None else ""
        time.sleep(0.02)
