"""The PostgreSQL ledger beside SQLite: the same returns give the same outputs on both; two
offices collecting into one database at once (real processes) lose nothing and count nothing
twice; the round lock is taken in the database; readers see one snapshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from conftest import ASSESSORS, PAIRS, SUBJECTS, fill_form, reason_rule, run
from pipeline.config import LEDGER_URL_ENV, Workspace
from pipeline.ledger import Ledger
from pipeline.roster import write_roster
from test_collect import PERIOD, answers, expected_scores, make_forms

ROUND = ("--system", "community", "--period", PERIOD)


def office(root: Path, key_from: Path | None = None) -> Path:
    """A workspace with the shared roster; `key_from`: another office's workspace whose office
    key it uses (offices that share forms share the key that seals them)."""
    run(root, "init", str(root))
    reason_rule(root, 0)
    write_roster(root / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    if key_from is not None:
        shutil.copy2(key_from / "ledger" / "office.key", root / "ledger" / "office.key")
    return root


def returned(root: Path) -> Path:
    folder = root / "input" / "returned" / PERIOD
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cells(path: Path) -> dict[str, list[tuple]]:
    book = openpyxl.load_workbook(path)
    return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in book.worksheets}


def test_the_same_returns_give_the_same_outputs_on_both_engines(tmp_path, pg_url, monkeypatch):
    lite = office(tmp_path / "lite")
    pg = office(tmp_path / "pg", key_from=lite)
    forms = make_forms(lite)
    for assessor, path in forms.items():
        filled = fill_form(path, answers(assessor), save_as=returned(lite) / path.name)
        shutil.copy2(filled, returned(pg) / path.name)  # the same bytes and times
    # a resubmission (supersedes) and a broken file (rejected), the same in both
    scores = answers("E01")
    scores["C001"]["C01"] = 1
    later = fill_form(forms["E01"], scores, save_as=returned(lite) / "E01-again.xlsx")
    shutil.copy2(later, returned(pg) / later.name)
    for root in (lite, pg):
        (returned(root) / "broken.xlsx").write_bytes(b"PK\x03\x04 broken")
    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
    run(lite, "collect", *ROUND)
    run(lite, "report", *ROUND)
    monkeypatch.setenv(LEDGER_URL_ENV, pg_url)
    run(pg, "collect", *ROUND)
    run(pg, "report", *ROUND)
    assert not list(pg.rglob("*.sqlite")) and (lite / "ledger" / "happyhome.sqlite").is_file()
    out_lite, out_pg = lite / "output" / PERIOD, pg / "output" / PERIOD
    csvs = sorted(p.name for p in out_lite.glob("*.csv"))
    assert csvs and csvs == sorted(p.name for p in out_pg.glob("*.csv"))
    for name in csvs:
        assert (out_lite / name).read_bytes() == (out_pg / name).read_bytes(), name
    summary_lite, summary_pg = cells(out_lite / "summary-community.xlsx"), cells(out_pg / "summary-community.xlsx")
    assert summary_lite.keys() == summary_pg.keys()
    for sheet in summary_lite:
        if sheet != "说明":  # the sheet that says when it was made
            assert summary_lite[sheet] == summary_pg[sheet], sheet
    collection_lite = cells(out_lite / "collection-community.xlsx")
    collection_pg = cells(out_pg / "collection-community.xlsx")
    assert collection_lite.keys() == collection_pg.keys()
    for sheet in collection_lite:  # the same rows, but the collection time and the archive path
        strip = [{v for v in row if not (isinstance(v, str) and (str(tmp_path) in v or v.startswith("20")))}
                 for row in collection_lite[sheet]]
        assert strip == [{v for v in row if not (isinstance(v, str) and (str(tmp_path) in v or v.startswith("20")))}
                         for row in collection_pg[sheet]], sheet


def _env(url: str) -> dict[str, str]:
    env = dict(os.environ, HAPPYHOME_LANG="en")
    env[LEDGER_URL_ENV] = url
    return env


def test_two_offices_collecting_at_once_lose_nothing_and_count_nothing_twice(tmp_path, pg_url):
    """Two workspaces, each with its own returned folder, collect into one PostgreSQL ledger as
    two real processes started together; one file is in both folders."""
    east = office(tmp_path / "east")
    west = office(tmp_path / "west", key_from=east)
    forms = make_forms(east)
    # each office waits for the other's collection of the round: [collect] round_lock_wait as shipped
    fill_form(forms["E01"], answers("E01"), save_as=returned(east) / "E01.xlsx")
    fill_form(forms["E02"], answers("E02"), save_as=returned(west) / "E02.xlsx")
    shared = fill_form(forms["E03"], answers("E03"), save_as=returned(east) / "E03.xlsx")
    shutil.copy2(shared, returned(west) / "E03-forwarded.xlsx")
    command = [sys.executable, "-m", "pipeline", "-w", "{root}", "collect", *ROUND]
    procs = [subprocess.Popen([c.format(root=root) for c in command], env=_env(pg_url), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for root in (east, west)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    with Ledger(pg_url) as ledger:
        files = ledger.files(PERIOD, "community")
        sheets = ledger.sheets(PERIOD, "community")
        scores = ledger.accepted_scores(PERIOD, "community")
        aliases = ledger.aliases(PERIOD, "community")
    assert sorted(files.name) == sorted(["E01.xlsx", "E02.xlsx", files.name[files.name.str.startswith("E03")].iloc[0]])
    assert len(files) == 3 and files.sha256.is_unique  # the shared file is one record
    assert len(aliases) == 1 and aliases.path.iloc[0].endswith(("E03.xlsx", "E03-forwarded.xlsx"))
    assert sorted(sheets.status) == ["accepted"] * 9
    got = {(r.assessor, r.subject, r.item): r.score for r in scores.itertuples()}
    assert len(scores) == len(got) and got == expected_scores("E01", "E02", "E03")  # all of them, each once
    # each office's own collection workbook lists the round as the ledger has it
    for root in (east, west):
        assert (root / "output" / PERIOD / "collection-community.xlsx").is_file()


def test_the_round_lock_is_taken_in_the_database(tmp_path, pg_url):
    """A collection of a round waits for another office's; past collect.round_lock_wait it stops
    before it changes anything. Another round is not held up."""
    root = office(tmp_path / "ws")
    forms = make_forms(root)
    fill_form(forms["E01"], answers("E01"), save_as=returned(root) / "E01.xlsx")
    toml = root / "happyhome.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("round_lock_wait = 600", "round_lock_wait = 0.5"),
                    encoding="utf-8")
    command = [sys.executable, "-m", "pipeline", "-w", str(root), "collect", *ROUND]
    with Ledger(pg_url) as other, other.round_lock(f"{PERIOD}/community", 0):
        held = subprocess.run(command, env=_env(pg_url), capture_output=True, text=True, timeout=300)
        with Ledger(pg_url) as third, third.round_lock("2026-12/community", 0):
            pass  # another round's lock is free
    assert held.returncode == 5, held.stdout + held.stderr
    assert "Another office is collecting round 2026-11/community" in held.stdout + held.stderr
    with Ledger(pg_url) as ledger:
        assert len(ledger.files(PERIOD, "community")) == 0
    done = subprocess.run(command, env=_env(pg_url), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    with Ledger(pg_url) as ledger:
        assert len(ledger.files(PERIOD, "community")) == 1


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_reader_sees_one_snapshot_while_a_collection_commits(tmp_path, engine, request):
    from test_ledger import T1, T2, _file

    where = request.getfixturevalue("pg_url") if engine == "postgres" else tmp_path / "l.sqlite"
    with Ledger(where) as writer, Ledger(where) as reader:
        writer.add_file(_file("a", T1, {"C01": 1}))
        with reader.snapshot():
            before = len(reader.accepted_scores(PERIOD, "community"))
            writer.add_file(_file("b", T2, {"C01": 2}, subject="C002"))  # commits meanwhile
            assert len(reader.accepted_scores(PERIOD, "community")) == before
            assert len(reader.files(PERIOD, "community")) == 1
        assert len(reader.files(PERIOD, "community")) == 2
        assert len(reader.accepted_scores(PERIOD, "community")) == 2 * before


def test_a_postgres_ledger_has_the_columns_of_a_sqlite_one(tmp_path, pg_url):
    import sqlite3

    from pipeline.ledger import SCHEMA_VERSION, TABLES

    Ledger(tmp_path / "l.sqlite").close()
    conn = sqlite3.connect(tmp_path / "l.sqlite")
    lite = {t: [c[1] for c in conn.execute(f"PRAGMA table_info({t})")] for t in TABLES}
    conn.close()
    with Ledger(pg_url) as ledger:
        pg = {t: [r[0] for r in ledger._db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            (t,)).fetchall()] for t in TABLES}
        assert ledger._version() == SCHEMA_VERSION
    assert pg == lite


def test_a_newer_postgres_ledger_is_refused_and_a_bad_url_is_a_plain_error(pg_url):
    from pipeline.errors import OutputError
    from pipeline.ledger import SCHEMA_VERSION

    with Ledger(pg_url) as ledger:
        ledger._db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(OutputError, match="由更新版本的 happyhome 生成"):
        Ledger(pg_url)
    with pytest.raises(OutputError, match="无法打开"):
        Ledger("postgresql://nobody:secret@127.0.0.1:1/none")
    try:
        Ledger("postgresql://nobody:secret@127.0.0.1:1/none")
    except OutputError as err:
        assert "secret" not in str(err)  # the password is never shown


def test_ledger_copy_to_postgres_and_back_keeps_every_row_and_check_finds_damage(tmp_path, pg_url, monkeypatch):
    """A collected and corrected round copied SQLite -> PostgreSQL -> SQLite: the same rows, the
    same scores and the same report; `ledger check` passes on each and names what was broken."""
    root = office(tmp_path / "ws")
    forms = make_forms(root)
    for assessor, path in forms.items():
        fill_form(path, answers(assessor), save_as=returned(root) / path.name)
    (returned(root) / "broken.xlsx").write_bytes(b"PK\x03\x04 broken")
    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
    monkeypatch.setenv("HAPPYHOME_LANG", "en")
    run(root, "collect", *ROUND)
    run(root, "amend", *ROUND, "--subject", "C001", "--assessor", "E01", "--item", "C17", "--score", "1",
        "--reason", "复核")
    run(root, "report", *ROUND)
    before = (root / "output" / PERIOD / "results-community.csv").read_bytes()
    lite = root / "ledger" / "happyhome.sqlite"
    with Ledger(lite) as ledger:
        counts, checksum = ledger.table_counts(), ledger.score_checksum()
    assert counts["files"] == 4 and counts["corrections"] == 1 and counts["scores"] > 0

    out = run(root, "ledger", "copy", "--to", pg_url).output
    assert "files 4" in out and checksum[:16] in out
    with Ledger(pg_url) as ledger:
        assert (ledger.table_counts(), ledger.score_checksum()) == (counts, checksum)
    refused = run(root, "ledger", "copy", "--to", pg_url, expect=4).output  # only into an empty ledger
    assert "not empty (4 files)" in refused

    monkeypatch.setenv(LEDGER_URL_ENV, pg_url)  # the office now works on PostgreSQL
    assert "No problems found." in run(root, "ledger", "check").output
    (root / "output" / PERIOD / "results-community.csv").unlink()
    run(root, "report", *ROUND)
    assert (root / "output" / PERIOD / "results-community.csv").read_bytes() == before
    with Ledger(pg_url) as ledger:  # new rows after the copy take new ids (the sequences moved on)
        assert ledger.add_correction({"action": "amend", "period": PERIOD, "system": "community", "assessor": "E01",
                                      "subject": "C002", "item": "C17", "sheet_id": 2, "old_score": 1, "new_score": 2, "raw": "2",
                                      "reason": "x", "operator": "t", "created_at": "2026-12-01T09:00:00"}) == 2

    back = tmp_path / "back.sqlite"
    out = run(root, "ledger", "copy", "--to", str(back)).output
    assert "files 4" in out
    with Ledger(back) as ledger, Ledger(pg_url) as pg:
        assert ledger.table_counts() == pg.table_counts() and ledger.score_checksum() == pg.score_checksum()
        assert ledger.check() == []

    # damage: a score whose sheet is gone, and a second accepted sheet for one assessor and subject
    with Ledger(pg_url) as ledger:
        ledger._db.execute("ALTER TABLE scores DROP CONSTRAINT scores_sheet_id_fkey")
        ledger._db.execute("UPDATE scores SET sheet_id = 9999 WHERE id = 1")
        ledger._db.execute("UPDATE sheets SET subject = 'C001' WHERE id = 2")
    broken = run(root, "ledger", "check", expect=4).output
    assert "rows of scores.sheet_id point at no row of sheets" in broken
    assert "1 assessor-subject pairs have more than one accepted sheet" in broken
    assert "failed 2 checks" in broken


def test_paths_ledger_takes_a_url_and_the_environment_overrides_it(tmp_path, pg_url, monkeypatch):
    root = office(tmp_path / "ws")
    toml = root / "happyhome.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('ledger = "ledger/happyhome.sqlite"',
                                                             f'ledger = "{pg_url}"'), encoding="utf-8")
    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
    ws = Workspace.open(root)
    assert ws.ledger_location() == pg_url
    forms = make_forms(root)
    fill_form(forms["E01"], answers("E01"), save_as=returned(root) / "E01.xlsx")
    run(root, "collect", *ROUND)
    with Ledger(pg_url) as ledger:
        assert ledger.files(PERIOD, "community").name.tolist() == ["E01.xlsx"]
    # nothing local (the workspace lock, ledger/postgresql.lock while held, is removed on release;
    # no folder named after the URL)
    assert sorted(p.name for p in (root / "ledger").iterdir()) == ["archive", "office.key"]
    assert not list(root.rglob("*.sqlite")) and not (root / "postgresql:").exists()
    monkeypatch.setenv(LEDGER_URL_ENV, str(tmp_path / "other.sqlite"))  # the environment wins
    assert Workspace.open(root).ledger_location() == tmp_path / "other.sqlite"


# Texts a CSV round trip could bend: separators, quotes, line breaks, backslashes, what a CSV
# reader takes for missing ("NA", "NULL", "", "nan", "\N"), numbers with leading zeros, Chinese.
HOSTILE = ["a,b", '"quoted"', '"', "tab\there", "line1\nline2", "cr\r\nlf\r", "back\\slash", "\\N", "trailing\\",
           "NA", "NULL", "null", "None", "nan", "N/A", "#not a comment", "", " ", " lead and trail ", "007",
           "1e5", "3.0", "中文备注，含全角逗号、“引号”", "=SUM(A1)", "\u00a0"]


def _hostile_round() -> list:
    """Files whose sheets' items, raw texts, remarks and cells are HOSTILE, with scores whose
    doubles have no short decimal; subjects and assessors whose code-point order differs from a
    dictionary's; besides them a superseded, a rejected and a self-assessment sheet."""
    from datetime import datetime

    from pipeline.ledger import FileRecord, SheetRecord

    scores = [0.1, 1 / 3, 2.675, 1e-7, 123456.789, 0.30000000000000004, 7.0, 0.0]
    subjects = ["C010", "c001", "C001", "社区B", "0012", "社区A", "C 2"]
    files = []
    for n, assessor in enumerate(["E02", "专家1", "e01", "E01"]):
        when = datetime(2026, 11, 20, 9 + n)
        sheets = []
        for k, subject in enumerate(subjects):
            rows = [(item, HOSTILE[(j + k) % len(HOSTILE)], scores[(j + n + k) % len(scores)],
                     HOSTILE[(j * 7 + k + n) % len(HOSTILE)], HOSTILE[(j * 3 + n) % len(HOSTILE)] or "G7")
                    for j, item in enumerate(HOSTILE)]  # every hostile text is also an item code
            sheets.append(SheetRecord(f"{subject} 表", assessor, subject, True, rows))
        sheets.append(SheetRecord("bad", assessor, "C099", False))
        files.append(FileRecord(sha256=f"sha{n}", name=f"{assessor},\"x\"\n.xlsx", original_path=f"/in/{n}", size=1,
                                received_at=when, saved_at=when, archive_path=f"/a/{n}", period=PERIOD,
                                system="community", assessor=assessor, format="xlsx", status="partial", sheets=sheets))
    later = datetime(2026, 11, 21, 9)  # E01 again for C001: supersedes the first
    files.append(FileRecord(sha256="again", name="again.xlsx", original_path="/in/again", size=1, received_at=later,
                            saved_at=later, archive_path="/a/again", period=PERIOD, system="community", assessor="E01",
                            format="xlsx", status="accepted",
                            sheets=[SheetRecord("C001 表", "E01", "C001", True,
                                                [("C01", "NA", 9.5, "NULL", "G7"), ("C02", "", 0.2, "", "G8")])]))
    files.append(FileRecord(sha256="self", name="self.xlsx", original_path="/in/self", size=1, received_at=later,
                            saved_at=later, archive_path="/a/self", period=PERIOD, system="community", assessor="C001",
                            format="xlsx", status="accepted",
                            sheets=[SheetRecord("自评", "C001", "C001", True, [("C01", "5", 5.0, "自评", "G7")], kind="self")]))
    return files


