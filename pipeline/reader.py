"""The one place returned workbooks are opened.

Formats are told apart by their content, never by the file name, sizes are checked in the
zip directory before anything is parsed, and every cell is converted at once to plain Python
values. Every failure becomes an `UnreadableFile` with a catalogue code, a reason in Chinese
and, apart from it, the library's own words for support (`technical`).

Sizes are bounded before calamine builds a grid, for every format: calamine allocates the
whole rectangle from A1 to the furthest cell (or reserves a declared dimension), so a 1.5 KB
file with one cell at XFD1048576 asks for hundreds of GB and aborts the process. The declared
dimensions and cell references of each format are read first from the raw parts, streaming.
Calamine's Rust panics (a BaseException) are caught like its other errors.
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import re
import struct
import zlib
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import olefile
import python_calamine as pc

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
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
    max_columns: int = 200

    @classmethod
    def from_settings(cls, limits: dict) -> "Limits":
        return cls(**{k: limits[k] for k in cls.__dataclass_fields__ if k in limits})


class UnreadableFile(Exception):
    """A returned file that cannot be read at all; `code` is a messages.CATALOGUE key, `detail`
    Chinese words for its template, `technical` the library's own words (for support only)."""

    def __init__(self, code: str, detail: str = "", technical: str = ""):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.technical = technical


@dataclass
class Sheet:
    name: str
    rows: list[list] = field(default_factory=list)
    hidden: bool = False
    error: str = ""  # set (in Chinese) when this sheet alone could not be read
    too_long: str = ""  # how many rows, in Chinese ("1500 行", "超过 1000 行"), when over Limits.max_rows
    technical: str = ""  # the library's own words for `error`, for support only


@dataclass
class Workbook:
    format: str  # xlsx, xlsm, xlsb, xls, ods
    sheets: list[Sheet]
    modified: datetime | None  # the workbook's own last-saved time, if it records one

    def sheet(self, name: str) -> Sheet | None:
        return next((s for s in self.sheets if s.name == name), None)


@dataclass
class Opened:
    """A file's format and the container calamine is about to read."""

    format: str
    data: bytes  # what calamine reads (a zip with its names normalised, if they needed it)
    archive: zipfile.ZipFile | None = None
    stream: bytes = b""  # an xls's BIFF workbook stream
    book: str = ""  # the workbook part of an xlsx, xlsm or xlsb (xl/workbook.xml, or as _rels/.rels says)
    biff5: bool = False  # an Excel 5/95 workbook (the stream is called "Book")


def sniff(data: bytes, limits: Limits = Limits()) -> Opened:
    """The format from the content: xlsx, xlsm, xlsb, ods or xls (raises UnreadableFile). A zip
    is checked for bombs against `limits` before any part is inflated."""
    if not data:
        raise UnreadableFile("empty_file")
    if data.startswith(OLE_MAGIC):
        return _sniff_ole(data)
    if _bare_biff(data):
        raise UnreadableFile("old_format")
    if not data.startswith(ZIP_MAGIC):
        head = data[:8]
        kind = "PDF 文档" if head.startswith(b"%PDF") else "文本文件" if _looks_like_text(data) else "未知格式"
        raise UnreadableFile("not_spreadsheet", kind)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise UnreadableFile("corrupt", "压缩结构损坏", _technical(err)) from err
    check_zip(archive, limits)
    archive, data, names = _normalise_zip(archive, data, names)
    book = workbook_part(archive, names)
    if book.endswith(".xml"):
        macros = any(n.endswith("vbaProject.bin") for n in names)
        return Opened("xlsm" if macros else "xlsx", data, archive, book=book)
    if book.endswith(".bin"):
        if book != "xl/workbook.bin":  # calamine follows _rels/.rels for xlsx, not for xlsb
            archive, data = _move_workbook(archive, book)
            book = "xl/workbook.bin"
        return Opened("xlsb", data, archive, book=book)
    if "mimetype" in names and _read_part(archive, "mimetype", 200).strip() == ODS_MIME:
        if b"encryption-data" in _read_part(archive, "META-INF/manifest.xml", 1_000_000):
            raise UnreadableFile("encrypted")
        return Opened("ods", data, archive)
    if "word/document.xml" in names:
        raise UnreadableFile("not_spreadsheet", "Word 文档")
    raise UnreadableFile("not_spreadsheet", "压缩包")


def _read_part(archive: zipfile.ZipFile, name: str, cap: int) -> bytes:
    """At most `cap` bytes of a part (b"" when missing or broken)."""
    try:
        with archive.open(name) as handle:
            return handle.read(cap)
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError):
        return b""


_OFFICE_DOCUMENT = re.compile(rb'Type="[^"]*/officeDocument"')


def workbook_part(archive: zipfile.ZipFile, names: set[str]) -> str:
    """Where the workbook part is: xl/workbook.xml (or .bin), or wherever the package
    relationships (_rels/.rels) say; "" when there is none."""
    for name in ("xl/workbook.xml", "xl/workbook.bin"):
        if name in names:
            return name
    for tag in _REL_TAG.findall(_read_part(archive, "_rels/.rels", 1_000_000)):
        if _OFFICE_DOCUMENT.search(tag):
            target = _resolve("", _attr(tag, b"Target"))
            if target in names and target.endswith((".xml", ".bin")):
                return target
    return ""


