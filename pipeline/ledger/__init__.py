"""The ledger: a database of every file seen, every accepted score and every problem.

Two engines behind one interface, chosen by where the ledger is (`Ledger(location)`, or
`Ledger.open(ws)` for a workspace): a file path is SQLite (`pipeline/ledger/sqlite.py`, the
default, no server), a `postgresql://` URL is PostgreSQL (`pipeline/ledger/postgres.py`, for
several offices collecting into one ledger). The rules — what a sheet becomes against the earlier
ones, what a correction changes, which problems a later return fixed — are written once, here,
against the engine's connection (`_db`: `execute(sql, params)` returning a cursor with
`fetchone`/`fetchall`/`fetchmany`/`description`/`rowcount`, and `executemany`). Queries use `?`
placeholders, `ON CONFLICT DO NOTHING` and `RETURNING id`, which both engines understand (the
PostgreSQL engine turns `?` into `%s`). An engine overrides only: connecting, beginning and
ending a transaction (`_begin`, `_commit`, `_rollback`), reading and setting the schema version,
allocating sheet ids, the round lock, its own migration list, and how a column of the round's
scores is joined into one text (`_joined`, `_score_text`).

One file is ingested in one transaction (`Ledger.add_file`), so a crash leaves the ledger as
it was before that file. Writers take turns: SQLite's BEGIN IMMEDIATE, PostgreSQL's
transaction-level advisory lock, so a rule that reads and then writes sees no other writer in
between. Nothing is ever deleted: a resubmission marks the earlier sheet `superseded` and
points at the sheet that replaced it. Corrections made after 公示 are rows of their own
(`corrections`, append-only), applied on top of the returns by `accepted_scores`.

Schema versions. `SCHEMA_VERSION` below is the one number both engines reach. Each engine
module keeps its `MIGRATIONS`: SQLite's is the numbered list of steps since version 1 (a
ledger made by an earlier happyhome is brought forward on open); a PostgreSQL ledger is new,
so its list starts with the whole current schema as one step numbered 5. To add version N:
raise `SCHEMA_VERSION` to N and append ONE entry to each engine's `MIGRATIONS` (SQLite: a
tuple of statements; PostgreSQL: `(N, (statements...))`). Never edit a step that has shipped.

Sheet statuses: accepted (counts), rejected (failed validation), superseded (a later-saved
return replaced it), duplicate (the same scores and remarks as the sheet that counts:
`same_as`), conflict (another return for the same assessor and subject was saved in the
same second with different scores: neither counts until it is settled), withdrawn (a
conflicting return whose file the office removed from the returned folder). A sheet marked
回避 = 是 on the form (a declared conflict) is an accepted sheet without scores, marked in
`declared` with its reason (migration 6): it takes part in all of the above like a scored return.
"""

from __future__ import annotations

from collections import Counter, namedtuple
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from pipeline.config import is_url
from pipeline.errors import OutputError
from pipeline.i18n import _
from pipeline.messages import Problem

if TYPE_CHECKING:  # pandas is imported where a frame is made: collect needs none until its report
    import pandas as pd

    from pipeline.config import Workspace

# The schema version both engines are at; see the module docstring to add one.
SCHEMA_VERSION = 7

# Every table, in the order a copy writes them (referenced tables first).
TABLES = ("files", "aliases", "sheets", "declared", "scores", "problems", "corrections", "mail_sent", "mail_fetched")
# The columns of `Ledger.accepted_scores`, before the corrections' `original` and `correction`.
ACCEPTED = ("period", "system", "assessor", "subject", "item", "raw", "score", "remark", "file", "sheet", "cell",
            "sha256", "sheet_id")
# Separates the values of one column read as one text (`Ledger._round_scores`): a control character
# no form's text normally holds (a round where one does is read row by row).
JOINED = "\x1f"
# The tables keyed by something other than an `id` column, and that key (the others' `id` is serial).
KEYS = {"aliases": "sha256, path", "declared": "sheet_id"}


class Cursorish(Protocol):
    """What the shared rules need of an engine's connection."""

    def execute(self, sql: str, params: tuple = ...) -> Any: ...
    def executemany(self, sql: str, rows: list) -> Any: ...


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
    declared: bool = False  # 回避 = 是 on the form: a declared conflict, accepted with no scores
    reason: str = ""  # its 回避原因


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


