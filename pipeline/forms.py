"""Write the assessors' fillable workbooks (xlsxwriter).

One workbook per assessor: 填表说明, 汇总 (live formulas), one protected sheet per subject with
per-cell validation on 得分, and a very-hidden metadata sheet so the collector never has to
trust sheet names or positions. The layout constants below are the contract with collect.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import xlsxwriter
from xlsxwriter.utility import xl_rowcol_to_cell

from pipeline.config import Workspace
from pipeline.errors import UsageError
from pipeline.i18n import _
from pipeline.names import safe_filename, safe_sheet_name
from pipeline.officekey import ensure_key
from pipeline.roster import Assessor, Roster, Subject
from pipeline.rounds import SUPERVISION, check_key, round_key, split_key
from pipeline.systems import System
from pipeline.atomic import atomic_path

META_SHEET = "_happyhome"
META_VERSION = "1"
SEAL_ROW = "hmac"  # after the `signature` row: [SEAL_ROW, seal(rows before signature, office key)]
GUIDE_SHEET, SUMMARY_SHEET = "填表说明", "汇总"
HEADER = ("编号", "一级指标", "二级指标", "三级指标", "评价内容", "满分", "得分", "备注")
HEADER_ROW = 5  # 0-based: the header is on row 6, items start on row 7
BLOCK_LABELS = {  # the identity block at the top of every subject sheet: label -> meaning
    "评估对象": "subject_name", "对象编号": "subject",
    "评估人": "assessor_name", "评估人编号": "assessor",
    "期次": "period", "指标体系": "system",
}
SCORE_COL, REMARK_COL = HEADER.index("得分"), HEADER.index("备注")
# 回避 declared in the form (expert forms only): on the row below the identity block, the label
# 回避 with a dropdown 否/是 (default 否) in the cell right of it, and the label 回避原因 with a
# free-text cell right of it. A sheet marked 是 is a declared conflict: not an error, not scored.
# The reader takes each value from the cell immediately right of its label; forms made before
# these cells have neither label and read as 否.
DECLARE_ROW = 4  # 0-based: row 5, between the identity block and the header
DECLARE_LABEL, DECLARE_REASON_LABEL = "回避", "回避原因"
DECLARE_NO, DECLARE_YES = "否", "是"
DECLARE_COL, DECLARE_REASON_COL = 1, 3  # B5 (the dropdown) and D5 (the reason, merged D5:E5)
# Form kinds: an assessor's (expert) form rates the subjects assigned to them; a self-assessment
# form is filled by the subject itself. A self form's metadata says `kind = self`, names the
# subject as its own assessor (`assessor` = the subject's code) and lists that one subject; its
# identity block reads 评估人 自评, 评估人编号 = the subject's code.
EXPERT, SELF = "expert", "self"
KINDS = (EXPERT, SELF)
SELF_ASSESSOR = "自评"  # the 评估人 of a self form's identity block
EVIDENCE = "佐证材料"  # the self form's column after 备注: the supporting documents' numbers or names
SELF_HEADER = HEADER + (EVIDENCE,)
SELF_DIR = "自评"  # self forms' sub-folder of the round's forms folder
# An expert form of a round whose self-assessments are in: two read-only columns after 备注.
SHOWN_SELF = ("自评分", EVIDENCE)
CRITERION_CHARS_PER_LINE = 34  # column E at width 62 prints about 36 CJK characters a line


@dataclass(frozen=True)
class FormSpec:
    """Everything one assessor's workbook holds."""

    path: Path
    system: System
    period: str
    assessor: Assessor
    subjects: tuple[Subject, ...]
    organiser: str = ""
    stage: str = SUPERVISION  # 遴选 | 督导 | 评估 | 验收: stamped in the metadata and the titles
    contact: str = ""
    deadline: str = ""
    # Pre-filled answers, subject -> item -> (score, remark): how the demo and the benchmark
    # make "returned" workbooks fast. A score that is not a number is written as text.
    answers: dict | None = None
    kind: str = EXPERT  # expert | self (one subject, filled by the subject itself)
    # Expert forms of a round with self-assessments: subject -> item -> (自评分, 佐证材料).
    shown_self: dict | None = None
    reason_share: float = 1.0  # a score below this share of 满分 needs a 备注 (said on the form)
    # Pre-filled declarations (the demo's): subject -> 回避原因, written as 回避 = 是.
    declared: dict | None = None
    # The office key (pipeline.officekey): the metadata carries an HMAC under it. None writes an
    # unsigned form, as before the key existed. Never shown in a repr.
    key: bytes | None = field(default=None, repr=False)


