"""The SQLite engine of the ledger: one file, no server, the default.

The schema is versioned (`PRAGMA user_version`): `MIGRATIONS` is an ordered list of steps,
and opening a ledger applies the steps it has not had yet, each in one transaction, so a
ledger made by an earlier happyhome keeps its data and gains the new columns. A ledger made
before versioning has user_version 0 and already holds version 1's tables (the step is
`CREATE ... IF NOT EXISTS`, a no-op there). Never edit a step that has shipped: add one (see
pipeline/ledger/__init__.py).
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

from pipeline import ledger
from pipeline.atomic import explain
from pipeline.errors import LockedError, OutputError
from pipeline.i18n import _
from pipeline.ledger import Ledger

# Version 1, verbatim as it shipped before the ledger had a schema version.
SCHEMA_V1 = """
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

# Version 2: problems keep the library's own words (`technical`) and which later sheet fixed
# them (`resolved_by`); sheets gain the statuses duplicate, conflict and withdrawn and the
# sheet a duplicate repeats or a conflict clashes with (`same_as`). SQLite cannot change a
# CHECK constraint in place, so `sheets` is rebuilt the documented way (create, copy, drop,
# rename), with foreign keys off during the step and checked before it commits.
SCHEMA_V2 = (
    "ALTER TABLE problems ADD COLUMN technical TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE problems ADD COLUMN resolved_by INTEGER REFERENCES sheets(id)",
    """CREATE TABLE sheets_v2 (
    id            INTEGER PRIMARY KEY,
    file_id       INTEGER NOT NULL REFERENCES files(id),
    sheet         TEXT NOT NULL,
    period        TEXT NOT NULL,
    system        TEXT NOT NULL,
    assessor      TEXT NOT NULL,
    subject       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'superseded', 'duplicate', 'conflict',
                                                  'withdrawn')),
    superseded_by INTEGER REFERENCES sheets(id),
    saved_at      TEXT NOT NULL,     -- orders resubmissions: the later-saved sheet wins
    same_as       INTEGER REFERENCES sheets(id)  -- duplicate: the sheet it repeats; conflict: one it clashes with
)""",
    """INSERT INTO sheets_v2 (id, file_id, sheet, period, system, assessor, subject, status, superseded_by, saved_at)
       SELECT id, file_id, sheet, period, system, assessor, subject, status, superseded_by, saved_at FROM sheets""",
    "DROP TABLE sheets",
    "ALTER TABLE sheets_v2 RENAME TO sheets",
    "CREATE INDEX sheets_key ON sheets (period, system, assessor, subject, status)",
    "CREATE INDEX problems_sheet ON problems (file_id, sheet)",
    # Problems of rejected sheets an earlier happyhome had already seen fixed (see _resolve).
    """UPDATE problems SET resolved_by = (
           SELECT g.id FROM sheets r JOIN sheets g
             ON g.period = r.period AND g.system = r.system AND g.assessor = r.assessor AND g.subject = r.subject
            AND g.status != 'rejected' AND g.saved_at >= r.saved_at
           WHERE r.file_id = problems.file_id AND r.sheet = problems.sheet AND r.status = 'rejected'
           ORDER BY g.saved_at, g.id LIMIT 1)
       WHERE resolved_by IS NULL""",
)


def _statements(script: str) -> list[str]:
    """A script split into whole statements (executescript would commit the open transaction)."""
    out, part = [], ""
    for line in script.splitlines(keepends=True):
        part += line
        if sqlite3.complete_statement(part):
            out.append(part.strip())
            part = ""
    return out


# Version 3: corrections after 公示 (an objection, a 复核), kept apart from the returns they
# correct. Append-only: a row is never updated or deleted. An `amend` row changes one score of
# one accepted sheet (`sheet_id`) from the value then in force (`old_score`: the return's, or an
# earlier correction's) to `new_score`; an `undo` row withdraws the amend it `undoes` (UNIQUE:
# once) and records the values before and after. A correction applies to the return it corrected
# only: when a newer return supersedes that sheet, the correction no longer counts.
SCHEMA_V3 = (
    """CREATE TABLE corrections (
    id         INTEGER PRIMARY KEY,
    action     TEXT NOT NULL CHECK (action IN ('amend', 'undo')),
    period     TEXT NOT NULL,     -- the round key
    system     TEXT NOT NULL,
    assessor   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    item       TEXT NOT NULL,
    sheet_id   INTEGER NOT NULL REFERENCES sheets(id),  -- the accepted sheet whose score it corrects
    old_score  REAL NOT NULL,     -- the value in force before this row
    new_score  REAL NOT NULL,     -- the value in force after it
    raw        TEXT NOT NULL DEFAULT '',  -- the new score as typed
    reason     TEXT NOT NULL,
    operator   TEXT NOT NULL,     -- the operating-system user who ran it
    created_at TEXT NOT NULL,
    undoes     INTEGER UNIQUE REFERENCES corrections(id)  -- undo: the amend it withdraws
)""",
    "CREATE INDEX corrections_round ON corrections (period, system)",
)