def _normalise_zip(archive: zipfile.ZipFile, data: bytes, names: set[str]):
    """A workbook whose entry names use backslashes (written by some zip tools) rewritten in
    memory with forward slashes, which both zipfile and calamine expect. Sizes were checked by
    check_zip already. Returns the archive, data and names unchanged when nothing needs it."""
    if not any("\\" in n for n in names):
        return archive, data, names
    out = io.BytesIO()
    try:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for info in archive.infolist():
                if not info.is_dir():
                    z.writestr(info.filename.replace("\\", "/"), archive.read(info.filename))
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError, zlib.error) as err:
        raise UnreadableFile("corrupt", "压缩结构损坏", _technical(err)) from err
    data = out.getvalue()
    archive = zipfile.ZipFile(io.BytesIO(data))
    return archive, data, set(archive.namelist())


def _move_workbook(archive: zipfile.ZipFile, book: str) -> tuple[zipfile.ZipFile, bytes]:
    """An xlsb whose workbook sits elsewhere (e.g. wtf/workbook.bin) rewritten in memory with that
    folder as xl/ and the workbook as xl/workbook.bin, where calamine looks for it."""
    folder, rels = _rels_of(book)

    def place(name: str) -> str:
        if name == book:
            return "xl/workbook.bin"
        if name == rels:
            return "xl/_rels/workbook.bin.rels"
        return "xl/" + name[len(folder):] if folder and name.startswith(folder) else name

    out = io.BytesIO()
    try:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                part = archive.read(info.filename)
                if info.filename == "_rels/.rels":
                    part = part.replace(f'Target="{book}"'.encode(), b'Target="xl/workbook.bin"').replace(
                        f'Target="/{book}"'.encode(), b'Target="xl/workbook.bin"')
                z.writestr(place(info.filename), part)
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError, zlib.error) as err:
        raise UnreadableFile("corrupt", "压缩结构损坏", _technical(err)) from err
    data = out.getvalue()
    return zipfile.ZipFile(io.BytesIO(data)), data


def _bare_biff(data: bytes) -> bool:
    """A BIFF2-4 workbook (or a bare BIFF5/8 stream): a BOF record at offset 0, no OLE container."""
    return len(data) >= 8 and data[0] == 0x09 and data[1] in (0x00, 0x02, 0x04, 0x08) and 4 <= data[2] <= 20 and data[3] == 0


def _sniff_ole(data: bytes) -> Opened:
    """An OLE container: an encrypted OOXML workbook, an xls (BIFF8, or BIFF5 in "Book"), or
    another Office document."""
    try:
        with olefile.OleFileIO(data) as ole:
            streams = {"/".join(parts).lower(): "/".join(parts) for parts in ole.listdir()}
            if "encryptioninfo" in streams or "encryptedpackage" in streams:
                raise UnreadableFile("encrypted")
            name = streams.get("workbook") or streams.get("book")
            if name is None:
                kind = "Word 文档" if "worddocument" in streams else "PowerPoint 文档" if "powerpoint document" in streams \
                    else "其他 Office 文件"
                raise UnreadableFile("not_spreadsheet", kind)
            stream = ole.openstream(name).read()
    except UnreadableFile:
        raise
    except Exception as err:  # noqa: BLE001 - olefile raises many types for broken containers
        raise UnreadableFile("corrupt", "文件结构损坏", _technical(err)) from err
    return Opened("xls", data, stream=stream, biff5=name.lower() == "book")


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
            raise UnreadableFile("zip_bomb", f"其中一部分压缩比 {ratio:.0f} 倍", info.filename[:200])
    if total > limits.max_unzipped_mb * 1_000_000:
        raise UnreadableFile("zip_bomb", f"解压后 {total / 1e6:.0f} MB")


_SHEET_TAG = re.compile(rb"<(?:\w+:)?sheet\b[^>]*>")
_REL_TAG = re.compile(rb"<Relationship\b[^>]*>")
_ATTR = re.compile(rb'([\w:.-]+)="([^"]*)"')
_SHEET_DATA = re.compile(rb"<(\w+:)?sheetData\b")
_DIMENSION = re.compile(rb'<(?:\w+:)?dimension\b[^>]*?\bref="([^"]*)"')
_CELL_REF = re.compile(rb'\sr="\$?([A-Za-z]{1,4})\$?([0-9]{1,10})"')
_ROW_REF = re.compile(rb'<(?:\w+:)?row\b[^>]*?\sr="([0-9]{1,10})"')
_A1 = re.compile(r"\$?([A-Za-z]{1,4})\$?([0-9]{1,10})$")
MAX_COLUMNS = 64  # value cells a sheet may hold per allowed row (a form uses 8 columns)


@dataclass
class Size:
    """How large a sheet says it is or holds, found before calamine parses it."""

    rows: int = 0     # the furthest row (1-based), counted or referenced or declared
    columns: int = 0  # the furthest column (1-based)
    cells: int = 0
    partial: bool = False  # reading stopped once the sheet was known to be beyond the limits

    def grow(self, rows: int = 0, columns: int = 0) -> None:
        self.rows, self.columns = max(self.rows, rows), max(self.columns, columns)

    def too_long(self, limits: "Limits") -> bool:
        return self.rows > limits.max_rows or self.cells > limits.max_rows * MAX_COLUMNS

    def over(self, limits: "Limits") -> str:
        """Why this sheet is refused before parsing, in Chinese ("" when it is within the limits)."""
        if self.too_long(limits):
            return f"{max(self.rows, limits.max_rows + 1)} 行"
        if self.columns > limits.max_columns:
            return f"{self.columns} 列"
        return ""


