"""The collection workbook `output/<period>/collection-<system>.xlsx`, for the office, in Chinese.

Three sheets, built from the ledger (so they cover every run of the round, not only the last):
文件 (one row per file seen, duplicates included; 问题数 counts every problem, 待处理问题数 only
those the office still has to act on; 验证 whether the form was verified as this office's:
已验证, 未签名 for a form made before the office key, 未验证 when its identity came from the
visible block, 未通过 for a forged one), 问题 (every problem with file, sheet, cell and the value
found, in words an office can forward (also 发件人不在名单 for a file fetched by mail from an address
not in the roster), and its 状态: 待处理, 已更正 once the assessor's later return passed, 冲突,
声明回避 for a sheet marked 回避 = 是 (with its reason), or 无需处理 for notes), 未交 (the chase list: every assignment with no
accepted sheet yet, with the assessor's contact and why).
"""

from __future__ import annotations

from collections import Counter
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
FILES_COLUMNS = ("文件名", "评估人", "状态", "接收对象数", "问题数", "接收时间", "保存时间", "说明", "原路径", "sha256",
                 "待处理问题数", "验证")
PROBLEMS_COLUMNS = ("文件", "工作表", "单元格", "原值", "问题", "级别", "状态", "技术信息")
MISSING_COLUMNS = ("评估人编号", "评估人", "单位", "联系方式", "评估对象编号", "评估对象", "情况")
STATUS_TEXT = {"accepted": "已接收", "partial": "部分接收", "rejected": "已拒收", "duplicate": "重复",
               "superseded": "已被替换", "conflict": "冲突", "withdrawn": "已移除"}
# files.verified (pipeline.collect) as the office reads it; "" for files never identified, or
# collected before forms were sealed.
VERIFIED_TEXT = {"signed": "已验证", "unsigned": "未签名", "unverified": "未验证", "forged": "未通过"}
# The 状态 of a problem: the office acts on 待处理 and 冲突 only.
OPEN, FIXED, CONFLICT, INFO = "待处理", "已更正", "冲突", "无需处理"
DECLARED = "声明回避"  # a sheet marked 回避 = 是: not an error; the subject needs another assessor
ERROR_TEXT, INFO_TEXT = "错误", "提示"
MISSING_REJECTED = "已交但未通过检查，见“问题”表"
MISSING_CONFLICT = "两份评分冲突（保存时间相同），见“问题”表"
MISSING_NONE = "未收到"


def collection_path(ws: Workspace, period: str, system: System) -> Path:
    return ws.period_output(period) / f"collection-{system.id}.xlsx"