def test_postgres_reads_the_same_accepted_scores_as_sqlite_from_hostile_text(tmp_path, pg_url):
    """The PostgreSQL engine reads a round's scores as one text per column (string_agg) and SQLite
    this round row by row (its scores have no exact text in millionths): the frames are equal in
    columns, dtypes, order and every value, to the last bit of every score."""
    import numpy as np
    import pandas as pd

    frames = {}
    for engine, where in (("sqlite", tmp_path / "l.sqlite"), ("postgres", pg_url)):
        with Ledger(where) as ledger:
            assert len(ledger.accepted_scores(PERIOD, "community")) == 0  # an empty round first
            for record in _hostile_round():
                ledger.add_file(record)
            ledger.add_correction({"action": "amend", "period": PERIOD, "system": "community", "assessor": "e01",
                                   "subject": "社区A", "item": "NA", "sheet_id": 22, "old_score": 0, "new_score": 0.7,
                                   "raw": "0.7", "reason": "复核", "operator": "t", "created_at": "2026-12-01T09:00:00"})
            with ledger.snapshot():
                frames[engine] = ledger.accepted_scores(PERIOD, "community")
            pd.testing.assert_frame_equal(ledger.accepted_scores(PERIOD, "community"), frames[engine])  # no snapshot
    lite, pg = frames["sqlite"], frames["postgres"]
    pd.testing.assert_frame_equal(pg, lite, check_exact=True)
    assert (pg["score"].to_numpy().view("int64") == lite["score"].to_numpy().view("int64")).all()

    # and both are what went in: 4 assessors x 7 subjects x 25 items, less E01's first C001 sheet, plus its
    # second (2 items); ordered by subject then assessor in code-point order, items as entered
    n = len(HOSTILE)
    assert len(pg) == 4 * 7 * n - n + 2
    pairs = list(dict.fromkeys(zip(pg["subject"], pg["assessor"])))
    assert pairs[:5] == [("0012", "E01"), ("0012", "E02"), ("0012", "e01"), ("0012", "专家1"), ("C 2", "E01")]
    assert [p[0] for p in pairs[-4:]] == ["社区B"] * 4 and pairs.index(("社区A", "E01")) < pairs.index(("社区B", "E01"))
    first = pg[(pg.subject == "C010") & (pg.assessor == "E02")]
    assert first["item"].tolist() == HOSTILE and first["raw"].tolist() == HOSTILE
    assert first["remark"].tolist() == [HOSTILE[(j * 7) % n] for j in range(n)]
    assert first["score"].tolist() == [[0.1, 1 / 3, 2.675, 1e-7, 123456.789, 0.30000000000000004, 7.0, 0.0][j % 8]
                                       for j in range(n)]
    again = pg[(pg.subject == "C001") & (pg.assessor == "E01")]
    assert again[["item", "raw", "score", "remark", "file"]].values.tolist() == [
        ["C01", "NA", 9.5, "NULL", "again.xlsx"], ["C02", "", 0.2, "", "again.xlsx"]]
    fixed = pg[pg.correction.notna()]
    assert fixed[["subject", "assessor", "item", "score"]].values.tolist() == [["社区A", "e01", "NA", 0.7]]
    assert pg["file"].iloc[0] == 'E01,"x"\n.xlsx' and not pg["item"].isna().any() and not pg["remark"].isna().any()
    assert np.isin(["", "NA", "NULL", "\\N", "007", "3.0"], pg["raw"]).all()


