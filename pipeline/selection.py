"""遴选: who is selected from a 遴选 round's ranking — places, quotas, 一票否决, ties, 公示.

`report --stage 遴选` calls `select` on the round's scores and writes its results: the sheet
遴选结果 in the summary workbook, a section of the digest, and the 公示 list
(公示名单-<system>.xlsx and .docx, worded by templates/publicity.txt).

The rule, in order (the README's "遴选" says the same):

1. **Order.** Rated subjects are ordered by total, compared at ``scoring.rank_decimals`` (the
   official total, rounded half-up once). Equal totals are ordered by ``selection.tie_break`` —
   一级指标, 二级指标 or item codes, each its official rounded aggregate — compared in turn,
   higher first. Subjects equal on all of these are one tied group: they share a 排名 (1, 2, 2, 4)
   and nothing, least of all code order, decides between them.
2. **一票否决.** A subject is 否决 when an item's aggregate is below ``below_share`` of the item's
   满分 (``[[selection.veto]]``) or its roster row has a reason in the 否决 column. It keeps its
   排名 and is shown, never selected; 说明 names the rule or the reason.
3. **Unrated** subjects (no accepted sheet) are 未入选, 说明 未评分.
4. **The walk.** Down the order, group by group, with ``selection.places`` places and each
   province's quota for the type (roster sheet 名额; provinces not listed have none):
   - a subject whose province's quota is already full is 候补 (reserve), 说明 “所在省份名额已满”,
     as long as places are left (below the line it would not have been selected anyway: 未入选);
   - a group that fits the places left (and no province in it needs more than its quota left)
     is 入选;
   - a group with more members than places left is 并列 as a whole — listed with the places left,
     for the office to decide — and no one below it is selected: the places left are the
     group's. When the places suffice but a province in the group has fewer quota places left
     than members, the others are 入选 and that province's members 并列 for its quota places.
   - when the places are gone, everyone below is 未入选.
5. **The list** (sheet, digest) shows 入选 and 并列 in 排名 order, then the selection line, then
   the reserve list (候补) in 排名 order — they are who moves up if a selected subject drops out —
   then 未入选 and 否决 in 排名 order, then the unrated.

The 公示 period runs for ``selection.publicity_days`` working days from the day after the
report date: Saturdays and Sundays are skipped; public holidays are not known to happyhome.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.errors import ConfigError
from pipeline.i18n import _
from pipeline.notices import NoticeDocument, chinese_date
from pipeline.roster import Roster
from pipeline.scoring import RoundResult, round_series
from pipeline.systems import BUILTIN, LEVEL1, System, load_system

SELECTED, TIED, RESERVE, NOT_SELECTED, VETOED = "入选", "并列", "候补", "未入选", "否决"
RESULTS = (SELECTED, TIED, RESERVE, NOT_SELECTED, VETOED)
RESULT_HEAD = ["排名", "编号", "名称", "省份", "城市", "区县", "总分", "结果", "说明"]
NOTICE_HEAD = ["排名", "编号", "名称", "地区", "总分"]
NOTICE_TEMPLATE = "publicity.txt"
LIST_MARK, SIGN_MARK = "【名单】", "【落款】"
UNRATED_NOTE = "未评分"
INFO = ["subject", "name", "type", "province", "city", "county"]


@dataclass
class Selection:
    """A 遴选 round's outcome for one system.

    table: one row per subject, in the list's order (see the module docstring): subject, name,
        type, province, city, county, total, rank (排名 with the tie-break; NaN when unrated),
        result (入选, 并列, 候补, 未入选, 否决), note (说明).
    """

    system: System
    places: int
    table: pd.DataFrame
    tie_break: list[str]
    rules: list[str] = field(default_factory=list)  # the 一票否决 rules in words
    quotas: dict[str, int] = field(default_factory=dict)  # province -> places for this type
    decimals: int = 2

    def of(self, result: str) -> pd.DataFrame:
        return self.table[self.table["result"] == result]

    @property
    def n_selected(self) -> int:
        return int((self.table["result"] == SELECTED).sum())

    @property
    def n_above(self) -> int:
        """Rows above the selection line: 入选 and 并列."""
        return int(self.table["result"].isin([SELECTED, TIED]).sum())

    @property
    def open_places(self) -> int:
        """Places not filled by 入选: the 并列 subjects' to be decided, or left empty."""
        return self.places - self.n_selected

    def counts(self) -> dict[str, int]:
        return {r: int((self.table["result"] == r).sum()) for r in RESULTS}


