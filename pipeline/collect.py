"""Collect returned workbooks: identify, validate, normalise -> ledger records.

The rules an office can rely on:

- A file is identified by its hidden metadata sheet (`_happyhome`, signed by `forms.sign`);
  where that is gone (sheets copied into a new workbook), by the identity block at the top of
  each subject sheet (评估对象/对象编号/评估人/评估人编号/期次/指标体系); where neither
  identifies it, the file is rejected (`no_identity`).
- The metadata carries an HMAC under the office key (pipeline.officekey, `forms.seal`): a form
  whose HMAC does not verify (metadata edited by hand, a form of another workspace) is rejected
  (`forged_form`); a form made before the key existed is collected with a warning
  (`unsigned_form`), and so is every form when the workspace has no key (`no_office_key`). A
  file identified by its visible block is collected as before but recorded as unverified
  (files.verified; 验证 in 文件, 表格验证 in the summary's 评估人 sheet).
- Items are matched by the code in the 编号 column, never by row position, so moved or
  inserted rows and columns are fine. 合计, 小计 and 汇总 are never read (a re-saved file can
  carry a false cached 0): totals are recomputed from the item scores later.
- A subject sheet with any error is not counted; the other sheets of the same file are.
  A file is `accepted` when all its subject sheets are, `partial` when some are, `rejected`
  when none are or it cannot be read at all; a rejected file still gets its ledger row and
  its archived copy.
- Every file is hashed (sha256) and copied into the archive under its hash before it is
  parsed. The same bytes again in the same round are "already collected": under the same path
  nothing changes, under another path the path is recorded as an alias (重复 in the report).
  A file is recorded once per round (period, system): the returned folder is shared by both
  systems, so a zone form is recorded as rejected by the community run (status other_round in
  the run's result, not a --strict failure) and still taken in by the zone run.
- A copy of a rejected file under another name says so (与文件 X 内容相同，X 未通过校验).
  A form of another month says which folder it belongs in (请放入 input/returned/2026-10/).
- A rejected resubmission does not replace an accepted earlier sheet; the earlier one stays counted.
- A resubmission for the same (period, system, assessor, subject) supersedes the earlier
  sheet, which stays in the ledger marked superseded: the later *saved* one wins — the
  workbook's own last-saved time (docProps, in UTC), else the file's modification time —
  compared to the second. `received_at` is the file's modification time: when it was saved
  into the returned folder.
- The same item scores and remarks as the sheet that counts (the same form saved again, or
  as .ods) are one submission: the new sheet is a duplicate (重复, 与文件 X 的评分相同) and
  replaces nothing, whatever its saved time.
- Different scores saved in the same second are a conflict (冲突): no rule can tell which the
  assessor meant, so neither counts (the assignment stays missing) and neither is chosen by
  file name or order of arrival. A conflict is settled in one of two ways: a newer return
  (saved later) for that subject supersedes both; or the office removes the unwanted file(s)
  from the returned folder and runs collect again — a conflicting file no longer found, with
  the same bytes, at any path it was collected from is withdrawn, and when one side is left
  it counts. Removing every side changes nothing (ask the assessor for a newer return).
- A subject sheet marked 回避 = 是 (forms.DECLARE_LABEL) is a declared conflict: not an error and
  not scored (its 得分 are not read); it is recorded as the assessor's return for that subject,
  with its 回避原因, and supersedes or is superseded like any return (the later-saved wins). The
  collection workbook lists it as 声明回避. Forms made before the 回避 cell read as 否.
- The problems of a rejected sheet are marked fixed (已更正) once the same assessor's sheet for
  the same subject, saved no earlier, passes validation: they no longer count as open.

`examine()` is pure (bytes in, record out) and runs in worker processes; `collect()` does the
file system and the ledger in the main process, one transaction per file.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import numbers
import os
import re
import shutil
import unicodedata
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Callable

from pipeline.atomic import atomic_path, check_writable, current_umask, explain, write_bytes
from pipeline.config import Workspace, is_url
from pipeline.errors import UsageError
from pipeline.forms import (BLOCK_LABELS, DECLARE_LABEL, DECLARE_REASON_LABEL, DECLARE_YES, EVIDENCE, EXPERT,
                            GUIDE_SHEET, KINDS, META_SHEET, SEAL_ROW, SELF, SELF_ASSESSOR, SUMMARY_SHEET, seal_ok, sign)
from pipeline.ledger import FileRecord, Ledger, Settled, SheetRecord
from pipeline.messages import ERROR, PHRASES, Problem, problem
from pipeline.officekey import load_key
from pipeline.reader import Limits, Sheet, UnreadableFile, Workbook, read_workbook
from pipeline.roster import Roster
from pipeline.rounds import SUPERVISION, check_key, check_stage, round_key, split_key
from pipeline.systems import Item, System
from pipeline.workers import NO_MEMORY, TIMED_OUT, WorkerFailed, Workers

SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
IGNORED_SHEETS = {GUIDE_SHEET, SUMMARY_SHEET, META_SHEET}
# The form's own sheets that hold nothing to collect: never parsed (汇总's totals are never read).
UNREAD_SHEETS = frozenset({GUIDE_SHEET, SUMMARY_SHEET})
SUBTOTAL_WORDS = {"合计", "小计", "汇总", "总计", "总分", "得分合计"}
ERROR_VALUES = {"#DIV/0!", "#VALUE!", "#N/A", "#N/A!", "#REF!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!",
                "#CALC!", "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!", "#NA"}
_ERROR_LIKE = re.compile(r"^#[A-Z0-9/_]{1,15}[!?]?$|^ERR:\d{3}$")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
_INVISIBLE = re.compile(r"[\s\u200b-\u200d\u2060\ufeff]+")
_CODE_LIKE = re.compile(r"^[A-Za-z]{1,4}\d{1,4}$")
BLOCK_SEARCH_ROWS = 10  # the identity block is on rows 2-4; allow a few inserted rows
HEADER_SEARCH_ROWS = 40

STATUS_ACCEPTED, STATUS_PARTIAL, STATUS_REJECTED = "accepted", "partial", "rejected"
STATUS_DUPLICATE, STATUS_ALREADY, STATUS_UNREADABLE = "duplicate", "already", "unreadable"
# A form of another system or period (the returned folder is shared by both systems): recorded in
# this round as rejected, with its reason, and left for its own round's run to take in.
STATUS_OTHER_ROUND = "other_round"
ROUND_CODES = ("wrong_system", "wrong_period", "wrong_stage")
# Whether a file's origin was verified (files.verified in the ledger): its metadata carries a valid
# HMAC under the office key (signed), carries none (unsigned: a form made before the key existed),
# carries one that does not verify (forged: rejected), or identity came from the visible block or
# the workspace has no key to check with (unverified). "" for files never identified.
SIGNED, UNSIGNED, UNVERIFIED, FORGED = "signed", "unsigned", "unverified", "forged"


# -- the score normaliser ---------------------------------------------------------------------
def normalise_score(value: object, maximum: object) -> tuple[float | None, str | None, str | None]:
    """A 得分 cell -> (score, warning note, error code); never raises.

    Numbers in [0, maximum] are taken as they are. Numbers stored as text, full-width digits,
    a trailing 分 and stray spaces are normalised, with a note saying what was done. Anything
    else gives an error code of the message catalogue: blank_score, not_a_number, error_value,
    out_of_range.
    """
    try:
        return _normalise(value, float(maximum))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a normaliser that can raise would stop a run
        return None, None, "not_a_number"


def _normalise(value: object, maximum: float) -> tuple[float | None, str | None, str | None]:
    if value is None:
        return None, None, "blank_score"
    if isinstance(value, (bool, datetime, date, time, timedelta, bytes, bytearray)):
        return None, None, "not_a_number"
    if isinstance(value, numbers.Real):
        return _in_range(float(value), maximum, None)
    if not isinstance(value, str):
        return None, None, "not_a_number"
    notes = []
    folded = unicodedata.normalize("NFKC", value)
    if folded != value:
        notes.append("全角字符已转为半角")
    text = _INVISIBLE.sub("", folded)
    if text != folded:
        notes.append("已去掉空格")
    if not text:
        return None, None, "blank_score"
    upper = text.upper()
    if upper in ERROR_VALUES or _ERROR_LIKE.match(upper):
        return None, None, "error_value"
    if text.endswith("分") and len(text) > 1:
        text = text[:-1]
        notes.append("已去掉“分”字")
    if not _NUMBER.fullmatch(text):
        return None, None, "not_a_number"
    notes.insert(0, "文本格式的数字")
    return _in_range(float(text), maximum, "，".join(notes))


def _in_range(score: float, maximum: float, note: str | None) -> tuple[float | None, str | None, str | None]:
    if not math.isfinite(score) or not math.isfinite(maximum):
        return None, None, "not_a_number"
    if score < 0 or maximum < 0 or score > maximum + 1e-9:
        return None, None, "out_of_range"
    # Within 1e-9 above 满分 is float noise from a formula: it counts as 满分, never more.
    return min(score, maximum) + 0.0, note, None  # + 0.0 turns -0.0 into 0.0


def raw_text(value: object) -> str:
    """The value as typed, for the ledger and the problem list."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"  # as a spreadsheet shows it
    return str(value)


