"""遴选: places, provincial quotas, 一票否决, tie-breaks at the line, and the 公示 it produces."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from conftest import ASSESSORS, fill_form, run
from pipeline.config import Workspace, defaults
from pipeline import i18n
from pipeline.errors import ConfigError, InputError
from pipeline.roster import read_roster, write_roster
from pipeline.selection import (NOT_SELECTED, RESERVE, RESULT_HEAD, SELECTED, TIED, VETOED, Selection, decide,
                                item_vetoes, notice, publicity_period, tie_break_for, veto_rules_for, write_outputs)
from pipeline.systems import load_system

COMMUNITY = load_system("community")


def frame(rows, tie_break=()) -> pd.DataFrame:
    """(subject, province, total, *tie-break values[, veto]) -> the frame `decide` takes."""
    cols = ["subject", "province", "total", *tie_break]
    data = [r[:len(cols)] for r in rows]
    f = pd.DataFrame(data, columns=cols)
    f["name"] = f["subject"] + "社区"
    f["veto"] = [r[len(cols)] if len(r) > len(cols) else "" for r in rows]
    return f


def outcome(result: pd.DataFrame) -> list[tuple]:
    return [(r.subject, None if math.isnan(r.rank) else int(r.rank), r.result, r.note) for r in result.itertuples()]


def test_a_full_provincial_quota_makes_a_reserve_listed_after_the_line():
    f = frame([("A", "浙江省", 95), ("B", "浙江省", 90), ("C", "浙江省", 85), ("D", "四川省", 80),
               ("E", "湖北省", 75), ("F", "浙江省", 70), ("G", "湖北省", math.nan)])
    got = outcome(decide(f, places=3, quotas={"浙江省": 2}))
    assert got == [
        ("A", 1, SELECTED, ""), ("B", 2, SELECTED, ""), ("D", 4, SELECTED, ""),
        ("C", 3, RESERVE, "所在省份名额已满（浙江省 2 个）"),  # the reserve list, in rank order, after the line
        ("E", 5, NOT_SELECTED, ""), ("F", 6, NOT_SELECTED, ""),  # below the line: not selected, quota or not
        ("G", None, NOT_SELECTED, "未评分"),
    ]


def test_a_vetoed_subject_keeps_its_rank_and_is_never_selected():
    f = frame([("A", "浙江省", 95, "一票否决：发生重大安全责任事故"), ("B", "四川省", 90), ("C", "湖北省", 85)])
    got = outcome(decide(f, places=2))
    assert got == [("B", 2, SELECTED, ""), ("C", 3, SELECTED, ""), ("A", 1, VETOED, "一票否决：发生重大安全责任事故")]


def test_veto_by_item_names_the_score_and_the_rule():
    items = pd.DataFrame({"subject": ["A", "B", "C"], "item": ["C01", "C01", "C01"], "score": [1.5, 2.0, 3.5]})
    # C01 党建引领, 满分 4: half is 2.00; exactly half is not below it
    assert item_vetoes(items, COMMUNITY, [("C01", 0.5)]) == {"A": ["一票否决：C01 得分 1.50 低于满分 4 的 50%"]}
    settings = {"selection": {"veto": [{"item": "c01", "below_share": 0.5}, {"item": "Z01", "below_share": 0.4}],
                              "tie_break": ["进阶指标", "C19", "治理体系"]}}
    assert veto_rules_for(settings, COMMUNITY) == [("C01", 0.5)]  # Z01 is a zone item: not this system's
    assert tie_break_for(settings, COMMUNITY) == ["进阶指标", "C19", "治理体系"]
    with pytest.raises(ConfigError, match="C99"):
        veto_rules_for({"selection": {"veto": [{"item": "C99", "below_share": 0.5}]}}, COMMUNITY)
    with pytest.raises(ConfigError, match="特色指标"):
        tie_break_for({"selection": {"tie_break": ["特色指标"]}}, COMMUNITY)


def test_a_three_way_tie_at_the_line_is_broken_by_the_advanced_indicators():
    f = frame([("A", "浙江省", 90, 15, 75), ("B", "四川省", 88, 10, 78), ("C", "湖北省", 88, 12, 76),
               ("D", "江苏省", 88, 11, 77), ("E", "山东省", 80, 9, 71)], tie_break=("进阶指标", "基础指标"))
    got = outcome(decide(f, places=3, tie_break=["进阶指标", "基础指标"]))
    assert got == [
        ("A", 1, SELECTED, ""),
        ("C", 2, SELECTED, "总分与 D 相同，按进阶指标排序（12.00 对 11.00）"),
        ("D", 3, SELECTED, "总分与 C 相同，按进阶指标排序（11.00 对 12.00）"),
        ("B", 4, NOT_SELECTED, "总分与 D 相同，按进阶指标排序（10.00 对 11.00）"),
        ("E", 5, NOT_SELECTED, ""),
    ]


def test_a_tie_the_list_cannot_break_is_left_to_the_office():
    # B and C equal on the total and on both tie-break indicators: they share rank 2, and with one
    # place left both are 并列; nobody below them (D, E) takes a place, whatever the code order.
    f = frame([("A", "浙江省", 90, 15, 75), ("C", "湖北省", 88, 12, 76), ("B", "四川省", 88, 12, 76),
               ("D", "江苏省", 88, 11, 77), ("E", "山东省", 80, 9, 71)], tie_break=("进阶指标", "基础指标"))
    got = outcome(decide(f, places=2, tie_break=["进阶指标", "基础指标"]))
    assert got == [
        ("A", 1, SELECTED, ""),
        ("B", 2, TIED, "与 C 并列，剩余 1 个名额，由办公室决定"),
        ("C", 2, TIED, "与 B 并列，剩余 1 个名额，由办公室决定；总分与 D 相同，按进阶指标排序（12.00 对 11.00）"),
        ("D", 4, NOT_SELECTED, "总分与 C 相同，按进阶指标排序（11.00 对 12.00）"),
        ("E", 5, NOT_SELECTED, ""),
    ]
    # with places for both, a tie is no problem
    assert [r[2] for r in outcome(decide(f, places=3, tie_break=["进阶指标", "基础指标"]))][:3] == [SELECTED] * 3
    # without a tie-break list, all three 88s are one group: 3 of them for 2 places
    got = outcome(decide(f.drop(columns=["进阶指标", "基础指标"]), places=3))
    assert [r[2] for r in got] == [SELECTED, TIED, TIED, TIED, NOT_SELECTED]
    assert got[1][3] == "与 C、D 并列，剩余 2 个名额，由办公室决定"


def test_totals_tie_at_the_ranking_precision_half_up():
    # 88.005 and 88.01 are both 88.01 at two decimals: equal totals, decided by 进阶指标
    f = frame([("A", "浙江省", 88.005, 12), ("B", "四川省", 88.01, 11)], tie_break=("进阶指标",))
    assert [r[0] for r in outcome(decide(f, places=1, tie_break=["进阶指标"]))] == ["A", "B"]


def test_a_quota_contested_inside_a_tie_is_left_to_the_office_for_that_province_only():
    f = frame([("A", "浙江省", 90), ("B", "浙江省", 88), ("C", "浙江省", 88), ("D", "四川省", 85)])
    got = outcome(decide(f, places=3, quotas={"浙江省": 2}))
    assert got == [
        ("A", 1, SELECTED, ""),
        ("B", 2, TIED, "与 C 并列，所在省份（浙江省）剩余 1 个名额，由办公室决定"),
        ("C", 2, TIED, "与 B 并列，所在省份（浙江省）剩余 1 个名额，由办公室决定"),
        ("D", 4, SELECTED, ""),
    ]


@pytest.mark.parametrize("report_day, start, end", [
    (date(2026, 12, 2), date(2026, 12, 3), date(2026, 12, 9)),   # Wed: Thu, Fri, Mon, Tue, Wed
    (date(2026, 12, 4), date(2026, 12, 7), date(2026, 12, 11)),  # Fri: the weekend is skipped at once
    (date(2026, 12, 5), date(2026, 12, 7), date(2026, 12, 11)),  # a Saturday report
    (date(2026, 12, 30), date(2026, 12, 31), date(2027, 1, 6)),  # over a weekend and the year's end
])
def test_publicity_counts_working_days_over_weekends(report_day, start, end):
    assert publicity_period(report_day, 5) == (start, end)


def test_roster_quotas_and_vetoes_are_read_and_checked(tmp_path):
    subjects = [("C001", "东坡路社区", "创新实践社区", "浙江省", "杭州市", "上城区", "发生重大安全责任事故"),
                ("C002", "黉门街社区", "创新实践社区", "四川省", "成都市", "武侯区")]
    path = write_roster(tmp_path / "roster.xlsx", subjects, ASSESSORS, [],
                        quotas=[("创新实践社区", "浙江省", 2), ("创新实践区", "浙江省", 1)])
    roster = read_roster(path)
    assert roster.subjects["C001"].veto == "发生重大安全责任事故" and roster.subjects["C002"].veto == ""
    assert roster.quotas == {("创新实践社区", "浙江省"): 2, ("创新实践区", "浙江省"): 1}
    bad = write_roster(tmp_path / "bad.xlsx", subjects, ASSESSORS, [],
                       quotas=[("创新实践社区", "浙江省", "两个"), ("社区", "", 1), ("创新实践社区", "浙江省", 3)])
    with pytest.raises(InputError) as err:
        read_roster(bad)
    text = str(err.value)
    assert "工作表“名额”第 2 行：名额应为不小于 0 的整数，实际为“两个”" in text
    assert "工作表“名额”第 3 行：类型应为 创新实践区 或 创新实践社区，实际为“社区”" in text
    assert "工作表“名额”第 3 行：省份为空" in text
    assert "工作表“名额”第 4 行：浙江省的创新实践社区名额重复列出（第一次出现在第 2 行）" in text
    # a roster without either reads as before
    plain = read_roster(write_roster(tmp_path / "plain.xlsx"))
    assert plain.quotas == {} and all(s.veto == "" for s in plain.subjects.values())


def test_selection_settings_are_validated(tmp_path, request):
    def config(text: str) -> Path:
        (tmp_path / "happyhome.toml").write_text(text, encoding="utf-8")
        return tmp_path

    ws = Workspace.open(config('[selection]\nplaces = { community = 3 }\n\n[[selection.veto]]\nitem = "C01"\nbelow_share = 0.5\n'))
    assert ws["selection"]["places"] == {"zone": 30, "community": 3}
    assert ws["selection"]["veto"] == [{"item": "C01", "below_share": 0.5}]
    assert Workspace.open(config(""))["selection"]["tie_break"] == ["进阶指标", "基础指标"]
    i18n.set_language("en")  # the messages' English text (the catalogue's keys); Chinese is tested elsewhere
    request.addfinalizer(i18n.set_language)
    for text, message in [
        ('[[selection.veto]]\nitem = "C01"\n', "needs exactly 'item' and 'below_share'"),
        ('[[selection.veto]]\nitem = "C01"\nbelow_share = 50\n', "between 0 and 1"),
        ("[selection]\nplaces = { community = -1 }\n", "selection.places.community"),
        ("[selection]\npublicity_days = 0\n", "publicity_days"),
        ("[selection]\nquota = 2\n", "unknown setting 'selection.quota'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            Workspace.open(config(text))


# -- end to end -----------------------------------------------------------------------------
PERIOD, KEY = "2027-03", "2027-03-遴选"
CANDIDATES = [  # best first: C001 > C002 > … > C006
    ("C001", "湖滨街道东坡路社区", "创新实践社区", "浙江省", "杭州市", "上城区", ""),
    ("C002", "南山街道清波社区", "创新实践社区", "浙江省", "杭州市", "上城区", ""),
    ("C003", "小营街道大学路社区", "创新实践社区", "浙江省", "杭州市", "上城区", ""),
    ("C004", "玉林街道黉门街社区", "创新实践社区", "四川省", "成都市", "武侯区", ""),
    ("C005", "南湖街道南湖社区", "创新实践社区", "湖北省", "武汉市", "洪山区", ""),
    ("C006", "关山街道光谷社区", "创新实践社区", "湖北省", "武汉市", "洪山区", "发生重大安全责任事故<script>alert(1)</script>"),
    ("C007", "朝阳街道和平社区", "创新实践社区", "北京市", "北京市", "朝阳区", ""),
]


def candidate_scores(k: int) -> dict[str, float]:
    scores = {item.code: item.max - 0.5 * k for item in COMMUNITY.items}
    scores["C01"] = 1.0 if k == 4 else 4.0  # C005: 党建引领 1 of 4 -> vetoed by the rule
    return scores


@pytest.fixture
def selection_round(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    run(root, "init", str(root))
    pairs = [(a, s[0]) for a, *_ in ASSESSORS for s in CANDIDATES]
    write_roster(root / "input" / "roster.xlsx", CANDIDATES, ASSESSORS, pairs, quotas=[("创新实践社区", "浙江省", 2)])
    config = root / "happyhome.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("places = { zone = 30, community = 100 }", "places = { zone = 30, community = 3 }")
    text = text.replace("veto = []", 'veto = [{ item = "C01", below_share = 0.5 }]')
    text = text.replace('objection_contact = ""', 'objection_contact = "项目办公室 010-6512 3456"')
    config.write_text(text, encoding="utf-8")
    run(root, "forms", "--system", "community", "--period", PERIOD, "--stage", "遴选")
    returned = root / "input" / "returned" / KEY
    returned.mkdir(parents=True)
    for form in sorted((root / "output" / "forms" / KEY / "community").glob("*.xlsx")):
        # C007's visit did not happen: nobody scored it
        scores = {code: candidate_scores(k) for k, (code, *_) in enumerate(CANDIDATES) if code != "C007"}
        fill_form(form, scores, save_as=returned / form.name)
    run(root, "collect", "--system", "community", "--period", PERIOD, "--stage", "遴选")
    return root


def test_a_selection_round_end_to_end(selection_round):
    root = selection_round
    out = run(root, "report", "--system", "community", "--period", PERIOD, "--stage", "遴选")
    assert "遴选：3 个名额，入选 3 个，并列待办公室决定 0 个，候补 1 个，一票否决 2 个。" in out.output
    folder = root / "output" / KEY
    book = openpyxl.load_workbook(folder / "summary-community.xlsx")
    assert book.sheetnames[0] == "遴选结果" and "排名" in book.sheetnames
    sheet = book["遴选结果"]
    assert [c.value for c in sheet[1]] == RESULT_HEAD
    rows = [r for r in sheet.iter_rows(min_row=2, max_row=8, values_only=True)]
    assert [(r[1], r[7]) for r in rows] == [("C001", SELECTED), ("C002", SELECTED), ("C004", SELECTED),
                                            ("C003", RESERVE), ("C005", VETOED), ("C006", VETOED),
                                            ("C007", NOT_SELECTED)]
    notes = {r[1]: r[8] for r in rows}
    assert notes["C003"] == "所在省份名额已满（浙江省 2 个）"
    assert notes["C005"] == "一票否决：C01 得分 1.00 低于满分 4 的 50%"
    assert notes["C006"] == "一票否决：发生重大安全责任事故<script>alert(1)</script>" and notes["C007"] == "未评分"
    assert [r[0] for r in rows] == [1, 2, 4, 3, 5, 6, None] and rows[0][6] == 100
    assert sheet.cell(4, 1).border.bottom.style == "thick"  # the selection line under the third row

    start, end = publicity_period(date.today(), 5)
    from docx import Document

    doc = Document(str(folder / "公示名单-community.docx"))
    paragraphs = [p.text for p in doc.paragraphs if p.text]
    assert paragraphs[0] == "关于创新实践社区遴选结果的公示"
    assert doc.paragraphs[0].alignment == 1  # centred
    assert any(f"公示时间：{start.year}年{start.month}月{start.day}日至{end.year}年{end.month}月{end.day}日（5 个工作日）" in p
               for p in paragraphs)
    assert any("项目办公室 010-6512 3456" in p for p in paragraphs)
    assert paragraphs[-2:] == ["幸福家园行动项目办公室", f"{date.today().year}年{date.today().month}月{date.today().day}日"]
    [table] = doc.tables
    cells = [[c.text for c in row.cells] for row in table.rows]
    assert cells == [["排名", "编号", "名称", "地区", "总分"],
                     ["1", "C001", "湖滨街道东坡路社区", "浙江省杭州市上城区", "100.00"],
                     ["2", "C002", "南山街道清波社区", "浙江省杭州市上城区", "91.00"],
                     ["4", "C004", "玉林街道黉门街社区", "四川省成都市武侯区", "73.00"]]
    fonts = doc.paragraphs[1].runs[0]._element.rPr.rFonts
    assert fonts.get("{http://schemas.openxmlformats.org/wordprocessingml/2006/main}eastAsia") == "仿宋"
    assert round(doc.sections[0].page_width.mm) == 210 and round(doc.sections[0].page_height.mm) == 297

    listing = openpyxl.load_workbook(folder / "公示名单-community.xlsx")["公示名单"]
    values = [[c for c in row if c is not None] for row in listing.iter_rows(values_only=True)]
    assert values[0] == ["关于创新实践社区遴选结果的公示"]
    head = values.index(["排名", "编号", "名称", "地区", "总分"])
    assert [r[1] for r in values[head + 1:head + 4]] == ["C001", "C002", "C004"]
    assert listing.freeze_panes == f"A{head + 2}" and listing.page_setup.paperSize == 9

    soup = BeautifulSoup((folder / "digest-community.html").read_text(encoding="utf-8"), "html.parser")
    section = soup.select_one("#selection")
    shown = [(tr["data-subject"], tr["data-result"]) for tr in section.select("tr.subject-row")]
    assert shown[:4] == [("C001", "入选"), ("C002", "入选"), ("C004", "入选"), ("C003", "候补")]
    line = soup.select_one("#selection-line")
    assert line.find_previous_sibling("tr")["data-subject"] == "C004" and "入选线" in line.text
    assert "名额 3 个：入选 3 个" in soup.select_one("#selection-summary").text
    assert soup.find("script") is None  # the roster's reason is text, escaped
    assert "<script>alert(1)</script>" in section.select_one('tr[data-subject="C006"]').get_text()
    # the 临界 flags of a 遴选 round are about its places (3), not calibration.selection_top (30)
    about = {r[0]: r[1] for r in book["说明"].iter_rows(values_only=True)}
    assert about["决策线"].startswith("前 3 名入选线")


def test_the_notice_lists_the_selected_only_and_says_a_tie_is_left_to_the_office(tmp_path):
    f = frame([("C001", "浙江省", 90), ("C002", "四川省", 88), ("C003", "湖北省", 88), ("C004", "江苏省", 80)])
    f = f.assign(type="创新实践社区", city=["杭州市", "成都市", "武汉市", "南京市"], county="某区")
    sel = Selection(system=COMMUNITY, places=2, table=decide(f, places=2).drop(columns=["veto"]), tie_break=[])
    settings = defaults()
    n = notice(sel, settings, date(2026, 12, 4))
    assert n.title == "关于创新实践社区遴选结果的公示"
    assert [r[1] for r in n.rows] == ["C001"] and n.rows[0][3] == "浙江省杭州市某区"
    assert any("另有 2 个对象得分相同、并列竞争剩余的 1 个名额" in p for p in n.before)
    assert "公示时间：2026年12月7日至2026年12月11日（5 个工作日）。" in n.before
    assert n.signature == ["幸福家园行动项目办公室", "2026年12月4日"]
    assert not any("联系方式" in p for p in n.after)  # objection_contact is empty by default
    from docx import Document

    xlsx, docx = write_outputs(tmp_path, sel, settings, date(2026, 12, 4))[1]
    assert [[c.text for c in row.cells][1] for row in Document(str(docx)).tables[0].rows] == ["编号", "C001"]
    assert xlsx.name == "公示名单-community.xlsx"


def test_a_supervision_round_has_no_selection_outputs(workspace):
    from test_collect import answers

    run(workspace, "forms", "--system", "community", "--period", PERIOD)
    returned = workspace / "input" / "returned" / PERIOD
    returned.mkdir(parents=True)
    for form in sorted((workspace / "output" / "forms" / PERIOD / "community").glob("*.xlsx")):
        fill_form(form, answers(form.name.split("_")[2]), save_as=returned / form.name)
    run(workspace, "collect", "--system", "community", "--period", PERIOD)
    run(workspace, "report", "--system", "community", "--period", PERIOD)
    folder = workspace / "output" / PERIOD
    assert not list(folder.glob("公示名单-*"))
    assert "遴选结果" not in openpyxl.load_workbook(folder / "summary-community.xlsx").sheetnames
    assert BeautifulSoup((folder / "digest-community.html").read_text(encoding="utf-8"), "html.parser").select_one(
        "#selection") is None
