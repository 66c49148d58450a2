"""The assessors' workbooks: structure, validation, protection, metadata, filling, print setup."""

from pathlib import Path

import openpyxl
import pytest

from pipeline.config import Workspace
from pipeline.forms import HEADER, META_SHEET, SEAL_ROW, seal, sign
from pipeline.reader import read_workbook
from pipeline.systems import load_system
from conftest import fill_form, run

PERIOD = "2026-11"


def make_forms(workspace: Path, system: str = "community") -> list[Path]:
    run(workspace, "forms", "--system", system, "--period", PERIOD)
    out = workspace / "output" / "forms" / PERIOD / system
    return sorted(out.glob("*.xlsx"))


def subject_sheets(book):
    return [ws for ws in book.worksheets if ws.title not in ("填表说明", "汇总", META_SHEET)]


def test_one_workbook_per_assessor_named_by_period_system_and_assessor(workspace):
    paths = make_forms(workspace)
    assert [p.name for p in paths] == [
        "2026-11_community_E01_张敏.xlsx", "2026-11_community_E02_李强.xlsx", "2026-11_community_E03_王芳.xlsx"]
    book = openpyxl.load_workbook(paths[0])
    assert book.sheetnames[:2] == ["填表说明", "汇总"]
    assert [ws.title for ws in subject_sheets(book)] == ["C001 湖滨街道东坡路社区", "C002 玉林街道黉门街社区", "C003 南湖街道南湖社区"]


def test_subject_sheet_layout_identity_block_and_header(workspace):
    book = openpyxl.load_workbook(make_forms(workspace)[1])
    ws = subject_sheets(book)[0]
    assert (ws["A2"].value, ws["B2"].value, ws["F2"].value, ws["G2"].value) == ("评估对象", "湖滨街道东坡路社区", "对象编号", "C001")
    assert (ws["A3"].value, ws["B3"].value, ws["F3"].value, ws["G3"].value) == ("评估人", "李强", "评估人编号", "E02")
    assert (ws["A4"].value, ws["B4"].value, ws["F4"].value, ws["G4"].value) == ("期次", PERIOD, "指标体系", "community")
    assert tuple(c.value for c in ws[6]) == HEADER
    system = load_system("community")
    rows = list(ws.iter_rows(min_row=7, max_row=25, values_only=True))
    assert [r[0] for r in rows] == list(system.codes)
    assert [r[5] for r in rows] == [i.max for i in system.items]
    assert rows[8][4] == system.by_code["C09"].criterion
    assert ws["A26"].value == "合计" and ws["G26"].value == "=SUM(G7:G25)"
    assert ws.freeze_panes == "A7"


def test_validation_is_decimal_zero_to_max_on_exactly_the_score_cells(workspace):
    book = openpyxl.load_workbook(make_forms(workspace)[0])
    system = load_system("community")
    for ws in subject_sheets(book):
        rules = {}
        for dv in ws.data_validations.dataValidation:
            for cell in str(dv.sqref).split():
                rules[cell] = dv
        # the score cells, and the 回避 dropdown (否/是) in B5
        assert sorted(rules) == sorted(["B5", *(f"G{r}" for r in range(7, 26))])
        assert (rules["B5"].type, rules["B5"].formula1) == ("list", '"否,是"')
        assert (ws["A5"].value, ws["B5"].value, ws["C5"].value) == ("回避", "否", "回避原因")
        for n, item in enumerate(system.items):
            dv = rules[f"G{7 + n}"]
            # "between" is the default operator, which xlsxwriter leaves out of the file
            assert (dv.type, dv.operator or "between") == ("decimal", "between")
            assert (float(dv.formula1), float(dv.formula2)) == (0, item.max)
            assert dv.errorStyle in (None, "stop") and dv.showErrorMessage
            assert "得分" in dv.errorTitle and str(int(item.max)) in dv.error
            assert item.code in dv.promptTitle and "满分" in dv.prompt


def test_protection_leaves_exactly_score_and_remark_unlocked(workspace):
    book = openpyxl.load_workbook(make_forms(workspace)[0])
    for ws in subject_sheets(book):
        assert ws.protection.sheet and not ws.protection.password
        unlocked = {c.coordinate for row in ws.iter_rows() for c in row if c.protection.locked is False}
        # 得分 and 备注, and the 回避 cell B5 with its 回避原因 D5:E5
        assert unlocked == {f"{col}{r}" for col in "GH" for r in range(7, 26)} | {"B5", "D5", "E5"}


def test_metadata_sheet_is_very_hidden_and_signed(workspace):
    book = openpyxl.load_workbook(make_forms(workspace)[2])
    meta = book[META_SHEET]
    assert meta.sheet_state == "veryHidden"
    rows = [[c for c in row if c is not None] for row in meta.iter_rows(values_only=True)]
    values = {row[0]: row[1] for row in rows if len(row) >= 2}
    system = load_system("community")
    assert values["system"] == "community" and values["checksum"] == system.checksum
    assert values["period"] == PERIOD and values["assessor"] == "E03"
    assert [row[1] for row in rows if row[0] == "subject"] == ["C001", "C002", "C003"]
    assert rows[-2] == ["signature", sign(rows[:-2])]
    key = Workspace.open(workspace).path("key").read_bytes()
    assert rows[-1] == [SEAL_ROW, seal(rows[:-2], key)]  # the office's HMAC over the same rows


