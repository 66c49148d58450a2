"""The office key: a secret of one workspace that makes its forms unforgeable.

`forms.sign` is a public checksum: anyone can edit a form's metadata and recompute it. The
office key (32 random bytes, `paths.key`, by default ledger/office.key) lets `forms.seal` add an
HMAC-SHA256 over the same metadata rows, which only this workspace can compute, so `collect`
can tell its own forms from edited ones and from forms of another workspace.

The key lives outside happyhome.toml (offices share and mail that file around) and outside the
archive and the outputs; it is created readable by its owner only (mode 0600 — on Windows the
mode is best effort: the file inherits the folder's permissions) and never overwritten, printed
or logged: only its fingerprint (the first 8 hex digits of its sha256) is ever shown.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Workspace
from pipeline.errors import ConfigError, OutputError
from pipeline.i18n import _

KEY_BYTES = 32


@dataclass(frozen=True)
class KeyInfo:
    """Where the key is and whether it is there; never the key itself."""

    path: Path
    exists: bool
    fingerprint: str = ""


def key_path(ws: Workspace) -> Path:
    return ws.path("key")


def create_key(path: Path, key: bytes | None = None) -> bool:
    """Write a new random key at `path` (or `key`: the demo's, drawn from its seed), readable by its
    owner only; False when one exists (never overwritten)."""
    key = key if key is not None else secrets.token_bytes(KEY_BYTES)
    if len(key) != KEY_BYTES:
        raise ValueError("an office key is 32 bytes")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return False
    except OSError as err:
        raise OutputError(_("Cannot create the office key {path}: {error}").format(path=path, error=err.strerror)) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        path.unlink(missing_ok=True)  # half a key is worse than none
        raise OutputError(_("Cannot create the office key {path}: {error}").format(path=path, error=err.strerror)) from err
    return True


def read_key(path: Path) -> bytes | None:
    """The key at `path`, or None when there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(_("Cannot read the office key {path}: {error}").format(path=path, error=err.strerror)) from err
    if len(data) != KEY_BYTES:
        raise ConfigError(_("The office key {path} is damaged ({n} bytes, expected {expected}): restore it from "
                            "the backup").format(path=path, n=len(data), expected=KEY_BYTES))
    return data


def load_key(ws: Workspace) -> bytes | None:
    return read_key(key_path(ws))


def ensure_key(ws: Workspace) -> tuple[bytes, bool]:
    """The workspace's key, created when it has none; and whether it was created now."""
    path = key_path(ws)
    created = create_key(path)
    key = read_key(path)
    assert key is not None
    return key, created


def fingerprint(key: bytes) -> str:
    """What may be shown of a key: enough to tell two keys apart, nothing to rebuild it."""
    return hashlib.sha256(key).hexdigest()[:8]


def key_info(ws: Workspace) -> KeyInfo:
    path = key_path(ws)
    key = read_key(path)
    return KeyInfo(path, key is not None, fingerprint(key) if key else "")
