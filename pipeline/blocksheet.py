"""A worksheet that takes a table's rows in one call and writes their cells' XML in bulk.

xlsxwriter keeps one namedtuple per cell and, on closing, writes each cell with a few method
calls: a national month's summary has 515,000 cells, and those two steps were most of the time
it took to write. `BlockWorksheet.write_rows` keeps a block of rows column by column (numbers as
they are, text as its shared-string index, registered in the order xlsxwriter would register it)
and renders the block's `<c>` elements a slice of rows at a time, a column per comprehension.
The file is the one xlsxwriter writes cell by cell, byte for byte (tests/test_report_sheets.py).

Anything else written to the sheet (headers, `set_row`, comments, cells written later over the
block) goes through xlsxwriter as usual; a cell written over a block's cell wins, as it would.

Mirrors xlsxwriter 3.3.1's `Worksheet` (pinned in pyproject.toml): the cell table (`table`,
`CellStringTuple` and the like), `_check_dimensions`, the shared-string table's
`_get_shared_string_index`, and how `_write_rows`, `_calculate_spans` and `_write_cell` render
cells; `test_report_sheets.test_xlsxwriter_internals` fails if those change.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import chain

import pandas as pd
import xlsxwriter
from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.worksheet import (CellBlankTuple, CellNumberTuple, CellStringTuple, Worksheet, _utf16_len,
                                  _utf16_truncate)

# A block's place that holds no cell: a blank without a format, which xlsxwriter does not write.
_NO_CELL = object()
# Rows rendered at once: their cells' texts are held together (about 16 MB for 50 columns).
_SLICE = 2048


def cell_value(value):
    """What a cell shows for `value`: text (a bool as 是/否), a float, or None for a blank
    (None, NaN, pd.NA). The one rule for every cell the summary workbooks write."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "是" if value else "否"
    return float(value)


def write_value(ws: Worksheet, row: int, col: int, value, fmt=None) -> None:
    """One cell, through xlsxwriter's own calls, as `cell_value` says."""
    value = cell_value(value)
    if value is None:
        ws.write_blank(row, col, None, fmt)
    elif isinstance(value, str):
        ws.write_string(row, col, value, fmt)
    else:
        ws.write_number(row, col, value, fmt)


class _Block:
    """Rows `first`.. of one `write_rows` call, from column 0: per column, its format and its
    cells (int: a shared-string index; float: a number; None: a blank; `_NO_CELL`)."""

    def __init__(self, first: int, columns: list[list], formats: list, holes: bool):
        self.first, self.columns, self.formats, self.holes = first, columns, formats, holes
        self.last = first + len(columns[0]) - 1
        self.numbered: set[int] = set()  # columns whose format has its style index

    def cells(self, row: int, cols: range | None = None) -> dict:
        """The row's cells (in `cols`) as xlsxwriter keeps them in `Worksheet.table`."""
        i = row - self.first
        kept = {}
        for col in cols or range(len(self.columns)):
            if col >= len(self.columns):
                break
            v, fmt = self.columns[col][i], self.formats[col]
            if v.__class__ is int:
                kept[col] = CellStringTuple(v, fmt)
            elif v.__class__ is float:
                kept[col] = CellNumberTuple(v, fmt)
            elif v is None:
                kept[col] = CellBlankTuple(fmt)
        return kept

    def extent(self, i: int) -> tuple[int, int] | None:
        """The first and last column holding a cell in the block's `i`th row (None: none)."""
        if not self.holes:
            return 0, len(self.columns) - 1
        held = [c for c, values in enumerate(self.columns) if values[i] is not _NO_CELL]
        return (held[0], held[-1]) if held else None