def test_summary_sheet_has_live_formulas(workspace):
    book = openpyxl.load_workbook(make_forms(workspace)[0])
    ws = book["汇总"]
    assert [c.value for c in ws[1]] == ["编号", "名称", "已填项数", "指标项数", "合计", "满分", "状态"]
    assert ws["C2"].value == "=COUNT('C001 湖滨街道东坡路社区'!$G$7:$G$25)"
    assert ws["E2"].value == "=SUM('C001 湖滨街道东坡路社区'!$G$7:$G$25)"
    assert ws["G2"].value.startswith("=IF(C2=D2")


def test_print_setup(workspace):
    book = openpyxl.load_workbook(make_forms(workspace)[0])
    ws = subject_sheets(book)[0]
    assert ws.page_setup.orientation == "landscape" and ws.page_setup.paperSize == 9
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth in (None, 1) and ws.page_setup.fitToHeight == 0
    assert ws.print_title_rows == "$6:$6"
    long_row = 7 + [i.code for i in load_system("community").items].index("C09")
    assert ws.row_dimensions[long_row].height > ws.row_dimensions[7 + 9].height  # taller for longer text


def test_a_form_filled_with_openpyxl_reads_back_the_typed_scores(workspace, tmp_path):
    path = make_forms(workspace, "zone")[0]
    typed = {"Z01": {"Z01": 6.5, "Z05": 7, "Z13": 0}, "Z02": {"Z02": 3.25}}
    filled = fill_form(path, typed, {"Z01": {"Z05": "材料齐全"}}, save_as=tmp_path / "filled.xlsx")
    book = read_workbook(filled)
    for sheet in book.sheets:
        if sheet.name.startswith(("Z01", "Z02")):
            code = sheet.rows[1][6]
            got = {row[0]: row[6] for row in sheet.rows[6:19] if row[6] != ""}
            assert got == typed[code]
    z01 = next(s for s in book.sheets if s.name.startswith("Z01"))
    assert z01.rows[10][7] == "材料齐全"


def test_forms_refuse_to_replace_forms_that_went_out_unless_forced(workspace):
    paths = make_forms(workspace)
    stamp = paths[0].stat().st_mtime_ns
    again = run(workspace, "forms", "--system", "community", "--period", PERIOD, expect=2)
    assert f"本轮已有 {len(paths)} 份评分表，可能已经发出；如需覆盖，请加 --force" in again.output and paths[0].name in again.output
    assert paths[0].stat().st_mtime_ns == stamp
    run(workspace, "forms", "--system", "community", "--period", PERIOD, "--force")


def test_bad_period_is_a_usage_error(workspace):
    result = run(workspace, "forms", "--system", "community", "--period", "2026-13", expect=2)
    assert "YYYY-MM" in result.output


def test_hostile_roster_names_make_safe_files(workspace):
    from pipeline.roster import write_roster
    from conftest import SUBJECTS

    write_roster(workspace / "input" / "roster.xlsx", SUBJECTS, [("E1", "../../逃逸/名:字" + "长" * 300, "", "")], [])
    run(workspace, "forms", "--system", "zone", "--period", PERIOD)
    out = workspace / "output" / "forms" / PERIOD / "zone"
    files = list(out.iterdir())
    assert len(files) == 1 and files[0].name.startswith("2026-11_zone_E1_")
    assert not (workspace / "逃逸").exists() and not (workspace.parent / "逃逸").exists()


@pytest.mark.libreoffice
def test_form_renders_to_pdf_with_libreoffice(workspace, tmp_path):
    from conftest import soffice_convert

    pdf = soffice_convert(make_forms(workspace)[0], "pdf", tmp_path / "pdf")
    assert pdf.exists() and pdf.stat().st_size > 10_000


@pytest.mark.libreoffice
def test_an_empty_form_shows_its_status_in_libreoffice(workspace, tmp_path):
    """The 合计 row and 汇总 say how many items are left, as opened (and re-saved) by LibreOffice."""
    from conftest import soffice_convert

    form = make_forms(workspace)[0]
    n = len(load_system("community").items)
    for path in (form, soffice_convert(form, "xlsx", tmp_path / "lo")):
        book = openpyxl.load_workbook(path, data_only=True)  # the values shown, not the formulas
        sheet = subject_sheets(book)[0]
        total_row = next(r for r in sheet.iter_rows() if r[0].value == "合计")
        assert total_row[HEADER.index("备注")].value == f"还差{n}项未填", path
        assert book["汇总"]["G2"].value == f"还差{n}项", path
