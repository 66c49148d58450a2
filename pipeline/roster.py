"""The roster workbook: subjects (评估对象), assessors (评估人) and who rates whom (分配).

For 遴选 rounds two optional additions: a 否决 column in 评估对象 (a reason, e.g. a serious
incident, that vetoes the subject), and a sheet 名额 (类型 | 省份 | 名额) capping how many subjects
of a type one province may have selected. Rosters without them read as before.

Every problem in a roster is collected and reported together, each with its sheet and row,
and nothing is generated from a roster that has any.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InputError
from pipeline.i18n import _
from pipeline.reader import Limits, UnreadableFile, read_workbook
from pipeline.messages import CATALOGUE

SUBJECTS, ASSESSORS, ASSIGNMENTS, QUOTAS, CONFLICTS = "评估对象", "评估人", "分配", "名额", "回避"
VETO_COLUMN = "否决"
QUOTA_COLUMNS = ("类型", "省份", "名额")
SUBJECT_COLUMNS = ("编号", "名称", "类型", "省份", "城市", "区县")
ASSESSOR_COLUMNS = ("编号", "姓名", "单位", "联系方式")
ASSESSOR_PLACE = ("省份", "城市", "区县")  # optional: where the assessor works or lives (happyhome assign)
EMAIL_COLUMN = "邮箱"  # optional: where happyhome send mails the assessor's form
EMAIL_RE = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+$")
CONFLICT_COLUMNS = ("评估人编号", "评估对象编号", "原因")
ASSIGNMENT_COLUMNS = ("评估人编号", "评估对象编号")
# An optional third column of 分配: 已替换 marks a pair whose assessor was released from it by
# `assign --replace` (kept as a record, not rated). An assessor whose rows are all 已替换 stays in
# 评估人 with nothing to rate in that system: not a roster problem, and no form, no chasing.
ASSIGNMENT_STATE, RELEASED = "状态", "已替换"
REQUIRED = {SUBJECTS: ("编号", "名称", "类型"), ASSESSORS: ("编号", "姓名"), ASSIGNMENTS: ASSIGNMENT_COLUMNS,
            QUOTAS: QUOTA_COLUMNS, CONFLICTS: ASSIGNMENT_COLUMNS}
TYPES = ("创新实践区", "创新实践社区")


@dataclass(frozen=True)
class Subject:
    code: str
    name: str
    type: str
    province: str = ""
    city: str = ""
    county: str = ""
    veto: str = ""  # the roster's 否决 reason ("" = none)


@dataclass(frozen=True)
class Assessor:
    code: str
    name: str
    org: str = ""
    contact: str = ""
    province: str = ""
    city: str = ""
    county: str = ""
    email: str = ""  # the 邮箱 column, when the roster has one


@dataclass
class Roster:
    subjects: dict[str, Subject]
    assessors: dict[str, Assessor]
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (assessor, subject) from 分配
    quotas: dict[tuple[str, str], int] = field(default_factory=dict)  # (类型, 省份) -> places, from 名额
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)  # (assessor, subject) -> 原因, from 回避
    released: list[tuple[str, str]] = field(default_factory=list)  # 分配 rows marked 已替换 (not rated)

    def assignments(self, subject_type: str) -> dict[str, list[str]]:
        """Assessor code -> subject codes of this type they rate, in roster order.

        With no 分配 rows, every assessor rates every subject of the type.
        """
        of_type = [code for code, s in self.subjects.items() if s.type == subject_type]
        if not self.pairs:
            return {a: list(of_type) for a in self.assessors} if of_type else {}
        wanted = set(of_type)
        out: dict[str, list[str]] = {}
        for assessor, subject in self.pairs:
            if subject in wanted:
                out.setdefault(assessor, []).append(subject)
        return {a: out[a] for a in self.assessors if a in out}

    def is_self(self, code: object) -> bool:
        """Whether a file's or sheet's assessor code is a subject's own, i.e. a self-assessment
        (the subject is its own assessor): a subject's code that is no assessor's."""
        return code in self.subjects and code not in self.assessors


def clean(value: object) -> str:
    """A cell as text: numbers that are whole lose their '.0', spaces are trimmed."""
    if value.__class__ is str:  # most of a roster's cells, first
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _table(rows: list[list], sheet: str, problems: list[str]) -> tuple[dict[str, int], list[tuple[int, list[str]]]]:
    """Header columns by name and the non-blank data rows (with 1-based row numbers)."""
    for index, row in enumerate(rows):
        cells = [clean(v) for v in row]
        if any(cells):
            header = {name: col for col, name in reversed(list(enumerate(cells))) if name}
            missing = [c for c in REQUIRED[sheet] if c not in header]
            if missing:
                problems.append(f"工作表“{sheet}”第 {index + 1} 行：缺少列 {'、'.join(missing)}")
            # clean() inline for text, most of a roster's cells
            data = [(n + 1, [v.strip() if v.__class__ is str else clean(v) for v in r])
                    for n, r in enumerate(rows) if n > index]
            return header, [(n, r) for n, r in data if any(r)]
    problems.append(f"工作表“{sheet}”：没有表头行")
    return {}, []


def read_roster(path: str | Path, known_types: tuple[str, ...] = TYPES) -> Roster:
    """Read and check a roster workbook (raises InputError listing every problem)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(_("Roster not found: {path} (happyhome init makes an example roster).").format(path=path))
    try:
        book = read_workbook(path, Limits(max_rows=200_000))
    except UnreadableFile as err:
        raise InputError(_("{path}: cannot read the roster: {reason}").format(
            path=path, reason=CATALOGUE[err.code][1].format(detail=err.detail))) from err
    problems: list[str] = []
    tables = {}
    for name in (SUBJECTS, ASSESSORS, ASSIGNMENTS, QUOTAS, CONFLICTS):
        sheet = book.sheet(name)
        if sheet is None:
            if name not in (ASSIGNMENTS, QUOTAS, CONFLICTS):
                problems.append(f"缺少工作表“{name}”")
            continue
        if sheet.error:
            problems.append(f"工作表“{name}”无法读取（{sheet.error}）")
            continue
        tables[name] = _table(sheet.rows, name, problems)
    if problems:
        _fail(path, problems)

    def get(row: list[str], header: dict[str, int], column: str) -> str:
        col = header.get(column)
        return row[col] if col is not None and col < len(row) else ""

    def records(sheet: str, columns: tuple[str, ...], name_column: str):
        """Rows with a unique, non-empty 编号, as dicts; every other row becomes a problem."""
        header, rows = tables[sheet]
        first_seen: dict[str, int] = {}
        folded: dict[str, tuple[str, int]] = {}  # casefolded 编号 -> (as written, row)
        where_is = [(c, header.get(c)) for c in columns]  # each column's position, looked up once
        for n, row in rows:
            values = {c: row[i] if i is not None and i < len(row) else "" for c, i in where_is}
            code, where = values["编号"], f"工作表“{sheet}”第 {n} 行"
            if not code:
                problems.append(f"{where}：编号为空")
            elif code in first_seen:
                problems.append(f"{where}：编号 {code} 重复（第一次出现在第 {first_seen[code]} 行）")
            elif code.casefold() in folded:
                # c005 and C005 look like one subject to a person and to file systems that ignore case.
                other, at = folded[code.casefold()]
                problems.append(f"{where}：编号 {code} 与第 {at} 行的 {other} 只有大小写不同，请统一写法")
            else:
                first_seen[code] = n
                folded[code.casefold()] = (code, n)
                if not values[name_column]:
                    problems.append(f"{where}：{name_column}为空")
                yield where, values

    subjects: dict[str, Subject] = {}
    for where, values in records(SUBJECTS, (*SUBJECT_COLUMNS, VETO_COLUMN), "名称"):
        if values["类型"] not in known_types:
            problems.append(f"{where}：类型应为 {' 或 '.join(known_types)}，实际为“{values['类型']}”")
        subjects[values["编号"]] = Subject(*(values[c] for c in SUBJECT_COLUMNS), veto=values[VETO_COLUMN])
    assessors: dict[str, Assessor] = {}
    for where, values in records(ASSESSORS, (*ASSESSOR_COLUMNS, *ASSESSOR_PLACE, EMAIL_COLUMN), "姓名"):
        email = values[EMAIL_COLUMN]
        if email and not EMAIL_RE.match(email):  # blank is fine: that assessor is listed by send, not mailed
            problems.append(f"{where}：邮箱“{email}”不是有效的电子邮件地址")
        assessors[values["编号"]] = Assessor(*(values[c] for c in (*ASSESSOR_COLUMNS, *ASSESSOR_PLACE)), email=email)

    pairs: list[tuple[str, str]] = []
    released: list[tuple[str, str]] = []
    if ASSIGNMENTS in tables:
        header, rows = tables[ASSIGNMENTS]
        seen_pairs: dict[tuple[str, str, bool], int] = {}
        # A province's roster has tens of thousands of these rows: the columns are looked up once,
        # and a row's place is spelled out only for a problem.
        a_col, s_col, state_col = (header.get(c) for c in ("评估人编号", "评估对象编号", ASSIGNMENT_STATE))
        for n, row in rows:
            width = len(row)
            assessor = row[a_col] if a_col is not None and a_col < width else ""
            subject = row[s_col] if s_col is not None and s_col < width else ""
            state = row[state_col] if state_col is not None and state_col < width else ""
            key = (assessor, subject, state == RELEASED)
            if assessor not in assessors or subject not in subjects or state not in ("", RELEASED) or key in seen_pairs:
                where = f"工作表“{ASSIGNMENTS}”第 {n} 行"
                if assessor not in assessors:
                    problems.append(f"{where}：评估人编号“{assessor}”不在工作表“{ASSESSORS}”中")
                if subject not in subjects:
                    problems.append(f"{where}：评估对象编号“{subject}”不在工作表“{SUBJECTS}”中")
                if state not in ("", RELEASED):
                    problems.append(f"{where}：{ASSIGNMENT_STATE}应为空或“{RELEASED}”，实际为“{state}”")
                if key in seen_pairs:
                    problems.append(f"{where}：同一分配重复列出（第一次出现在第 {seen_pairs[key]} 行）")
                    continue
            seen_pairs[key] = n
            (released if state == RELEASED else pairs).append((assessor, subject))
        released = [p for p in released if p not in set(pairs)]  # given back to the assessor later
        if pairs:
            busy = {a for a, _ in pairs} | {a for a, _ in released}
            for code in assessors:
                if code not in busy:
                    problems.append(f"工作表“{ASSIGNMENTS}”：评估人 {code}（{assessors[code].name}）没有分配任何评估对象")
    quotas = _quotas(tables.get(QUOTAS), known_types, problems, get)
    conflicts: dict[tuple[str, str], str] = {}
    if CONFLICTS in tables:
        header, rows = tables[CONFLICTS]
        for n, row in rows:
            assessor, subject, reason = (get(row, header, c) for c in CONFLICT_COLUMNS)
            where = f"工作表“{CONFLICTS}”第 {n} 行"
            if assessor not in assessors:
                problems.append(f"{where}：评估人编号“{assessor}”不在工作表“{ASSESSORS}”中")
            if subject not in subjects:
                problems.append(f"{where}：评估对象编号“{subject}”不在工作表“{SUBJECTS}”中")
            conflicts.setdefault((assessor, subject), reason)
    if not subjects:
        problems.append(f"工作表“{SUBJECTS}”：没有评估对象")
    if not assessors:
        problems.append(f"工作表“{ASSESSORS}”：没有评估人")
    if problems:
        _fail(path, problems)
    return Roster(subjects, assessors, pairs, quotas, conflicts, released)