def column_number(letters: str) -> int:
    """A1-style column letters as a 1-based number (A -> 1, XFD -> 16384)."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + ord(ch) - 64
    return n


@functools.lru_cache(maxsize=1024)  # a month's 15,000 sheets declare a handful of dimensions
def _a1(ref: str) -> tuple[int, int]:
    """(row, column) of the last cell of an A1 reference or range ("A1:H40" -> (40, 8))."""
    match = _A1.search(ref.split(":")[-1].strip())
    return (int(match.group(2)), column_number(match.group(1))) if match else (0, 0)


def sheet_parts(archive: zipfile.ZipFile, book: str) -> dict[str, str]:
    """Sheet part -> sheet name, from the workbook's XML and its relationships ({} if unreadable)."""
    folder, rels = _rels_of(book)
    try:
        parts = _relationships(archive.read(rels))
        names = {}
        for tag in _SHEET_TAG.findall(archive.read(book)):
            plain = _PLAIN_SHEET.fullmatch(tag)  # as Excel, WPS and xlsxwriter write it: read at once
            if plain:
                name, target = plain.group(1).decode("utf-8", "replace"), parts.get(plain.group(2).decode("utf-8", "replace"), "")
            else:
                attrs = _attrs(tag)
                name, target = attrs.get(b"name", ""), parts.get(attrs.get(b"r:id") or attrs.get(b"id", ""), "")
            names[_resolved(folder, target)] = html.unescape(name)
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError, zlib.error):
        return {}
    return names


# A sheet tag with exactly these attributes in this order (what _attrs would read from it).
_PLAIN_SHEET = re.compile(rb'<sheet name="([^"]*)" sheetId="[0-9]{1,10}"(?: state="[A-Za-z]{1,16}")? r:id="([^"]*)"/>')
_RELATIONSHIPS: dict[bytes, dict[str, str]] = {}


def _relationships(xml: bytes) -> dict[str, str]:
    """Relationship Id -> Target of a relationships part; the forms of a month share a handful."""
    parts = _RELATIONSHIPS.get(xml)
    if parts is None:
        parts = {}
        for tag in _REL_TAG.findall(xml):
            attrs = _attrs(tag)
            parts[attrs.get(b"Id", "")] = attrs.get(b"Target", "")
        if len(_RELATIONSHIPS) >= 64:
            _RELATIONSHIPS.clear()
        _RELATIONSHIPS[xml] = parts
    return parts


@functools.lru_cache(maxsize=4096)  # the same sheet part names in every form of a month
def _resolved(folder: str, target: str) -> str:
    return _resolve(folder, target)


def _rels_of(part: str) -> tuple[str, str]:
    """A part's folder and its relationships part ("xl/workbook.xml" -> "xl/", "xl/_rels/workbook.xml.rels")."""
    folder, _, stem = part.rpartition("/")
    folder = folder + "/" if folder else ""
    return folder, f"{folder}_rels/{stem}.rels"


def _resolve(folder: str, target: str) -> str:
    """A relationship's target as a zip entry name: absolute from the root, else from `folder`."""
    target = target.replace("\\", "/")
    if target.startswith("/"):
        return target.lstrip("/")
    parts: list[str] = []
    for piece in (folder + target).split("/"):
        if piece == "..":
            parts = parts[:-1]
        elif piece not in ("", "."):
            parts.append(piece)
    return "/".join(parts)


def oversize_sheets(opened: Opened, limits: Limits, skip: frozenset[str] = frozenset(),
                    kept: "Inflated | None" = None) -> dict[str, Size]:
    """Sheets of an xlsx, xlsm or xlsb beyond the limits (name -> size), found by streaming
    each sheet part, so that calamine never builds their grid. Raises UnreadableFile when a
    part is beyond the limits and its sheet cannot be named (the whole file is refused). The
    parts proven in one pass are kept in `kept` (xlsx, xlsm), for calamine to read as proven."""
    archive, folder = opened.archive, _rels_of(opened.book)[0]
    if opened.format == "xlsb":
        names, measure = xlsb_sheet_names(archive, opened.book), _xlsb_size
    else:
        names, measure = sheet_parts(archive, opened.book), _xml_size
    found = {}
    sheets = folder + "worksheets/"
    buffer = getattr(archive.fp, "getbuffer", None) if measure is _xml_size else None
    with buffer() if buffer is not None else contextlib.nullcontext() as view:  # one view for every part
        for info in archive.infolist():
            name = info.filename
            if not (name in names or name.startswith(sheets)) or info.is_dir():
                continue
            if names.get(name) in skip:
                continue
            size = _xml_size(archive, name, limits, kept, view, info) if measure is _xml_size else \
                measure(archive, name, limits)
            if not size.over(limits):
                continue
            if name not in names:
                raise UnreadableFile("too_big", f"工作表有 {size.over(limits)}", name)
            found[names[name]] = size
    return found


_UNIQUE_COUNT = re.compile(rb'<(?:\w+:)?sst\b[^>]*?\buniqueCount="\s*([0-9]{1,30})')


def check_shared_strings(opened: Opened) -> None:
    """Refuse a shared-string table that declares more strings than its part could hold: calamine
    reserves room for uniqueCount strings on opening, and 4,000,000,000 of them abort the process."""
    folder = _rels_of(opened.book)[0]
    for info in opened.archive.infolist():
        if info.filename.lower() != (folder + "sharedstrings.xml").lower():
            continue
        found = _UNIQUE_COUNT.search(_read_part(opened.archive, info.filename, 64_000))
        declared = int(found.group(1)) if found else 0
        if declared > info.file_size // 5 + 1000:  # each string takes at least <si/>, 5 bytes
            raise UnreadableFile("zip_bomb", f"共享字符串表声明了 {declared} 项", info.filename)


def _attrs(tag: bytes) -> dict[bytes, str]:
    """A tag's attributes by name, each as `_attr` reads it (the first of a repeated name)."""
    return {name: value.decode("utf-8", "replace") for name, value in reversed(_ATTR.findall(tag))}