# Version 4: whether each file's origin was verified (pipeline.collect: signed, unsigned,
# unverified, forged); '' for files collected before forms were sealed with the office key.
SCHEMA_V4 = ("ALTER TABLE files ADD COLUMN verified TEXT NOT NULL DEFAULT ''",)
# Version 5: self-assessments (自评). A sheet's `kind` is 'expert' (an assessor's) or 'self' (a
# subject's own, whose `assessor` is the subject's code): self sheets are superseded like expert
# ones, per subject, and `accepted_scores` never reads them. A self score keeps its 佐证材料.
SCHEMA_V5 = (
    "ALTER TABLE sheets ADD COLUMN kind TEXT NOT NULL DEFAULT 'expert'",
    "ALTER TABLE scores ADD COLUMN evidence TEXT NOT NULL DEFAULT ''",
)

# The ordered migration steps; the ledger's user_version is the number of steps applied.
# Version 6: 回避 declared in the form (a subject sheet marked 回避 = 是). The declared sheet is an
# ordinary row of `sheets` (accepted, no scores), so it is superseded, repeated and in conflict
# exactly like a scored return of the same assessor and subject — the later-saved wins either
# way — and `accepted_scores` never sees it; this table marks it declared and keeps its reason.
SCHEMA_V6 = (
    """CREATE TABLE declared (
    sheet_id INTEGER PRIMARY KEY REFERENCES sheets(id),
    reason   TEXT NOT NULL DEFAULT ''   -- 回避原因 as written
)""",
)

# Version 7: mail (happyhome send / fetch; pipeline.mail). `mail_sent`: one row per message
# tried, sent or failed, with the server's answer; a form counts as sent to an assessor when a
# `sent` row has the sha256 of the form as it is now. `mail_fetched`: one row per attachment of a
# fetched message (a message without one gets a row with attachment ''), so each message is taken
# once per round; `status` is saved | duplicate (the same bytes were saved before) | ignored.
# Both are keyed by the round (`period`: its key); the returned folder is shared by the systems,
# so fetched mail has no system.
SCHEMA_V7 = (
    """CREATE TABLE mail_sent (
    id                INTEGER PRIMARY KEY,
    period            TEXT NOT NULL,     -- the round key
    system            TEXT NOT NULL,
    assessor          TEXT NOT NULL,
    kind              TEXT NOT NULL,     -- form | letter
    recipient         TEXT NOT NULL,
    message_id        TEXT NOT NULL,
    sent_at           TEXT NOT NULL,
    attachment        TEXT NOT NULL DEFAULT '',  -- the attached file's name ('' for a letter)
    attachment_sha256 TEXT NOT NULL DEFAULT '',  -- a letter: the sha256 of its text
    status            TEXT NOT NULL,     -- sent | failed
    answer            TEXT NOT NULL DEFAULT ''   -- the server's answer to a failed message
)""",
    "CREATE INDEX mail_sent_round ON mail_sent (period, system, kind, assessor)",
    """CREATE TABLE mail_fetched (
    id          INTEGER PRIMARY KEY,
    period      TEXT NOT NULL,     -- the round key
    mailbox     TEXT NOT NULL,
    uid         TEXT NOT NULL DEFAULT '',
    message_id  TEXT NOT NULL,     -- the Message-ID, or sha256:<hash of the message> without one
    sender      TEXT NOT NULL DEFAULT '',
    received_at TEXT,              -- the server's arrival time (INTERNALDATE), local time
    fetched_at  TEXT NOT NULL,
    attachment  TEXT NOT NULL DEFAULT '',   -- the name as sent (zip member: zip/member)
    sha256      TEXT NOT NULL DEFAULT '',
    saved_path  TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL      -- saved | duplicate | ignored
)""",
    "CREATE INDEX mail_fetched_message ON mail_fetched (period, message_id)",
    "CREATE INDEX mail_fetched_sha ON mail_fetched (period, sha256)",
)