@dataclass
class FormsResult:
    out_dir: Path
    paths: list[Path]  # the forms written
    subjects: int
    unchanged: list[Path] = field(default_factory=list)  # --update: forms already there for the same subjects
    changed: list[Path] = field(default_factory=list)  # --update: forms rewritten because their subjects changed


def form_id(system: System, period: str, assessor: str, subjects: list[str], stage: str = SUPERVISION,
            kind: str = EXPERT) -> str:
    key = [system.id, system.checksum, period, assessor, subjects] + ([stage] if stage != SUPERVISION else [])
    key += [kind] if kind != EXPERT else []
    blob = json.dumps(key, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def meta_rows(spec: FormSpec, sheet_names: list[str]) -> list[list[str]]:
    """The metadata sheet's rows; the last one signs all the others."""
    codes = [s.code for s in spec.subjects]
    rows = [
        ["happyhome_form", META_VERSION],
        ["form_id", form_id(spec.system, spec.period, spec.assessor.code, codes, spec.stage, spec.kind)],
        ["system", spec.system.id],
        ["system_version", spec.system.version],
        ["checksum", spec.system.checksum],
        ["period", spec.period],
        ["stage", spec.stage],
        ["kind", spec.kind],
        ["assessor", spec.assessor.code],  # a self form: the subject's own code
    ]
    rows += [["subject", code, name] for code, name in zip(codes, sheet_names)]
    signed = rows + [["signature", sign(rows)]]
    if spec.key:
        signed.append([SEAL_ROW, seal(rows, spec.key)])
    return signed


def _canonical(rows: list[list[str]]) -> str:
    return json.dumps([[str(v) for v in row] for row in rows], ensure_ascii=False)


def sign(rows: list[list[str]]) -> str:
    """A checksum of the metadata, so that a hand-edited metadata sheet is noticed. Public: anyone
    can recompute it, so it catches accidents, not forgery (that is `seal`)."""
    return hashlib.sha256(("happyhome:" + _canonical(rows)).encode("utf-8")).hexdigest()[:16]


def seal(rows: list[list[str]], key: bytes) -> str:
    """HMAC-SHA256 under the office key over every metadata row before `signature` (the same
    serialisation as `sign`): system, version, period, stage, kind, assessor, subjects and the
    structure checksum. Only the workspace holding the key can compute it."""
    return hmac.new(key, ("happyhome-seal:" + _canonical(rows)).encode("utf-8"), hashlib.sha256).hexdigest()


def seal_ok(rows: list[list[str]], key: bytes, tag: str) -> bool:
    """Whether `tag` is the seal of these rows under `key` (compared in constant time)."""
    return isinstance(tag, str) and tag.isascii() and hmac.compare_digest(seal(rows, key), tag)


def form_filename(period: str, system: System, assessor: Assessor, stage: str = SUPERVISION) -> str:
    parts = [round_key(period, stage), system.id, assessor.code, assessor.name]
    return safe_filename("_".join(safe_filename(p, 60) for p in parts), 180) + ".xlsx"


def self_form_filename(period: str, system: System, subject: Subject, stage: str = SUPERVISION) -> str:
    """<key>_<system>_自评_<编号>_<名称>.xlsx"""
    parts = [round_key(period, stage), system.id, SELF_ASSESSOR, subject.code, subject.name]
    return safe_filename("_".join(safe_filename(p, 60) for p in parts), 180) + ".xlsx"


def form_title(spec: FormSpec) -> str:
    """创新实践社区评价指标体系·遴选评分表 (a 督导 form keeps the system's plain 评分表); 自评表 for a self form."""
    if spec.kind == SELF:
        return f"{spec.system.name}·{spec.stage + '自评表' if spec.stage != SUPERVISION else '自评表'}"
    return f"{spec.system.name}·{spec.stage}评分表" if spec.stage != SUPERVISION else f"{spec.system.name} 评分表"


def subject_sheet_names(subjects: tuple[Subject, ...]) -> list[str]:
    """编号 plus the name where it fits in 31 characters; always unique."""
    taken = {GUIDE_SHEET, SUMMARY_SHEET, META_SHEET}
    names = []
    for s in subjects:
        full = safe_sheet_name(f"{s.code} {s.name}", set())
        names.append(safe_sheet_name(full if len(f"{s.code} {s.name}") <= 31 else s.code, taken))
    return names


def quote_sheet(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def criterion_height(text: str) -> float:
    """Row height in points for the wrapped criterion: neither Excel nor LibreOffice fits it reliably."""
    lines = max(1, math.ceil(len(text) / CRITERION_CHARS_PER_LINE))
    return 15.0 * lines + 6


def write_form(spec: FormSpec) -> Path:
    """Write one assessor's workbook atomically; returns its path."""
    with atomic_path(spec.path) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False, "in_memory": True})
        book.set_properties({"title": f"{form_title(spec)} {spec.period}", "author": spec.organiser,
                             "comments": "happyhome"})
        f = _formats(book)
        names = subject_sheet_names(spec.subjects)
        _guide(book, f, spec)
        if spec.kind == SELF:  # 填表说明 and the one item sheet
            _subject_sheet(book, f, spec, spec.subjects[0], names[0])
        else:
            summary = book.add_worksheet(SUMMARY_SHEET)
            ranges = [_subject_sheet(book, f, spec, subject, name) for subject, name in zip(spec.subjects, names)]
            _summary(summary, f, spec, names, ranges)
        meta = book.add_worksheet(META_SHEET)
        for r, row in enumerate(meta_rows(spec, names)):
            for c, value in enumerate(row):
                meta.write_string(r, c, str(value))
        meta.very_hidden()
        book.close()
    return spec.path


