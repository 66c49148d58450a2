"""Shared fixtures: a workspace with a roster, forms filled the way an assessor fills them."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import LEDGER_URL_ENV, Workspace
from pipeline.forms import HEADER, HEADER_ROW
from pipeline.i18n import set_language
from pipeline.roster import write_roster

SUBJECTS = [
    ("Z01", "杭州市上城区", "创新实践区", "浙江省", "杭州市", "上城区"),
    ("Z02", "成都市武侯区", "创新实践区", "四川省", "成都市", "武侯区"),
    ("C001", "湖滨街道东坡路社区", "创新实践社区", "浙江省", "杭州市", "上城区"),
    ("C002", "玉林街道黉门街社区", "创新实践社区", "四川省", "成都市", "武侯区"),
    ("C003", "南湖街道南湖社区", "创新实践社区", "湖北省", "武汉市", "洪山区"),
]
ASSESSORS = [
    ("E01", "张敏", "浙江工业大学", "13800000001"),
    ("E02", "李强", "四川大学", "13800000002"),
    ("E03", "王芳", "武汉市社工联", "wangfang@example.org"),
]
PAIRS = [(a, s) for a, _, _, _ in ASSESSORS for s, *_ in SUBJECTS]


def run(workspace: Path, *args: str, expect: int | None = 0):
    """Run the CLI in a workspace; asserts the exit code unless expect is None."""
    result = CliRunner().invoke(main, ["-w", str(workspace), *args], catch_exceptions=False)
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


# -- the two ledger engines ------------------------------------------------------------------
# A module that sets BOTH_BACKENDS = True and uses the `backend` fixture (pytestmark =
# pytest.mark.usefixtures("backend")) runs each test on SQLite and on PostgreSQL, except tests
# marked `sqlite_only` (they read the SQLite file itself: migrations from older versions).
# Without PostgreSQL the postgres tests fail: CI installs it (.ci/run).
def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        both = getattr(metafunc.module, "BOTH_BACKENDS", False) and not metafunc.definition.get_closest_marker("sqlite_only")
        metafunc.parametrize("backend", ["sqlite", "postgres"] if both else ["sqlite"], indirect=True)


@pytest.fixture(scope="session")
def pg_server():
    """The URL of a PostgreSQL server for the tests: .ci/run's (HAPPYHOME_TEST_PG_URL) or a
    throwaway cluster started here (tests/pgcluster.py) and stopped at the end."""
    from tests import pgcluster

    url = os.environ.get("HAPPYHOME_TEST_PG_URL")
    if url:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="happyhome-pg-"))
    try:
        yield pgcluster.start(folder)
    finally:
        pgcluster.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def pg_url(pg_server):
    """A new, empty database for one test; dropped after it."""
    import psycopg

    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
    yield pg_server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def backend(request, monkeypatch):
    """The ledger engine of this test: HAPPYHOME_LEDGER_URL set to a fresh database for postgres."""
    if request.param != "postgres":
        monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
        yield request.param
        return
    monkeypatch.setenv(LEDGER_URL_ENV, request.getfixturevalue("pg_url"))
    tmp = request.getfixturevalue("tmp_path")
    yield request.param
    # the test really ran on PostgreSQL: no SQLite ledger appeared anywhere in its folders
    assert not list(tmp.rglob("*.sqlite")), "a postgres test wrote an SQLite ledger"


def open_ledger(root: Path):
    """The workspace's ledger, on whichever engine the test runs."""
    from pipeline.ledger import Ledger

    return Ledger.open(Workspace.open(root))


def ledger_rows(root: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a query on the workspace's ledger (either engine; `?` placeholders)."""
    with open_ledger(root) as ledger:
        return [tuple(r) for r in ledger._db.execute(sql, params).fetchall()]


@pytest.fixture(autouse=True)
def chinese_terminal(monkeypatch):
    """Every test starts in the default language, Chinese, whatever the caller's HAPPYHOME_LANG;
    a test that runs `--lang en` leaves no English behind for the next."""
    monkeypatch.delenv("HAPPYHOME_LANG", raising=False)
    set_language("zh")
    yield
    set_language("zh")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An initialised workspace with the small roster above (3 assessors rate everything)."""
    root = tmp_path / "ws"
    run(root, "init", str(root))
    reason_rule(root, 0)
    write_roster(root / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    return root


def reason_rule(root: Path, share: float, mode: str = "warning") -> None:
    """Set the 扣分理由 rule of a workspace ([forms] reason_below_share, [collect] missing_reason).
    The shared fixtures turn it off (share 0): their tests fill deductions without remarks and
    compare exact problem lists; tests/test_selfassessment.py tests the rule."""
    toml = root / "happyhome.toml"
    text = toml.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^reason_below_share = .*$", f"reason_below_share = {share!r}", text)
    text = re.sub(r'(?m)^missing_reason = .*$', f'missing_reason = "{mode}"', text)
    toml.write_text(text, encoding="utf-8")


def fill_form(path: Path, scores: dict[str, dict[str, object]], remarks: dict[str, dict[str, str]] | None = None,
              save_as: Path | None = None) -> Path:
    """Type scores into a form with openpyxl as an assessor would: subject -> item -> value.

    Rows are found by the item code in column A, sheets by the subject code in the identity
    block, so the helper works whatever the sheet names are.
    """
    book = openpyxl.load_workbook(path)
    score_col = HEADER.index("得分") + 1
    remark_col = HEADER.index("备注") + 1
    for ws in book.worksheets:
        if ws.sheet_state != "visible":
            continue
        subject = ws.cell(3, 7).value if ws.cell(3, 6).value == "对象编号" else None
        subject = ws.cell(2, 7).value if ws.cell(2, 6).value == "对象编号" else subject
        if subject not in scores:
            continue
        for row in range(HEADER_ROW + 2, ws.max_row + 1):
            code = ws.cell(row, 1).value
            if code in scores[subject]:
                ws.cell(row, score_col).value = scores[subject][code]
            if remarks and code in remarks.get(subject, {}):
                ws.cell(row, remark_col).value = remarks[subject][code]
    target = save_as or path
    book.save(target)
    return target


def soffice_convert(path: Path, fmt: str, out_dir: Path) -> Path:
    """Re-save a workbook through LibreOffice headless (xlsx, ods, xls)."""
    soffice = shutil.which("soffice")
    if not soffice:
        pytest.skip("LibreOffice (soffice) is not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = out_dir / ".lo-profile"
    subprocess.run(
        [soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", fmt,
         "--outdir", str(out_dir), str(path)],
        check=True, capture_output=True, timeout=180,
    )
    return out_dir / (path.stem + "." + fmt.split(":")[0])