def _records(rows: list, columns: list[str]) -> pd.DataFrame:
    """Rows as a frame, the way pandas.read_sql_query makes one (so both engines give the same)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame.from_records(rows, columns=columns, coerce_float=True)


def _split_columns(n: int, joined: dict[str, str]) -> "dict | None":
    """`_round_scores`' columns, each one text of `n` values joined by `JOINED`: sheet_id and id as
    integers, the others as (codes, distinct texts); None when a text splits into more than `n`
    values (one held the separator) or a score's text is not a number."""
    import numpy as np
    import pandas as pd

    out = {}
    for name, text in joined.items():
        if name in ("sheet_id", "id"):  # integers: parsed in C, no text object per value
            out[name] = np.fromstring(text, dtype=np.int64, sep=JOINED)
            if len(out[name]) != n:
                return None
            continue
        values = text.split(JOINED)
        if len(values) != n:
            return None
        codes, distinct = pd.factorize(np.array(values, dtype=object))
        if name == "score" and "" in set(distinct):
            return None
        out[name] = (codes, distinct)
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def engine_for(location: str | Path) -> type["Ledger"]:
    """The engine class for a ledger location: a postgresql:// URL or a file path."""
    if is_url(str(location)):
        from pipeline.ledger.postgres import PostgresLedger

        return PostgresLedger
    from pipeline.ledger.sqlite import SqliteLedger

    return SqliteLedger