# -- settings -------------------------------------------------------------------------------
def _known_systems(system: System) -> list[System]:
    return [system] + [load_system(s) for s in BUILTIN if s != system.id]


def places_for(settings: dict, system: System) -> int:
    places = settings["selection"]["places"]
    if system.id not in places:
        raise ConfigError(_("happyhome.toml: 'selection.places' has no entry for system '{id}' "
                            "(e.g. places = {{ {id} = 30 }})").format(id=system.id))
    return int(places[system.id])


def tie_break_for(settings: dict, system: System) -> list[str]:
    """selection.tie_break as column names of this system: 一级指标, 二级指标 and item codes.

    A name that belongs to another built-in system only is skipped here (one setting serves
    both systems); a name of no system is a configuration error.
    """
    out = []
    for name in settings["selection"]["tie_break"]:
        found = _criterion(name, system)
        if found is None:
            if not any(_criterion(name, other) for other in _known_systems(system)[1:]):
                raise ConfigError(_("happyhome.toml: 'selection.tie_break' names '{name}', which is not a 一级指标, "
                                    "二级指标 or item code of {system}").format(name=name, system=system.name))
            continue
        if found not in out:
            out.append(found)
    return out


def _criterion(name: str, system: System) -> str | None:
    name = str(name).strip()
    if name in LEVEL1 or name in system.level2_names:
        return name
    return system.codes_by_upper.get(name.upper())


def veto_rules_for(settings: dict, system: System) -> list[tuple[str, float]]:
    """[[selection.veto]] rules of this system: (item code, share); other systems' items skipped."""
    rules = []
    for rule in settings["selection"]["veto"]:
        code = system.codes_by_upper.get(str(rule["item"]).upper())
        if code is None:
            if not any(str(rule["item"]).upper() in other.codes_by_upper for other in _known_systems(system)[1:]):
                raise ConfigError(_("happyhome.toml: [[selection.veto]] item '{item}' is not an item of {system} "
                                    "({first}…{last})").format(item=rule["item"], system=system.name,
                                                             first=system.codes[0], last=system.codes[-1]))
            continue
        rules.append((code, float(rule["below_share"])))
    return rules


def rule_text(system: System, code: str, share: float) -> str:
    item = system.by_code[code]
    return f"{code} {item.level3}得分低于满分 {item.max:g} 的 {share:.0%}"


# -- the rule -------------------------------------------------------------------------------
def item_vetoes(items: pd.DataFrame, system: System, rules: list[tuple[str, float]],
                decimals: int = 2) -> dict[str, list[str]]:
    """Subject -> the 一票否决 texts of the item rules it falls under (its official item score)."""
    out: dict[str, list[str]] = {}
    for code, share in rules:
        full = system.by_code[code].max
        line = share * full
        mine = items[(items["item"] == code) & items["score"].notna()]
        for subject, score in zip(mine["subject"], mine["score"]):
            if score < line - 1e-9:
                out.setdefault(subject, []).append(
                    f"一票否决：{code} 得分 {score:.{decimals}f} 低于满分 {full:g} 的 {share:.0%}")
    return out


