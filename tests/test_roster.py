"""Roster reading: every problem reported together, with sheet and row; nothing generated."""

import pytest

from pipeline.errors import InputError
from pipeline.roster import read_roster, write_roster
from conftest import ASSESSORS, PAIRS, SUBJECTS, run


def test_example_roster_reads_back(tmp_path):
    roster = read_roster(write_roster(tmp_path / "r.xlsx"))
    assert list(roster.subjects) == ["Z01", "Z02", "C001", "C002", "C003"]
    assert roster.assessors["E03"].contact == "wangfang@example.org"
    assert roster.assignments("创新实践区") == {a: ["Z01", "Z02"] for a in ("E01", "E02", "E03")}


def test_empty_assignment_sheet_means_everyone_rates_everything(tmp_path):
    roster = read_roster(write_roster(tmp_path / "r.xlsx", SUBJECTS, ASSESSORS, []))
    assert roster.assignments("创新实践社区") == {a: ["C001", "C002", "C003"] for a in ("E01", "E02", "E03")}


def test_explicit_assignments_are_kept_per_type(tmp_path):
    pairs = [("E01", "C001"), ("E02", "C002"), ("E02", "Z01"), ("E03", "Z02")]
    roster = read_roster(write_roster(tmp_path / "r.xlsx", SUBJECTS, ASSESSORS, pairs))
    assert roster.assignments("创新实践社区") == {"E01": ["C001"], "E02": ["C002"]}
    assert roster.assignments("创新实践区") == {"E02": ["Z01"], "E03": ["Z02"]}


def test_numeric_ids_lose_their_decimal_point(tmp_path):
    import openpyxl

    path = write_roster(tmp_path / "r.xlsx", SUBJECTS, ASSESSORS, [])
    book = openpyxl.load_workbook(path)
    book["评估人"]["A2"] = 7  # an office typed a number, not text
    book.save(path)
    assert "7" in read_roster(path).assessors


def test_all_roster_problems_are_reported_together(tmp_path):
    subjects = SUBJECTS + [("C001", "重复的社区", "创新实践社区", "", "", ""), ("C009", "", "小区", "", "", "")]
    assessors = ASSESSORS + [("E04", "赵六", "", "")]
    pairs = PAIRS + [("E09", "C001"), ("E01", "C404")]
    path = write_roster(tmp_path / "r.xlsx", subjects, assessors, pairs)
    with pytest.raises(InputError) as err:
        read_roster(path)
    text = str(err.value)
    assert "工作表“评估对象”第 7 行：编号 C001 重复（第一次出现在第 4 行）" in text
    assert "工作表“评估对象”第 8 行：名称为空" in text
    assert "工作表“评估对象”第 8 行：类型应为 创新实践区 或 创新实践社区，实际为“小区”" in text
    assert "工作表“分配”第 17 行：评估人编号“E09”不在工作表“评估人”中" in text
    assert "工作表“分配”第 18 行：评估对象编号“C404”不在工作表“评估对象”中" in text
    assert "评估人 E04（赵六）没有分配任何评估对象" in text
    assert "名单有 6 个问题，未生成任何文件" in text


def test_ids_that_differ_only_in_letter_case_are_reported(tmp_path):
    subjects = SUBJECTS + [("c001", "小写编号社区", "创新实践社区", "", "", "")]
    assessors = ASSESSORS + [("e02", "钱七", "", "")]
    path = write_roster(tmp_path / "r.xlsx", subjects, assessors, [])
    with pytest.raises(InputError) as err:
        read_roster(path)
    text = str(err.value)
    assert "工作表“评估对象”第 7 行：编号 c001 与第 4 行的 C001 只有大小写不同" in text
    assert "工作表“评估人”第 5 行：编号 e02 与第 3 行的 E02 只有大小写不同" in text
    assert "名单有 2 个问题" in text


def test_missing_sheet_and_column_are_reported(tmp_path):
    import openpyxl

    path = write_roster(tmp_path / "r.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    book = openpyxl.load_workbook(path)
    del book["评估人"]
    book["评估对象"]["C1"] = "种类"
    book.save(path)
    with pytest.raises(InputError) as err:
        read_roster(path)
    assert "缺少工作表“评估人”" in str(err.value)
    assert "缺少列 类型" in str(err.value)


def test_forms_with_a_bad_roster_generate_nothing(workspace):
    write_roster(workspace / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS + [("E09", "C001")])
    result = run(workspace, "forms", "--system", "community", "--period", "2026-11", expect=3)
    assert "E09" in result.output
    assert not (workspace / "output" / "forms").exists()


def test_init_writes_config_and_roster_and_keeps_existing(tmp_path):
    first = run(tmp_path, "init", str(tmp_path / "w")).output
    assert "happyhome.toml" in first and "roster.xlsx" in first
    toml = (tmp_path / "w" / "happyhome.toml").read_text(encoding="utf-8")
    assert 'method = "mean"' in toml and "# " in toml
    again = run(tmp_path, "init", str(tmp_path / "w")).output
    assert "已保留" in again and "已创建" not in again


def test_init_quotes_paths_with_spaces(tmp_path):
    import shlex

    target = tmp_path / "第 11 期 round"
    out = run(tmp_path, "init", str(target)).output
    assert f"已创建  {shlex.quote(str(target / 'happyhome.toml'))}" in out
    hint = out[out.index("`") + 1:out.rindex("`")]
    assert shlex.split(hint)[:3] == ["happyhome", "-w", str(target)]  # copied into a shell, the path stays whole


def test_released_rows_are_a_record_not_an_assignment(tmp_path):
    """分配's optional 状态 column: 已替换 rows (assign --replace) are kept, not rated; an assessor
    whose rows are all 已替换 is no roster problem, and any other 状态 is one."""
    import openpyxl

    pairs = [("E01", "C001"), ("E02", "C001"), ("E02", "C002"), ("E01", "C002"), ("E03", "C003"), ("E01", "C003")]
    path = write_roster(tmp_path / "r.xlsx", SUBJECTS, ASSESSORS, pairs)
    book = openpyxl.load_workbook(path)
    ws = book["分配"]
    ws["C1"] = "状态"
    ws["C6"] = "已替换"  # E03 C003: E03 released, no other row
    book.save(path)
    roster = read_roster(path)
    assert roster.released == [("E03", "C003")] and ("E03", "C003") not in roster.pairs
    assert roster.assignments("创新实践社区") == {"E01": ["C001", "C002", "C003"], "E02": ["C001", "C002"]}
    ws["C6"] = "停用"
    book.save(path)
    with pytest.raises(InputError) as err:
        read_roster(path)
    assert "工作表“分配”第 6 行：状态应为空或“已替换”，实际为“停用”" in str(err.value)
