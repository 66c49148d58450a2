"""`happyhome report`: the round's summary workbook, results CSV and HTML digest.

Reads the accepted scores from the ledger, scores them (`pipeline.scoring`), and writes
output/<period>/summary-<system>.xlsx, results-<system>.csv and digest-<system>.html, each
atomically. Every text that came from an assessor or the roster is written as text.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import re
import unicodedata
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from pipeline import corrections as amendments
from pipeline.atomic import atomic_path
from pipeline.blocksheet import BlockWorkbook, write_value
from pipeline.calibration import INTERVAL_NOTE
from pipeline.config import Workspace
from pipeline.digest import agreement_note, category_shares, digest_context, flag_counts, write_digest
from pipeline.errors import InputError, UsageError
from pipeline.i18n import _
from pipeline.ledger import Ledger
from pipeline.names import inert_csv
from pipeline.roster import Roster, read_roster_for
from pipeline.rounds import check_key, cli_args, split_key
from pipeline import selection as selecting
from pipeline import selfcheck
from pipeline.status import CONFLICT, NOT_RECEIVED, StatusResult, round_status
from pipeline.scoring import (BY_COLUMNS, FLAG_KINDS, METHODS, RoundResult, half_up, rounding_note, score_base,
                              with_intervals)
from pipeline.systems import LEVEL1, System, load_system
from pipeline.workers import Background, start_method, trim_heap

ACCEPTANCE = "验收"  # the stage whose report also judges 通过 / 整改后复验 / 不通过 (pipeline.acceptance)
RANK_HEAD = ["排名", "编号", "名称", "类型", "省份", "城市", "总分", "等级", "评估人数"]


@dataclass
class ReportResult:
    """What `report` wrote and the numbers behind it."""

    period: str
    system: System
    scores: RoundResult
    summary: Path
    csv: Path
    digest: Path
    detail_csv: Path
    n_scores: int
    n_files: int
    assigned: int
    received: int
    selection: "selecting.Selection | None" = None  # a 遴选 round's outcome
    publicity: list[Path] = field(default_factory=list)  # its 公示名单 .xlsx and .docx
    corrections: int = 0  # corrections in force (amend) included in the scores
    acceptance: object | None = None  # pipeline.acceptance.AcceptanceResult in 验收 rounds
    selfcheck: object | None = None  # pipeline.selfcheck.SelfComparison when self-assessments are in

    @property
    def paths(self) -> list[Path]:
        return [self.summary, self.csv, self.detail_csv, self.digest, *self.publicity,
                *(self.acceptance.paths if self.acceptance else [])]


# -- inputs ---------------------------------------------------------------------------------
def _inputs(ws: Workspace, period: str, system: System, roster: "Roster | Future[Roster]"):
    """Accepted scores (corrections applied), the round's files, its status (assigned, received,
    missing), its corrections and self-assessment scores. `roster` may still be being read (a
    future): the scores are read meanwhile, and a roster that cannot be read is the error raised,
    as when it was read first."""
    try:
        with Ledger.open(ws, reading=True) as ledger:
            # One snapshot: a collect committing meanwhile cannot split it.
            with ledger.snapshot():
                scores, files = ledger.accepted_scores(period, system.id), ledger.files(period, system.id)
                roster = roster.result() if isinstance(roster, Future) else roster
                return (scores, files, round_status(ws, system, period, roster, ledger),
                        ledger.corrections(period, system.id), ledger.self_scores(period, system.id))
    except BaseException:
        if isinstance(roster, Future):
            roster.result()  # the roster's own error first
        raise


def read_inputs(ws: Workspace, period: str, system: System):
    """The roster (`read_roster_for`) and `_inputs`: the roster is read in a thread while the
    ledger is read (a national month: 10,000 subjects and 40,000 assignments beside 760,000 scores;
    SQLite and the workbook reader each leave the interpreter free part of the time)."""
    with ThreadPoolExecutor(1, thread_name_prefix="happyhome-roster") as pool:
        roster = pool.submit(read_roster_for, ws.path("roster"), system)
        inputs = _inputs(ws, period, system, roster)
        return (roster.result(), *inputs)


def chase_list(status: StatusResult) -> list[dict]:
    """The digest's chase list: per assessor, the assigned subjects without an accepted sheet."""
    return [
        {"assessor": a.code, "name": a.name, "contact": a.contact,
         "missing": [f"{m.name}（{m.subject}）" + {NOT_RECEIVED: "", CONFLICT: "，两份评分冲突"}.get(m.reason, "，已交但未通过校验")
                     for m in a.missing]}
        for a in status.assessors if a.missing
    ]


def sheet_rows(scores: pd.DataFrame, columns) -> tuple[np.ndarray, np.ndarray] | None:
    """Each score's sheet (a code) and each sheet's first score, when every score of a sheet
    (`sheet_id`) has the same value in each of `columns` (as the ledger's do: who, whose, which
    file); else None. What is the same for a sheet is then worked out once per sheet (a national
    month: 40,000 sheets, 760,000 scores)."""
    if "sheet_id" not in scores or not len(scores):
        return None
    sheet, ids = pd.factorize(scores["sheet_id"])
    if (sheet < 0).any():
        return None
    sheet = sheet.astype(np.min_scalar_type(-len(ids) - 1))
    rows = np.arange(len(scores))
    first = np.empty(len(ids), dtype=np.int64)
    first[sheet[::-1]] = rows[::-1]
    for name in columns:
        values = scores[name].to_numpy(dtype=object)
        if not np.array_equal(values[first][sheet], values):  # (a blank, NaN, is unequal to itself: no shortcut)
            return None
    return sheet, first


def _self_files(files: pd.DataFrame, roster: Roster) -> int:
    """How many of the round's files are subjects' own self-assessment forms (`Roster.is_self`)."""
    return sum(map(roster.is_self, files["assessor"])) if len(files) else 0


