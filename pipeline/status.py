"""`happyhome status`: who has sent what for a round, and the chase list of what is missing.

An assignment (assessor, subject) counts as received when the ledger holds an accepted sheet
for it in this round; a sheet that came back but failed validation is still missing, and the
chase list says so, because the assessor has to send it again. Two different returns saved in
the same second are a conflict: missing too, until the office removes one and collects again.
A sheet marked 回避 = 是 (a declared conflict) counts as received for its assessor; its subject is
listed as short of an assessor (`StatusResult.short`, sheet 回避待补 of the chase list) until
`assign --replace-declared` gives it a replacement.

Each missing assignment carries the open problems that explain it, the way the assessor must
read them: only the latest rejected sheet's errors (an earlier return of the same subject was
replaced by it), never a problem marked fixed (`resolved_by`). Errors of a whole file (e.g. an
outdated form) go with the assessor while they still owe something and no later return of
theirs was taken in; warnings on sheets that count are reminders. A file nobody can be named
for (unreadable, unidentified) and a form of another round are the office's, not an assessor's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import xlsxwriter

from pipeline.atomic import atomic_path
from pipeline.collect import ROUND_CODES
from pipeline.config import Workspace
from pipeline.ledger import Ledger
from pipeline.messages import ERROR, Problem, problem
from pipeline.roster import Roster
from pipeline.rounds import check_key
from pipeline.systems import System

CHASE_SHEET = "催收名单"
CHASE_COLUMNS = ("评估人编号", "姓名", "单位", "联系方式", "评估对象编号", "名称", "期次", "截止日期", "情况")
NOT_RECEIVED = "未收到"
REJECTED = "已收到但未通过校验，请修改后重新发送"
CONFLICT = "收到两份保存时间相同但评分不同的文件，请确认以哪份为准"
# Appended after CHASE_COLUMNS: where the problem is and what to enter instead (one row per problem).
CHASE_DETAIL_COLUMNS = ("文件", "工作表", "单元格", "填写值", "问题说明")
# Subjects short of an assessor after declared conflicts (回避): a sheet of the chase list when any.
SHORT_SHEET = "回避待补"
SHORT_COLUMNS = ("对象编号", "名称", "应有评估人数", "已分配", "声明回避", "有效评估人数", "还差", "声明回避的评估人（原因）")
# A round with self-assessment forms (generated or returned): the subjects whose own is missing.
SELF_SHEET = "自评未交"
SELF_COLUMNS = ("对象编号", "名称", "省份", "城市", "区县", "期次", "截止日期", "情况")


@dataclass
class Missing:
    """One assignment still owed."""

    subject: str
    name: str
    reason: str  # NOT_RECEIVED, REJECTED or CONFLICT
    problems: list[Problem] = field(default_factory=list)  # open problems that keep it missing


@dataclass
class Short:
    """A subject with fewer valid assessors than planned: some declared a conflict (回避) on its sheet."""

    subject: str
    name: str
    planned: int   # K: the round's usual number of assessors per subject
    assigned: int  # assessors the roster assigns it (replacements included)
    declared: list[tuple[str, str, str]] = field(default_factory=list)  # (assessor code, name, 回避原因)

    @property
    def valid(self) -> int:
        """Assessors who may still rate it: assigned and not declared."""
        return self.assigned - len(self.declared)

    @property
    def lacking(self) -> int:
        return max(0, self.planned - self.valid)


@dataclass
class AssessorStatus:
    code: str
    name: str
    org: str
    contact: str
    assigned: int
    received: int
    missing: list[Missing] = field(default_factory=list)
    file_problems: list[Problem] = field(default_factory=list)  # open errors of a whole returned file
    reminders: list[Problem] = field(default_factory=list)  # warnings on sheets that count: nothing to resend

    @property
    def owes(self) -> bool:
        """Something to send or correct (file problems are only kept while something is missing)."""
        return bool(self.missing)

    @property
    def open_problems(self) -> list[Problem]:
        return [p for m in self.missing for p in m.problems] + self.file_problems


@dataclass
class StatusResult:
    period: str
    system: System
    deadline: datetime
    assessors: list[AssessorStatus]
    # Subjects of the system's type with no accepted self-assessment; None when the round has no
    # self forms (none generated, none returned), so that rounds without them read as before.
    self_missing: list[Missing] | None = None
    self_expected: int = 0  # subjects that owe a self-assessment (of the system's type)
    places: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # subject -> 省份, 城市, 区县
    # Subjects short of an assessor because of declared conflicts (回避 = 是), still unreplaced.
    short: list[Short] = field(default_factory=list)
    declared: int = 0  # declared conflicts in force in the round (of pairs the roster assigns)
    declarations: list = field(default_factory=list)  # those conflicts (ledger.Declaration)

    @property
    def assigned(self) -> int:
        return sum(a.assigned for a in self.assessors)

    @property
    def received(self) -> int:
        return sum(a.received for a in self.assessors)

    @property
    def missing(self) -> int:
        return sum(len(a.missing) for a in self.assessors)

    def chase_rows(self) -> list[tuple[str, ...]]:
        """One row per missing assignment, in CHASE_COLUMNS order."""
        day = self.deadline.strftime("%Y-%m-%d")
        return [(a.code, a.name, a.org, a.contact, m.subject, m.name, self.period, day, m.reason)
                for a in self.assessors for m in a.missing]

    def chase_detail_rows(self) -> list[tuple[str, ...]]:
        """The chase rows with CHASE_DETAIL_COLUMNS appended: one row per open problem of a missing
        assignment (a whole file's problems go with each assignment not received), else one row
        with the detail empty."""
        day = self.deadline.strftime("%Y-%m-%d")
        rows = []
        for a in self.assessors:
            for m in a.missing:
                base = (a.code, a.name, a.org, a.contact, m.subject, m.name, self.period, day, m.reason)
                found = m.problems + (a.file_problems if m.reason == NOT_RECEIVED else [])
                rows += [base + (p.file, p.sheet, p.cell, p.value, p.message) for p in found] or [base + ("",) * 5]
        return rows


def round_status(ws: Workspace, system: System, period: str, roster: Roster, ledger: Ledger) -> StatusResult:
    """Assigned, received and missing per assessor for one system and round."""
    check_key(period)
    sheets = ledger.sheets(period, system.id)

    def pairs(status: str) -> set[tuple[str, str]]:
        chosen = sheets[sheets["status"] == status]
        return set(zip(chosen["assessor"].tolist(), chosen["subject"].tolist()))  # lists: not 40,000 lookups

    accepted, conflicts = pairs("accepted"), pairs("conflict")
    seen = set(zip(sheets["assessor"].tolist(), sheets["subject"].tolist()))
    found = _open_problems(sheets, ledger.files(period, system.id), ledger.problems(period, system.id), accepted,
                           len(system.items))
    rows = []
    assigned = roster.assignments(system.subject_type)
    for code, subjects in assigned.items():
        person = roster.assessors[code]
        missing = [Missing(s, roster.subjects[s].name,
                           CONFLICT if (code, s) in conflicts else REJECTED if (code, s) in seen else NOT_RECEIVED,
                           found.by_subject.get((code, s), []))
                   for s in subjects if (code, s) not in accepted]
        rows.append(AssessorStatus(code, person.name, person.org, person.contact, len(subjects),
                                   len(subjects) - len(missing), missing,
                                   found.by_file.get(code, []) if missing else [], found.reminders.get(code, [])))
    result = StatusResult(period, system, ws.deadline(period), rows)
    result.declarations = [d for d in ledger.declarations(period, system.id)
                           if d.subject in assigned.get(d.assessor, ())]
    result.declared, result.short = len(result.declarations), _short(roster, assigned, result.declarations)
    _self_status(ws, system, period, roster, ledger, result)
    return result


def _short(roster: Roster, assigned: dict[str, list[str]], declarations) -> list[Short]:
    """The subjects left short by declared conflicts of assigned pairs (`assigned`: the roster's
    assessor -> subjects of the system). K, the planned number of assessors per subject, is the
    most common number the roster assigns (the larger on a tie): a subject with a replacement has
    K + 1 assigned and one declared, so K valid, and is not short."""
    per: dict[str, list[str]] = {}
    for code, subjects in assigned.items():
        for subject in subjects:
            per.setdefault(subject, []).append(code)
    if not per:
        return []
    sizes = Counter(len(v) for v in per.values())
    planned = max(sizes, key=lambda n: (sizes[n], n))
    declared: dict[str, list[tuple[str, str, str]]] = {}
    for d in declarations:
        declared.setdefault(d.subject, []).append((d.assessor, roster.assessors[d.assessor].name, d.reason))
    short = [Short(subject, roster.subjects[subject].name, planned, len(per[subject]), found)
             for subject, found in declared.items()]
    return [x for x in short if x.lacking]


def has_self_forms(ws: Workspace, system: System, period: str) -> bool:
    """Whether self-assessment forms were generated for the round (its forms folder's 自评/)."""
    from pipeline.forms import SELF_DIR

    folder = ws.forms_dir(period, system.id) / SELF_DIR
    return folder.is_dir() and any(p.suffix == ".xlsx" for p in folder.iterdir())


def _self_status(ws: Workspace, system: System, period: str, roster: Roster, ledger: Ledger,
                 result: StatusResult) -> None:
    """Fill in the subjects whose self-assessment is missing, in a round that has self forms."""
    if not (ledger.has_self(period, system.id) or has_self_forms(ws, system, period)):
        return
    sheets = ledger.sheets(period, system.id, kind="self")
    status = {}
    for s in sheets.itertuples(index=False):
        status.setdefault(s.subject, set()).add(s.status)
    subjects = [s for s in roster.subjects.values() if s.type == system.subject_type]
    result.self_expected = len(subjects)
    result.places = {s.code: (s.province, s.city, s.county) for s in subjects}
    result.self_missing = [
        Missing(s.code, s.name, CONFLICT if "conflict" in status.get(s.code, ()) else
                REJECTED if s.code in status else NOT_RECEIVED)
        for s in subjects if "accepted" not in status.get(s.code, ())]


@dataclass
class _Found:
    by_subject: dict[tuple[str, str], list[Problem]] = field(default_factory=dict)  # (assessor, subject) -> errors
    by_file: dict[str, list[Problem]] = field(default_factory=dict)  # assessor -> errors of whole files
    reminders: dict[str, list[Problem]] = field(default_factory=dict)  # assessor -> warnings on counted sheets


def _open_problems(sheets, files, problems, accepted: set[tuple[str, str]], n_items: int) -> _Found:
    """Sort the round's unresolved problems by the assessor and assignment they hold back. A sheet
    left wholly blank is one problem (sheet_blank), not one per item."""
    out = _Found()
    # Only the sheets of files with problems, and only the rejected ones below: a national month
    # has 40,000 sheets, nearly all accepted without a problem.
    by_sheet = {(s.file_id, s.sheet): s for s in sheets[sheets["file_id"].isin(problems["file_id"])].itertuples(index=False)}
    # Of several rejected returns of one subject only the latest speaks: it replaced the others.
    latest: dict[tuple[str, str], tuple[str, int]] = {}
    for s in sheets[sheets["status"] == "rejected"].itertuples(index=False):
        key = (s.assessor, s.subject)
        latest[key] = max(latest.get(key, ("", -1)), (s.saved_at, s.id))
    owner = {f.id: f.assessor for f in files.itertuples(index=False) if isinstance(f.assessor, str) and f.assessor}
    saved = {f.id: f.saved_at if isinstance(f.saved_at, str) else f.received_at for f in files.itertuples(index=False)}
    # A whole file's errors stop counting once a later return of the same assessor was taken in.
    taken: dict[str, str] = {}
    for f in files.itertuples(index=False):
        if f.id in owner and f.status in ("accepted", "partial"):
            taken[owner[f.id]] = max(taken.get(owner[f.id], ""), saved[f.id])
    for p in problems.itertuples(index=False):
        if p.resolved_by == p.resolved_by and p.resolved_by is not None:  # not NaN: fixed by a later sheet
            continue
        shown = Problem(p.code, p.severity, p.message, file=p.file, sheet=p.sheet, cell=p.cell, value=p.value)
        sheet = by_sheet.get((p.file_id, p.sheet))
        if sheet is not None:
            key = (sheet.assessor, sheet.subject)
            if p.severity != ERROR:
                if sheet.status == "accepted":
                    out.reminders.setdefault(sheet.assessor, []).append(shown)
            elif sheet.status == "rejected" and key not in accepted and latest.get(key) == (sheet.saved_at, sheet.id):
                out.by_subject.setdefault(key, []).append(shown)
            continue
        assessor = owner.get(p.file_id)
        if assessor is None or p.code in ROUND_CODES:
            continue
        if p.code == "missing_sheet" and (assessor, p.value) not in accepted:
            out.by_subject.setdefault((assessor, p.value), []).append(shown)  # why it is still missing
        elif p.severity == ERROR and saved[p.file_id] >= taken.get(assessor, ""):
            out.by_file.setdefault(assessor, []).append(shown)
    for key, found in out.by_subject.items():
        blank = [p for p in found if p.code == "blank_score"]
        if n_items > 1 and len(blank) == n_items == len({(p.file, p.sheet) for p in blank}) * n_items:
            first = blank[0]
            out.by_subject[key] = [p for p in found if p.code != "blank_score"] + [
                problem("sheet_blank", file=first.file, sheet=first.sheet, detail=n_items)]
    for key in {(s.assessor, s.subject) for s in sheets[sheets["status"] == "conflict"].itertuples(index=False)}:
        clash = sheets[(sheets["assessor"] == key[0]) & (sheets["subject"] == key[1]) & (sheets["status"] == "conflict")]
        names = "、".join(dict.fromkeys(clash["file"]))  # one problem, naming both files
        out.by_subject.setdefault(key, []).append(
            problem("conflict_return", file=names, sheet="、".join(dict.fromkeys(clash["sheet"])), value=key[1],
                    detail=names))
    return out


def write_chase_list(result: StatusResult, path: str | Path) -> Path:
    """The chase list as a plain workbook for mail merge: one header row, one row per missing assignment
    (one per open problem where it has several), the problem's detail in the columns after CHASE_COLUMNS."""
    path = Path(path)
    with atomic_path(path) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                              "strings_to_numbers": False})
        book.set_properties({"title": f"{result.system.name} {result.period} 期催收名单", "comments": "happyhome"})
        head = book.add_format({"bold": True})
        text = book.add_format({"num_format": "@"})
        sheet = book.add_worksheet(CHASE_SHEET)
        columns = CHASE_COLUMNS + CHASE_DETAIL_COLUMNS
        sheet.write_row(0, 0, columns, head)
        rows = result.chase_detail_rows()
        wrapped = book.add_format({"num_format": "@", "text_wrap": True, "valign": "top"})
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row):
                # text, never a formula or a number; the message wraps
                sheet.write_string(r, c, str(value), wrapped if c == len(columns) - 1 else text)
        for c, width in enumerate((10, 10, 30, 22, 12, 26, 9, 11, 34, 30, 24, 8, 14)):
            sheet.set_column(c, c, width)
        sheet.set_column(len(columns) - 1, len(columns) - 1, 70)
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, max(len(rows), 1), len(columns) - 1)
        sheet.set_landscape()
        sheet.set_paper(9)
        sheet.fit_to_pages(1, 0)
        sheet.repeat_rows(0)
        if result.short:
            short = book.add_worksheet(SHORT_SHEET)
            short.write_row(0, 0, SHORT_COLUMNS, head)
            for r, x in enumerate(result.short, start=1):
                who = "；".join(f"{name}（{code}）：{reason or '未填写原因'}" for code, name, reason in x.declared)
                short.write_string(r, 0, x.subject, text)
                short.write_string(r, 1, x.name, text)
                for c, n in enumerate((x.planned, x.assigned, len(x.declared), x.valid, x.lacking), start=2):
                    short.write_number(r, c, n)
                short.write_string(r, 7, who, wrapped)
            for c, width in enumerate((10, 26, 12, 8, 8, 12, 6, 60)):
                short.set_column(c, c, width)
            short.freeze_panes(1, 0)
            short.set_paper(9)
            short.repeat_rows(0)
        if result.self_missing is not None:
            own = book.add_worksheet(SELF_SHEET)
            own.write_row(0, 0, SELF_COLUMNS, head)
            day = result.deadline.strftime("%Y-%m-%d")
            for r, m in enumerate(result.self_missing, start=1):
                place = roster_place(result, m.subject)
                for c, value in enumerate((m.subject, m.name, *place, result.period, day, m.reason)):
                    own.write_string(r, c, str(value), text)
            for c, width in enumerate((10, 26, 10, 10, 10, 9, 11, 34)):
                own.set_column(c, c, width)
            own.freeze_panes(1, 0)
            own.set_paper(9)
            own.repeat_rows(0)
        book.close()
    return path


def roster_place(result: StatusResult, subject: str) -> tuple[str, str, str]:
    """省份, 城市, 区县 of a subject (kept on the result by round_status)."""
    return result.places.get(subject, ("", "", ""))
