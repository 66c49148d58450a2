"""`happyhome rollup`: the monthly rounds of one system side by side.

Every month's numbers come from `scoring.score_round` on that month's accepted scores, so a
roll-up's totals, ranks and grades are the per-month reports' own. A month in the range with
nothing in the ledger is kept as a column marked 无数据 rather than dropped, so a gap in
supervision is visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xlsxwriter
from xlsxwriter.utility import xl_rowcol_to_cell

from pipeline.atomic import atomic_path, write_text
from pipeline.config import Workspace, check_period
from pipeline.errors import UsageError
from pipeline.i18n import _
from pipeline.ledger import Ledger
from pipeline.roster import Roster
from pipeline.rounds import SUPERVISION, round_key, split_key
from pipeline.scoring import NOT_RATED, half_up, round_series, score_round
from pipeline.systems import System

NO_DATA = "无数据"
DROP, UNRATED = "下降", "未评"


@dataclass
class RollupResult:
    """A roll-up of one system over a range of months.

    monthly: one row per (subject, period): subject, period, total, rank, grade, n_assessors,
        assigned (how many assessors the roster assigns), delta (from the previous month),
        rank_move (previous rank minus this rank: positive moved up).
    subjects: one row per subject: subject, name, province, city, then the latest figures
        latest_total, latest_delta, latest_rank, latest_move, latest_grade, n_flags.
    level2: one row per 二级指标: level1, level2, max, then one column per period (mean share of 满分).
    flags: subject, name, period, kind (下降 | 未评), message (Chinese).
    returns_month: period, deadline, has_data, assigned, on_time, late, missing.
    returns_assessor: assessor, name, org, contact, assigned, on_time, late, missing, then
        one column per period with data: the missing count that month.
    """

    system: System
    periods: list[str]
    with_data: list[str]
    method: str
    method_note: str
    drop_points: float
    monthly: pd.DataFrame
    subjects: pd.DataFrame
    level2: pd.DataFrame
    flags: pd.DataFrame
    returns_month: pd.DataFrame
    returns_assessor: pd.DataFrame
    grades: list[str] = field(default_factory=list)  # grade names, best first, then the fail grade
    bands: list[tuple[str, float]] = field(default_factory=list)  # (grade, lowest total) best first, without the fail grade
    decimals: int = 2  # scoring.rank_decimals: totals are shown with these
    generated: datetime = field(default_factory=datetime.now)
    xlsx: Path | None = None
    html: Path | None = None

    @property
    def start(self) -> str:
        return self.periods[0]

    @property
    def end(self) -> str:
        return self.periods[-1]

    @property
    def latest(self) -> str | None:
        """The last month of the range that has data."""
        return self.with_data[-1] if self.with_data else None

    def wide(self, column: str) -> pd.DataFrame:
        """subject x period of one monthly column, in the subjects' order."""
        table = self.monthly.pivot(index="subject", columns="period", values=column)
        return table.reindex(index=self.subjects["subject"], columns=self.periods)


def month_range(start: str, end: str) -> list[str]:
    """Every month from start to end inclusive."""
    y, m = map(int, check_period(start).split("-"))
    y2, m2 = map(int, check_period(end).split("-"))
    if (y, m) > (y2, m2):
        raise UsageError(_("--from {start} is after --to {end}").format(start=start, end=end))
    out = []
    while (y, m) <= (y2, m2):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def periods_on_record(ledger: Ledger, system: str, stage: str = SUPERVISION) -> list[str]:
    """Every month the ledger holds a file or a sheet for, for this system's rounds of `stage`."""
    rounds = [split_key(key) for key in ledger.round_keys(system)]
    return [r[0] for r in rounds if r is not None and r[1] == stage]


def _local(stamp: str) -> datetime:
    value = datetime.fromisoformat(str(stamp))
    return value.astimezone().replace(tzinfo=None) if value.tzinfo else value


