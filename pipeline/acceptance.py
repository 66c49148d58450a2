"""验收 rounds: pass, rectify or fail — and what to rectify.

A 验收 (acceptance) round is scored like any other (`pipeline.scoring`); on top of it each
subject gets a result from its official total — 通过 (at least ``[acceptance] pass``), 整改后复验
(at least ``conditional``), 不通过, or 未评分 when no sheet was accepted — and each subject that
did not pass gets its items to rectify: those whose aggregate is below ``item_share`` of 满分,
with the assessors' remarks. The frames are built by pure functions; the writers put them in the
summary's 验收结果 sheet, `整改清单-<system>.xlsx` and one `整改通知/<编号>-<名称>.docx` each.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date, datetime, timedelta
from pathlib import Path

import jinja2
import pandas as pd

from pipeline.atomic import atomic_path
from pipeline.names import safe_filename
from pipeline.notices import NoticeDocument, chinese_date
from pipeline.rounds import split_key
from pipeline.scoring import RoundResult, half_up

PASS, CONDITIONAL, FAIL, UNRATED = "通过", "整改后复验", "不通过", "未评分"
RESULTS = (PASS, CONDITIONAL, FAIL, UNRATED)
RESULT_HEAD = ["排名", "编号", "名称", "省份", "城市", "区县", "总分", "结果", "说明"]
RECTIFY_HEAD = ["编号", "名称", "结果", "指标编号", "一级指标", "二级指标", "三级指标", "得分", "满分", "得分率",
                "评估人意见", "整改措施", "完成时限"]
NOTICE_DIR = "整改通知"
NOTICE_TEMPLATE = "rectification.txt"
TABLE_HEAD = ["序号", "指标", "得分", "满分", "专家意见"]


@dataclass(frozen=True)
class AcceptanceRules:
    """The [acceptance] settings, with the ranking precision the totals are compared at."""

    pass_line: float = 80
    conditional: float = 60
    item_share: float = 0.6
    rectify_days: int = 30
    decimals: int = 2

    @classmethod
    def from_settings(cls, settings: dict) -> "AcceptanceRules":
        acc = settings["acceptance"]
        return cls(float(acc["pass"]), float(acc["conditional"]), float(acc["item_share"]), int(acc["rectify_days"]),
                   int(settings["scoring"]["rank_decimals"]))


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def verdict(total, rules: AcceptanceRules) -> tuple[str, str]:
    """(result, reason) of one total, judged on the total rounded half-up to the ranking precision."""
    if _missing(total):
        return UNRATED, "未收到有效评分，未判定验收结果"
    value = half_up(float(total), rules.decimals)
    shown = f"总分 {value:.{rules.decimals}f}"
    p, c = f"{rules.pass_line:g}", f"{rules.conditional:g}"
    if value >= rules.pass_line:
        return PASS, f"{shown}，不低于通过线 {p}：{PASS}"
    if value >= rules.conditional:
        return CONDITIONAL, f"{shown}，低于通过线 {p}、不低于复验线 {c}：{CONDITIONAL}"
    return FAIL, f"{shown}，低于复验线 {c}：{FAIL}"


def acceptance_table(res: RoundResult, rules: AcceptanceRules) -> pd.DataFrame:
    """One row per subject in rank order: subject, name, province, city, county, rank, total, result, reason."""
    s = res.subjects
    judged = [verdict(t, rules) for t in s["total"]]
    return pd.DataFrame({
        "rank": s["rank"], "subject": s["subject"], "name": s["name"], "province": s["province"], "city": s["city"],
        "county": s["county"], "total": s["total"],
        "result": [r for r, _ in judged], "reason": [why for _, why in judged],
    }).reset_index(drop=True)


def _remarks(scores: pd.DataFrame, names: dict[str, str]) -> dict[tuple[str, str], str]:
    """(subject, item) -> the assessors' non-empty remarks, "张敏：台账不全；李强：……" (by assessor code)."""
    if not len(scores) or "remark" not in scores:
        return {}
    said = scores[scores["remark"].fillna("").astype(str).str.strip() != ""]
    said = said.sort_values(["subject", "item", "assessor"], kind="mergesort")
    out: dict[tuple[str, str], list[str]] = {}
    for r in said.itertuples(index=False):
        who = names.get(r.assessor) or r.assessor
        out.setdefault((str(r.subject), str(r.item)), []).append(f"{who}：{str(r.remark).strip()}")
    return {key: "；".join(parts) for key, parts in out.items()}


