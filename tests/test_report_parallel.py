"""A large round's report shares its work with a second process (`pipeline.workers.Background`):
half the bootstrap's replicates, then the summary workbook while the CSVs and the digest are
written. The outputs must be the very files the one-process report writes, under fork and spawn,
and a second process that fails must fail the report cleanly or be made up for."""

from __future__ import annotations

import csv
import io
import os
import time
import zipfile
from datetime import datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from pipeline import calibration, workers
from pipeline import report as reporting
from pipeline.config import Workspace
from pipeline.errors import OutputError
from pipeline.report import csv_fields, report, write_detail_csv, DETAIL_HEAD
from pipeline.workers import Background
from test_report import PERIOD, add_returns
from test_selfassessment import round_with_self  # noqa: F401 - a fixture

GENERATED = datetime(2026, 12, 1, 9, 30)
# Eight subjects, two to five assessors each (E04 and E05 are not in the roster), totals spread
# so that trimming, ties and a few flags all occur.
SHARES = {
    f"C00{n}": {f"E0{a}": round(0.45 + 0.07 * ((n * 3 + a * 5) % 8), 2) for a in range(1, 2 + (n % 4) + 1)}
    for n in range(1, 9)
}
REMARKS = {("E01", "C001", "C01"): "=1+1", ("E02", "C001", "C02"): 'a "quoted", two-part remark',
           ("E03", "C002", "C05"): "two\nlines", ("E01", "C003", "C03"): "@home, 居民反映良好", ("E02", "C004", "C01"): " "}
OUTPUTS = ("summary-community.xlsx", "results-community.csv", "scores-community.csv", "digest-community.html")


def _report(root: Path, parallel_min_scores: int, method: str = "trimmed",
            generated: datetime = GENERATED, **options) -> dict[str, bytes]:
    """Report the round with `report.parallel_min_scores` set; the outputs' bytes by name."""
    config = root / "happyhome.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("\nparallel_min_scores = ", "\n# parallel_min_scores = ")
    config.write_text(text.replace("[report]\n", f"[report]\nparallel_min_scores = {parallel_min_scores}\n", 1),
                      encoding="utf-8")
    ws = Workspace.open(root)
    assert reporting.second_process(ws, 100) is (0 < parallel_min_scores <= 100 and (os.cpu_count() or 1) > 1)
    report(ws, "community", PERIOD, method=method, generated=generated, **options)
    out = root / "output" / PERIOD
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers  # no temporary file of an atomic write left behind
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def _parts(book: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(book)) as z:
        return {name: z.read(name) for name in z.namelist()}


def _assert_same(one: dict[str, bytes], other: dict[str, bytes]) -> None:
    for name in OUTPUTS:
        if name.endswith(".xlsx"):  # every part of the workbook: every cell, style and setting
            assert _parts(one[name]) == _parts(other[name]), name
        else:
            assert one[name] == other[name], name


@pytest.fixture
def jobs(monkeypatch) -> list[Background]:
    """Every `Background` the code under test starts (the bootstrap's and the summary's)."""
    made = []

    class Recorded(Background):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(workers, "Background", Recorded)  # calibration imports it when it needs it
    monkeypatch.setattr(reporting, "Background", Recorded)
    return made


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_report_in_two_processes_writes_the_same_files(workspace, monkeypatch, jobs, method):
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} here")
    monkeypatch.setenv("HAPPYHOME_START_METHOD", method)
    add_returns(workspace, shares=SHARES, remarks=REMARKS)
    serial = _report(workspace, 0)
    assert [job.ran_apart for job in jobs] == [False]  # the summary, here
    apart = _report(workspace, 1)
    # the summary workbook in a second process; under fork it is forked before the round is read
    # and starts before the bootstrap (on the sheets that need no interval), and the bootstrap
    # stays in this one: no third process
    assert [job.fn.__name__ for job in jobs[1:]] == ["summary_apart" if method == "fork" else "summary_book"]
    assert all(job.ran_apart for job in jobs[1:])
    _assert_same(serial, apart)
    # and what was written is the round: 8 subjects ranked, the remarks inert and quoted
    rows = list(csv.reader(io.StringIO(apart["scores-community.csv"].decode("utf-8-sig"))))
    assert rows[0] == DETAIL_HEAD and len(rows) == 1 + sum(len(v) for v in SHARES.values()) * 19
    remarks = {r[9] for r in rows[1:]}
    assert {"'=1+1", 'a "quoted", two-part remark', "two\nlines", "'@home, 居民反映良好", " "} <= remarks
    results = list(csv.reader(io.StringIO(apart["results-community.csv"].decode("utf-8-sig"))))
    assert sorted(r[1] for r in results[1:]) == sorted(SHARES)