def _formats(book) -> dict:
    base = {"font_name": "等线", "font_size": 10, "valign": "vcenter", "border": 1}
    fmt = lambda **kw: book.add_format({**base, **kw})  # noqa: E731
    return {
        "title": book.add_format({"bold": True, "font_size": 14, "font_name": "等线", "align": "center", "valign": "vcenter"}),
        "label": fmt(bold=True, bg_color="#F2F2F2"),
        "value": fmt(),
        "head": fmt(bold=True, bg_color="#DDEBF7", align="center", text_wrap=True),
        "cell": fmt(text_wrap=True),
        "center": fmt(align="center", text_wrap=True),
        "max": fmt(align="center", num_format="0.##"),
        "score": fmt(align="center", num_format="0.##", bg_color="#FFF2CC", locked=False),
        "remark": fmt(text_wrap=True, bg_color="#FFF2CC", locked=False),
        "declare": fmt(align="center", bg_color="#FFF2CC", locked=False),
        "shown": fmt(text_wrap=True, align="center", num_format="0.##", bg_color="#EDEDED"),
        "total": fmt(bold=True, align="center", num_format="0.##", bg_color="#E2EFDA"),
        "total_label": fmt(bold=True, bg_color="#E2EFDA"),
        "sub": fmt(align="center", num_format="0.##", font_color="#595959"),
        "sub_label": fmt(font_color="#595959"),
        "pending": book.add_format({"font_color": "#C00000", "bold": True}),
        "note": book.add_format({"font_name": "等线", "font_size": 10, "text_wrap": True, "valign": "top"}),
        "note_bold": book.add_format({"font_name": "等线", "font_size": 11, "bold": True}),
    }


