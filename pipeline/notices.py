"""Notices an office sends out, as Word documents laid out like Chinese official documents (公文).

A4 with 公文 margins, the title centred in 宋体 二号, the body in 仿宋 三号 on a fixed 28-point
line with a two-character indent, tables with a repeating header, the signature and date on
the right. The 公示 of a 遴选 round (`pipeline.selection`) and the 整改通知 of a 验收 round
(`pipeline.acceptance`) are both written with `NoticeDocument`; their wording comes from
templates/ (publicity.txt, rectification.txt), which offices edit.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

from pipeline.atomic import atomic_path

BODY, TITLE, HEADING, LATIN = "仿宋", "宋体", "黑体", "Times New Roman"
BODY_PT, TITLE_PT, TABLE_PT = 16, 22, 12  # 三号, 二号, 小四
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def chinese_date(day: date) -> str:
    """2027年4月5日, as a notice is dated."""
    return f"{day.year}年{day.month}月{day.day}日"


def xml_text(text: object) -> str:
    """Text a .docx can hold: control characters (which python-docx refuses) removed."""
    return _NOT_XML.sub("", str(text))


class NoticeDocument:
    """A notice being written, paragraph by paragraph, then saved atomically."""

    def __init__(self, title: str, generated: datetime | None = None):
        import docx
        from docx.shared import Mm

        self.doc = docx.Document()
        section = self.doc.sections[0]
        section.page_width, section.page_height = Mm(210), Mm(297)
        section.top_margin, section.bottom_margin = Mm(37), Mm(35)
        section.left_margin, section.right_margin = Mm(28), Mm(26)  # a 156 mm type area
        normal = self.doc.styles["Normal"]
        self._font_of(normal.element, normal.font, BODY, BODY_PT)
        props = self.doc.core_properties
        props.title, props.author = xml_text(title), "happyhome"
        if generated is not None:
            props.created = props.modified = generated
        self._signed = False

    # -- paragraphs ------------------------------------------------------------------------
    def title(self, text: str) -> None:
        from docx.enum.text import WD_ALIGN_PARAGRAPH

        self._paragraph(text, TITLE, TITLE_PT, bold=True, align=WD_ALIGN_PARAGRAPH.CENTER, line=36, after=16)

    def addressee(self, text: str) -> None:
        """The 主送 line, flush left."""
        self._paragraph(text)

    def body(self, text: str, *, before: float = 0, after: float = 0) -> None:
        from docx.enum.text import WD_ALIGN_PARAGRAPH

        self._paragraph(text, align=WD_ALIGN_PARAGRAPH.JUSTIFY, indent=True, before=before, after=after)

    def right(self, text: str) -> None:
        """The signature and date, right-aligned; the first stands apart from the body."""
        from docx.enum.text import WD_ALIGN_PARAGRAPH
        from docx.shared import Pt

        para = self._paragraph(text, align=WD_ALIGN_PARAGRAPH.RIGHT, before=0 if self._signed else 28)
        para.paragraph_format.right_indent = Pt(32)
        self._signed = True

    def table(self, head: list[str], rows: list[list[str]], widths_mm: list[float], *,
              centred: frozenset[int] = frozenset(), empty: str = "") -> None:
        """A bordered table whose header repeats on every page. LibreOffice and WPS lay a table
        out by its grid, Word by its cells' widths: both are set, and autofit is off."""
        from docx.enum.table import WD_TABLE_ALIGNMENT
        from docx.enum.text import WD_ALIGN_PARAGRAPH
        from docx.oxml import OxmlElement
        from docx.oxml.ns import qn
        from docx.shared import Mm

        table = self.doc.add_table(rows=1, cols=len(head))
        table.style = "Table Grid"
        table.alignment = WD_TABLE_ALIGNMENT.CENTER
        table.autofit = False
        widths = [Mm(w) for w in widths_mm]
        for column, width in zip(table.columns, widths):
            column.width = width
        marker = OxmlElement("w:tblHeader")
        marker.set(qn("w:val"), "true")
        table.rows[0]._tr.get_or_add_trPr().append(marker)

        def fill(cells, texts, font: str, bold: bool, centre_all: bool) -> None:
            for k, (cell, text, width) in enumerate(zip(cells, texts, widths)):
                cell.width = width
                para = cell.paragraphs[0]
                centre = centre_all or k in centred
                para.alignment = WD_ALIGN_PARAGRAPH.CENTER if centre else WD_ALIGN_PARAGRAPH.LEFT
                self._run(para, text, font, TABLE_PT, bold)

        fill(table.rows[0].cells, head, HEADING, True, True)
        for values in rows:
            fill(table.add_row().cells, values, BODY, False, False)
        if not rows and empty:
            cells = table.add_row().cells
            self._run(cells[0].merge(cells[-1]).paragraphs[0], empty, BODY, TABLE_PT)
        self.doc.add_paragraph()  # a line between the table and what follows

    def save(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            self.doc.save(str(tmp))
        return Path(path)

    # -- fonts -----------------------------------------------------------------------------
    def _paragraph(self, text: str, font: str = BODY, size: float = BODY_PT, *, bold: bool = False, align=None,
                   indent: bool = False, line: float = 28, before: float = 0, after: float = 0):
        from docx.enum.text import WD_LINE_SPACING
        from docx.shared import Pt

        para = self.doc.add_paragraph()
        fmt = para.paragraph_format
        fmt.line_spacing_rule, fmt.line_spacing = WD_LINE_SPACING.EXACTLY, Pt(line)
        fmt.space_before, fmt.space_after = Pt(before), Pt(after)
        if indent:
            fmt.first_line_indent = Pt(size * 2)  # two characters
        if align is not None:
            para.alignment = align
        self._run(para, text, font, size, bold)
        return para

    def _run(self, para, text: str, font: str, size: float, bold: bool = False) -> None:
        run = para.add_run(xml_text(text))
        run.font.bold = bold
        self._font_of(run._element, run.font, font, size)

    @staticmethod
    def _font_of(element, font, east_asian: str, size: float) -> None:
        """Latin text in Times New Roman, Chinese in `east_asian`: w:eastAsia must be set
        explicitly, or Word, WPS and LibreOffice show the Chinese in a fallback font."""
        from docx.oxml.ns import qn
        from docx.shared import Pt

        font.name, font.size = LATIN, Pt(size)
        element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), east_asian)