def test_the_mean_method_too(workspace):
    add_returns(workspace, shares=SHARES, remarks=REMARKS)
    _assert_same(_report(workspace, 0, method="mean"), _report(workspace, 1, method="mean"))


def test_calibrated_and_by_province_too(workspace):
    """The summary started before the intervals keeps every sheet in its place: here 排名变化
    (calibration) comes between 争议 and 更正记录, and 排名 has its 省份内排名 column."""
    add_returns(workspace, shares=SHARES, remarks=REMARKS)
    serial = _report(workspace, 0, calibrate=True, by="省份")
    apart = _report(workspace, 1, calibrate=True, by="省份")
    _assert_same(serial, apart)
    book = openpyxl.load_workbook(io.BytesIO(apart["summary-community.xlsx"]), read_only=True)
    assert book.sheetnames == ["排名", "图表", "指标明细", "评分明细", "评估人", "争议", "排名变化", "更正记录", "说明"]
    head = next(book["排名"].iter_rows(max_row=1, values_only=True))
    assert "省份内排名" in head and "校准排名" in head and "排名（90%区间）" in head


def test_a_failing_summary_fails_the_report_and_leaves_nothing_half_written(workspace, monkeypatch):
    add_returns(workspace, shares=SHARES, remarks=REMARKS)
    before = _report(workspace, 0)
    main = os.getpid()

    def broken(tmp, res, **options):
        raise OutputError(f"Cannot write {tmp}: the disk is full (in process {os.getpid()}).")

    monkeypatch.setattr(reporting, "summary_book", broken)  # forked: the second process runs it
    with pytest.raises(OutputError, match="the disk is full") as caught:
        _report(workspace, 1, generated=datetime(2026, 12, 2, 10))  # a digest of its own, were it written
    assert f"in process {main})" not in str(caught.value)  # it was the second process's error
    assert any("background process" in note for note in caught.value.__notes__)
    out = workspace / "output" / PERIOD
    # the previous summary and digest stand (the CSVs may be new, and whole); no temporary file
    for name in ("summary-community.xlsx", "digest-community.html"):
        assert (out / name).read_bytes() == before[name], name
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_second_process_that_dies_is_made_up_for(workspace, monkeypatch):
    add_returns(workspace, shares=SHARES, remarks=REMARKS)
    serial = _report(workspace, 0)
    main, real = os.getpid(), reporting.summary_book

    def dies_apart(tmp, res, **options):
        if os.getpid() != main:
            os._exit(9)  # as if killed (out of memory) halfway
        return real(tmp, res, **options)

    monkeypatch.setattr(reporting, "summary_book", dies_apart)
    _assert_same(serial, _report(workspace, 1))


@pytest.mark.parametrize("when", ["summary_apart", "with_intervals"])
def test_a_second_process_that_dies_before_it_sends_the_intervals_is_made_up_for(workspace, monkeypatch, jobs, when):
    """Under fork the report's second process starts before the round is read, then works out the
    intervals: killed while it waits, or while it works them out (out of memory, a user), the
    intervals and the summary are worked out and written in the report's process, the same."""
    if "fork" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("no fork here")
    monkeypatch.setenv("HAPPYHOME_START_METHOD", "fork")
    add_returns(workspace, shares=SHARES, remarks=REMARKS)
    serial = _report(workspace, 0)
    main, real = os.getpid(), getattr(reporting, when)

    def dies_apart(*args, **kwargs):
        if os.getpid() != main:
            os._exit(9)
        return real(*args, **kwargs)

    monkeypatch.setattr(reporting, when, dies_apart)
    _assert_same(serial, _report(workspace, 1))
    assert [job.fn.__name__ for job in jobs] == ["summary_book", "dies_apart" if when == "summary_apart" else "summary_apart"]
    assert not jobs[-1].ran_apart


