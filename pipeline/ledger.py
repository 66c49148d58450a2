"""The ledger: an SQLite database of every file seen, every accepted score and every problem.

One file is ingested in one transaction (`Ledger.add_file`), so a crash leaves the ledger as
it was before that file. Nothing is ever deleted: a resubmission marks the earlier sheet
`superseded` and points at the sheet that replaced it.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator

import pandas as pd

from pipeline.atomic import explain
from pipeline.errors import LockedError, OutputError
from pipeline.messages import Problem

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id            INTEGER PRIMARY KEY,
    sha256        TEXT NOT NULL,     -- unique per round: one returned folder serves both systems
    name          TEXT NOT NULL,     -- the file name as received
    original_path TEXT NOT NULL,
    size          INTEGER NOT NULL,
    received_at   TEXT NOT NULL,     -- when it arrived: its modification time in the returned folder
    saved_at      TEXT,              -- the workbook's own last-saved time, if it records one
    collected_at  TEXT NOT NULL,
    archive_path  TEXT NOT NULL,
    period        TEXT NOT NULL,     -- the round it was collected for
    system        TEXT NOT NULL,
    assessor      TEXT,              -- from the form's identity, when known
    format        TEXT,
    status        TEXT NOT NULL CHECK (status IN ('accepted', 'partial', 'rejected')),
    reason        TEXT,              -- why a rejected file was rejected
    UNIQUE (sha256, period, system)
);
CREATE TABLE IF NOT EXISTS aliases (  -- the same bytes seen under another path: a duplicate
    sha256  TEXT NOT NULL,
    path    TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (sha256, path)
);
CREATE TABLE IF NOT EXISTS sheets (
    id            INTEGER PRIMARY KEY,
    file_id       INTEGER NOT NULL REFERENCES files(id),
    sheet         TEXT NOT NULL,
    period        TEXT NOT NULL,
    system        TEXT NOT NULL,
    assessor      TEXT NOT NULL,
    subject       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'superseded')),
    superseded_by INTEGER REFERENCES sheets(id),
    saved_at      TEXT NOT NULL      -- orders resubmissions: the later-saved sheet wins
);
CREATE INDEX IF NOT EXISTS sheets_key ON sheets (period, system, assessor, subject, status);
CREATE TABLE IF NOT EXISTS scores (
    id       INTEGER PRIMARY KEY,
    sheet_id INTEGER NOT NULL REFERENCES sheets(id),
    item     TEXT NOT NULL,
    raw      TEXT NOT NULL,          -- the value as typed
    score    REAL NOT NULL,          -- the normalised score
    remark   TEXT NOT NULL DEFAULT '',
    cell     TEXT NOT NULL,          -- A1 reference of the 得分 cell
    UNIQUE (sheet_id, item)
);
CREATE TABLE IF NOT EXISTS problems (
    id       INTEGER PRIMARY KEY,
    file_id  INTEGER NOT NULL REFERENCES files(id),
    sheet    TEXT NOT NULL DEFAULT '',
    cell     TEXT NOT NULL DEFAULT '',
    value    TEXT NOT NULL DEFAULT '',
    code     TEXT NOT NULL,
    severity TEXT NOT NULL,
    message  TEXT NOT NULL
);
"""


@dataclass
class SheetRecord:
    """One subject sheet of a file, as validated: accepted ones carry their scores."""

    sheet: str
    assessor: str
    subject: str
    accepted: bool
    scores: list[tuple[str, str, float, str, str]] = field(default_factory=list)  # item, raw, score, remark, cell


