"""Problem letters: what each assessor still owes in a round, in words to paste into WeChat or an e-mail.

For every assessor who owes something (a subject with no accepted sheet: not received, rejected
or in conflict) one plain-text letter `<评估人编号>-<姓名>.txt` (UTF-8, from `templates/letter.txt`)
and one sheet of `letters.xlsx` (after an overview sheet): the subjects still missing by 编号 and
名称, every open problem with file, sheet, cell, the value found and what to enter instead (the
catalogue's message, as stored in the ledger), reminders (warnings on sheets that count), the
round's deadline, the office's contact and organiser. Which problems are open is decided by
`status.round_status`: a problem fixed by a later return is not in a letter.

A folder of letters is rewritten whole: a letter of an earlier run that is not written again
(its assessor owes nothing now) is removed. Only files listed in the folder's manifest
(`.happyhome-letters.json`, written by this module) are ever removed; other files are left alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

import jinja2
import xlsxwriter

from pipeline.atomic import atomic_path, check_writable, write_text
from pipeline.config import Workspace
from pipeline.messages import Problem
from pipeline.names import safe_filename, safe_sheet_name
from pipeline.notices import chinese_date
from pipeline.rounds import SUPERVISION, split_key
from pipeline.status import CONFLICT, NOT_RECEIVED, REJECTED, Missing, StatusResult

BOOK_NAME = "letters.xlsx"
MANIFEST = ".happyhome-letters.json"
TEMPLATE = "letter.txt"
OVERVIEW_SHEET = "总览"
OVERVIEW_COLUMNS = ("评估人编号", "姓名", "单位", "联系方式", "未收到评分的对象数", "需修改的问题数", "提醒数", "信件文件", "工作表")
LETTER_COLUMNS = ("类别", "评估对象", "文件", "工作表", "单元格", "填写值", "问题及修改方法")
KIND_MISSING, KIND_FIX, KIND_CONFLICT, KIND_FILE, KIND_REMINDER = "未收到", "需修改", "冲突", "文件问题", "提醒"
WEEKDAYS = "一二三四五六日"


@dataclass
class Letter:
    """One assessor's letter, as data: what is missing, what to correct, by when, whom to ask."""

    assessor: str
    name: str
    org: str
    assessor_contact: str
    system: str  # the indicator system's name
    period: str
    deadline: datetime
    missing: list[Missing]
    file_problems: list[Problem]
    reminders: list[Problem]
    contact: str  # the office's ([round] contact)
    organiser: str
    today: date

    @property
    def filename(self) -> str:
        return safe_filename(f"{self.assessor}-{self.name}") + ".txt"

    @property
    def round_title(self) -> str:
        """2026-11 创新实践社区评价指标体系督导评分 (the stage of the round: 遴选评分 for 2027-03-遴选)."""
        period, stage = split_key(self.period) or (self.period, SUPERVISION)
        return f"{period} {self.system}{stage}评分"

    @property
    def to_fix(self) -> list[Problem]:
        """Every open problem, in the order of the missing subjects, then those of whole files."""
        return [p for m in self.missing for p in m.problems] + self.file_problems

    @property
    def overdue(self) -> bool:
        return self.today > self.deadline.date()

    @property
    def opening(self) -> str:
        """The first paragraph: the round, and by when to send what."""
        ask = "修改后发送" if self.to_fix else "发送"
        when = (f"本期截止日期为 {day(self.deadline)}，现已过期，请尽快{ask}。" if self.overdue
                else f"请于 {day(self.deadline)}前{ask}。")
        returned = self.file_problems or self.reminders or any(m.reason != NOT_RECEIVED for m in self.missing)
        found = "核对您发回的评分表后，以下事项还需要您处理。" if returned else "截至目前，我们还没有收到您以下评估对象的评分。"
        return f"感谢您承担 {self.round_title}工作。{found}{when}"


@dataclass
class LettersResult:
    folder: Path
    letters: list[Letter]
    paths: list[Path]  # the text letters
    book: Path
    removed: list[Path] = field(default_factory=list)  # letters of an earlier run no longer owed


