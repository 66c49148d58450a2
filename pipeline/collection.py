"""The collection workbook `output/<period>/collection-<system>.xlsx`, for the office, in Chinese.

Three sheets, built from the ledger (so they cover every run of the round, not only the last):
文件 (one row per file seen, duplicates included), 问题 (every problem with file, sheet, cell
and the value found, in words an office can forward), 未交 (the chase list: every assignment
with no accepted sheet yet, with the assessor's contact).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import xlsxwriter

from pipeline.atomic import atomic_path
from pipeline.config import Workspace
from pipeline.ledger import Ledger
from pipeline.messages import ERROR, problem
from pipeline.roster import Roster
from pipeline.systems import System

FILES_SHEET, PROBLEMS_SHEET, MISSING_SHEET = "文件", "问题", "未交"
FILES_COLUMNS = ("文件名", "评估人", "状态", "接收对象数", "问题数", "接收时间", "保存时间", "说明", "原路径", "sha256")
PROBLEMS_COLUMNS = ("文件", "工作表", "单元格", "原值", "问题", "级别")
MISSING_COLUMNS = ("评估人编号", "评估人", "单位", "联系方式", "评估对象编号", "评估对象", "情况")
STATUS_TEXT = {"accepted": "已接收", "partial": "部分接收", "rejected": "已拒收", "duplicate": "重复",
               "superseded": "已被替换"}


def collection_path(ws: Workspace, period: str, system: System) -> Path:
    return ws.period_output(period) / f"collection-{system.id}.xlsx"


def write_collection(ws: Workspace, ledger: Ledger, system: System, period: str, roster: Roster) -> tuple[Path, int]:
    """Write the collection workbook atomically; returns its path and the number of missing assignments."""
    files = ledger.files(period, system.id)
    sheets = ledger.sheets(period, system.id)
    problems = ledger.frame(
        """SELECT p.file_id, f.name AS file, p.sheet, p.cell, p.value, p.severity, p.message
           FROM problems p JOIN files f ON f.id = p.file_id WHERE f.period = ? AND f.system = ? ORDER BY p.id""",
        (period, system.id),
    )
    aliases = ledger.frame(
        """SELECT a.path, a.seen_at, f.name AS same_as, f.assessor FROM aliases a JOIN files f ON f.sha256 = a.sha256
           WHERE f.period = ? AND f.system = ? ORDER BY a.seen_at, a.path""",
        (period, system.id),
    )

    def who(code) -> str:
        if not isinstance(code, str) or not code:
            return ""
        person = roster.assessors.get(code)
        return f"{person.name}（{code}）" if person else code

    counts = problems.groupby("file_id").size().to_dict() if len(problems) else {}
    by_file: dict[int, list] = {}
    by_id: dict[int, object] = {}
    replaced_by: dict[int, list] = {}  # sheet id -> the sheets it superseded
    for s in sheets.itertuples(index=False):
        by_file.setdefault(s.file_id, []).append(s)
        by_id[s.id] = s
    for s in by_id.values():
        if s.status == "superseded" and s.superseded_by == s.superseded_by:  # not NaN
            replaced_by.setdefault(int(s.superseded_by), []).append(s)
    file_rows, problem_rows = [], []
    for f in files.itertuples(index=False):
        own = by_file.get(f.id, [])
        active = sum(s.status == "accepted" for s in own)
        gone = [s for s in own if s.status == "superseded"]
        status = STATUS_TEXT[f.status]
        if f.status != "rejected" and active == 0 and gone:
            status = STATUS_TEXT["superseded"]
        notes = [f.reason] if isinstance(f.reason, str) and f.reason else []
        for s in gone:
            notes.append(f"{s.subject} 已由 {s.replaced_by_file}（{s.replaced_by_sheet}）替换")
            problem_rows.append((f.name, s.sheet, "", s.subject,
                                 problem("superseded", value=s.subject, detail=s.replaced_by_file).message, "提示"))
        for s in (r for own_sheet in own for r in replaced_by.get(own_sheet.id, [])):
            notes.append(f"替换了 {s.file} 中的 {s.subject}")
        file_rows.append((f.name, who(f.assessor), status, active, int(counts.get(f.id, 0)),
                          _when(f.received_at), _when(f.saved_at, utc=True), "；".join(notes), f.original_path, f.sha256))
    for a in aliases.itertuples(index=False):
        name = Path(a.path).name
        message = problem("duplicate_file", detail=a.same_as).message
        file_rows.append((name, who(a.assessor), STATUS_TEXT["duplicate"], 0, 1, _when(a.seen_at), "", message, a.path, ""))
        problem_rows.append((name, "", "", "", message, "提示"))
    for p in problems.itertuples(index=False):
        problem_rows.append((p.file, p.sheet, p.cell, p.value, p.message, "错误" if p.severity == ERROR else "提示"))


    accepted = {(s.assessor, s.subject) for s in by_id.values() if s.status == "accepted"}
    tried = {(s.assessor, s.subject) for s in by_id.values()}
    missing_rows = []
    for code, subjects in roster.assignments(system.subject_type).items():
        person = roster.assessors[code]
        for subject in subjects:
            if (code, subject) in accepted:
                continue
            state = "已交但未通过检查，见“问题”表" if (code, subject) in tried else "未收到"
            missing_rows.append((code, person.name, person.org, person.contact, subject,
                                 roster.subjects[subject].name, state))

    target = ws.period_output(period) / f"collection-{system.id}.xlsx"
    with atomic_path(target) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                              "strings_to_numbers": False})
        book.set_properties({"title": f"{system.name} {period} 回收情况", "comments": "happyhome"})
        head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "valign": "vcenter"})
        wrap = book.add_format({"text_wrap": True, "valign": "top"})
        _table(book, FILES_SHEET, FILES_COLUMNS, file_rows, (34, 16, 10, 10, 8, 20, 20, 50, 50, 66), head, wrap,
               print_cols=FILES_COLUMNS.index("说明") + 1)
        _table(book, PROBLEMS_SHEET, PROBLEMS_COLUMNS, problem_rows, (34, 24, 8, 16, 70, 6), head, wrap)
        _table(book, MISSING_SHEET, MISSING_COLUMNS, missing_rows, (10, 10, 24, 22, 12, 28, 30), head, wrap)
        book.close()
    return target, len(missing_rows)


def _when(stamp, utc: bool = False) -> str:
    """An ISO time as the office reads it, in local time: 2026-11-29 10:12:33.

    The ledger keeps saved_at in UTC (as workbooks record it) and received_at in local time.
    """
    if not isinstance(stamp, str) or not stamp:
        return ""
    when = datetime.fromisoformat(stamp)
    if utc:
        when = when.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _table(book, name: str, columns: tuple[str, ...], rows: list[tuple], widths: tuple[int, ...], head, wrap,
           print_cols: int | None = None) -> None:
    sheet = book.add_worksheet(name)
    for c, width in enumerate(widths):
        sheet.set_column(c, c, width, wrap if width >= 50 else None)
    for c, title in enumerate(columns):
        sheet.write_string(0, c, title, head)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, "" if value is None else str(value))  # assessor text stays text
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(rows), 1), len(columns) - 1)
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.fit_to_pages(1, 0)
    sheet.repeat_rows(0)
    if print_cols:  # the audit columns (path, hash) stay on screen, off paper
        sheet.print_area(0, 0, max(len(rows), 1), print_cols - 1)
