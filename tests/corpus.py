"""A corpus of broken and hostile returned files, each made from one good filled form.

Every case is a generator `make(out_dir, base) -> Path` that writes one bad file into
`out_dir` from the good workbook `base` (assessor E09's filled form, subjects C001 and C002)
and an `Expect`: what `happyhome collect` must make of it. The bad part is always in the C001
sheet (SHEET1) unless the whole file is bad; the C002 sheet (SHEET2) stays good, so a file
with one bad sheet is partly accepted.

Files are built the way they arrive: an assessor's edits with openpyxl (load the real form,
edit, save), or the zip's XML parts rewritten directly where openpyxl cannot express the case
(hostile XML, cached formula values, NaN cells, a missing part, a zip bomb).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import string
import struct
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import openpyxl

import conftest
from pipeline.forms import META_SHEET, SEAL_ROW, FormSpec, sign, write_form
from pipeline.roster import Assessor, Subject, write_roster
from pipeline.systems import load_system

PERIOD = "2026-11"
SYSTEM = "community"
ASSESSOR = ("E09", "赵六", "测试单位", "e09@example.org")
SUBJECTS = conftest.SUBJECTS
ASSESSORS = [*conftest.ASSESSORS, ASSESSOR]
# E01-E03 rate everything (their forms are the good files); E09, whose form every bad file
# is made from, rates C001 and C002 only.
PAIRS = [(a, s[0]) for a in ("E01", "E02", "E03") for s in SUBJECTS] + [("E09", "C001"), ("E09", "C002")]
SHEET1, SHEET2 = "C001 湖滨街道东坡路社区", "C002 玉林街道黉门街社区"
ITEM_ROW = {code: 7 + n for n, code in enumerate(load_system(SYSTEM).codes)}  # 1-based rows of the items


def base_scores(system_id: str = SYSTEM) -> dict[str, float]:
    """The good answers: 满分 on even items, one point less on odd ones."""
    return {i.code: (i.max if n % 2 == 0 else i.max - 1) for n, i in enumerate(load_system(system_id).items)}


@dataclass(frozen=True)
class Expect:
    """What collect must make of a case.

    outcome: "file" (the whole file rejected), "sheet" (sheet `sheet` rejected, the rest of the
    file counted), "warning" (accepted with a warning), "accepted" (accepted as it is),
    "duplicate" (not counted again).
    """

    outcome: str
    code: str | None = None
    sheet: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    make: Callable[[Path, Path], Path]
    expect: Expect
    hostile: bool = False  # built to exhaust time or memory, or to read local files


# -- building blocks ---------------------------------------------------------------------------
def _edit(base: Path, dst: Path, change: Callable[[openpyxl.Workbook], None]) -> Path:
    book = openpyxl.load_workbook(base)
    change(book)
    book.save(dst)
    staged = dst.with_name(dst.name + ".stamp")
    _rewrite(dst, staged, {})  # a saved time of its own (openpyxl stamps "now", to the second)
    staged.replace(dst)
    return dst


_SAVED = itertools.count(1)
_MODIFIED = re.compile(r"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


def _restamp(xml: str) -> str:
    """Each generated return saved a second after the one before: returns that differ and were
    saved in the same second are a conflict (neither counts), which is not what a case tests."""
    when = datetime(2026, 11, 20, 9, 0, 0) + timedelta(seconds=next(_SAVED))
    return _MODIFIED.sub(lambda m: f"{m.group(1)}{when:%Y-%m-%dT%H:%M:%SZ}{m.group(2)}", xml, count=1)


def sheet_part(path: Path, sheet: str) -> str:
    """The zip part name that holds a sheet, from workbook.xml and its relationships."""
    with zipfile.ZipFile(path) as z:
        wb = z.read("xl/workbook.xml").decode("utf-8")
        rels = z.read("xl/_rels/workbook.xml.rels").decode("utf-8")
    rid = None
    for tag in re.findall(r"<(?:\w+:)?sheet\b[^>]*>", wb):
        if re.search(r'\bname="([^"]*)"', tag).group(1) == sheet:
            rid = re.search(r'\br:id="([^"]*)"|\bid="([^"]*)"', tag)
            rid = rid.group(1) or rid.group(2)
    for tag in re.findall(r"<Relationship\b[^>]*>", rels):
        if re.search(r'\bId="([^"]*)"', tag).group(1) == rid:
            target = re.search(r'\bTarget="([^"]*)"', tag).group(1).lstrip("/")
            return target if target.startswith("xl/") else "xl/" + target
    raise KeyError(sheet)


def _rewrite(src: Path, dst: Path, changes: dict[str, Callable[[str], str] | None],
             add: dict[str, bytes] | None = None) -> Path:
    """Copy a zip, rewriting (or, with None, dropping) some parts and adding others."""
    changes = {"docProps/core.xml": _restamp, **changes}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename in changes:
                change = changes[info.filename]
                if change is None:
                    continue
                data = change(data.decode("utf-8")).encode("utf-8")
            zout.writestr(info.filename, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def _set_cell_xml(xml: str, ref: str, cell: str) -> str:
    """Replace one <c> element of a sheet's XML."""
    pattern = re.compile(rf'<c r="{ref}"[^>]*?(?:/>|>.*?</c>)', re.S)
    assert pattern.search(xml), ref
    return pattern.sub(lambda _: cell, xml, count=1)


def _score_xml(base: Path, dst: Path, cell_xml: str, item: str = "C01", prolog: str = "") -> Path:
    """The C001 sheet with the 得分 of `item` replaced by raw XML (and an optional DOCTYPE)."""
    part = sheet_part(base, SHEET1)
    ref = f"G{ITEM_ROW[item]}"

    def change(xml: str) -> str:
        xml = _set_cell_xml(xml, ref, cell_xml.format(ref=ref))
        if prolog:
            xml = re.sub(r"^(<\?xml[^>]*\?>)?", lambda m: '<?xml version="1.0" encoding="UTF-8"?>' + prolog, xml, count=1)
        return xml

    return _rewrite(base, dst, {part: change})


def _set_score(base: Path, dst: Path, value: object, item: str = "C01", sheet: str = SHEET1) -> Path:
    def change(book):
        book[sheet].cell(ITEM_ROW[item], 7).value = value
    return _edit(base, dst, change)


def _meta_rows(book) -> list[list[str]]:
    return [[str(c) for c in row if c is not None] for row in book[META_SHEET].iter_rows(values_only=True)]


def _write_meta(book, rows: list[list[str]]) -> None:
    ws = book[META_SHEET]
    ws.delete_rows(1, ws.max_row)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            ws.cell(r, c).value = value