def _fmt(value: float, decimals: int) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def decide(frame: pd.DataFrame, places: int, tie_break: list[str] | tuple[str, ...] = (),
           quotas: dict[str, int] | None = None, decimals: int = 2) -> pd.DataFrame:
    """The walk down the ranking (module docstring), on a plain frame.

    `frame`: subject, name, province, total (NaN = unrated), one column per `tie_break` name,
    and veto (a 一票否决 text, "" for none); other columns are kept. Returns the frame in the
    list's order with rank, result and note added.
    """
    quotas = dict(quotas or {})
    f = frame.reset_index(drop=True).copy()
    if "veto" not in f:
        f["veto"] = ""
    f["veto"] = f["veto"].fillna("").astype(str)
    keys = ["total", *tie_break]
    values = {k: round_series(f[k], decimals) for k in keys}
    rated = [i for i in f.index if not math.isnan(values["total"][i])]

    def key(i: int) -> tuple:
        # A missing tie-break value counts as the lowest.
        return tuple(-(values[k][i]) if not math.isnan(values[k][i]) else math.inf for k in keys)

    rated.sort(key=lambda i: (key(i), str(f.at[i, "subject"])))  # code order only for the display of a tie
    groups: list[list[int]] = []
    for i in rated:
        if groups and key(groups[-1][0]) == key(i):
            groups[-1].append(i)
        else:
            groups.append([i])

    rank, result, note = {}, {}, {}
    seen = 0
    for group in groups:
        for i in group:
            rank[i] = seen + 1
        seen += len(group)

    # Where the tie-break ordered equal totals, 说明 says by what.
    order = [i for g in groups for i in g]
    for n, i in enumerate(order):
        for j in (order[n - 1] if n else None, order[n + 1] if n + 1 < len(order) else None):
            if j is None or values["total"][i] != values["total"][j] or key(i) == key(j):
                continue
            k = next(k for k in tie_break if values[k][i] != values[k][j] and not
                     (math.isnan(values[k][i]) and math.isnan(values[k][j])))
            note[i] = (f"总分与 {f.at[j, 'subject']} 相同，按{k}排序（{_fmt(values[k][i], decimals)} 对 "
                       f"{_fmt(values[k][j], decimals)}）")
            break

    left, used = int(places), Counter()

    def quota_left(province: str) -> int | None:
        return None if province not in quotas else quotas[province] - used[province]

    def add(i: int, text: str) -> None:
        note[i] = "；".join(t for t in (text, note.get(i, "")) if t)

    for group in groups:
        candidates = []
        for i in group:
            if f.at[i, "veto"]:
                result[i] = VETOED
                note[i] = f.at[i, "veto"]
            else:
                candidates.append(i)
        if left <= 0:
            for i in candidates:
                result[i] = NOT_SELECTED
            continue
        open_ = []
        for i in candidates:
            province = f.at[i, "province"]
            if quota_left(province) is not None and quota_left(province) <= 0:
                result[i] = RESERVE
                add(i, f"所在省份名额已满（{province} {quotas[province]} 个）")
            else:
                open_.append(i)
        if not open_:
            continue
        by_province: dict[str, list[int]] = {}
        for i in open_:
            by_province.setdefault(f.at[i, "province"], []).append(i)
        take = sum(len(m) if quota_left(p) is None else min(len(m), quota_left(p)) for p, m in by_province.items())
        if take <= left:
            for province, members in by_province.items():
                q = quota_left(province)
                if q is not None and len(members) > q:
                    for i in members:
                        result[i] = TIED
                        others = "、".join(f.at[j, "subject"] for j in members if j != i)
                        add(i, f"与 {others} 并列，所在省份（{province}）剩余 {q} 个名额，由办公室决定")
                    used[province] += q
                else:
                    for i in members:
                        result[i] = SELECTED
                    used[province] += len(members)
            left -= take
        else:
            for i in open_:
                result[i] = TIED
                others = "、".join(f.at[j, "subject"] for j in open_ if j != i)
                add(i, f"与 {others} 并列，剩余 {left} 个名额，由办公室决定")
            left = 0
    for i in f.index:
        if i not in result:
            result[i] = NOT_SELECTED
            note[i] = UNRATED_NOTE

    f["rank"] = [float(rank[i]) if i in rank else math.nan for i in f.index]
    f["result"] = [result[i] for i in f.index]
    f["note"] = [note.get(i, "") for i in f.index]
    position = {i: n for n, i in enumerate(order)}
    tier = {SELECTED: 0, TIED: 0, RESERVE: 1, NOT_SELECTED: 2, VETOED: 2}
    f["_tier"] = [3 if i not in position else tier[result[i]] for i in f.index]
    f["_pos"] = [position.get(i, len(order)) for i in f.index]
    f = f.sort_values(["_tier", "_pos", "subject"], kind="mergesort").drop(columns=["_tier", "_pos"])
    return f.reset_index(drop=True)


