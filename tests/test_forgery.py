"""Forms no one can forge: the office key, the HMAC in every form's metadata, and what `collect`
makes of a form whose HMAC does not verify, of one made before the key, and of one whose
metadata sheet is gone."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import openpyxl
import pytest

from conftest import ASSESSORS, PAIRS, SUBJECTS, run
from pipeline.collect import Context
from pipeline.config import Workspace
from pipeline.forms import META_SHEET, SEAL_ROW, sign
from pipeline.messages import problem
from pipeline.officekey import fingerprint
from pipeline.roster import read_roster, write_roster
from pipeline.systems import load_system
from test_collect import PERIOD, answers, collect, fill_form, make_forms, problems, report, returned

FORGED = problem("forged_form").message
UNSIGNED = problem("unsigned_form").message


def key_of(workspace: Path) -> bytes:
    return (workspace / "ledger" / "office.key").read_bytes()


def meta_rows(book) -> list[list[str]]:
    return [[str(c) for c in row if c is not None] for row in book[META_SHEET].iter_rows(values_only=True)]


def rewrite_meta(path: Path, edit, *, keep_seal: bool = True) -> Path:
    """Edit the metadata rows by hand and recompute the public checksum, as a forger would; the
    office's seal row is kept as it was (or dropped: a form made before the key)."""
    book = openpyxl.load_workbook(path)
    rows = meta_rows(book)
    seal = [r for r in rows if r[0] == SEAL_ROW]
    rows = edit([r for r in rows if r[0] not in ("signature", SEAL_ROW)])
    sheet = book[META_SHEET]
    sheet.delete_rows(1, sheet.max_row)
    for r, row in enumerate(rows + [["signature", sign(rows)]] + (seal if keep_seal else []), start=1):
        for c, value in enumerate(row, start=1):
            sheet.cell(r, c).value = value
    book.save(path)
    return path


def filled(workspace: Path, assessor: str, name: str) -> Path:
    forms = make_forms(workspace) if not (workspace / "output" / "forms" / PERIOD).exists() else {
        p.name.split("_")[2]: p for p in (workspace / "output" / "forms" / PERIOD / "community").glob("*.xlsx")}
    return fill_form(forms[assessor], answers(assessor), save_as=returned(workspace) / name)


def files_sheet(workspace: Path) -> dict[str, dict]:
    return {r["文件名"]: r for r in report(workspace)["文件"]}