def test_a_round_too_small_to_share_is_written_in_one_process(workspace, monkeypatch, jobs):
    """Forked before the round is read, the summary's process is told it is not needed when the
    round has fewer scores than report.parallel_min_scores: everything is written here, the same."""
    if "fork" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("no fork here")
    monkeypatch.setenv("HAPPYHOME_START_METHOD", "fork")
    add_returns(workspace, shares=SHARES, remarks=REMARKS)
    serial = _report(workspace, 0)
    _assert_same(serial, _report(workspace, 10 ** 9))
    assert [(job.fn.__name__, job.ran_apart) for job in jobs] == [("summary_book", False), ("summary_apart", True),
                                                                  ("summary_book", False)]


# -- Background itself ----------------------------------------------------------------------------
def _square(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _fails(x: int) -> None:
    raise ValueError(f"no square of {x}")


def _exits_apart(parent: int) -> int:
    if os.getpid() != parent:
        os._exit(3)
    return 42


def _sleeps(seconds: float) -> None:
    time.sleep(seconds)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_background_runs_apart_and_hands_back_the_value_or_the_error(monkeypatch, method):
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"no {method} here")
    monkeypatch.setenv("HAPPYHOME_START_METHOD", method)
    with Background(_square, 7) as job:
        value, pid = job.result()
    assert value == 49 and pid != os.getpid() and job.ran_apart
    with Background(_fails, 3) as job, pytest.raises(ValueError, match="no square of 3") as caught:
        job.result()
    assert any("_fails" in note and "background process" in note for note in caught.value.__notes__)


def test_background_runs_here_when_it_cannot_run_apart(monkeypatch):
    with Background(_square, 5, enabled=False) as job:
        assert job.result() == (25, os.getpid()) and not job.ran_apart
    with Background(_exits_apart, os.getpid()) as job:  # died without an answer: done here instead
        assert job.result() == 42 and not job.ran_apart
    monkeypatch.setenv("HAPPYHOME_START_METHOD", "spawn")
    with Background(lambda: 1 + 1) as job:  # does not pickle for spawn: run here
        assert job.result() == 2 and not job.ran_apart
    # Nothing was frozen for a spawned process, so nothing is thawed: the collector's count of
    # running forks stays balanced, and no object is left out of collections afterwards.
    assert workers._forked == 0 and __import__("gc").get_freeze_count() == 0


def test_leaving_early_ends_the_second_process():
    started = time.monotonic()
    with pytest.raises(KeyError):
        with Background(_sleeps, 60) as job:
            process = job.process
            raise KeyError("the report failed meanwhile")
    assert not process.is_alive() and time.monotonic() - started < 10


# -- the pieces ---------------------------------------------------------------------------------
def test_bootstrap_apart_gives_the_same_intervals():
    rng = __import__("numpy").random.default_rng(5)
    rows = [(f"S{s:03d}", f"A{a}", float(round(rng.uniform(40, 100) * 4) / 4))
            for s in range(60) for a in range(1 + s % 7)]
    totals = pd.DataFrame(rows, columns=["subject", "assessor", "total"])
    for trim in (None, 3):
        one = calibration.bootstrap(totals, n=301, seed=2, level=0.9, trim_min=trim)
        two = calibration.bootstrap(totals, n=301, seed=2, level=0.9, trim_min=trim, apart=True)
        pd.testing.assert_frame_equal(one, two)


def test_csv_fields_are_what_the_csv_module_writes(tmp_path):
    values = ["", "plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", " lead", "'=1", "中文，逗号", 3.5, 7, None]
    row = io.StringIO()
    csv.writer(row, lineterminator="\n").writerow(values)
    assert ",".join(csv_fields(values)) + "\n" == row.getvalue()
    # and a whole detail file: the same bytes as the csv module over the same cells
    frame = pd.DataFrame({name: ["x", "=SUM(A1)", None, "q\"uote"] for name in DETAIL_HEAD})
    frame["得分"] = [1.5, 2.0, float("nan"), 1 / 3]
    frame["原分"] = [float("nan")] * 4
    write_detail_csv(tmp_path / "fast.csv", [frame.iloc[:2], frame.iloc[2:]])
    expected = io.StringIO()
    out = csv.writer(expected, lineterminator="\n")
    out.writerow(DETAIL_HEAD)
    for r in range(4):
        out.writerow(["%.10g" % v if name in ("得分", "原分") and v == v else "" if v is None or v != v else
                      ("'" + v if v.startswith("=") else v) for name, v in ((n, frame[n].iloc[r]) for n in DETAIL_HEAD)])
    assert (tmp_path / "fast.csv").read_bytes() == b"\xef\xbb\xbf" + expected.getvalue().encode("utf-8")


