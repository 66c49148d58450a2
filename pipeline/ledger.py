"""The ledger: an SQLite database of every file seen, every accepted score and every problem.

One file is ingested in one transaction (`Ledger.add_file`), so a crash leaves the ledger as
it was before that file. Nothing is ever deleted: a resubmission marks the earlier sheet
`superseded` and points at the sheet that replaced it. Corrections made after 公示 are rows of
their own (`corrections`, append-only), applied on top of the returns by `accepted_scores`.

The schema is versioned (`PRAGMA user_version`): `MIGRATIONS` is an ordered list of steps,
and opening a ledger applies the steps it has not had yet, each in one transaction, so a
ledger made by an earlier happyhome keeps its data and gains the new columns. A ledger made
before versioning has user_version 0 and already holds version 1's tables (the step is
`CREATE ... IF NOT EXISTS`, a no-op there). Never edit a step that has shipped: add one.

Sheet statuses: accepted (counts), rejected (failed validation), superseded (a later-saved
return replaced it), duplicate (the same scores and remarks as the sheet that counts:
`same_as`), conflict (another return for the same assessor and subject was saved in the
same second with different scores: neither counts until it is settled), withdrawn (a
conflicting return whose file the office removed from the returned folder).
"""

from __future__ import annotations

import sqlite3
from collections import Counter, namedtuple
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from pipeline.atomic import explain
from pipeline.errors import LockedError, OutputError
from pipeline.i18n import _
from pipeline.messages import Problem

