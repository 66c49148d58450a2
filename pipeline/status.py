"""`happyhome status`: who has sent what for a round, and the chase list of what is missing.

An assignment (assessor, subject) counts as received when the ledger holds an accepted sheet
for it in this round; a sheet that came back but failed validation is still missing, and the
chase list says so, because the assessor has to send it again. Two different returns saved in
the same second are a conflict: missing too, until the office removes one and collects again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import xlsxwriter

from pipeline.atomic import atomic_path
from pipeline.config import Workspace
from pipeline.ledger import Ledger
from pipeline.roster import Roster
from pipeline.rounds import check_key
from pipeline.systems import System

CHASE_SHEET = "催收名单"
CHASE_COLUMNS = ("评估人编号", "姓名", "单位", "联系方式", "评估对象编号", "名称", "期次", "截止日期", "情况")
NOT_RECEIVED = "未收到"
REJECTED = "已收到但未通过校验，请修改后重新发送"
CONFLICT = "收到两份保存时间相同但评分不同的文件，请确认以哪份为准"


@dataclass
class Missing:
    """One assignment still owed."""

    subject: str
    name: str
    reason: str  # NOT_RECEIVED, REJECTED or CONFLICT


@dataclass
class AssessorStatus:
    code: str
    name: str
    org: str
    contact: str
    assigned: int
    received: int
    missing: list[Missing] = field(default_factory=list)


@dataclass
class StatusResult:
    period: str
    system: System
    deadline: datetime
    assessors: list[AssessorStatus]

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


def round_status(ws: Workspace, system: System, period: str, roster: Roster, ledger: Ledger) -> StatusResult:
    """Assigned, received and missing per assessor for one system and round."""
    check_key(period)
    sheets = ledger.sheets(period, system.id)

    def pairs(status: str) -> set[tuple[str, str]]:
        chosen = sheets[sheets["status"] == status]
        return set(zip(chosen["assessor"], chosen["subject"]))

    accepted, conflicts = pairs("accepted"), pairs("conflict")
    seen = set(zip(sheets["assessor"], sheets["subject"]))
    rows = []
    for code, subjects in roster.assignments(system.subject_type).items():
        person = roster.assessors[code]
        missing = [Missing(s, roster.subjects[s].name,
                           CONFLICT if (code, s) in conflicts else REJECTED if (code, s) in seen else NOT_RECEIVED)
                   for s in subjects if (code, s) not in accepted]
        rows.append(AssessorStatus(code, person.name, person.org, person.contact, len(subjects),
                                   len(subjects) - len(missing), missing))
    return StatusResult(period, system, ws.deadline(period), rows)


def write_chase_list(result: StatusResult, path: str | Path) -> Path:
    """The chase list as a plain workbook for mail merge: one header row, one row per missing assignment."""
    path = Path(path)
    with atomic_path(path) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                              "strings_to_numbers": False})
        book.set_properties({"title": f"{result.system.name} {result.period} 期催收名单", "comments": "happyhome"})
        head = book.add_format({"bold": True})
        text = book.add_format({"num_format": "@"})
        sheet = book.add_worksheet(CHASE_SHEET)
        sheet.write_row(0, 0, CHASE_COLUMNS, head)
        rows = result.chase_rows()
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row):
                sheet.write_string(r, c, str(value), text)  # text, never a formula or a number
        for c, width in enumerate((10, 10, 30, 22, 12, 26, 9, 11, 34)):
            sheet.set_column(c, c, width)
        sheet.freeze_panes(1, 0)
        sheet.autofilter(0, 0, max(len(rows), 1), len(CHASE_COLUMNS) - 1)
        sheet.set_landscape()
        sheet.set_paper(9)
        sheet.fit_to_pages(1, 0)
        sheet.repeat_rows(0)
        book.close()
    return path