@dataclass
class FileRecord:
    sha256: str
    name: str
    original_path: str
    size: int
    received_at: datetime
    saved_at: datetime | None
    archive_path: str
    period: str
    system: str
    assessor: str | None
    format: str | None
    status: str  # accepted | partial | rejected
    reason: str = ""
    sheets: list[SheetRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _share_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Equal strings become one object (through a categorical, in C): 8 bytes a cell instead of ~60."""
    for column in frame.select_dtypes(include=["object", "string"]).columns:
        frame[column] = frame[column].astype("category").astype(frame[column].dtype)
    return frame


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


class Ledger:
    """A connection to the ledger database, created on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit is atomic and survives a killed process; only a power cut
            # may lose the last commits, never leave half of one (each is redone by the next run).
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript(SCHEMA)
        except sqlite3.OperationalError as err:
            if "locked" in str(err):
                raise LockedError(f"The ledger {self.path} is busy: another happyhome run is using it.") from err
            raise OutputError(f"Cannot open the ledger {self.path}: {err}") from err
        except OSError as err:
            raise explain(err, self.path) from err

    @classmethod
    def for_reading(cls, path: str | Path) -> "Ledger":
        """The ledger for a command that only reads it: with none on disk yet, an empty one in
        memory, so reading never creates files as a side effect."""
        path = Path(path)
        return cls(path if path.is_file() else ":memory:")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; rolled back on any error."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            raise LockedError(f"The ledger {self.path} is busy: another happyhome run is writing it.") from err
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as err:
                self.conn.execute("ROLLBACK")
                raise OutputError(f"Cannot write the ledger {self.path}: {err}") from err

    # -- reading -------------------------------------------------------------------------
    def known(self, sha256: str, period: str | None = None, system: str | None = None) -> sqlite3.Row | None:
        """The file with these bytes (in this round, when period and system are given)."""
        self.conn.row_factory = sqlite3.Row
        try:
            if period is not None and system is not None:
                return self.conn.execute("SELECT * FROM files WHERE sha256 = ? AND period = ? AND system = ?",
                                         (sha256, period, system)).fetchone()
            return self.conn.execute("SELECT * FROM files WHERE sha256 = ?", (sha256,)).fetchone()
        finally:
            self.conn.row_factory = None

    def frame(self, sql: str, params: tuple = (), chunksize: int | None = None) -> pd.DataFrame:
        """A query as a frame. With `chunksize`, rows are read in chunks and every repeated text
        is shared: SQLite hands back a new string object per row, which for a national month's
        760,000 scores x 9 text columns is most of a gigabyte."""
        if chunksize is None:
            return pd.read_sql_query(sql, self.conn, params=params)
        parts = [_share_strings(chunk) for chunk in pd.read_sql_query(sql, self.conn, params=params, chunksize=chunksize)]
        return pd.concat(parts, ignore_index=True) if parts else pd.read_sql_query(sql, self.conn, params=params)

    def periods(self, system: str) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT period FROM sheets WHERE system = ? ORDER BY period", (system,))
        return [r[0] for r in rows]

    def accepted_scores(self, period: str, system: str) -> pd.DataFrame:
        """Every score of the round's active sheets, traceable to file, sheet and cell."""
        return self.frame(
            """SELECT s.period, s.system, s.assessor, s.subject, c.item, c.raw, c.score, c.remark,
                      f.name AS file, s.sheet, c.cell, f.sha256, s.id AS sheet_id
               FROM scores c JOIN sheets s ON s.id = c.sheet_id JOIN files f ON f.id = s.file_id
               WHERE s.period = ? AND s.system = ? AND s.status = 'accepted'
               ORDER BY s.subject, s.assessor, c.id""",
            (period, system),
            chunksize=100_000,
        )

    def files(self, period: str, system: str) -> pd.DataFrame:
        return self.frame("SELECT * FROM files WHERE period = ? AND system = ? ORDER BY id", (period, system))

    def sheets(self, period: str, system: str) -> pd.DataFrame:
        return self.frame(
            """SELECT s.*, f.name AS file, f.received_at, r.sheet AS replaced_by_sheet, rf.name AS replaced_by_file
               FROM sheets s JOIN files f ON f.id = s.file_id
               LEFT JOIN sheets r ON r.id = s.superseded_by LEFT JOIN files rf ON rf.id = r.file_id
               WHERE s.period = ? AND s.system = ? ORDER BY s.id""",
            (period, system),
        )

    def problems(self, period: str, system: str) -> pd.DataFrame:
        return self.frame(
            """SELECT f.name AS file, p.sheet, p.cell, p.value, p.code, p.severity, p.message
               FROM problems p JOIN files f ON f.id = p.file_id
               WHERE f.period = ? AND f.system = ? ORDER BY p.id""",
            (period, system),
        )

    def aliases(self, period: str, system: str) -> pd.DataFrame:
        return self.frame(
            """SELECT a.path, a.seen_at, f.name AS same_as, f.assessor FROM aliases a JOIN files f ON f.sha256 = a.sha256
               WHERE f.period = ? AND f.system = ? ORDER BY a.seen_at""",
            (period, system),
        )

    # -- writing -------------------------------------------------------------------------
    def add_alias(self, sha256: str, path: str, seen_at: datetime) -> bool:
        """Record the same content seen under another path; False when already recorded."""
        with self.transaction() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO aliases VALUES (?, ?, ?)", (sha256, path, _iso(seen_at)))
            return cur.rowcount == 1

    def add_file(self, rec: FileRecord) -> list[tuple[str, str]]:
        """Ingest one file in one transaction; returns (superseded file, sheet) pairs it replaced."""
        replaced: list[tuple[str, str]] = []
        saved = _iso(rec.saved_at or rec.received_at)
        with self.transaction() as conn:
            file_id = conn.execute(
                """INSERT INTO files (sha256, name, original_path, size, received_at, saved_at, collected_at,
                   archive_path, period, system, assessor, format, status, reason)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (rec.sha256, rec.name, rec.original_path, rec.size, _iso(rec.received_at), _iso(rec.saved_at),
                 _iso(datetime.now()), rec.archive_path, rec.period, rec.system, rec.assessor, rec.format,
                 rec.status, rec.reason),
            ).lastrowid
            for sh in rec.sheets:
                status = "accepted" if sh.accepted else "rejected"
                sheet_id = conn.execute(
                    "INSERT INTO sheets (file_id, sheet, period, system, assessor, subject, status, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (file_id, sh.sheet, rec.period, rec.system, sh.assessor, sh.subject, status, saved),
                ).lastrowid
                if not sh.accepted:
                    continue
                conn.executemany(
                    "INSERT INTO scores (sheet_id, item, raw, score, remark, cell) VALUES (?, ?, ?, ?, ?, ?)",
                    [(sheet_id, *score) for score in sh.scores],
                )
                replaced += self._supersede(conn, rec, sh, sheet_id, saved)
            conn.executemany(
                "INSERT INTO problems (file_id, sheet, cell, value, code, severity, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(file_id, p.sheet, p.cell, p.value, p.code, p.severity, p.message) for p in rec.problems],
            )
        return replaced

    @staticmethod
    def _supersede(conn, rec: FileRecord, sh: SheetRecord, sheet_id: int, saved: str) -> list[tuple[str, str]]:
        """The later-saved of two accepted sheets for one (period, system, assessor, subject) wins."""
        others = conn.execute(
            """SELECT s.id, s.saved_at, s.sheet, f.name FROM sheets s JOIN files f ON f.id = s.file_id
               WHERE s.period = ? AND s.system = ? AND s.assessor = ? AND s.subject = ?
                 AND s.status = 'accepted' AND s.id != ?""",
            (rec.period, rec.system, sh.assessor, sh.subject, sheet_id),
        ).fetchall()
        replaced = []
        for other_id, other_saved, other_sheet, other_file in others:
            if other_saved <= saved:  # ties go to the one collected later
                conn.execute("UPDATE sheets SET status = 'superseded', superseded_by = ? WHERE id = ?", (sheet_id, other_id))
                replaced.append((other_file, other_sheet))
            else:
                conn.execute("UPDATE sheets SET status = 'superseded', superseded_by = ? WHERE id = ?", (other_id, sheet_id))
        return replaced
