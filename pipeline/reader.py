"""The one place returned workbooks are opened.

Formats are told apart by their content, never by the file name, sizes are checked in the
zip directory before anything is parsed, and every cell is converted at once to plain Python
values. Every failure becomes an `UnreadableFile` with a catalogue code and a plain reason.
"""

from __future__ import annotations

import html
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import python_calamine as pc

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
ENCRYPTED_MARK = "EncryptionInfo".encode("utf-16-le")
ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
_MODIFIED = re.compile(rb"<dcterms:modified[^>]*>([^<]{10,40})</dcterms:modified>")
_ODS_DATE = re.compile(rb"<dc:date>([^<]{10,40})</dc:date>")


@dataclass(frozen=True)
class Limits:
    max_file_mb: float = 50
    max_unzipped_mb: float = 100
    max_ratio: float = 200
    max_sheets: int = 300
    max_rows: int = 1000

    @classmethod
    def from_settings(cls, limits: dict) -> "Limits":
        return cls(**{k: limits[k] for k in cls.__dataclass_fields__ if k in limits})


class UnreadableFile(Exception):
    """A returned file that cannot be read at all; `code` is a messages.CATALOGUE key."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass
class Sheet:
    name: str
    rows: list[list] = field(default_factory=list)
    hidden: bool = False
    error: str = ""  # set when this sheet alone could not be read
    too_long: int = 0  # the row count, when over Limits.max_rows


@dataclass
class Workbook:
    format: str  # xlsx, xlsm, xlsb, xls, ods
    sheets: list[Sheet]
    modified: datetime | None  # the workbook's own last-saved time, if it records one

    def sheet(self, name: str) -> Sheet | None:
        return next((s for s in self.sheets if s.name == name), None)


def sniff(data: bytes) -> tuple[str, zipfile.ZipFile | None]:
    """The format from the content: xlsx, xlsm, xlsb, ods or xls (raises UnreadableFile)."""
    if not data:
        raise UnreadableFile("empty_file")
    if data.startswith(OLE_MAGIC):
        if ENCRYPTED_MARK in data[:1_000_000]:
            raise UnreadableFile("encrypted")
        return "xls", None
    if not data.startswith(ZIP_MAGIC):
        head = data[:8]
        kind = "PDF 文档" if head.startswith(b"%PDF") else "文本文件" if _looks_like_text(data) else "未知格式"
        raise UnreadableFile("not_spreadsheet", kind)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise UnreadableFile("corrupt", "压缩结构损坏") from err
    if "xl/workbook.xml" in names:
        return ("xlsm" if "xl/vbaProject.bin" in names else "xlsx"), archive
    if "xl/workbook.bin" in names:
        return "xlsb", archive
    if "mimetype" in names and archive.read("mimetype").strip() == ODS_MIME:
        return "ods", archive
    if "word/document.xml" in names:
        raise UnreadableFile("not_spreadsheet", "Word 文档")
    raise UnreadableFile("not_spreadsheet", "压缩包")


def _looks_like_text(data: bytes) -> bool:
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_zip(archive: zipfile.ZipFile, limits: Limits) -> None:
    """Refuse zip bombs from the zip directory, before a byte is inflated."""
    total = 0
    for info in archive.infolist():
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1_000_000 and ratio > limits.max_ratio:
            raise UnreadableFile("zip_bomb", f"{info.filename} 压缩比 {ratio:.0f} 倍")
    if total > limits.max_unzipped_mb * 1_000_000:
        raise UnreadableFile("zip_bomb", f"解压后 {total / 1e6:.0f} MB")


_SHEET_TAG = re.compile(rb"<(?:\w+:)?sheet\b[^>]*>")
_REL_TAG = re.compile(rb"<Relationship\b[^>]*>")
_ATTR = re.compile(rb'([\w:.-]+)="([^"]*)"')
_SHEET_DATA = re.compile(rb"<(\w+:)?sheetData\b")
SCAN_FROM = 1_000_000  # sheet parts larger than this (inflated) are counted before parsing


def long_sheets(archive: zipfile.ZipFile, limits: Limits) -> dict[str, int]:
    """Sheets of an xlsx/xlsm with more rows than limits.max_rows (name -> rows), counted by
    streaming the XML, so that calamine never builds a million-row sheet in memory."""
    big = [i for i in archive.infolist() if i.filename.startswith("xl/worksheets/") and i.file_size > SCAN_FROM]
    if not big:
        return {}
    try:
        parts = {_attr(tag, b"Id"): _attr(tag, b"Target") for tag in _REL_TAG.findall(
            archive.read("xl/_rels/workbook.xml.rels"))}
        names = {}
        for tag in _SHEET_TAG.findall(archive.read("xl/workbook.xml")):
            target = parts.get(_attr(tag, b"r:id") or _attr(tag, b"id"), "").lstrip("/")
            names[target if target.startswith("xl/") else "xl/" + target] = html.unescape(_attr(tag, b"name"))
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError):
        return {}
    found = {}
    for info in big:
        rows, cells = _count_rows(archive, info.filename)
        if (rows > limits.max_rows or cells > limits.max_rows * MAX_COLUMNS) and info.filename in names:
            found[names[info.filename]] = max(rows, limits.max_rows + 1)
    return found


def _attr(tag: bytes, key: bytes) -> str:
    for name, value in _ATTR.findall(tag):
        if name == key:
            return value.decode("utf-8", "replace")
    return ""


def _count_rows(archive: zipfile.ZipFile, part: str) -> tuple[int, int]:
    """Rows and cells in a sheet part, counted while inflating it 1 MB at a time."""
    rows = cells = 0
    tail, prefix = b"", None
    try:
        with archive.open(part) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                block = tail + chunk
                if prefix is None:  # <sheetData> or <x:sheetData>: the namespace prefix of every tag
                    found = _SHEET_DATA.search(block)
                    prefix = (found.group(1) if found else None) or b""
                cut = max(block.rfind(b"<"), 0)  # a tag cut in two is counted with the next chunk
                block, tail = block[:cut], block[cut:]
                rows += block.count(b"<" + prefix + b"row")
                cells += block.count(b"<" + prefix + b"c ") + block.count(b"<" + prefix + b"c>")
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError):
        return 0, 0
    prefix = prefix or b""
    return rows + tail.count(b"<" + prefix + b"row"), cells + tail.count(b"<" + prefix + b"c ")


_ODS_TAG = re.compile(rb"<table:(table-row|table-cell|covered-table-cell|table)(?=[\s/>])([^>]*)>")
MAX_COLUMNS = 64  # value cells a sheet may hold per allowed row (a form uses 8 columns)


def long_tables(archive: zipfile.ZipFile, limits: Limits) -> dict[str, tuple[int, int]]:
    """Tables of an ODS whose rows or cells with a value, repeats expanded, exceed the limits
    (name -> (rows, cells)). A few bytes of table:number-rows-repeated can otherwise make
    calamine build hundreds of millions of cells when it opens the file."""
    found: dict[str, tuple[int, int]] = {}
    name, rows, cells, repeat, tail, row_has_value = "", 0, 0, 1, b"", False

    def close() -> None:
        if name and (rows > limits.max_rows or cells > limits.max_rows * MAX_COLUMNS):
            found[name] = (rows, cells)

    try:
        with archive.open("content.xml") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                block = tail + chunk
                cut = block.rfind(b"<")
                cut = len(block) if cut == -1 or block.find(b">", cut) != -1 else cut
                block, tail = block[:cut], block[cut:]
                for tag, attrs in _ODS_TAG.findall(block):
                    if tag == b"table":
                        close()
                        name, rows, cells = html.unescape(_attr(attrs, b"table:name")), 0, 0
                    elif tag == b"table-row":
                        repeat = _int(_attr(attrs, b"table:number-rows-repeated"))
                        row_has_value = False
                    elif b"office:value-type" in attrs:
                        n = _int(_attr(attrs, b"table:number-columns-repeated"))
                        cells += repeat * n
                        if not row_has_value:
                            rows += repeat
                            row_has_value = True
        close()
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, EOFError):
        return found
    return found


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 1


def modified_time(fmt: str, archive: zipfile.ZipFile | None) -> datetime | None:
    """When the workbook says it was last saved (docProps/core.xml or the ODS meta.xml)."""
    if archive is None:
        return None
    part, pattern = ("meta.xml", _ODS_DATE) if fmt == "ods" else ("docProps/core.xml", _MODIFIED)
    try:
        with archive.open(part) as handle:
            head = handle.read(64_000)
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError):
        return None
    match = pattern.search(head)
    if not match:
        return None
    try:
        stamp = datetime.fromisoformat(match.group(1).decode("ascii").replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.astimezone(timezone.utc).replace(tzinfo=None)


def read_workbook(path: str | Path, limits: Limits = Limits(), data: bytes | None = None) -> Workbook:
    """Read every sheet of a workbook into plain rows (raises UnreadableFile)."""
    path = Path(path)
    if data is None:
        size = path.stat().st_size
        if size > limits.max_file_mb * 1_000_000:
            raise UnreadableFile("too_large", f"{size / 1e6:.1f} MB")
        data = path.read_bytes()
    elif len(data) > limits.max_file_mb * 1_000_000:
        raise UnreadableFile("too_large", f"{len(data) / 1e6:.1f} MB")
    fmt, archive = sniff(data)
    too_long: dict[str, int] = {}
    if archive is not None:
        check_zip(archive, limits)
        if fmt in ("xlsx", "xlsm"):
            too_long = long_sheets(archive, limits)
        elif fmt == "ods":  # calamine builds every table of an ODS on opening: refuse the file
            for name, (rows, cells) in long_tables(archive, limits).items():
                raise UnreadableFile("zip_bomb", f"工作表“{name[:31]}”展开后有 {rows} 行、{cells} 个单元格")
    try:
        book = pc.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except pc.PasswordError as err:
        raise UnreadableFile("encrypted") from err
    except Exception as err:  # calamine raises several types for broken files
        raise UnreadableFile("corrupt", _short(err)) from err
    try:
        meta = list(book.sheets_metadata)
        if len(meta) > limits.max_sheets:
            raise UnreadableFile("too_many_sheets", f"{len(meta)} 张")
        sheets = [_read_sheet(book, m, limits, too_long.get(m.name, 0))
                  for m in meta if m.typ == pc.SheetTypeEnum.WorkSheet]
    finally:
        book.close()
    return Workbook(fmt, sheets, modified_time(fmt, archive))


def _read_sheet(book: pc.CalamineWorkbook, meta: pc.SheetMetadata, limits: Limits, rows: int = 0) -> Sheet:
    sheet = Sheet(meta.name, hidden=meta.visible != pc.SheetVisibleEnum.Visible)
    if rows:  # counted in the XML already: never parsed
        sheet.too_long = rows
        return sheet
    try:
        data = book.get_sheet_by_name(meta.name)
        height = data.end[0] + 1 if data.end else 0
        if height > limits.max_rows:
            sheet.too_long = height
            return sheet
        sheet.rows = data.to_python(skip_empty_area=False)
    except Exception as err:  # a damaged sheet fails alone; the others still read
        sheet.error = _plain(err)
    return sheet


def _plain(err: BaseException) -> str:
    """A sheet's read error in words the office can forward (calamine's own text otherwise)."""
    text = str(err)
    if type(err).__name__ == "WorksheetNotFound":
        return "工作表的内容在文件中缺失"
    if "entity" in text.lower():
        return "含有 XML 实体声明，为安全起见未读取"
    return _short(err)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]