def _attr(tag: bytes, key: bytes) -> str:
    for name, value in _ATTR.findall(tag):
        if name == key:
            return value.decode("utf-8", "replace")
    return ""


def _xml_size(archive: zipfile.ZipFile, part: str, limits: Limits, kept: "Inflated | None" = None,
              view: memoryview | None = None, info: zipfile.ZipInfo | None = None) -> Size:
    """The declared dimension, the furthest row and cell reference, and the number of rows and
    cells of a sheet's XML, read while inflating it 1 MB at a time; it stops as soon as the sheet
    is known to be beyond the limits (the counts are then what was seen so far)."""
    small = _form_sized(archive, part, limits, kept, view, info)
    if small is not None:
        return small
    size, tail, prefix, counted = Size(), b"", None, 0  # counted: row elements seen so far

    def absorb(block: bytes) -> None:
        nonlocal counted
        rows, cells, far = _tags(block, prefix, limits)
        counted += rows
        _grow_refs(size, block, far)
        size.grow(rows=counted)
        size.cells += cells

    try:
        with archive.open(part) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                block = tail + chunk
                if prefix is None:  # <sheetData> or <x:sheetData>: the namespace prefix of every tag
                    dimension = _DIMENSION.search(block)
                    if dimension:
                        size.grow(*_a1(dimension.group(1).decode("ascii", "replace")))
                    found = _SHEET_DATA.search(block)
                    if found:
                        prefix = found.group(1) or b""
                    elif len(block) > (1 << 20):
                        prefix = b""
                cut = max(block.rfind(b"<"), 0)  # a tag cut in two is read with the next chunk
                block, tail = block[:cut], block[cut:]
                absorb(block)
                if size.over(limits):
                    size.partial = True
                    return size
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError, zlib.error):
        return size  # calamine will report the damage itself
    absorb(tail)
    return size


def _form_sized(archive: zipfile.ZipFile, part: str, limits: Limits, kept: "Inflated | None" = None,
                view: memoryview | None = None, info: zipfile.ZipInfo | None = None) -> Size | None:
    """The declared dimension of a sheet part shown to be within the limits in one pass, or None
    when that takes the careful count of `_xml_size`. A part small enough to hold no more cells
    than the limits allow, in which every row and cell tag opens with a short reference (`<row
    r="12"`, `<c r="G12"`: at most column Z and row 999), cannot place a cell beyond them: that
    is how Excel, WPS, LibreOffice and xlsxwriter write a form, and one regular-expression search
    in C proves it, where counting every tag costs as much as parsing the sheet."""
    small_enough, short = _proof(limits)
    if info is None:
        try:
            info = archive.getinfo(part)
        except KeyError:
            return None
    if short is None or info.file_size > small_enough:
        return None
    xml = _inflate(archive, info, small_enough, view)
    if xml is None:
        return None
    found = _SHEET_DATA.search(xml)
    # calamine reads cells only between the sheetData tags: the first and the last mention of
    # sheetData (in whatever tag or comment) enclose them, and half a form's part lies outside
    start, end = xml.find(b"sheetData"), xml.rfind(b"sheetData")
    start, end = (0, len(xml)) if start < 0 else (start, end + len(b"sheetData"))
    if (len(xml) > small_enough or b"\0" in xml[:256] or (found and found.group(1)) or short.search(xml, start, end)
            or _PREFIXED.search(xml, start, end)):  # <x:c r="XFD1048576"> is a cell to calamine too
        return None
    dimension = _DIMENSION.search(xml, 0, found.start() if found else len(xml))
    if kept is not None and len(xml) == info.file_size:  # proven, and as long as the directory says
        kept.keep(part, xml)
    return Size(*_a1(dimension.group(1).decode("ascii", "replace"))) if dimension else Size()


@dataclass
class Inflated:
    """Sheet parts the size proof inflated and proved, kept (up to `budget` bytes in all) so that
    calamine parses these very bytes from a package that holds them stored (`stored_package`)
    instead of inflating every part a second time."""

    budget: int = 32_000_000  # a form of 40 subject sheets keeps about 0.75 MB
    parts: dict[str, bytes] = field(default_factory=dict)

    def keep(self, part: str, xml: bytes) -> None:
        if len(xml) <= self.budget:
            self.parts[part] = xml
            self.budget -= len(xml)


_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_LOCAL_HEAD = struct.Struct("<4s22xHH")  # a local header's signature, name length and extra length


def stored_package(archive: zipfile.ZipFile, parts: dict[str, bytes]) -> bytes | None:
    """The same zip package with `parts` (part name -> its inflated bytes) stored rather than
    deflated and every other entry copied as it is, in the same order with the same CRC-32s;
    None when the package is not plain enough to copy (see `_raw`), which leaves calamine the
    original. Calamine then reads a proven sheet's bytes as they are (and still checks their
    CRC-32), where it would inflate them again: the one inflate serves the size proof and the
    parse. An entry's name is written in UTF-8, flagged so."""
    buffer = getattr(archive.fp, "getbuffer", None)
    infos = archive.infolist()
    if buffer is None or len(infos) > 0xFFFF or len({i.filename for i in infos}) != len(infos):
        return None
    local, central, at = [], [], 0
    try:
        with buffer() as view:
            for info in infos:
                body = parts.get(info.filename)
                if body is not None and len(body) == info.file_size:
                    method, size = zipfile.ZIP_STORED, len(body)
                else:
                    raw = _raw(view, info)
                    if raw is None:
                        return None
                    body, method, size = bytes(raw), info.compress_type, info.file_size
                name = info.filename.encode("utf-8")
                if max(len(body), size, at) > 0xFFFFFFFE:
                    return None
                fields = (0x800, method, 0, 0x21, info.CRC, len(body), size, len(name))
                local += (_LOCAL.pack(ZIP_MAGIC, 20, *fields, 0), name, body)
                central += (_CENTRAL.pack(b"PK\x01\x02", 20, 20, *fields, 0, 0, 0, 0, 0, at), name)
                at += _LOCAL.size + len(name) + len(body)
    except (ValueError, BufferError, struct.error, UnicodeEncodeError):
        return None
    directory = b"".join(central)
    return b"".join((*local, directory, _END.pack(b"PK\x05\x06", 0, 0, len(infos), len(infos), len(directory), at, 0)))