def test_the_scores_csv_is_the_detail_table_written_as_csv(workspace, tmp_path):
    """`write_scores_csv` (from each column's distinct values, a sheet's columns once per sheet) writes
    the bytes the csv module gives for `detail_frame`'s table: trimmed sheets, assessors outside the
    roster (blank names), remarks with formulas, quotes and line breaks, a corrected score."""
    from pipeline.corrections import amend
    from pipeline.ledger import Ledger
    from pipeline.names import inert_csv
    from pipeline.report import detail_frame, sheet_rows, write_scores_csv
    from pipeline.roster import read_roster_for
    from pipeline.scoring import score_round
    from pipeline.systems import load_system

    add_returns(workspace, shares=SHARES, remarks=REMARKS)
    ws, system = Workspace.open(workspace), load_system("community")
    roster = read_roster_for(ws.path("roster"), system)
    amend(ws, system, PERIOD, roster, subject="C002", assessor="E01", item="C03", score=1.5, reason="抄录错误")
    with Ledger.open(ws, reading=True) as ledger:
        scores, fixes = ledger.accepted_scores(PERIOD, "community"), ledger.corrections(PERIOD, "community")
    res = score_round(scores, system, roster, ws.settings, method="trimmed")
    assert (~res.totals["used"]).sum() > 0 and scores["correction"].notna().sum() == 1

    def csv_module(frame: pd.DataFrame) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(DETAIL_HEAD)
        for row in frame.itertuples(index=False):
            writer.writerow(["" if v is None or v != v else "%.10g" % v if isinstance(v, float) else inert_csv(v)
                             for v in row])
        return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")

    expected = csv_module(detail_frame(res, scores, roster, fixes))
    assert sheet_rows(scores, ["period", "assessor", "subject", "file", "sheet", "sha256"]) is not None
    write_scores_csv(tmp_path / "scores.csv", res, scores, roster, fixes)
    assert (tmp_path / "scores.csv").read_bytes() == expected
    text = expected.decode("utf-8-sig")
    assert "'=1+1" in text and '"two\nlines"' in text and "否（截尾去掉）" in text and ",1.5," in text
    # a frame whose sheets disagree (one score moved to another file) is written score by score
    odd = scores.copy()
    odd.loc[3, "file"] = "another.xlsx"
    assert sheet_rows(odd, ["file"]) is None
    write_scores_csv(tmp_path / "odd.csv", res, odd, roster, fixes)
    assert (tmp_path / "odd.csv").read_bytes() == csv_module(detail_frame(res, odd, roster, fixes))
    # and without sheet ids at all
    bare = scores.drop(columns=["sheet_id"])
    write_scores_csv(tmp_path / "bare.csv", res, bare, roster, fixes)
    assert (tmp_path / "bare.csv").read_bytes() == expected


def test_a_round_with_self_assessments_too(round_with_self):
    """自评对比 (self-assessments in) keeps its place after 指标明细 when the summary starts before
    the intervals, and the workbook is the one-process one."""
    from conftest import run

    run(round_with_self, "collect", "--system", "community", "--period", PERIOD)
    serial = _report(round_with_self, 0)
    apart = _report(round_with_self, 1)
    _assert_same(serial, apart)
    book = openpyxl.load_workbook(io.BytesIO(apart["summary-community.xlsx"]), read_only=True)
    assert book.sheetnames[:5] == ["排名", "图表", "指标明细", "自评对比", "评分明细"]
    rows = list(book["自评对比"].iter_rows(min_row=2, values_only=True))
    assert [r[0] for r in rows] == ["C003", "C001"]  # the largest gap first (18, then 8)