def _quotas(table, known_types: tuple[str, ...], problems: list[str], get) -> dict[tuple[str, str], int]:
    """The optional 名额 sheet: (类型, 省份) -> how many of that type the province may have selected."""
    if table is None:
        return {}
    header, rows = table
    quotas: dict[tuple[str, str], int] = {}
    first: dict[tuple[str, str], int] = {}
    for n, row in rows:
        kind, province, text = (get(row, header, c) for c in QUOTA_COLUMNS)
        where = f"工作表“{QUOTAS}”第 {n} 行"
        if kind not in known_types:
            problems.append(f"{where}：类型应为 {' 或 '.join(known_types)}，实际为“{kind}”")
        if not province:
            problems.append(f"{where}：省份为空")
        try:
            value = float(text)
            places = int(value) if value.is_integer() and value >= 0 else -1
        except ValueError:
            places = -1
        if places < 0:
            problems.append(f"{where}：名额应为不小于 0 的整数，实际为“{text}”")
        if (kind, province) in first:
            problems.append(f"{where}：{province}的{kind}名额重复列出（第一次出现在第 {first[kind, province]} 行）")
            continue
        first[kind, province] = n
        if places >= 0:
            quotas[kind, province] = places
    return quotas


def read_roster_for(path: str | Path, system) -> Roster:
    """The roster for one system: the built-in 类型 and that system's own are accepted."""
    return read_roster(path, known_types=tuple(dict.fromkeys((*TYPES, system.subject_type))))