def _raw(view: memoryview, info: zipfile.ZipInfo) -> memoryview | None:
    """A part's bytes as they lie in the zip (compressed), from its local header; None when that
    is not plain: encrypted, neither stored nor deflated, a local header that does not match the
    directory, or cut short."""
    if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return None
    at = info.header_offset
    if at < 0 or at + 30 > len(view):
        return None
    magic, name_length, extra_length = _LOCAL_HEAD.unpack_from(view, at)
    if magic != ZIP_MAGIC:
        return None
    start = at + 30 + name_length + extra_length
    if bytes(view[at + 30:at + 30 + name_length]) not in _encodings(info.orig_filename):
        return None
    raw = view[start:start + info.compress_size]
    return raw if len(raw) == info.compress_size else None


def _inflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, view: memoryview | None = None) -> bytes | None:
    """A part's bytes, at most `cap` + 1 of them, inflated in one call from the zip's buffer; None
    when that is not plain (not in memory, encrypted, neither stored nor deflated, a local header
    that does not match the directory, damage), for the careful path to read it. zipfile's own
    reader costs as much again as the inflating, for the thousands of small parts of a month.
    `view`: the zip's buffer, when the caller holds it for many parts."""
    if view is None:
        buffer = getattr(archive.fp, "getbuffer", None)
        if buffer is None:
            return None
        try:
            with buffer() as held:
                return _inflate(archive, info, cap, held)
        except BufferError:
            return None
    try:
        raw = _raw(view, info)
        if raw is None:
            return None
        if info.compress_type == zipfile.ZIP_STORED:
            return bytes(raw[:cap + 1])
        inflater = zlib.decompressobj(-15)
        xml = inflater.decompress(raw, cap + 1)
        del raw
        # a stream that ends early is damage: the careful path reads it as zipfile sees it
        return xml if inflater.eof or len(xml) > cap else None
    except (zlib.error, ValueError, struct.error, BufferError):
        return None


@functools.lru_cache(maxsize=16)
def _proof(limits: Limits) -> tuple[int, re.Pattern | None]:
    """The size below which a sheet part cannot hold more cells than `limits` allow (fewer bytes,
    fewer cells), and the pattern of the tags without a short reference (`_short_refs`)."""
    return limits.max_rows * MAX_COLUMNS * len(b'<c r="A1"/>'), _short_refs(limits)


@functools.lru_cache(maxsize=4096)  # the same part names in every file of a month
def _encodings(name: str) -> tuple[bytes, ...]:
    """How a local header may spell a part's name (UTF-8, or the old DOS code page)."""
    try:
        return name.encode("utf-8"), name.encode("cp437")
    except UnicodeEncodeError:
        return (name.encode("utf-8"),)


@functools.lru_cache(maxsize=4)
def _short_refs(limits: Limits) -> re.Pattern | None:
    """A pattern of the row and cell tags that do not open with a reference below the limits: one
    column letter (A-Z) and at most as many digits as every row number within max_rows has (3
    digits up to row 999 for a form's 1,000 rows; 5 for a roster's 200,000)."""
    digits = len(str(limits.max_rows + 1)) - 1  # 10**digits - 1 <= max_rows
    if limits.max_columns < 26 or digits < 1:
        return None
    return re.compile(rb'<(?:c(?! r="[A-Z][0-9]{1,%d}")|row(?! r="[0-9]{1,%d}"))[\s/>]' % (digits, digits))


def _tags(block: bytes, prefix: bytes | None, limits: Limits) -> tuple[int, int, re.Pattern | None]:
    """The rows and cells in `block`, and — where every row and cell names its place first
    (`<row r="…"`, `<c r="…"`, as Excel, WPS, LibreOffice and xlsxwriter write them) — a pattern
    of the references that may be beyond the limits: a column past Z has two letters, a row past
    max_rows at least as many digits. A form's 17,000 short references then cost a few passes in
    C rather than a Python object each; any other layout is read reference by reference."""
    row, cell, far = _fast_refs(prefix or b"", limits)
    row_open, row_bare = block.count(row + b" "), block.count(row + b">")
    cell_open, cell_bare = block.count(cell + b" "), block.count(cell + b">") + block.count(cell + b"/>")
    rows, cells = row_open + row_bare, cell_open + cell_bare
    if _odd_tags(block):  # calamine reads <x:c> in any sheetData, and <c\nr="…">, as cells too: count them all
        tags = _ANY_CELL_OR_ROW.findall(block)
        rows = tags.count(b"row")
        return rows, len(tags) - rows, None
    plain = (prefix is not None and far is not None and not row_bare and not cell_bare and b'r="$' not in block
             and block.count(row + b' r="') == row_open and block.count(cell + b' r="') == cell_open)
    return rows, cells, far if plain else None


