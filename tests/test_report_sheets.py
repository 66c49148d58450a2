"""Tables written as blocks (`pipeline.blocksheet`) give the workbook xlsxwriter writes cell by cell,
byte for byte: hostile text, every kind of value, cells written over a block, row heights and
formats, comments, charts over a block. Also read back with openpyxl, and opened by LibreOffice."""

from __future__ import annotations

import copy
import csv
import inspect
import math
import zipfile
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import openpyxl
import pandas as pd
import pytest
import xlsxwriter
from xlsxwriter.sharedstrings import SharedStringTable
from xlsxwriter.worksheet import (CellBlankTuple, CellNumberTuple, CellStringTuple, ColumnInfo, RowInfo, Worksheet)

from conftest import soffice_convert
from pipeline import blocksheet
from pipeline.blocksheet import BlockWorkbook, BlockWorksheet
import pipeline.report as reporting
from pipeline.config import Workspace
from pipeline.report import report
from test_report import PERIOD, add_returns

CREATED = datetime(2026, 11, 30, 9, 0, 0)
# Text xlsxwriter escapes, keeps spaces of (xml:space), turns into _xHHHH_, or truncates.
HOSTILE = ['<&>"\'', "a\x01b\x1fc\x0bd", "_x0041_", "_X004a_ and _x00", "  leading", "trailing  ", " ", "",
           "line\nbreak\r\n", "tab\there", "\ufffe\uffff", "社区高质量发展幸福家园", "=1+1", "+86 138", "http://example.org",
           "x" * 40_000, "𠀀" * 17_000, "长" * 16_000 + "𠀀" * 400, "<r>rich?</r>", "&amp;"]
# Everything `put` is given: blanks (None, NaN, pd.NA), bools, ints, floats, numpy scalars.
VALUES = [None, math.nan, pd.NA, True, False, 0, 7, -3, 2**53 + 1, 1e-7, 1e16, -0.0, 0.0, 84.16666666666669,
          1.5e300, -2.5e-300, 1 / 3, np.float64(2.5), np.float64("nan"), np.int64(4), np.bool_(True),
          np.str_("numpy text"), 123456789.123]


def hostile_rows(n: int) -> list[list]:
    """n rows: codes, scores with gaps, hostile text, every kind of value, ints, bools, a mix."""
    mix = HOSTILE + VALUES
    return [[f"C{r:04d}", (r * 0.25 if r % 7 else math.nan), HOSTILE[r % len(HOSTILE)], VALUES[r % len(VALUES)], r,
             r % 3 == 0, mix[(r * 5) % len(mix)], float(r) / 3, "同一段文字"] for r in range(n)]


def plain_rows(ws, first, rows, formats=None):
    """The reference: one xlsxwriter call per cell, the rule `put` states (blank, 是/否, text, number)."""
    for r, values in enumerate(rows, start=first):
        for c, (value, fmt) in enumerate(zip(values, formats or [None] * len(values))):
            if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                ws.write_blank(r, c, None, fmt)
            elif isinstance(value, str):
                ws.write_string(r, c, value, fmt)
            elif isinstance(value, bool):
                ws.write_string(r, c, "是" if value else "否", fmt)
            else:
                ws.write_number(r, c, float(value), fmt)


def block_rows(ws, first, rows, formats=None):
    ws.write_rows(first, rows, formats)