def _spec_form(dst: Path, *, period: str = PERIOD, system_id: str = SYSTEM, assessor=ASSESSOR,
               subjects: tuple[str, ...] = ("C001",)) -> Path:
    """A form written by happyhome itself for another round/system/assignment, filled in."""
    system = load_system(system_id)
    known = {s[0]: Subject(*s) for s in SUBJECTS}
    chosen = tuple(known.get(code) or Subject(code, f"未知对象{code}", system.subject_type) for code in subjects)
    scores = base_scores(system_id)
    answers = {s.code: {code: (score, "") for code, score in scores.items()} for s in chosen}
    write_form(FormSpec(dst, system, period, Assessor(*assessor), chosen, answers=answers))
    return dst


# -- binary formats written here: a BIFF8 .xls in an OLE container, an xlsb ---------------------------
def _record(typ: int, body: bytes = b"") -> bytes:
    return struct.pack("<HH", typ, len(body)) + body


def biff8_stream(sheets: dict[str, list[tuple[int, int, object]]], *, dimensions: dict[str, tuple[int, int]] | None = None,
                 globals_extra: bytes = b"", sheet_extra: bytes = b"") -> bytes:
    """A BIFF8 workbook stream: sheet name -> cells (row, col, number or text), 0-based. Each sheet
    declares DIMENSIONS from its cells unless `dimensions` gives (rows, columns) to declare."""
    bof = lambda kind: _record(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0x0DBB, 0x07CC, 0, 0x0006))  # noqa: E731
    head = bof(0x0005) + _record(0x0042, struct.pack("<H", 1200)) + globals_extra  # CODEPAGE: UTF-16
    names = list(sheets)
    bound = [lambda pos, n=n: _record(0x0085, struct.pack("<IBBBB", pos, 0, 0, len(n), 1) + n.encode("utf-16-le"))
             for n in names]
    bodies = []
    for name in names:
        cells = sheets[name]
        rows, cols = (dimensions or {}).get(name) or (max((r for r, _, _ in cells), default=-1) + 1,
                                                      max((c for _, c, _ in cells), default=-1) + 1)
        body = bof(0x0010) + _record(0x0200, struct.pack("<IIHHH", 0, rows, 0, cols, 0)) + sheet_extra
        for row, col, value in cells:
            if isinstance(value, str):
                text = value.encode("utf-16-le")
                body += _record(0x0204, struct.pack("<HHHHB", row, col, 15, len(value), 1) + text)
            else:
                body += _record(0x0203, struct.pack("<HHHd", row, col, 15, float(value)))
        bodies.append(body + _record(0x000A))
    size = len(head) + sum(len(b(0)) for b in bound) + len(_record(0x000A))
    out, pos = b"", size
    for make, body in zip(bound, bodies):
        out += make(pos)
        pos += len(body)
    return head + out + _record(0x000A) + b"".join(bodies)