def rectification_items(res: RoundResult, table: pd.DataFrame, scores: pd.DataFrame, names: dict[str, str],
                        rules: AcceptanceRules) -> pd.DataFrame:
    """The 整改清单: per subject not 通过, each item whose aggregate is below item_share × 满分.

    Columns subject, name, result, item, level1, level2, level3, score, max, share, remarks, note;
    a subject with no such item (or 未评分) gets one row with `item` empty and `note` saying why,
    so no subject that did not pass is missing from the list.
    """
    remarks = _remarks(scores, names)
    items = res.items
    rows = []
    for t in table.itertuples(index=False):
        if t.result == PASS:
            continue
        base = {"subject": t.subject, "name": t.name, "result": t.result}
        if t.result == UNRATED:
            rows.append({**base, "note": "未收到有效评分，未判定验收结果：暂不列整改事项"})
            continue
        mine = items[items["subject"] == t.subject]
        # Compared on the official (rounded) item score; the tolerance keeps 0.6 × 7 = 4.2 from
        # reading as 4.1999… and so counting 4.2 as below it.
        low = mine[mine["score"] < mine["max"] * rules.item_share - 1e-9]
        if low.empty:
            rows.append({**base, "note": f"各项得分均不低于满分的 {rules.item_share:.0%}，总分未达通过线：请对照指标体系全面整改"})
            continue
        for r in low.itertuples(index=False):
            rows.append({**base, "item": r.item, "level1": r.level1, "level2": r.level2, "level3": r.level3,
                         "score": float(r.score), "max": float(r.max), "share": half_up(r.score / r.max, 3),
                         "remarks": remarks.get((t.subject, r.item), "")})
    columns = ["subject", "name", "result", "item", "level1", "level2", "level3", "score", "max", "share", "remarks", "note"]
    frame = pd.DataFrame(rows, columns=columns)
    for c in ("item", "level1", "level2", "level3", "remarks", "note"):
        frame[c] = frame[c].astype(object).fillna("")
    return frame


def counts(table: pd.DataFrame) -> list[tuple[str, int]]:
    """(result, number of subjects) in the fixed order; 未评分 only when there is one."""
    got = table["result"].value_counts()
    return [(r, int(got.get(r, 0))) for r in RESULTS if r != UNRATED or got.get(r, 0)]


# -- the summary's sheet and the 整改清单 workbook ---------------------------------------------
def _result_formats(book) -> dict:
    return {
        PASS: book.add_format({"font_color": "#006100", "bg_color": "#C6EFCE"}),
        CONDITIONAL: book.add_format({"font_color": "#9C5700", "bg_color": "#FFEB9C"}),
        FAIL: book.add_format({"font_color": "#9C0006", "bg_color": "#FFC7CE"}),
    }


def _colour_results(sh, col: int, last: int, colours: dict) -> None:
    for result, fmt in colours.items():
        sh.ws.conditional_format(1, col, last, col, {"type": "cell", "criteria": "==", "value": f'"{result}"',
                                                     "format": fmt})


def rules_note(rules: AcceptanceRules) -> str:
    """The rules in words, at the head of the printed 验收结果."""
    return (f"总分四舍五入保留 {rules.decimals} 位小数后判定：不低于 {rules.pass_line:g} 分为{PASS}，不低于 "
            f"{rules.conditional:g} 分为{CONDITIONAL}，低于 {rules.conditional:g} 分为{FAIL}；未收到有效评分的为{UNRATED}。"
            f"未通过的对象中得分低于该项满分 {rules.item_share:.0%} 的指标列入整改清单和整改通知，整改期限 {rules.rectify_days} 天。")


