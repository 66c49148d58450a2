"""`happyhome demo`: a complete, synthetic, seeded example workspace, run end to end.

The data are invented but shaped like the programme's: 30 创新实践区 and 100 创新实践社区 in real
province/city/district combinations, 12 assessors, a 遴选 round of the communities the month
before (more candidates than places, provincial quotas, a veto), and six monthly rounds. Each subject has a
latent quality and a trend, each assessor a leniency or severity, so the roll-up has something
to show; a handful of faulty returns exercise collection. Everything is drawn from one seed,
and the returned workbooks carry fixed saved times, so two runs produce the same files.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.config import CONFIG_NAME, Workspace, check_period, defaults
from pipeline.errors import UsageError
from pipeline.forms import SELF, FormSpec, plan_forms, write_form
from pipeline.i18n import N_, _
from pipeline.roster import Roster, read_roster, write_roster
from pipeline.rounds import round_key
from pipeline.systems import System, load_system

SEED = 20261129
DEFAULT_END = "2026-11"
MARKER = ".happyhome-demo"  # a folder holding this file was built by `happyhome demo` and may be rebuilt

# Stage callback: (label, total) -> advance(n=1). The CLI turns it into progress bars.
Stage = Callable[[str, int], Callable[..., None]]

# What is wrong with a planted return (the demo's summary table; translated where shown).
LATE = N_("late")
OUT_OF_RANGE = N_("a score out of range")
OUT_OF_RANGE_CORRECTED = N_("a score out of range (corrected later)")
RESENT = N_("resent after correction")
BLANK_SCORE = N_("a score left blank")
LAST_MONTHS_FORM = N_("typed into last month's form")
NOT_A_FORM = N_("not a scoring form")
NOT_RETURNED = N_("not returned at all")
POSTPONED = N_("not assessed this month: every assessor left it blank")


@dataclass(frozen=True)
class DemoSize:
    zones: int = 30
    communities: int = 100
    assessors: int = 12
    months: int = 6


FULL = DemoSize()
SMALL = DemoSize(zones=6, communities=12, assessors=5, months=2)

REGIONS = [  # (province, city, district): real combinations, one 创新实践区 each
    ("浙江省", "杭州市", "上城区"), ("四川省", "成都市", "武侯区"), ("湖北省", "武汉市", "洪山区"),
    ("江苏省", "南京市", "鼓楼区"), ("江苏省", "苏州市", "姑苏区"), ("上海市", "上海市", "徐汇区"),
    ("北京市", "北京市", "朝阳区"), ("北京市", "北京市", "海淀区"), ("天津市", "天津市", "和平区"),
    ("广东省", "广州市", "越秀区"), ("广东省", "深圳市", "南山区"), ("重庆市", "重庆市", "渝中区"),
    ("湖南省", "长沙市", "岳麓区"), ("山东省", "青岛市", "市南区"), ("山东省", "济南市", "历下区"),
    ("福建省", "厦门市", "思明区"), ("福建省", "福州市", "鼓楼区"), ("河南省", "郑州市", "金水区"),
    ("河北省", "石家庄市", "长安区"), ("陕西省", "西安市", "雁塔区"), ("安徽省", "合肥市", "蜀山区"),
    ("江西省", "南昌市", "东湖区"), ("辽宁省", "沈阳市", "和平区"), ("吉林省", "长春市", "朝阳区"),
    ("黑龙江省", "哈尔滨市", "南岗区"), ("云南省", "昆明市", "五华区"), ("贵州省", "贵阳市", "云岩区"),
    ("广西壮族自治区", "南宁市", "青秀区"), ("甘肃省", "兰州市", "城关区"), ("浙江省", "宁波市", "鄞州区"),
]
STREET_WORDS = ["湖滨", "东坡", "玉林", "南湖", "新华", "光明", "长安", "锦绣", "金桥", "翠竹", "柳岸", "桂园",
                "梅园", "枫林", "滨江", "振兴", "育才", "文昌", "朝阳", "民主", "建设", "团结", "红旗", "丽景",
                "望江", "春晖", "和平", "安康", "同心", "清河", "白云", "青石", "凤凰", "碧波", "龙井", "石桥"]
COMMUNITY_WORDS = ["幸福里", "阳光", "和谐", "东苑", "西苑", "南苑", "北苑", "花园", "新村", "康乐", "怡景", "明珠",
                   "紫荆", "银杏", "海棠", "芙蓉", "桃源", "泉水", "书香", "锦华", "嘉禾", "润泽", "颐和", "星河",
                   "馨园", "福寿", "民安", "宜居", "晨曦", "兴隆"]
ASSESSORS = [
    ("张敏", "浙江工业大学社会工作系"), ("李强", "四川大学社会发展与西部开发研究院"),
    ("王芳", "武汉市社会工作联合会"), ("刘洋", "中国人民大学社会与人口学院"),
    ("陈静", "南京大学社会学院"), ("杨帆", "中山大学社会学与人类学学院"),
    ("赵磊", "华东理工大学社会工作系"), ("黄丽", "北京师范大学社会发展与公共政策学院"),
    ("周涛", "深圳市社会工作者协会"), ("吴婷", "山东大学哲学与社会发展学院"),
    ("徐明", "西北大学公共管理学院"), ("孙悦", "民政部培训中心"),
]
DEMO_SMTP = "smtps://happyhome@example.org@smtp.example.org:465"  # an example: the demo only writes .eml files
DEMO_IMAP = "imaps://happyhome@example.org@imap.example.org:993"
PINYIN = ["zhangmin", "liqiang", "wangfang", "liuyang", "chenjing", "yangfan", "zhaolei", "huangli",
          "zhoutao", "wuting", "xuming", "sunyue"]
LOW_REMARKS = ["台账资料不完整", "活动记录偏少", "居民参与度不高", "制度未落实到位", "缺少年度工作计划",
               "场地利用率偏低", "志愿者队伍不稳定", "宣传材料不足", "特色不够突出", "成效数据缺失",
               "经费使用说明不清", "部门协同不够", "服务覆盖面偏窄", "问题整改未闭环"]
HIGH_REMARKS = ["做法有特色，可推广", "居民评价好", "资料规范齐全"]


@dataclass
class DemoData:
    """The synthetic programme: roster rows and the latent model the scores are drawn from."""

    subjects: list[tuple[str, str, str, str, str, str]]
    assessors: list[tuple[str, str, str, str]]
    pairs: list[tuple[str, str]]
    periods: list[str]
    quality: dict[str, float]  # share of 满分 in the first month
    trend: dict[str, float]  # change of that share per month
    shock: dict[str, tuple[int, float]]  # subject -> (month index, one-month drop in share)
    leniency: dict[str, float]  # assessor -> added share (negative: severe)
    seed: int = SEED
    emails: dict[str, str] = field(default_factory=dict)  # assessor -> the roster's 邮箱 (happyhome send)


def months_ending(end: str, n: int) -> list[str]:
    """The n months up to and including `end`, oldest first."""
    year, month = map(int, check_period(end).split("-"))
    out = []
    for _ in range(n):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


def make_data(size: DemoSize = FULL, end: str = DEFAULT_END, seed: int = SEED) -> DemoData:
    """Draw the roster and the latent model (deterministic for a seed)."""
    if not (1 <= size.zones <= len(REGIONS)) or size.communities < 1 or size.months < 1:
        raise UsageError(_("demo size out of range: {size}").format(size=size))
    if not 5 <= size.assessors <= len(ASSESSORS):
        raise UsageError(_("the demo needs 5 to {n} assessors (each zone is rated by 5)").format(n=len(ASSESSORS)))
    rng = np.random.default_rng([seed, 1])
    subjects = []
    for n, (province, city, district) in enumerate(REGIONS[: size.zones], start=1):
        place = city if province != city else province
        subjects.append((f"Z{n:02d}", f"{place}{district}", "创新实践区", province, city, district))
    names: set[str] = set()
    for n in range(1, size.communities + 1):
        province, city, district = REGIONS[(n - 1) % size.zones]
        while True:
            street, word = rng.choice(STREET_WORDS), rng.choice(COMMUNITY_WORDS)
            name = f"{street}街道{word}社区"
            if name not in names:
                names.add(name)
                break
        subjects.append((f"C{n:03d}", name, "创新实践社区", province, city, district))
    assessors = []
    for n, ((name, org), pinyin) in enumerate(zip(ASSESSORS[: size.assessors], PINYIN), start=1):
        contact = f"1380013{n:04d}" if n % 3 else f"{pinyin}@example.org"
        assessors.append((f"E{n:02d}", name, org, contact))
    codes = [a[0] for a in assessors]
    pairs = demo_pairs(subjects, assessors, seed)
    quality, trend, shock = {}, {}, {}
    for code, *_rest in subjects:
        quality[code] = float(np.clip(rng.normal(0.80, 0.07), 0.55, 0.95))
        kind = rng.random()
        trend[code] = float(rng.uniform(0.008, 0.022) if kind < 0.35 else
                            -rng.uniform(0.008, 0.02) if kind < 0.6 else rng.normal(0, 0.003))
        if size.months > 1 and rng.random() < 0.08:
            shock[code] = (int(rng.integers(1, size.months)), float(rng.uniform(0.08, 0.13)))
    leniency = {a: float(rng.normal(0, 0.03)) for a in codes}
    leniency[codes[1]] = 0.06  # one clearly lenient assessor and one clearly severe one
    leniency[codes[2]] = -0.07
    emails = {f"E{n:02d}": f"{pinyin}@example.org" for n, pinyin in enumerate(PINYIN[: size.assessors], start=1)}
    return DemoData(subjects, assessors, pairs, months_ending(end, size.months), quality, trend, shock, leniency, seed,
                    emails)


PER_SUBJECT = {"zone": 5, "community": 4}  # the demo's K: assessors per zone and per community


def demo_pairs(subjects, assessors, seed: int) -> list[tuple[str, str]]:
    """The demo's 分配, made as an office makes it: `happyhome assign` (the library function) for
    each system, K from PER_SUBJECT, --avoid 单位, seeded — balanced loads, a connected graph, the
    same pairs for the same seed."""
    from pipeline.assign import plan_assignment
    from pipeline.roster import Assessor, Subject

    roster = Roster({s[0]: Subject(*s[:6]) for s in subjects}, {a[0]: Assessor(*a) for a in assessors})
    pairs: list[tuple[str, str]] = []
    for system_id, k in PER_SUBJECT.items():
        pairs += plan_assignment(roster, load_system(system_id), k, avoid=("单位",), seed=seed).pairs
    return sorted(pairs, key=lambda p: (p[0], p[1][0] != "Z", p[1]))


def answers_for(data: DemoData, system: System, month: int, assessor: str, subjects: list[str], draw: int = 2) -> dict:
    """Scores and remarks one assessor gives in one month: subject -> item -> (score, remark).

    `draw` names the random stream: the 遴选 round draws its own (7) for the first month."""
    rng = np.random.default_rng([data.seed, draw, month, int(assessor[1:]), len(system.id)])
    difficulty = np.random.default_rng([data.seed, 3, len(system.id)]).normal(0, 0.05, len(system.items))
    maxima = np.array([item.max for item in system.items])
    out = {}
    for code in subjects:
        level = data.quality[code] + data.trend[code] * month + data.leniency[assessor]
        when, drop = data.shock.get(code, (-1, 0.0))
        level -= drop if month == when else drop / 3 if month > when >= 0 else 0
        share = np.clip(level + difficulty + rng.normal(0, 0.07, len(maxima)), 0, 1)
        scores = np.clip(np.round(share * maxima * 2) / 2, 0, maxima)
        items = {}
        for item, score, s in zip(system.items, scores, share):
            remark = ""
            if s < 0.6 and rng.random() < 0.7:
                remark = LOW_REMARKS[int(rng.integers(len(LOW_REMARKS)))]
            elif s > 0.97 and rng.random() < 0.1:
                remark = HIGH_REMARKS[int(rng.integers(len(HIGH_REMARKS)))]
            items[item.code] = (float(score), remark)
        out[code] = items
    return out


# -- the returned workbooks --------------------------------------------------------------------
@dataclass
class Return:
    """One file that lands in input/returned/<period>/, and when."""

    path: Path
    received: datetime  # its modification time: when it arrived
    saved: datetime | None = None  # the workbook's own saved time
    spec: FormSpec | None = None  # a workbook written from a form (with answers)
    content: bytes | None = None  # or raw bytes (a file that is not ours)
    note: str = ""  # what is wrong with it, for the demo's summary ("" = a good return)


@dataclass
class RoundPlan:
    period: str
    forms: list[FormSpec]  # the blank forms sent out
    returns: list[Return]
    missing: list[tuple[str, str]] = field(default_factory=list)  # (system id, assessor) never returned
    postponed: list[str] = field(default_factory=list)  # subjects every assessor left blank this month


def _on_time(rng, deadline: datetime) -> datetime:
    return deadline - timedelta(minutes=int(rng.integers(30, 12 * 24 * 60)))


def _late(rng, deadline: datetime) -> datetime:
    return deadline + timedelta(minutes=int(rng.integers(3 * 60, 4 * 24 * 60)))


def _saved_before(rng, received: datetime) -> datetime:
    return received - timedelta(minutes=int(rng.integers(5, 180)))


def _not_ours() -> list[tuple[str, bytes]]:
    """A Word document and a text file, both named .xlsx: what ends up in a returns folder."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in (("[Content_Types].xml", "<Types/>"),
                           ("word/document.xml", "<w:document><w:body><w:p><w:r><w:t>督导会议纪要</w:t></w:r></w:p></w:body></w:document>")):
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), body)
    text = "评分说明：请各位评估老师于本月25日前发回评分表。\n".encode("utf-8")
    return [("督导会议纪要.xlsx", buf.getvalue()), ("评分说明.xlsx", text)]


