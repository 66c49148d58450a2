"""验收 rounds: 通过 / 整改后复验 / 不通过 / 未评分 from the official total, the items to rectify with
the assessors' remarks, the 验收结果 sheet, 整改清单, 整改通知 (.docx) and the digest's part."""

from __future__ import annotations

import math
import shutil
import subprocess
from datetime import date

import docx
import openpyxl
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from conftest import ASSESSORS, fill_form, run, soffice_convert
from pipeline import i18n
from pipeline.acceptance import (CONDITIONAL, FAIL, PASS, RECTIFY_HEAD, RESULT_HEAD, UNRATED, AcceptanceRules, Notice,
                                 acceptance_table, notice_path, notice_paragraphs, rectification_items,
                                 verdict, write_notice)
from pipeline.config import Workspace, defaults
from pipeline.errors import ConfigError
from pipeline.notices import chinese_date
from pipeline.roster import read_roster_for, write_roster
from pipeline.scoring import score_round
from pipeline.systems import load_system

SYSTEM = load_system("community")
RULES = AcceptanceRules()  # pass 80, conditional 60, item share 0.6, 30 days, 2 decimals
PERIOD, KEY = "2027-03", "2027-03-验收"


# -- bands --------------------------------------------------------------------------------------
@pytest.mark.parametrize("total, result", [
    (80, PASS), (79.995, PASS), (79.994, CONDITIONAL), (100, PASS), (60, CONDITIONAL), (59.995, CONDITIONAL),
    (59.99, FAIL), (0, FAIL), (math.nan, UNRATED), (None, UNRATED),
])
def test_bands_on_the_total_rounded_half_up_to_the_ranking_precision(total, result):
    assert verdict(total, RULES)[0] == result


def test_reasons_say_the_total_and_the_lines():
    assert verdict(78.5, RULES) == (CONDITIONAL, "总分 78.50，低于通过线 80、不低于复验线 60：整改后复验")
    assert verdict(79.995, RULES) == (PASS, "总分 80.00，不低于通过线 80：通过")
    assert verdict(59.99, RULES) == (FAIL, "总分 59.99，低于复验线 60：不通过")
    assert verdict(math.nan, RULES) == (UNRATED, "未收到有效评分，未判定验收结果")
    whole = AcceptanceRules(pass_line=85, conditional=70.5, decimals=0)
    assert verdict(84.5, whole) == (PASS, "总分 85，不低于通过线 85：通过")
    assert verdict(70.49, whole) == (FAIL, "总分 70，低于复验线 70.5：不通过")


def test_bands_at_whole_points_when_rank_decimals_is_zero():
    whole = AcceptanceRules(decimals=0)
    assert verdict(79.5, whole)[0] == PASS and verdict(79.49, whole)[0] == CONDITIONAL
    assert verdict(59.5, whole)[0] == CONDITIONAL and verdict(59.49, whole)[0] == FAIL


