"""Property-based tests (hypothesis) of the score normaliser and the roster reader.

The normaliser is checked against an oracle written here from the documented rules, not from
the code: a 得分 is accepted exactly when it denotes a number in [0, 满分] — a number cell
as it is; text after folding full-width characters, dropping spaces (and zero-width marks)
and one trailing 分 — and it never raises. The roster reader returns a roster or raises
InputError, whatever the cells hold. The workbook reader, given mutants of small generated .xls
and .xlsb files, returns a workbook or raises UnreadableFile, never a panic or an abort.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta
from pathlib import Path

import xlsxwriter
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.collect import normalise_score
from pipeline.errors import InputError
from pipeline.roster import ASSESSORS, ASSIGNMENTS, SUBJECTS, Roster, read_roster
from pipeline.systems import load_system

CODES = {"blank_score", "not_a_number", "error_value", "out_of_range"}
MAXIMA = sorted({i.max for s in ("community", "zone") for i in load_system(s).items})
TOLERANCE = 1e-9  # a value within this of 满分 (float noise from a formula) counts as 满分

# -- the oracle ----------------------------------------------------------------------------------------
FULL_WIDTH = {chr(0xFF01 + n): chr(0x21 + n) for n in range(94)} | {"\u3000": " "}
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def oracle(value: object, maximum: float) -> tuple[bool, float | None, bool]:
    """(accepted, score, blank) by the documented rules."""
    if value is None:
        return False, None, True
    if isinstance(value, bool) or isinstance(value, (date, time, timedelta)):
        return False, None, False
    if isinstance(value, (int, float)):
        x = float(value) if not isinstance(value, int) or abs(value) < 10**300 else math.inf
        ok = math.isfinite(x) and 0 <= x <= maximum + TOLERANCE
        return ok, (min(x, maximum) if ok else None), False
    if not isinstance(value, str):
        return False, None, False
    text = "".join(FULL_WIDTH.get(ch, ch) for ch in value)
    text = "".join(ch for ch in text if not ch.isspace() and ch not in ZERO_WIDTH)
    if not text:
        return False, None, True
    if len(text) > 1 and text.endswith("分"):
        text = text[:-1]
    if not ASCII_NUMBER.fullmatch(text):
        return False, None, False
    number = float(text)  # read as a spreadsheet reads typed text: a double (-1E-400 is -0.0)
    ok = math.isfinite(number) and 0 <= number <= maximum + TOLERANCE
    return ok, (min(number, maximum) + 0.0 if ok else None), False


# -- strategies ------------------------------------------------------------------------------------------
def _widen(text: str, draw) -> str:
    """Turn some characters into their full-width forms."""
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" and draw(st.booleans()) else ch for ch in text)


@st.composite
def score_texts(draw) -> str:
    """Text that looks like a typed score: sign, digits, point, exponent, spaces, 分, in either width."""
    space = st.sampled_from(["", " ", "  ", "\t", "\u3000", "\u00a0", "\u200b", "\n"])
    sign = draw(st.sampled_from(["", "", "+", "-"]))
    whole = draw(st.text("0123456789", max_size=4))
    frac = draw(st.one_of(st.just(""), st.text("0123456789", max_size=4).map(lambda d: "." + d)))
    exp = draw(st.one_of(st.just(""), st.from_regex(r"[eE][+-]?[0-9]{1,3}", fullmatch=True)))
    core = sign + whole + frac + exp
    if draw(st.booleans()):
        core = _widen(core, draw)
    return draw(space) + core + draw(space) + draw(st.sampled_from(["", "", "分", " 分", "分分", "points"])) + draw(space)


# arbitrary soup from the characters that matter, without exponents (whose digit count the
# oracle does not bound); the oracle must agree on all of it
soup = st.text(alphabet="0123456789０１２３４５６７８９.．+-＋－ 　\t分#N/A!四满", max_size=8)
number_cells = st.one_of(st.integers(-10, 200), st.floats(allow_nan=True, allow_infinity=True),
                         st.floats(-1, 120), st.integers())
maxima = st.one_of(st.sampled_from(MAXIMA), st.floats(0.5, 100))


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(score_texts(), soup, number_cells, st.none(), st.booleans(), st.dates(), st.datetimes()),
       maximum=maxima)
@example(value="４", maximum=4.0)
@example(value="4分", maximum=4.0)
@example(value=" 3.5 ", maximum=4.0)
@example(value="NaN", maximum=4.0)
@example(value=float("nan"), maximum=4.0)
@example(value="inf", maximum=4.0)
@example(value="1e999", maximum=4.0)
@example(value=True, maximum=4.0)
@example(value="#DIV/0!", maximum=4.0)
@example(value=4.000000000000001, maximum=4.0)
@example(value="-0", maximum=4.0)
@example(value="分", maximum=4.0)
@example(value=10**400, maximum=4.0)
@example(value="-1E-400", maximum=4.0)
def test_normaliser_accepts_exactly_the_valid_scores(value, maximum):
    score, note, error = normalise_score(value, maximum)
    accepted, expected, blank = oracle(value, maximum)
    assert (error is None) == accepted, (value, maximum, score, error)
    if accepted:
        assert score == expected
        assert 0 <= score <= maximum and math.isfinite(score)
        assert (note is not None) == isinstance(value, str)  # text numbers are accepted with a warning
    else:
        assert score is None and error in CODES
        assert (error == "blank_score") == blank, (value, error)


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.text(), st.binary(), st.integers(), st.floats(), st.none(), st.booleans(),
                       st.dates(), st.datetimes(), st.times(), st.timedeltas(), st.decimals(), st.fractions(),
                       st.lists(st.integers(), max_size=2), st.complex_numbers()),
       maximum=st.one_of(maxima, st.floats(), st.none(), st.text(max_size=3)))
def test_normaliser_never_raises(value, maximum):
    result = normalise_score(value, maximum)
    assert isinstance(result, tuple) and len(result) == 3
    score, note, error = result
    if error is None:
        assert isinstance(score, float) and math.isfinite(score) and score >= 0
        assert note is None or isinstance(note, str)
    else:
        assert score is None and error in CODES


# -- the roster reader --------------------------------------------------------------------------------------
cell_values = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["Z01", "C001", "E01", "创新实践区", "创新实践社区", "=1+1", "+86 138", "-", "@x", " ", "编号"]),
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(2100, 1, 1)),
)
HEADERS = {SUBJECTS: ["编号", "名称", "类型", "省份", "城市", "区县"], ASSESSORS: ["编号", "姓名", "单位", "联系方式"],
           ASSIGNMENTS: ["评估人编号", "评估对象编号"]}


def _write(ws, r: int, c: int, value, fmt) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        ws.write_boolean(r, c, value)
    elif isinstance(value, (int, float)):
        ws.write_number(r, c, value)
    elif isinstance(value, datetime):
        ws.write_datetime(r, c, value, fmt)
    else:
        ws.write_string(r, c, value)


@st.composite
def rosters(draw):
    sheets = {}
    for name, header in HEADERS.items():
        if name != SUBJECTS and draw(st.integers(0, 9)) == 0:
            continue  # a sheet left out now and then
        head = [h if draw(st.integers(0, 5)) else draw(cell_values) for h in header]
        rows = draw(st.lists(st.lists(cell_values, min_size=0, max_size=len(header) + 1), max_size=6))
        sheets[name] = [head] + rows
    return sheets


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(sheets=rosters())
def test_roster_reader_returns_or_raises_input_error(tmp_path_factory, sheets):
    path = Path(tmp_path_factory.mktemp("roster")) / "roster.xlsx"
    book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_numbers": False})
    fmt = book.add_format({"num_format": "yyyy-mm-dd"})
    for name, rows in sheets.items():
        ws = book.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                _write(ws, r, c, value, fmt)
    book.close()
    try:
        roster = read_roster(path)
    except InputError as err:
        assert str(err)
        return
    assert isinstance(roster, Roster) and roster.subjects and roster.assessors
    for assessor, subject in roster.pairs:
        assert assessor in roster.assessors and subject in roster.subjects


def test_the_oracle_itself():
    """A few hand-checked verdicts, so the oracle cannot drift into agreeing with anything."""
    assert oracle("４.５", 5.0) == (True, 4.5, False)
    assert oracle("4 分", 4.0) == (True, 4.0, False)
    assert oracle("四", 4.0)[0] is False
    assert oracle("", 4.0) == (False, None, True)
    assert oracle("5", 4.0)[0] is False
    assert oracle(float("nan"), 4.0)[0] is False
    assert oracle(True, 4.0)[0] is False
    assert oracle(" ", 4.0) == (False, None, True)


# -- the workbook reader on mutated binary files ----------------------------------------------------------
MUTANTS = 400  # per format; a few seconds
FUZZ_CELLS = {"C001": [(0, 0, "编号"), (0, 1, "得分"), (1, 0, "C01"), (1, 1, 4.0), (5, 3, "备注")], "C002": [(2, 2, 1.5)]}


def fuzz_reader(kind: str, seed: int, count: int, folder: str) -> dict[str, int]:
    """Read `count` mutants of a small generated .xls (bytes of its workbook stream changed) or
    .xlsb (bytes of a BIFF12 part changed); returns outcome -> count. Anything but a Workbook or an
    UnreadableFile with a catalogue code propagates."""
    import io
    import random
    import zipfile
    from collections import Counter

    import corpus
    from pipeline.messages import CATALOGUE
    from pipeline.reader import UnreadableFile, read_workbook

    rng, out = random.Random(seed), Counter()
    if kind == "xls":
        seed_bytes = corpus.xls_file(Path(folder) / "seed.xls", FUZZ_CELLS).read_bytes()
    else:
        with zipfile.ZipFile(corpus.xlsb_file(Path(folder) / "seed.xlsb", FUZZ_CELLS)) as z:
            parts = {i.filename: z.read(i.filename) for i in z.infolist()}
    for _ in range(count):
        if kind == "xls":  # the workbook stream starts after the header, FAT and directory sectors
            data = bytearray(seed_bytes)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(1536, 2136)] = rng.randrange(256)
        else:
            target = rng.choice(["xl/worksheets/sheet1.bin", "xl/workbook.bin"])
            part = bytearray(parts[target])
            for _ in range(rng.randint(1, 6)):
                part[rng.randrange(len(part))] = rng.randrange(256)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as z:
                for name, body in parts.items():
                    z.writestr(name, bytes(part) if name == target else body)
            data = buffer.getvalue()
        try:
            read_workbook("mutant", data=bytes(data))
            out["read"] += 1
        except UnreadableFile as err:
            assert err.code in CATALOGUE, err.code
            out[err.code] += 1
    return dict(out)


def test_mutated_xls_and_xlsb_never_escape_the_reader(tmp_path):
    """Mutants of a generated .xls and .xlsb are read or refused with a catalogue code, in a child
    process capped at 1 GB: a calamine panic must be caught, and an abort (a failed allocation)
    would fail this test instead of killing the test run."""
    import json
    import subprocess
    import sys

    code = ("import json, resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "import test_fuzz\n"
            f"print(json.dumps({{k: test_fuzz.fuzz_reader(k, 7, {MUTANTS}, sys.argv[1]) for k in ('xls', 'xlsb')}}))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=600,
                            cwd=Path(__file__).parent, env={**__import__("os").environ, "RUST_BACKTRACE": "0",
                                                           "OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.splitlines()[-1])
    for kind, outcomes in found.items():
        assert sum(outcomes.values()) == MUTANTS
        assert outcomes.get("read", 0) > 0 and len(outcomes) > 1, (kind, outcomes)  # the mutants do vary
    assert found["xls"].get("read_failed", 0) + found["xlsb"].get("read_failed", 0) > 0  # panics were met and caught