def plan_round(ws: Workspace, data: DemoData, roster: Roster, systems: list[System], month: int,
               previous: RoundPlan | None = None) -> RoundPlan:
    """The blank forms and the returns of one month, faults included (deterministic)."""
    period = data.periods[month]
    deadline = ws.deadline(period)
    folder = ws.returned(period)  # both systems' returns in one folder, as an office receives them
    rng = np.random.default_rng([data.seed, 4, month])
    codes = [a[0] for a in data.assessors]
    order = [str(c) for c in rng.permutation(codes)]
    last = month == len(data.periods) - 1
    forms, returns, missing = [], [], []
    # the month before the last, one community's visit is postponed: every assessor leaves it blank
    communities = [s[0] for s in data.subjects if s[2] == "创新实践社区"]
    postponed = [communities[int(rng.integers(len(communities)))]] if month == len(data.periods) - 2 else []
    for system in systems:
        blank = plan_forms(ws, system, period, roster)
        forms += [replace(s, answers=None) for s in blank]
        for spec in blank:
            assessor = spec.assessor.code
            if system.id == "community" and assessor == order[0]:  # one assessor never returns this round
                missing.append((system.id, assessor))
                continue
            subjects = [s.code for s in spec.subjects]
            answers = answers_for(data, system, month, assessor, subjects)
            for code in postponed:
                if code in answers:
                    answers[code] = {}
            path = folder / spec.path.name
            late = (system.id, assessor) in (("community", order[-1]), ("zone", order[-2]))  # one late file each
            received = _late(rng, deadline) if late else _on_time(rng, deadline)
            note = LATE if received > deadline else ""
            faulty = {s: dict(items) for s, items in answers.items()}
            first_subject, first_item = subjects[0], system.items[-1]
            if last and system.id == "community" and assessor in (order[1], order[3]):
                # an out-of-range value typed past the validation: 4.5 meant, 45 typed
                score = answers[first_subject][first_item.code][0]
                typed = score * 10 if score * 10 > first_item.max else first_item.max + 1
                faulty[first_subject][first_item.code] = (typed, "")
                if assessor == order[1]:
                    answers, note = faulty, OUT_OF_RANGE
                else:  # … and the same assessor sends a corrected file two days later
                    returns.append(Return(path, received - timedelta(days=2), _saved_before(rng, received - timedelta(days=2)),
                                          replace(spec, path=path, answers=faulty), note=OUT_OF_RANGE_CORRECTED))
                    path, note = path.with_name(path.stem + "_更正.xlsx"), RESENT
            if last and assessor == order[2] and (system.id == "community" or len(subjects) > 1):
                answers = {s: dict(items) for s, items in answers.items()}
                answers[subjects[-1]][system.items[0].code] = (None, "")  # a score left blank
                note = BLANK_SCORE
            returns.append(Return(path, received, _saved_before(rng, received), replace(spec, path=path, answers=answers), note=note))
    if last:
        sent = [f for f in (previous.forms if previous else []) if f.system.id == "community"]
        if sent:  # this month's scores typed into last month's form
            spec = sent[-1]
            when = _on_time(rng, deadline)
            answers = answers_for(data, spec.system, month, spec.assessor.code, [s.code for s in spec.subjects])
            returns.append(Return(folder / spec.path.name, when, _saved_before(rng, when),
                                  replace(spec, path=folder / spec.path.name, answers=answers),
                                  note=LAST_MONTHS_FORM))
        for name, body in _not_ours():
            returns.append(Return(folder / name, _on_time(rng, deadline), content=body, note=NOT_A_FORM))
        community = next((s for s in systems if s.id == "community"), None)
        if community is not None:  # the communities' self-assessments (自评), in the last month
            own, back = self_assessments(ws, data, roster, community, month, folder, deadline)
            forms += own
            returns += back
    return RoundPlan(period, forms, returns, missing, postponed)