# A row or cell tag of any namespace prefix, followed by any XML white space, / or >: what
# calamine reads as a row or cell (it matches tags by their local name, in any sheetData).
_ANY_CELL_OR_ROW = re.compile(rb"<(?:[^\s<>/!?:\"']+:)?(c|row)[ \t\r\n/>]")
# What the plain counts and patterns would miss: a prefixed row or cell tag (<x:c>; found from
# its colon, which a form's part holds only in spans="1:8"), or a tab or line break after the
# name (<c\nr="XFD1048576">). Anything else that matches (text) only costs the careful count.
_PREFIXED = re.compile(rb":(?:c|row)[\s/>]")
_SPACED = re.compile(rb"<(?:c|row)[\t\r\n]")


def _odd_tags(block: bytes) -> bool:
    """Whether `block` holds a row or cell tag that the plain counts and patterns would miss."""
    return _PREFIXED.search(block) is not None or _SPACED.search(block) is not None


def _grow_refs(size: Size, block: bytes, far: re.Pattern | None = None) -> None:
    """Grow `size` by the cell and row references in `block`: only those `far` finds, when given."""
    if far is not None:
        for match in far.finditer(block):
            _grow_refs(size, block[match.start():match.start() + 40])
        return
    refs = _CELL_REF.findall(block)
    if refs:
        letters = {c for c, _ in refs}
        size.grow(max(int(r) for _, r in refs), max(column_number(c.decode()) for c in letters))
    rows = _ROW_REF.findall(block)
    if rows:
        size.grow(rows=max(map(int, rows)))


@functools.lru_cache(maxsize=16)
def _fast_refs(prefix: bytes, limits: Limits) -> tuple[bytes, bytes, re.Pattern | None]:
    """The row tag, the cell tag and a pattern of the references that may be beyond `limits`
    (None where a short reference can be too: fewer than 26 columns allowed)."""
    cell, row = b"<" + prefix + b"c", b"<" + prefix + b"row"
    if limits.max_columns < 26 or limits.max_rows < 1:
        return row, cell, None
    digits = len(str(limits.max_rows))
    far = re.compile(re.escape(cell) + rb' r="(?:[A-Za-z]{2}|[A-Za-z][0-9]{%d})|' % digits
                     + re.escape(row) + rb' r="[0-9]{%d}' % digits)
    return row, cell, far


# -- xlsb: BIFF12 records ------------------------------------------------------------------------
BRT_ROW_HDR, BRT_WS_DIM, BRT_BUNDLE_SH = 0x0000, 0x0094, 0x009C
BRT_CELLS = set(range(1, 14)) | {0x003E}  # BrtCellBlank .. BrtFmlaError, BrtCellRString: col first


def _brt_records(handle, keep: int = 16):
    """(type, the first `keep` bytes of the body) of each BIFF12 record, reading 1 MB at a time."""
    buf, skip = b"", 0
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        if skip >= len(chunk):
            skip -= len(chunk)
            continue
        buf, skip, pos = buf + chunk[skip:], 0, 0
        while True:
            head = _brt_header(buf, pos)
            if head is None:
                break
            typ, length, start = head
            if start + min(length, keep) > len(buf):
                break  # the start of the body comes with the next chunk
            yield typ, buf[start:start + min(length, keep)]
            if start + length > len(buf):
                skip, pos = start + length - len(buf), len(buf)
                break
            pos = start + length
        buf = buf[pos:]


def _brt_header(buf: bytes, pos: int) -> tuple[int, int, int] | None:
    """A record's type, length and where its body starts; None when the header is cut off."""
    try:
        typ = buf[pos]
        pos += 1
        if typ & 0x80:
            typ = (typ & 0x7F) | ((buf[pos] & 0x7F) << 7)
            pos += 1
        length = 0
        for shift in (0, 7, 14, 21):
            byte = buf[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
    except IndexError:
        return None
    return typ, length, pos


def _xlsb_size(archive: zipfile.ZipFile, part: str, limits: Limits) -> Size:
    """The declared BrtWsDim, the furthest row and column and the cells of an xlsb sheet part
    (read until it is known to be beyond the limits)."""
    size = Size()
    try:
        with archive.open(part) as handle:
            for n, (typ, body) in enumerate(_brt_records(handle)):
                if n % 1024 == 0 and size.over(limits):  # known to be too large: stop reading
                    size.partial = True
                    return size
                if typ == BRT_WS_DIM and len(body) >= 16:
                    _, row_last, _, col_last = struct.unpack_from("<4I", body)
                    size.grow(row_last + 1, col_last + 1)
                elif typ == BRT_ROW_HDR and len(body) >= 4:
                    size.grow(rows=struct.unpack_from("<I", body)[0] + 1)
                elif typ in BRT_CELLS and len(body) >= 4:
                    size.cells += 1
                    size.grow(columns=struct.unpack_from("<I", body)[0] + 1)
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError, zlib.error):
        return size
    return size


def xlsb_sheet_names(archive: zipfile.ZipFile, book: str = "xl/workbook.bin") -> dict[str, str]:
    """Sheet part -> name of an xlsb, from workbook.bin's BrtBundleSh records and the rels."""
    folder, rels = _rels_of(book)
    try:
        parts = {_attr(tag, b"Id"): _attr(tag, b"Target") for tag in _REL_TAG.findall(archive.read(rels))}
        names = {}
        with archive.open(book) as handle:
            for typ, body in _brt_records(handle, keep=4096):
                if typ != BRT_BUNDLE_SH:
                    continue
                rel, at = _wide_string(body, 8)
                name, _ = _wide_string(body, at)
                if rel in parts:
                    names[_resolve(folder, parts[rel])] = name
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError, zlib.error, struct.error):
        return {}
    return names


def _wide_string(body: bytes, at: int) -> tuple[str, int]:
    count = struct.unpack_from("<I", body, at)[0]
    if count == 0xFFFFFFFF:
        return "", at + 4
    end = at + 4 + 2 * count
    return body[at + 4:end].decode("utf-16-le", "replace"), end