class Ledger:
    """A connection to the ledger, created on first use. `Ledger(location)` returns the engine
    for the location (SQLite for a path, PostgreSQL for a postgresql:// URL)."""

    path: Path | str  # where it is, for messages (a URL without its password)

    def __new__(cls, location: str | Path, *args, **kwargs):
        if cls is Ledger:
            cls = engine_for(location)
        return super().__new__(cls)

    def __init__(self, location: str | Path):  # pragma: no cover - every engine has its own
        raise NotImplementedError

    @classmethod
    def open(cls, ws: "Workspace", reading: bool = False) -> "Ledger":
        """The workspace's ledger: HAPPYHOME_LEDGER_URL, else `[paths] ledger` (a path or a URL)."""
        where = ws.ledger_location()
        return cls.for_reading(where) if reading else Ledger(where)

    @classmethod
    def for_reading(cls, location: str | Path) -> "Ledger":
        """The ledger for a command that only reads it: with no SQLite file yet, an empty one in
        memory, so reading never creates files as a side effect."""
        if is_url(str(location)):
            return Ledger(str(location))
        path = Path(location)
        return Ledger(path if path.is_file() else ":memory:")

    # -- engine ------------------------------------------------------------------------------
    _db: Cursorish
    _depth = 0  # open write transactions (0 or 1)

    def _begin(self) -> None:
        raise NotImplementedError

    def _begin_snapshot(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def _version(self) -> int:
        raise NotImplementedError

    def _set_version(self, number: int) -> None:
        raise NotImplementedError

    def _migrations(self) -> tuple[list[tuple[int, tuple[str, ...]]], int]:
        """(numbered steps, the version they reach)."""
        raise NotImplementedError

    def _check_step(self, number: int) -> None:
        """Called inside a migration step before it commits."""

    def _new_sheet_ids(self, n: int) -> list[int] | range:
        raise NotImplementedError

    def _insert_rows(self, table: str, columns: tuple[str, ...] | list[str], rows: list[tuple]) -> None:
        """Many rows into one table, inside the open transaction (PostgreSQL: COPY)."""
        if rows:
            marks = ", ".join("?" * len(columns))
            self._db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def _defer_references(self) -> None:
        """Inside a transaction: check references at COMMIT (a copy writes a sheet before the
        later sheet that superseded it)."""
        raise NotImplementedError

    def _after_copy(self) -> None:
        """Inside the copy's transaction, after every row is in (PostgreSQL: move the id sequences on)."""

    def _engine_check(self) -> list[str]:
        """What only this engine can check of its own storage."""
        return []

    def close(self) -> None:
        raise NotImplementedError

    @contextmanager
    def round_lock(self, key: str, wait: float) -> Iterator[None]:
        """Hold the round's lock in the database for a collection (PostgreSQL: an advisory
        lock, so two offices collecting one round take turns); SQLite: the workspace lock file
        already covers its one office."""
        yield

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self) -> None:
        """Apply the migration steps this ledger has not had yet, each in one transaction."""
        steps, target = self._migrations()
        version = self._version()
        if version > target:
            raise OutputError(_("The ledger {path} has schema version {version}, made by a newer happyhome "
                                "(this one knows up to {known}): upgrade happyhome.").format(
                path=self.path, version=version, known=target))
        if version == target:
            return
        for number, statements in steps:
            if number <= version:
                continue
            with self.transaction() as db:
                # Read again under the write lock: another process may have migrated meanwhile.
                if self._version() >= number:
                    continue
                for statement in statements:
                    db.execute(statement)
                self._check_step(number)
                self._set_version(number)

    @contextmanager
    def transaction(self) -> Iterator[Cursorish]:
        """A write transaction (one writer at a time); rolled back on any error."""
        self._begin()
        self._depth += 1
        try:
            yield self._db
        except BaseException:
            self._depth -= 1
            self._rollback()
            raise
        self._depth -= 1
        self._commit()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read in one consistent snapshot: a collection committing meanwhile cannot split it."""
        self._begin_snapshot()
        try:
            yield
        finally:
            self._rollback()

    # -- reading -------------------------------------------------------------------------
    def known(self, sha256: str, period: str | None = None, system: str | None = None) -> dict | None:
        """The file with these bytes (in this round, when period and system are given), as a dict."""
        if period is not None and system is not None:
            cur = self._db.execute("SELECT * FROM files WHERE sha256 = ? AND period = ? AND system = ? ORDER BY id",
                                   (sha256, period, system))
        else:
            cur = self._db.execute("SELECT * FROM files WHERE sha256 = ? ORDER BY id", (sha256,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row))

    def frame(self, sql: str, params: tuple = (), chunksize: int | None = None) -> pd.DataFrame:
        """A query as a frame, its rows fetched as they are read (on PostgreSQL the driver does not
        hold a national month's 40,000 sheets twice, as a result and as rows). With `chunksize`,
        rows are read in chunks and every repeated text is shared: SQLite hands back a new string
        object per row, which for a national month's 760,000 scores x 9 text columns is most of
        a gigabyte."""
        import pandas as pd

        if chunksize is None:
            with self._streamed(sql, params) as cur:
                rows = []
                while chunk := cur.fetchmany(10_000):
                    rows += chunk
                return _records(rows, [d[0] for d in cur.description])
        parts = []
        with self._streamed(sql, params) as cur:
            columns = [d[0] for d in cur.description]
            while rows := cur.fetchmany(chunksize):
                parts.append(_share_strings(_records(rows, columns)))
        return pd.concat(parts, ignore_index=True) if parts else _records([], columns)

    @contextmanager
    def _streamed(self, sql: str, params: tuple) -> Iterator[Any]:
        """A cursor whose rows are fetched as they are read (SQLite's always are)."""
        yield self._db.execute(sql, params)

    def periods(self, system: str) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT period FROM sheets WHERE system = ? ORDER BY period", (system,))
        return [r[0] for r in rows]

    def round_keys(self, system: str) -> list[str]:
        """Every round key the ledger holds a file or a sheet for, for this system."""
        rows = self._db.execute(
            "SELECT period FROM files WHERE system = ? UNION SELECT period FROM sheets WHERE system = ? ORDER BY 1",
            (system, system)).fetchall()
        return [r[0] for r in rows]

    def accepted_scores(self, period: str, system: str) -> pd.DataFrame:
        """Every score of the round's active sheets, traceable to file, sheet and cell, with the
        corrections in force applied: `score` is the value that counts, `original` the return's,
        `correction` the id of the correction that changed it (<NA> for none). Every reader of
        scores (report, digest, roll-up) comes through here, so none can miss a correction."""
        import numpy as np
        import pandas as pd

        # Two reads joined here, not one joined in SQL: what is the same for a sheet's ~20 scores
        # (who, what, which file) comes once per sheet, so a national month's 760,000 rows do not
        # each make seven new strings — whose few survivors, shared by the frame, would pin most
        # of the memory they were made in (about 300 MB of the report's peak).
        where = "s.period = ? AND s.system = ? AND s.status = 'accepted' AND s.kind = 'expert'"
        sheets = self.frame(
            f"""SELECT s.id, s.period, s.system, s.assessor, s.subject, f.name AS file, s.sheet, f.sha256
                FROM sheets s JOIN files f ON f.id = s.file_id WHERE {where} ORDER BY s.id""",
            (period, system), chunksize=50_000)  # equal texts as one object: every score points at them
        scores = self._round_scores(where, (period, system))
        if not len(scores):
            frame = _records([], list(ACCEPTED))
            frame["original"] = frame["score"]
            frame["correction"] = pd.Series(pd.NA, index=frame.index, dtype="Int64")
        else:
            # Built at once from the columns' arrays: no frame copied for each column added.
            at = pd.Index(sheets["id"]).get_indexer(scores["sheet_id"])
            columns = {name: (scores[name].array if name in scores else sheets[name].array.take(at)) for name in ACCEPTED}
            columns["original"] = scores["score"].to_numpy(copy=True)
            columns["correction"] = pd.array(np.zeros(len(scores), dtype=np.int64), dtype="Int64")
            columns["correction"][:] = pd.NA
            frame = pd.DataFrame(columns, copy=False)
        del sheets, scores
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

    def _round_scores(self, where: str, params: tuple) -> pd.DataFrame:
        """The score rows of the sheets `where` selects (`s` is the sheet): sheet_id, item, raw, score,
        remark, cell, by subject, assessor, then the order they were entered.

        Each column comes from the database as one text (`_joined`: the values joined by `JOINED`),
        not as 760,000 rows of Python objects (a national month: about a third of the time), and
        the rows are put in order here. A round where that cannot be read back exactly (a text
        holding `JOINED`, a score without an exact short text) is read row by row
        (`_score_rows`): the same frame either way."""
        import numpy as np
        import pandas as pd

        columns = ["sheet_id", "item", "raw", "score", "remark", "cell"]
        parts = ["c.sheet_id", "c.id", "c.item", "c.raw", self._score_text(), "c.remark", "c.cell"]
        row = self._db.execute(f"SELECT COUNT(*), {', '.join(self._joined(p) for p in parts)} "
                               f"FROM scores c JOIN sheets s ON s.id = c.sheet_id WHERE {where}",
                               (JOINED,) * len(parts) + params).fetchone()
        if not row[0]:
            return _records([], columns)
        read = _split_columns(row[0], dict(zip(["sheet_id", "id", "item", "raw", "score", "remark", "cell"], row[1:])))
        if read is None:
            return self._score_rows(where, params)
        ranks = self._db.execute(
            f"SELECT s.id, DENSE_RANK() OVER (ORDER BY s.subject, s.assessor) FROM sheets s WHERE {where}",
            params).fetchall()
        ids, rank = (np.array(v, dtype=np.int64) for v in zip(*ranks))
        order = np.lexsort((read.pop("id"), rank[pd.Index(ids).get_indexer(read["sheet_id"])]))
        text = pd.Series([""]).dtype  # what the row path's text columns are
        frame = {"sheet_id": read.pop("sheet_id")[order]}
        for name, (codes, distinct) in read.items():
            codes = codes[order]
            frame[name] = (np.array([float(v) for v in distinct], dtype="float64")[codes] if name == "score"
                           else pd.array(distinct.take(codes), dtype=text))
        return pd.DataFrame({name: frame[name] for name in columns}, copy=False)

    def _score_rows(self, where: str, params: tuple) -> pd.DataFrame:
        """`_round_scores`' frame, read row by row (and sorted) by the database."""
        return self.frame(
            f"""SELECT c.sheet_id, c.item, c.raw, c.score, c.remark, c.cell
                FROM scores c JOIN sheets s ON s.id = c.sheet_id WHERE {where}
                ORDER BY s.subject, s.assessor, c.id""",
            params, chunksize=50_000)

    def _joined(self, expression: str) -> str:
        """SQL aggregating `expression` over the rows as one text, the values separated by a `?`
        parameter (SQLite: group_concat)."""
        return f"group_concat({expression}, ?)"

    def _score_text(self) -> str:
        """SQL giving each score (c.score) as a text that Python's float() reads back to the same
        double, or '' where the engine has none. SQLite's own text of a REAL keeps 15 digits, so a
        score is written as millionths ("2500000e-6"), when that is exact: the division is IEEE
        arithmetic on both sides, so SQLite's test is Python's."""
        micro = "CAST(c.score * 1000000 AS INTEGER)"
        return f"CASE WHEN {micro} / 1000000.0 = c.score THEN {micro} || 'e-6' ELSE '' END"

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
        return self._db.execute("SELECT 1 FROM sheets WHERE period = ? AND system = ? AND kind = 'self' LIMIT 1",
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
        return self._db.execute(
            """SELECT s.id, c.score, c.raw FROM scores c JOIN sheets s ON s.id = c.sheet_id
               WHERE s.period = ? AND s.system = ? AND s.assessor = ? AND s.subject = ? AND c.item = ?
                 AND s.status = 'accepted' ORDER BY s.id DESC LIMIT 1""",
            (period, system, assessor, subject, item),
        ).fetchone()

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """A query as named tuples, for a caller that walks the rows once (the collection workbook):
        no pandas to import at the end of every collect. NULL is None, not NaN."""
        cursor = self._db.execute(sql, params)
        row = namedtuple("Row", [d[0] for d in cursor.description], rename=True)
        return list(map(row._make, cursor.fetchall()))

    def files(self, period: str, system: str, as_rows: bool = False) -> pd.DataFrame | list[tuple]:
        """The round's files (as `rows` with as_rows)."""
        return (self.rows if as_rows else self.frame)("SELECT * FROM files WHERE period = ? AND system = ? ORDER BY id",
                                                      (period, system))

    def sheets(self, period: str, system: str, kind: str | None = "expert",
               as_rows: bool = False) -> pd.DataFrame | list[tuple]:
        """The round's sheets of one kind (expert: the assessors'; self: the subjects' own; None: both)."""
        return (self.rows if as_rows else self.frame)(
            """SELECT s.*, f.name AS file, f.received_at, r.sheet AS replaced_by_sheet, rf.name AS replaced_by_file,
                      sf.name AS same_as_file, CASE WHEN d.sheet_id IS NULL THEN 0 ELSE 1 END AS declared, d.reason AS declared_reason
               FROM sheets s JOIN files f ON f.id = s.file_id LEFT JOIN declared d ON d.sheet_id = s.id
               LEFT JOIN sheets r ON r.id = s.superseded_by LEFT JOIN files rf ON rf.id = r.file_id
               LEFT JOIN sheets o ON o.id = s.same_as LEFT JOIN files sf ON sf.id = o.file_id
               WHERE s.period = ? AND s.system = ? AND s.kind = COALESCE(?, s.kind) ORDER BY s.id""",
            (period, system, kind),
        )

    def declarations(self, period: str, system: str) -> list[Declaration]:
        """The round's declared conflicts in force (回避 = 是 on the sheet that counts for its assessor
        and subject), by subject then assessor."""
        rows = self._db.execute(
            """SELECT s.assessor, s.subject, d.reason, f.name, s.sheet, s.saved_at
               FROM declared d JOIN sheets s ON s.id = d.sheet_id JOIN files f ON f.id = s.file_id
               WHERE s.period = ? AND s.system = ? AND s.status = 'accepted' ORDER BY s.subject, s.assessor""",
            (period, system)).fetchall()
        return [Declaration(*row) for row in rows]

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
        return self._db.execute(f"SELECT 1 FROM problems WHERE file_id = ? AND code IN ({marks}) LIMIT 1",
                                 (file_id, *codes)).fetchone() is not None

    # -- mail (pipeline.mail) --------------------------------------------------------------
    def add_mail_sent(self, row: dict) -> None:
        """Record one message tried (the columns of `mail_sent` but id)."""
        names = ("period", "system", "assessor", "kind", "recipient", "message_id", "sent_at", "attachment",
                 "attachment_sha256", "status", "answer")
        with self.transaction() as conn:
            conn.execute(f"INSERT INTO mail_sent ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         tuple(row.get(n, "") for n in names))

    def mail_sent(self, period: str, system: str, kind: str) -> dict[str, set[str]]:
        """Assessor -> the sha256 of every attachment (or letter) sent to them this round."""
        out: dict[str, set[str]] = {}
        for assessor, sha in self._db.execute(
                "SELECT assessor, attachment_sha256 FROM mail_sent WHERE period = ? AND system = ? AND kind = ? "
                "AND status = 'sent'", (period, system, kind)).fetchall():
            out.setdefault(assessor, set()).add(sha)
        return out

    def mail_sent_rows(self, period: str, system: str) -> list[dict]:
        """Every message tried this round, oldest first."""
        cur = self._db.execute("SELECT * FROM mail_sent WHERE period = ? AND system = ? ORDER BY id", (period, system))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def first_mail_sent(self, period: str) -> str | None:
        """When the round's first form was sent (ISO), or None."""
        return self._db.execute("SELECT MIN(sent_at) FROM mail_sent WHERE period = ? AND kind = 'form' "
                                 "AND status = 'sent'", (period,)).fetchone()[0]

    def mail_fetched_ids(self, period: str) -> set[str]:
        """The message ids already taken for this round."""
        return {r[0] for r in self._db.execute("SELECT DISTINCT message_id FROM mail_fetched WHERE period = ?",
                                                (period,)).fetchall()}

    def mail_saved_as(self, period: str, sha256: str) -> str | None:
        """Where an attachment with these bytes was saved for this round, or None."""
        row = self._db.execute("SELECT saved_path FROM mail_fetched WHERE period = ? AND sha256 = ? "
                                "AND status = 'saved' ORDER BY id LIMIT 1", (period, sha256)).fetchone()
        return row[0] if row else None

    def add_mail_fetched(self, rows: list[dict]) -> None:
        """Record one fetched message's rows (the columns of `mail_fetched` but id) in one transaction."""
        names = ("period", "mailbox", "uid", "message_id", "sender", "received_at", "fetched_at", "attachment",
                 "sha256", "saved_path", "status")
        with self.transaction() as conn:
            conn.executemany(f"INSERT INTO mail_fetched ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                             [tuple(row.get(n, "") for n in names) for row in rows])

    def mail_senders(self, period: str) -> dict[str, str]:
        """Saved path -> the address it was mailed from, for the round's fetched attachments."""
        return {path: sender for path, sender in self._db.execute(
            "SELECT saved_path, sender FROM mail_fetched WHERE period = ? AND status = 'saved'", (period,)).fetchall()}

    # -- writing -------------------------------------------------------------------------
    def add_correction(self, row: dict) -> int:
        """Append one amend or undo row (the columns of `corrections` but id); returns its id.
        Inside an open `transaction()` it joins it, so a caller can check and write under one lock."""
        names = ("action", "period", "system", "assessor", "subject", "item", "sheet_id", "old_score", "new_score",
                 "raw", "reason", "operator", "created_at", "undoes")
        sql = f"INSERT INTO corrections ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) RETURNING id"
        values = tuple(row.get(n) for n in names)
        if self._depth:
            return self._db.execute(sql, values).fetchone()[0]
        with self.transaction() as db:
            return db.execute(sql, values).fetchone()[0]

    def add_alias(self, sha256: str, path: str, seen_at: datetime) -> bool:
        """Record the same content seen under another path; False when already recorded."""
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO aliases VALUES (?, ?, ?) ON CONFLICT DO NOTHING", (sha256, path, _iso(seen_at)))
            return cur.rowcount == 1

    def add_file(self, rec: FileRecord) -> "Ingested":
        """Ingest one file in one transaction; says which sheets it replaced, repeated or clashed with."""
        out = Ingested()
        saved = _iso(rec.saved_at or rec.received_at)
        with self.transaction() as conn:
            file_id = conn.execute(
                """INSERT INTO files (sha256, name, original_path, size, received_at, saved_at, collected_at,
                   archive_path, period, system, assessor, format, status, reason, verified)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                (rec.sha256, rec.name, rec.original_path, rec.size, _iso(rec.received_at), _iso(rec.saved_at),
                 _iso(datetime.now()), rec.archive_path, rec.period, rec.system, rec.assessor, rec.format,
                 rec.status, rec.reason, rec.verified),
            ).fetchone()[0]
            self._insert_rows(
                "problems", ("file_id", "sheet", "cell", "value", "code", "severity", "message", "technical"),
                [(file_id, p.sheet, p.cell, p.value, p.code, p.severity, p.message, p.technical) for p in rec.problems])
            if rec.sheets:
                self._add_sheets(conn, rec, file_id, saved, out)
        return out

    def _add_sheets(self, conn: "Cursorish", rec: FileRecord, file_id: int, saved: str, out: "Ingested") -> None:
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
        # transaction keeps any other writer out between the two statements.
        ids = self._new_sheet_ids(len(rec.sheets))
        self._insert_rows(
            "sheets", ("id", "file_id", "sheet", "period", "system", "assessor", "subject", "status", "saved_at", "kind"),
            [(sheet_id, file_id, sh.sheet, rec.period, rec.system, sh.assessor, sh.subject,
              "accepted" if sh.accepted else "rejected", saved, sh.kind) for sheet_id, sh in zip(ids, rec.sheets)])
        self._insert_rows("declared", ("sheet_id", "reason"),
                          [(sheet_id, sh.reason) for sheet_id, sh in zip(ids, rec.sheets) if sh.declared])
        rows: list[tuple] = []
        for sheet_id, sh in zip(ids, rec.sheets):
            if not sh.accepted:
                continue
            if sh.evidence:  # a self form's 佐证材料
                rows += [(sheet_id, *score, sh.evidence.get(score[0], "")) for score in sh.scores]
            else:
                rows += [(sheet_id, *score, "") for score in sh.scores]
        self._insert_rows("scores", ("sheet_id", "item", "raw", "score", "remark", "cell", "evidence"), rows)
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
        rows = self._db.execute(
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
        return [r[0] for r in self._db.execute("SELECT path FROM aliases WHERE sha256 = ? ORDER BY path", (sha256,))]

    # -- the whole ledger: copy and check ----------------------------------------------------
    def table_counts(self) -> dict[str, int]:
        """Rows per table."""
        return {t: self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}

    def score_checksum(self) -> str:
        """sha256 over every score row (sheet, item, raw, score, remark, cell, evidence), in order:
        two ledgers with the same checksum hold the same scores, to the last digit."""
        import hashlib

        digest = hashlib.sha256()
        cur = self._db.execute("SELECT sheet_id, item, raw, score, remark, cell, evidence FROM scores ORDER BY sheet_id, item")
        while rows := cur.fetchmany(10_000):
            for row in rows:
                digest.update(repr(tuple(row)).encode("utf-8"))
        return digest.hexdigest()

    def columns(self, table: str) -> list[str]:
        cur = self._db.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        cur.fetchall()
        return [d[0] for d in cur.description]

    def table_rows(self, table: str, batch: int = 10_000) -> Iterator[list[tuple]]:
        """Every row of a table in id order (aliases: by key), in batches."""
        order = KEYS.get(table, "id")
        cur = self._db.execute(f"SELECT * FROM {table} ORDER BY {order}")
        while chunk := cur.fetchmany(batch):
            yield [tuple(r) for r in chunk]

    def check(self) -> list[str]:
        """The ledger's integrity: every reference leads somewhere, at most one sheet counts per
        assessor and subject, every replaced or repeated sheet says by which, and the engine's
        own checks. Empty when all is well."""
        found = []
        references = (("sheets", "file_id", "files"), ("sheets", "superseded_by", "sheets"),
                      ("sheets", "same_as", "sheets"), ("declared", "sheet_id", "sheets"), ("scores", "sheet_id", "sheets"),
                      ("problems", "file_id", "files"), ("problems", "resolved_by", "sheets"),
                      ("corrections", "sheet_id", "sheets"), ("corrections", "undoes", "corrections"))
        for table, column, target in references:
            n = self._db.execute(f"SELECT COUNT(*) FROM {table} x WHERE x.{column} IS NOT NULL AND NOT EXISTS "
                                 f"(SELECT 1 FROM {target} t WHERE t.id = x.{column})").fetchone()[0]
            if n:
                found.append(_("{n} rows of {table}.{column} point at no row of {target}").format(
                    n=n, table=table, column=column, target=target))
        n = self._db.execute("""SELECT COUNT(*) FROM (SELECT 1 FROM sheets WHERE status = 'accepted'
                                GROUP BY period, system, kind, assessor, subject HAVING COUNT(*) > 1) x""").fetchone()[0]
        if n:
            found.append(_("{n} assessor-subject pairs have more than one accepted sheet").format(n=n))
        for status, column in (("superseded", "superseded_by"), ("duplicate", "same_as")):
            n = self._db.execute(f"SELECT COUNT(*) FROM sheets WHERE status = ? AND {column} IS NULL",
                                 (status,)).fetchone()[0]
            if n:
                found.append(_("{n} {status} sheets do not say which sheet ({column})").format(
                    n=n, status=status, column=column))
        n = self._db.execute("SELECT COUNT(*) FROM files f WHERE NOT EXISTS (SELECT 1 FROM sheets s WHERE s.file_id = f.id) "
                             "AND f.status != 'rejected'").fetchone()[0]
        if n:
            found.append(_("{n} files accepted without a sheet").format(n=n))
        return found + self._engine_check()


@dataclass(frozen=True)
class Declaration:
    """A declared conflict in force: the assessor marked 回避 = 是 on the subject's sheet."""

    assessor: str
    subject: str
    reason: str
    file: str
    sheet: str
    saved_at: str


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


def _same_scores(conn: "Cursorish", a: int, b: int) -> bool:
    """Two sheets with exactly the same item scores and remarks (two declarations: the same 回避原因;
    a declaration is never the same as a scored sheet)."""
    query = "SELECT item, score, remark FROM scores WHERE sheet_id = ? ORDER BY item"
    declared = "SELECT reason FROM declared WHERE sheet_id = ?"
    return (conn.execute(query, (a,)).fetchall() == conn.execute(query, (b,)).fetchall()
            and conn.execute(declared, (a,)).fetchall() == conn.execute(declared, (b,)).fetchall())


def _place(conn: "Cursorish", key: tuple, sheet_id: int, saved: str, out: Ingested) -> None:
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


def _resolve(conn: "Cursorish", key: tuple) -> None:
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


@dataclass
class Copied:
    """What `copy_ledger` moved and how it was verified."""

    source: str
    target: str
    counts: dict[str, int]
    checksum: str  # of every score, the same on both sides


def copy_ledger(source: Ledger, target: Ledger, progress: Callable[[int], None] | None = None) -> Copied:
    """Copy every row of `source` into the empty ledger `target` (either engine to either), in
    one transaction, ids kept; then verify the rows per table and the checksum of every score."""
    advance = progress or (lambda n=1: None)
    held = target.table_counts()
    if any(held.values()):
        raise OutputError(_("The ledger {target} is not empty ({files} files): copy only into a new ledger.").format(
            target=target.path, files=held["files"]))
    counts = source.table_counts()
    with target.transaction():
        target._defer_references()
        for table in TABLES:
            names = source.columns(table)
            if names != target.columns(table):
                raise OutputError(_("The ledgers {source} and {target} have different columns in {table}.").format(
                    source=source.path, target=target.path, table=table))
            for chunk in source.table_rows(table):
                target._insert_rows(table, names, chunk)
                advance(len(chunk))
        target._after_copy()
    copied, checksum = target.table_counts(), target.score_checksum()
    if copied != counts or checksum != source.score_checksum():
        raise OutputError(_("The copy in {target} does not match {source}: rows {copied} against {counts}.").format(
            target=target.path, source=source.path, copied=copied, counts=counts))
    return Copied(str(source.path), str(target.path), counts, checksum)


def copy_into(ws: "Workspace", to: str, source: str | None = None,
              progress: Callable[[int], None] | None = None) -> Copied:
    """`happyhome ledger copy`: the workspace's ledger (or `source`) into the new ledger `to`
    (a postgresql:// URL or an SQLite file), verified."""
    where = source or ws.ledger_location()
    if not is_url(str(where)) and not Path(where).is_file():
        raise OutputError(_("There is no ledger at {path} to copy.").format(path=where))
    with Ledger(where) as src, Ledger(to) as dst:
        return copy_ledger(src, dst, progress)


@dataclass
class Checked:
    """What `happyhome ledger check` found."""

    path: str
    version: int
    counts: dict[str, int]
    checksum: str
    findings: list[str]


def check_ledger(ws: "Workspace", location: str | None = None) -> Checked:
    """`happyhome ledger check`: the integrity of the workspace's ledger (or the one at `location`)."""
    with Ledger.for_reading(location or ws.ledger_location()) as db, db.snapshot():
        return Checked(str(db.path), db._version(), db.table_counts(), db.score_checksum(), db.check())