if TYPE_CHECKING:  # pandas is imported where a frame is made: collect needs none until its report
    import pandas as pd

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
MIGRATIONS: list[tuple[str, ...]] = [tuple(_statements(SCHEMA_V1)), SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class SheetRecord:
    """One subject sheet of a file, as validated: accepted ones carry their scores."""

    sheet: str
    assessor: str
    subject: str
    accepted: bool
    scores: list[tuple[str, str, float, str, str]] = field(default_factory=list)  # item, raw, score, remark, cell
    kind: str = "expert"  # expert | self (a subject's self-assessment: assessor = the subject's code)
    evidence: dict[str, str] = field(default_factory=dict)  # self: item -> 佐证材料


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
    verified: str = ""  # signed | unsigned | unverified | forged (pipeline.collect); "" never identified


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
            self._migrate()
            self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.OperationalError as err:
            if "locked" in str(err):
                raise LockedError(_("The ledger {path} is busy: another happyhome run is using it.").format(path=self.path)) from err
            raise OutputError(_("Cannot open the ledger {path}: {error}").format(path=self.path, error=err)) from err
        except OSError as err:
            raise explain(err, self.path) from err

    def _migrate(self) -> None:
        """Apply the migration steps this ledger has not had yet, each in one transaction."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise OutputError(_("The ledger {path} has schema version {version}, made by a newer happyhome "
                                "(this one knows up to {known}): upgrade happyhome.").format(
                path=self.path, version=version, known=SCHEMA_VERSION))
        if version == SCHEMA_VERSION:
            return
        # Rebuilding a table needs foreign keys off, and that pragma is ignored inside a transaction.
        self.conn.execute("PRAGMA foreign_keys=OFF")
        for number, steps in enumerate(MIGRATIONS, start=1):
            with self.transaction() as conn:
                # Read again under the write lock: another process may have migrated meanwhile.
                if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                    continue
                for statement in steps:
                    conn.execute(statement)
                broken = conn.execute("PRAGMA foreign_key_check").fetchone()
                if broken:
                    raise OutputError(_("Cannot upgrade the ledger {path} to schema version {version}: "
                                        "a reference in table {table} would break.").format(
                        path=self.path, version=number, table=broken[0]))
                conn.execute(f"PRAGMA user_version = {number}")

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
            raise LockedError(_("The ledger {path} is busy: another happyhome run is writing it.").format(path=self.path)) from err
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
                raise OutputError(_("Cannot write the ledger {path}: {error}").format(path=self.path, error=err)) from err

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
        import pandas as pd

        if chunksize is None:
            return pd.read_sql_query(sql, self.conn, params=params)
        parts = [_share_strings(chunk) for chunk in pd.read_sql_query(sql, self.conn, params=params, chunksize=chunksize)]
        return pd.concat(parts, ignore_index=True) if parts else pd.read_sql_query(sql, self.conn, params=params)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """A query as named tuples, for a caller that walks the rows once (the collection workbook):
        no pandas to import at the end of every collect. NULL is None, not NaN."""
        cursor = self.conn.execute(sql, params)
        row = namedtuple("Row", [d[0] for d in cursor.description], rename=True)
        return list(map(row._make, cursor))

    def periods(self, system: str) -> list[str]:
        rows = self.conn.execute("SELECT DISTINCT period FROM sheets WHERE system = ? ORDER BY period", (system,))
        return [r[0] for r in rows]

    def accepted_scores(self, period: str, system: str) -> pd.DataFrame:
        """Every score of the round's active sheets, traceable to file, sheet and cell, with the
        corrections in force applied: `score` is the value that counts, `original` the return's,
        `correction` the id of the correction that changed it (<NA> for none). Every reader of
        scores (report, digest, roll-up) comes through here, so none can miss a correction."""
        import pandas as pd

        frame = self.frame(
            """SELECT s.period, s.system, s.assessor, s.subject, c.item, c.raw, c.score, c.remark,
                      f.name AS file, s.sheet, c.cell, f.sha256, s.id AS sheet_id
               FROM scores c JOIN sheets s ON s.id = c.sheet_id JOIN files f ON f.id = s.file_id
               WHERE s.period = ? AND s.system = ? AND s.status = 'accepted' AND s.kind = 'expert'
               ORDER BY s.subject, s.assessor, c.id""",
            (period, system),
            chunksize=100_000,
        )
        frame["original"] = frame["score"]
        frame["correction"] = pd.Series(pd.NA, index=frame.index, dtype="Int64")
        fixes = self.corrections_in_force(period, system)
        if len(fixes) and len(frame):
            fixes = fixes.set_index(["sheet_id", "item"])
            key = pd.MultiIndex.from_arrays([frame["sheet_id"].astype("int64"), frame["item"].astype(str)])
            hit = key.isin(fixes.index)
            if hit.any():
                found = fixes.reindex(key[hit])
                frame.loc[hit, "score"] = found["new_score"].to_numpy(dtype=float)
                frame.loc[hit, "correction"] = found["id"].to_numpy()
        return frame

    def self_scores(self, period: str, system: str) -> pd.DataFrame:
        """The round's self-assessment scores (the subject's latest accepted self sheet): subject,
        item, score, raw, remark, evidence, file, sheet, cell. Never part of `accepted_scores`."""
        return self.frame(
            """SELECT s.subject, c.item, c.score, c.raw, c.remark, c.evidence, f.name AS file, s.sheet, c.cell
               FROM scores c JOIN sheets s ON s.id = c.sheet_id JOIN files f ON f.id = s.file_id
               WHERE s.period = ? AND s.system = ? AND s.status = 'accepted' AND s.kind = 'self'
               ORDER BY s.subject, c.id""",
            (period, system),
        )

    def has_self(self, period: str, system: str) -> bool:
        """Whether any self-assessment sheet (accepted or not) came in for the round."""
        return self.conn.execute("SELECT 1 FROM sheets WHERE period = ? AND system = ? AND kind = 'self' LIMIT 1",
                                 (period, system)).fetchone() is not None

    def corrections_in_force(self, period: str, system: str) -> pd.DataFrame:
        """Per (sheet, item), the latest amend not undone: id, sheet_id, item, new_score. A sheet no
        longer accepted is left to the caller (its scores are not read)."""
        return self.frame(
            """SELECT c.id, c.sheet_id, c.item, c.new_score FROM corrections c
               WHERE c.period = ? AND c.system = ? AND c.action = 'amend'
                 AND NOT EXISTS (SELECT 1 FROM corrections u WHERE u.undoes = c.id)
                 AND c.id = (SELECT MAX(k.id) FROM corrections k
                             WHERE k.sheet_id = c.sheet_id AND k.item = c.item AND k.action = 'amend'
                               AND NOT EXISTS (SELECT 1 FROM corrections v WHERE v.undoes = k.id))
               ORDER BY c.id""",
            (period, system),
        )

    def corrections(self, period: str, system: str) -> pd.DataFrame:
        """Every correction and undo of the round, oldest first, with the status of the sheet it
        corrects (`sheet_status`) and the undo that withdrew it (`undone_by`, `undone_at`, `undone_op`)."""
        return self.frame(
            """SELECT c.id, c.action, c.period, c.system, c.assessor, c.subject, c.item, c.sheet_id, c.old_score,
                      c.new_score, c.raw, c.reason, c.operator, c.created_at, c.undoes, s.status AS sheet_status,
                      u.id AS undone_by, u.created_at AS undone_at, u.operator AS undone_op
               FROM corrections c JOIN sheets s ON s.id = c.sheet_id
               LEFT JOIN corrections u ON u.undoes = c.id
               WHERE c.period = ? AND c.system = ? ORDER BY c.id""",
            (period, system),
        )

    def score_of(self, period: str, system: str, assessor: str, subject: str, item: str) -> tuple[int, float, str] | None:
        """(sheet id, score, raw) of an item on the assessor's accepted sheet for the subject, or None."""
        return self.conn.execute(
            """SELECT s.id, c.score, c.raw FROM scores c JOIN sheets s ON s.id = c.sheet_id
               WHERE s.period = ? AND s.system = ? AND s.assessor = ? AND s.subject = ? AND c.item = ?
                 AND s.status = 'accepted' ORDER BY s.id DESC LIMIT 1""",
            (period, system, assessor, subject, item),
        ).fetchone()

    def files(self, period: str, system: str, as_rows: bool = False) -> pd.DataFrame | list[tuple]:
        """The round's files (as `rows` with as_rows)."""
        return (self.rows if as_rows else self.frame)("SELECT * FROM files WHERE period = ? AND system = ? ORDER BY id",
                                                      (period, system))

    def sheets(self, period: str, system: str, kind: str | None = "expert", as_rows: bool = False) -> pd.DataFrame | list[tuple]:
        """The round's sheets of one kind (expert: the assessors'; self: the subjects' own; None: both)."""
        return (self.rows if as_rows else self.frame)(
            """SELECT s.*, f.name AS file, f.received_at, r.sheet AS replaced_by_sheet, rf.name AS replaced_by_file,
                      sf.name AS same_as_file
               FROM sheets s JOIN files f ON f.id = s.file_id
               LEFT JOIN sheets r ON r.id = s.superseded_by LEFT JOIN files rf ON rf.id = r.file_id
               LEFT JOIN sheets o ON o.id = s.same_as LEFT JOIN files sf ON sf.id = o.file_id
               WHERE s.period = ? AND s.system = ? AND (s.kind = ? OR ? IS NULL) ORDER BY s.id""",
            (period, system, kind, kind),
        )

    def problems(self, period: str, system: str, as_rows: bool = False) -> pd.DataFrame | list[tuple]:
        return (self.rows if as_rows else self.frame)(
            """SELECT p.file_id, f.name AS file, p.sheet, p.cell, p.value, p.code, p.severity, p.message, p.technical,
                      p.resolved_by, rf.name AS resolved_by_file
               FROM problems p JOIN files f ON f.id = p.file_id
               LEFT JOIN sheets r ON r.id = p.resolved_by LEFT JOIN files rf ON rf.id = r.file_id
               WHERE f.period = ? AND f.system = ? ORDER BY p.id""",
            (period, system),
        )

    def aliases(self, period: str, system: str, as_rows: bool = False) -> pd.DataFrame | list[tuple]:
        """Every path the same bytes were seen at again, with the file first collected and its status."""
        return (self.rows if as_rows else self.frame)(
            """SELECT a.path, a.seen_at, f.id AS file_id, f.name AS same_as, f.assessor, f.status FROM aliases a
               JOIN files f ON f.sha256 = a.sha256
               WHERE f.period = ? AND f.system = ? ORDER BY a.seen_at, a.path""",
            (period, system),
        )

    def has_problem(self, file_id: int, codes: tuple[str, ...]) -> bool:
        """Whether the file has a problem with one of these codes."""
        marks = ",".join("?" * len(codes))
        return self.conn.execute(f"SELECT 1 FROM problems WHERE file_id = ? AND code IN ({marks}) LIMIT 1",
                                 (file_id, *codes)).fetchone() is not None

    # -- writing -------------------------------------------------------------------------
    def add_correction(self, row: dict) -> int:
        """Append one amend or undo row (the columns of `corrections` but id); returns its id.
        Inside an open `transaction()` it joins it, so a caller can check and write under one lock."""
        names = ("action", "period", "system", "assessor", "subject", "item", "sheet_id", "old_score", "new_score",
                 "raw", "reason", "operator", "created_at", "undoes")
        sql = f"INSERT INTO corrections ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        values = tuple(row.get(n) for n in names)
        if self.conn.in_transaction:
            return self.conn.execute(sql, values).lastrowid
        with self.transaction() as conn:
            return conn.execute(sql, values).lastrowid

    def add_alias(self, sha256: str, path: str, seen_at: datetime) -> bool:
        """Record the same content seen under another path; False when already recorded."""
        with self.transaction() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO aliases VALUES (?, ?, ?)", (sha256, path, _iso(seen_at)))
            return cur.rowcount == 1

    def add_file(self, rec: FileRecord) -> "Ingested":
        """Ingest one file in one transaction; says which sheets it replaced, repeated or clashed with."""
        out = Ingested()
        saved = _iso(rec.saved_at or rec.received_at)
        with self.transaction() as conn:
            file_id = conn.execute(
                """INSERT INTO files (sha256, name, original_path, size, received_at, saved_at, collected_at,
                   archive_path, period, system, assessor, format, status, reason, verified)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (rec.sha256, rec.name, rec.original_path, rec.size, _iso(rec.received_at), _iso(rec.saved_at),
                 _iso(datetime.now()), rec.archive_path, rec.period, rec.system, rec.assessor, rec.format,
                 rec.status, rec.reason, rec.verified),
            ).lastrowid
            conn.executemany(
                """INSERT INTO problems (file_id, sheet, cell, value, code, severity, message, technical)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                [(file_id, p.sheet, p.cell, p.value, p.code, p.severity, p.message, p.technical) for p in rec.problems],
            )
            if rec.sheets:
                self._add_sheets(conn, rec, file_id, saved, out)
        return out

    @staticmethod
    def _add_sheets(conn: sqlite3.Connection, rec: FileRecord, file_id: int, saved: str, out: "Ingested") -> None:
        """A file's sheets and scores in two statements; only a subject this assessor has returned
        before (or twice in this file) needs placing against the earlier sheets. A national month
        is hundreds of thousands of sheets: one statement per sheet was most of collect's time."""
        assessors = sorted({sh.assessor for sh in rec.sheets})
        marks = ",".join("?" * len(assessors))
        before = set(conn.execute(
            f"SELECT DISTINCT assessor, subject FROM sheets WHERE period = ? AND system = ? AND assessor IN ({marks})",
            (rec.period, rec.system, *assessors)))
        twice = {k for k, n in Counter((sh.assessor, sh.subject) for sh in rec.sheets).items() if n > 1}
        # Ids are given here so that the scores can go in with their sheets at once; the write
        # transaction (BEGIN IMMEDIATE) keeps any other writer out between the two statements.
        first = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM sheets").fetchone()[0]
        ids = range(first, first + len(rec.sheets))
        conn.executemany(
            """INSERT INTO sheets (id, file_id, sheet, period, system, assessor, subject, status, saved_at, kind)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [(sheet_id, file_id, sh.sheet, rec.period, rec.system, sh.assessor, sh.subject,
              "accepted" if sh.accepted else "rejected", saved, sh.kind) for sheet_id, sh in zip(ids, rec.sheets)])
        conn.executemany(
            "INSERT INTO scores (sheet_id, item, raw, score, remark, cell, evidence) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(sheet_id, *score, sh.evidence.get(score[0], "")) for sheet_id, sh in zip(ids, rec.sheets) if sh.accepted
             for score in sh.scores])
        for sheet_id, sh in zip(ids, rec.sheets):
            if (sh.assessor, sh.subject) not in before and (sh.assessor, sh.subject) not in twice:
                continue  # the first sheet for this subject: nothing to replace, repeat or fix
            key = (rec.period, rec.system, sh.assessor, sh.subject)
            if sh.accepted:
                _place(conn, key, sheet_id, saved, out)
            _resolve(conn, key)

    def settle_conflicts(self, period: str, system: str, present: "Callable[[str, list[str]], bool]") -> list["Settled"]:
        """Withdraw the sides of each conflict whose files the office removed; a conflict left with
        one side is settled and that side counts. `present(sha256, paths)` says whether a file
        with those bytes is still at one of the paths it was seen at. Nothing changes for a
        conflict of which every side, or none, is still present."""
        rows = self.conn.execute(
            """SELECT c.id, c.assessor, c.subject, c.sheet, f.name, m.id, mf.sha256, mf.original_path
               FROM sheets c JOIN files f ON f.id = c.file_id
               JOIN sheets m ON m.id = c.id OR (m.status = 'duplicate' AND m.same_as = c.id)
               JOIN files mf ON mf.id = m.file_id
               WHERE c.period = ? AND c.system = ? AND c.status = 'conflict' ORDER BY c.id, m.id""",
            (period, system),
        ).fetchall()
        sides: dict[tuple[str, str], dict[int, dict]] = {}  # (assessor, subject) -> conflict sheet -> its side
        for sheet_id, assessor, subject, sheet, name, member, sha, path in rows:
            side = sides.setdefault((assessor, subject), {}).setdefault(
                sheet_id, {"sheet": sheet, "file": name, "members": [], "present": False})
            side["members"].append(member)
            if not side["present"]:
                side["present"] = present(sha, [path, *self._alias_paths(sha)])
        settled = []
        for (assessor, subject), group in sides.items():
            kept = [sid for sid, side in group.items() if side["present"]]
            if not kept or len(kept) == len(group):
                continue
            with self.transaction() as conn:
                for sid, side in group.items():
                    if sid in kept:
                        continue
                    marks = ",".join("?" * len(side["members"]))
                    conn.execute(f"UPDATE sheets SET status = 'withdrawn', superseded_by = ? WHERE id IN ({marks})",
                                 (kept[0] if len(kept) == 1 else None, *side["members"]))
                if len(kept) == 1:
                    conn.execute("UPDATE sheets SET status = 'accepted', same_as = NULL WHERE id = ?", (kept[0],))
            settled.append(Settled(subject, assessor, [group[sid]["file"] for sid in group if sid not in kept],
                                   group[kept[0]]["file"] if len(kept) == 1 else ""))
        return settled

    def _alias_paths(self, sha256: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT path FROM aliases WHERE sha256 = ? ORDER BY path", (sha256,))]


@dataclass
class Ingested:
    """What one file did to its round, sheet by sheet."""

    replaced: list[tuple[str, str]] = field(default_factory=list)  # (earlier file, its sheet) this file superseded
    repeated: list[tuple[str, str]] = field(default_factory=list)  # (subject, file whose sheet has the same scores)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (subject, other file saved in the same second)


@dataclass
class Settled:
    """A conflict the office settled by removing files from the returned folder."""

    subject: str
    assessor: str
    withdrawn: list[str]  # files of the removed sides
    kept: str             # the file that now counts ("" when two or more sides are still present)


def _same_scores(conn: sqlite3.Connection, a: int, b: int) -> bool:
    """Two sheets with exactly the same item scores and remarks."""
    query = "SELECT item, score, remark FROM scores WHERE sheet_id = ? ORDER BY item"
    return conn.execute(query, (a,)).fetchall() == conn.execute(query, (b,)).fetchall()


def _place(conn: sqlite3.Connection, key: tuple, sheet_id: int, saved: str, out: Ingested) -> None:
    """Decide what a newly accepted sheet is against the sheets of its (period, system, assessor, subject).

    The same scores as a sheet that counts (or that clashes): a duplicate, nothing replaced.
    Otherwise the later-saved wins; saved in the same second with different scores: a conflict,
    and neither counts. A return saved after a conflict settles it. Duplicates carry their own
    saved time, so the outcome does not depend on the order files arrive in.
    """
    rows = conn.execute(
        """SELECT s.id, s.status, s.saved_at, f.name, s.sheet FROM sheets s JOIN files f ON f.id = s.file_id
           WHERE s.period = ? AND s.system = ? AND s.assessor = ? AND s.subject = ?
             AND s.status IN ('accepted', 'conflict', 'duplicate') AND s.id != ? ORDER BY s.id""",
        (*key, sheet_id),
    ).fetchall()
    heads = [r for r in rows if r[1] != "duplicate"]  # the sheet that counts, or the sheets in conflict
    if not heads:
        return
    latest = max(r[2] for r in rows)
    in_conflict = heads[0][1] == "conflict"
    twin = next((r for r in heads if _same_scores(conn, sheet_id, r[0])), None)
    if twin is not None and not (in_conflict and saved > latest):
        conn.execute("UPDATE sheets SET status = 'duplicate', same_as = ? WHERE id = ?", (twin[0], sheet_id))
        out.repeated.append((key[3], twin[3]))
    elif saved > latest:
        for other_id, _, _, other_file, other_sheet in rows:
            conn.execute("UPDATE sheets SET status = 'superseded', superseded_by = ? WHERE id = ?", (sheet_id, other_id))
            out.replaced.append((other_file, other_sheet))
    elif saved < latest:
        conn.execute("UPDATE sheets SET status = 'superseded', superseded_by = ? WHERE id = ?", (heads[0][0], sheet_id))
    else:  # the same second, different scores: neither can be chosen
        for other_id, *_ in heads:
            conn.execute("UPDATE sheets SET status = 'conflict', same_as = COALESCE(same_as, ?) WHERE id = ?",
                         (sheet_id, other_id))
        conn.execute("UPDATE sheets SET status = 'conflict', same_as = ? WHERE id = ?", (heads[0][0], sheet_id))
        out.conflicts += [(key[3], name) for _, _, when, name, _ in rows if when == saved]


def _resolve(conn: sqlite3.Connection, key: tuple) -> None:
    """Mark the problems of a rejected sheet resolved once the assessor has returned a sheet for
    the same subject that passed validation and was saved no earlier: the office must not chase
    an assessor who has already fixed the file."""
    fixed = conn.execute(
        """SELECT r.file_id, r.sheet,
                  (SELECT g.id FROM sheets g WHERE g.period = r.period AND g.system = r.system
                     AND g.assessor = r.assessor AND g.subject = r.subject AND g.status NOT IN ('rejected', 'withdrawn')
                     AND g.saved_at >= r.saved_at ORDER BY g.saved_at, g.id LIMIT 1)
           FROM sheets r WHERE r.period = ? AND r.system = ? AND r.assessor = ? AND r.subject = ? AND r.status = 'rejected'""",
        key,
    ).fetchall()
    for file_id, sheet, fixer in fixed:
        if fixer is not None:
            conn.execute("UPDATE problems SET resolved_by = ? WHERE file_id = ? AND sheet = ? AND resolved_by IS NULL",
                         (fixer, file_id, sheet))