# Rows per INSERT statement (`SqliteLedger._insert_rows`); fewer where a statement may hold fewer `?`.
ROWS_PER_INSERT = 200

MIGRATIONS: list[tuple[str, ...]] = [tuple(_statements(SCHEMA_V1)), SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5,
                                     SCHEMA_V6, SCHEMA_V7]
SCHEMA_VERSION = len(MIGRATIONS)
assert SCHEMA_VERSION == ledger.SCHEMA_VERSION, "add the step to pipeline/ledger/sqlite.py's MIGRATIONS"


class SqliteLedger(Ledger):
    """The ledger in an SQLite file (WAL, one writer at a time)."""

    def __init__(self, location: str | Path):
        self.path = Path(location)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit is atomic and survives a killed process; only a power cut
            # may lose the last commits, never leave half of one (each is redone by the next run).
            self._db.execute("PRAGMA synchronous=NORMAL")
            # Rebuilding a table needs foreign keys off, and that pragma is ignored inside a transaction.
            self._db.execute("PRAGMA foreign_keys=OFF")
            self._migrate()
            self._db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.OperationalError as err:
            if "locked" in str(err):
                raise LockedError(_("The ledger {path} is busy: another happyhome run is using it.").format(path=self.path)) from err
            raise OutputError(_("Cannot open the ledger {path}: {error}").format(path=self.path, error=err)) from err
        except OSError as err:
            raise explain(err, self.path) from err

    def close(self) -> None:
        self._db.close()

    def _begin(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            raise LockedError(_("The ledger {path} is busy: another happyhome run is writing it.").format(path=self.path)) from err

    def _begin_snapshot(self) -> None:
        self._db.execute("BEGIN")  # WAL: the snapshot is taken at the first read and kept to the end

    def _commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as err:
            self._db.execute("ROLLBACK")
            raise OutputError(_("Cannot write the ledger {path}: {error}").format(path=self.path, error=err)) from err

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _set_version(self, number: int) -> None:
        self._db.execute(f"PRAGMA user_version = {int(number)}")

    def _migrations(self) -> tuple[list[tuple[int, tuple[str, ...]]], int]:
        return list(enumerate(MIGRATIONS, start=1)), SCHEMA_VERSION

    def _check_step(self, number: int) -> None:
        broken = self._db.execute("PRAGMA foreign_key_check").fetchone()
        if broken:
            raise OutputError(_("Cannot upgrade the ledger {path} to schema version {version}: "
                                "a reference in table {table} would break.").format(
                path=self.path, version=number, table=broken[0]))

    def _insert_rows(self, table: str, columns: tuple[str, ...] | list[str], rows: list[tuple]) -> None:
        """Many rows into one table, inside the open transaction, up to `ROWS_PER_INSERT` rows per
        statement (`INSERT … VALUES (…), (…), …`): a form's 800 scores cost 4 statements, not 800
        steps of one (SQLite runs a multi-row VALUES ~40 % faster than executemany). The last
        statement takes the rest; its text is cached like any other."""
        if not rows:
            return
        width = len(columns)
        per = max(1, min(ROWS_PER_INSERT, self._variables // width))
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        one = "(" + ", ".join("?" * width) + ")"
        full = head + ", ".join([one] * per) if len(rows) >= per else ""
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            sql = full if len(chunk) == per else head + ", ".join([one] * len(chunk))
            self._db.execute(sql, [value for row in chunk for value in row])

    @functools.cached_property
    def _variables(self) -> int:
        """How many `?` one statement may hold (999 before SQLite 3.32, 32,766 since)."""
        try:
            return self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except (AttributeError, sqlite3.Error):  # pragma: no cover - Python before 3.11
            return 999

    def _new_sheet_ids(self, n: int) -> range:
        first = self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM sheets").fetchone()[0]
        return range(first, first + n)

    def _defer_references(self) -> None:
        self._db.execute("PRAGMA defer_foreign_keys = ON")  # until COMMIT, which checks them

    def _engine_check(self) -> list[str]:
        found = []
        result = self._db.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            found.append(_("SQLite integrity check: {result}").format(result=result))
        broken = self._db.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            found.append(_("{n} references in table {table} lead nowhere (PRAGMA foreign_key_check)").format(
                n=len(broken), table=broken[0][0]))
        return found