def compute_rollup(ws: Workspace, system: System, roster: Roster, ledger: Ledger,
                   start: str | None = None, end: str | None = None, method: str | None = None,
                   stage: str = SUPERVISION) -> RollupResult:
    """The roll-up's tables (reads the ledger, writes nothing): the months of the rounds of one
    stage, 督导 unless told (the other stages' rounds are not monthly, but may be rolled up too)."""
    on_record = periods_on_record(ledger, system.id, stage)
    if not on_record and not (start and end):
        raise UsageError(_("No round of the {system} system is in the ledger yet: run `happyhome collect` first.")
                         .format(system=system.id))
    start = start or (on_record[0] if on_record else end)
    end = end or (on_record[-1] if on_record and on_record[-1] >= start else start)
    periods = month_range(start, end)
    drop = float(ws["rollup"]["drop_points"])
    assignments = roster.assignments(system.subject_type)
    assigned_to: dict[str, int] = {}
    for subjects in assignments.values():
        for s in subjects:
            assigned_to[s] = assigned_to.get(s, 0) + 1
    recorded = set(on_record)

    info = [(s.code, s.name, s.province, s.city) for s in roster.subjects.values() if s.type == system.subject_type]
    monthly_parts, level2_rows, month_rows, by_assessor = [], {}, [], []
    with_data, note, used_method = [], "", method or ws["scoring"]["method"]
    level2_max = {name: sum(i.max for i in system.items if i.level2 == name) for name in system.level2_names}
    for period in periods:
        deadline = ws.deadline(period)
        if period not in recorded:
            month_rows.append((period, deadline, False, sum(map(len, assignments.values())), math.nan, math.nan, math.nan))
            continue
        with_data.append(period)
        scores = ledger.accepted_scores(round_key(period, stage), system.id)
        result = score_round(scores, system, roster, ws.settings, method=used_method, intervals=False)
        note = result.method_note
        subj = result.subjects
        for code, name in zip(subj["subject"], subj["name"]):
            if code not in {row[0] for row in info}:
                info.append((code, name, "", ""))
        part = subj[["subject", "total", "rank", "grade", "n_assessors"]].copy()
        part["period"] = period
        monthly_parts.append(part)
        rated = subj[subj["n_assessors"] > 0]
        # Mean shares of 满分, kept at the 0.1% they are shown with.
        level2_rows[period] = {name: (half_up(float((rated[name] / level2_max[name]).mean()), 3) if len(rated) else math.nan)
                               for name in system.level2_names}
        level2_rows[period]["__total__"] = (half_up(float((rated["total"] / system.total).mean()), 3)
                                            if len(rated) else math.nan)
        # returns: an assignment is on time or late by when the file of its accepted sheet arrived
        sheets = ledger.sheets(round_key(period, stage), system.id)
        sheets = sheets[sheets["status"] == "accepted"]
        arrived = {(a, s): _local(t) for a, s, t in zip(sheets["assessor"], sheets["subject"], sheets["received_at"])}
        totals = [0, 0, 0, 0]
        for code, subjects in assignments.items():
            when = [arrived.get((code, s)) for s in subjects]
            on_time = sum(1 for w in when if w is not None and w <= deadline)
            late = sum(1 for w in when if w is not None and w > deadline)
            row = (len(subjects), on_time, late, len(subjects) - on_time - late)
            by_assessor.append((code, period, *row))
            totals = [t + v for t, v in zip(totals, row)]
        month_rows.append((period, deadline, True, *totals))

    subjects = pd.DataFrame(info, columns=["subject", "name", "province", "city"])
    monthly = pd.concat(monthly_parts, ignore_index=True) if monthly_parts else pd.DataFrame(
        columns=["subject", "total", "rank", "grade", "n_assessors", "period"])
    grid = pd.MultiIndex.from_product([subjects["subject"], periods], names=["subject", "period"]).to_frame(index=False)
    monthly = grid.merge(monthly, on=["subject", "period"], how="left")
    monthly["total"] = monthly["total"].astype(float)
    monthly["rank"] = monthly["rank"].astype(float)
    monthly["n_assessors"] = monthly["n_assessors"].fillna(0).astype(int)
    has_data = monthly["period"].isin(with_data)
    monthly["grade"] = np.where(has_data, monthly["grade"].fillna(NOT_RATED), NO_DATA)
    monthly["assigned"] = monthly["subject"].map(assigned_to).fillna(0).astype(int)
    monthly = monthly.sort_values(["subject", "period"], key=lambda c: c.map({s: n for n, s in enumerate(subjects["subject"])})
                                  if c.name == "subject" else c, kind="mergesort").reset_index(drop=True)
    previous = monthly.groupby("subject", sort=False)[["total", "rank"]].shift(1)
    decimals = int(ws["scoring"]["rank_decimals"])
    # Both totals are rounded already; rounding the difference removes float noise (0.0100000001).
    monthly["delta"] = round_series(monthly["total"] - previous["total"], decimals)
    monthly["rank_move"] = previous["rank"] - monthly["rank"]
    monthly = monthly[["subject", "period", "total", "rank", "grade", "n_assessors", "assigned", "delta", "rank_move"]]

    names = dict(zip(subjects["subject"], subjects["name"]))
    flags = []
    for r in monthly.itertuples(index=False):
        if not math.isnan(r.delta) and r.delta < -drop - 1e-9:
            before = r.total - r.delta
            flags.append((r.subject, names[r.subject], r.period, DROP,
                          f"总分由 {before:.2f} 降至 {r.total:.2f}，下降 {-r.delta:.2f} 分（超过 {drop:g} 分）"))
        if r.period in with_data and r.assigned > 0 and math.isnan(r.total):
            flags.append((r.subject, names[r.subject], r.period, UNRATED,
                          f"已分配给 {r.assigned} 名评估人，本月未收到有效评分"))
    flag_frame = pd.DataFrame(flags, columns=["subject", "name", "period", "kind", "message"])

    latest = with_data[-1] if with_data else None
    last = monthly[monthly["period"] == latest].set_index("subject") if latest else None
    for column, source in (("latest_total", "total"), ("latest_delta", "delta"), ("latest_rank", "rank"),
                           ("latest_move", "rank_move"), ("latest_grade", "grade")):
        subjects[column] = subjects["subject"].map(last[source]) if last is not None else math.nan
    subjects["n_flags"] = subjects["subject"].map(flag_frame.groupby("subject").size()).fillna(0).astype(int)
    order = subjects["latest_rank"].fillna(math.inf)
    subjects = subjects.assign(_o=order).sort_values(["_o", "subject"], kind="mergesort").drop(columns="_o").reset_index(drop=True)

    level2 = pd.DataFrame([(next(i.level1 for i in system.items if i.level2 == n), n, level2_max[n]) for n in system.level2_names]
                          + [("", "总分", system.total)], columns=["level1", "level2", "max"])
    for period in periods:
        values = level2_rows.get(period)
        level2[period] = [values[n] for n in system.level2_names] + [values["__total__"]] if values else math.nan

    returns_month = pd.DataFrame(month_rows, columns=["period", "deadline", "has_data", "assigned", "on_time", "late", "missing"])
    long = pd.DataFrame(by_assessor, columns=["assessor", "period", "assigned", "on_time", "late", "missing"])
    people = [(code, roster.assessors[code].name, roster.assessors[code].org, roster.assessors[code].contact)
              for code in assignments]
    returns_assessor = pd.DataFrame(people, columns=["assessor", "name", "org", "contact"])
    sums = long.groupby("assessor")[["assigned", "on_time", "late", "missing"]].sum()
    for column in ("assigned", "on_time", "late", "missing"):
        returns_assessor[column] = returns_assessor["assessor"].map(sums[column]).fillna(0).astype(int)
    for period in with_data:
        per = long[long["period"] == period].set_index("assessor")["missing"]
        returns_assessor[period] = returns_assessor["assessor"].map(per).fillna(0).astype(int)

    return RollupResult(system, periods, with_data, used_method, note, drop, monthly, subjects, level2,
                        flag_frame, returns_month, returns_assessor,
                        grades=[b["name"] for b in ws["scoring"]["grades"]] + [ws["scoring"]["fail"]],
                        bands=[(b["name"], float(b["min"])) for b in ws["scoring"]["grades"]], decimals=decimals)