@pytest.mark.parametrize("settings, message", [
    ({"pass": 60, "conditional": 70}, "'acceptance.conditional' (70) must not exceed 'acceptance.pass' (60)"),
    ({"item_share": 0}, "'acceptance.item_share' must be above 0 and at most 1"),
    ({"item_share": 1.2}, "'acceptance.item_share' must be above 0 and at most 1"),
    ({"rectify_days": 0}, "'acceptance.rectify_days' must be a whole number of days"),
])
def test_settings_are_validated(tmp_path, settings, message, request):
    i18n.set_language("en")  # the messages' English text (the catalogue's keys)
    request.addfinalizer(i18n.set_language)
    lines = "\n".join(f"{k} = {v}" for k, v in settings.items())
    (tmp_path / "happyhome.toml").write_text(f"[acceptance]\n{lines}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Workspace.open(tmp_path)
    assert defaults()["acceptance"] == {"pass": 80, "conditional": 60, "item_share": 0.6, "rectify_days": 30}


# -- items to rectify, by hand ------------------------------------------------------------------
COMMUNITIES = [
    ("C101", "甲社区", "创新实践社区", "浙江省", "杭州市", "上城区"),
    ("C102", "乙社区", "创新实践社区", "浙江省", "杭州市", "上城区"),
    ("C103", "丙社区", "创新实践社区", "四川省", "成都市", "武侯区"),
    ("C104", "丁社区", "创新实践社区", "四川省", "成都市", "武侯区"),
    ("C105", "戊社区", "创新实践社区", "湖北省", "武汉市", "洪山区"),
]


def at_share(share: float) -> dict[str, float]:
    return {i.code: i.max * share for i in SYSTEM.items}


def hand_scores() -> pd.DataFrame:
    """C101 full marks; C102 70% but C01 and C19 below 60%, with remarks; C103 50% everywhere;
    C104 exactly 60% and 70% (no item below the share, total 68.6); C105 never rated."""
    rows = []
    c102 = {"E01": {**at_share(0.7), "C01": 2.0, "C10": 3.0, "C19": 5.0},
            "E02": {**at_share(0.7), "C01": 2.5, "C10": 3.0, "C19": 5.5}}
    remarks = {("E01", "C01"): "台账不全", ("E02", "C01"): "活动记录偏少", ("E02", "C19"): "  ",
               ("E01", "C19"): "影响有限", ("E02", "C05"): "文化活动较好"}
    for a in ("E01", "E02"):
        for code, score in at_share(1.0).items():
            rows.append(("C101", a, code, score, ""))
        for code, score in c102[a].items():
            rows.append(("C102", a, code, score, remarks.get((a, code), "")))
        for code, score in at_share(0.5).items():
            rows.append(("C103", a, code, score, "需加强" if a == "E02" and code == "C02" else ""))
        for code, score in {**at_share(0.7), "C01": 2.4, "C17": 6.0}.items():  # 0.6 × 4, 0.6 × 10: not below
            rows.append(("C104", a, code, score, ""))
    return pd.DataFrame(rows, columns=["subject", "assessor", "item", "score", "remark"])


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    roster_path = tmp_path_factory.mktemp("roster") / "roster.xlsx"
    write_roster(roster_path, COMMUNITIES, ASSESSORS[:2], [(a, s[0]) for a, *_ in ASSESSORS[:2] for s in COMMUNITIES])
    roster = read_roster_for(roster_path, SYSTEM)
    scores = hand_scores()
    res = score_round(scores, SYSTEM, roster, defaults(), intervals=False)
    table = acceptance_table(res, RULES)
    items = rectification_items(res, table, scores, {"E01": "张敏", "E02": "李强"}, RULES)
    return res, table, items


def test_results_per_subject(judged):
    _, table, _ = judged
    got = dict(zip(table["subject"], zip(table["total"], table["result"])))
    # C102: 70% of every item (70.00) less C01 (4 × 0.7 = 2.8 -> 2.25), C10 (3.5 -> 3.0) and C19 (6.3 -> 5.25)
    assert got["C102"] == (pytest.approx(70 - 0.55 - 0.5 - 1.05), CONDITIONAL)
    assert got["C101"] == (100.0, PASS) and got["C103"] == (50.0, FAIL)
    assert got["C104"] == (pytest.approx(70 - 0.4 - 1), CONDITIONAL)  # C01 2.8 -> 2.4, C17 7 -> 6
    assert math.isnan(got["C105"][0]) and got["C105"][1] == UNRATED
    assert list(table["subject"]) == ["C101", "C104", "C102", "C103", "C105"]  # rank order, unrated last
    assert table.loc[table["subject"] == "C102", "reason"].item() == "总分 67.90，低于通过线 80、不低于复验线 60：整改后复验"


def test_items_below_the_share_with_the_remarks_joined(judged):
    _, _, items = judged
    c102 = items[items["subject"] == "C102"]
    # C01 2.25 < 2.4 and C19 5.25 < 5.4 are below 60%; C10 3.0 is exactly 60% of 5 and is not
    assert list(c102["item"]) == ["C01", "C19"]
    assert list(c102["score"]) == [2.25, 5.25] and list(c102["max"]) == [4.0, 9.0]
    assert list(c102["share"]) == [0.563, 0.583]  # 2.25 / 4 = 0.5625, half up
    assert list(c102["remarks"]) == ["张敏：台账不全；李强：活动记录偏少", "张敏：影响有限"]  # a blank remark is no remark
    assert set(c102["result"]) == {CONDITIONAL} and list(c102["level3"]) == ["党建引领", "社会影响"]
    c103 = items[items["subject"] == "C103"]
    assert list(c103["item"]) == list(SYSTEM.codes)  # 50% everywhere: every item
    assert c103.loc[c103["item"] == "C02", "remarks"].item() == "李强：需加强"
    # a subject that did not pass with no item below the share, and an unrated one, are still listed
    [c104] = items[items["subject"] == "C104"].to_dict("records")
    assert c104["item"] == "" and c104["note"].startswith("各项得分均不低于满分的 60%")
    [c105] = items[items["subject"] == "C105"].to_dict("records")
    assert c105["result"] == UNRATED and "未判定验收结果" in c105["note"]
    assert "C101" not in set(items["subject"])  # 通过: nothing to rectify


def test_notice_markup():
    text = "【标题】关于甲社区验收整改的通知\n\n【抬头】甲社区：\n正文一\n【整改事项表】\n特此通知。\n【右】项目办\n【右】2027年3月31日\n"
    assert notice_paragraphs(text) == [("title", "关于甲社区验收整改的通知"), ("to", "甲社区："), ("body", "正文一"),
                                       ("table", ""), ("body", "特此通知。"), ("right", "项目办"),
                                       ("right", "2027年3月31日")]
    # an office that deleted the table's line still gets the table, after the body
    assert notice_paragraphs("【标题】T\n正文\n【右】X")[2] == ("table", "")
    assert chinese_date(date(2027, 4, 5)) == "2027年4月5日"


def test_a_hostile_name_makes_a_safe_file_and_a_readable_notice(tmp_path):
    path = notice_path(tmp_path / "整改通知", "C1", '甲/乙:丙*社区?')
    assert path.name == "C1-甲_乙_丙_社区_.docx" and path.parent == tmp_path / "整改通知"
    notice = Notice("C1", "甲\x01社区", FAIL, 50.0,
                    [{"item": "C01", "label": "C01 党建引领", "score": 2.0, "max": 4.0, "remarks": "张敏：<b>差</b>\x0b"}],
                    notice_paragraphs("【标题】关于甲\x01社区验收整改的通知\n正文\n【整改事项表】\n【右】2027年3月1日"))
    write_notice(path, notice)
    doc = docx.Document(path)
    assert doc.paragraphs[0].text == "关于甲社区验收整改的通知"
    assert [c.text for c in doc.tables[0].rows[1].cells] == ["1", "C01 党建引领", "2", "4", "张敏：<b>差</b>"]


# -- the whole round through the CLI --------------------------------------------------------------
CLI_COMMUNITIES = ["C001", "C002", "C003"]


def cli_scores(assessor: str) -> dict[str, dict[str, float]]:
    """C001 full marks (通过); C002 70% with C01 and C17 at 50% (69.5, 整改后复验); C003 50% (不通过)."""
    seventy = {i.code: math.floor(i.max * 0.75 * 2) / 2 if i.max != 5 else 3.5 for i in SYSTEM.items}
    return {"C001": {i.code: i.max for i in SYSTEM.items},
            "C002": {**seventy, "C01": 2.0, "C17": 5.0},
            "C003": {i.code: i.max / 2 for i in SYSTEM.items}}


CLI_REMARKS = {"E01": {"C002": {"C01": "台账不全", "C17": "-创新不足，缺少案例"}}, "E03": {"C002": {"C01": "制度未落实"}}}


@pytest.fixture(scope="module")
def acceptance_round(tmp_path_factory):
    from conftest import SUBJECTS, PAIRS

    root = tmp_path_factory.mktemp("acc") / "ws"
    run(root, "init", str(root))
    write_roster(root / "input" / "roster.xlsx", SUBJECTS, ASSESSORS, PAIRS)
    config = root / "happyhome.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('contact = ""', 'contact = "项目办公室 010-6512 3456"', 1),
                      encoding="utf-8")
    run(root, "forms", "--system", "community", "--period", PERIOD, "--stage", "验收")
    returned = root / "input" / "returned" / KEY
    returned.mkdir(parents=True)
    for form in sorted((root / "output" / "forms" / KEY / "community").glob("*.xlsx")):
        assessor = form.name.split("_")[2]
        fill_form(form, cli_scores(assessor), CLI_REMARKS.get(assessor), save_as=returned / form.name)
    run(root, "collect", "--system", "community", "--period", PERIOD, "--stage", "验收")
    out = run(root, "report", "--system", "community", "--period", PERIOD, "--stage", "acceptance")
    return root, out.output