def _guide(book, f, spec: FormSpec) -> None:
    ws = book.add_worksheet(GUIDE_SHEET)
    ws.set_column(0, 0, 100)
    ws.hide_gridlines(2)
    system = spec.system
    basic = sum(i.max for i in system.items if i.level1 == "基础指标")
    if spec.kind == SELF:
        subject = spec.subjects[0]
        lines = [(f"{form_title(spec)} · {spec.period} 期", "title"),
                 (f"评估对象：{subject.name}（编号 {subject.code}）    本表为该对象的自评表", "note_bold")]
    else:
        lines = [
            (f"{form_title(spec)} · {spec.period} 期" if spec.stage != SUPERVISION else f"{system.name} · {spec.period} 期评分表",
             "title"),
            (f"评估人：{spec.assessor.name}（编号 {spec.assessor.code}）    本表共 {len(spec.subjects)} 个评估对象", "note_bold"),
        ]
    if spec.deadline:
        lines.append((f"请于 {spec.deadline} 前填好并发回。", "note_bold"))
    if spec.contact:
        lines.append((f"如有疑问请联系：{spec.contact}", "note_bold"))
    if spec.kind == SELF:
        steps = [
            ("1. 请对照评价内容逐项自评，只在黄色的“得分”“备注”“佐证材料”三列中填写，其他单元格已锁定。", "note"),
            ("2. 得分即自评分，填写 0 到该项满分之间的数字，可以有小数（如 3.5）。超出范围的数字无法输入。", "note"),
            ("3. 每一项都须打分；“佐证材料”请填写支撑该项得分的材料编号或名称，“备注”可写说明。", "note"),
            ("4. 表格下方的“合计”显示自评总分，全部填完后保存并发回本文件。自评分单独记录，不计入专家评分。", "note"),
            ("5. 请不要改动工作表名称、表头、指标编号，也不要把表格复制到新文件中；可以用 Excel、WPS 或 LibreOffice 填写。", "note"),
        ]
    else:
        if spec.reason_share >= 1:
            rule = "3. 每一项都须打分；凡有扣分（得分低于满分）的，请在“备注”中写明扣分理由。"
        elif spec.reason_share > 0:
            rule = f"3. 每一项都须打分；得分低于该项满分的 {spec.reason_share:.0%} 时，请在“备注”中写明扣分理由。"
        else:
            rule = "3. 每一项都须打分；得分较低时，请在“备注”中简要说明理由。"
        steps = [
            ("1. 每个评估对象一张工作表（表名为对象编号）。请只在黄色的“得分”“备注”两列中填写，其他单元格已锁定。", "note"),
            ("2. 得分填写 0 到该项满分之间的数字，可以有小数（如 3.5）。超出范围的数字无法输入。", "note"),
            (rule, "note"),
            ("4. “汇总”表会显示每个对象已填项数和合计分，全部显示“已完成”后保存并发回本文件。", "note"),
            ("5. 请不要改动工作表名称、表头、指标编号，也不要把表格复制到新文件中；可以用 Excel、WPS 或 LibreOffice 填写。", "note"),
        ]
        steps.append(("6. 如与某个评估对象有利益关系（在该对象任职、亲属关系、合作项目等），请在该对象工作表顶部的“回避”"
                      "中选择“是”，并在“回避原因”中写明原因，该表不必评分；办公室会另行安排评估人。", "note"))
        if spec.shown_self is not None:
            steps.append(("7. 灰色的“自评分”“佐证材料”两列是评估对象本轮的自评，仅供参考，不能修改，也不计入得分。", "note"))
    lines += [("", "note"), ("填写步骤", "note_bold"), *steps]
    lines += [
        ("", "note"),
        ("计分规则", "note_bold"),
        (f"总分 {system.total:g} 分，得分 = 每个单项得分之和。基础指标 {basic:g} 分，进阶指标 {system.total - basic:g} 分：", "note"),
    ]
    for level2 in system.level2_names:
        items = [i for i in system.items if i.level2 == level2]
        names = "、".join(i.level3 for i in items)
        lines.append((f"    {items[0].level1} · {level2}：{sum(i.max for i in items):g} 分（{names}）", "note"))
    if spec.organiser:
        lines += [("", "note"), (spec.organiser, "note")]
    for r, (text, style) in enumerate(lines):
        ws.write_string(r, 0, text, f[style])
    ws.set_row(0, 24)
    ws.set_paper(9)
    ws.fit_to_pages(1, 0)
    ws.activate()