SELF_MISSING = 15  # one community in this many returns no self-assessment in the demo


def self_assessments(ws: Workspace, data: DemoData, roster: Roster, system: System, month: int, folder: Path,
                     deadline: datetime) -> tuple[list[FormSpec], list[Return]]:
    """The self forms of one month and the communities' returns: each rates itself from its own
    level plus an optimism of its own (a few by far more than the experts), with 佐证材料."""
    period = data.periods[month]
    rng = np.random.default_rng([data.seed, 9, month])  # its own stream: the other returns stay as they were
    blank = plan_forms(ws, system, period, roster, kind=SELF)
    silent = {str(c) for c in rng.choice([s.subjects[0].code for s in blank], max(1, len(blank) // SELF_MISSING),
                                            replace=False)}
    maxima = np.array([item.max for item in system.items])
    returns = []
    for spec in blank:
        code = spec.subjects[0].code
        optimism = rng.choice([0.05, 0.1, 0.25], p=[0.6, 0.3, 0.1])
        level = data.quality[code] + data.trend[code] * month + optimism
        share = np.clip(level + rng.normal(0, 0.05, len(maxima)), 0, 1)
        scores = np.clip(np.round(share * maxima * 2) / 2, 0, maxima)
        if code in silent:
            continue
        answers = {code: {item.code: (float(score), "", f"附件{n}") for n, (item, score) in
                          enumerate(zip(system.items, scores), start=1)}}
        received = _on_time(rng, deadline)
        path = folder / spec.path.name
        returns.append(Return(path, received, _saved_before(rng, received), replace(spec, path=path, answers=answers)))
    return [replace(s, answers=None) for s in blank], returns


# -- the 遴选 round ------------------------------------------------------------------------------
SELECTION_VETO = "发生重大安全责任事故（示例）"


def selection_period(data: DemoData) -> str:
    """The 遴选 round's month: the one before the monthly rounds."""
    year, month = map(int, data.periods[0].split("-"))
    year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return f"{year:04d}-{month:02d}"


def selection_setup(data: DemoData) -> tuple[int, list[tuple[str, str, int]], str]:
    """The demo's 遴选: places (four in five communities), quotas (名额) and the vetoed community."""
    communities = [s for s in data.subjects if s[2] == "创新实践社区"]
    provinces = [s[3] for s in communities]
    busiest = max(dict.fromkeys(provinces), key=provinces.count)  # the first province with the most
    quotas = [("创新实践社区", busiest, max(1, provinces.count(busiest) // 2))]
    return max(1, len(communities) * 4 // 5), quotas, communities[2][0]


def plan_selection(ws: Workspace, data: DemoData, roster: Roster, system: System) -> RoundPlan:
    """The 遴选 round of the communities: every assessor returns on time, nothing faulty."""
    key = round_key(selection_period(data), "遴选")
    rng = np.random.default_rng([data.seed, 8])
    deadline = ws.deadline(key)
    blank = plan_forms(ws, system, key, roster)
    returns = []
    for spec in blank:
        answers = answers_for(data, system, 0, spec.assessor.code, [s.code for s in spec.subjects], draw=7)
        path = ws.returned(key) / spec.path.name
        received = _on_time(rng, deadline)
        returns.append(Return(path, received, _saved_before(rng, received), replace(spec, path=path, answers=answers)))
    return RoundPlan(key, [replace(s, answers=None) for s in blank], returns)


ACCEPTANCE_SYSTEM = "zone"  # the demo's 验收 round: the zones, the month after the monthly rounds


def next_month(period: str) -> str:
    year, month = map(int, check_period(period).split("-"))
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def acceptance_levels(data: DemoData, codes: list[str]) -> dict[str, float]:
    """The latent level of each subject in the 验收 round, spread so that every result shows:
    the weakest tenth (at least one) well below 60, the next fifth between 60 and 80, the rest
    at least 86 (ordered by where the monthly rounds left them)."""
    last = len(data.periods) - 1
    level = {c: data.quality[c] + data.trend[c] * last for c in codes}
    order = sorted(codes, key=lambda c: (level[c], c))
    n_fail, n_cond = max(1, round(len(codes) * 0.1)), max(1, round(len(codes) * 0.2))
    out = {}
    for k, code in enumerate(order):
        if k < n_fail:
            out[code] = 0.50 + 0.06 * k / max(n_fail - 1, 1)
        elif k < n_fail + n_cond:
            out[code] = 0.66 + 0.08 * (k - n_fail) / max(n_cond - 1, 1)
        else:
            out[code] = float(np.clip(level[code], 0.86, 0.95))
    return out


def plan_acceptance(ws: Workspace, data: DemoData, roster: Roster, system: System) -> RoundPlan:
    """The 验收 round of one system: forms, and every return on time and correct."""
    key = round_key(next_month(data.periods[-1]), "验收")
    deadline = ws.deadline(key)
    folder = ws.returned(key)
    rng = np.random.default_rng([data.seed, 5])
    codes = [s[0] for s in data.subjects if s[2] == system.subject_type]
    levels = replace(data, quality=acceptance_levels(data, codes), trend=dict.fromkeys(data.trend, 0.0), shock={})
    blank = plan_forms(ws, system, key, roster)
    returns = []
    for spec in blank:
        answers = answers_for(levels, system, len(data.periods), spec.assessor.code, [s.code for s in spec.subjects])
        received = _on_time(rng, deadline)
        path = folder / spec.path.name
        returns.append(Return(path, received, _saved_before(rng, received), replace(spec, path=path, answers=answers)))
    return RoundPlan(key, [replace(s, answers=None) for s in blank], returns)


def _write_job(job: tuple[FormSpec, datetime]) -> Path:
    """Write a form with a fixed saved time (in a pool worker): same seed, same bytes."""
    import xlsxwriter

    spec, saved = job
    original = xlsxwriter.Workbook.set_properties

    def set_properties(book, properties):  # write_form sets the title; the time is ours
        return original(book, {**properties, "created": saved.astimezone(timezone.utc)})

    xlsxwriter.Workbook.set_properties = set_properties
    try:
        return write_form(spec)
    finally:
        xlsxwriter.Workbook.set_properties = original


def plan_rounds(ws: Workspace, data: DemoData, roster: Roster, systems: list[System]) -> list[RoundPlan]:
    plans: list[RoundPlan] = []
    for month in range(len(data.periods)):
        plans.append(plan_round(ws, data, roster, systems, month, plans[-1] if plans else None))
    return plans


def write_round_files(plans: list[RoundPlan], workers: int = 1, advance: Callable[..., None] | None = None) -> int:
    """Write every blank form and every return of the planned rounds; set receipt times."""
    jobs = [(spec, datetime.fromisoformat(f"{plan.period[:7]}-01T09:00:00")) for plan in plans for spec in plan.forms]
    jobs += [(r.spec, r.saved) for plan in plans for r in plan.returns if r.spec]
    for folder in {spec.path.parent for plan in plans for spec in plan.forms}:
        folder.mkdir(parents=True, exist_ok=True)
    if workers > 1 and len(jobs) > 8:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_write_job, jobs, chunksize=max(1, len(jobs) // (workers * 8))):
                advance and advance(1)
    else:
        for job in jobs:
            _write_job(job)
            advance and advance(1)
    for plan in plans:
        for r in plan.returns:
            r.path.parent.mkdir(parents=True, exist_ok=True)
            if r.content is not None:
                r.path.write_bytes(r.content)
            stamp = r.received.timestamp()
            os.utime(r.path, (stamp, stamp))
    return len(jobs)


# -- the whole job -----------------------------------------------------------------------------
@dataclass
class DemoResult:
    root: Path
    periods: list[str]
    subjects: int
    assessors: int
    files: int  # workbooks written (blank forms and returns)
    faults: list[tuple[str, str, str]]  # (period, file, what is wrong with it)
    collected: dict[tuple[str, str], object]  # (period, system) -> CollectResult
    digests: dict[str, Path]  # system -> the latest month's digest
    summaries: dict[str, Path]
    rollups: dict[str, tuple[Path, Path]]  # system -> (xlsx, html)
    seconds: dict[str, float] = field(default_factory=dict)
    selection: object = None  # the 遴选 round's ReportResult (communities)
    acceptance: object | None = None  # the 验收 round's ReportResult (its .acceptance: results, files)
    mail: object | None = None  # the last month's community forms as messages (pipeline.mail.SendResult, dry run)


def prepare_folder(root: Path) -> None:
    """Refuse a non-empty folder that is not a previous demo; empty a previous demo."""
    if root.exists() and not root.is_dir():
        raise UsageError(_("{root} exists and is not a folder.").format(root=root))
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise UsageError(_("{root} is not empty and was not made by `happyhome demo`; choose another folder.").format(root=root))
        for child in root.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    root.mkdir(parents=True, exist_ok=True)


def build_demo(root: str | Path = "demo", size: DemoSize = FULL, end: str = DEFAULT_END, seed: int = SEED,
               stage: Stage | None = None, workers: int | None = None) -> DemoResult:
    """Build the example workspace in `root` and run every round in it: forms, returns,
    collect and report for both systems, then the roll-ups."""
    import time

    from pipeline.collect import collect
    from pipeline.ledger import Ledger
    from pipeline.lock import workspace_lock
    from pipeline.mail import send_round
    from pipeline.report import report
    from pipeline.rollup import rollup
    from pipeline.officekey import create_key
    from pipeline.workspace import init_workspace

    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = now - clock
        clock = now

    stage = stage or (lambda label, total: (lambda n=1: None))
    root = Path(root).resolve()
    prepare_folder(root)
    (root / MARKER).write_text(f"Built by `happyhome demo` (seed {seed}); `happyhome demo` may clear and rebuild this folder.\n",
                               encoding="utf-8")
    # The demo's office key comes from its seed, so the same seed gives the same forms byte for
    # byte; it is an example's key, no secret (init keeps a key that exists).
    create_key(root / defaults()["paths"]["key"], hashlib.sha256(f"happyhome demo {seed}".encode()).digest())
    init_workspace(root)
    config = root / CONFIG_NAME
    data = make_data(size, end, seed)
    places, quotas, vetoed = selection_setup(data)
    text = config.read_text(encoding="utf-8").replace('contact = ""', 'contact = "项目办公室 010-6512 3456"', 1)
    text = text.replace("community = 100 }", f"community = {places} }}", 1)
    text = text.replace('objection_contact = ""', 'objection_contact = "项目办公室 010-6512 3456"', 1)
    text = text.replace("veto = []", 'veto = [{ item = "C01", below_share = 0.5 }]', 1)
    # The demo's assessors write remarks on weak items only (as before the 扣分理由 rule): the rule
    # is off, or every deduction would be one more 提示 in the collection workbooks and letters.
    text = text.replace("reason_below_share = 1.0", "reason_below_share = 0", 1)
    # An example office mailbox: `send --dry-run` writes the messages it would send (nothing leaves).
    text = text.replace('smtp = ""', f'smtp = "{DEMO_SMTP}"', 1).replace('imap = ""', f'imap = "{DEMO_IMAP}"', 1)
    config.write_text(text, encoding="utf-8")
    subjects = [(*s, SELECTION_VETO if s[0] == vetoed else "") for s in data.subjects]
    write_roster(root / "input" / "roster.xlsx", subjects, data.assessors, data.pairs, quotas=quotas, emails=data.emails)
    ws = Workspace.open(root)
    roster = read_roster(ws.path("roster"))
    systems = [load_system("zone"), load_system("community")]
    plans = plan_rounds(ws, data, roster, systems)
    choosing = plan_selection(ws, data, roster, systems[1])
    accepting = next(s for s in systems if s.id == ACCEPTANCE_SYSTEM)
    final = plan_acceptance(ws, data, roster, accepting)
    lap(N_("plan"))

    n_jobs = sum(len(p.forms) + sum(1 for r in p.returns if r.spec) for p in [choosing, *plans, final])
    workers = workers if workers is not None else (os.cpu_count() or 1)
    files = write_round_files([choosing, *plans, final], workers=workers,
                              advance=stage(N_("Writing forms and returns"), n_jobs))
    lap(N_("write"))

    collected, digests, summaries, rollups = {}, {}, {}, {}
    with workspace_lock(ws):
        advance = stage(N_("Collecting"), len(plans) * len(systems) + 1)
        collected[choosing.period, systems[1].id] = collect(ws, systems[1], choosing.period, None, roster, workers=1)
        advance(1)
        for plan in plans:
            # community first: the files that are nobody's form are reported in its round
            for system in reversed(systems):
                collected[plan.period, system.id] = collect(ws, system, plan.period, None, roster, workers=1)
                advance(1)
        lap(N_("collect"))
        advance = stage(N_("Reporting"), len(plans) * len(systems) + 1)
        selected = report(ws, systems[1], choosing.period)
        advance(1)
        for plan in plans:
            for system in systems:
                result = report(ws, system, plan.period)
                digests[system.id], summaries[system.id] = result.digest, result.summary
                advance(1)
        lap(N_("report"))
        advance = stage(N_("Rolling up"), len(systems))
        with Ledger.open(ws) as ledger:
            for system in systems:
                result = rollup(ws, system, roster, ledger)
                rollups[system.id] = (result.xlsx, result.html)
                advance(1)
        lap(N_("rollup"))
        # After the roll-ups, which are of the monthly 督导 rounds: the zones' 验收 round.
        advance = stage(N_("Acceptance round"), 2)
        collected[final.period, accepting.id] = collect(ws, accepting, final.period, None, roster, workers=1)
        advance(1)
        accepted = report(ws, accepting, final.period)
        advance(1)
        lap(N_("acceptance"))
    # The last month's community forms as the messages `happyhome send` would mail (--dry-run).
    mailed = send_round(ws, systems[1], plans[-1].period, roster, dry_run=True)
    lap(N_("mail"))
    faults = [(p.period, str(r.path.relative_to(ws.returned(p.period))), r.note) for p in plans for r in p.returns if r.note]
    faults += [(p.period, f"{a} {roster.assessors[a].name}（{system}）", NOT_RETURNED) for p in plans for system, a in p.missing]
    faults += [(p.period, f"{code} {roster.subjects[code].name}", POSTPONED) for p in plans for code in p.postponed]
    faults.sort(key=lambda f: f[0])  # by month, stable
    return DemoResult(root, data.periods, len(data.subjects), len(data.assessors), files, faults, collected,
                      digests, summaries, rollups, seconds, selected, accepted, mailed)