def write_collection(ws: Workspace, ledger: Ledger, system: System, period: str, roster: Roster) -> tuple[Path, int]:
    """Write the collection workbook atomically; returns its path and the number of missing assignments."""
    # Plain rows, not frames: each is walked once, and pandas would cost its import at the end of every run.
    files = ledger.files(period, system.id, as_rows=True)
    sheets = ledger.sheets(period, system.id, kind=None, as_rows=True)  # self-assessments' files are listed too
    problems = ledger.problems(period, system.id, as_rows=True)
    aliases = ledger.aliases(period, system.id, as_rows=True)
    # Files fetched by mail (happyhome fetch) from an address not in the roster: noted, examined as any other.
    addresses = {a.email.casefold() for a in roster.assessors.values() if a.email}
    strangers = {path: sender for path, sender in ledger.mail_senders(period).items()
                 if sender.casefold() not in addresses}

    def who(code) -> str:
        if not isinstance(code, str) or not code:
            return ""
        if roster.is_self(code):
            return f"自评（{code}）"
        person = roster.assessors.get(code)
        return f"{person.name}（{code}）" if person else code

    def state(p) -> str:
        if isinstance(p.resolved_by_file, str):
            return FIXED
        return OPEN if p.severity == ERROR else INFO

    counts = Counter(p.file_id for p in problems)
    open_counts: dict[int, int] = {}
    fixed: dict[int, dict[str, str]] = {}  # file id -> sheet -> the file that fixed it
    for p in problems:
        if state(p) == OPEN:
            open_counts[p.file_id] = open_counts.get(p.file_id, 0) + 1
        elif state(p) == FIXED:
            fixed.setdefault(p.file_id, {})[p.sheet] = p.resolved_by_file
    by_file: dict[int, list] = {}
    by_id: dict[int, object] = {}
    replaced_by: dict[int, list] = {}  # sheet id -> the sheets it superseded
    clashes: dict[tuple[str, str], list] = {}  # (assessor, subject) -> its sheets in conflict
    for s in sheets:
        by_file.setdefault(s.file_id, []).append(s)
        by_id[s.id] = s
        if s.status == "conflict":
            clashes.setdefault((s.assessor, s.subject), []).append(s)
    for s in by_id.values():
        if s.status == "superseded" and s.superseded_by is not None:
            replaced_by.setdefault(int(s.superseded_by), []).append(s)
    file_rows, problem_rows = [], []
    for f in files:
        own = by_file.get(f.id, [])
        kinds = {kind: [s for s in own if s.status == kind] for kind in ("accepted", "superseded", "duplicate",
                                                                          "conflict", "withdrawn")}
        status = STATUS_TEXT[f.status]
        # A file that passed and of which no sheet counts says why; a partial one stays 部分接收 (see 说明).
        if f.status == "accepted" and own and not kinds["accepted"]:
            kind = next((k for k in ("conflict", "superseded", "withdrawn", "duplicate") if kinds[k]), None)
            status = STATUS_TEXT[kind] if kind else status
        notes = [f.reason] if isinstance(f.reason, str) and f.reason else []
        for s in kinds["accepted"]:
            if s.declared:
                message = problem("declared_conflict", value=s.subject, detail=_reason(s.declared_reason)).message
                notes.append(message)
                problem_rows.append((f.name, s.sheet, "", s.subject, message, INFO_TEXT, DECLARED, ""))
        if f.original_path in strangers:
            message = problem("unknown_sender", detail=strangers[f.original_path]).message
            notes.append(message)
            problem_rows.append((f.name, "", "", strangers[f.original_path], message, INFO_TEXT, INFO, ""))
        for s in kinds["superseded"]:
            notes.append(f"{s.subject} 已由 {s.replaced_by_file}（{s.replaced_by_sheet}）替换")
            problem_rows.append((f.name, s.sheet, "", s.subject,
                                 problem("superseded", value=s.subject, detail=s.replaced_by_file).message,
                                 INFO_TEXT, INFO, ""))
        if kinds["duplicate"]:
            subjects = "、".join(s.subject for s in kinds["duplicate"])
            twins = "、".join(dict.fromkeys(s.same_as_file for s in kinds["duplicate"]))
            message = problem("same_scores", detail=twins).message
            notes.append(f"{subjects} {message}")
            problem_rows.append((f.name, "", "", subjects, message, INFO_TEXT, INFO, ""))
        for s in kinds["conflict"]:
            others = "、".join(dict.fromkeys(o.file for o in clashes[s.assessor, s.subject] if o.id != s.id))
            message = problem("conflict", value=s.subject, detail=others, saved=_when(s.saved_at, utc=True)).message
            notes.append(f"{s.subject} 与 {others} 冲突（保存时间相同、评分不同），均未计入")
            problem_rows.append((f.name, s.sheet, "", s.subject, message, ERROR_TEXT, CONFLICT, ""))
        for s in kinds["withdrawn"]:
            kept = f"，以 {s.replaced_by_file} 为准" if isinstance(s.replaced_by_file, str) else ""
            notes.append(f"{s.subject} 的冲突已处理：本文件已从收取文件夹移除{kept}")
        for sheet, by in fixed.get(f.id, {}).items():
            subject = next((s.subject for s in own if s.sheet == sheet), sheet)
            notes.append(problem("problem_fixed", value=subject, detail=by).message)
        for s in (r for own_sheet in own for r in replaced_by.get(own_sheet.id, [])):
            notes.append(f"替换了 {s.file} 中的 {s.subject}")
        file_rows.append((f.name, who(f.assessor), status, len(kinds["accepted"]), int(counts.get(f.id, 0)),
                          _when(f.received_at), _when(f.saved_at, utc=True), "；".join(notes), f.original_path, f.sha256,
                          int(open_counts.get(f.id, 0) + len(kinds["conflict"])),
                          VERIFIED_TEXT.get(getattr(f, "verified", ""), "")))
    for a in aliases:
        name = Path(a.path).name
        if a.status == "rejected":  # a copy of a rejected file fails with it, and is fixed with it
            message = problem("duplicate_of_rejected", detail=a.same_as).message
            level, shown = ERROR_TEXT, (OPEN if open_counts.get(a.file_id) else FIXED)
        else:
            message, level, shown = problem("duplicate_file", detail=a.same_as).message, INFO_TEXT, INFO
        file_rows.append((name, who(a.assessor), STATUS_TEXT["duplicate"], 0, 1, _when(a.seen_at), "", message, a.path,
                          "", 0, ""))
        problem_rows.append((name, "", "", "", message, level, shown, ""))
    for p in problems:
        problem_rows.append((p.file, p.sheet, p.cell, p.value, p.message,
                             ERROR_TEXT if p.severity == ERROR else INFO_TEXT, state(p),
                             p.technical if isinstance(p.technical, str) else ""))

    accepted = {(s.assessor, s.subject) for s in by_id.values() if s.status == "accepted"}
    tried = {(s.assessor, s.subject) for s in by_id.values()}
    missing_rows = []
    for code, subjects in roster.assignments(system.subject_type).items():
        person = roster.assessors[code]
        for subject in subjects:
            if (code, subject) in accepted:
                continue
            reason = (MISSING_CONFLICT if (code, subject) in clashes else
                      MISSING_REJECTED if (code, subject) in tried else MISSING_NONE)
            missing_rows.append((code, person.name, person.org, person.contact, subject,
                                 roster.subjects[subject].name, reason))

    target = ws.period_output(period) / f"collection-{system.id}.xlsx"
    with atomic_path(target) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                              "strings_to_numbers": False})
        book.set_properties({"title": f"{system.name} {period} 回收情况", "comments": "happyhome"})
        head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "valign": "vcenter"})
        wrap = book.add_format({"text_wrap": True, "valign": "top"})
        _table(book, FILES_SHEET, FILES_COLUMNS, file_rows, (34, 16, 10, 10, 8, 20, 20, 50, 50, 66, 12, 8), head, wrap,
               print_cols=FILES_COLUMNS.index("说明") + 1)
        _table(book, PROBLEMS_SHEET, PROBLEMS_COLUMNS, problem_rows, (34, 24, 8, 16, 70, 6, 9, 40), head, wrap,
               print_cols=PROBLEMS_COLUMNS.index("状态") + 1)
        _table(book, MISSING_SHEET, MISSING_COLUMNS, missing_rows, (10, 10, 24, 22, 12, 28, 30), head, wrap)
        book.close()
    return target, len(missing_rows)


def _reason(text) -> str:
    return text if isinstance(text, str) and text else "未填写"


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