def _subject_sheet(book, f, spec: FormSpec, subject: Subject, name: str) -> tuple[int, int]:
    """Write one subject's sheet; returns the 0-based first and last item rows."""
    ws = book.add_worksheet(name)
    system = spec.system
    header = SELF_HEADER if spec.kind == SELF else HEADER + (SHOWN_SELF if spec.shown_self is not None else ())
    widths = (7, 9, 10, 13, 62, 9, 7, 28) + (28,) * (len(header) - len(HEADER))
    last_col = len(header) - 1
    for c, w in enumerate(widths):
        ws.set_column(c, c, w)
    if spec.kind == SELF:
        title = form_title(spec)
    else:
        title = form_title(spec) if spec.stage != SUPERVISION else f"{system.name} · 评分表"
    ws.merge_range(0, 0, 0, last_col, title, f["title"])
    ws.set_row(0, 26)
    block = [
        ("评估对象", subject.name, "对象编号", subject.code),
        ("评估人", spec.assessor.name, "评估人编号", spec.assessor.code),
        ("期次", spec.period, "指标体系", system.id),
    ]
    for r, (l1, v1, l2, v2) in enumerate(block, start=1):
        ws.write_string(r, 0, l1, f["label"])
        ws.merge_range(r, 1, r, 4, "", f["value"])
        ws.write_string(r, 1, v1, f["value"])  # as a string: a name may look like a formula
        ws.write_string(r, 5, l2, f["label"])
        ws.merge_range(r, 6, r, 7, "", f["value"])
        ws.write_string(r, 6, v2, f["value"])
    prompt = ("请在黄色单元格中填写自评得分（0 至该项满分）、备注和佐证材料。" if spec.kind == SELF
              else "请在黄色单元格中填写得分（0 至该项满分）和备注。")
    if spec.kind == SELF:
        ws.merge_range(DECLARE_ROW, 0, DECLARE_ROW, last_col, f"{prompt}指标体系 {system.id} · 版本 {system.version}",
                       f["note"])
    else:
        _declare_cells(ws, f, last_col, f"{prompt}指标体系 {system.id} · 版本 {system.version}",
                       (spec.declared or {}).get(subject.code))
    ws.write_row(HEADER_ROW, 0, header, f["head"])
    shown = (spec.shown_self or {}).get(subject.code, {})
    first = HEADER_ROW + 1
    for n, item in enumerate(system.items):
        r = first + n
        ws.write_string(r, 0, item.code, f["center"])
        ws.write_string(r, 1, item.level1, f["center"])
        ws.write_string(r, 2, item.level2, f["center"])
        ws.write_string(r, 3, item.level3, f["center"])
        ws.write_string(r, 4, item.criterion, f["cell"])
        ws.write_number(r, 5, item.max, f["max"])
        score, remark = (((spec.answers or {}).get(subject.code) or {}).get(item.code) or (None, None))[:2]
        if score is None or score == "":
            ws.write_blank(r, SCORE_COL, None, f["score"])
        elif isinstance(score, (int, float)) and not isinstance(score, bool):
            ws.write_number(r, SCORE_COL, score, f["score"])
        else:
            ws.write_string(r, SCORE_COL, str(score), f["score"])
        if remark:
            ws.write_string(r, REMARK_COL, str(remark), f["remark"])
        else:
            ws.write_blank(r, REMARK_COL, None, f["remark"])
        if spec.kind == SELF:
            evidence = (((spec.answers or {}).get(subject.code) or {}).get(item.code) or ())[2:3]
            if evidence and evidence[0]:
                ws.write_string(r, len(HEADER), str(evidence[0]), f["remark"])
            else:
                ws.write_blank(r, len(HEADER), None, f["remark"])
        elif spec.shown_self is not None:  # read-only: the subject's own score and documents
            own, documents = shown.get(item.code, (None, ""))
            if own is None:
                ws.write_blank(r, len(HEADER), None, f["shown"])
            else:
                ws.write_number(r, len(HEADER), own, f["shown"])
            ws.write_string(r, len(HEADER) + 1, documents or "", f["shown"])
        ws.set_row(r, criterion_height(item.criterion))
        ws.data_validation(r, SCORE_COL, r, SCORE_COL, {
            "validate": "decimal", "criteria": "between", "minimum": 0, "maximum": item.max,
            "input_title": f"{item.code} {item.level3}"[:32],
            "input_message": f"满分 {item.max:g} 分，请填写 0 到 {item.max:g} 之间的数字。"[:255],
            "error_type": "stop", "error_title": "得分超出范围",
            "error_message": f"{item.code} {item.level3}：得分须为 0 到 {item.max:g} 之间的数字。"[:255],
        })
    last = first + len(system.items) - 1
    total = last + 1
    col_max, col_score = xl_rowcol_to_cell(first, 5), xl_rowcol_to_cell(first, SCORE_COL)
    ws.write_string(total, 0, "合计", f["total_label"])
    for c in range(1, 5):
        ws.write_blank(total, c, None, f["total_label"])
    ws.write_formula(total, 5, f"=SUM({col_max}:{xl_rowcol_to_cell(last, 5)})", f["total"], system.total)
    ws.write_formula(total, SCORE_COL, f"=SUM({col_score}:{xl_rowcol_to_cell(last, SCORE_COL)})", f["total"])
    n_items = len(system.items)
    # The cached value is what the formula gives on an empty form: LibreOffice shows it as
    # saved rather than recalculating, and xlsxwriter's default cache is 0.
    ws.write_formula(total, REMARK_COL, f'=IF(COUNT({col_score}:{xl_rowcol_to_cell(last, SCORE_COL)})={n_items},"已完成","还差"&({n_items}-COUNT({col_score}:{xl_rowcol_to_cell(last, SCORE_COL)}))&"项未填")', f["total"],
                     f"还差{n_items}项未填")
    level2_col = f"$C${first + 1}:$C${last + 1}"
    for n, level2 in enumerate(system.level2_names, start=1):
        r = total + n
        items = [i for i in system.items if i.level2 == level2]
        ws.write_string(r, 2, level2, f["sub_label"])
        ws.write_string(r, 3, "小计", f["sub_label"])
        ws.write_number(r, 5, sum(i.max for i in items), f["sub"])
        ws.write_formula(r, SCORE_COL, f'=SUMIF({level2_col},C{r + 1},$G${first + 1}:$G${last + 1})', f["sub"])
    ws.freeze_panes(first, 0)
    ws.protect("", {"select_locked_cells": True, "select_unlocked_cells": True, "format_rows": True, "format_columns": True})
    ws.set_landscape()
    ws.set_paper(9)
    ws.fit_to_pages(1, 0)
    ws.repeat_rows(HEADER_ROW)
    ws.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
    ws.set_footer(f"&L{subject.code} {subject.name[:40]}&C第 &P 页，共 &N 页&R{spec.assessor.name[:20]}")
    if spec.kind == SELF:
        ws.activate()  # the one sheet to fill
    return first, last