def codes(workspace: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, _, _, _, code in problems(workspace):
        out.setdefault(name, set()).add(code)
    return out


# -- the key ------------------------------------------------------------------------------------
def test_init_creates_a_32_byte_key_readable_by_its_owner_only_and_never_replaces_it(tmp_path):
    root = tmp_path / "ws"
    result = run(root, "init", str(root))
    key = root / "ledger" / "office.key"
    assert len(key.read_bytes()) == 32
    if os.name == "posix":
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert str(key) in result.output
    first = key.read_bytes()
    again = run(root, "init", str(root))
    assert key.read_bytes() == first
    assert "office.key" in again.output  # listed as kept
    assert first.hex() not in result.output + again.output
    assert first.hex() not in (root / "happyhome.toml").read_text(encoding="utf-8")  # offices mail that file


def test_key_command_shows_the_path_and_fingerprint_never_the_key(workspace):
    key = key_of(workspace)
    result = run(workspace, "key")
    assert str(workspace / "ledger" / "office.key") in result.output
    assert fingerprint(key) in result.output
    assert key.hex() not in result.output and key.hex()[:16] not in result.output.replace(fingerprint(key), "")
    assert "备份" in result.output and "其他办公室" in result.output
    (workspace / "ledger" / "office.key").unlink()
    assert "尚未创建" in run(workspace, "key").output


def test_a_workspace_made_before_the_key_gains_one_at_its_next_forms(workspace):
    (workspace / "ledger" / "office.key").unlink()
    result = run(workspace, "forms", "--system", "community", "--period", PERIOD)
    assert "已创建办公室密钥" in result.output
    key = key_of(workspace)
    assert fingerprint(key) in result.output and key.hex() not in result.output
    assert "已创建办公室密钥" not in run(workspace, "forms", "--system", "community", "--period", PERIOD,
                                          "--force").output


def test_the_key_travels_to_the_workers_but_never_shows(workspace):
    ws = Workspace.open(workspace)
    ctx = Context.build(ws, load_system("community"), PERIOD, read_roster(ws.path("roster")))
    assert ctx.office_key == key_of(workspace)
    assert pickle.loads(pickle.dumps(ctx)).office_key == ctx.office_key
    assert ctx.office_key.hex() not in repr(ctx) and repr(ctx.office_key) not in repr(ctx)


# -- forgery ------------------------------------------------------------------------------------
def test_a_form_generated_by_another_workspace_is_refused(workspace, tmp_path):
    other = tmp_path / "other"
    run(other, "init", str(other))
    write_roster(other / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)  # the same roster, another key
    theirs = make_forms(other)["E01"]
    fill_form(theirs, answers("E01"), save_as=returned(workspace) / "from_elsewhere.xlsx")
    filled(workspace, "E02", "ours.xlsx")
    result = collect(workspace)
    assert f"from_elsewhere.xlsx：{FORGED}" in result.output
    assert codes(workspace) == {"from_elsewhere.xlsx": {"forged_form"}}
    rows = files_sheet(workspace)
    assert rows["from_elsewhere.xlsx"]["状态"] == "已拒收" and rows["from_elsewhere.xlsx"]["说明"] == FORGED
    assert rows["from_elsewhere.xlsx"]["验证"] == "未通过" and rows["ours.xlsx"]["验证"] == "已验证"
    assert FORGED in {r["问题"] for r in report(workspace)["问题"]}
    collect(workspace, "--strict", expect=0)  # judged once: an earlier run's rejection is not news


def test_metadata_edited_by_hand_with_the_checksum_recomputed_is_refused(workspace):
    """E01 passes their form off as E02's: the checksum fits, the office's seal does not."""
    path = filled(workspace, "E01", "passed_off.xlsx")
    rewrite_meta(path, lambda rows: [["assessor", "E02"] if r[0] == "assessor" else r for r in rows])
    collect(workspace, "--strict", expect=6)
    assert codes(workspace) == {"passed_off.xlsx": {"forged_form"}}
    assert files_sheet(workspace)["passed_off.xlsx"]["说明"] == FORGED


@pytest.mark.parametrize("edit", [
    # every form carries ["kind", "self"|"expert"] after `stage`: a kind row added twice or changed
    lambda rows: [*rows[:7], ["kind", "expert"], *rows[7:]],
    lambda rows: [["kind", "self"] if r[0] == "kind" else r for r in rows] if any(r[0] == "kind" for r in rows)
    else [["stage", "评估"] if r[0] == "stage" else r for r in rows],
    lambda rows: [["period", "2026-10"] if r[0] == "period" else r for r in rows],
    lambda rows: [r for r in rows if not (r[0] == "subject" and r[1] == "C003")],  # the subject list
], ids=["kind_added", "kind_or_stage_changed", "period", "subject_dropped"])
def test_any_identifying_row_changed_is_refused_not_judged_on_what_it_claims(workspace, edit):
    path = filled(workspace, "E03", "edited.xlsx")
    rewrite_meta(path, edit)
    collect(workspace)
    assert codes(workspace) == {"edited.xlsx": {"forged_form"}}


@pytest.mark.parametrize("tag", ["0" * 64, "", "签名"])
def test_a_seal_made_up_or_emptied_is_refused(workspace, tag):
    path = filled(workspace, "E02", "made_up.xlsx")
    book = openpyxl.load_workbook(path)
    sheet = book[META_SHEET]
    last = sheet.max_row
    assert sheet.cell(last, 1).value == SEAL_ROW
    sheet.cell(last, 2).value = tag or None
    book.save(path)
    collect(workspace)
    assert codes(workspace) == {"made_up.xlsx": {"forged_form"}}


# -- unsigned and unverified forms ----------------------------------------------------------------
def test_a_legacy_unsigned_form_is_collected_with_a_warning(workspace):
    path = filled(workspace, "E01", "legacy.xlsx")
    rewrite_meta(path, lambda rows: rows, keep_seal=False)  # as written before the office key
    filled(workspace, "E02", "new.xlsx")
    collect(workspace, "--strict", expect=0)
    assert codes(workspace) == {"legacy.xlsx": {"unsigned_form"}}
    rows = files_sheet(workspace)
    assert rows["legacy.xlsx"]["状态"] == "已接收" and rows["legacy.xlsx"]["接收对象数"] == 3
    assert rows["legacy.xlsx"]["验证"] == "未签名" and rows["new.xlsx"]["验证"] == "已验证"
    found = {r["问题"]: r for r in report(workspace)["问题"]}
    assert found[UNSIGNED]["级别"] == "提示" and found[UNSIGNED]["状态"] == "无需处理"


def test_an_office_that_has_sent_only_sealed_forms_can_refuse_unsigned_ones(workspace):
    """Anyone can strip the seal row and recompute the checksum: with collect.refuse_unsigned
    such a form is refused too."""
    path = filled(workspace, "E01", "stripped.xlsx")
    rewrite_meta(path, lambda rows: [["assessor", "E02"] if r[0] == "assessor" else r for r in rows], keep_seal=False)
    config = workspace / "happyhome.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("refuse_unsigned = false", "refuse_unsigned = true"),
                      encoding="utf-8")
    collect(workspace, "--strict", expect=6)
    assert codes(workspace) == {"stripped.xlsx": {"unsigned_refused"}}
    row = files_sheet(workspace)["stripped.xlsx"]
    assert row["状态"] == "已拒收" and row["验证"] == "未签名" and row["说明"] == problem("unsigned_refused").message