def select(res: RoundResult, roster: Roster | None, settings: dict) -> Selection:
    """Decide a 遴选 round from its scores, the roster's vetoes and quotas, and [selection]."""
    system = res.system
    decimals = int(res.params["rank_decimals"])
    places = places_for(settings, system)
    tie_break = tie_break_for(settings, system)
    rules = veto_rules_for(settings, system)
    frame = res.subjects[INFO + ["total"]].copy()
    items = [k for k in tie_break if k in system.by_code]
    wide = res.items.pivot_table(index="subject", columns="item", values="score", aggfunc="first") \
        if len(res.items) else pd.DataFrame()
    for k in tie_break:
        if k in items:
            frame[k] = frame["subject"].map(wide[k]) if k in wide else math.nan
        else:
            frame[k] = res.subjects[k].values
    vetoes = item_vetoes(res.items, system, rules, decimals)
    if roster is not None:
        for code, s in roster.subjects.items():
            if s.veto:
                vetoes.setdefault(code, []).append(f"一票否决：{s.veto}")
    frame["veto"] = frame["subject"].map(lambda c: "；".join(vetoes.get(c, [])))
    quotas = {province: n for (kind, province), n in (roster.quotas if roster is not None else {}).items()
              if kind == system.subject_type}
    table = decide(frame, places, tie_break, quotas, decimals)
    return Selection(system=system, places=places, table=table.drop(columns=["veto", *tie_break]),
                     tie_break=tie_break, rules=[rule_text(system, c, s) for c, s in rules], quotas=quotas,
                     decimals=decimals)


def describe(sel: Selection) -> str:
    """The outcome in one sentence, for the sheet, the digest and the notice."""
    c = sel.counts()
    text = f"名额 {sel.places} 个：入选 {c[SELECTED]} 个"
    if c[TIED]:
        text += f"，{c[TIED]} 个并列竞争剩余的 {sel.open_places} 个名额（由办公室决定）"
    elif sel.open_places > 0:
        text += f"，{sel.open_places} 个名额空缺"
    extra = [f"{name} {c[r]} 个" for r, name in ((RESERVE, "候补"), (VETOED, "否决"), (NOT_SELECTED, "未入选")) if c[r]]
    return text + ("；" + "，".join(extra) if extra else "") + "。"


def method_lines(sel: Selection) -> list[tuple[str, str]]:
    """(what, rule) pairs that explain the outcome."""
    quotas = "、".join(f"{p} {n} 个" for p, n in sel.quotas.items())
    return [
        ("名额", f"{sel.places} 个（设置项 selection.places）"),
        ("排序", f"按总分（保留 {sel.decimals} 位小数）从高到低；总分相同依次比较"
                 + ("、".join(sel.tie_break) if sel.tie_break else "（未设置比较指标）")
                 + "，仍相同者并列，不按编号先后决定；本表排名含这一比较，故可与“排名”页（只比总分）不同"),
        ("一票否决", "；".join(sel.rules + ["名单“否决”列写明原因的对象"]) + "：照常排名，不入选"),
        ("省份名额", (quotas + "；" if quotas else "未设置；") + "名额已满的省份其余对象列为候补"),
        ("候补", "因所在省份名额已满而未入选的对象，按排名顺序列在入选线之后"),
    ]


# -- 公示 dates ------------------------------------------------------------------------------
def publicity_period(report_date: date, days: int) -> tuple[date, date]:
    """First and last day of a 公示 of `days` working days starting the working day after
    `report_date` (Saturdays and Sundays skipped; no holiday calendar)."""
    day, counted, first = report_date, 0, None
    while counted < days:
        day += timedelta(days=1)
        if day.weekday() < 5:
            counted += 1
            first = first or day
    return first, day



# -- the summary sheet ----------------------------------------------------------------------
def place_text(row) -> str:
    """地区 as one name: 浙江省杭州市上城区; a municipality's city is not repeated (北京市朝阳区)."""
    parts = []
    for v in (row.get("province", ""), row.get("city", ""), row.get("county", "")):
        if v and v not in parts:
            parts.append(str(v))
    return "".join(parts)