class BlockWorksheet(Worksheet):
    """An xlsxwriter worksheet with `write_rows`, for tables of thousands of rows."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: list[_Block] = []

    def write_rows(self, first: int, rows: list[list], formats: list | None = None) -> None:
        """`rows` from row `first` down, from column 0, each value as `write_value` writes it with
        its column's format (`formats`, None for none; a row's values beyond it are left out).

        Rows of unequal length, rows over another block's, and values xlsxwriter refuses or turns
        into something else (inf; NaN that is not a float) are written cell by cell instead."""
        if not rows:
            return
        given, width = formats, len(rows[0])
        formats = list(formats) if formats else [None] * width
        width = min(width, len(formats))
        last = first + len(rows) - 1
        columns = None
        if (not self.constant_memory and 0 <= first and last < self.xls_rowmax and width <= self.xls_colmax
                and all(len(values) == len(rows[0]) for values in rows)
                and not any(b.first <= last and first <= b.last for b in self._blocks)):
            columns = [self._column(values, fmt) for values, fmt in zip(zip(*rows), formats)]
        if columns is None or any(values is None for values in columns):
            write_cells(self, first, rows, given)
            return
        if not columns:
            return
        holes = None in formats[:width] and any(_NO_CELL in values for values in columns)
        self._register_text(columns)
        block = _Block(first, columns, formats[:width], holes)
        held = [(r, ends) for r in range(len(rows)) if (ends := block.extent(r))] if holes else [
            (0, (0, width - 1)), (len(rows) - 1, (0, width - 1))]
        if not held:
            return
        # The dimensions grow as the cells' writes would grow them (their corners suffice).
        self._check_dimensions(first + held[0][0], min(ends[0] for _, ends in held))
        self._check_dimensions(first + held[-1][0], max(ends[1] for _, ends in held))
        for row in [row for row in self.table if first <= row <= last]:  # cells written before: replaced
            for col in [col for col in self.table[row] if col < width]:
                if columns[col][row - first] is not _NO_CELL:
                    del self.table[row][col]
        self._blocks.append(block)

    def _column(self, values: tuple, fmt) -> list | None:
        """A column's cells: text (indexed later), floats, None for blanks, `_NO_CELL`; None if
        one of them must go through xlsxwriter's own call (it refuses it, or writes an error)."""
        kinds = set(map(type, values))
        most, half = self.xls_strmax, self.xls_strmax // 2  # write_string truncates text over 32,767
        if kinds == {str}:  # UTF-16 units (no text of less than half of that has more)
            cells = list(values)
            long = max(map(len, cells)) > half
        elif kinds == {float}:
            cells = [v if v == v else None for v in values]
            long = False
            if math.inf in cells or -math.inf in cells:
                return None
        else:
            cells = [str(v) if isinstance(v := cell_value(value), str) else v for value in values]  # np.str_ too
            long = any(v.__class__ is str and len(v) > half for v in cells)
            if any(v.__class__ is float and (v != v or v in (math.inf, -math.inf)) for v in cells):
                return None
        if long:
            cells = [_utf16_truncate(v, most) if v.__class__ is str and len(v) > half and _utf16_len(v) > most else v
                     for v in cells]
        return [_NO_CELL if v is None else v for v in cells] if fmt is None else cells

    def _register_text(self, columns: list[list]) -> None:
        """Text into the shared-string table row by row, as the cells' writes would add it (the
        table's order is the first use's), each replaced by its index."""
        texts = [c for c, values in enumerate(columns) if any(v.__class__ is str for v in values)]
        if not texts:
            return
        index = self.str_table._get_shared_string_index
        flat = [index(v) if v.__class__ is str else v for v in chain.from_iterable(zip(*(columns[c] for c in texts)))]
        for k, c in enumerate(texts):
            columns[c] = flat[k::len(texts)]

    def _block_at(self, row: int) -> _Block | None:
        return next((b for b in self._blocks if b.first <= row <= b.last), None)

    # -- xlsxwriter's methods that read the cell table, made to see the blocks too ------------

    def _write_rows(self) -> None:
        """`Worksheet._write_rows`, with each block's rows rendered in bulk."""
        if not self._blocks:
            return super()._write_rows()
        for block in [b for b in self._blocks if any(fmt is None for fmt in b.formats)]:
            # A cell without a format takes its row's, whose style index is given as the rows are
            # written: such a block's cells go into the cell table.
            if any(self.row_info[r].row_format for r in self.row_info if block.first <= r <= block.last):
                self._to_table(block)
        self._calculate_spans()
        row = self.dim_rowmin
        for block in sorted(self._blocks, key=lambda b: b.first):
            for plain in range(row, min(block.first, self.dim_rowmax + 1)):
                self._write_one_row(plain, None)
            for at, cells in self._render(block):  # lazily: a slice is rendered when reached
                if self.dim_rowmin <= at <= self.dim_rowmax:
                    self._write_one_row(at, cells)
            row = max(row, block.last + 1)
        for plain in range(row, self.dim_rowmax + 1):
            self._write_one_row(plain, None)

    def _write_one_row(self, row: int, cells: tuple[str, ...] | None) -> None:
        """One row as `Worksheet._write_rows` writes it, with its block's cells (texts by column)."""
        own = self.table[row]
        if not (row in self.row_info or row in self.comments or own or cells):
            return
        span = self.row_spans.get(row // 16)
        if not (own or cells):
            self._write_empty_row(row, span, self.row_info.get(row))
            return
        self._write_row(row, span, self.row_info.get(row))
        if not own:
            self.fh.write("".join(cells))
        else:  # cells written over the block's: each column's own, in order
            for col in sorted(set(own).union(c for c, text in enumerate(cells or ()) if text)):
                if col in own:
                    self._write_cell(row, col, own[col])
                else:
                    self.fh.write(cells[col])
        self._xml_end_tag("row")

    def _render(self, block: _Block):
        """(row, its cells' XML texts by column, "" for none) for each row of `block`, None for a
        row without a cell; as `Worksheet._write_cell` writes a number, a shared string, a blank."""
        for start in range(0, block.last - block.first + 1, _SLICE):
            rows = range(block.first + start, min(block.first + start + _SLICE, block.last + 1))
            self._number_styles(block, rows)
            texts = [self._column_xml(col, values[start:start + _SLICE], fmt, rows)
                     for col, (values, fmt) in enumerate(zip(block.columns, block.formats))]
            for row, cells in zip(rows, zip(*texts)):
                yield row, (cells if not block.holes or any(cells) else None)

    def _number_styles(self, block: _Block, rows: range) -> None:
        """Give the block's formats their style index (numbered in order of first use as the cells
        are written, row by row) as writing these rows cell by cell would, before they are."""
        waiting = [c for c, fmt in enumerate(block.formats) if fmt is not None and c not in block.numbered]
        for row in rows:
            if not waiting:
                return
            if row in self.row_info and self.row_info[row].row_format:
                self.row_info[row].row_format._get_xf_index()
            own = self.table.get(row) or {}
            i = row - block.first
            for col in sorted(set(own).union(c for c in waiting if block.columns[c][i] is not _NO_CELL)):
                if col in own:
                    if own[col].format:
                        own[col].format._get_xf_index()
                else:
                    block.formats[col]._get_xf_index()
                    block.numbered.add(col)
            waiting = [c for c in waiting if c not in block.numbered]

    def _column_xml(self, col: int, values: list, fmt, rows: range) -> list[str]:
        ref = f'<c r="{xl_col_to_name(col)}'
        numbers = range(rows.start + 1, rows.stop + 1)
        # without a format, the column's, if any (numbered with the <cols> before); such a column
        # holds no blank, only `_NO_CELL` (`_column`), written as nothing
        s = self._implicit_style(col) if fmt is None else f' s="{fmt._get_xf_index()}"'
        kinds = set(map(type, values))
        if kinds == {int}:
            return [f'{ref}{n}"{s} t="s"><v>{v}</v></c>' for n, v in zip(numbers, values)]
        if kinds == {float}:  # each distinct number formatted once (0.0 and -0.0 are one key: not those)
            shown = {v: f"{v:.16G}" for v in set(values) if v}
            return [f'{ref}{n}"{s}><v>{shown[v] if v else f"{v:.16G}"}</v></c>' for n, v in zip(numbers, values)]
        return [f'{ref}{n}"{s} t="s"><v>{v}</v></c>' if v.__class__ is int
                else f'{ref}{n}"{s}><v>{v:.16G}</v></c>' if v.__class__ is float
                else "" if v is _NO_CELL else f'{ref}{n}"{s}/>'
                for n, v in zip(numbers, values)]

    def _implicit_style(self, col: int) -> str:
        """The style of a cell written without a format in a row without one: its column's."""
        if col in self.col_info and self.col_info[col].column_format is not None:
            return f' s="{self.col_info[col].column_format._get_xf_index()}"'
        return ""

    def _calculate_spans(self) -> None:
        """`Worksheet._calculate_spans`: each 16 rows' first and last column with a cell or a
        comment, blocks included (every cell and comment is inside the dimensions: their writes
        check them)."""
        groups: dict[int, list[int]] = {}

        def widen(row: int, low: int, high: int) -> None:
            group = groups.setdefault(row // 16, [low, high])
            group[0], group[1] = min(group[0], low), max(group[1], high)

        for cells in (self.table, self.comments):
            for row, cols in cells.items():
                if cols:
                    widen(row, min(cols), max(cols))
        for b in self._blocks:
            if not b.holes:
                for row in range(b.first, b.last + 1, 16):  # one row in each group the block reaches
                    widen(row, 0, len(b.columns) - 1)
                widen(b.last, 0, len(b.columns) - 1)
            else:
                for i in range(b.last - b.first + 1):
                    if ends := b.extent(i):
                        widen(b.first + i, *ends)
        self.row_spans = {group: f"{low + 1}:{high + 1}" for group, (low, high) in groups.items()}

    def _get_range_data(self, row_start, col_start, row_end, col_end):
        """`Worksheet._get_range_data` (a chart's cached values), blocks included."""
        if not any(b.first <= row_end and row_start <= b.last for b in self._blocks):
            return super()._get_range_data(row_start, col_start, row_end, col_end)
        table, view = self.table, defaultdict(dict)
        for row in range(row_start, row_end + 1):
            block = self._block_at(row)
            cells = {**(block.cells(row, range(col_start, col_end + 1)) if block else {}), **table.get(row, {})}
            if cells or row in table:
                view[row] = cells
        self.table = view
        try:
            return super()._get_range_data(row_start, col_start, row_end, col_end)
        finally:
            self.table = table

    def autofit(self, *args, **kwargs) -> None:
        """`Worksheet.autofit`, which measures the cell table: the blocks go into it first."""
        for block in list(self._blocks):
            self._to_table(block)
        return super().autofit(*args, **kwargs)

    def _to_table(self, block: _Block) -> None:
        """The block's cells into the cell table, as the cells' writes would have left them."""
        for row in range(block.first, block.last + 1):
            cells = {**block.cells(row), **self.table.get(row, {})}
            if cells:
                self.table[row] = cells
        self._blocks.remove(block)


def write_cells(ws: Worksheet, first: int, rows: list[list], formats: list | None = None) -> None:
    """`BlockWorksheet.write_rows` cell by cell, through xlsxwriter's own calls."""
    for r, values in enumerate(rows, start=first):
        for c, (value, fmt) in enumerate(zip(values, formats or [None] * len(values))):
            write_value(ws, r, c, value, fmt)


class BlockWorkbook(xlsxwriter.Workbook):
    """An xlsxwriter workbook whose worksheets are `BlockWorksheet`s."""

    worksheet_class = BlockWorksheet