def test_without_a_key_every_form_is_collected_with_a_warning(workspace):
    filled(workspace, "E01", "a.xlsx")
    (workspace / "ledger" / "office.key").unlink()
    result = collect(workspace, "--strict", expect=0)
    assert "本工作区没有办公室密钥" in result.output
    assert codes(workspace) == {"a.xlsx": {"no_office_key"}}
    assert files_sheet(workspace)["a.xlsx"]["验证"] == "未验证"


def test_a_form_without_its_metadata_sheet_is_collected_and_marked_unverified(workspace):
    path = filled(workspace, "E01", "copied.xlsx")
    book = openpyxl.load_workbook(path)
    del book[META_SHEET]  # the sheets copied into a new workbook
    book.save(path)
    filled(workspace, "E02", "e02.xlsx")
    filled(workspace, "E03", "e03.xlsx")
    collect(workspace, "--strict", expect=0)
    rows = files_sheet(workspace)
    assert rows["copied.xlsx"]["状态"] == "已接收" and rows["copied.xlsx"]["验证"] == "未验证"
    assert list(report(workspace)["文件"][0])[-1] == "验证"
    run(workspace, "report", "--system", "community", "--period", PERIOD)
    sheet = openpyxl.load_workbook(workspace / "output" / PERIOD / "summary-community.xlsx")["评估人"]
    table = list(sheet.iter_rows(values_only=True))
    head = list(table[0])
    assert head[-2:] == ["表格验证", "声明回避"]  # 声明回避 (declared conflicts) was added after it
    check = {row[0]: row[head.index("表格验证")] for row in table[1:4]}
    assert check == {"E01": "未验证 1 份", "E02": "已验证", "E03": "已验证"}


# -- the key stays out of everything ----------------------------------------------------------------
def test_the_key_appears_in_no_output_archive_or_ledger(workspace, tmp_path):
    for assessor in ("E01", "E02", "E03"):
        filled(workspace, assessor, f"{assessor}.xlsx")
    collect(workspace)
    run(workspace, "report", "--system", "community", "--period", PERIOD)
    run(workspace, "status", "--system", "community", "--period", PERIOD, "--letters", str(tmp_path / "letters"))
    key = key_of(workspace)
    needles = [key, key.hex().encode(), key.hex().upper().encode()]
    searched = 0
    for path in [*workspace.rglob("*"), *(tmp_path / "letters").rglob("*")]:
        if path.is_file() and path.name != "office.key":
            data = path.read_bytes()
            assert not any(n in data for n in needles), path
            searched += 1
    assert searched > 10
    assert any((workspace / "ledger" / "archive").rglob("*.xlsx"))
    assert not any(p.name == "office.key" for p in (workspace / "ledger" / "archive").rglob("*"))


def test_a_self_form_dressed_as_an_expert_form_is_refused(workspace):
    run(workspace, "forms", "--system", "community", "--period", PERIOD, "--kind", "self")
    folder = workspace / "output" / "forms" / PERIOD / "community" / "自评"
    form = sorted(folder.glob("*.xlsx"))[0]
    path = fill_form(form, {"C001": {item.code: item.max for item in load_system("community").items}}, save_as=returned(workspace) / "self.xlsx")
    # the candidate turns its own form into "an expert's": kind expert, an assessor of the roster
    rewrite_meta(path, lambda rows: [["kind", "expert"] if r[0] == "kind" else ["assessor", "E01"] if r[0] == "assessor"
                                     else r for r in rows])
    collect(workspace)
    assert codes(workspace) == {"self.xlsx": {"forged_form"}}