def write_result_sheet(book, f: dict, sel: Selection) -> None:
    """The sheet 遴选结果 of the summary workbook (written first: it is the round's answer), with
    the selection line drawn under the last row above it (a thick red rule) and the rule
    explained below the table."""
    from pipeline.report import _Sheet

    sh = _Sheet(book, "遴选结果", f)
    t = sel.table
    rows = [[r["rank"], r["subject"], r["name"], r["province"], r["city"], r["county"], r["total"], r["result"],
             r["note"]] for r in t.to_dict("records")]
    fmts = [f["center_int"], f["center"], f["text"], f["text"], f["text"], f["text"], f["bold_num"], f["center"],
            f["wrap"]]
    last = sh.table(RESULT_HEAD, rows, fmts, [None, 10, 28, 12, 12, 12, None, None, 60], freeze_cols=3)
    if sel.n_above:
        # The selection line: a thick red rule under the last row above it.
        base = {"font_name": "Microsoft YaHei", "font_size": 10, "valign": "top", "bottom": 5,
                "bottom_color": "#C00000"}
        number = "0." + "0" * sel.decimals if sel.decimals else "0"
        lined = [book.add_format({**base, **extra}) for extra in (
            {"align": "center", "num_format": "0"}, {"align": "center"}, {}, {}, {}, {},
            {"num_format": number, "bold": True}, {"align": "center"}, {"text_wrap": True})]
        r = sel.n_above
        for c, value in enumerate(rows[r - 1]):
            sh.put(r, c, value, lined[c])
    colours = {SELECTED: ("#C6EFCE", "#006100"), TIED: ("#FFEB9C", "#9C5700"), RESERVE: ("#DDEBF7", "#1F4E78"),
               VETOED: ("#FFC7CE", "#9C0006")}
    col = RESULT_HEAD.index("结果")
    for result, (bg, fg) in colours.items():
        sh.ws.conditional_format(1, col, last, col, {"type": "cell", "criteria": "==", "value": f'"{result}"',
                                                     "format": book.add_format({"bg_color": bg, "font_color": fg})})
    at = last + 2
    sh.ws.write_string(at, 0, "入选线：" + describe(sel) + "红线以上为入选（及并列）对象，红线以下依次为候补、其余对象。",
                       f["title"])
    for n, (what, rule) in enumerate(method_lines(sel), start=at + 1):
        sh.ws.write_string(n, 0, f"{what}：{rule}", f["text"])  # one text, running across the empty cells
    sh.ws.set_column(6, 6, 9)  # 100.00 in bold needs more than its digits
    sh.ws.activate()


# -- the 公示 notice ------------------------------------------------------------------------
@dataclass
class Notice:
    """The 公示 notice as parts: title, paragraphs before and after the list, signature lines."""

    title: str
    before: list[str]
    after: list[str]
    signature: list[str]
    rows: list[list]  # 排名, 编号, 名称, 地区, 总分 of the selected subjects
    start: date
    end: date


