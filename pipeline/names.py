"""Safe names: file names and sheet names made from roster text, and inert spreadsheet text.

Roster and assessor text reaches file systems and workbooks; none of it may escape a folder,
break a sheet name or run as a formula.
"""

from __future__ import annotations

import re
import unicodedata

_FILE_BAD = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_SHEET_BAD = re.compile(r"[\[\]:*?/\\\x00-\x1f\x7f]")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)
SHEET_MAX = 31
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")


def safe_filename(text: object, max_bytes: int = 120, fallback: str = "未命名") -> str:
    """A file name component safe on Windows, macOS and Linux, at most `max_bytes` in UTF-8."""
    name = unicodedata.normalize("NFC", str(text))
    name = _FILE_BAD.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    name = re.sub(r"\.{2,}", ".", name)
    if _WINDOWS_RESERVED.match(name):
        name = "_" + name
    encoded = name.encode("utf-8")[:max_bytes]
    name = encoded.decode("utf-8", errors="ignore").strip(" .")
    return name or fallback


def safe_sheet_name(text: object, taken: set[str] | None = None) -> str:
    """An Excel sheet name: 31 characters, none of []:*?/\\, unique (case-insensitive) in `taken`."""
    name = _SHEET_BAD.sub("_", unicodedata.normalize("NFC", str(text)))
    name = re.sub(r"\s+", " ", name).strip().strip("'") or "Sheet"
    if name.lower() == "history":
        name = "History_"
    name = name[:SHEET_MAX]
    taken_lower = {t.lower() for t in (taken or ())}
    base, n = name, 2
    while name.lower() in taken_lower:
        suffix = f"~{n}"
        name = base[: SHEET_MAX - len(suffix)] + suffix
        n += 1
    if taken is not None:
        taken.add(name)
    return name


def inert_csv(value: object) -> object:
    """A CSV field a spreadsheet will not run: text starting like a formula gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_LEAD):
        return "'" + value
    return value