def build(path: Path, bulk: bool) -> Path:
    """The same workbook through blocks (`bulk`) or cell by cell."""
    book = (BlockWorkbook if bulk else xlsxwriter.Workbook)(str(path), {"strings_to_formulas": False,
                                                                        "strings_to_urls": False})
    book.set_properties({"title": "对照", "author": "happyhome", "created": CREATED})
    rows = block_rows if bulk else plain_rows
    base = {"font_name": "Microsoft YaHei", "font_size": 10, "valign": "top"}
    head = book.add_format({**base, "bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True})
    text = book.add_format(base)
    num = book.add_format({**base, "num_format": "0.00"})
    wrap = book.add_format({**base, "text_wrap": True})
    centre = book.add_format({**base, "align": "center", "num_format": "0"})
    corrected = book.add_format({**base, "num_format": "0.00", "bold": True, "bg_color": "#FFE699"})
    full = book.add_format({**base, "num_format": "0.##", "bold": True, "bg_color": "#F2F2F2"})
    same_as_text = book.add_format(base)  # a second format with text's properties: one style index
    fmts = [text, num, wrap, text, centre, text, same_as_text, num, text]

    ws = book.add_worksheet("表")
    for c, h in enumerate(["编号", "得分", "文字", "各种值", "序号", "是否", "混合", "三分之一", "重复"]):
        ws.write_string(0, c, h, head)
    table = hostile_rows(130)
    rows(ws, 1, table, fmts)
    for c, value in enumerate(table[0]):  # the first row stands out (as 指标明细's 满分 row), with a new format
        plain_rows(ws, 1, [[None] * c + [value]], [None] * c + [full])
    ws.write_number(4, 1, 99.5, corrected)  # a corrected score, with its comment
    ws.write_comment(4, 1, "原分 80，更正 <99.5> & 说明", {"x_scale": 2, "y_scale": 1.5})
    ws.write_blank(9, 2, None, corrected)
    ws.write_string(12, 12, "block's row, beyond its columns", text)
    ws.write_comment(20, 14, "a comment alone, right of the block")
    ws.set_row(6, 40)
    ws.set_row(30, 22, corrected)  # a row format: cells with their own keep theirs
    ws.set_row(200, 18)  # below everything: a row with a height only
    ws.merge_range(140, 0, 141, 3, "合并 <单元格>", wrap)
    ws.autofilter(0, 0, 130, 8)
    ws.freeze_panes(1, 2)
    ws.set_column(0, 0, 9)
    ws.set_column(2, 2, 40)
    ws.conditional_format(1, 1, 130, 1, {"type": "3_color_scale"})
    ws.set_landscape()
    ws.repeat_rows(0, 0)
    chart = book.add_chart({"type": "column"})
    chart.add_series({"categories": ["表", 1, 0, 130, 0], "values": ["表", 1, 1, 130, 1]})
    chart.add_series({"categories": ["表", 1, 2, 30, 2], "values": ["表", 1, 7, 30, 7]})
    ws.insert_chart(150, 0, chart)

    ws = book.add_worksheet("无格式")  # no format for some columns: the column's, or none; no cell for a blank
    ws.set_column(1, 1, 12, centre)
    rows(ws, 2, [[None, 5, None, "a"], [None, None, None, None], [1.5, None, True, None], ["x", 2, None, None]],
         [None, None, num, None])
    rows(ws, 10, [[None, None], [None, None]], None)  # nothing at all
    ws.write_string(0, 0, "上", head)

    ws = book.add_worksheet("行格式")  # a row format over a block's cells without one
    rows(ws, 0, [["a", 1, None], ["b", None, 2.5], ["c", 3, math.nan]], [text, None, None])
    ws.set_row(1, 30, corrected)

    ws = book.add_worksheet("先写")  # cells written before a block at the same places: the block's win
    ws.write_string(1, 0, "before", corrected)
    ws.write_number(2, 1, 42, corrected)
    ws.write_string(2, 2, "kept: the block writes no cell here", head)
    rows(ws, 1, [["A", 1.0, None], ["B", 2.0, None]], [text, num, None])

    ws = book.add_worksheet("参差")  # rows of unequal length, and a block over another block's rows
    rows(ws, 0, [["a", 1], ["b"], ["c", 2, 3.5, "d"]], [text, num, num])
    rows(ws, 0, [["z", 9.0]], None)
    rows(ws, 5, [["lone"]], [text])
    rows(ws, 6, [], [text])
    rows(ws, 7, [[], []], [text])

    ws = book.add_worksheet("多块")  # blocks with rows between them, a header after them, long blocks
    ws.write_string(20, 0, "中间", head)
    rows(ws, 3, [[f"s{r}", r * 1.5, HOSTILE[r % len(HOSTILE)]] for r in range(15)], [text, num, wrap])
    rows(ws, 25, [[r, f"t{r}"] for r in range(40)], [centre, text])
    ws.write_string(0, 0, "最后写的表头", head)
    ws.write_number(30, 1, 7, corrected)  # over the second block, in a later slice

    ws = book.add_worksheet("自适应")  # autofit measures the cells, blocks included
    rows(ws, 0, [["短", 1.0], ["长长长长长长长长长长长长", 123456.789]], [text, num])
    ws.write_string(5, 3, "之后写的", text)
    ws.autofit()
    book.close()
    return path


@pytest.fixture
def small_slices(monkeypatch):
    """Slices of 7 rows, so the tables above cross several (the summary's cross 2,048)."""
    monkeypatch.setattr(blocksheet, "_SLICE", 7)


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def test_blocks_give_the_bytes_xlsxwriter_writes_cell_by_cell(tmp_path, small_slices):
    plain, bulk = members(build(tmp_path / "plain.xlsx", False)), members(build(tmp_path / "bulk.xlsx", True))
    assert sorted(plain) == sorted(bulk)
    for name in plain:
        assert bulk[name] == plain[name], name
    # Not trivially equal: the hostile text is there, escaped, truncated and shared.
    strings = plain["xl/sharedStrings.xml"].decode()
    assert "&lt;&amp;&gt;\"'" in strings and "_x0001_" in strings and "_x005F_x0041_" in strings
    assert 'xml:space="preserve">  leading' in strings and "x" * 32_767 + "<" in strings
    assert "𠀀" * 16_383 + "<" in strings  # 32,766 UTF-16 units: the 16,384th would be cut in half


def cell_xml(data: bytes) -> list[tuple]:
    """Every row's attributes and every cell's attributes and value, from the parsed sheet XML."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    root = ElementTree.fromstring(data)
    return [(row.attrib, [(c.attrib, c.findtext("m:v", namespaces=ns)) for c in row.findall("m:c", ns)])
            for row in root.iter(f"{{{ns['m']}}}row")]


def style(cell) -> tuple:
    """The cell's font, fill, border and alignment as values (openpyxl's proxies compare by identity)."""
    return tuple(copy.copy(part) for part in (cell.font, cell.fill, cell.border, cell.alignment, cell.protection))


def test_blocks_read_back_the_same_cell_by_cell(tmp_path, small_slices):
    plain_path, bulk_path = build(tmp_path / "plain.xlsx", False), build(tmp_path / "bulk.xlsx", True)
    plain, bulk = members(plain_path), members(bulk_path)
    sheets = [name for name in plain if name.startswith("xl/worksheets/sheet")]
    assert len(sheets) == 7
    for name in sheets:
        assert cell_xml(bulk[name]) == cell_xml(plain[name]), name
    assert len(cell_xml(plain["xl/worksheets/sheet1.xml"])) == 1 + 130 + 2 + 1  # header, table, merged, a height alone
    a, b = openpyxl.load_workbook(plain_path), openpyxl.load_workbook(bulk_path)
    assert a.sheetnames == b.sheetnames == ["表", "无格式", "行格式", "先写", "参差", "多块", "自适应"]
    n_cells = 0
    for ws_a, ws_b in zip(a.worksheets, b.worksheets):
        assert (ws_a.max_row, ws_a.max_column) == (ws_b.max_row, ws_b.max_column)
        for row_a, row_b in zip(ws_a.iter_rows(), ws_b.iter_rows()):
            for x, y in zip(row_a, row_b):
                assert (x.value, x.data_type, x.number_format) == (y.value, y.data_type, y.number_format), x.coordinate
                assert style(x) == style(y), x.coordinate
                assert (x.comment.text if x.comment else None) == (y.comment.text if y.comment else None)
                n_cells += x.value is not None
        assert {r: d.height for r, d in ws_a.row_dimensions.items()} == {r: d.height for r, d in ws_b.row_dimensions.items()}
        assert {c: d.width for c, d in ws_a.column_dimensions.items()} == {c: d.width for c, d in ws_b.column_dimensions.items()}
        assert sorted(map(str, ws_a.merged_cells.ranges)) == sorted(map(str, ws_b.merged_cells.ranges))
        assert (ws_a.freeze_panes, ws_a.auto_filter.ref) == (ws_b.freeze_panes, ws_b.auto_filter.ref)
    assert n_cells > 1000
    ws = b["表"]
    assert [ws.cell(2, c).value for c in range(1, 10)] == ["C0000", None, '<&>"\'', None, 0, "是", '<&>"\'', 0, "同一段文字"]
    assert ws["B5"].value == 99.5 and ws["B5"].font.b and ws["B5"].comment.text.startswith("原分 80")
    assert ws["B3"].value == 0.25 and ws["B3"].number_format == "0.00" and ws["B9"].value is None
    # openpyxl leaves the _xHHHH_ escapes as they are (Excel and LibreOffice undo them)
    assert ws["C3"].value == "a_x0001_b_x001F_c_x000B_d" and ws["C4"].value == "_x0041_" and ws["C12"].value == "_xFFFE__xFFFF_"
    assert ws["C17"].value == "x" * 32_767 and ws["C18"].value == "𠀀" * 16_383 and ws["C9"].value == ""
    assert ws["C6"].value == "  leading" and ws["D5"].value == "是" and ws["D6"].value == "否"
    assert ws["D11"].value == 1e-7 and ws["D12"].value == 1e16 and ws["D13"].value == 0  # -0.0
    assert ws["D15"].value == 84.16666666666669 and ws["D23"].value == "numpy text" and ws["D22"].value == 1
    assert ws.row_dimensions[7].height == a["表"].row_dimensions[7].height > 30 and ws["A31"].font.b is False and ws["M13"].value.startswith("block's")
    ws = b["无格式"]
    assert [[c.value for c in r] for r in ws.iter_rows(min_row=3, max_row=6, max_col=4)] == [
        [None, 5, None, "a"], [None, None, None, None], [1.5, None, "是", None], ["x", 2, None, None]]
    assert ws["B3"].alignment.horizontal == "center"  # the column's format
    assert b["先写"]["A2"].value == "A" and not b["先写"]["A2"].font.b and b["先写"]["C3"].value.startswith("kept")
    assert [[c.value for c in r] for r in b["参差"].iter_rows(max_row=3)] == [["z", 9, None], ["b", None, None],
                                                                          ["c", 2, 3.5]]


def test_libreoffice_opens_the_blocks(tmp_path, small_slices):
    """LibreOffice reads the first sheet as written (its CSV export has only that one)."""
    out = soffice_convert(build(tmp_path / "bulk.xlsx", True), "csv:Text - txt - csv (StarCalc):44,34,76", tmp_path / "lo")
    with open(out, encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0][:3] == ["编号", "得分", "文字"]
    assert lines[1][:3] == ["C0000", "", '<&>"\''] and lines[2][:3] == ["C0001", "0.25", "a\x01b\x1fc\x0bd"]
    assert lines[4][:2] == ["C0003", "99.50"] and lines[4][3] == "是" and lines[3][2] == "_x0041_"
    assert lines[5][2] == "  leading" and lines[6][2] == "trailing  " and lines[11][2] == "\ufffe\uffff"
    assert lines[16][2] == "x" * 32_767 and lines[14][3] == "84.1666666666667"  # shown with 15 digits
    assert len([line for line in lines if line and line[0].startswith("C0")]) == 130


def test_values_xlsxwriter_refuses_are_refused_alike(tmp_path):
    """inf: write_number raises TypeError (no nan_inf_to_errors), through blocks as cell by cell."""
    for bulk in (False, True):
        book = (BlockWorkbook if bulk else xlsxwriter.Workbook)(str(tmp_path / f"{bulk}.xlsx"))
        ws = book.add_worksheet()
        with pytest.raises(TypeError, match="NAN/INF"):
            (block_rows if bulk else plain_rows)(ws, 0, [["a", 1.0], ["b", math.inf]])
        book.close()


def test_summary_workbook_the_same_through_blocks(workspace, monkeypatch):
    """A round's whole summary workbook: the same bytes as with every cell written on its own."""
    add_returns(workspace)
    ws = Workspace.open(workspace)
    generated = datetime(2026, 11, 30, 10, 0, 0)
    bulk = members(report(ws, "community", PERIOD, generated=generated).summary)
    tables = []

    def cell_by_cell(sh, first, rows, formats=None):
        assert not isinstance(sh.ws, BlockWorksheet)
        tables.append(len(rows))
        plain_rows(sh.ws, first, rows, formats)

    monkeypatch.setattr(reporting, "BlockWorkbook", xlsxwriter.Workbook)
    monkeypatch.setattr(reporting._Sheet, "rows", cell_by_cell)
    plain = members(report(ws, "community", PERIOD, generated=generated).summary)
    assert len(tables) >= 8 and sum(tables) > 20
    assert sorted(bulk) == sorted(plain) and all(bulk[name] == plain[name] for name in plain)
    assert len(plain) > 15 and b"<script>" not in plain["xl/sharedStrings.xml"]


def test_xlsxwriter_internals():
    """What pipeline/blocksheet.py relies on, mirrored from xlsxwriter 3.3.1: when this fails, a new
    xlsxwriter changed them; check blocksheet against its Worksheet before widening the pin."""
    assert xlsxwriter.__version__.startswith("3.3."), xlsxwriter.__version__
    ws = Worksheet()
    assert isinstance(ws.table, dict) and ws.row_info == {} and ws.col_info == {} and ws.comments == {}
    assert (ws.xls_rowmax, ws.xls_colmax, ws.xls_strmax, ws.constant_memory) == (1_048_576, 16_384, 32_767, False)
    assert CellStringTuple._fields == ("string", "format") and CellNumberTuple._fields == ("number", "format")
    assert CellBlankTuple._fields == ("format",)
    assert "row_format" in RowInfo.__dataclass_fields__ and "column_format" in ColumnInfo.__dataclass_fields__
    signatures = {"_write_rows": ["self"], "_calculate_spans": ["self"],
                  "_write_row": ["self", "row", "spans", "row_info", "empty_row"],
                  "_write_empty_row": ["self", "row", "spans", "row_info"], "_write_cell": ["self", "row", "col", "cell"],
                  "_get_range_data": ["self", "row_start", "col_start", "row_end", "col_end"],
                  "_check_dimensions": ["self", "row", "col", "ignore_row", "ignore_col"],
                  "autofit": ["self", "max_width"]}
    for name, params in signatures.items():
        assert list(inspect.signature(getattr(Worksheet, name)).parameters) == params, name
    table = SharedStringTable()
    assert [table._get_shared_string_index(s) for s in ["b", "a", "b"]] == [0, 1, 0] and table.count == 3
    assert xlsxwriter.Workbook.worksheet_class is Worksheet