def test_the_round_writes_its_outputs_in_its_folder(acceptance_round):
    root, output = acceptance_round
    folder = root / "output" / KEY
    assert sorted(p.name for p in (folder / "整改通知").iterdir()) == ["C002-玉林街道黉门街社区.docx",
                                                                   "C003-南湖街道南湖社区.docx"]
    assert (folder / "整改清单-community.xlsx").is_file()
    assert not (root / "output" / PERIOD).exists()
    text = " ".join(output.split())
    assert "通过 1，整改后复验 1，不通过 1" in text  # the counts, whatever the terminal's language
    assert "整改清单-community.xlsx" in output.replace("\n", "")


def test_the_result_sheet(acceptance_round):
    root, _ = acceptance_round
    book = openpyxl.load_workbook(root / "output" / KEY / "summary-community.xlsx")
    assert book.sheetnames[:2] == ["排名", "验收结果"]
    sheet = book["验收结果"]
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == RESULT_HEAD == ["排名", "编号", "名称", "省份", "城市", "区县", "总分", "结果", "说明"]
    assert [r[:8] for r in rows[1:4]] == [
        (1, "C001", "湖滨街道东坡路社区", "浙江省", "杭州市", "上城区", 100, PASS),
        (2, "C002", "玉林街道黉门街社区", "四川省", "成都市", "武侯区", 69.5, CONDITIONAL),
        (3, "C003", "南湖街道南湖社区", "湖北省", "武汉市", "洪山区", 50, FAIL),
    ]
    assert rows[2][8] == "总分 69.50，低于通过线 80、不低于复验线 60：整改后复验"
    assert len(rows) == 4  # one row per subject, nothing under the table: it is read as data
    assert sheet.oddHeader.center.text.startswith("总分四舍五入保留 2 位小数后判定：不低于 80 分为通过，不低于 60 分为整改后复验")
    assert sheet.freeze_panes == "D2" and sheet.auto_filter.ref == "A1:I4"
    assert sheet["G2"].number_format == "0.00" and sheet.page_setup.orientation == "landscape"