def _fail(path: Path, problems: list[str]) -> None:
    listing = "\n".join(f"  - {p}" for p in problems)
    raise InputError(_("{path}: the roster has {n} problem(s); no file was written:").format(path=path, n=len(problems))
                     + "\n" + listing)


EXAMPLE_SUBJECTS = [
    ("Z01", "杭州市上城区", "创新实践区", "浙江省", "杭州市", "上城区"),
    ("Z02", "成都市武侯区", "创新实践区", "四川省", "成都市", "武侯区"),
    ("C001", "湖滨街道东坡路社区", "创新实践社区", "浙江省", "杭州市", "上城区"),
    ("C002", "玉林街道黉门街社区", "创新实践社区", "四川省", "成都市", "武侯区"),
    ("C003", "南湖街道南湖社区", "创新实践社区", "湖北省", "武汉市", "洪山区"),
]
EXAMPLE_ASSESSORS = [
    ("E01", "张敏", "浙江工业大学", "13800000001"),
    ("E02", "李强", "四川大学社会发展学院", "13800000002"),
    ("E03", "王芳", "武汉市社会工作联合会", "wangfang@example.org"),
]
EXAMPLE_PAIRS = [(a, s) for a in ("E01", "E02", "E03") for s in ("Z01", "Z02", "C001", "C002", "C003")]