def test_postgres_keeps_texts_that_look_like_numbers_or_booleans_as_written(tmp_path, pg_url):
    """A round where every item, raw entry, remark and cell looks like a number or a boolean: a
    CSV reader's type inference must not make "007" 7 or "3.0" and "3" one value."""
    import pandas as pd

    from test_ledger import T1
    from pipeline.ledger import FileRecord, SheetRecord

    rows = [("01", "3", 3.0, "True", "7"), ("1", "3.0", 3.0, "false", "07"), ("1.0", "007", 7.0, "1", "1e5"),
            ("2", "-0", 0.0, "0", "-1"), ("10", "1e5", 5.5, "TRUE", "0x1F")]
    record = FileRecord(sha256="n", name="1.xlsx", original_path="/in/1", size=1, received_at=T1, saved_at=T1,
                        archive_path="/a/1", period=PERIOD, system="community", assessor="007", format="xlsx",
                        status="accepted", sheets=[SheetRecord("1", "007", "0012", True, rows)])
    frames = {}
    for where in (tmp_path / "l.sqlite", pg_url):
        with Ledger(where) as ledger:
            ledger.add_file(record)
            frames[str(where)] = ledger.accepted_scores(PERIOD, "community")
    lite, pg = frames.values()
    pd.testing.assert_frame_equal(pg, lite, check_exact=True)
    assert pg[["item", "raw", "score", "remark", "cell"]].values.tolist() == [list(r) for r in rows]
    assert pg[["assessor", "subject", "sheet"]].iloc[0].tolist() == ["007", "0012", "1"]