def test_the_rectification_list(acceptance_round):
    root, _ = acceptance_round
    book = openpyxl.load_workbook(root / "output" / KEY / "整改清单-community.xlsx")
    sheet = book["整改清单"]
    rows = [r for r in sheet.iter_rows(values_only=True)]
    assert list(rows[0]) == RECTIFY_HEAD
    listed = [r for r in rows[1:] if r[0] in CLI_COMMUNITIES]
    c002 = [r for r in listed if r[0] == "C002"]
    assert [(r[3], r[7], r[8], r[10]) for r in c002] == [
        ("C01", 2, 4, "张敏：台账不全；王芳：制度未落实"),
        ("C17", 5, 10, "张敏：-创新不足，缺少案例"),  # text, never a formula
    ]
    assert len([r for r in listed if r[0] == "C003"]) == len(SYSTEM.items) and not [r for r in listed if r[0] == "C001"]
    assert all(r[11] is None and r[12] is None for r in listed)  # 整改措施, 完成时限 to fill
    assert sheet.protection.sheet
    fill = sheet.cell(2, RECTIFY_HEAD.index("整改措施") + 1)
    assert fill.protection.locked is False and sheet.cell(2, 1).protection.locked is not False
    assert fill.fill.fgColor.rgb.endswith("FFF2CC")
    assert sheet.print_title_rows in ("1:1", "$1:$1") and sheet.page_setup.paperSize == 9
    assert sheet.page_setup.orientation == "landscape"