def notice(sel: Selection, settings: dict, today: date) -> Notice:
    """Render templates/publicity.txt for this selection and split it into the notice's parts."""
    from pipeline.digest import environment

    sc = settings["selection"]
    start, end = publicity_period(today, int(sc["publicity_days"]))
    selected = sel.of(SELECTED)
    context = {
        "type_name": sel.system.subject_type,
        "system_name": sel.system.name,
        "organiser": settings["round"]["organiser"],
        "places": sel.places,
        "selected": len(selected),
        "tied": len(sel.of(TIED)),
        "open_places": sel.open_places,
        "vetoed": len(sel.of(VETOED)),
        "start": chinese_date(start),
        "end": chinese_date(end),
        "days": int(sc["publicity_days"]),
        "contact": sc["objection_contact"],
        "date": chinese_date(today),
    }
    # The shared environment, without HTML escaping: this is plain text for a document.
    text = environment().overlay(autoescape=False).get_template(NOTICE_TEMPLATE).render(**context)
    paragraphs: list[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines:
            paragraphs.append("\n".join(lines))
    if not paragraphs:
        raise ConfigError(_("templates/{name} is empty").format(name=NOTICE_TEMPLATE))
    title, rest = paragraphs[0].replace("\n", ""), paragraphs[1:]
    before, after, signature, part = [], [], [], "before"
    for p in rest:
        if p.startswith(SIGN_MARK):
            part = "sign"
            signature += [line for line in p.split("\n")[1:] if line]
            continue
        if p.startswith(LIST_MARK):
            part = "after"
            continue
        if part == "sign":
            signature += p.split("\n")
        else:
            (before if part == "before" else after).append(p.replace("\n", ""))
    rows = [[int(r["rank"]), r["subject"], r["name"], place_text(r), r["total"]] for r in selected.to_dict("records")]
    return Notice(title, before, after, signature, rows, start, end)


def write_notice_docx(path: Path, n: Notice, decimals: int = 2) -> Path:
    """The 公示 as a Word document (pipeline.notices: title centred, 仿宋 body, the table,
    signature and date on the right), written atomically."""
    doc = NoticeDocument(n.title)
    doc.title(n.title)
    for k, text in enumerate(n.before):
        doc.body(text, after=8 if k == len(n.before) - 1 else 0)
    rows = [[str(r[0]), r[1], r[2], r[3], f"{r[4]:.{decimals}f}"] for r in n.rows]
    # 156 mm, the type area: names and places get the room.
    doc.table(list(NOTICE_HEAD), rows, [14, 18, 54, 46, 24], centred=frozenset({0, 1, 4}), empty="（本次无入选对象）")
    for k, text in enumerate(n.after):
        doc.body(text, before=12 if k == 0 else 0)
    for text in n.signature:
        doc.right(text)
    return doc.save(path)


def write_notice_xlsx(path: Path, n: Notice, decimals: int = 2, generated: datetime | None = None) -> Path:
    """The same 公示 as a print-ready workbook: title, text, the list (frozen, repeated header),
    signature; A4 portrait, one page wide."""
    import xlsxwriter

    from pipeline.report import line_count

    widths = [7, 10, 34, 30, 10]
    full = sum(widths)
    with atomic_path(path) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False})
        book.set_properties({"title": n.title, "author": "happyhome", **({"created": generated} if generated else {})})
        base = {"font_name": "FangSong", "font_size": 12, "valign": "vcenter"}
        title = book.add_format({**base, "font_name": "SimSun", "font_size": 18, "bold": True, "align": "center"})
        text = book.add_format({**base, "text_wrap": True, "valign": "top"})
        head = book.add_format({**base, "font_name": "SimHei", "bold": True, "border": 1, "align": "center",
                                "bg_color": "#F2F2F2"})
        cell = book.add_format({**base, "border": 1})
        centre = book.add_format({**base, "border": 1, "align": "center"})
        number = book.add_format({**base, "border": 1, "align": "center",
                                  "num_format": "0." + "0" * decimals if decimals else "0"})
        right = book.add_format({**base, "align": "right"})
        ws = book.add_worksheet("公示名单")
        for c, w in enumerate(widths):
            ws.set_column(c, c, w)
        last_col = len(widths) - 1
        ws.set_row(0, 36)
        ws.merge_range(0, 0, 0, last_col, n.title, title)
        row = 1

        def prose(value: str, fmt=text) -> None:
            nonlocal row
            shown = "　　" + value if fmt is text else value
            ws.merge_range(row, 0, row, last_col, shown, fmt)
            ws.set_row(row, 18 * line_count(shown, full) + 4)
            row += 1

        for value in n.before:
            prose(value)
        header_row = row
        for c, h in enumerate(NOTICE_HEAD):
            ws.write_string(row, c, h, head)
        row += 1
        for values in n.rows:
            ws.write_number(row, 0, values[0], centre)
            ws.write_string(row, 1, values[1], centre)
            ws.write_string(row, 2, values[2], cell)
            ws.write_string(row, 3, values[3], cell)
            ws.write_number(row, 4, float(values[4]), number)
            row += 1
        if not n.rows:
            ws.merge_range(row, 0, row, last_col, "（本次无入选对象）", cell)
            row += 1
        row += 1
        for value in n.after:
            prose(value)
        row += 1
        for value in n.signature:
            prose(value, right)
        ws.freeze_panes(header_row + 1, 0)
        ws.repeat_rows(header_row)
        ws.set_paper(9)
        ws.set_portrait()
        ws.fit_to_pages(1, 0)
        ws.set_margins(left=0.7, right=0.7, top=0.8, bottom=0.8)
        ws.center_horizontally()
        ws.set_footer("&C第 &P 页，共 &N 页")
        book.close()
    return path


def write_outputs(out: Path, sel: Selection, settings: dict, today: date,
                  generated: datetime | None = None) -> tuple[Notice, list[Path]]:
    """公示名单-<system>.xlsx and .docx in the round's folder."""
    n = notice(sel, settings, today)
    paths = [write_notice_xlsx(out / f"公示名单-{sel.system.id}.xlsx", n, sel.decimals, generated),
             write_notice_docx(out / f"公示名单-{sel.system.id}.docx", n, sel.decimals)]
    return n, paths


def digest_part(sel: Selection, n: Notice | None = None) -> dict:
    """What the digest's 遴选结果 section shows."""
    return {
        "summary": describe(sel),
        "places": sel.places,
        "n_above": sel.n_above,
        "rows": sel.table.to_dict("records"),
        "counts": sel.counts(),
        "method": method_lines(sel),
        "publicity": f"公示期 {chinese_date(n.start)}至{chinese_date(n.end)}" if n else "",
    }