def write_result_sheet(book, f: dict, acc: "AcceptanceResult") -> None:
    """The summary's 验收结果 sheet: RESULT_HEAD, one row per subject in rank order; the rules in
    its printed page header."""
    table = acc.table
    from pipeline.report import _Sheet

    sh = _Sheet(book, "验收结果", f)
    rows = [[r.rank, r.subject, r.name, r.province, r.city, r.county, r.total, r.result, r.reason]
            for r in table.itertuples(index=False)]
    fmts = [f["center_int"], f["center"], f["text"], f["text"], f["text"], f["text"], f["bold_num"], f["center"], f["wrap"]]
    last = sh.table(RESULT_HEAD, rows, fmts, [None, 10, 30, 16, 16, 16, None, 12, 56], freeze_cols=3)
    _colour_results(sh, RESULT_HEAD.index("结果"), last, _result_formats(book))
    # The rules head each printed page; below the table they would become a row for whoever
    # reads the sheet as data (it is an interface: one row per subject, nothing else).
    sh.ws.set_header(f"&C&9{rules_note(acc.rules)}", {"margin": 0.25})


def write_rectification_xlsx(path: Path, items: pd.DataFrame, *, system_name: str, period: str, rules: AcceptanceRules,
                             generated: datetime) -> Path:
    """整改清单-<system>.xlsx: RECTIFY_HEAD; 整改措施 and 完成时限 unlocked and shaded to fill in."""
    from pipeline.blocksheet import BlockWorkbook
    from pipeline.report import _formats, _Sheet

    period = " ".join(split_key(period) or (period,))  # "2027-03 验收"
    with atomic_path(path) as tmp:
        book = BlockWorkbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False})
        book.set_properties({"title": f"{system_name} {period}整改清单", "author": "happyhome", "created": generated})
        f = _formats(book, rules.decimals)
        fill = book.add_format({"font_name": "Microsoft YaHei", "font_size": 10, "valign": "top", "text_wrap": True,
                                "locked": False, "bg_color": "#FFF2CC", "border": 1, "border_color": "#BFBFBF"})
        fill_date = book.add_format({"font_name": "Microsoft YaHei", "font_size": 10, "valign": "top", "locked": False,
                                     "bg_color": "#FFF2CC", "border": 1, "border_color": "#BFBFBF",
                                     "num_format": "yyyy-mm-dd"})
        sh = _Sheet(book, "整改清单", f)
        rows = []
        for r in items.itertuples(index=False):
            level3 = r.level3 if r.item else r.note
            rows.append([r.subject, r.name, r.result, r.item, r.level1, r.level2, level3,
                         r.score if r.item else None, r.max if r.item else None, r.share if r.item else None,
                         r.remarks, None, None])
        # Names and items fit their columns, so most rows stay one line high; the remarks and a
        # subject's note in place of an item (in 三级指标) wrap.
        fmts = [f["center"], f["text"], f["center"], f["center"], f["text"], f["text"], f["wrap"], f["num"],
                f["text"], f["pct"], f["wrap"], fill, fill_date]
        caps = [8, 24, 11, 8, 9, 14, 36, 7, 6, 7, 40, 30, 12]
        last = sh.table(RECTIFY_HEAD, rows, fmts, caps, freeze_cols=2)
        # Empty columns would be as narrow as their header: give the officers room to write.
        sh.ws.set_column(RECTIFY_HEAD.index("整改措施"), RECTIFY_HEAD.index("整改措施"), 30)
        sh.ws.set_column(RECTIFY_HEAD.index("完成时限"), RECTIFY_HEAD.index("完成时限"), 12)
        _colour_results(sh, RECTIFY_HEAD.index("结果"), last, {k: v for k, v in _result_formats(book).items()
                                                                if k != PASS})
        note = last + 2
        sh.ws.write_string(note, 0, f"列出本轮验收结果不是“通过”的对象中，得分低于该项满分 {rules.item_share:.0%} 的指标"
                                    f"（通过线 {rules.pass_line:g} 分，复验线 {rules.conditional:g} 分）。"
                                    "请在黄色的“整改措施”“完成时限”两列填写；其余各列已锁定（审阅 → 撤销工作表保护，无需密码）。",
                           f["text"])
        if items.empty:
            sh.ws.write_string(note + 1, 0, "本轮所有已评对象均通过验收，无需整改。", f["text"])
        sh.ws.protect("", {"autofilter": True, "sort": True, "format_columns": True, "format_rows": True})
        sh.ws.set_header(f"&C{system_name} {period}整改清单")
        book.close()
    return path