def _declare_cells(ws, f, last_col: int, prompt: str, reason: str | None = None) -> None:
    """The 回避 dropdown (否/是, default 否) and the 回避原因 cell, both editable under the sheet's
    protection; the prompt takes the rest of the row. A `reason` pre-fills 是 and the reason."""
    ws.write_string(DECLARE_ROW, 0, DECLARE_LABEL, f["label"])
    ws.write_string(DECLARE_ROW, DECLARE_COL, DECLARE_NO if reason is None else DECLARE_YES, f["declare"])
    ws.data_validation(DECLARE_ROW, DECLARE_COL, DECLARE_ROW, DECLARE_COL, {
        "validate": "list", "source": [DECLARE_NO, DECLARE_YES],
        "input_title": "回避",
        "input_message": "与该评估对象有利益关系（任职、亲属、合作等）时选“是”，并在右侧填写回避原因；本表不再评分。",
        "error_type": "stop", "error_title": "回避", "error_message": "请从下拉列表中选择：否 或 是"})
    ws.write_string(DECLARE_ROW, 2, DECLARE_REASON_LABEL, f["label"])
    ws.merge_range(DECLARE_ROW, DECLARE_REASON_COL, DECLARE_ROW, 4, reason or "", f["remark"])
    ws.merge_range(DECLARE_ROW, 5, DECLARE_ROW, last_col, prompt, f["note"])
    ws.set_row(DECLARE_ROW, 30)