def test_a_failed_score_read_on_postgres_is_a_plain_error(pg_url):
    """A role that may read sheets but not scores (a misconfigured office): the read of the scores
    fails inside the report's snapshot, and the office gets one plain sentence, not a traceback."""
    import psycopg

    from pipeline.errors import OutputError

    with Ledger(pg_url) as ledger:
        for record in _hostile_round()[:1]:
            ledger.add_file(record)
    role = f"reader_{os.getpid()}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"REVOKE SELECT ON scores FROM {role}")
    try:
        url = pg_url.replace("//happyhome@", f"//{role}@")
        with Ledger(url) as ledger, ledger.snapshot():
            with pytest.raises(OutputError, match=r"无法读取台账 .*scores"):
                ledger.accepted_scores(PERIOD, "community")
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
            conn.execute(f"DROP ROLE {role}")


def _decimal_round(texts: list[str], scores: list[float]) -> list:
    """Three assessors' files of three subjects each, every item, raw entry, remark and cell one of
    `texts`, every score one of `scores`, entered in an order that is not the items' order; one
    assessor's second return supersedes its first sheet of C02."""
    from datetime import datetime

    from pipeline.ledger import FileRecord, SheetRecord

    files = []
    for n, assessor in enumerate(["E02", "e01", "专家"]):
        when = datetime(2026, 11, 20, 9 + n)
        sheets = [SheetRecord(f"{subject} 表", assessor, subject, True,
                              [(texts[(j + k) % len(texts)] + str(j), texts[(j * 5 + n) % len(texts)],
                                scores[(j + n + k) % len(scores)], texts[(j * 7 + k) % len(texts)],
                                texts[(j * 3 + n) % len(texts)]) for j in reversed(range(len(texts)))])
                  for k, subject in enumerate(["社区", "C02", "C 1"])]
        files.append(FileRecord(sha256=f"s{n}", name=f"{assessor}.xlsx", original_path=f"/in/{n}", size=1,
                                received_at=when, saved_at=when, archive_path=f"/a/{n}", period=PERIOD,
                                system="community", assessor=assessor, format="xlsx", status="accepted", sheets=sheets))
    later = datetime(2026, 11, 22, 9)
    files.append(FileRecord(sha256="again", name="again.xlsx", original_path="/in/again", size=1, received_at=later,
                            saved_at=later, archive_path="/a/again", period=PERIOD, system="community", assessor="e01",
                            format="xlsx", status="accepted",
                            sheets=[SheetRecord("C02 表", "e01", "C02", True, [("C01", texts[0], scores[-1], "", "G7")])]))
    return files


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
@pytest.mark.parametrize("case", ["decimal", "separator", "inexact"])
def test_the_round_read_as_one_text_per_column_gives_the_rows_frame(tmp_path, engine, case, request, monkeypatch):
    """`accepted_scores` reads each score column as one text (`Ledger._round_scores`): the frame is
    the row-by-row read's (`_score_rows`, sorted by the database) to the last bit, hostile texts and
    all. A round it cannot read back exactly — a text holding the separator, or (SQLite) a score
    without an exact text in millionths — is read row by row, with the same result."""
    import pandas as pd

    from pipeline.ledger import JOINED

    where = request.getfixturevalue("pg_url") if engine == "postgres" else tmp_path / "l.sqlite"
    texts = HOSTILE + ([JOINED + "x", "a" + JOINED] if case == "separator" else [])
    scores = [0.5, 2.675, 123456.789, 7.0, 0.0, -1.25, 1e-6, 3.1] + ([0.1 + 0.2, 1 / 3] if case == "inexact" else [])
    with Ledger(where) as ledger:
        for record in _decimal_round(texts, scores):
            ledger.add_file(record)
        rows = []
        monkeypatch.setattr(type(ledger), "_score_rows", lambda self, *a: rows.append(1) or Ledger._score_rows(self, *a))
        with ledger.snapshot():
            frame = ledger.accepted_scores(PERIOD, "community")
        by_rows = "separator" == case or (case == "inexact" and engine == "sqlite")
        assert rows == ([1] if by_rows else [])
        monkeypatch.setattr(type(ledger), "_round_scores", Ledger._score_rows)
        with ledger.snapshot():
            pd.testing.assert_frame_equal(frame, ledger.accepted_scores(PERIOD, "community"), check_exact=True)
    assert len(frame) == 3 * 3 * len(texts) - len(texts) + 1
    assert (frame["score"].to_numpy().view("int64") == frame["original"].to_numpy().view("int64")).all()
    pairs = list(dict.fromkeys(zip(frame["subject"], frame["assessor"])))
    assert pairs == [("C 1", "E02"), ("C 1", "e01"), ("C 1", "专家"), ("C02", "E02"), ("C02", "e01"), ("C02", "专家"),
                     ("社区", "E02"), ("社区", "e01"), ("社区", "专家")]
    first = frame[(frame.subject == "社区") & (frame.assessor == "E02")]  # in the order entered, not sorted
    n = len(texts)
    assert first["item"].tolist() == [texts[j % n] + str(j) for j in reversed(range(n))]
    assert first["remark"].tolist() == [texts[(j * 7) % n] for j in reversed(range(n))]
    assert first["score"].tolist() == [scores[j % len(scores)] for j in reversed(range(n))]
    assert frame[(frame.subject == "C02") & (frame.assessor == "e01")][["item", "file"]].values.tolist() == [
        ["C01", "again.xlsx"]]