# -- the notices -----------------------------------------------------------------------------

@dataclass
class Notice:
    """One 整改通知: who it goes to and what it says."""

    subject: str
    name: str
    result: str
    total: float
    items: list[dict] = field(default_factory=list)  # item, label, score, max, remarks
    paragraphs: list[tuple[str, str]] = field(default_factory=list)  # (kind, text): title, to, body, right, table


MARK = re.compile(r"^【(标题|抬头|右|整改事项表)】\s*")


def notice_paragraphs(text: str) -> list[tuple[str, str]]:
    """The rendered template as (kind, text): each non-empty line is a paragraph; a line that
    starts with 【标题】, 【抬头】 or 【右】 is the title, the addressee or right-aligned; a line
    【整改事项表】 is where the table goes (after the body when no line says so)."""
    kinds = {"标题": "title", "抬头": "to", "右": "right", "整改事项表": "table"}
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        found = MARK.match(line)
        out.append((kinds[found.group(1)], line[found.end():]) if found else ("body", line))
    if not any(kind == "table" for kind, _ in out):
        body = [n for n, (kind, _) in enumerate(out) if kind == "body"]
        out.insert(body[-1] + 1 if body else len(out), ("table", ""))
    return out


@lru_cache(maxsize=1)
def text_environment() -> jinja2.Environment:
    """jinja2 for plain-text templates: the digest's loader, no HTML escaping (a .docx is not HTML)."""
    from pipeline.digest import template_dirs

    return jinja2.Environment(loader=jinja2.FileSystemLoader([str(d) for d in template_dirs()]), autoescape=False,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def build_notices(table: pd.DataFrame, items: pd.DataFrame, *, system_name: str, period: str, stage_label: str,
                  rules: AcceptanceRules, organiser: str, contact: str, day: date,
                  template: str = NOTICE_TEMPLATE) -> list[Notice]:
    """One Notice per subject that was judged and did not pass, its text rendered from the template."""
    tpl = text_environment().get_template(template)
    deadline = day + timedelta(days=rules.rectify_days)
    notices = []
    for t in table.itertuples(index=False):
        if t.result not in (CONDITIONAL, FAIL):
            continue
        mine = items[(items["subject"] == t.subject) & (items["item"] != "")]
        listed = [{"item": r.item, "label": f"{r.item} {r.level3}", "score": r.score, "max": r.max,
                   "remarks": r.remarks} for r in mine.itertuples(index=False)]
        text = tpl.render(
            name=t.name, subject=t.subject, result=t.result, total=f"{t.total:.{rules.decimals}f}",
            pass_line=f"{rules.pass_line:g}", conditional=f"{rules.conditional:g}",
            item_share=f"{rules.item_share:.0%}", n_items=len(listed), system_name=system_name, period=period,
            stage=stage_label, organiser=organiser, contact=contact, date=chinese_date(day),
            deadline=chinese_date(deadline), rectify_days=rules.rectify_days,
        )
        notices.append(Notice(t.subject, t.name, t.result, float(t.total), listed, notice_paragraphs(text)))
    return notices


def _shown(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.2f}".rstrip("0").rstrip(".")


def write_notice(path: Path, notice: Notice, *, decimals: int = 2, generated: datetime | None = None) -> Path:
    """One 整改通知 as .docx (pipeline.notices: A4, 公文 layout), written atomically."""
    title = next((text for kind, text in notice.paragraphs if kind == "title"), "整改通知")
    doc = NoticeDocument(title, generated)
    for kind, text in notice.paragraphs:
        if kind == "table":
            if notice.items:  # without items the template's text says why there is no table
                rows = [[str(n), item["label"], _shown(half_up(item["score"], decimals)), _shown(item["max"]),
                         item["remarks"] or "—"] for n, item in enumerate(notice.items, start=1)]
                doc.table(list(TABLE_HEAD), rows, [13, 42, 16, 16, 69], centred=frozenset({0, 2, 3}))
        elif kind == "title":
            doc.title(text)
        elif kind == "to":
            doc.addressee(text)
        elif kind == "right":
            doc.right(text)
        else:
            doc.body(text)
    return doc.save(path)


def notice_path(folder: Path, subject: str, name: str) -> Path:
    return folder / f"{safe_filename(f'{subject}-{name}')}.docx"


def write_notices(folder: Path, notices: list[Notice], *, decimals: int = 2, generated: datetime | None = None) -> list[Path]:
    """Write each notice; notices left in `folder` by an earlier run of the round that this run did
    not write are removed, so the folder holds exactly the notices to send out now."""
    written = [write_notice(notice_path(folder, n.subject, n.name), n, decimals=decimals, generated=generated)
               for n in notices]
    if folder.is_dir():
        for old in folder.glob("*.docx"):
            if old not in written:
                old.unlink()
    return written


# -- the whole of it, for `report` -------------------------------------------------------------
@dataclass
class AcceptanceResult:
    """The 验收 part of a report: results per subject, items to rectify, the files written."""

    table: pd.DataFrame
    items: pd.DataFrame
    rules: AcceptanceRules
    rectification: Path | None = None
    notices: list[Path] = field(default_factory=list)

    @property
    def counts(self) -> list[tuple[str, int]]:
        return counts(self.table)

    @property
    def paths(self) -> list[Path]:
        return ([self.rectification] if self.rectification else []) + self.notices


def judge(res: RoundResult, scores: pd.DataFrame, names: dict[str, str], settings: dict) -> AcceptanceResult:
    """Results and items to rectify of a scored round (no I/O)."""
    rules = AcceptanceRules.from_settings(settings)
    table = acceptance_table(res, rules)
    return AcceptanceResult(table, rectification_items(res, table, scores, names, rules), rules)


def write_outputs(acc: AcceptanceResult, out: Path, *, system_id: str, system_name: str, period: str,
                  organiser: str, contact: str, generated: datetime) -> AcceptanceResult:
    """整改清单-<system>.xlsx and 整改通知/*.docx in the round's output folder `out`."""
    acc.rectification = write_rectification_xlsx(out / f"整改清单-{system_id}.xlsx", acc.items, system_name=system_name,
                                                 period=period, rules=acc.rules, generated=generated)
    month, stage = split_key(period) or (period, "验收")
    notices = build_notices(acc.table, acc.items, system_name=system_name, period=month, stage_label=stage,
                            rules=acc.rules, organiser=organiser, contact=contact, day=generated.date())
    acc.notices = write_notices(out / NOTICE_DIR, notices, decimals=acc.rules.decimals, generated=generated)
    return acc


def digest_part(acc: AcceptanceResult, res: RoundResult) -> dict:
    """What the digest shows of the 验收: counts by result and a row per subject."""
    n_items = acc.items[acc.items["item"] != ""].groupby("subject").size()
    rows = [{"rank": r.rank, "subject": r.subject, "name": r.name, "total": r.total, "result": r.result,
             "reason": r.reason, "n_items": int(n_items.get(r.subject, 0))} for r in acc.table.itertuples(index=False)]
    return {"counts": acc.counts, "rows": rows, "pass_line": f"{acc.rules.pass_line:g}",
            "conditional": f"{acc.rules.conditional:g}",
            "item_share": acc.rules.item_share, "by_subject": {r["subject"]: r["result"] for r in rows},
            "classes": {PASS: "acc-pass", CONDITIONAL: "acc-cond", FAIL: "acc-fail", UNRATED: "acc-none"}}