def _text(value: object) -> str:
    """A label or code cell as comparable text."""
    if isinstance(value, str):
        # the same labels and codes recur on every sheet of every file: fold each once
        return _fold(value) if len(value) <= 64 else _fold.__wrapped__(value)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (datetime, date)):
        return value.strftime("%Y-%m")  # a period retyped in Excel becomes a date
    return _fold.__wrapped__(str(value))


@functools.lru_cache(maxsize=8192)
def _fold(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).rstrip(":：")


# A1 references of the cells a form uses, computed once per worker rather than once per score.
@functools.lru_cache(maxsize=16384)
def _cell_ref(row: int, col: int) -> str:
    """A cell's A1 reference from 0-based row and column (as xlsxwriter's xl_rowcol_to_cell spells
    it; not imported from there, so that collect and its workers never load xlsxwriter to read)."""
    letters, n = "", col + 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(65 + rest) + letters
    return f"{letters}{row + 1}"


# -- what a worker needs and returns ------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """Everything needed to judge a file, small and picklable (sent once to each worker)."""

    system: System
    period: str
    assessors: frozenset[str]
    subjects: frozenset[str]
    assigned: dict[str, frozenset[str]]  # assessor -> subjects of this system's type
    limits: Limits = Limits()
    max_remark_chars: int = 2000
    returned: str = "input/returned"  # the returned folder as the office sees it (relative to the workspace)
    max_memory_mb: float = 0   # what one worker may take to read a file (0 = no cap)
    max_seconds: float = 0     # how long it may take (0 = no cap)
    stage: str = SUPERVISION   # 遴选 | 督导 | 评估 | 验收: a form of another stage is another round's
    # The office key that seals this workspace's forms (b"" when it has none: nothing verifies).
    # Travels to the workers with the rest; never shown in a repr, a problem or a log.
    office_key: bytes = field(default=b"", repr=False)
    refuse_unsigned: bool = False  # collect.refuse_unsigned: a form without a seal is refused
    typed: frozenset[str] = frozenset()  # the subjects of this system's type: who may return a self form
    reason_share: float = 0.0  # an expert score below this share of 满分 needs a 备注 ([forms] reason_below_share)
    reason_error: bool = False  # a missing reason holds the sheet back ([collect] missing_reason = "error")

    @property
    def key(self) -> str:
        """The round's name in folders and the ledger (2026-11, 2027-03-遴选)."""
        return round_key(self.period, self.stage)

    @classmethod
    def build(cls, ws: Workspace, system: System, period: str, roster: Roster) -> "Context":
        """`period` is the round's key (pipeline.rounds): 2026-11, or 2027-03-遴选 for a 遴选 round."""
        period, stage = split_key(check_key(period))
        assigned = {a: frozenset(s) for a, s in roster.assignments(system.subject_type).items()}
        folder = ws.path("returned")
        shown = str(folder.relative_to(ws.root) if folder.is_relative_to(ws.root) else folder)  # input\returned on Windows
        limits = ws["limits"]
        typed = frozenset(c for c, s in roster.subjects.items() if s.type == system.subject_type)
        return cls(system, period, frozenset(roster.assessors), frozenset(roster.subjects), assigned,
                   Limits.from_settings(limits), int(limits["max_remark_chars"]), shown,
                   limits["max_memory_mb"], limits["max_seconds_per_file"], stage, load_key(ws) or b"",
                   bool(ws["collect"]["refuse_unsigned"]), typed,
                   float(ws["forms"]["reason_below_share"]), ws["collect"]["missing_reason"] == "error")