def ole_file(streams: dict[str, bytes], declare_padded: bool = True) -> bytes:
    """A minimal OLE compound file (version 3, 512-byte sectors) holding a few streams at the
    root, each padded to 4 KB so that all live in the regular FAT (no mini stream). With
    `declare_padded` False a short stream keeps its own size: the format then says it lives in the
    (absent) mini stream, which olefile tolerates and calamine 0.37 panics on."""
    sector, end, free = 512, 0xFFFFFFFE, 0xFFFFFFFF
    datas = [d + bytes(max(0, 4096 - len(d))) for d in streams.values()]
    chains, fat, next_sector = [], [0xFFFFFFFD, end], 2  # sector 0: the FAT, sector 1: the directory
    for d in datas:
        n = -(-len(d) // sector)
        chains.append(next_sector)
        fat += [next_sector + i + 1 for i in range(n - 1)] + [end]
        next_sector += n
    assert len(fat) <= sector // 4, "streams too large for one FAT sector"
    fat += [free] * (sector // 4 - len(fat))

    def entry(name: str, kind: int, child: int, right: int, start: int, size: int) -> bytes:
        raw = name.encode("utf-16-le") + b"\0\0"
        return (raw.ljust(64, b"\0") + struct.pack("<HBBIII", len(raw), kind, 1, free, right, child) + bytes(16 + 4 + 16)
                + struct.pack("<III", start, size, 0))

    names = list(streams)
    directory = entry("Root Entry", 5, 1, free, end, 0)
    for i, (name, d) in enumerate(zip(names, datas)):  # a right-leaning chain of siblings
        size = len(d) if declare_padded else len(streams[name])
        directory += entry(name, 2, free, i + 2 if i + 1 < len(names) else free, chains[i], size)
    directory = directory.ljust(sector, b"\0")
    header = (bytes.fromhex("d0cf11e0a1b11ae1") + bytes(16) + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + bytes(6)
              + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end, 0, end, 0) + struct.pack("<I", 0) + b"\xff" * 4 * 108)
    return header + struct.pack(f"<{sector // 4}I", *fat) + directory + b"".join(d.ljust(-(-len(d) // sector) * sector, b"\0") for d in datas)


def xls_file(path: Path, sheets: dict[str, list[tuple[int, int, object]]], stream_name: str = "Workbook",
             declare_padded: bool = True, **kw) -> Path:
    """An .xls of a few sheets of cells (see biff8_stream) in an OLE container."""
    path.write_bytes(ole_file({stream_name: biff8_stream(sheets, **kw)}, declare_padded))
    return path

# -- the cases -----------------------------------------------------------------------------------
def text_renamed(out, base):
    p = out / "text_renamed.xlsx"
    p.write_text("请查收评分表，谢谢！\n张三\n", encoding="utf-8")
    return p


def empty_file(out, base):
    p = out / "empty.xlsx"
    p.write_bytes(b"")
    return p


def truncated_zip(out, base):
    p = out / "truncated.xlsx"
    data = base.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def missing_sheet_part(out, base):
    return _rewrite(base, out / "missing_part.xlsx", {sheet_part(base, SHEET1): None})


def encrypted(out, base):
    from msoffcrypto.format.ooxml import OOXMLFile

    p = out / "encrypted.xlsx"
    with open(base, "rb") as plain, open(p, "wb") as sealed:
        OOXMLFile(plain).encrypt("secret", sealed)
    return p


def xlsm_macro(out, base):
    """A real macro project's file name and content type; it is data to us, never run."""
    p = out / "macro.xlsm"
    vba = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + b"Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\nShell \"calc\"\r\nEnd Sub\r\n"

    def types(xml: str) -> str:
        xml = xml.replace("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                          "application/vnd.ms-excel.sheet.macroEnabled.main+xml")
        return xml.replace("</Types>", '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>')

    def rels(xml: str) -> str:
        return xml.replace("</Relationships>", '<Relationship Id="rIdVba" Type="http://schemas.microsoft.com/office/2006/'
                           'relationships/vbaProject" Target="vbaProject.bin"/></Relationships>')

    return _rewrite(base, p, {"[Content_Types].xml": types, "xl/_rels/workbook.xml.rels": rels},
                    add={"xl/vbaProject.bin": vba})


def csv_renamed(out, base):
    p = out / "csv_renamed.xlsx"
    p.write_text("编号,得分\nC01,4\nC02,3\n", encoding="utf-8")
    return p


def pdf_renamed(out, base):
    p = out / "pdf_renamed.xlsx"
    p.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    return p


def docx_renamed(out, base):
    p = out / "docx_renamed.xlsx"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return p


def png_renamed(out, base):
    p = out / "image_renamed.xlsx"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return p


def same_twice(out, base):
    """The same bytes under two names (sent by mail and again by chat): counted once."""
    first, second = out / "twice_first.xlsx", out / "twice_second(1).xlsx"
    _set_score(base, first, 4, item="C01")
    shutil.copyfile(first, second)
    stamp = datetime(2026, 11, 20, 9, 0).timestamp()
    os.utime(first, (stamp, stamp))
    os.utime(second, (stamp + 60, stamp + 60))
    return second


_LAUGHS = ('<!DOCTYPE worksheet [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "' + (f"&lol{i - 1};" if i > 1 else "&lol;") * 10 + '">' for i in range(1, 10))
           + "]>")


def billion_laughs(out, base):
    return _score_xml(base, out / "billion_laughs.xlsx", '<c r="{ref}" t="inlineStr"><is><t>&lol9;</t></is></c>',
                      prolog=_LAUGHS)


XXE_TARGET = "/etc/passwd"


def xxe(out, base):
    prolog = f'<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file://{XXE_TARGET}">]>'
    return _score_xml(base, out / "xxe.xlsx", '<c r="{ref}" t="inlineStr"><is><t>&xxe;</t></is></c>', prolog=prolog)


def xxe_remark(out, base):
    """The external entity in a 备注, where a reader that resolved it would store it."""
    prolog = f'<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file://{XXE_TARGET}">]>'
    part = sheet_part(base, SHEET1)

    def change(xml):
        xml = _set_cell_xml(xml, "H7", '<c r="H7" t="inlineStr"><is><t>&xxe;</t></is></c>')
        return '<?xml version="1.0" encoding="UTF-8"?>' + prolog + re.sub(r"^<\?xml[^>]*\?>", "", xml)

    return _rewrite(base, out / "xxe_remark.xlsx", {part: change})


BOMB_BYTES = 2 << 30  # the sheet part inflates to 2 GiB


class _RepeatCompressor:
    """Stands in for zipfile's compressor: each full-flushed 16 MiB block of spaces deflates to
    the same bytes, so a 2 GiB part is built in a fraction of a second."""

    def __init__(self, chunk: bytes):
        self.chunk = chunk
        self.block = self._deflate(chunk)

    @staticmethod
    def _deflate(data: bytes) -> bytes:
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        return co.compress(data) + co.flush(zlib.Z_FULL_FLUSH)

    def compress(self, data: bytes) -> bytes:
        return self.block if data is self.chunk else self._deflate(data)

    def flush(self) -> bytes:
        return zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def zip_bomb(out, base):
    """A sheet part that inflates to 2 GiB of spaces; the file is about 2 MB."""
    p = out / "zip_bomb.xlsx"
    part = sheet_part(base, SHEET1)
    chunk = b" " * (16 << 20)
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename != part:
                zout.writestr(info.filename, zin.read(info.filename))
                continue
            with zout.open(zipfile.ZipInfo(part, (2026, 11, 20, 9, 0, 0)), "w", force_zip64=True) as handle:
                handle._compressor = _RepeatCompressor(chunk)  # noqa: SLF001 - see the class
                handle.write(b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/'
                             b'spreadsheetml/2006/main"><sheetData>')
                for _ in range(BOMB_BYTES // len(chunk)):
                    handle.write(chunk)
                handle.write(b"</sheetData></worksheet>")
    return p


MILLION = 1_000_000


def million_rows(out, base):
    """The C001 sheet with a million more rows after its own: tens of MB inflated, a few MB stored."""
    p = out / "million_rows.xlsx"
    part = sheet_part(base, SHEET1)
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename != part:
                zout.writestr(info.filename, data)
                continue
            xml = data.decode("utf-8")
            head, tail = xml.split("</sheetData>", 1)
            with zout.open(part, "w", force_zip64=True) as handle:
                handle.write(head.encode("utf-8"))
                for start in range(100, 100 + MILLION, 10_000):
                    handle.write("".join(f'<row r="{r}"><c r="A{r}"><v>{r}</v></c></row>'
                                         for r in range(start, start + 10_000)).encode("ascii"))
                handle.write(("</sheetData>" + tail).encode("utf-8"))
    return p


LONG_STRING = 3_000_000


def long_string(out, base):
    """A 得分 of three million (incompressible) characters."""
    rng = random.Random(7)
    text = "".join(rng.choices(string.ascii_letters + string.digits, k=LONG_STRING))
    return _score_xml(base, out / "long_string.xlsx", '<c r="{ref}" t="inlineStr"><is><t>' + text + "</t></is></c>")


def _ods(path: Path, table: str) -> Path:
    """A one-table ODS (named C001) whose table element holds `table`."""
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f'<office:body><office:spreadsheet><table:table table:name="C001">{table}'
        "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", content)
        z.writestr("META-INF/manifest.xml", '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:'
                   'xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="/" manifest:media-type='
                   '"application/vnd.oasis.opendocument.spreadsheet"/></manifest:manifest>')
    return path


_ODS_FOUR = 'office:value-type="float" office:value="4"><text:p>4</text:p></table:table-cell>'


def ods_repeat_bomb(out, base):
    """An ODS of 1 KB whose one row, repeated a million times, holds a thousand numbers."""
    return _ods(out / "ods_repeat_bomb.ods", '<table:table-row table:number-rows-repeated="1048576"><table:table-cell '
                f'table:number-columns-repeated="1024" {_ODS_FOUR}</table:table-row>')


def ods_far_cell(out, base):
    """An ODS of one number in A1 and one after 1,048,574 repeated empty rows and 16,383 empty cells."""
    return _ods(out / "ods_far_cell.ods", f'<table:table-row><table:table-cell {_ODS_FOUR}</table:table-row>'
                '<table:table-row table:number-rows-repeated="1048574"><table:table-cell/></table:table-row>'
                '<table:table-row><table:table-cell table:number-columns-repeated="16383"/>'
                f'<table:table-cell {_ODS_FOUR}</table:table-row>')


def ods_wide(out, base):
    """An ODS of one row: a number, 5,000 empty cells, a number (5,002 columns wide)."""
    return _ods(out / "ods_wide.ods", f'<table:table-row><table:table-cell {_ODS_FOUR}'
                f'<table:table-cell table:number-columns-repeated="5000"/><table:table-cell {_ODS_FOUR}'
                "</table:table-row>")


NESTING = 100_000


def deep_nesting(out, base):
    """100,000 nested elements inside the sheet's data, before the real rows."""
    part = sheet_part(base, SHEET1)
    return _rewrite(base, out / "deep_nesting.xlsx",
                    {part: lambda xml: xml.replace("<sheetData>", "<sheetData>" + "<x>" * NESTING + "</x>" * NESTING, 1)})


def other_period(out, base):
    return _spec_form(out / "other_period.xlsx", period="2026-10")


def other_system(out, base):
    return _spec_form(out / "other_system.xlsx", system_id="zone", subjects=("Z01",))


def unknown_assessor(out, base):
    return _spec_form(out / "unknown_assessor.xlsx", assessor=("E77", "孙七", "", ""))


def not_assigned(out, base):
    """A form listing C003, which the roster does not give E09 (the roster changed since)."""
    return _spec_form(out / "not_assigned.xlsx", subjects=("C001", "C003"))


def unknown_subject(out, base):
    return _spec_form(out / "unknown_subject.xlsx", subjects=("C001", "C999"))


def someone_elses_form(out, base):
    """E09's form sent in as E01's: the identity block on each sheet says E01 张敏."""
    def change(book):
        for name in (SHEET1, SHEET2):
            book[name]["B3"].value, book[name]["G3"].value = "张敏", "E01"
    return _edit(base, out / "someone_elses.xlsx", change)


def old_checksum(out, base):
    """A form of an earlier version of the system, made before the office key: another checksum,
    correctly signed, no office seal."""
    def change(book):
        rows = [r for r in _meta_rows(book) if r[0] not in ("signature", SEAL_ROW)]
        rows = [["checksum", "0123456789abcdef"] if r[0] == "checksum" else r for r in rows]
        _write_meta(book, rows + [["signature", sign(rows)]])
    return _edit(base, out / "old_checksum.xlsx", change)


def meta_edited(out, base):
    """The metadata sheet edited by hand (the period changed): the signature no longer fits."""
    def change(book):
        rows = [["period", "2026-12"] if r[0] == "period" else r for r in _meta_rows(book)]
        _write_meta(book, rows)
    return _edit(base, out / "meta_edited.xlsx", change)


def meta_resigned(out, base):
    """The metadata edited by hand (the assessor changed to E01) and its public checksum recomputed:
    the office's seal no longer fits."""
    def change(book):
        rows = _meta_rows(book)
        seal = next(r for r in rows if r[0] == SEAL_ROW)
        rows = [["assessor", "E01"] if r[0] == "assessor" else r for r in rows if r[0] not in ("signature", SEAL_ROW)]
        _write_meta(book, rows + [["signature", sign(rows)], seal])
    return _edit(base, out / "meta_resigned.xlsx", change)


def meta_gone_block_intact(out, base):
    """Sheets copied into a new workbook: no metadata, the identity blocks still say who and what."""
    def change(book):
        del book[META_SHEET]
    return _edit(base, out / "meta_gone_block_intact.xlsx", change)


def meta_gone_block_edited(out, base):
    """No metadata, and the 评估人编号 cleared on every sheet: nothing identifies the file."""
    def change(book):
        del book[META_SHEET]
        for name in (SHEET1, SHEET2):
            book[name]["G3"].value = None
    return _edit(base, out / "meta_gone_block_edited.xlsx", change)


def same_subject_twice(out, base):
    """Sheets copied into a new workbook, the C001 sheet twice."""
    def change(book):
        del book[META_SHEET]
        copy = book.copy_worksheet(book[SHEET1])
        copy.title = "C001 副本"
    return _edit(base, out / "same_subject_twice.xlsx", change)


def rows_deleted(out, base):
    return _edit(base, out / "row_deleted.xlsx", lambda book: book[SHEET1].delete_rows(ITEM_ROW["C05"]))


def _copy_row(ws, src: int, dst: int) -> None:
    for col in range(1, 9):
        ws.cell(dst, col).value = ws.cell(src, col).value


def rows_duplicated(out, base):
    def change(book):
        ws = book[SHEET1]
        ws.insert_rows(ITEM_ROW["C05"] + 1)
        _copy_row(ws, ITEM_ROW["C05"], ITEM_ROW["C05"] + 1)
    return _edit(base, out / "row_duplicated.xlsx", change)


def rows_reordered(out, base):
    """C03 and C04 swapped (sorted by hand): matched by code, so accepted as they are."""
    def change(book):
        ws = book[SHEET1]
        a, b = ITEM_ROW["C03"], ITEM_ROW["C04"]
        for col in range(1, 9):
            ws.cell(a, col).value, ws.cell(b, col).value = ws.cell(b, col).value, ws.cell(a, col).value
    return _edit(base, out / "rows_reordered.xlsx", change)


def extra_item(out, base):
    def change(book):
        ws = book[SHEET1]
        row = ITEM_ROW["C19"] + 1
        ws.insert_rows(row)
        for col, value in enumerate(("C20", "进阶指标", "自加", "自加指标", "评估人自己加的一行", 5, 5, ""), start=1):
            ws.cell(row, col).value = value
    return _edit(base, out / "extra_item.xlsx", change)


def score_text(out, base):
    return _set_score(base, out / "score_text.xlsx", "很好")


def score_fullwidth(out, base):
    return _set_score(base, out / "score_fullwidth.xlsx", "４")  # C01: 满分 4, as in the base


def score_fen(out, base):
    return _set_score(base, out / "score_fen.xlsx", "4分")


def score_negative(out, base):
    return _set_score(base, out / "score_negative.xlsx", -1)


def score_above_max(out, base):
    return _set_score(base, out / "score_above_max.xlsx", 5)


def score_nan_text(out, base):
    return _set_score(base, out / "score_nan_text.xlsx", "NaN")


def score_nan_cell(out, base):
    """A number cell holding NaN, which no spreadsheet writes but a hand-made file can."""
    return _score_xml(base, out / "score_nan_cell.xlsx", '<c r="{ref}"><v>NaN</v></c>')


def score_infinite(out, base):
    return _score_xml(base, out / "score_infinite.xlsx", '<c r="{ref}"><v>1e999</v></c>')


def score_error(out, base):
    """An error value typed or pasted into the cell (t="e"), no formula."""
    return _score_xml(base, out / "score_error.xlsx", '<c r="{ref}" t="e"><v>#N/A</v></c>')


def score_formula_error(out, base):
    """=1/0 saved with its result #DIV/0!: the error is what the office must hear about."""
    return _score_xml(base, out / "score_formula_error.xlsx", '<c r="{ref}" t="e"><f>1/0</f><v>#DIV/0!</v></c>')


def score_formula_cached(out, base):
    """=2+2 with its value 4 saved, as Excel and WPS save it: the value is the score."""
    return _score_xml(base, out / "score_formula_cached.xlsx", '<c r="{ref}"><f>2+2</f><v>4</v></c>')


def score_formula_no_value(out, base):
    """=2+2 typed through openpyxl: a formula with no saved value."""
    return _set_score(base, out / "score_formula_no_value.xlsx", "=2+2")


def score_date(out, base):
    return _set_score(base, out / "score_date.xlsx", datetime(2026, 11, 4))


def score_bool(out, base):
    return _set_score(base, out / "score_bool.xlsx", True)


def score_blank(out, base):
    return _set_score(base, out / "score_blank.xlsx", None)


def score_chinese_numeral(out, base):
    return _set_score(base, out / "score_chinese_numeral.xlsx", "四")


LONG_REMARK = 100_000


def long_remark(out, base):
    def change(book):
        book[SHEET1].cell(ITEM_ROW["C01"], 8).value = ("情况说明" * (LONG_REMARK // 4))[:LONG_REMARK]
    return _edit(base, out / "long_remark.xlsx", change)


def _brt(typ: int, body: bytes = b"") -> bytes:
    """One BIFF12 record: type and length as 7-bit varints, then the body."""
    def varint(n: int) -> bytes:
        out = b""
        while True:
            out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return out
    return varint(typ) + varint(len(body)) + body


def xlsb_file(path: Path, sheets: dict[str, list[tuple[int, int, object]]],
              declared: dict[str, tuple[int, int]] | None = None) -> Path:
    """A minimal .xlsb: sheet name -> cells (row, col, number or text; 0-based). Each sheet's
    BrtWsDim declares the cells' own extent unless `declared` gives (rows, columns)."""
    wide = lambda text: struct.pack("<I", len(text)) + text.encode("utf-16-le")  # noqa: E731
    book = _brt(0x0083) + _brt(0x008F)
    parts = {}
    for n, (name, cells) in enumerate(sheets.items(), start=1):
        hidden = name == META_SHEET  # as in the form: the metadata sheet is hidden
        book += _brt(0x009C, struct.pack("<II", int(hidden), n) + wide(f"rId{n}") + wide(name))
        rows, cols = (declared or {}).get(name) or (max(r for r, _, _ in cells) + 1, max(c for _, c, _ in cells) + 1)
        sheet = _brt(0x0081) + _brt(0x0094, struct.pack("<IIII", 0, rows - 1, 0, cols - 1)) + _brt(0x0091)
        for row in sorted({r for r, _, _ in cells}):
            sheet += _brt(0x0000, struct.pack("<IIHHBI", row, 0, 300, 0, 0, 0))
            for r, c, v in cells:
                if r == row:  # BrtCellSt for text, BrtCellReal for numbers
                    sheet += (_brt(0x0006, struct.pack("<II", c, 0) + wide(v)) if isinstance(v, str)
                              else _brt(0x0005, struct.pack("<IId", c, 0, float(v))))
        parts[f"xl/worksheets/sheet{n}.bin"] = sheet + _brt(0x0092) + _brt(0x0082)
    book += _brt(0x0090) + _brt(0x0084)
    pkg = "http://schemas.openxmlformats.org/package/2006"
    doc = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    rels = "".join(f'<Relationship Id="rId{n}" Type="{doc}/worksheet" Target="worksheets/sheet{n}.bin"/>'
                   for n in range(1, len(sheets) + 1))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", f'<Types xmlns="{pkg}/content-types"><Default Extension="rels" '
                   'ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="bin" '
                   'ContentType="application/vnd.ms-excel.sheet.binary.macroEnabled.main"/></Types>')
        z.writestr("_rels/.rels", f'<Relationships xmlns="{pkg}/relationships"><Relationship Id="rId1" '
                   f'Type="{doc}/officeDocument" Target="xl/workbook.bin"/></Relationships>')
        z.writestr("xl/_rels/workbook.bin.rels", f'<Relationships xmlns="{pkg}/relationships">{rels}</Relationships>')
        z.writestr("xl/workbook.bin", book)
        for name, data in parts.items():
            z.writestr(name, data)
    return path

# -- sizes beyond a form, for every format; odd containers; old and password-protected files --------
def _add_cell(base: Path, dst: Path, ref: str) -> Path:
    """The C001 sheet with one more number cell at `ref`, in a row of its own after the others."""
    part = sheet_part(base, SHEET1)
    row = re.match(r"[A-Z]+([0-9]+)", ref).group(1)

    def change(xml: str) -> str:
        xml = re.sub(r'<dimension ref="[^"]*"\s*/>', f'<dimension ref="A1:{ref}"/>', xml)
        return xml.replace("</sheetData>", f'<row r="{row}"><c r="{ref}"><v>1</v></c></row></sheetData>', 1)

    return _rewrite(base, dst, {part: change})


def far_cell(out, base):
    """One more cell at XFD1048576: calamine would allocate the rectangle up to it (~550 GB)."""
    return _add_cell(base, out / "far_cell.xlsx", "XFD1048576")


def wide_sheet(out, base):
    """One more cell at XFD40: 40 rows, but 16,384 columns wide (~10 GB as a grid)."""
    return _add_cell(base, out / "wide_sheet.xlsx", "XFD40")


def prefixed_far_cell(out, base):
    """One more cell at XFD1048576 written <x:c> (the main namespace under a prefix) in the plain
    sheetData: calamine takes any tag named c as a cell, so it would ask for ~550 GB."""
    part = sheet_part(base, SHEET1)
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"

    def change(xml: str) -> str:
        xml = xml.replace("<worksheet ", f'<worksheet xmlns:x="{main}" ', 1)
        # in a row of a short number: the cell's own reference is all that places it
        return xml.replace("</sheetData>", '<row r="99"><x:c r="XFD1048576"><x:v>1</x:v></x:c></row></sheetData>', 1)

    return _rewrite(base, out / "prefixed_far_cell.xlsx", {part: change})


def spaced_far_cell(out, base):
    """One more cell at XFD1048576 with a line break before its reference (<c\nr="XFD1048576">),
    which XML allows and calamine reads."""
    part = sheet_part(base, SHEET1)

    def change(xml: str) -> str:
        return xml.replace("</sheetData>", '<row r="99"><c\nr="XFD1048576"><v>1</v></c></row></sheetData>', 1)

    return _rewrite(base, out / "spaced_far_cell.xlsx", {part: change})


def make_abort_xlsx(path: Path) -> Path:
    """A 1.5 KB workbook with one cell at A1 and one at XFD1048576. Opened by calamine directly
    (python_calamine.CalamineWorkbook.from_path(path).get_sheet_by_index(0)), the process asks
    for ~550 GB and aborts (SIGABRT); happyhome's reader refuses the sheet before calamine sees it."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = 'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    pkg = "http://schemas.openxmlformats.org/package/2006"
    doc = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", f'<Types xmlns="{pkg}/content-types"><Default Extension="rels" '
                   'ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
                   'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/'
                   'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
                   'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
        z.writestr("_rels/.rels", f'<Relationships xmlns="{pkg}/relationships"><Relationship Id="rId1" '
                   f'Type="{doc}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", f'<workbook {ns} {rel}><sheets><sheet name="C001" sheetId="1" r:id="rId1"/>'
                   "</sheets></workbook>")
        z.writestr("xl/_rels/workbook.xml.rels", f'<Relationships xmlns="{pkg}/relationships"><Relationship Id="rId1" '
                   f'Type="{doc}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
        z.writestr("xl/worksheets/sheet1.xml", f'<worksheet {ns}><sheetData><row r="1"><c r="A1"><v>1</v></c></row>'
                   '<row r="1048576"><c r="XFD1048576"><v>2</v></c></row></sheetData></worksheet>')
    return path


def abort_xlsx(out, base):
    return make_abort_xlsx(out / "abort.xlsx")


def _form_cells(base: Path) -> dict[str, list[tuple[int, int, object]]]:
    """The metadata, C001 and C002 sheets' cells of the base form (0-based), to write it as .xls/.xlsb."""
    book = openpyxl.load_workbook(base)
    return {name: [(c.row - 1, c.column - 1, c.value) for row in book[name].iter_rows() for c in row
                   if isinstance(c.value, (int, float, str))] for name in (META_SHEET, SHEET1, SHEET2)}


def shared_strings_count(out, base):
    """The form with a shared-string table that declares 4,000,000,000 strings: calamine reserves
    96 GB for them when it opens the file, and the process aborts."""
    return _rewrite(base, out / "shared_strings_count.xlsx", {}, add={
        "xl/sharedStrings.xml": b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
                                b'spreadsheetml/2006/main" count="1" uniqueCount="4000000000"><si><t>x</t></si></sst>'})


def xls_declared_range(out, base):
    """An .xls of the form's cells whose C001 sheet declares a 65,536 x 256 range (DIMENSIONS):
    calamine reserves the whole rectangle (~1 GB) when it opens the file."""
    return xls_file(out / "declared_range.xls", _form_cells(base), dimensions={SHEET1: (65536, 256)})


def xls_far_cell(out, base):
    """An .xls of the form's cells plus a number at the last row and column an .xls can address."""
    cells = _form_cells(base)
    cells[SHEET1].append((65535, 255, 1.0))
    return xls_file(out / "far_cell.xls", cells)


def xlsb_far_cell(out, base):
    """The form as an .xlsb, the C001 sheet with one more number at XFD1048576 (calamine aborts
    on it); the C002 sheet still counts."""
    cells = _form_cells(base)
    cells[SHEET1].append((1048575, 16383, 1.0))
    return xlsb_file(out / "far_cell.xlsb", cells)


def xlsb_declared_range(out, base):
    """The form as an .xlsb whose C001 sheet declares 1,048,576 x 16,384 (BrtWsDim)."""
    return xlsb_file(out / "declared_range.xlsb", _form_cells(base), declared={SHEET1: (1048576, 16384)})


def xlsb_workbook_elsewhere(out, base):
    """The form as an .xlsb whose workbook sits under book/ (named by _rels/.rels), not xl/."""
    p = xlsb_file(out / "xlsb_elsewhere.tmp", _form_cells(base))
    dst = out / "workbook_elsewhere.xlsb"
    with zipfile.ZipFile(p) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename).replace(b'"xl/', b'"book/')
            zout.writestr(re.sub(r"^xl/", "book/", info.filename), data)
    p.unlink()
    return dst


def make_panic_xls(path: Path) -> Path:
    """An .xls whose workbook stream is shorter than 4 KB but is stored in the regular FAT: olefile
    reads it, calamine 0.37 panics (pyo3_runtime.PanicException, "index out of bounds")."""
    return xls_file(path, {"C001": [(0, 0, "编号"), (0, 1, "得分"), (1, 0, "C01"), (1, 1, 4.0)]}, declare_padded=False)


def panic_xls(out, base):
    return make_panic_xls(out / "panic.xls")


def xls_password(out, base):
    """An .xls saved with a password (RC4): a FILEPASS record in the workbook globals."""
    filepass = _record(0x002F, struct.pack("<HHH", 1, 1, 1) + bytes(48))
    return xls_file(out / "password.xls", _form_cells(base), globals_extra=filepass)


def xls_password_xor(out, base):
    """An .xls protected by the older XOR obfuscation (FILEPASS of type 0)."""
    filepass = _record(0x002F, struct.pack("<HHH", 0, 0x1234, 0x5678))
    return xls_file(out / "password_xor.xls", _form_cells(base), globals_extra=filepass)


def biff4_workbook(out, base):
    """An Excel 4.0 workbook: bare BIFF4 records, no OLE container."""
    p = out / "excel4.xls"
    p.write_bytes(_record(0x0409, struct.pack("<HHH", 0, 0x0010, 0)) + _record(0x0203, struct.pack("<HHHd", 0, 0, 0, 4.0))
                  + _record(0x000A))
    return p


def ods_password(out, base):
    """An ODS saved with a password: its manifest carries encryption data, content.xml is ciphertext."""
    p = out / "password.ods"
    manifest = ('<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
                '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml" manifest:size="2048">'
                '<manifest:encryption-data manifest:checksum-type="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0#sha256-1k" '
                'manifest:checksum="AAAA"><manifest:algorithm manifest:algorithm-name="http://www.w3.org/2001/04/xmlenc#aes256-cbc" '
                'manifest:initialisation-vector="AAAA"/></manifest:encryption-data></manifest:file-entry></manifest:manifest>')
    rng = random.Random(3)
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", bytes(rng.randrange(256) for _ in range(2048)))
        z.writestr("META-INF/manifest.xml", manifest)
    return p


def backslash_zip(out, base):
    """The genuine form re-zipped by a tool that writes Windows paths (xl\\worksheets\\sheet1.xml)."""
    p = out / "backslash.xlsx"
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename.replace("/", "\\"), zin.read(info.filename))
    return p


def workbook_elsewhere(out, base):
    """The genuine form with its workbook under book/ instead of xl/, named by _rels/.rels."""
    p = out / "workbook_elsewhere.xlsx"
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith(".rels") or info.filename == "[Content_Types].xml":
                data = data.replace(b"/xl/", b"/book/").replace(b'"xl/', b'"book/')
            zout.writestr(re.sub(r"^xl/", "book/", info.filename), data)
    return p

CASES: list[Case] = [
    # not a (readable) spreadsheet
    Case("text_renamed", "a text file renamed .xlsx", text_renamed, Expect("file", "not_spreadsheet")),
    Case("empty", "an empty file (0 bytes)", empty_file, Expect("file", "empty_file")),
    Case("truncated", "a truncated zip (the first half of a form)", truncated_zip, Expect("file", "corrupt")),
    Case("missing_part", "a zip with one sheet's part missing", missing_sheet_part, Expect("sheet", "sheet_unreadable", SHEET1)),
    Case("encrypted", "a password-encrypted workbook", encrypted, Expect("file", "encrypted")),
    Case("macro", ".xlsm with a macro project (xl/vbaProject.bin)", xlsm_macro, Expect("accepted")),
    Case("csv_renamed", "a CSV file renamed .xlsx", csv_renamed, Expect("file", "not_spreadsheet")),
    Case("pdf_renamed", "a PDF renamed .xlsx", pdf_renamed, Expect("file", "not_spreadsheet")),
    Case("docx_renamed", "a Word document renamed .xlsx", docx_renamed, Expect("file", "not_spreadsheet")),
    Case("image_renamed", "a PNG image renamed .xlsx", png_renamed, Expect("file", "not_spreadsheet")),
    Case("twice", "the same workbook twice under two names", same_twice, Expect("duplicate", "duplicate_file")),
    # hostile XML and sizes
    Case("billion_laughs", "entity expansion (billion laughs) in a sheet's XML", billion_laughs,
         Expect("sheet", "sheet_unreadable", SHEET1), hostile=True),
    Case("xxe", f"an external entity (XXE) reading {XXE_TARGET} into a 得分", xxe,
         Expect("sheet", "sheet_unreadable", SHEET1), hostile=True),
    Case("xxe_remark", f"an external entity (XXE) reading {XXE_TARGET} into a 备注", xxe_remark,
         Expect("sheet", "sheet_unreadable", SHEET1), hostile=True),
    Case("zip_bomb", "a zip bomb: a sheet part of 2 GiB stored in 2 MB", zip_bomb, Expect("file", "zip_bomb"), hostile=True),
    Case("million_rows", "a sheet with a million rows", million_rows, Expect("sheet", "sheet_too_long", SHEET1), hostile=True),
    Case("ods_repeat_bomb", "an ODS of 1 KB that repeats a row of 1,024 numbers 1,048,576 times", ods_repeat_bomb,
         Expect("file", "zip_bomb"), hostile=True),
    Case("long_string", "a 得分 of three million characters", long_string, Expect("sheet", "not_a_number", SHEET1), hostile=True),
    Case("deep_nesting", "100,000 nested XML elements in a sheet", deep_nesting, Expect("accepted"), hostile=True),
    # identity
    Case("other_period", "a form of another period", other_period, Expect("file", "wrong_period")),
    Case("other_system", "a form of another indicator system", other_system, Expect("file", "wrong_system")),
    Case("unknown_assessor", "a form of an assessor not in the roster", unknown_assessor, Expect("file", "unknown_assessor")),
    Case("someone_elses", "another assessor's form sent by someone else (identity block edited)", someone_elses_form,
         Expect("sheet", "identity_mismatch", SHEET1)),
    Case("old_checksum", "a form with an old structure checksum", old_checksum, Expect("file", "old_structure")),
    Case("meta_edited", "the metadata sheet edited by hand (signature mismatch)", meta_edited, Expect("file", "meta_tampered")),
    Case("meta_resigned", "the metadata edited by hand, its checksum recomputed (office seal mismatch)", meta_resigned,
         Expect("file", "forged_form")),
    Case("meta_gone_block_intact", "metadata gone, identity blocks intact (sheets copied to a new workbook)",
         meta_gone_block_intact, Expect("accepted")),
    Case("meta_gone_block_edited", "metadata gone and the visible block edited", meta_gone_block_edited,
         Expect("file", "no_identity")),
    Case("same_subject_twice", "two sheets for the same subject", same_subject_twice,
         Expect("sheet", "duplicate_subject", SHEET1)),
    Case("not_assigned", "a subject not assigned to that assessor", not_assigned, Expect("sheet", "not_assigned", "C003 南湖街道南湖社区")),
    Case("unknown_subject", "a subject not in the roster", unknown_subject, Expect("sheet", "unknown_subject", "C999 未知对象C999")),
    # item rows
    Case("row_deleted", "an item row deleted", rows_deleted, Expect("sheet", "missing_item", SHEET1)),
    Case("row_duplicated", "an item row duplicated", rows_duplicated, Expect("sheet", "duplicate_item", SHEET1)),
    Case("rows_reordered", "item rows reordered", rows_reordered, Expect("accepted")),
    Case("extra_item", "an extra item row (C20)", extra_item, Expect("warning", "unknown_item", SHEET1)),
    # 得分 and 备注 values
    Case("score_text", "得分 with text (很好)", score_text, Expect("sheet", "not_a_number", SHEET1)),
    Case("score_chinese_numeral", "得分 as a Chinese numeral (四)", score_chinese_numeral, Expect("sheet", "not_a_number", SHEET1)),
    Case("score_fullwidth", "得分 in full-width digits (４)", score_fullwidth, Expect("warning", "normalised", SHEET1)),
    Case("score_fen", "得分 with a trailing 分 (4分)", score_fen, Expect("warning", "normalised", SHEET1)),
    Case("score_negative", "得分 negative (-1)", score_negative, Expect("sheet", "out_of_range", SHEET1)),
    Case("score_above_max", "得分 above 满分 (5 of 4)", score_above_max, Expect("sheet", "out_of_range", SHEET1)),
    Case("score_nan_text", "得分 the text NaN", score_nan_text, Expect("sheet", "not_a_number", SHEET1)),
    Case("score_nan_cell", "得分 a number cell holding NaN", score_nan_cell, Expect("sheet", "not_a_number", SHEET1)),
    Case("score_infinite", "得分 a number cell holding 1e999 (infinity)", score_infinite, Expect("sheet", "not_a_number", SHEET1)),
    Case("score_error", "得分 an Excel error value (#N/A)", score_error, Expect("sheet", "error_value", SHEET1)),
    Case("score_formula_error", "得分 a formula whose saved result is an error (=1/0 → #DIV/0!)", score_formula_error,
         Expect("sheet", "error_value", SHEET1)),
    Case("score_formula_cached", "得分 a formula with its cached value (=2+2 → 4)", score_formula_cached, Expect("accepted")),
    Case("score_formula_no_value", "得分 a formula without a cached value", score_formula_no_value,
         Expect("sheet", "formula_no_value", SHEET1)),
    Case("score_date", "得分 a date", score_date, Expect("sheet", "not_a_number", SHEET1)),
    Case("score_bool", "得分 a logical value (TRUE)", score_bool, Expect("sheet", "not_a_number", SHEET1)),
    Case("score_blank", "得分 left blank", score_blank, Expect("sheet", "blank_score", SHEET1)),
    Case("long_remark", "备注 of 100,000 characters", long_remark, Expect("warning", "remark_cut", SHEET1)),
    # sizes beyond a form in every format, checked before calamine builds a grid
    Case("far_cell", "one more cell at XFD1048576 (calamine would ask for ~550 GB)", far_cell,
         Expect("sheet", "sheet_too_long", SHEET1), hostile=True),
    Case("wide_sheet", "one more cell at XFD40: 40 rows but 16,384 columns", wide_sheet,
         Expect("sheet", "sheet_unreadable", SHEET1), hostile=True),
    Case("prefixed_far_cell", "one more cell at XFD1048576 in a prefixed tag, x:c (calamine reads any tag named c)",
         prefixed_far_cell, Expect("sheet", "sheet_too_long", SHEET1), hostile=True),
    Case("spaced_far_cell", "one more cell at XFD1048576 with a line break between its tag name and r=",
         spaced_far_cell, Expect("sheet", "sheet_too_long", SHEET1), hostile=True),
    Case("abort_xlsx", "a 1.5 KB workbook with cells at A1 and XFD1048576 (aborts calamine)", abort_xlsx,
         Expect("file", "no_identity"), hostile=True),
    Case("shared_strings_count", "a shared-string table declaring 4,000,000,000 strings (aborts calamine)",
         shared_strings_count, Expect("file", "zip_bomb"), hostile=True),
    Case("xls_declared_range", ".xls whose sheet declares a 65,536 × 256 range", xls_declared_range,
         Expect("file", "too_big"), hostile=True),
    Case("xls_far_cell", ".xls with a cell at the last row and column (IV65536)", xls_far_cell,
         Expect("file", "too_big"), hostile=True),
    Case("xlsb_far_cell", ".xlsb with one more cell at XFD1048576 (aborts calamine)", xlsb_far_cell,
         Expect("sheet", "sheet_too_long", SHEET1), hostile=True),
    Case("xlsb_declared_range", ".xlsb whose sheet declares 1,048,576 × 16,384 (BrtWsDim)", xlsb_declared_range,
         Expect("sheet", "sheet_too_long", SHEET1), hostile=True),
    Case("ods_far_cell", ".ods with a number after 1,048,574 empty rows and 16,383 empty cells", ods_far_cell,
         Expect("file", "zip_bomb"), hostile=True),
    Case("ods_wide", ".ods of one row 5,002 columns wide", ods_wide, Expect("file", "zip_bomb"), hostile=True),
    Case("panic_xls", ".xls that makes calamine panic (a short stream outside the mini stream)", panic_xls,
         Expect("file", "read_failed"), hostile=True),
    # containers named for what they are
    Case("xls_password", ".xls with a password (RC4)", xls_password, Expect("file", "encrypted")),
    Case("xls_password_xor", ".xls with a password (XOR obfuscation)", xls_password_xor, Expect("file", "encrypted")),
    Case("ods_password", ".ods with a password (encrypted manifest)", ods_password, Expect("file", "encrypted")),
    Case("biff4", "an Excel 4.0 workbook (BIFF4, no OLE container)", biff4_workbook, Expect("file", "old_format")),
    Case("backslash_zip", "the form re-zipped with backslashes in entry names", backslash_zip, Expect("accepted")),
    Case("workbook_elsewhere", "the form with its workbook under book/ (named by _rels/.rels)", workbook_elsewhere,
         Expect("accepted")),
    Case("xlsb_workbook_elsewhere", "the form as .xlsb with its workbook under book/", xlsb_workbook_elsewhere,
         Expect("accepted")),
]
BY_NAME = {case.name: case for case in CASES}


# -- the environment ---------------------------------------------------------------------------------
def write_corpus_roster(root: Path) -> Path:
    return write_roster(root / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)


def good_scores(assessor: str, subject: str) -> dict[str, float]:
    """The good files' answers, different per assessor and subject so that mix-ups show."""
    shift = {"E01": 0, "E02": 0.5, "E03": 1}.get(assessor, 0) + {"C001": 0, "C002": 0.5, "C003": 0}.get(subject, 0)
    return {code: max(0.0, score - shift) for code, score in base_scores().items()}


def build(workspace: Path, out: Path, cases: list[Case] | None = None) -> tuple[list[Path], dict[str, Path], Path]:
    """Forms for the workspace's round; the good files (E01-E03 filled) and each case's bad
    file written into `out`. Returns (good files, case name -> bad file, the base form)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import fill_form, run

    out.mkdir(parents=True, exist_ok=True)
    write_corpus_roster(workspace)
    run(workspace, "forms", "--system", SYSTEM, "--period", PERIOD)
    forms = workspace / "output" / "forms" / PERIOD / SYSTEM
    good = []
    for code, name, *_ in ASSESSORS[:3]:
        form = forms / f"{PERIOD}_{SYSTEM}_{code}_{name}.xlsx"
        scores = {s: good_scores(code, s) for s in ("C001", "C002", "C003")}
        good.append(fill_form(form, scores, remarks={"C001": {"C02": f"{name}：材料齐全"}}, save_as=out / f"good_{code}.xlsx"))
    base_dir = out.parent / (out.name + "-base")
    base_dir.mkdir(exist_ok=True)
    base = fill_form(forms / f"{PERIOD}_{SYSTEM}_E09_赵六.xlsx", {s: base_scores() for s in ("C001", "C002")},
                     save_as=base_dir / "base_E09.xlsx")
    bad = {case.name: case.make(out, base) for case in (CASES if cases is None else cases)}
    return good, bad, base