def _summary(ws, f, spec: FormSpec, names: list[str], ranges: list[tuple[int, int]]) -> None:
    columns = ("编号", "名称", "已填项数", "指标项数", "合计", "满分", "状态")
    for c, w in enumerate((10, 30, 10, 10, 10, 8, 16)):
        ws.set_column(c, c, w)
    ws.write_row(0, 0, columns, f["head"])
    n_items = len(spec.system.items)
    for r, (subject, name, (first, last)) in enumerate(zip(spec.subjects, names, ranges), start=1):
        scores = f"{quote_sheet(name)}!$G${first + 1}:$G${last + 1}"
        ws.write_string(r, 0, subject.code, f["center"])
        ws.write_string(r, 1, subject.name, f["cell"])
        ws.write_formula(r, 2, f"=COUNT({scores})", f["max"], 0)
        ws.write_number(r, 3, n_items, f["max"])
        ws.write_formula(r, 4, f"=SUM({scores})", f["max"], 0)
        ws.write_number(r, 5, spec.system.total, f["max"])
        ws.write_formula(r, 6, f'=IF(C{r + 1}=D{r + 1},"已完成","还差"&(D{r + 1}-C{r + 1})&"项")', f["center"],
                         f"还差{n_items}项")  # the value on an empty form, as above
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(len(names), 1), len(columns) - 1)
    ws.conditional_format(1, 6, len(names), 6, {"type": "text", "criteria": "begins with", "value": "还差",
                                                 "format": f["pending"]})
    ws.protect("", {"autofilter": True, "sort": True})
    ws.set_paper(9)
    ws.fit_to_pages(1, 0)
    ws.repeat_rows(0)


def plan_forms(ws: Workspace, system: System, period: str, roster: Roster, out_dir: Path | None = None,
               office_key: bytes | None = None, kind: str = EXPERT,
               shown_self: dict | None = None) -> list[FormSpec]:
    """The forms of one round (`period` is its key, e.g. 2026-11 or 2027-03-遴选): one per
    assessor with subjects of this system assigned; with kind "self", one per subject of the
    system's type, in the round's forms folder's 自评/ sub-folder. `shown_self` (subject -> item ->
    (自评分, 佐证材料), from `Ledger.self_scores`) adds the read-only self columns to expert forms.
    Forms are sealed with the office key (`office_key`, or the workspace's own, created when it
    has none: see pipeline.officekey)."""
    office_key = office_key or ensure_key(ws)[0]
    key = period
    period, stage = split_key(check_key(key))
    rnd = ws["round"]
    deadline = ws.deadline(key).strftime("%Y-%m-%d")
    if kind == SELF:
        out_dir = Path(out_dir) if out_dir else ws.forms_dir(key, system.id) / SELF_DIR
        specs = [FormSpec(path=out_dir / self_form_filename(period, system, subject, stage), system=system,
                          period=period, assessor=Assessor(subject.code, SELF_ASSESSOR), stage=stage,
                          subjects=(subject,), organiser=rnd["organiser"], contact=rnd["contact"],
                          deadline=deadline, kind=SELF, key=office_key)
                 for subject in roster.subjects.values() if subject.type == system.subject_type]
        if not specs:
            raise UsageError(_("No subject of type {type} is in the roster.").format(type=system.subject_type))
        return specs
    out_dir = Path(out_dir) if out_dir else ws.forms_dir(key, system.id)
    share = float(ws["forms"]["reason_below_share"])
    specs = []
    for code, subject_codes in roster.assignments(system.subject_type).items():
        assessor = roster.assessors[code]
        specs.append(FormSpec(
            path=out_dir / form_filename(period, system, assessor, stage),
            system=system, period=period, assessor=assessor, stage=stage,
            subjects=tuple(roster.subjects[s] for s in subject_codes),
            organiser=rnd["organiser"], contact=rnd["contact"], deadline=deadline, key=office_key,
            shown_self=shown_self or None, reason_share=share,
        ))
    if not specs:
        raise UsageError(_("No subject of type {type} is assigned to anyone in the roster.").format(type=system.subject_type))
    return specs