def write_roster(
    path: str | Path,
    subjects=EXAMPLE_SUBJECTS,
    assessors=EXAMPLE_ASSESSORS,
    pairs=EXAMPLE_PAIRS,
    quotas=None,
    conflicts=None,
    emails: dict[str, str] | None = None,
) -> Path:
    """Write a roster workbook with its own data validation (an example unless rows are given).

    Subject rows of seven values carry a 否决 reason (the column is written only then); `quotas`,
    rows of (类型, 省份, 名额), adds the 名额 sheet of a 遴选 round. Assessor rows of seven values
    carry 省份, 城市, 区县, of eight also 邮箱; `emails` (编号 -> address) adds the 邮箱 column to rows
    without one; `conflicts`, rows of (评估人编号, 评估对象编号, 原因), adds the 回避 sheet.
    """
    import xlsxwriter  # here: reading a roster (every collect) never needs it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = xlsxwriter.Workbook(str(path))
    head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
    text = book.add_format({"num_format": "@"})

    def sheet(name, columns, rows, widths, prompt):
        ws = book.add_worksheet(name)
        ws.write_row(0, 0, columns, head)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row):
                ws.write_string(r, c, str(value), text)
        for c, width in enumerate(widths):
            ws.set_column(c, c, width, text)
        ws.freeze_panes(1, 0)
        ws.autofilter(0, 0, max(len(rows), 1), len(columns) - 1)
        ws.data_validation(1, 0, 5000, 0, {"validate": "length", "criteria": ">", "value": 0,
                                           "input_title": "编号", "input_message": prompt})
        return ws

    vetoes = any(len(row) > len(SUBJECT_COLUMNS) for row in subjects)
    columns = (*SUBJECT_COLUMNS, VETO_COLUMN) if vetoes else SUBJECT_COLUMNS
    subjects = [tuple(row) + ("",) * (len(columns) - len(row)) for row in subjects]
    ws = sheet(SUBJECTS, columns, subjects, (10, 28, 14, 10, 10, 10, 36), "每个评估对象一个唯一编号")
    ws.data_validation(1, 2, 5000, 2, {"validate": "list", "source": list(TYPES),
                                       "error_title": "类型", "error_message": "请从下拉列表中选择：创新实践区 或 创新实践社区"})
    places = any(len(row) > len(ASSESSOR_COLUMNS) for row in assessors)
    columns = (*ASSESSOR_COLUMNS, *ASSESSOR_PLACE) if places else ASSESSOR_COLUMNS
    if emails is not None:
        assessors = [tuple(row) + ("",) * (len(columns) - len(row)) + (emails.get(row[0], ""),) for row in assessors]
    if any(len(row) > len(columns) for row in assessors):
        columns = (*columns, EMAIL_COLUMN)
    assessors = [tuple(row) + ("",) * (len(columns) - len(row)) for row in assessors]
    sheet(ASSESSORS, columns, assessors, (10, 12, 28, 24, 10, 10, 10, 28), "每位评估人一个唯一编号")
    ws = sheet(ASSIGNMENTS, ASSIGNMENT_COLUMNS, pairs, (12, 14), "评估人编号，须在“评估人”表中")
    n_a, n_s = len(assessors) + 1, len(subjects) + 1
    for col, (other, n) in enumerate(((ASSESSORS, n_a), (SUBJECTS, n_s))):
        ws.data_validation(1, col, 50000, col, {"validate": "list", "source": f"='{other}'!$A$2:$A${max(n, 2)}",
                                                "error_message": f"编号须在“{other}”表中"})
    ws.write_string(0, 3, "说明：本表为空时，每位评估人评估全部对象。")
    if quotas is not None:
        ws = sheet(QUOTAS, QUOTA_COLUMNS, [(k, p, str(n)) for k, p, n in quotas], (14, 14, 8), "评估对象的类型")
        ws.write_string(0, 4, "说明：遴选时每个省份该类型最多入选的个数；未列出的省份不限。")
    if conflicts is not None:
        ws = sheet(CONFLICTS, CONFLICT_COLUMNS, conflicts, (12, 14, 30), "评估人编号，须在“评估人”表中")
        ws.write_string(0, 4, "说明：列出的评估人不评估该评估对象（happyhome assign 遵守）。")
    book.close()
    return path