@dataclass
class Examined:
    """The verdict on one file's content (no paths, no times of the file system)."""

    format: str | None
    saved_at: datetime | None
    status: str
    reason: str = ""
    assessor: str | None = None
    sheets: list[SheetRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    verified: str = ""  # SIGNED | UNSIGNED | UNVERIFIED | FORGED | "" (never identified)

    @property
    def other_round(self) -> bool:
        return self.status == STATUS_REJECTED and any(p.code in ROUND_CODES for p in self.problems)


@dataclass
class Identity:
    """What a metadata sheet or an identity block says, with the cell each value came from."""

    values: dict[str, str] = field(default_factory=dict)  # meaning (forms.BLOCK_LABELS values) -> text
    cells: dict[str, str] = field(default_factory=dict)


@dataclass
class Meta:
    system: str
    checksum: str
    period: str
    assessor: str
    sheets: dict[str, str]  # sheet name -> subject code
    stage: str = SUPERVISION
    kind: str = EXPERT  # self: the subject's own form, `assessor` is the subject's code
    rows: list[list[str]] = field(default_factory=list, repr=False)  # the rows `signature` covers
    seal: str = ""  # the HMAC row's value ("" on a form made before the office key)


def examine(data: bytes, name: str, ctx: Context) -> Examined:
    """Read and judge one returned file from its bytes. Raises nothing but MemoryError, which the
    worker process running it reports as a file over the memory cap."""
    try:
        book = read_workbook(name, ctx.limits, data=data, skip=UNREAD_SHEETS)
    except UnreadableFile as err:
        p = problem(err.code, file=name, detail=err.detail, technical=err.technical)
        return Examined(None, None, STATUS_REJECTED, p.message, problems=[p])
    except MemoryError:
        raise  # the worker reports it as over the memory cap
    except Exception as err:  # noqa: BLE001 - no single file may stop the run
        p = problem("corrupt", file=name, detail="读取时出错", technical=f"{type(err).__name__}: {str(err)[:200]}")
        return Examined(None, None, STATUS_REJECTED, p.message, problems=[p])
    probe = CellProbe(data) if book.format in ("xlsx", "xlsm") else None
    try:
        return examine_workbook(book, name, ctx, probe)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001
        p = problem("corrupt", file=name, detail="读取时出错", technical=f"{type(err).__name__}: {str(err)[:200]}")
        return Examined(book.format, book.modified, STATUS_REJECTED, p.message, problems=[p])


def examine_workbook(book: Workbook, name: str, ctx: Context, probe: "CellProbe | None" = None) -> Examined:
    """Identify and validate a workbook already read into rows."""
    out = Examined(book.format, book.modified, STATUS_REJECTED)
    meta_sheet = book.sheet(META_SHEET)
    meta = None
    if meta_sheet is not None and not meta_sheet.error:
        meta, code = parse_meta(meta_sheet.rows)
        if code:
            return _reject(out, problem(code, file=name, sheet=META_SHEET))
    if meta is not None:
        out.verified, note = check_seal(meta, ctx, name)
        if note is not None and note.severity == ERROR:  # forged, or unsigned where that is refused
            return _reject(out, note)
        bad = _check_meta(meta, ctx, name)
        if bad:
            return _reject(out, bad)
        if note is not None:
            out.problems.append(note)
        out.assessor = meta.assessor
    else:
        out.verified = UNVERIFIED  # identity from the visible block, which anyone can type

    candidates: list[tuple[Sheet, str, str, Identity]] = []  # sheet, subject, assessor, block
    tops: dict[str, list[_RowFacts]] = {}  # sheet name -> its top rows' facts (top_facts)
    kind = meta.kind if meta is not None else EXPERT
    for sheet in book.sheets:
        if sheet.name in IGNORED_SHEETS:
            continue
        meta_subject = meta.sheets.get(sheet.name) if meta else None
        if sheet.error or sheet.too_long:
            if meta_subject:  # a known subject sheet that cannot be read: that sheet fails
                code, detail = ("sheet_unreadable", sheet.error) if sheet.error else ("sheet_too_long", sheet.too_long)
                out.problems.append(problem(code, file=name, sheet=sheet.name, detail=detail, technical=sheet.technical))
                out.sheets.append(SheetRecord(sheet.name, meta.assessor, meta_subject, False, kind=meta.kind))
            elif sheet.error:
                out.problems.append(problem("sheet_unreadable", file=name, sheet=sheet.name, detail=sheet.error,
                                            technical=sheet.technical))
            continue
        top = tops[sheet.name] = top_facts(sheet.rows)
        block = find_identity(sheet.rows, top)
        if meta is not None:
            subject = block.values.get("subject") or meta_subject
            if not subject:
                continue  # not a subject sheet (e.g. the assessor's own notes)
            candidates.append((sheet, subject, meta.assessor, block))
        elif block.values.get("subject") and block.values.get("assessor"):
            candidates.append((sheet, block.values["subject"], block.values["assessor"], block))
            if block.values.get("assessor_name") == SELF_ASSESSOR and block.values["assessor"] == block.values["subject"]:
                kind = SELF  # a self form's sheet copied out of its workbook

    if not candidates:
        if meta is None:
            return _reject(out, problem("no_identity", file=name))
        return _reject(out, problem("no_subject_sheets", file=name))
    if meta is None:
        out.assessor = Counter(a for _, _, a, _ in candidates).most_common(1)[0][0]
    else:
        # a listed sheet that is there but could not be read is reported as such, not as missing
        found = {s for _, s, _, _ in candidates} | {r.subject for r in out.sheets}
        for subject in dict.fromkeys(meta.sheets.values()):
            if subject not in found:
                out.problems.append(problem("missing_sheet", file=name, value=subject))

    seen = Counter(subject for _, subject, _, _ in candidates)
    for sheet, subject, assessor, block in candidates:
        errors = _check_identity(sheet, subject, assessor, block, meta, ctx, name, kind)
        if seen[subject] > 1:
            other = next(s.name for s, subj, _, _ in candidates if subj == subject and s.name != sheet.name)
            errors.append(problem("duplicate_subject", file=name, sheet=sheet.name, value=subject, detail=other))
        if errors:
            out.problems += errors
            out.sheets.append(SheetRecord(sheet.name, assessor, subject, False, kind=kind))
            continue
        if kind == EXPERT:
            declared, reason = find_declared(sheet.rows, tops[sheet.name])
            if declared:  # 回避 = 是: not an error, not scored (the scores, if any, are not read)
                out.sheets.append(SheetRecord(sheet.name, assessor, subject, True, kind=kind, declared=True,
                                              reason=reason[: ctx.max_remark_chars]))
                continue
        record, found = validate_sheet(sheet, ctx, name, probe, kind, tops[sheet.name])
        record.assessor, record.subject, record.kind = assessor, subject, kind
        out.problems += found
        out.sheets.append(record)

    accepted = sum(s.accepted for s in out.sheets)
    if accepted and accepted == len(out.sheets):
        out.status = STATUS_ACCEPTED
    elif accepted:
        out.status = STATUS_PARTIAL
    else:
        out.status = STATUS_REJECTED
        errors = [p for p in out.problems if p.severity == ERROR]
        out.reason = (errors[0].message if len(out.sheets) == 1 and errors else
                      f"全部 {len(out.sheets)} 张评估对象表都有错误，均未计入（详见问题表）。")
    return out


def _reject(out: Examined, p: Problem) -> Examined:
    out.status, out.reason = STATUS_REJECTED, p.message
    out.problems.append(p)
    return out


def parse_meta(rows: list[list]) -> tuple[Meta | None, str | None]:
    """The metadata sheet -> Meta, or (None, "meta_tampered") when its signature does not match.
    The office's HMAC row, when there is one, follows the signature and is checked by check_seal."""
    cleaned = []
    for row in rows:
        cells = ["" if v is None else (raw_text(v) if not isinstance(v, str) else v) for v in row]
        while cells and cells[-1] == "":
            cells.pop()
        if cells:
            cleaned.append(cells)
    tag = ""
    if cleaned and cleaned[-1][0] == SEAL_ROW:  # the office's HMAC, after the public checksum
        row = cleaned.pop()
        tag = row[1] if len(row) >= 2 else "-"  # an empty seal is a wrong one, not none
    if not cleaned or cleaned[-1][0] != "signature" or len(cleaned[-1]) < 2:
        return None, "meta_tampered"
    if sign(cleaned[:-1]) != cleaned[-1][1]:
        return None, "meta_tampered"
    values: dict[str, str] = {}
    sheets: dict[str, str] = {}
    for row in cleaned[:-1]:
        if row[0] == "subject" and len(row) >= 3:
            sheets[row[2]] = row[1]
        elif len(row) >= 2:
            values[row[0]] = row[1]
    try:  # forms written before stages were stamped are 督导 forms
        kind = values.get("kind", EXPERT)  # forms written before self-assessments are expert forms
        if kind not in KINDS:
            raise KeyError(kind)
        return Meta(values["system"], values["checksum"], values["period"], values["assessor"], sheets,
                    check_stage(values.get("stage")), kind, cleaned[:-1], tag), None
    except (KeyError, UsageError):
        return None, "meta_tampered"


def check_seal(meta: Meta, ctx: Context, name: str) -> tuple[str, Problem | None]:
    """Whether this office issued the form: (SIGNED, None); (FORGED, the error) when its HMAC does
    not verify under the office key (edited metadata, a form of another workspace); (UNSIGNED, a
    warning, or an error under collect.refuse_unsigned) for a form made before the key or with its
    seal stripped; (UNVERIFIED, a warning) when there is no key."""
    if not ctx.office_key:
        return UNVERIFIED, problem("no_office_key", file=name, sheet=META_SHEET)
    if not meta.seal:
        return UNSIGNED, problem("unsigned_refused" if ctx.refuse_unsigned else "unsigned_form", file=name,
                                 sheet=META_SHEET)
    if not seal_ok(meta.rows, ctx.office_key, meta.seal):
        return FORGED, problem("forged_form", file=name, sheet=META_SHEET)
    return SIGNED, None


def _check_meta(meta: Meta, ctx: Context, name: str) -> Problem | None:
    if meta.system != ctx.system.id:
        return problem("wrong_system", file=name, sheet=META_SHEET, value=meta.system, expected=ctx.system.id)
    if meta.checksum != ctx.system.checksum:
        return problem("old_structure", file=name, sheet=META_SHEET, value=meta.checksum, expected=ctx.system.checksum)
    if meta.period != ctx.period:
        return problem("wrong_period", file=name, sheet=META_SHEET, value=meta.period, expected=ctx.period,
                       where=_belongs(ctx, meta.period, meta.stage))
    if meta.stage != ctx.stage:
        return problem("wrong_stage", file=name, sheet=META_SHEET, value=meta.stage, expected=ctx.stage,
                       where=_belongs(ctx, meta.period, meta.stage))
    if meta.kind == SELF:  # the subject is its own assessor
        if meta.assessor not in ctx.typed:
            return problem("unknown_subject", file=name, sheet=META_SHEET, value=meta.assessor)
        return None
    if meta.assessor not in ctx.assessors:
        return problem("unknown_assessor", file=name, sheet=META_SHEET, value=meta.assessor)
    return None


def _belongs(ctx: Context, period: str, stage: str | None = None) -> str:
    """Where a form of another round goes, as the office sees the folders ("" for a period that is no
    month). A form that does not say its stage is taken to be of this round's stage."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", period):
        return ""
    return PHRASES["put_in_folder"].format(folder=os.path.join(ctx.returned, round_key(period, stage or ctx.stage), ""))


def top_facts(rows: list[list]) -> list["_RowFacts"]:
    """The facts of a sheet's top rows, each worked out once for the three readers of the top
    (find_identity, find_declared, find_header): as far down as each of them looks."""
    out: list[_RowFacts] = []
    block_done = False
    for r, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        facts = _row_facts(row)
        out.append(facts)
        block_done = block_done or facts.score_cell or r + 1 >= BLOCK_SEARCH_ROWS
        if block_done and facts.columns is not None:
            break
    return out


def _facts(rows: list[list], top: list["_RowFacts"] | None, limit: int):
    return top[:limit] if top is not None else map(_row_facts, rows[:limit])


def find_identity(rows: list[list], top: list["_RowFacts"] | None = None) -> Identity:
    """The identity block: labels found by their text near the top; each value is the next
    non-empty cell to the right. `top`: the sheet's `top_facts`, when worked out already."""
    found = Identity()
    for r, facts in enumerate(_facts(rows, top, BLOCK_SEARCH_ROWS)):
        if facts.score_cell:  # the header row: the block is above it
            break
        for meaning, value, c2 in facts.labels:
            if meaning not in found.values and value is not None:
                found.values[meaning] = value
                found.cells[meaning] = _cell_ref(r, c2)
    return found


def find_declared(rows: list[list], top: list["_RowFacts"] | None = None) -> tuple[bool, str]:
    """(declared, 回避原因) of a subject sheet: 回避 = 是 in the cell right of the label 回避 (forms.
    DECLARE_LABEL), the reason in the cell right of 回避原因. A sheet without the label (a form made
    before it) is not declared."""
    declared, reason = False, ""
    for facts in _facts(rows, top, BLOCK_SEARCH_ROWS):
        if facts.score_cell:
            break
        if facts.declared is not None:
            declared = facts.declared
        if facts.reason is not None:
            reason = facts.reason
    return declared, reason


@dataclass(frozen=True)
class _RowFacts:
    """What the top of a subject sheet says in one row, worked out once per distinct row: the
    40 sheets of a form repeat the same title, assessor, period, 回避 and header rows, so a
    worker meets most rows hundreds of times."""

    score_cell: bool  # a cell is exactly 得分: the header row, below the identity block
    labels: tuple[tuple[str, str | None, int], ...]  # (meaning, value or None when it is a label, its column)
    declared: bool | None  # the row's last 回避 label: whether its value is 是 (None: no such label)
    reason: str | None  # the row's last 回避原因 label's value
    columns: dict[str, int] | None  # the header's columns by name, when this row is the header


_FACTS: dict[tuple, _RowFacts] = {}
_FACTS_MAX = 16384  # distinct rows remembered per worker (a month's subject rows are mostly distinct)


def _row_facts(row: list) -> _RowFacts:
    # Only rows of text are remembered (1, 1.0 and True would be one key but read differently), and
    # not rows wider than any form. str.join refuses anything but text, in C.
    if len(row) > 32:
        return _work_out(row)
    try:
        "".join(row)
    except TypeError:
        return _work_out(row)
    key = tuple(row)
    facts = _FACTS.get(key)
    if facts is None:
        if len(_FACTS) >= _FACTS_MAX:
            _FACTS.clear()
        facts = _FACTS[key] = _work_out(row)
    return facts


def _work_out(row: list) -> _RowFacts:
    labels: list[tuple[str, str | None, int]] = []
    declared: bool | None = None
    reason: str | None = None
    for c, cell in enumerate(row):
        if not cell or not isinstance(cell, str):
            continue
        meaning = BLOCK_LABELS.get(cell)
        if meaning is None and len(cell) <= 12 and cell.lstrip()[:1] in _LABEL_STARTS:
            meaning = BLOCK_LABELS.get(_fold(cell))  # _text of a short string, without the call
        if meaning and not any(m == meaning and v is not None for m, v, _ in labels):
            for c2 in range(c + 1, len(row)):
                value = _text(row[c2])
                if value:
                    # an empty value followed by the next label: the meaning stays open
                    labels.append((meaning, None if value in BLOCK_LABELS else value, c2))
                    break
        if len(cell) <= 12:
            label = _fold(cell)
            following = row[c + 1] if c + 1 < len(row) else None
            if label == DECLARE_LABEL:
                declared = _text(following) == DECLARE_YES
            elif label == DECLARE_REASON_LABEL:
                reason = raw_text(following).strip()
    return _RowFacts("得分" in row, tuple(labels), declared, reason, _header_columns(row))


def _header_columns(row: list) -> dict[str, int] | None:
    """The columns by name when `row` is the header (a cell with 得分, and 编号 and 得分 among its
    cells' texts), else None."""
    if not any(isinstance(v, str) and "得分" in v for v in row):
        return None
    names = [_text(v) if isinstance(v, str) else "" for v in row]
    if "编号" not in names or "得分" not in names:
        return None
    columns: dict[str, int] = {}
    for c, n in enumerate(names):
        if n and n not in columns:
            columns[n] = c
    return columns


_LABEL_STARTS = {label[0] for label in BLOCK_LABELS} | {unicodedata.normalize("NFKC", label[0]) for label in BLOCK_LABELS}
_BLOCK_NAMES = {"subject": "对象编号", "assessor": "评估人编号", "period": "期次", "system": "指标体系"}


def _check_identity(sheet: Sheet, subject: str, assessor: str, block: Identity, meta: Meta | None,
                    ctx: Context, name: str, kind: str = EXPERT) -> list[Problem]:
    """Identity errors of one subject sheet (empty when it may be validated)."""
    def mismatch(key: str, expected: str) -> Problem:
        return problem("identity_mismatch", file=name, sheet=sheet.name, cell=block.cells.get(key, ""),
                       value=block.values[key], detail=_BLOCK_NAMES[key], expected=expected)

    errors: list[Problem] = []
    v = block.values
    if meta is not None:
        listed = meta.sheets.get(sheet.name)
        if "subject" in v and listed and v["subject"] != listed:
            errors.append(mismatch("subject", listed))
        elif "subject" in v and not listed and v["subject"] not in meta.sheets.values():
            errors.append(mismatch("subject", "、".join(dict.fromkeys(meta.sheets.values()))))
        for key, expected in (("assessor", meta.assessor), ("period", meta.period), ("system", meta.system)):
            if key in v and v[key] != expected:
                errors.append(mismatch(key, expected))
        if errors:
            return errors
    else:
        if "system" in v and v["system"] != ctx.system.id:
            errors.append(problem("wrong_system", file=name, sheet=sheet.name, cell=block.cells["system"],
                                  value=v["system"], expected=ctx.system.id))
        if "period" in v and v["period"] != ctx.period:
            errors.append(problem("wrong_period", file=name, sheet=sheet.name, cell=block.cells["period"],
                                  value=v["period"], expected=ctx.period, where=_belongs(ctx, v["period"])))
        if errors:  # a sheet of another round: who and what it rates is that round's business
            return errors
        if assessor not in ctx.assessors and kind != SELF:
            errors.append(problem("unknown_assessor", file=name, sheet=sheet.name,
                                  cell=block.cells.get("assessor", ""), value=assessor))
    if kind == SELF:  # a subject of this system's type, assessing itself
        if subject not in ctx.typed:
            errors.append(problem("unknown_subject", file=name, sheet=sheet.name, cell=block.cells.get("subject", ""),
                                  value=subject))
        return errors
    if subject not in ctx.subjects:
        errors.append(problem("unknown_subject", file=name, sheet=sheet.name, cell=block.cells.get("subject", ""),
                              value=subject))
    elif assessor in ctx.assessors and subject not in ctx.assigned.get(assessor, ()):
        errors.append(problem("not_assigned", file=name, sheet=sheet.name, cell=block.cells.get("subject", ""),
                              value=subject, assessor=assessor))
    return errors


def find_header(rows: list[list], top: list["_RowFacts"] | None = None) -> tuple[int, dict[str, int]] | None:
    """The header row (the first with 编号 and 得分) and its columns by name."""
    for r, facts in enumerate(_facts(rows, top, HEADER_SEARCH_ROWS)):
        columns = facts.columns
        if columns is not None:
            return r, columns
    return None


def validate_sheet(sheet: Sheet, ctx: Context, name: str, probe: "CellProbe | None" = None,
                   kind: str = EXPERT, top: list["_RowFacts"] | None = None) -> tuple[SheetRecord, list[Problem]]:
    """Check one identified subject sheet; the record is accepted only if nothing is wrong.
    An expert sheet's deductions need a reason (Context.reason_share); a self sheet's 佐证材料
    are kept with its scores."""
    found: list[Problem] = []
    record = SheetRecord(sheet.name, "", "", False, kind=kind)
    header = find_header(sheet.rows, top)
    if header is None:
        found.append(problem("no_header", file=name, sheet=sheet.name))
        return record, found
    head_row, columns = header
    code_col, score_col, remark_col = columns["编号"], columns["得分"], columns.get("备注")
    evidence_col = columns.get(EVIDENCE) if kind == SELF else None
    share = ctx.reason_share if kind == EXPERT else 0.0
    by_code = ctx.system.by_code
    upper = ctx.system.codes_by_upper
    rows_of: dict[str, int] = {}
    rows = sheet.rows
    for r in range(head_row + 1, len(rows)):
        row = rows[r]
        cell = row[code_col] if code_col < len(row) else None
        if cell is None or cell == "":  # what _text makes empty without folding
            continue
        if isinstance(cell, str) and cell in by_code and cell not in rows_of:  # an item's code as written
            rows_of[cell] = r
            continue
        text = cell if isinstance(cell, str) and cell in by_code else _text(cell)
        if not text or text in SUBTOTAL_WORDS:
            continue
        code = text if text in by_code else upper.get(text.upper())
        if code is None:
            score = row[score_col] if score_col < len(row) else None
            if _CODE_LIKE.match(text) or score not in (None, ""):
                found.append(problem("unknown_item", file=name, sheet=sheet.name,
                                     cell=_cell_ref(r, code_col), value=raw_text(cell)))
            continue
        if code in rows_of:
            found.append(problem("duplicate_item", file=name, sheet=sheet.name, cell=_cell_ref(r, code_col),
                                 value=code, detail=_cell_ref(rows_of[code], code_col)))
            continue
        rows_of[code] = r
    if len(rows_of) < len(ctx.system.items):
        for item in ctx.system.items:
            if item.code not in rows_of:
                found.append(problem("missing_item", file=name, sheet=sheet.name, value=item.code, detail=item.level3))
    scores = record.scores
    refs = _column_refs(score_col)
    plain = evidence_col is None
    for item, code, top, floor in _plan(ctx.system, share):
        r = rows_of.get(code)
        if r is not None:
            row = rows[r]
            value = row[score_col] if score_col < len(row) else None
            # the common case inline (a number in range, no 备注, no reason needed): _score_of's fast path
            if (value.__class__ is float and 0 <= value <= top and plain and not value < floor
                    and (remark_col is None or remark_col >= len(row) or not row[remark_col])):
                raw = _RAW_NUMBERS.get(value)
                scores.append((code, raw if raw is not None else _raw_number(value), value, "",
                               refs[r] if r < len(refs) else _cell_ref(r, score_col)))
                continue
            score = _score_of(sheet, r, score_col, remark_col, item, ctx, name, found, probe, share)
            if score is not None:
                record.scores.append(score)
                if evidence_col is not None and evidence_col < len(sheet.rows[r]):
                    evidence = raw_text(sheet.rows[r][evidence_col]).strip()[: ctx.max_remark_chars]
                    if evidence:
                        record.evidence[item.code] = evidence
    record.accepted = not any(p.severity == ERROR for p in found)
    if not record.accepted:
        record.scores = []
    return record, found


def _score_of(sheet: Sheet, r: int, score_col: int, remark_col: int | None, item: Item, ctx: Context, name: str,
              found: list[Problem], probe: "CellProbe | None" = None,
              share: float = 0.0) -> tuple[str, str, float, str, str] | None:
    row = sheet.rows[r]
    value = row[score_col] if score_col < len(row) else None
    if value == "":
        value = None
    cell = _cell_ref(r, score_col)
    needs_reason = share * item.max - 1e-9  # below this, an empty 备注 is reported
    if type(value) is float and 0 <= value <= item.max:  # the common case, kept fast
        raw = _raw_number(value)
        remark = row[remark_col] if remark_col is not None and remark_col < len(row) else ""
        if not remark and not value < needs_reason:
            return item.code, raw, value, "", cell
    label = f"{item.code} {item.level3}"
    if value is None and probe is not None:  # calamine reads error cells and value-less formulas as empty
        hidden = probe(sheet.name, r, score_col)
        if isinstance(hidden, str) and hidden.startswith("="):
            found.append(problem("formula_no_value", file=name, sheet=sheet.name, cell=cell, value=hidden, item=label))
            return None
        value = hidden
    raw = raw_text(value)
    score, note, error = normalise_score(value, item.max)
    if error:
        found.append(problem(error, file=name, sheet=sheet.name, cell=cell, value=raw, item=label, max=f"{item.max:g}"))
        return None
    if note:
        found.append(problem("normalised", file=name, sheet=sheet.name, cell=cell, value=raw, item=label,
                             score=f"{score:g}", detail=note))
    remark = ""
    if remark_col is not None and remark_col < len(row):
        remark = raw_text(row[remark_col]).strip()
        if len(remark) > ctx.max_remark_chars:
            found.append(problem("remark_cut", file=name, sheet=sheet.name, cell=_cell_ref(r, remark_col),
                                 value=remark[:50] + "…", item=label, detail=str(len(remark)),
                                 limit=str(ctx.max_remark_chars)))
            remark = remark[: ctx.max_remark_chars]
    if not remark and score < needs_reason:
        p = problem("missing_reason", file=name, sheet=sheet.name, cell=_cell_ref(r, remark_col if remark_col is not None
                    else score_col), value=raw, item=label, max=f"{item.max:g}",
                    detail="本表未计入。" if ctx.reason_error else "")
        found.append(dataclasses.replace(p, severity=ERROR) if ctx.reason_error else p)
    return item.code, raw, score, remark, cell


_RAW_NUMBERS: dict[float, str] = {}
_PLANS: dict[tuple[int, float], tuple[System, tuple]] = {}


def _plan(system: System, share: float) -> tuple[tuple[Item, str, float, float], ...]:
    """(item, code, 满分, the score below which a 备注 is needed) of each item, in order: worked
    out once per worker rather than once per sheet."""
    key = (id(system), share)
    kept = _PLANS.get(key)
    if kept is None or kept[0] is not system:
        if len(_PLANS) >= 64:
            _PLANS.clear()
        kept = _PLANS[key] = (system, tuple((item, item.code, item.max, share * item.max - 1e-9)
                                            for item in system.items))
    return kept[1]


@functools.lru_cache(maxsize=64)
def _column_refs(col: int) -> tuple[str, ...]:
    """The A1 references of a column's first 1,024 cells (a form's 得分 column, once per worker)."""
    return tuple(_cell_ref.__wrapped__(r, col) for r in range(1024))


def _raw_number(value: float) -> str:
    """A float score as typed ("3", "3.5"); the few values a month holds are spelled once each."""
    raw = _RAW_NUMBERS.get(value)
    if raw is None:
        raw = str(int(value)) if value.is_integer() else repr(value)
        if len(_RAW_NUMBERS) < 4096:
            _RAW_NUMBERS[value] = raw
    return raw


class CellProbe:
    """A second look at cells calamine reads as empty (xlsx/xlsm only): an error value such as
    #DIV/0!, or a formula saved without its result. Opens the workbook with openpyxl lazily,
    only when a 得分 cell is blank, so well-filled files never pay for it."""

    def __init__(self, data: bytes):
        self.data = data
        self.sheets: dict[str, dict[tuple[int, int], str]] = {}
        self.book = None

    def __call__(self, sheet: str, row: int, col: int) -> str | None:
        if sheet not in self.sheets:
            self.sheets[sheet] = self._scan(sheet)
        return self.sheets[sheet].get((row, col))

    def _scan(self, sheet: str) -> dict[tuple[int, int], str]:
        import io

        import openpyxl

        found: dict[tuple[int, int], str] = {}
        try:
            if self.book is None:
                self.book = openpyxl.load_workbook(io.BytesIO(self.data), read_only=True, data_only=False)
            for row in self.book[sheet].iter_rows():
                for cell in row:
                    if getattr(cell, "data_type", None) in ("e", "f") and isinstance(cell.value, str):
                        found[cell.row - 1, cell.column - 1] = cell.value
            if any(v.startswith("=") for v in found.values()):  # a formula whose saved result is an error
                results = openpyxl.load_workbook(io.BytesIO(self.data), read_only=True, data_only=True)
                for row in results[sheet].iter_rows():
                    for cell in row:
                        if getattr(cell, "data_type", None) == "e" and (cell.row - 1, cell.column - 1) in found:
                            found[cell.row - 1, cell.column - 1] = cell.value
                results.close()
        except Exception:  # noqa: BLE001 - the probe only refines a message; blank stays blank
            pass
        return found


# -- the run ------------------------------------------------------------------------------------
@dataclass
class FileOutcome:
    """What happened to one path in this run."""

    path: str
    name: str
    status: str  # accepted | partial | rejected | other_round | duplicate | already | unreadable
    sha256: str = ""
    assessor: str | None = None
    accepted_sheets: int = 0
    sheets: int = 0
    problems: int = 0
    reason: str = ""
    replaced: list[tuple[str, str]] = field(default_factory=list)  # (earlier file, sheet) this one superseded
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (subject, other file saved in the same second)


@dataclass
class CollectResult:
    period: str
    system: str
    files: list[FileOutcome]
    missing: int = 0          # assignments with no accepted sheet after this run
    superseded: int = 0       # sheets of earlier files replaced in this run
    settled: list[Settled] = field(default_factory=list)  # conflicts settled by files removed from the folder
    report: Path | None = None
    declared: int = 0         # declared conflicts (回避 = 是) in force in the round after this run

    def count(self, status: str) -> int:
        return sum(f.status == status for f in self.files)

    @property
    def rejected_any(self) -> bool:
        """A file or sheet of this run is not counted: rejected, unreadable, or in a conflict."""
        return any(f.status in (STATUS_REJECTED, STATUS_PARTIAL, STATUS_UNREADABLE) or f.conflicts for f in self.files)


def find_files(paths: list[Path]) -> list[Path]:
    """Every file under the given files and folders (recursively), without hidden files,
    hidden folders, office lock files (~$name.xlsx) and symbolic links: a link unpacked from
    an attachment could otherwise copy any local file (/etc/passwd) into the archive."""
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            out.append(path.resolve())
            continue
        if not path.is_dir():
            continue
        for root, dirs, files in os.walk(path):  # never into a linked folder (followlinks=False)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            wanted = [f for f in sorted(files) if not f.startswith((".", "~$"))]
            if not wanted:
                continue
            # A folder is resolved once: a name listed in it that is no link resolves to folder/name.
            folder = Path(root).resolve()
            with os.scandir(root) as entries:
                links = {e.name for e in entries if e.is_symlink()}
            out += [folder / f for f in wanted if f not in links]
    return list(dict.fromkeys(out))


def _mtime(stat: os.stat_result, utc: bool) -> datetime:
    if utc:
        return datetime.fromtimestamp(stat.st_mtime, timezone.utc).replace(tzinfo=None)
    return datetime.fromtimestamp(stat.st_mtime)


def archive_copy(archive: Path, sha: str, suffix: str, data: bytes | None = None, source: Path | None = None,
                 mode: int | None = None) -> Path:
    """Store the original under its hash (atomically; nothing to do when it is there already).
    `mode`: the file's mode (0666 less the umask when not given)."""
    suffix = suffix.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
    target = archive / sha[:2] / f"{sha}{suffix}"
    if target.exists():
        return target
    if data is not None:
        return write_bytes(target, data, mode)
    with atomic_path(target, mode=mode) as tmp:
        shutil.copyfile(source, tmp)
    return target


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Job:
    path: Path
    sha: str
    size: int
    received_at: datetime
    mtime_utc: datetime
    archive_path: Path
    result: int | Examined | None = None  # a Workers ticket until the verdict is in


def collect(ws: Workspace, system: System, period: str, paths: list[Path] | None, roster: Roster,
            progress: Callable[[int], None] | None = None, workers: int | None = None) -> CollectResult:
    """Collect returned files into the ledger and write the collection workbook.

    `paths` are files and folders (default: the period's returned folder). Every file is read
    in a worker process (pipeline.workers); `workers` overrides ws["collect"]["workers"]
    (0 = one per core), and below collect.pool_min_files files one worker is used.
    """
    check_key(period)
    files = find_files(paths if paths else [ws.returned(period)])
    ctx = Context.build(ws, system, period, roster)
    advance = progress or (lambda n=1: None)
    result = CollectResult(period, system.id, [])
    archive = ws.path("archive")
    setting = ws["collect"]["workers"] if workers is None else workers
    n_workers = setting if setting > 0 else (os.cpu_count() or 1)
    if len(files) < ws["collect"]["pool_min_files"]:
        n_workers = 1  # still a process of its own: no file is ever parsed in this one

    # Oldest first, so that files are recorded in the order they arrived.
    stamped = []
    for path in files:
        try:
            stamped.append((path.stat(), path))
        except OSError as err:
            result.files.append(FileOutcome(str(path), path.name, STATUS_UNREADABLE, reason=str(explain(err, path))))
            advance(1)
    stamped.sort(key=lambda sp: (sp[0].st_mtime, str(sp[1])))

    # A read-only or full output, archive or ledger folder stops the run before the ledger changes.
    incoming = sum(stat.st_size for stat, _ in stamped)
    where = ws.ledger_location()
    ledger_dir = [] if is_url(str(where)) else [(Path(where).parent, 1 << 20)]
    for folder, need in ((ws.period_output(period), 1 << 20), (archive, incoming), *ledger_dir):
        check_writable(folder, need)
    # Two offices collecting one round into one PostgreSQL ledger take turns (an advisory lock).
    wait = float(ws["collect"].get("round_lock_wait", 600))
    with Ledger.open(ws) as ledger, ledger.round_lock(f"{period}/{system.id}", wait):
        pool = Workers(examine, ctx, n_workers, ctx.max_memory_mb, ctx.max_seconds)
        mode = 0o666 & ~current_umask()  # the archived files' mode, read once
        window = n_workers * 4
        pending: deque[_Job] = deque()
        seen_now: dict[str, Path] = {}
        late_aliases: list[tuple[str, Path, datetime]] = []
        try:
            for stat, path in stamped:
                job = _prepare(path, stat, ledger, archive, ctx, result, seen_now, late_aliases, pool, mode)
                if job is None:
                    advance(1)
                    continue
                pending.append(job)
                while len(pending) > window:
                    _finish(pending.popleft(), ledger, ctx, result, pool)
                    advance(1)
            while pending:
                _finish(pending.popleft(), ledger, ctx, result, pool)
                advance(1)
        finally:
            pool.close()
        for sha, path, seen_at in late_aliases:
            _alias(ledger, sha, path, seen_at, result)
        result.settled = ledger.settle_conflicts(period, system.id, _still_there)
        from pipeline.collection import write_collection  # xlsxwriter's import, once the files are in

        result.report, result.missing = write_collection(ws, ledger, system, period, roster)
        result.declared = len(ledger.declarations(period, system.id))
    result.superseded = sum(len(f.replaced) for f in result.files)
    return result


def _prepare(path: Path, stat: os.stat_result, ledger: Ledger, archive: Path, ctx: Context, result: CollectResult,
             seen_now: dict[str, Path], late_aliases: list, pool: Workers, mode: int | None = None) -> _Job | None:
    """Hash, deduplicate and archive one file, then start judging it; None when it is done already."""
    received = _mtime(stat, utc=False)
    too_large = stat.st_size > ctx.limits.max_file_mb * 1_000_000
    try:
        data = None if too_large else path.read_bytes()
        sha = _hash_file(path) if too_large else hashlib.sha256(data).hexdigest()
    except OSError as err:
        result.files.append(FileOutcome(str(path), path.name, STATUS_UNREADABLE, reason=str(explain(err, path))))
        return None
    # A file is recorded once per round: the returned folder is shared by both systems, so a zone
    # form seen (and rejected) by a community run is still new to the zone run.
    known = ledger.known(sha, ctx.key, ctx.system.id)
    if known is not None and known["original_path"] == str(path) and known["status"] == STATUS_REJECTED:
        if ledger.has_problem(known["id"], ROUND_CODES):
            result.files.append(FileOutcome(str(path), path.name, STATUS_OTHER_ROUND, sha, known["assessor"],
                                            reason=known["reason"]))
            return None
    if known is not None or sha in seen_now:
        if known is None:
            late_aliases.append((sha, path, received))  # its twin is still being ingested
            result.files.append(FileOutcome(str(path), path.name, STATUS_DUPLICATE, sha, reason=seen_now[sha].name))
        elif known["original_path"] == str(path):
            result.files.append(FileOutcome(str(path), path.name, STATUS_ALREADY, sha, known["assessor"]))
        else:
            _alias(ledger, sha, path, received, result, known["name"], known["status"])
        return None
    seen_now[sha] = path
    stored = archive_copy(archive, sha, path.suffix, data=data, source=path, mode=mode)
    job = _Job(path, sha, stat.st_size, received, _mtime(stat, utc=True), stored)
    if too_large:
        p = problem("too_large", file=path.name, detail=f"{stat.st_size / 1e6:.1f} MB")
        job.result = Examined(None, None, STATUS_REJECTED, p.message, problems=[p])
    else:
        job.result = pool.submit(data, path.name)
    return job


def _limit_text(code: str, ctx: Context) -> str:
    if code == TIMED_OUT:
        return f"{ctx.max_seconds:g} 秒"
    if code == NO_MEMORY:
        return f"{ctx.max_memory_mb:g} MB"
    return ""


def _alias(ledger: Ledger, sha: str, path: Path, seen_at: datetime, result: CollectResult, same_as: str = "",
           same_status: str = "") -> None:
    """Record the same bytes seen under another path: a duplicate (already collected when seen before).
    A copy of a rejected file says so: it fails for the same reason."""
    new = ledger.add_alias(sha, str(path), seen_at)
    status = STATUS_DUPLICATE if new else STATUS_ALREADY
    existing = next((f for f in result.files if f.path == str(path) and f.sha256 == sha), None)
    if existing is not None:
        existing.status = status
        return
    code = "duplicate_of_rejected" if same_status == STATUS_REJECTED else "duplicate_file"
    result.files.append(FileOutcome(str(path), path.name, status, sha,
                                    reason=problem(code, detail=same_as).message if same_as else ""))


def _still_there(sha: str, paths: list[str]) -> bool:
    """Whether a file with these bytes is still at one of the paths it was seen at."""
    for path in map(Path, paths):
        try:
            if path.is_file() and not path.is_symlink() and _hash_file(path) == sha:
                return True
        except OSError:
            continue
    return False


def _finish(job: _Job, ledger: Ledger, ctx: Context, result: CollectResult, pool: Workers) -> None:
    """Wait for a file's verdict and write it to the ledger in one transaction."""
    examined = job.result
    if isinstance(examined, int):
        try:
            examined = pool.result(examined)
        except WorkerFailed as failed:  # it panicked, aborted, ran out of memory or of time
            p = problem(failed.code, file=job.path.name, technical=failed.technical,
                        detail=_limit_text(failed.code, ctx))
            examined = Examined(None, None, STATUS_REJECTED, p.message, problems=[p])
    assert isinstance(examined, Examined)
    record = FileRecord(
        sha256=job.sha, name=job.path.name, original_path=str(job.path), size=job.size,
        received_at=job.received_at, saved_at=examined.saved_at or job.mtime_utc,
        archive_path=str(job.archive_path), period=ctx.key, system=ctx.system.id,
        assessor=examined.assessor, format=examined.format, status=examined.status, reason=examined.reason,
        sheets=examined.sheets, problems=examined.problems, verified=examined.verified,
    )
    ingested = ledger.add_file(record)
    status, reason = STATUS_OTHER_ROUND if examined.other_round else examined.status, examined.reason
    accepted = sum(s.accepted for s in examined.sheets)
    # Every sheet it brings is already counted: one submission. (A partial file stays partial: its errors are news.)
    if status == STATUS_ACCEPTED and len(ingested.repeated) == accepted:
        status = STATUS_DUPLICATE
        reason = problem("same_scores", detail="、".join(dict.fromkeys(f for _, f in ingested.repeated))).message
    result.files.append(FileOutcome(
        str(job.path), job.path.name, status, job.sha, examined.assessor,
        accepted, len(examined.sheets), len(examined.problems), reason, ingested.replaced, ingested.conflicts,
    ))