# -- xls: BIFF5/BIFF8 records --------------------------------------------------------------------
BOF, EOF_, FILEPASS, BOUNDSHEET, DIMENSIONS = 0x0809, 0x000A, 0x002F, 0x0085, 0x0200
XLS_BOFS = {0x0809, 0x0009, 0x0209, 0x0409}
XLS_CELLS = {0x0006, 0x00D6, 0x00FD, 0x0201, 0x0203, 0x0204, 0x0205, 0x027E}  # row, column first
XLS_MULTI = {0x00BD, 0x00BE}  # MULRK, MULBLANK: row, first column, ..., last column


def xls_sizes(stream: bytes, limits: Limits) -> dict[str, Size]:
    """Each sheet's declared DIMENSIONS and furthest cell in an xls workbook stream, walked the
    way calamine walks it (the globals, then each sheet from its BOUNDSHEET offset). Raises
    UnreadableFile for a password (FILEPASS) or too many sheets."""
    sheets: dict[int, str] = {}
    biff8 = True
    for typ, body in _biff_records(stream, 0):
        if typ == BOF and len(body) >= 2:
            biff8 = struct.unpack_from("<H", body)[0] != 0x0500
        elif typ == FILEPASS:
            raise UnreadableFile("encrypted")
        if typ == BOUNDSHEET and len(body) >= 8:
            sheets[struct.unpack_from("<I", body)[0]] = _boundsheet_name(body, biff8)
        elif typ == EOF_:
            break
    if len(sheets) > limits.max_sheets:
        raise UnreadableFile("too_many_sheets", f"{len(sheets)} 张")
    return {name: _biff_sheet_size(stream, offset, limits) for offset, name in sheets.items()}


def _biff_records(stream: bytes, pos: int):
    while pos + 4 <= len(stream):
        typ, length = struct.unpack_from("<HH", stream, pos)
        yield typ, stream[pos + 4:pos + 4 + length]
        pos += 4 + length


def _boundsheet_name(body: bytes, biff8: bool) -> str:
    """A BOUNDSHEET's sheet name (for messages only: calamine decodes BIFF5 names by code page)."""
    count = body[6]
    if biff8:  # a flags byte, then Latin-1 or UTF-16 characters
        wide = len(body) > 7 and body[7] & 1
        return body[8:8 + count * (2 if wide else 1)].decode("utf-16-le" if wide else "latin-1", "replace")
    return body[7:7 + count].decode("latin-1", "replace")


def _biff_sheet_size(stream: bytes, offset: int, limits: Limits) -> Size:
    """A sheet's declared and furthest extent, read until it is known to be beyond the limits."""
    size, depth, seen_bof = Size(), 0, False
    for n, (typ, body) in enumerate(_biff_records(stream, offset)):
        if n % 1024 == 0 and size.over(limits):
            break
        if depth:  # an embedded chart's substream: calamine skips it
            depth += typ in XLS_BOFS
            depth -= typ == EOF_
            continue
        if typ in XLS_BOFS:
            depth, seen_bof = (depth + 1, seen_bof) if seen_bof else (depth, True)
        elif typ == EOF_:
            break
        elif typ == DIMENSIONS and len(body) in (10, 14):
            first_row, last_row, first_col, last_col = (struct.unpack_from("<IIHH", body) if len(body) == 14
                                                        else struct.unpack_from("<HHHH", body))
            first_col = 0 if first_col > 0xFF or last_col < first_col else first_col
            if last_row >= 1 and first_row > last_row - 1:
                last_row = 1 << 32  # calamine's row count wraps around: as good as endless
            size.grow(last_row, last_col)
        elif typ in XLS_CELLS and len(body) >= 4:
            row, col = struct.unpack_from("<HH", body)
            size.cells += 1
            size.grow(row + 1, col + 1)
        elif typ in XLS_MULTI and len(body) >= 6:
            row, _ = struct.unpack_from("<HH", body)
            size.cells += 1
            size.grow(row + 1, struct.unpack_from("<H", body, len(body) - 2)[0] + 1)
    return size


# -- ods ---------------------------------------------------------------------------------------------
_ODS_TAG = re.compile(rb"<table:(table-row|table-cell|covered-table-cell|table)(?=[\s/>])([^>]*)>")


def long_tables(archive: zipfile.ZipFile, limits: Limits) -> dict[str, Size]:
    """Tables of an ODS whose rows, columns or cells with a value, repeats expanded, exceed the
    limits (name -> Size). A few bytes of table:number-rows-repeated can otherwise make calamine
    build hundreds of millions of cells when it opens the file."""
    found: dict[str, Size] = {}
    name, size, repeat, column, tail, row_has_value = "", Size(), 0, 0, b"", False
    at = 0  # the rows above the current one, repeats expanded: a value far down makes a tall grid

    def close() -> None:
        if name and size.over(limits):
            found[name] = size

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
                        name, size, at, repeat = html.unescape(_attr(attrs, b"table:name")), Size(), 0, 0
                    elif tag == b"table-row":
                        at += repeat
                        repeat = _int(_attr(attrs, b"table:number-rows-repeated"))
                        row_has_value, column = False, 0
                    else:
                        n = _int(_attr(attrs, b"table:number-columns-repeated"))
                        column += n
                        if b"office:value-type" in attrs:
                            size.cells += repeat * n
                            size.grow(columns=column)
                            if not row_has_value:
                                size.grow(rows=at + repeat)
                                row_has_value = True
        close()
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, EOFError, ValueError, zlib.error):
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


