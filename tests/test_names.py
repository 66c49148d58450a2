"""Names from the roster become safe file and sheet names."""

import pytest

from pipeline.forms import form_filename, subject_sheet_names
from pipeline.names import inert_csv, safe_filename, safe_sheet_name
from pipeline.roster import Assessor, Subject
from pipeline.systems import load_system

HOSTILE = ["../../etc/passwd", "a/b\\c:d", "con", "x\x00y\x1fz", "名" * 300, "  ..  ", "*?<>|\"", "History"]


@pytest.mark.parametrize("text", HOSTILE)
def test_safe_filename(text):
    name = safe_filename(text)
    assert name and "/" not in name and "\\" not in name and ":" not in name
    assert ".." not in name and not any(ord(ch) < 32 for ch in name)
    assert len(name.encode("utf-8")) <= 120
    assert name.lower() != "con"


@pytest.mark.parametrize("text", HOSTILE + ["[x]", "'quoted'"])
def test_safe_sheet_name(text):
    name = safe_sheet_name(text)
    assert 0 < len(name) <= 31
    assert not set(name) & set("[]:*?/\\")
    assert not name.startswith("'") and name.lower() != "history"


def test_sheet_names_stay_unique():
    taken: set[str] = set()
    names = [safe_sheet_name("同名" * 20, taken) for _ in range(3)]
    assert len(set(names)) == 3 and all(len(n) <= 31 for n in names)


def test_form_filename_from_a_hostile_name_stays_in_its_folder(tmp_path):
    system = load_system("community")
    name = form_filename("2026-11", system, Assessor("../E1", "../../张/三:\x07" + "长" * 300))
    path = (tmp_path / name).resolve()
    assert path.parent == tmp_path.resolve()
    assert name.startswith("2026-11_community_") and name.endswith(".xlsx")


def test_subject_sheet_names_use_code_and_name_where_they_fit():
    subjects = (Subject("C001", "东坡路社区", "创新实践社区"), Subject("C002", "很长" * 20, "创新实践社区"),
                Subject("C003", "a/b[c]", "创新实践社区"))
    assert subject_sheet_names(subjects) == ["C001 东坡路社区", "C002", "C003 a_b_c_"]


def test_inert_csv():
    assert inert_csv("=1+1") == "'=1+1" and inert_csv("@x") == "'@x" and inert_csv("正常") == "正常"
    assert inert_csv(-3.5) == -3.5