def plan_letters(ws: Workspace, status: StatusResult, today: date | None = None) -> list[Letter]:
    """The letters of a round: one per assessor who owes something, none for the others."""
    rnd = ws["round"]
    today = today or date.today()
    return [Letter(a.code, a.name, a.org, a.contact, status.system.name, status.period, status.deadline,
                   a.missing, a.file_problems, a.reminders, rnd["contact"], rnd["organiser"], today)
            for a in status.assessors if a.owes]


def where(p: Problem) -> str:
    """A problem as one line of a letter: 文件 X，工作表 Y，单元格 G7：填写的是“abc”。<what to do>"""
    place = "，".join(f"{label} {value}" for label, value in (("文件", p.file), ("工作表", p.sheet), ("单元格", p.cell))
                     if value)
    found = f"填写的是“{p.value}”。" if p.cell and p.value and p.value not in p.message else ""
    return f"{place}：{found}{p.message}" if place else f"{found}{p.message}"


def day(when: datetime | date) -> str:
    """2026年11月25日（星期三）"""
    return f"{chinese_date(when)}（星期{WEEKDAYS[when.weekday()]}）"


@lru_cache(maxsize=1)
def text_environment() -> jinja2.Environment:
    """Plain text: no escaping (a letter is not HTML); the templates of the HTML pages' folders."""
    from pipeline.digest import template_dirs

    dirs = template_dirs()
    if not dirs:
        raise RuntimeError("happyhome's templates are missing: the installation is incomplete")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([str(d) for d in dirs]), autoescape=False,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters.update(where=where, day=day)
    return env


def render_letter(letter: Letter) -> str:
    """The text of one letter (templates/letter.txt)."""
    return text_environment().get_template(TEMPLATE).render(
        letter=letter, NOT_RECEIVED=NOT_RECEIVED, REJECTED=REJECTED, CONFLICT=CONFLICT)


def write_letters(letters: list[Letter], folder: str | Path) -> LettersResult:
    """Write the text letters and letters.xlsx into `folder`, each atomically; remove this tool's
    letters of an earlier run that are not written again."""
    folder = Path(folder)
    check_writable(folder)
    paths, names = [], set()
    for letter in letters:
        name = letter.filename
        if name in names:  # two roster rows with the same 编号 and 姓名 cannot be, but never overwrite
            name = f"{Path(name).stem}-{len(names) + 1}.txt"
        names.add(name)
        paths.append(write_text(folder / name, render_letter(letter)))
    book = write_letters_book(letters, [p.name for p in paths], folder / BOOK_NAME)
    removed = []
    for old in _manifest(folder):
        if old not in names and old != BOOK_NAME and (folder / old).is_file():
            (folder / old).unlink()
            removed.append(folder / old)
    write_text(folder / MANIFEST, json.dumps({"written_by": "happyhome status --letters",
                                              "files": sorted(names | {BOOK_NAME})}, ensure_ascii=False, indent=1))
    return LettersResult(folder, letters, paths, book, removed)


def _manifest(folder: Path) -> list[str]:
    """The letters an earlier run wrote here: plain .txt names only, so a damaged or hand-edited
    manifest can never point outside the folder or at another kind of file."""
    try:
        listed = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [n for n in listed if isinstance(n, str) and n.endswith(".txt") and Path(n).name == n
            and not n.startswith(".") and "/" not in n and "\\" not in n]


def letter_rows(letter: Letter) -> list[tuple[str, ...]]:
    """The table of one letter's sheet, in LETTER_COLUMNS order."""
    rows = []
    for m in letter.missing:
        subject = f"{m.subject} {m.name}"
        kind = KIND_CONFLICT if m.reason == CONFLICT else KIND_FIX
        rows += [(kind, subject, p.file, p.sheet, p.cell, p.value, p.message) for p in m.problems]
        if not m.problems:
            rows.append((KIND_MISSING, subject, "", "", "", "", m.reason if m.reason != NOT_RECEIVED else
                         "尚未收到该对象的评分，请填写后发送。"))
    rows += [(KIND_FILE, "", p.file, p.sheet, p.cell, p.value, p.message) for p in letter.file_problems]
    rows += [(KIND_REMINDER, "", p.file, p.sheet, p.cell, p.value, p.message) for p in letter.reminders]
    return rows