def shown_self_scores(ledger, period: str, system_id: str) -> dict | None:
    """The round's self-assessments as expert forms show them: subject -> item -> (自评分, 佐证材料);
    None when none is in the ledger (the expert forms are then exactly as before)."""
    frame = ledger.self_scores(period, system_id)
    if not len(frame):
        return None
    out: dict = {}
    for row in frame.itertuples():
        out.setdefault(row.subject, {})[row.item] = (float(row.score), row.evidence or "")
    return out


def existing_form_id(path: Path) -> str | None:
    """The form_id in the metadata of a form on disk (None when it cannot be read or has none)."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True)
        try:
            rows = book[META_SHEET].iter_rows(max_col=2, values_only=True)
            return next((str(v) for k, v in rows if k == "form_id"), None)
        finally:
            book.close()
    except Exception:  # noqa: BLE001 - any unreadable form counts as changed
        return None


def spec_form_id(spec: FormSpec) -> str:
    return form_id(spec.system, spec.period, spec.assessor.code, [s.code for s in spec.subjects], spec.stage, spec.kind)


def write_forms(specs: list[FormSpec], *, force: bool = False, update: bool = False, workers: int = 1,
                progress: Callable[[int], None] | None = None) -> FormsResult:
    """Write every form; refuse to replace forms that exist unless `force`. With `update`, a form
    already there for the same subjects (the same form_id) is left as it is — it may have gone
    out — and only new forms and forms whose subjects changed (e.g. a replacement assessor's,
    after `assign --replace-declared`) are written."""
    unchanged, changed = [], []
    if update:
        kept = []
        for spec in specs:
            if spec.path.exists():
                if existing_form_id(spec.path) == spec_form_id(spec):
                    unchanged.append(spec.path)
                    if progress:
                        progress(1)
                    continue
                changed.append(spec.path)
            kept.append(spec)
        result = write_forms(kept, force=True, workers=workers, progress=progress) if kept else None
        out_dir = specs[0].path.parent
        return FormsResult(out_dir, result.paths if result else [], result.subjects if result else 0, unchanged, changed)
    existing = [s.path for s in specs if s.path.exists()]
    if existing and not force:
        listing = "\n".join(f"  {p}" for p in existing[:20]) + ("\n  …" if len(existing) > 20 else "")
        raise UsageError(_("{n} form(s) of this round exist already and may have gone out; pass --force to replace them:")
                         .format(n=len(existing)) + "\n" + listing)
    paths: list[Path] = []
    if workers > 1 and len(specs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for path in pool.map(write_form, specs, chunksize=max(1, len(specs) // (workers * 4))):
                paths.append(path)
                if progress:
                    progress(1)
    else:
        for spec in specs:
            paths.append(write_form(spec))
            if progress:
                progress(1)
    return FormsResult(specs[0].path.parent, paths, sum(len(s.subjects) for s in specs))