def _files(scores: pd.DataFrame, files: pd.DataFrame) -> list[dict]:
    """The files that went into the scores: name, sha256, assessor, received, scores counted, and
    whether the form was verified as this office's (files.verified: signed, unsigned, unverified)."""
    if not len(scores):
        return []
    # Grouped by (sha256, file) in order of appearance, as groupby(sort=False) would, on codes, and
    # from each sheet's first score when the sheets agree.
    sheets = sheet_rows(scores, ("sha256", "file", "assessor"))
    rows, size = (sheets[1], np.bincount(sheets[0])) if sheets else (slice(None), np.ones(len(scores), dtype=np.int64))
    sha, shas = pd.factorize(scores["sha256"].to_numpy(dtype=object)[rows])
    name, names = pd.factorize(scores["file"].to_numpy(dtype=object)[rows])
    keep = np.flatnonzero((sha >= 0) & (name >= 0))  # a file without a hash or a name is not grouped
    pair, pairs = pd.factorize(sha[keep].astype(np.int64) * max(len(names), 1) + name[keep])
    n = np.bincount(pair, weights=size[keep], minlength=len(pairs)).astype(np.int64)
    who = scores["assessor"].to_numpy(dtype=object)[rows][keep]
    known = np.flatnonzero(pd.notna(who))  # "first" is each file's first assessor that is not blank
    first = np.full(len(pairs), -1)
    first[pair[known][::-1]] = known[::-1]
    # One round's rows: a file's bytes are recorded once per round, so sha256 is a key here.
    received = dict(zip(files["sha256"], files["received_at"])) if len(files) else {}
    verified = dict(zip(files["sha256"], files["verified"])) if len(files) and "verified" in files else {}
    return [{"name": names[pairs[g] % max(len(names), 1)], "sha256": shas[pairs[g] // max(len(names), 1)],
             "assessor": who[first[g]] if first[g] >= 0 else None, "received_at": str(received.get(sha, "")),
             "n": int(n[g]), "verified": str(verified.get(sha, "") or "")}
            for g, sha in enumerate(shas[pairs // max(len(names), 1)])]


# -- the workbook ---------------------------------------------------------------------------
def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def text_width(value) -> float:
    """Columns a text takes in Excel's units: a Chinese character is nearly two."""
    return _width(str(value))


@functools.lru_cache(maxsize=65536)
def _width(text: str) -> float:
    # Cached: a sheet's columns repeat their texts (a national month's 排名 has 31 provinces).
    return sum(1.8 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _shown(value) -> str:
    if _missing(value):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e6 else f"{value:.2f}"
    return str(value)


def fit_widths(header: list[str], rows: list[list], caps: list | None = None, sample: int = 2000) -> list[float]:
    """Column widths from content: the longest value (of the first `sample` rows) or half the
    header (headers wrap onto two lines), plus a margin, capped by `caps` (default 40)."""
    widths = []
    for c, h in enumerate(header):
        longest = max((text_width(_shown(r[c])) for r in rows[:sample] if c < len(r)), default=0)
        # A header wraps anywhere between Chinese characters, not inside a Latin word (sha256).
        head = max((text_width(w) for w in re.findall(r"[\x21-\x7e]+", str(h))), default=0)
        need = math.ceil(max(longest, text_width(h) / 2, min(head, 12))) + 2
        cap = caps[c] if caps and c < len(caps) and caps[c] else 40
        widths.append(max(5, min(need, cap)))
    return widths


def line_count(value, width: float) -> int:
    """Lines a wrapped text takes in a column `width` wide."""
    return max(1, math.ceil(text_width(value) / max(width - 1, 1)))


class _Sheet:
    """A worksheet writer that never lets text become a formula."""

    def __init__(self, book, name: str, formats: dict):
        self.ws = book.get_worksheet_by_name(name) or book.add_worksheet(name)  # added in its place already, or now
        self.name = name
        self.f = formats

    def put(self, row: int, col: int, value, fmt=None) -> None:
        write_value(self.ws, row, col, value, fmt)

    def rows(self, first: int, rows: list[list], formats: list | None = None) -> None:
        """`rows` from row `first` down, each cell as `put` writes it, in one call: the sheet
        (`blocksheet.BlockWorksheet`) keeps them as a block and writes their XML in bulk (a
        national month's summary has 515,000 cells)."""
        self.ws.write_rows(first, rows, formats)

    def table(self, header: list[str], rows: list[list], formats: list | None = None, caps: list | None = None,
              freeze_cols: int = 0, first: int = 0) -> int:
        """Header, rows, filter, frozen header, print setup; returns the last row index.

        Column widths come from the content (capped by `caps`); a row whose text wraps is made
        tall enough to show it whole, since neither Excel nor LibreOffice does that on opening.
        """
        widths = fit_widths(header, rows, caps)
        wraps = [c for c, fmt in enumerate(formats or []) if fmt is self.f["wrap"]]
        for c, h in enumerate(header):
            self.ws.write_string(first, c, h, self.f["head"])
        self.rows(first + 1, rows, formats)
        for c in wraps:
            for r, values in enumerate(rows, start=first + 1):
                if isinstance(values[c], str) and line_count(values[c], widths[c]) > 1:
                    tallest = max(line_count(values[k], widths[k]) for k in wraps if isinstance(values[k], str))
                    self.ws.set_row(r, 14 * tallest + 2)
        last = first + max(len(rows), 1)
        self.ws.autofilter(first, 0, last, len(header) - 1)
        self.ws.freeze_panes(first + 1, freeze_cols)
        head_lines = max(line_count(h, w) for h, w in zip(header, widths)) if header else 1
        self.ws.set_row(first, max(30, 14 * min(head_lines, 4) + 4))
        for c, w in enumerate(widths):
            self.ws.set_column(c, c, w)
        self.print_setup(first)
        return last

    def print_setup(self, header_row: int = 0) -> None:
        self.ws.set_landscape()
        self.ws.set_paper(9)  # A4
        self.ws.fit_to_pages(1, 0)
        self.ws.repeat_rows(0, header_row)
        self.ws.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
        self.ws.set_footer("&C第 &P 页，共 &N 页")


def _formats(book, decimals: int = 2) -> dict:
    base = {"font_name": "Microsoft YaHei", "font_size": 10, "valign": "top"}
    number = "0." + "0" * decimals if decimals > 0 else "0"  # shows the official value, no more, no less
    return {
        "head": book.add_format({**base, "bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True,
                                 "align": "center", "valign": "vcenter"}),
        "text": book.add_format(base),
        # Rank, code and grade centred: a right-aligned rank beside a left-aligned code reads "1 C006".
        "center": book.add_format({**base, "align": "center"}),
        "center_int": book.add_format({**base, "align": "center", "num_format": "0"}),
        "wrap": book.add_format({**base, "text_wrap": True}),
        "num": book.add_format({**base, "num_format": number}),
        "int": book.add_format({**base, "num_format": "0"}),
        "int_left": book.add_format({**base, "num_format": "0", "align": "left"}),
        "num_left": book.add_format({**base, "num_format": number, "align": "left"}),
        "pct": book.add_format({**base, "num_format": "0.0%"}),
        "bold_num": book.add_format({**base, "num_format": number, "bold": True}),
        "full": book.add_format({**base, "num_format": "0.##", "bold": True, "bg_color": "#F2F2F2"}),
        "full_text": book.add_format({**base, "bold": True, "bg_color": "#F2F2F2"}),
        "bad": book.add_format({"font_color": "#9C0006", "bg_color": "#FFC7CE"}),
        # A score changed by a correction after 公示 (评分明细): amber, bold, with a comment.
        "corrected": book.add_format({**base, "num_format": number, "bold": True, "bg_color": "#FFE699"}),
        "title": book.add_format({**base, "bold": True, "font_size": 12}),
    }


def rank_columns(res: RoundResult) -> tuple[list[str], list[list]]:
    """The 排名 table (sheet and CSV): header and rows."""
    level2 = list(res.system.level2_names)
    header = RANK_HEAD + level2 + ["标记"]
    extra = []
    if "rank_label" in res.subjects and res.params["bootstrap"]:
        extra.append((f"排名（{res.params['level']:.0%}区间）", "rank_label"))
    if res.by:
        extra.append((f"{res.by}内排名", "group_rank"))
    if res.calibrated:
        extra += [("校准总分", "calibrated_total"), ("校准排名", "calibrated_rank")]
    header += [h for h, _ in extra]
    keys = ["rank", "subject", "name", "type", "province", "city", "total", "grade", "n_assessors", *level2, "flags",
            *[k for _, k in extra]]
    # Column by column (as Python values, like to_dict's records), then zipped into rows.
    return header, [list(row) for row in zip(*(res.subjects[k].tolist() for k in keys))]


def write_summary(path: Path, res: RoundResult, **options) -> Path:
    """The summary workbook, written atomically; `options` are `summary_book`'s."""
    with atomic_path(path) as tmp:
        summary_book(tmp, res, **options)
    return path


def summary_book(tmp: Path, res: RoundResult, *, period: str, detail: "pd.DataFrame | int", files: list[dict],
                 generated: datetime, detail_max_rows: int = 100_000, detail_csv: str = "",
                 selection: "selecting.Selection | None" = None, register: list[list] | None = None,
                 acceptance=None, comparison: "selfcheck.SelfComparison | None" = None,
                 declared: list | None = None) -> None:
    """The summary workbook (xlsxwriter), written to `tmp` (`write_summary` makes it atomic); a
    遴选 round's starts with 遴选结果, and `acceptance` (a 验收 round's `acceptance.AcceptanceResult`) adds 验收结果 after 排名.
    `detail` is the 评分明细 table, or only its number of rows when that is above `detail_max_rows`
    (the sheet then says where the table is). `declared` (the round's declared conflicts,
    `StatusResult.declarations`) is counted per assessor in the 评估人 sheet's 声明回避 column.

    In a round without 遴选 or 验收, the sheets that need no bootstrap interval (指标明细, 评分明细,
    评估人, 更正记录) are written first, into their places, and the others after (the order the
    workbook has been written in since a second process began them before the intervals)."""
    system = res.system
    book = BlockWorkbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False})
    book.set_properties({"title": f"{system.name} {period} 评估汇总", "author": "happyhome", "created": generated})
    f = _formats(book, res.params["rank_decimals"])
    early = selection is None and acceptance is None
    if early:
        # Every sheet in its place first (a sheet's place is the order it was added in).
        for name in ["排名", "图表", "指标明细", *(["自评对比"] if comparison is not None else []), "评分明细", "评估人",
                     "争议", *(["排名变化"] if res.calibrated else []), "更正记录", "说明"]:
            book.add_worksheet(name)
        _items_sheet(book, f, res, comparison)
        _scores_sheet(book, f, detail, detail_max_rows, detail_csv)
        _assessor_sheet(book, f, res, files, declared)
        _corrections_sheet(book, f, register or [])
    if selection is not None:
        selecting.write_result_sheet(book, f, selection)
    _rank_sheet(book, f, res)
    if acceptance is not None:
        from pipeline.acceptance import write_result_sheet

        write_result_sheet(book, f, acceptance)
    _chart_sheet(book, f, res)
    if not early:
        _items_sheet(book, f, res, comparison)
    if comparison is not None:
        _self_sheet(book, f, res, comparison)
    if not early:
        _scores_sheet(book, f, detail, detail_max_rows, detail_csv)
        _assessor_sheet(book, f, res, files, declared)
    _flags_sheet(book, f, res)
    if res.calibrated:
        _changes_sheet(book, f, res)
    if not early:
        _corrections_sheet(book, f, register or [])
    _about_sheet(book, f, res, period=period, files=files, generated=generated)
    book.close()


class Steps:
    """The report's second process (`summary_apart`) and what passes between it and the report's
    process, through two pipes: first what it starts on (`begin`: the summary's temporary path,
    `score_base`'s result, `summary_book`'s other inputs, the roster and settings; or `skip`: not
    needed); then it works out the bootstrap intervals and sends back the fields they change
    (`FIELDS`), while the report's process writes the scores CSV, which needs none. Everything
    is kept on the side that has it, so that the report's process can do the second one's part
    when that one went away (`result`, and `Background` running `summary_apart` here)."""

    FIELDS = ("subjects", "flags", "params", "rank_changes")
    _UNSENT = object()

    def __init__(self) -> None:
        import multiprocessing as mp

        self._in, self._out = mp.Pipe(duplex=False)  # to the second process
        self._back_in, self._back_out = mp.Pipe(duplex=False)  # from it
        self._begun: object = self._UNSENT
        self._result: RoundResult | None = None
        self._here = False  # the report's process

    def started(self) -> None:
        """In the report's process, once the second process has its copies of the pipes' ends."""
        self._here = True
        self._in.close()
        self._back_out.close()

    def begin(self, tmp: Path, base: RoundResult, options: dict, roster: Roster | None, settings: dict) -> None:
        """In the report's process: the summary is to be written to `tmp` from `base` with its
        intervals, and `options` (`summary_book`'s)."""
        self._begun = (tmp, base, options, roster, settings)
        self._post(self._begun)

    def skip(self) -> None:
        """In the report's process: the summary is written here (a round too small to share)."""
        self._begun = None
        self._post(None)

    def begun(self) -> "tuple | None":
        """What `begin` sent (None: `skip`, or the report's process went away)."""
        if self._begun is self._UNSENT:  # in the second process: wait for it
            self._out.close()
            self._back_in.close()
            try:
                self._begun = self._in.recv()
            except (EOFError, OSError):
                self._begun = None
        return self._begun

    def result(self) -> RoundResult:
        """The result with intervals (`scoring.with_intervals`). In the second process: worked out
        and its fields sent back; in the report's process: those fields, or, when the second
        process went away without them, worked out here."""
        if self._result is None:
            _, base, _, roster, settings = self._begun
            fields = None
            if self._here:
                try:
                    fields = self._back_in.recv()
                except (EOFError, OSError):
                    pass
            if fields is not None:
                self._result = replace(base, **fields)
            else:
                self._result = with_intervals(base, roster, settings)
                if not self._here:
                    try:
                        self._back_out.send({name: getattr(self._result, name) for name in self.FIELDS})
                    except OSError:  # the report's process is gone
                        pass
        return self._result

    def _post(self, message) -> None:
        try:
            self._out.send(message)
        except OSError:  # the second process is gone: its part is done here instead
            pass


def summary_apart(steps: Steps) -> None:
    """The report's second process (`report`): once it is told what the round is (`Steps.begun`),
    the bootstrap intervals (sent back at once), then the summary workbook."""
    begun = steps.begun()
    if begun is not None:
        tmp, _, options, _, _ = begun
        summary_book(tmp, steps.result(), **options)


def _rank_sheet(book, f, res: RoundResult) -> None:
    sh = _Sheet(book, "排名", f)
    header, rows = rank_columns(res)
    n_level2 = len(res.system.level2_names)
    fmts = [f["center_int"], f["center"], f["text"], f["text"], f["text"], f["text"], f["bold_num"], f["center"],
            f["center_int"]]
    fmts += [f["num"]] * n_level2 + [f["wrap"]]
    caps = [None, 10, 30, 14, 16, 16, None, None, None] + [None] * n_level2 + [36]
    for h in header[len(fmts):]:
        fmts.append(f["num"] if h == "校准总分" else f["center_int"] if h.endswith("排名") else f["text"])
    last = sh.table(header, rows, fmts, caps, freeze_cols=3)
    total_col = header.index("总分")
    sh.ws.conditional_format(1, total_col, last, total_col, {
        "type": "data_bar", "bar_color": "#63BE7B", "bar_solid": True,
        "min_type": "num", "min_value": 0, "max_type": "num", "max_value": res.system.total})
    grade_col = header.index("等级")
    sh.ws.conditional_format(1, grade_col, last, grade_col, {
        "type": "cell", "criteria": "==", "value": f'"{res.params["fail"]}"', "format": f["bad"]})
    for k, name in enumerate(res.system.level2_names):
        full = sum(i.max for i in res.system.items if i.level2 == name)
        col = len(RANK_HEAD) + k
        sh.ws.conditional_format(1, col, last, col, _scale(full))


def _scale(full: float) -> dict:
    """Red–yellow–green by share of 满分, the same for every column whatever its 满分."""
    return {"type": "3_color_scale", "min_type": "num", "min_value": 0, "mid_type": "num",
            "mid_value": 0.6 * full, "max_type": "num", "max_value": full,
            "min_color": "#F8696B", "mid_color": "#FFEB84", "max_color": "#63BE7B"}


def _chart_sheet(book, f, res: RoundResult) -> None:
    sh = _Sheet(book, "图表", f)
    cats = category_shares(res)
    header = ["二级指标", "满分", "平均得分", "得分率"]
    rows = [[name, full, mean, share] for name, full, mean, share in cats]
    sh.table(header, rows, [f["text"], f["full"], f["num"], f["pct"]])
    sh.ws.autofilter(0, 0, 0, 0)  # a four-row helper table needs no filter
    n_rated = res.n_rated
    totals = book.add_chart({"type": "column"})
    totals.add_series({
        "name": "总分", "categories": ["排名", 1, 2, n_rated, 2], "values": ["排名", 1, 6, n_rated, 6],
        "fill": {"color": "#2B6CB0"}, "gap": 40,
        "data_labels": {"value": True, "num_format": "0.0"} if n_rated <= 30 else {},
    })
    totals.set_title({"name": "各评估对象总分"})
    totals.set_y_axis({"min": 0, "max": res.system.total, "num_format": "0", "major_gridlines": {"visible": True}})
    totals.set_x_axis({"num_font": {"rotation": -45}})
    totals.set_legend({"none": True})
    totals.set_size({"width": max(720, 28 * n_rated), "height": 380})
    shares_height = 40 + 34 * len(rows)
    # Below both the helper table and the shares chart beside it (rows are 20 px high).
    sh.ws.insert_chart(max(len(rows) + 3, math.ceil(shares_height / 20) + 2), 0, totals)
    shares = book.add_chart({"type": "bar"})
    shares.add_series({
        "name": "得分率", "categories": ["图表", 1, 0, len(rows), 0], "values": ["图表", 1, 3, len(rows), 3],
        "fill": {"color": "#2F855A"}, "data_labels": {"value": True, "num_format": "0.0%"},
    })
    shares.set_title({"name": "二级指标平均得分率（占满分）"})
    shares.set_x_axis({"min": 0, "max": 1, "num_format": "0%"})
    shares.set_y_axis({"reverse": True})
    shares.set_legend({"none": True})
    shares.set_size({"width": 560, "height": shares_height})
    sh.ws.insert_chart(0, 5, shares)


def _items_sheet(book, f, res: RoundResult, comparison: "selfcheck.SelfComparison | None" = None) -> None:
    sh = _Sheet(book, "指标明细", f)
    items = res.system.items
    header = ["编号", "名称", "总分"] + [f"{i.code} {i.level3}" for i in items] + list(LEVEL1)
    full = ["满分", "", res.system.total] + [i.max for i in items] + [
        sum(i.max for i in items if i.level1 == level) for level in LEVEL1]
    if comparison is not None:  # at the end: the self total, then each item's self-score
        header += ["自评分"] + [f"{i.code} 自评" for i in items]
        full += [res.system.total] + [i.max for i in items]
    wide = res.items.pivot_table(index="subject", columns="item", values="score", aggfunc="first")
    # One row per subject in ranking order, one column per item (blank where none): one reindex,
    # not a lookup per subject (10,000 of them in a national month).
    wide = wide.reindex(index=res.subjects["subject"], columns=[i.code for i in items]).to_numpy().tolist()
    rows = [full]
    subjects = res.subjects
    for code, name, total, got, *levels in zip(*(subjects[k].tolist() for k in ("subject", "name", "total")), wide,
                                               *(subjects[level].tolist() for level in LEVEL1)):
        row = [code, name, total] + got + levels
        if comparison is not None:
            row += [comparison.totals.get(code, math.nan)] + [comparison.by_item.get((code, i.code), math.nan)
                                                              for i in items]
        rows.append(row)
    extra = len(header) - 3 - len(items) - len(LEVEL1)
    fmts = [f["center"], f["text"], f["bold_num"]] + [f["num"]] * (len(items) + len(LEVEL1) + extra)
    # Item columns as narrow as their numbers, headers wrapped: 24 columns fit A4 landscape legibly.
    caps = [8, 24, 8] + [6] * (len(items) + len(LEVEL1) + extra)
    last = sh.table(header, rows, fmts, caps, freeze_cols=2)
    for c, value in enumerate(full):  # the 满分 row stands out
        sh.put(1, c, value, f["full_text"] if isinstance(value, str) else f["full"])
    sh.ws.freeze_panes(2, 2)
    for k, item in enumerate(items):
        sh.ws.conditional_format(2, 3 + k, last, 3 + k, _scale(item.max))


def _self_sheet(book, f, res: RoundResult, comparison: "selfcheck.SelfComparison") -> None:
    """自评对比: 编号 | 名称 | 自评总分 | 核定总分 | 差值 (自评 − 核定), one 差值 column per 二级指标, 标记."""
    sh = _Sheet(book, "自评对比", f)
    header, rows = selfcheck.sheet_rows(comparison, list(res.system.level2_names))
    n_level2 = len(res.system.level2_names)
    fmts = [f["center"], f["text"], f["num"], f["bold_num"], f["bold_num"]] + [f["num"]] * n_level2 + [f["center"]]
    caps = [8, 24, 8, 8, 8] + [8] * n_level2 + [10]
    last = sh.table(header, rows, fmts, caps, freeze_cols=2)
    gap_col = header.index("差值")
    sh.ws.conditional_format(1, gap_col, max(last, 1), gap_col, {
        "type": "cell", "criteria": ">", "value": comparison.gap_points, "format": f["bad"]})


DETAIL_HEAD = ["期次", "评估人编号", "评估人", "对象编号", "对象名称", "指标编号", "三级指标", "得分", "填写值", "备注",
               "计入", "来源文件", "工作表", "单元格", "sha256", "原分", "更正"]


def detail_frame(res: RoundResult, scores: pd.DataFrame, roster: Roster | None,
                 corrections: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every accepted score with who, what, where from — the 评分明细 table, built in one pass.
    得分 is the value that counts; a corrected score also has its 原分 (the return's) and 更正."""
    people = {code: a.name for code, a in (roster.assessors if roster else {}).items()}
    subjects = dict(zip(res.subjects["subject"], res.subjects["name"]))
    level3 = {i.code: i.level3 for i in res.system.items}
    used = pd.Series(False, index=scores.index)
    if len(res.totals) and len(scores):
        kept = pd.MultiIndex.from_frame(res.totals.loc[res.totals["used"], ["subject", "assessor"]])
        used = pd.MultiIndex.from_frame(scores[["subject", "assessor"]]).isin(kept)
    return pd.DataFrame({
        "期次": scores["period"], "评估人编号": scores["assessor"], "评估人": scores["assessor"].map(people).fillna(""),
        "对象编号": scores["subject"], "对象名称": scores["subject"].map(subjects).fillna(""),
        "指标编号": scores["item"], "三级指标": scores["item"].map(level3).fillna(""), "得分": scores["score"],
        "填写值": scores["raw"], "备注": scores["remark"],
        "计入": pd.Series(used, index=scores.index).map({True: "是", False: "否（截尾去掉）"}),
        "来源文件": scores["file"], "工作表": scores["sheet"], "单元格": scores["cell"], "sha256": scores["sha256"],
        **_corrected(scores, corrections),
    }, columns=DETAIL_HEAD)


def _corrected(scores: pd.DataFrame, corrections: pd.DataFrame | None) -> dict[str, pd.Series]:
    """原分 and 更正 of 评分明细: blank unless a correction in force changed the score."""
    which = scores["correction"] if "correction" in scores else pd.Series(pd.NA, index=scores.index)
    hit = which.notna()
    notes = {}
    if corrections is not None and len(corrections):
        notes = {int(r.id): amendments.cell_note(r) for r in corrections.itertuples(index=False)}
    original = scores["original"] if "original" in scores else scores["score"]
    note = pd.Series("", index=scores.index, dtype=object)
    if hit.any():  # a national month has 760,000 scores and a handful of corrections
        note[hit] = [notes.get(int(n), "") for n in which[hit]]
    return {"原分": original.where(hit), "更正": note}


def _scores_sheet(book, f, detail: "pd.DataFrame | int", max_rows: int, csv_name: str) -> None:
    sh = _Sheet(book, "评分明细", f)
    caps = [None, None, None, None, 24, None, 14, None, None, 36, None, 34, 16, None, 20]
    n_rows = detail if isinstance(detail, int) else len(detail)
    if n_rows > max_rows:
        # Tens of thousands of rows make the workbook slow to write and to open; the same
        # table goes in full to the CSV beside it, which Excel opens as it is.
        sh.ws.set_column(0, 0, 120)
        sh.ws.write_string(0, 0, f"本期共 {n_rows:,} 条评分，超过本表列出的上限（{max_rows:,} 条，"
                                 f"设置项 report.detail_max_rows）。完整的评分明细（含来源文件、工作表和单元格）"
                                 f"见同一文件夹中的 {csv_name}（UTF-8 编码，可直接用 Excel 打开）。", f["wrap"])
        return
    fmts = [f["text"]] * 7 + [f["num"]] + [f["text"]] * 7 + [f["num"], f["text"]]
    sh.table(DETAIL_HEAD, detail.values.tolist(), fmts, caps + [None, 50], freeze_cols=0)
    score_col = DETAIL_HEAD.index("得分")
    for r, (value, note) in enumerate(zip(detail["得分"], detail["更正"]), start=1):
        if note:  # a corrected score stands out, and says what it was
            sh.put(r, score_col, value, f["corrected"])
            sh.ws.write_comment(r, score_col, note, {"x_scale": 2, "y_scale": 1.5})


def _corrections_sheet(book, f, rows: list[list]) -> None:
    """更正记录: every correction and undo of the round, the withdrawn ones included."""
    sh = _Sheet(book, "更正记录", f)
    fmts = [f["center_int"]] + [f["text"]] * 9 + [f["num"], f["num"], f["text"], f["wrap"], f["text"]]
    sh.table(amendments.REGISTER_HEAD, rows, fmts, [None, 20, 12, None, None, 24, None, None, None, 14, None, None,
                                                     None, 40, 14], freeze_cols=1)
    if not rows:
        sh.ws.write_string(2, 0, "本期没有更正记录。", f["text"])


def csv_fields(values: Iterable) -> list[str]:
    """Each value as the csv module writes it in a row (QUOTE_MINIMAL: quoted when it holds a
    comma, quote or line break; None and "" blank), made by the csv module itself, one at a time."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    texts = []
    for value in values:
        if value is None or (isinstance(value, str) and not value):  # alone in a row: written ""
            texts.append("")
            continue
        buffer.seek(0)
        buffer.truncate()
        out.writerow([value])
        texts.append(buffer.getvalue()[:-1])
    return texts


def _csv_column(column: pd.Series, number: bool = False) -> np.ndarray:
    """A column as CSV field texts, each distinct value quoted (and made inert) once: a national
    month's 760,000 rows hold a few thousand distinct texts. Numbers as "%.10g"; blank for none."""
    codes, distinct = pd.factorize(column)  # none (NaN, None, NA) is code -1: the blank at the end
    texts = ["%.10g" % v for v in distinct] if number else csv_fields(inert_csv(v) for v in distinct)
    return np.array(texts + [""], dtype=object)[codes]


def write_detail_csv(path: Path, detail: "pd.DataFrame | Iterable[pd.DataFrame]") -> Path:
    """Every accepted score as UTF-8 CSV with a byte-order mark; text cells made inert. `detail`
    is the 评分明细 frame, or its parts in order (a national month's is built a slice at a time)."""
    # The bytes pandas' to_csv (and the csv module) would write (QUOTE_MINIMAL, "\n", blanks for
    # none), but each distinct value is quoted once and the lines are joined whole: a third of
    # the csv module's time over 760,000 x 17 cells, and no second frame of text.
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            fh.write(",".join(csv_fields(DETAIL_HEAD)) + "\n")
            for part in [detail] if isinstance(detail, pd.DataFrame) else detail:
                columns = [_csv_column(part[name], number=name in ("得分", "原分")) for name in DETAIL_HEAD]
                for start in range(0, len(part), 50_000):  # in slices: one text of ~10 MB at a time
                    fh.write("".join(line + "\n" for line in map(",".join, zip(*(c[start:start + 50_000]
                                                                                  for c in columns)))))
    return path


# 评分明细's columns that are the same for every score of one accepted sheet (who, whose, which
# file), and those that are the same for every score of one item.
SHEET_COLUMNS = {"期次": "period", "评估人编号": "assessor", "对象编号": "subject", "来源文件": "file", "工作表": "sheet",
                 "sha256": "sha256"}


def _field_texts(values, number: bool = False, names: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Codes of `values` and the CSV field text of each distinct one (blank for none, code -1); with
    `names`, the text of its name instead (blank for a value without one)."""
    codes, distinct = pd.factorize(values)
    if names is not None:
        distinct = ["" if _missing(v := names.get(key, "")) else v for key in distinct]
    texts = ["%.10g" % v for v in distinct] if number else csv_fields(inert_csv(v) for v in distinct)
    # The smallest codes that hold them: a national month's columns have a few dozen distinct values
    # in 760,000 rows (8 bytes a code would be 6 MB a column).
    return codes.astype(np.min_scalar_type(-len(texts) - 1)), np.array(texts + [""], dtype=object)


def detail_texts(res: RoundResult, scores: pd.DataFrame, roster: Roster | None,
                 corrections: pd.DataFrame | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """评分明细 (`detail_frame`) for the CSV, without the frame: per column, codes (one per score) and
    the CSV field text each code stands for. A column is turned into texts once, not once per row or
    slice; the columns that are a sheet's (`SHEET_COLUMNS`, 计入, the names) are taken from each
    sheet's first score when every score of the sheet agrees (a national month: 40,000 sheets instead
    of 760,000 scores), and adjacent columns with the same codes are joined into one text."""
    people = {code: a.name for code, a in (roster.assessors if roster else {}).items()}
    subjects = dict(zip(res.subjects["subject"], res.subjects["name"]))
    level3 = {i.code: i.level3 for i in res.system.items}
    sheets = sheet_rows(scores, SHEET_COLUMNS.values())
    # the row each sheet-level value is read from, and each score's: per sheet where sheets agree
    sheet, first = sheets if sheets else (np.arange(len(scores)), slice(None))
    per_sheet = scores.iloc[first]

    def sheet_texts(values, names: dict | None = None) -> np.ndarray:
        codes, texts = _field_texts(values, names=names)
        return texts[codes]

    used = np.zeros(len(per_sheet), dtype=bool)
    if len(res.totals) and len(per_sheet):
        kept = pd.MultiIndex.from_frame(res.totals.loc[res.totals["used"], ["subject", "assessor"]])
        used = pd.MultiIndex.from_frame(per_sheet[["subject", "assessor"]]).isin(kept)
    item_codes, item_texts = _field_texts(scores["item"])
    level3_texts = _field_texts(pd.Series(pd.unique(scores["item"])), names=level3)[1]  # in the same order
    if "correction" in scores and scores["correction"].notna().any():
        corrected = {name: _field_texts(values, number=name == "原分")
                     for name, values in _corrected(scores, corrections).items()}
    else:  # no correction in force (as in most rounds): 原分 and 更正 blank on every line
        corrected = dict.fromkeys(["原分", "更正"], (np.zeros(len(scores), dtype=np.int8), np.array([""], dtype=object)))
    columns = {
        "期次": (sheet, sheet_texts(per_sheet["period"])),
        "评估人编号": (sheet, sheet_texts(per_sheet["assessor"])),
        "评估人": (sheet, sheet_texts(per_sheet["assessor"], people)),
        "对象编号": (sheet, sheet_texts(per_sheet["subject"])),
        "对象名称": (sheet, sheet_texts(per_sheet["subject"], subjects)),
        "指标编号": (item_codes, item_texts),
        "三级指标": (item_codes, level3_texts),
        "得分": _field_texts(scores["score"], number=True),
        "填写值": _field_texts(scores["raw"]),
        "备注": _field_texts(scores["remark"]),
        "计入": (sheet, np.array(csv_fields(["是", "否（截尾去掉）"]), dtype=object)[np.where(used, 0, 1)]),
        "来源文件": (sheet, sheet_texts(per_sheet["file"])),
        "工作表": (sheet, sheet_texts(per_sheet["sheet"])),
        "单元格": _field_texts(scores["cell"]),
        "sha256": (sheet, sheet_texts(per_sheet["sha256"])),
        "原分": corrected["原分"],
        "更正": corrected["更正"],
    }
    joined: list[tuple[np.ndarray, np.ndarray]] = []
    for name in DETAIL_HEAD:
        codes, texts = columns[name]
        if joined and joined[-1][0] is codes:  # the same rows: one text for both columns
            joined[-1] = (codes, np.array([a + "," + b for a, b in zip(joined[-1][1], texts)], dtype=object))
        elif joined and joined[-1][0] is not sheet and codes is not sheet and (pair := _pairs(*joined[-1], codes, texts)):
            joined[-1] = pair  # few pairs (得分, 填写值, 备注): one text each
        else:
            joined.append((codes, texts))
    return joined


def _pairs(codes_a: np.ndarray, texts_a: np.ndarray, codes_b: np.ndarray, texts_b: np.ndarray,
           most: int = 4096) -> tuple[np.ndarray, np.ndarray] | None:
    """Two adjacent columns (codes, texts) as one, each distinct pair of texts joined once, when
    there are at most `most` pairs (each line of the CSV then has one part fewer to join)."""
    pair = (codes_a % len(texts_a)).astype(np.int64) * len(texts_b) + codes_b % len(texts_b)  # -1: the blank, last
    codes, distinct = pd.factorize(pair)
    if len(distinct) > most:
        return None
    texts = np.array([texts_a[p // len(texts_b)] + "," + texts_b[p % len(texts_b)] for p in distinct], dtype=object)
    return codes.astype(np.min_scalar_type(len(texts))), texts


def write_scores_csv(path: Path, res: RoundResult, scores: pd.DataFrame, roster: Roster | None,
                     corrections: pd.DataFrame | None = None) -> Path:
    """scores-<system>.csv: the bytes `write_detail_csv` writes from `detail_frame`, from
    `detail_texts` (a national month's 760,000 scores in about half the time)."""
    # Each distinct text is encoded once, and lines are joined as bytes.
    columns = [(codes, np.array([text.encode("utf-8") for text in texts], dtype=object))
               for codes, texts in detail_texts(res, scores, roster, corrections)]
    # A national month's file is ~190 MB: a thread writes each slice (the system call leaves the
    # interpreter free) while the next is joined, rather than the two taking turns.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh, ThreadPoolExecutor(1, thread_name_prefix="happyhome-csv") as disk:
        written = disk.submit(fh.write, ("\ufeff" + ",".join(csv_fields(DETAIL_HEAD)) + "\n").encode("utf-8"))
        for start in range(0, len(scores), 10_000):  # in slices: ~2.5 MB at a time
            part = b"".join(line + b"\n" for line in map(b",".join, zip(*(texts[codes[start:start + 10_000]]
                                                                          for codes, texts in columns))))
            written.result()
            written = disk.submit(fh.write, part)
        written.result()
    return path


def form_check(own: Counter) -> str:
    """表格验证 of one assessor, from the counts of the files that count for them by `verified`:
    whether every one was verified as this office's form (已验证), or how many were not (未验证 1
    份，未签名 2 份)."""
    if not own:
        return ""
    parts = [f"{text} {own[kind]} 份" for kind, text in (("unverified", "未验证"), ("unsigned", "未签名"),
                                                         ("", "收取时未验证")) if own[kind]]
    return "，".join(parts) if parts else "已验证"


def _assessor_sheet(book, f, res: RoundResult, files: list[dict] | None = None, declared: list | None = None) -> None:
    sh = _Sheet(book, "评估人", f)
    a = res.assessors
    header = ["编号", "姓名", "单位", "评估对象数", "共同评估对象数", "平均偏差"]
    cols = ["assessor", "name", "org", "n_subjects", "n_shared", "deviation"]
    fmts = [f["text"]] * 3 + [f["int"], f["int"], f["num"]]
    if "effect" in a:
        header += ["宽严效应", "标准误", "说明"]
        cols += ["effect", "effect_se", "effect_note"]
        fmts += [f["num"], f["num"], f["text"]]
    rows = a[cols].values.tolist()
    # Last, so the columns before it stay where they were: a leader sees which scores came from
    # forms that could not be verified as this office's.
    header.append("表格验证")
    fmts.append(f["text"])
    verified: dict[str, Counter] = {}  # per assessor, in one pass (2,000 assessors x 2,000 files)
    for item in files or []:
        verified.setdefault(item["assessor"], Counter())[item.get("verified", "")] += 1
    for row, code in zip(rows, a["assessor"]):
        row.append(form_check(verified.get(code, Counter())))
    # 声明回避: how many subjects the assessor declared a conflict with (回避 = 是), not scored.
    per = Counter(d.assessor for d in declared or [])
    header.append("声明回避")
    fmts.append(f["int"])
    for row, code in zip(rows, a["assessor"]):
        row.append(per.get(code, 0))
    caps = [None, None, 30] + [None] * (len(header) - 3)
    caps[-2] = 30
    if "effect" in a:
        caps[header.index("说明")] = 40
    sh.table(header, rows, fmts, caps, freeze_cols=2)
    note = len(a) + 3
    sh.ws.write_string(note, 0, "平均偏差：该评估人的总分减去同一对象其他评估人平均总分，在其与他人共同评估的对象上取平均；正数偏宽，负数偏严。", f["text"])
    if "effect" in a:
        sh.ws.write_string(note + 1, 0, "宽严效应：按“总分 = 对象效应 + 评估人效应 + 误差”最小二乘估计，效应之和为零。" + res.effects_message, f["text"])
        note += 1
    sh.ws.write_string(note + 1, 0, "表格验证：计入该评估人评分的文件是否确认为本办公室下发的评分表。未验证：隐藏的表单信息已丢失，"
                                    "身份取自工作表顶部；未签名：办公室密钥启用前下发的旧版表格。", f["text"])
    shown = sum(per.get(code, 0) for code in a["assessor"])
    others = sum(per.values()) - shown
    sh.ws.write_string(note + 2, 0, f"声明回避：评估人在评分表中对该对象选择“回避 = 是”的次数，这些表不评分、不计入。本轮共 {sum(per.values())} 次"
                                    + (f"（其中 {others} 次来自没有计入评分的评估人）" if others else "") + "。", f["text"])


def _flags_sheet(book, f, res: RoundResult) -> None:
    sh = _Sheet(book, "争议", f)
    names = dict(zip(res.subjects["subject"], res.subjects["name"]))
    level3 = {i.code: i.level3 for i in res.system.items}
    rows = [[r.subject, names.get(r.subject, ""), r.item, level3.get(r.item, ""), FLAG_KINDS.get(r.kind, r.kind),
             r.value, r.message] for r in res.flags.itertuples(index=False)]
    sh.table(["对象编号", "名称", "指标编号", "三级指标", "类别", "数值", "说明"], rows,
             [f["text"]] * 5 + [f["num"], f["wrap"]], [9, 24, 9, 14, 12, 8, 70], freeze_cols=2)


def _changes_sheet(book, f, res: RoundResult) -> None:
    sh = _Sheet(book, "排名变化", f)
    c = res.rank_changes
    rows = c[["subject", "name", "total", "rank", "calibrated_total", "calibrated_rank", "change"]].values.tolist()
    sh.table(["编号", "名称", "总分", "排名", "校准总分", "校准排名", "名次变化"], rows,
             [f["text"], f["text"], f["num"], f["int"], f["num"], f["int"], f["int"]], [9, 24, 9, 7, 10, 9, 9], freeze_cols=2)
    if not rows:
        sh.ws.write_string(2, 0, "校准后没有对象的名次发生变化。", f["text"])


def _about_sheet(book, f, res: RoundResult, *, period: str, files: list[dict], generated: datetime) -> None:
    sh = _Sheet(book, "说明", f)
    p, s = res.params, res.system
    rows = [
        ["指标体系", f"{s.name}（{s.id}）"],
        ["指标体系版本", s.version],
        ["结构校验", s.checksum],
        ["期次", period],
        ["生成时间", generated.strftime("%Y-%m-%d %H:%M:%S")],
        ["计分方法", "截尾平均（trimmed）" if p["method"] == "trimmed" else "平均（mean）"],
        ["方法说明", res.method_note],
        ["截尾起点人数 trim_min", p["trim_min"]],
        ["最少评估人数 min_assessors", p["min_assessors"]],
        ["排名比较小数位", p["rank_decimals"]],
        ["取整规则", rounding_note(p["rank_decimals"])],
        ["等级", "；".join(f"{b['name']} ≥ {b['min']:g}" for b in p["grades"]) + f"；其余为{p['fail']}"],
        ["单项分歧阈值（占满分）", p["item_range_share"]],
        ["总分分歧阈值（分）", p["total_range_points"]],
        ["分组排名", p["by"] or "无"],
        ["排名区间", f"自助法 {p['bootstrap']} 次，种子 {p['seed']}，{p['level']:.0%} 区间。{INTERVAL_NOTE}"
                     if p["bootstrap"] else "未计算"],
        ["决策线", f"前 {p['selection_top']} 名入选线；等级线 " + "、".join(f"{b:g}" for b in p["boundaries"])],
        ["正式排名", "校准排名" if p["official"] == "calibrated" else "未校准排名（平均分排名）"],
        ["评估人一致性 α", half_up(res.agreement.get("alpha", math.nan), 2)],  # as the reading shows it
        ["一致性解读", agreement_note(res, flag_counts(res))],
        ["已评对象 / 全部对象", f"{res.n_rated} / {len(res.subjects)}"],
        ["计入的文件数", len(files)],
    ]
    if res.calibrated:
        rows.append(["校准", "已计算评估人宽严效应与校准总分。" + res.effects_message])
    keys = ["name", "sha256", "assessor", "received_at", "n"]
    listing = [[item[k] for k in keys] for item in files]
    head = ["文件名", "sha256", "评估人", "收到时间", "评分条数"]
    # Column B holds the long texts (and the files' sha256): wide enough for both, and each
    # row as tall as its wrapped text, so 方法说明 and 取整规则 print whole.
    width_a, width_b = 28, 70
    lists = fit_widths(head, listing, [max(width_a, 40), width_b, 10, 20, 10])
    sh.ws.set_column(0, 0, max(width_a, lists[0]))
    sh.ws.set_column(1, 1, width_b)
    for c in range(2, 5):
        sh.ws.set_column(c, c, lists[c])
    sh.ws.write_string(0, 0, "项目", f["head"])
    sh.ws.write_string(0, 1, "内容", f["head"])
    for r, (k, v) in enumerate(rows, start=1):
        sh.put(r, 0, k, f["text"])
        sh.put(r, 1, v, f["num_left"] if isinstance(v, float) else f["int_left"] if isinstance(v, int) else f["wrap"])
        if isinstance(v, str) and line_count(v, width_b) > 1:
            sh.ws.set_row(r, 14 * line_count(v, width_b) + 2)
    start = len(rows) + 2
    sh.ws.write_string(start, 0, "计入评分的文件", f["title"])
    for c, h in enumerate(head):
        sh.ws.write_string(start + 1, c, h, f["head"])
    sh.rows(start + 2, listing, [f["int"] if key == "n" else f["text"] for key in keys])
    sh.ws.freeze_panes(1, 0)
    sh.print_setup(0)


def write_results_csv(path: Path, res: RoundResult, self_totals: dict[str, float] | None = None) -> Path:
    """The 排名 table as UTF-8 CSV with a byte-order mark; text cells made inert. The last column,
    自评总分, is each subject's self-assessment total (blank when it returned none)."""
    header, rows = rank_columns(res)
    codes = [r[header.index("编号")] for r in rows]
    header = header + ["自评总分"]
    rows = [list(r) + [(self_totals or {}).get(code, math.nan)] for r, code in zip(rows, codes)]
    numeric2 = {"总分", "校准总分", "自评总分", *res.system.level2_names}
    decimals = res.params["rank_decimals"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(header)
            for values in rows:
                line = []
                for h, v in zip(header, values):
                    if _missing(v):
                        line.append("")
                    elif isinstance(v, str):
                        line.append(inert_csv(v))
                    elif h in numeric2:
                        line.append(f"{float(v):.{decimals}f}")
                    else:
                        line.append(str(int(v)))
                out.writerow(line)
    return path


# -- the command ----------------------------------------------------------------------------
def nothing_collected(ws: Workspace, system: System, period: str, n_files: int) -> str:
    """Why `report` refuses a round without one accepted sheet, and what to do."""
    if n_files:
        text = _("The round ({system} {period}) has {n} file(s) collected, but not one scoring sheet passed "
                 "validation (the reasons are in output/{period}/collection-{id}.xlsx); no report was made and "
                 "nothing was written. Put the returned forms in {folder}, then run "
                 "happyhome collect --system {id} {options}.")
    else:
        text = _("The round ({system} {period}) has no scoring sheet collected yet; no report was made and "
                 "nothing was written. Put the returned forms in {folder}, then run "
                 "happyhome collect --system {id} {options}.")
    return text.format(system=system.name, period=period, n=n_files, id=system.id, folder=ws.returned(period),
                       options=cli_args(period))


def second_process(ws: Workspace, n_scores: int | None = None) -> bool:
    """Whether a round is large enough for a second process to share the report's work (the
    summary workbook, or half the bootstrap's replicates): at least `report.parallel_min_scores`
    scores (0: never), on a machine with a second core; without `n_scores`, whether one may be."""
    least = ws["report"]["parallel_min_scores"]
    return 0 < least <= (least if n_scores is None else n_scores) and (os.cpu_count() or 1) > 1


def report(
    ws: Workspace,
    system: str | System,
    period: str,
    method: str | None = None,
    by: str | None = None,
    calibrate: bool = False,
    *,
    generated: datetime | None = None,
) -> ReportResult:
    """Score a round and write its summary workbook, results CSV and digest.

    `calibrate` adds calibrated totals and ranks (implied when calibration.official is
    "calibrated"); the plain ranking is always shown and stays first.
    """
    period = check_key(period)
    if method is not None and method not in METHODS:
        raise UsageError(_("--method must be one of {choices}, got {value!r}").format(choices=", ".join(METHODS), value=method))
    if by is not None and by not in BY_COLUMNS:
        raise UsageError(_("--by must be one of {choices}, got {value!r}").format(choices=", ".join(BY_COLUMNS), value=by))
    system = system if isinstance(system, System) else load_system(system)
    # When the config makes the calibrated ranking official, it is always computed.
    calibrate = calibrate or ws["calibration"]["official"] == "calibrated"
    stage = split_key(period)[1]
    # A large round's summary workbook is written by a second process. In a round without 遴选 or
    # 验收 it is forked now, before anything is read, so that it shares only the loaded modules
    # with this one (forked after the reads, each process would copy the pages of the other's data
    # it writes to: ~70 MB more in all). Once the round is scored without the intervals it is
    # handed what it needs (`Steps.begin`), works out the bootstrap intervals and sends them back,
    # then writes the workbook; this process writes the scores CSV meanwhile (it needs no
    # interval), then the results CSV and the digest. Elsewhere the summary is written by a second
    # process once the intervals are worked out (half of their replicates in one where a process
    # forks). The digest, the 公示 and the 验收 documents are written once the summary is in place,
    # as they always were: a summary that cannot be written (a full disk) leaves them as they were.
    steps = Steps() if stage not in ("遴选", ACCEPTANCE) and second_process(ws) and start_method() == "fork" else None
    with Background(summary_apart, steps) if steps is not None else nullcontext() as started:
        if steps is not None:
            steps.started()
        roster, scores, file_rows, status, fixes, own = read_inputs(ws, period, system)
        if not len(scores):
            raise InputError(nothing_collected(ws, system, period, len(file_rows)))
        settings = ws.settings
        if stage == "遴选":
            # The 临界 flags of a 遴选 round are about its own line: the places, not calibration.selection_top.
            settings = {**settings, "calibration": {**settings["calibration"],
                                                    "selection_top": selecting.places_for(settings, system)}}
        apart = second_process(ws, len(scores))
        if steps is not None and not apart:
            steps.skip()
            started.result()
            steps = None
        base = score_base(scores, system, roster, settings, method=method, by=by, calibrate=calibrate)
        chase, assigned, received = chase_list(status), status.assigned, status.received
        files, own_files = _files(scores, file_rows), _self_files(file_rows, roster)
        generated = generated or datetime.now().replace(microsecond=0)
        out = ws.period_output(period)
        comparison = selfcheck.compare(base, own, ws["scoring"]["self_gap_points"])  # needs no interval
        # Too long for the sheet, the table is only in the CSV, which is written from the scores
        # (`write_scores_csv`): 760,000 rows x 17 columns as a frame would be another 100 MB at the peak.
        big = len(scores) > ws["report"]["detail_max_rows"]
        detail = len(scores) if big else detail_frame(base, scores, roster, fixes)
        detail_csv = out / f"scores-{system.id}.csv"
        book = dict(period=period, detail=detail, files=files, generated=generated,
                    detail_max_rows=ws["report"]["detail_max_rows"], detail_csv=detail_csv.name,
                    register=amendments.register(fixes, roster, system), comparison=comparison,
                    declared=status.declarations)
        summary = out / f"summary-{system.id}.xlsx"
        chosen = accepted = None
        # (the second process is ended before a summary not written is removed)
        with atomic_path(summary) as tmp, started if steps is not None else nullcontext():
            if steps is not None:
                steps.begin(tmp, base, book, roster, settings)
                trim_heap()  # what reading and scoring freed, and the pickled round
                write_scores_csv(detail_csv, base, scores, roster, fixes)  # meanwhile: it needs no interval
                result = steps.result()
                writing = started
            else:
                # Half the replicates go apart where a process starts at once (fork): a spawned one
                # (Windows) takes longer to import pandas than that half takes (about 1 s here).
                result = with_intervals(base, roster, settings, apart=apart and start_method() == "fork")
                chosen = selecting.select(result, roster, settings) if stage == "遴选" else None
                if stage == ACCEPTANCE:
                    from pipeline import acceptance

                    people = {code: a.name for code, a in roster.assessors.items()} if roster else {}
                    accepted = acceptance.judge(result, scores, people, ws.settings)
                writing = Background(summary_book, tmp, result, **book, selection=chosen, acceptance=accepted,
                                     enabled=apart)
            trim_heap()  # what the bootstrap and the CSV freed
            with writing:
                if steps is None:
                    write_scores_csv(detail_csv, result, scores, roster, fixes)
                results = write_results_csv(out / f"results-{system.id}.csv", result,
                                            comparison.totals if comparison is not None else None)
                context = digest_context(result, period=period, scores=scores, roster=roster, chase=chase,
                                         assigned=assigned, received=received, files=files,
                                         organiser=ws["round"]["organiser"], generated=generated,
                                         files_received=len(file_rows) - own_files, self_files=own_files,
                                         corrections=amendments.subject_notes(fixes, roster, system),
                                         layout=ws["report"])
                writing.result()
    context["method"]["declared"] = status.declared
    notice, publicity = (selecting.write_outputs(out, chosen, ws.settings, generated.date(), generated)
                         if chosen is not None else (None, []))
    if chosen is not None:
        context["selection"] = selecting.digest_part(chosen, notice)
    if accepted is not None:
        acceptance.write_outputs(accepted, out, system_id=system.id, system_name=system.name, period=period,
                                 organiser=ws["round"]["organiser"], contact=ws["round"]["contact"], generated=generated)
        context["acceptance"] = acceptance.digest_part(accepted, result)
    if comparison is not None:
        context["selfcheck"] = selfcheck.digest_part(comparison)
    digest = write_digest(out / f"digest-{system.id}.html", context)
    return ReportResult(period=period, system=system, scores=result, summary=summary, csv=results, digest=digest,
                        detail_csv=detail_csv,
                        n_scores=len(scores), n_files=len(files), assigned=assigned, received=received,
                        selection=chosen, publicity=publicity,
                        corrections=int(scores["correction"].notna().sum()) if "correction" in scores else 0,
                        acceptance=accepted, selfcheck=comparison)
