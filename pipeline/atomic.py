"""Outputs are written to a temporary file beside the target and renamed into place.

Nobody opens half a workbook, and a failed write leaves the previous output untouched. The
file gets the mode the user's umask gives any new file, not mkstemp's private 0600.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline.errors import OutputError
from pipeline.i18n import _


def explain(err: OSError, path: Path) -> OutputError:
    """Turn an OSError into a message an operator can act on."""
    reasons = {
        errno.ENOSPC: _("the disk is full"),
        errno.EDQUOT: _("the disk quota is exhausted"),
        errno.EROFS: _("the folder is on a read-only file system"),
        errno.EACCES: _("permission denied (is the folder read-only, or the file open in Excel?)"),
        errno.EPERM: _("permission denied"),
    }
    reason = reasons.get(err.errno, err.strerror or str(err))
    return OutputError(_("Cannot write {path}: {reason}.").format(path=path, reason=reason))


def check_writable(folder: str | Path, need: int = 0) -> None:
    """Fail before anything changes when `folder` cannot take new files (`need` bytes in all):
    a read-only or missing folder, a file where the folder should be, a full disk."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".happyhome-probe.", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise explain(err, folder) from err
    if free < need:
        raise OutputError(_("Cannot write {folder}: the disk is full ({free} MB free, about {need} MB needed).")
                          .format(folder=folder, free=f"{free / 1e6:.1f}", need=f"{need / 1e6:.1f}"))


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(old)
    return old


def share_mode(path: Path) -> None:
    """Give a finished file the mode a plain `open()` would (0666 less the umask): mkstemp
    makes it 0600, which colleagues on a shared drive cannot open. (On Windows chmod only sets or
    clears the read-only flag: 0666 less any umask keeps the file writable, as open() makes it.)"""
    os.chmod(path, 0o666 & ~current_umask())


@contextmanager
def atomic_path(target: str | Path, suffix: str | None = None, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces `target` (with `mode`, by default the one
    `share_mode` gives), on failure it is removed."""
    target = Path(target)
    tmp_path = _temporary(target, suffix or target.suffix)
    try:
        yield tmp_path
        if mode is None:
            share_mode(tmp_path)
        else:
            os.chmod(tmp_path, mode)
        os.replace(tmp_path, target)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        raise explain(err, target) from err
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _temporary(target: Path, suffix: str) -> Path:
    """A new, empty, private file beside `target`, named by this process and a counter: no random
    name to draw and no folder to check when it exists (collect's archive writes hundreds a run).
    Where that name is taken (a leftover of an earlier process with this pid), mkstemp's."""
    tmp = target.with_name(f".{target.stem[:40]}.{os.getpid()}.{next(_serial)}{suffix}")
    try:
        try:
            fd = os.open(tmp, _NEW_FILE, 0o600)
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, _NEW_FILE, 0o600)
    except FileExistsError:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target.stem[:40]}.", suffix=suffix, dir=target.parent)
        except OSError as err:
            raise explain(err, target) from err
        tmp = Path(name)
    except OSError as err:
        raise explain(err, target) from err
    os.close(fd)
    return tmp


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
_serial = itertools.count()


def write_text(target: str | Path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(target)


def write_bytes(target: str | Path, data: bytes, mode: int | None = None) -> Path:
    """`data` into `target` atomically. `mode` is the finished file's mode, 0666 less the umask by
    default; a caller writing many files (collect's archive) reads the umask once and passes it."""
    with atomic_path(target, mode=mode) as tmp:
        tmp.write_bytes(data)
    return Path(target)