def write_letters_book(letters: list[Letter], files: list[str], path: Path) -> Path:
    """letters.xlsx: an overview sheet, then one sheet per letter laid out to read and print (A4)."""
    with atomic_path(path) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                              "strings_to_numbers": False})
        title = f"{letters[0].round_title} 待办事项" if letters else "待办事项"
        book.set_properties({"title": title, "comments": "happyhome"})
        f = {
            "head": book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "valign": "vcenter",
                                     "text_wrap": True}),
            "cell": book.add_format({"num_format": "@", "text_wrap": True, "valign": "top", "border": 1}),
            "greet": book.add_format({"bold": True, "font_size": 14}),
            "para": book.add_format({"text_wrap": True, "valign": "top"}),
            "bold": book.add_format({"bold": True, "text_wrap": True, "valign": "top"}),
            "link": book.add_format({"font_color": "blue", "underline": 1, "border": 1, "valign": "top"}),
            "num": book.add_format({"border": 1, "valign": "top"}),
        }
        taken = {OVERVIEW_SHEET}
        sheets = [safe_sheet_name(f"{letter.assessor} {letter.name}", taken) for letter in letters]
        _overview(book, f, letters, files, sheets)
        for letter, sheet in zip(letters, sheets):
            _letter_sheet(book, f, letter, sheet)
        book.close()
    return path


def _print_setup(sheet, header_row: int) -> None:
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.fit_to_pages(1, 0)
    sheet.repeat_rows(header_row)
    sheet.set_margins(left=0.5, right=0.5, top=0.6, bottom=0.6)


def _overview(book, f, letters: list[Letter], files: list[str], sheets: list[str]) -> None:
    ws = book.add_worksheet(OVERVIEW_SHEET)
    for c, width in enumerate((10, 10, 24, 22, 10, 10, 8, 24, 20)):
        ws.set_column(c, c, width)
    ws.set_row(0, 30)
    ws.write_row(0, 0, OVERVIEW_COLUMNS, f["head"])
    for r, (letter, name, sheet) in enumerate(zip(letters, files, sheets), start=1):
        for c, value in enumerate((letter.assessor, letter.name, letter.org, letter.assessor_contact)):
            ws.write_string(r, c, value, f["cell"])
        ws.write_number(r, 4, len(letter.missing), f["num"])
        ws.write_number(r, 5, len(letter.to_fix), f["num"])
        ws.write_number(r, 6, len(letter.reminders), f["num"])
        ws.write_string(r, 7, name, f["cell"])
        ws.write_url(r, 8, f"internal:'{sheet}'!A1", f["link"], string=sheet)
    if not letters:
        ws.write_string(1, 0, "本期没有需要催收的评估人。", f["para"])
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(len(letters), 1), len(OVERVIEW_COLUMNS) - 1)
    _print_setup(ws, 0)
    ws.activate()


def _letter_sheet(book, f, letter: Letter, name: str) -> None:
    ws = book.add_worksheet(name)
    widths = (10, 24, 30, 22, 8, 14, 60)
    for c, width in enumerate(widths):
        ws.set_column(c, c, width)
    last = len(widths) - 1
    lines = [
        (f"{letter.name}老师：您好！", f["greet"], 22),
        (letter.opening, f["para"], 36),
        ("    ".join([f"截止日期：{letter.deadline:%Y-%m-%d}"] + ([f"联系方式：{letter.contact}"] if letter.contact else [])),
         f["bold"], 20),
    ]
    for r, (text, style, height) in enumerate(lines):
        ws.merge_range(r, 0, r, last, text, style)
        ws.set_row(r, height)
    header = len(lines) + 1
    ws.write_row(header, 0, LETTER_COLUMNS, f["head"])
    rows = letter_rows(letter)
    for r, row in enumerate(rows, start=header + 1):
        for c, value in enumerate(row):
            ws.write_string(r, c, value, f["cell"])
        ws.set_row(r, 15 * max(1, -(-len(row[-1]) // 30), -(-len(row[2]) // 14)))  # wrapped lines, not auto-fit
    r = header + len(rows) + 2
    closing = [f"如有疑问，请联系：{letter.contact}" if letter.contact else "如有疑问，请与我们联系。",
               "感谢您的支持与配合！", letter.organiser, chinese_date(letter.today)]
    for text in closing:
        if text:
            ws.merge_range(r, 0, r, last, text, f["para"])
            r += 1
    ws.freeze_panes(header + 1, 0)
    _print_setup(ws, header)