def test_the_notices_read_back(acceptance_round):
    root, _ = acceptance_round
    folder = root / "output" / KEY / "整改通知"
    doc = docx.Document(folder / "C002-玉林街道黉门街社区.docx")
    paragraphs = [p.text for p in doc.paragraphs if p.text]
    assert paragraphs[0] == "关于玉林街道黉门街社区验收整改的通知"
    assert paragraphs[1] == "玉林街道黉门街社区："
    body = "".join(paragraphs)
    assert "总分为 69.50 分" in body and "验收结果为“整改后复验”" in body and "项目办公室 010-6512 3456" in body
    assert paragraphs[-2:] == ["幸福家园行动项目办公室", chinese_date(date.today())]
    assert doc.paragraphs[-1].alignment == 2  # right
    [table] = doc.tables
    rows = [[c.text for c in row.cells] for row in table.rows]
    assert rows == [["序号", "指标", "得分", "满分", "专家意见"],
                    ["1", "C01 党建引领", "2", "4", "张敏：台账不全；王芳：制度未落实"],
                    ["2", "C17 模式创新", "5", "10", "张敏：-创新不足，缺少案例"]]
    section = doc.sections[0]
    assert (round(section.page_width.cm, 1), round(section.page_height.cm, 1)) == (21.0, 29.7)
    run_ = doc.paragraphs[0].runs[0]
    assert run_._element.rPr.rFonts.get("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}eastAsia") == "宋体"
    failed = docx.Document(folder / "C003-南湖街道南湖社区.docx")
    assert "验收结果为“不通过”" in "".join(p.text for p in failed.paragraphs)
    assert len(failed.tables[0].rows) == 1 + len(SYSTEM.items)


def test_the_digest_shows_the_results(acceptance_round):
    root, _ = acceptance_round
    page = BeautifulSoup((root / "output" / KEY / "digest-community.html").read_text(encoding="utf-8"), "html.parser")
    section = page.select_one("section#acceptance")
    assert "不低于 80 分为“通过”，不低于 60 分为“整改后复验”" in section.get_text()
    assert " ".join(page.select_one("#acceptance-counts").get_text().split()) == "通过 1 整改后复验 1 不通过 1"
    rows = {tr["data-subject"]: [td.get_text(strip=True) for td in tr.select("td")]
            for tr in page.select("#acceptance-rows > tr")}
    assert rows["C002"][3:6] == ["69.50", CONDITIONAL, "2"] and rows["C001"][4:6] == [PASS, ""]
    assert rows["C003"][5] == str(len(SYSTEM.items))
    assert page.select_one("#card-C003").find(string=f"验收：{FAIL}") is not None


def test_a_new_report_removes_notices_no_longer_due(acceptance_round, tmp_path):
    root, _ = acceptance_round
    folder = root / "output" / KEY / "整改通知"
    stale = folder / "C009-旧对象.docx"
    shutil.copy(folder / "C003-南湖街道南湖社区.docx", stale)
    run(root, "report", "--system", "community", "--period", PERIOD, "--stage", "验收")
    assert not stale.exists() and len(list(folder.glob("*.docx"))) == 2


@pytest.mark.libreoffice
def test_the_notice_and_the_list_print_through_libreoffice(acceptance_round, tmp_path):
    if not shutil.which("pdftotext"):
        pytest.skip("poppler-utils (pdftotext) is not installed")
    root, _ = acceptance_round
    folder = root / "output" / KEY
    for source, expected in ((folder / "整改清单-community.xlsx", "整改措施"),
                             (folder / "整改通知" / "C002-玉林街道黉门街社区.docx", "关于玉林街道黉门街社区验收整改的通知")):
        pdf = soffice_convert(source, "pdf", tmp_path)
        if not pdf.is_file() and source.suffix == ".docx":
            pytest.skip("LibreOffice Writer (libreoffice-writer) is not installed")
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert expected in text.replace(" ", "")