def read_workbook(path: str | Path, limits: Limits = Limits(), data: bytes | None = None,
                  skip: frozenset[str] = frozenset()) -> Workbook:
    """Read every sheet of a workbook into plain rows (raises UnreadableFile); sheets named in
    `skip` (of an xlsx, xlsm or xlsb) are neither measured nor parsed, and left out."""
    path = Path(path)
    if data is None:
        size = path.stat().st_size
        if size > limits.max_file_mb * 1_000_000:
            raise UnreadableFile("too_large", f"{size / 1e6:.1f} MB")
        data = path.read_bytes()
    elif len(data) > limits.max_file_mb * 1_000_000:
        raise UnreadableFile("too_large", f"{len(data) / 1e6:.1f} MB")
    opened = sniff(data, limits)
    oversize: dict[str, Size] = {}
    package = opened.data
    if opened.format in ("xlsx", "xlsm", "xlsb"):
        kept = Inflated() if opened.format != "xlsb" else None
        if opened.format != "xlsb":
            check_shared_strings(opened)
        oversize = oversize_sheets(opened, limits, skip, kept)
        if kept is not None and kept.parts:
            package = stored_package(opened.archive, kept.parts) or opened.data
            del kept
    elif opened.format == "ods":  # calamine builds every table of an ODS on opening: refuse the file
        for name, size in long_tables(opened.archive, limits).items():
            raise UnreadableFile("zip_bomb", f"工作表“{name[:31]}”展开后有 {size.rows} 行、{size.columns} 列、"
                                             f"{size.cells} 个单元格")
    elif opened.format == "xls":  # likewise every sheet of an xls
        for name, size in xls_sizes(opened.stream, limits).items():
            reason = size.over(limits)
            if reason:
                raise UnreadableFile("too_big", f"工作表“{name[:31]}”有 {reason}")
    try:
        book = pc.CalamineWorkbook.from_filelike(io.BytesIO(package))
    except pc.PasswordError as err:
        raise UnreadableFile("encrypted", technical=_technical(err)) from err
    except BaseException as err:  # calamine raises several types for broken files, and panics
        if not _is_read_failure(err):
            raise
        raise _unreadable(err, opened) from err
    try:
        try:
            meta = list(book.sheets_metadata)
        except BaseException as err:
            if not _is_read_failure(err):
                raise
            raise _unreadable(err, opened) from err
        if len(meta) > limits.max_sheets:
            raise UnreadableFile("too_many_sheets", f"{len(meta)} 张")
        lazy = skip if opened.format in ("xlsx", "xlsm", "xlsb") else frozenset()  # the others are read whole
        sheets = [_read_sheet(book, m, limits, oversize.get(m.name))
                  for m in meta if m.typ == pc.SheetTypeEnum.WorkSheet and m.name not in lazy]
    finally:
        book.close()
    return Workbook(opened.format, sheets, modified_time(opened.format, opened.archive))


def _is_read_failure(err: BaseException) -> bool:
    """An error of calamine's: any Exception, or a Rust panic (pyo3's PanicException derives from
    BaseException so that `except Exception` misses it). KeyboardInterrupt and SystemExit are not."""
    return isinstance(err, Exception) or type(err).__name__ == "PanicException"


def _unreadable(err: BaseException, opened: Opened) -> UnreadableFile:
    """The UnreadableFile for calamine's failure to open a file, with a reason in Chinese."""
    text = _technical(err)
    if type(err).__name__ == "PanicException":
        return UnreadableFile("read_failed", technical=text)
    if opened.biff5:
        return UnreadableFile("old_format", technical=text)
    if "password" in text.lower():
        return UnreadableFile("encrypted", technical=text)
    if isinstance(err, zipfile.BadZipFile) or "zip" in text.lower():
        return UnreadableFile("corrupt", "压缩结构损坏", text)
    return UnreadableFile("corrupt", "文件内容不完整或不符合格式", text)


def _read_sheet(book: pc.CalamineWorkbook, meta: pc.SheetMetadata, limits: Limits,
                oversize: Size | None = None) -> Sheet:
    sheet = Sheet(meta.name, hidden=meta.visible != pc.SheetVisibleEnum.Visible)
    if oversize:  # measured in the raw part already: never parsed
        _refuse(sheet, oversize, limits)
        return sheet
    try:
        data = book.get_sheet_by_name(meta.name)
        size = Size(data.end[0] + 1, data.end[1] + 1) if data.end else Size()
        if size.over(limits):
            _refuse(sheet, size, limits)
            return sheet
        sheet.rows = data.to_python(skip_empty_area=False)
    except BaseException as err:  # a damaged sheet fails alone; the others still read
        if not _is_read_failure(err):
            raise
        sheet.error, sheet.technical = _plain(err), _technical(err)
    return sheet


def _refuse(sheet: Sheet, size: Size, limits: Limits) -> None:
    """Mark a sheet beyond the limits: too many rows as too_long, too many columns as an error."""
    if size.too_long(limits):
        # where reading stopped early, the count so far depends on where it stopped: say only "more than"
        rows = max(size.rows, limits.max_rows + 1)
        sheet.too_long = f"超过 {limits.max_rows} 行" if size.partial else f"{rows} 行"
    else:
        sheet.error = f"有 {size.columns} 列，超出上限 {limits.max_columns} 列"


def _plain(err: BaseException) -> str:
    """A sheet's read error in Chinese words the office can forward."""
    text = str(err)
    if type(err).__name__ == "WorksheetNotFound":
        return "工作表的内容在文件中缺失"
    if "entity" in text.lower():
        return "含有 XML 实体声明，为安全起见未读取"
    return "工作表内容不完整或不符合格式"


def _technical(err: BaseException) -> str:
    """The library's own words, for support: the error's type and first line."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}"[:300]