def rollup(ws: Workspace, system: System, roster: Roster, ledger: Ledger, start: str | None = None,
           end: str | None = None, method: str | None = None, organiser: str | None = None,
           stage: str = SUPERVISION) -> RollupResult:
    """Compute the roll-up and write output/rollup/rollup-<system>-<from>_<to>.xlsx and .html
    (…_<to>-<stage>.xlsx for the rounds of a stage other than 督导)."""
    result = compute_rollup(ws, system, roster, ledger, start, end, method, stage)
    out = ws.output / "rollup"
    stem = f"rollup-{system.id}-{result.start}_{result.end}" + ("" if stage == SUPERVISION else f"-{stage}")
    result.xlsx = write_rollup_xlsx(result, out / f"{stem}.xlsx")
    result.html = write_text(out / f"{stem}.html", render_rollup(result, organiser or ws["round"]["organiser"],
                                                                 layout=ws["report"]))
    return result


# -- the workbook ------------------------------------------------------------------------------
def _num(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _month_label(result: RollupResult, period: str) -> str:
    return period if period in result.with_data else f"{period}（{NO_DATA}）"


def write_rollup_xlsx(result: RollupResult, path: str | Path) -> Path:
    """The roll-up workbook, written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        book = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                              "strings_to_numbers": False, "nan_inf_to_errors": False})
        book.set_properties({"title": f"{result.system.name} 月度汇总 {result.start}—{result.end}", "comments": "happyhome"})
        number = "0." + "0" * result.decimals if result.decimals > 0 else "0"  # the totals as compared
        f = {
            "head": book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True, "valign": "vcenter", "align": "center"}),
            "text": book.add_format({"border": 1}),
            "num": book.add_format({"border": 1, "num_format": number}),
            "int": book.add_format({"border": 1, "num_format": "0"}),
            "delta": book.add_format({"border": 1, "num_format": f"+{number};[Red]-{number};{number}"}),
            "move": book.add_format({"border": 1, "num_format": "↑0;[Red]↓0;–"}),
            "pct": book.add_format({"border": 1, "num_format": "0.0%"}),
            "nodata": book.add_format({"border": 1, "font_color": "#808080", "align": "center"}),
            "title": book.add_format({"bold": True, "font_size": 13}),
            "note": book.add_format({"text_wrap": True, "valign": "top"}),
            "red": book.add_format({"font_color": "#C00000"}),
        }

        def blank(sheet, r, c, value, fmt_name, period=None):
            if period is not None and period not in result.with_data:
                sheet.write_string(r, c, NO_DATA, f["nodata"])
            elif _num(value) is None:
                sheet.write_blank(r, c, None, f[fmt_name])
            else:
                sheet.write_number(r, c, float(value), f[fmt_name])

        def finish(sheet, n_rows, n_cols, widths, header_row=0, freeze_cols=2):
            for c, w in enumerate(widths):
                sheet.set_column(c, c, w)
            sheet.freeze_panes(header_row + 1, freeze_cols)
            sheet.autofilter(header_row, 0, header_row + max(n_rows, 1), n_cols - 1)
            sheet.set_landscape()
            sheet.set_paper(9)
            sheet.fit_to_pages(1, 0)
            sheet.repeat_rows(header_row)
            sheet.set_footer(f"&L{result.system.name} {result.start}—{result.end}&C第 &P 页，共 &N 页")

        months = result.periods
        totals, ranks, deltas, moves = (result.wide(c) for c in ("total", "rank", "delta", "rank_move"))
        info = ["编号", "名称", "省份", "城市"]
        subjects = result.subjects

        # 总分: totals by month, a sparkline, the latest change, rank, movement and grade
        ws = book.add_worksheet("总分")
        header = info + [_month_label(result, p) for p in months] + ["趋势", "较上月", "最新排名", "名次变化", "最新等级", "标记数"]
        ws.write_row(0, 0, header, f["head"])
        first_month, last_month = len(info), len(info) + len(months) - 1
        spark = last_month + 1
        for r, row in enumerate(subjects.itertuples(index=False), start=1):
            for c, value in enumerate((row.subject, row.name, row.province, row.city)):
                ws.write_string(r, c, str(value), f["text"])
            for c, period in enumerate(months, start=first_month):
                blank(ws, r, c, totals.at[row.subject, period], "num", period)
            ws.add_sparkline(r, spark, {"range": f"'总分'!{xl_rowcol_to_cell(r, first_month)}:{xl_rowcol_to_cell(r, last_month)}",
                                        "markers": True, "show_hidden": False, "empty_cells": "gaps"})
            blank(ws, r, spark + 1, row.latest_delta, "delta")
            blank(ws, r, spark + 2, row.latest_rank, "int")
            blank(ws, r, spark + 3, row.latest_move, "move")
            ws.write_string(r, spark + 4, str(row.latest_grade if isinstance(row.latest_grade, str) else NOT_RATED), f["text"])
            ws.write_number(r, spark + 5, row.n_flags, f["int"])
        n = len(subjects)
        if n:
            # Coloured by grade band, the same in every month: 80.0 is 良好 whatever the month's spread.
            top_left = xl_rowcol_to_cell(1, first_month, row_abs=False, col_abs=False)
            for grade, lowest, colour in grade_colours(result):
                rule = f"AND(ISNUMBER({top_left}),{top_left}>={lowest:g})" if lowest is not None else f"ISNUMBER({top_left})"
                ws.conditional_format(1, first_month, n, last_month, {
                    "type": "formula", "criteria": f"={rule}", "stop_if_true": True,
                    "format": book.add_format({"bg_color": colour})})
            ws.conditional_format(1, spark + 5, n, spark + 5, {"type": "cell", "criteria": ">", "value": 0, "format": f["red"]})
        finish(ws, n, len(header), [8, 24, 12, 10] + [11] * len(months) + [16, 9, 9, 9, 9, 7])

        # 较上月 and 排名: month-by-month changes
        for name, table, fmt_name, extra, extra_fmt in (("较上月", deltas, "delta", None, None),
                                                        ("排名", ranks, "int", moves, "move")):
            sheet = book.add_worksheet(name)
            head = info[:2] + [_month_label(result, p) for p in months]
            if extra is not None:
                head += [f"{p} 名次变化" for p in months[1:]]
            sheet.write_row(0, 0, head, f["head"])
            for r, code in enumerate(subjects["subject"], start=1):
                sheet.write_string(r, 0, code, f["text"])
                sheet.write_string(r, 1, str(subjects.at[r - 1, "name"]), f["text"])
                for c, period in enumerate(months, start=2):
                    blank(sheet, r, c, table.at[code, period], fmt_name, period)
                if extra is not None:
                    for c, period in enumerate(months[1:], start=2 + len(months)):
                        blank(sheet, r, c, extra.at[code, period], extra_fmt, period)
            finish(sheet, n, len(head), [8, 24] + [11] * (len(head) - 2))

        # 二级指标: mean share of 满分 by month
        sheet = book.add_worksheet("二级指标")
        head = ["一级指标", "二级指标", "满分"] + [_month_label(result, p) for p in months]
        sheet.write_row(0, 0, head, f["head"])
        for r, row in enumerate(result.level2.itertuples(index=False), start=1):
            sheet.write_string(r, 0, row.level1, f["text"])
            sheet.write_string(r, 1, row.level2, f["text"])
            sheet.write_number(r, 2, row.max, f["int"])
            for c, period in enumerate(months, start=3):
                blank(sheet, r, c, result.level2.at[r - 1, period], "pct", period)
        if len(months):
            sheet.conditional_format(1, 3, len(result.level2), 2 + len(months), {"type": "2_color_scale",
                                                                                  "min_color": "#FCFCFF", "max_color": "#63BE7B"})
        finish(sheet, len(result.level2), len(head), [10, 14, 7] + [11] * len(months))

        # 标记
        sheet = book.add_worksheet("标记")
        head = ["编号", "名称", "期次", "类型", "说明"]
        sheet.write_row(0, 0, head, f["head"])
        for r, row in enumerate(result.flags.itertuples(index=False), start=1):
            for c, value in enumerate(row):
                sheet.write_string(r, c, str(value), f["text"])
        finish(sheet, len(result.flags), len(head), [8, 24, 9, 7, 60])

        # 回收情况
        sheet = book.add_worksheet("回收（按月）")
        head = ["期次", "截止时间", "应收", "按时", "逾期", "未收", "回收率"]
        sheet.write_row(0, 0, head, f["head"])
        for r, row in enumerate(result.returns_month.itertuples(index=False), start=1):
            sheet.write_string(r, 0, row.period if row.has_data else f"{row.period}（{NO_DATA}）", f["text"])
            sheet.write_string(r, 1, row.deadline.strftime("%Y-%m-%d %H:%M"), f["text"])
            sheet.write_number(r, 2, row.assigned, f["int"])
            for c, value in enumerate((row.on_time, row.late, row.missing), start=3):
                blank(sheet, r, c, value, "int", row.period)
            if row.has_data and row.assigned:
                sheet.write_formula(r, 6, f"=IF(C{r + 1}=0,\"\",(D{r + 1}+E{r + 1})/C{r + 1})", f["pct"],
                                    (row.on_time + row.late) / row.assigned)
            else:
                blank(sheet, r, 6, None, "pct", row.period)
        finish(sheet, len(result.returns_month), len(head), [16, 17, 8, 8, 8, 8, 9], freeze_cols=1)

        sheet = book.add_worksheet("回收（按评估人）")
        head = ["评估人编号", "姓名", "单位", "联系方式", "应收", "按时", "逾期", "未收"] + [f"{p} 未收" for p in result.with_data]
        sheet.write_row(0, 0, head, f["head"])
        ra = result.returns_assessor
        for r, row in enumerate(ra.to_dict("records"), start=1):
            for c, key in enumerate(("assessor", "name", "org", "contact")):
                sheet.write_string(r, c, str(row[key]), f["text"])
            for c, key in enumerate(["assigned", "on_time", "late", "missing", *result.with_data], start=4):
                sheet.write_number(r, c, int(row[key]), f["int"])
        if len(ra):
            sheet.conditional_format(1, 7, len(ra), len(head) - 1, {"type": "cell", "criteria": ">", "value": 0, "format": f["red"]})
        finish(sheet, len(ra), len(head), [10, 9, 30, 22, 7, 7, 7, 7] + [12] * len(result.with_data))

        # 说明
        sheet = book.add_worksheet("说明")
        sheet.set_column(0, 0, 16)
        sheet.set_column(1, 1, 90)
        sheet.write_string(0, 0, f"{result.system.name} 月度汇总", f["title"])
        missing_months = [p for p in months if p not in result.with_data]
        lines = [
            ("指标体系", f"{result.system.name}（{result.system.id} {result.system.version}）"),
            ("期间", f"{result.start} 至 {result.end}，共 {len(months)} 个月"),
            ("有数据的月份", "、".join(result.with_data) or "无"),
            ("无数据的月份", "、".join(missing_months) or "无"),
            ("计分方法", result.method_note or result.method),
            ("月度数字", "每月的总分、排名、等级与当月汇总表（summary）一致：按当月有效评分重新计算。"),
            ("较上月", "本月总分减上月总分；上月或本月未评、或上月无数据时为空。"),
            ("名次变化", "上月排名减本月排名：↑ 表示名次上升，↓ 表示下降。"),
            ("标记", f"总分较上月下降超过 {result.drop_points:g} 分；或已分配评估人但当月未收到有效评分（未评）。"),
            ("回收", "以评估对象的工作表计：按时 = 截止时间前收到并通过校验；逾期 = 截止后收到；未收 = 未收到或未通过校验。"
                     "应收按当前名单中的分配计算，收到时间为文件放入回收文件夹的时间。"),
            ("生成时间", result.generated.strftime("%Y-%m-%d %H:%M")),
        ]
        for r, (k, v) in enumerate(lines, start=2):
            sheet.write_string(r, 0, k, f["head"])
            sheet.write_string(r, 1, v, f["note"])
        # The 总分 sheet's colours, here so that sheet stays a plain table (filters, imports).
        legend = len(lines) + 2
        sheet.write_string(legend, 0, "总分表底色", f["head"])
        sheet.set_column(2, 2 + len(grade_colours(result)), 14)
        sheet.write_string(legend, 1, "按等级着色（与当月等级一致，不随当月最高、最低分变化）：", f["note"])
        for k, (grade, lowest, colour) in enumerate(grade_colours(result)):
            label = f"{grade} ≥ {lowest:g}" if lowest is not None else (
                f"{grade} < {result.bands[-1][1]:g}" if result.bands else grade)
            sheet.write_string(legend + 1, 1 + k, label, book.add_format({"border": 1, "bg_color": colour, "align": "center"}))
        book.close()
    return path


# -- the HTML page -----------------------------------------------------------------------------
# Light tints of the grade badges' colours (优秀 green, 良好 blue, 合格 amber); the fail grade is red.
BAND_TINTS = ("#c6f6d5", "#bee3f8", "#fefcbf", "#e9d8fd", "#b2f5ea")
FAIL_TINT, NO_TINT = "#fed7d7", "#edf2f7"


def grade_colours(result: RollupResult) -> list[tuple[str, float | None, str]]:
    """(grade, lowest total or None for the fail grade, background colour), best first."""
    bands = [(name, lowest, BAND_TINTS[k % len(BAND_TINTS)]) for k, (name, lowest) in enumerate(result.bands)]
    return bands + [(result.grades[-1], None, FAIL_TINT)]


def _heat(grade: str, colours: dict[str, str]) -> str:
    """The background of a month's total: its grade band's colour (grey when not rated)."""
    return colours.get(grade, NO_TINT)


def sparkline_svg(values: list[float | None], width: int = 90, height: int = 22) -> str:
    """A tiny inline SVG line of one subject's totals; gaps where a month has none."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = (hi - lo) or 1.0
    step = (width - 6) / max(len(values) - 1, 1)
    points, segments = [], []
    for n, v in enumerate(values):
        if v is None:
            if points:
                segments.append(points)
            points = []
            continue
        points.append((3 + n * step, height - 3 - (v - lo) / span * (height - 6)))
    if points:
        segments.append(points)
    lines = "".join(f'<polyline fill="none" stroke="#2b6cb0" stroke-width="1.5" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in seg)}"/>'
                    for seg in segments)
    x, y = segments[-1][-1]
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="趋势">{lines}<circle cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="#2b6cb0"/></svg>')


def trend_chart(result: RollupResult, codes: list[str], chart_id: str, n_up: int = 0) -> str:
    """One line chart of the selected subjects' totals by month (pygal, inline SVG); the first
    `n_up` are drawn in greens, the rest in reds."""
    import pygal

    from pipeline import charts

    greens, reds = ("#22543d", "#2f855a", "#38a169", "#68d391"), ("#742a2a", "#c53030", "#e53e3e", "#fc8181")
    totals = result.wide("total")
    known = [float(v) for c in codes for v in totals.loc[c] if _num(v) is not None]
    lo = math.floor(min(known) / 5) * 5 if known else 0
    hi = min(math.ceil(max(known) / 5) * 5, result.system.total) if known else result.system.total
    colors = [greens[n % 4] if n < n_up else reds[(n - n_up) % 4] for n in range(len(codes))]
    chart = pygal.Line(style=charts._style(colors), width=900, height=400, allow_interruptions=True, range=(lo, hi),
                       value_formatter=lambda v: f"{v:.2f}", **{**charts._config(margin=12), "show_legend": True,
                                                               "print_values": False, "legend_at_bottom": True,
                                                               "legend_at_bottom_columns": 4})
    chart.x_labels = [p if p in result.with_data else f"{p} {NO_DATA}" for p in result.periods]
    names = dict(zip(result.subjects["subject"], result.subjects["name"]))
    for code in codes:
        chart.add(f"{code} {names[code]}", [_num(totals.at[code, p]) for p in result.periods])
    return charts._finish(chart, chart_id)


def level2_chart(result: RollupResult, chart_id: str) -> str:
    import pygal

    from pipeline import charts

    chart = pygal.Line(style=charts._style(("#2b6cb0", "#2f855a", "#b7791f", "#c53030", "#6b46c1", "#319795", "#d53f8c", "#718096")),
                       width=900, height=400, allow_interruptions=True, value_formatter=lambda v: f"{v:.1f}%",
                       **{**charts._config(margin=12), "show_legend": True, "print_values": False,
                          "legend_at_bottom": True, "legend_at_bottom_columns": min(len(result.system.level2_names), 7)})
    chart.x_labels = [p if p in result.with_data else f"{p} {NO_DATA}" for p in result.periods]
    for row in result.level2.to_dict("records"):
        if row["level2"] == "总分":
            continue
        chart.add(row["level2"], [None if _num(row[p]) is None else round(row[p] * 100, 1) for p in result.periods])
    return charts._finish(chart, chart_id)


def movers(result: RollupResult, n: int = 4) -> tuple[list[str], list[str]]:
    """The subjects whose total rose and fell most between their first and last month with a total."""
    totals = result.wide("total")
    change = {}
    for code, row in totals.iterrows():
        known = row.dropna()
        if len(known) >= 2:
            change[code] = float(known.iloc[-1] - known.iloc[0])
    ordered = sorted(change, key=lambda c: (change[c], c))
    fallers = [c for c in ordered[:n] if change[c] < 0]
    risers = [c for c in reversed(ordered[-n:]) if change[c] > 0]
    return risers, fallers


def heat_table(result: RollupResult, *, page_rows: int) -> dict:
    """The heatmap of a large roll-up as a `pipeline.digest.paged_table`, drawn by the same
    script as the digest's ranking. Cells: 编号, 名称, the totals by month (null where none), their
    grades (places in result.grades, len(grades) for none: the tints), 较上月, 最新排名, 名次变化,
    最新等级, 省份, 标记 (下降、未评 in any month)."""
    from pipeline.digest import fmt_int, paged_table

    totals, grades = result.wide("total"), result.wide("grade")
    place = {g: n for n, g in enumerate(result.grades)}
    kinds = result.flags.groupby("subject", sort=False)["kind"].agg(set).to_dict() if len(result.flags) else {}
    rows = []
    for s in result.subjects.to_dict("records"):
        code = s["subject"]
        move = _num(s["latest_move"])
        rows.append([code, s["name"], [_num(totals.at[code, p]) for p in result.periods],
                     [place.get(grades.at[code, p], len(place)) for p in result.periods],
                     _num(s["latest_delta"]), fmt_int(s["latest_rank"]), None if move is None else int(move),
                     s["latest_grade"] if isinstance(s["latest_grade"], str) else "", s["province"] or "",
                     "、".join(k for k in (DROP, UNRATED) if k in kinds.get(code, ()))])
    columns = ([["text", "", 0], ["text", "nowrap", 1]]
               + [["heat", "m", 2, k] if p in result.with_data else ["nodata", "m nodata"]
                  for k, p in enumerate(result.periods)]
               + [["spark", "", 2], ["delta", "n", 4], ["text", "n", 5], ["move", "n", 6], ["badge", "", 7]])
    latest = result.subjects["latest_grade"]
    grade_options = [(g, int((latest == g).sum())) for g in result.grades + [NOT_RATED] if (latest == g).any()]
    flag_options = [(k, sum(k in v for v in kinds.values())) for k in (DROP, UNRATED) if any(k in v for v in kinds.values())]
    return paged_table(rows, columns, body="heat-rows", keys={"code": 0, "name": 1, "tints": 3, "grade": 7,
                                                              "province": 8, "flag": 9},
                       grades=result.grades, page_rows=page_rows, grade_options=grade_options,
                       flag_options=flag_options, decimals=result.decimals,
                       noscript="同一文件夹中同名的 .xlsx 汇总表（“总分”页）",
                       tints=[colour for _, _, colour in grade_colours(result)] + [NO_TINT])


def rollup_context(result: RollupResult, organiser: str = "", layout: dict | None = None) -> dict:
    """Everything rollup.html shows. `layout` is the workspace's [report] settings: a roll-up of
    more than `digest_full_max` subjects gets the digest's large-round treatment (the heatmap as
    a paged, searchable, filterable table drawn by the script from embedded data, printed whole;
    at most `digest_flags_max` rows of 标记, the largest drops first)."""
    from markupsafe import Markup

    from pipeline.digest import LAYOUT

    layout = {**LAYOUT, **(layout or {})}
    large = len(result.subjects) > int(layout["digest_full_max"])
    rows, flags = [], result.flags
    if not large:
        totals, grades = result.wide("total"), result.wide("grade")
        colours = {grade: colour for grade, _, colour in grade_colours(result)}
        for s in result.subjects.to_dict("records"):
            values = [_num(totals.at[s["subject"], p]) for p in result.periods]
            cells = [(p, v, _heat(grades.at[s["subject"], p], colours)) for p, v in zip(result.periods, values)]
            rows.append({**s, "cells": cells, "spark": Markup(sparkline_svg(values))})
    else:
        # The latest month first, in it the largest drops first (未评 after them).
        delta = flags.merge(result.monthly[["subject", "period", "delta"]], on=["subject", "period"], how="left")["delta"]
        order = flags.assign(_latest=flags["period"].map({p: -n for n, p in enumerate(result.periods)}).values,
                             _delta=delta.where(flags["kind"].eq(DROP).values, 0.0).fillna(0.0).values)
        flags = order.sort_values(["_latest", "_delta"], kind="mergesort").head(int(layout["digest_flags_max"]))
    risers, fallers = movers(result)
    return {
        "title": f"{result.system.name} · 月度汇总 {result.start} 至 {result.end}",
        "result": result,
        "system": result.system,
        "organiser": organiser,
        "periods": result.periods,
        "with_data": result.with_data,
        "no_data": [p for p in result.periods if p not in result.with_data],
        "rows": rows,
        "n_subjects": len(result.subjects),
        "large": large and {
            "table": heat_table(result, page_rows=int(layout["digest_page_rows"])),
            "more_flags": len(result.flags) - len(flags),
        },
        "level2": result.level2.to_dict("records"),
        "flags": flags.to_dict("records"),
        "n_drops": int((result.flags["kind"] == DROP).sum()),
        "n_unrated": int((result.flags["kind"] == UNRATED).sum()),
        "returns_month": result.returns_month.to_dict("records"),
        "returns_assessor": result.returns_assessor.to_dict("records"),
        "risers": risers,
        "fallers": fallers,
        "trend_chart": Markup(trend_chart(result, risers + fallers, "trend", len(risers))) if risers or fallers else "",
        "level2_chart": Markup(level2_chart(result, "level2")) if result.with_data else "",
        "generated": result.generated.strftime("%Y-%m-%d %H:%M"),
        "grades": result.grades,
        "bands": grade_colours(result),
        "decimals": result.decimals,
    }


def render_rollup(result: RollupResult, organiser: str = "", layout: dict | None = None) -> str:
    from pipeline.digest import render

    return render("rollup.html", **rollup_context(result, organiser, layout))
