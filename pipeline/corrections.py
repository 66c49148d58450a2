"""Corrections after 公示: an objection or a 复核 changes a score, and the original is kept.

`amend` records one correction of one score in the ledger (who, when, why, the value in force
before and the new one) and `undo` withdraws one; both append a row, nothing is overwritten
(`ledger.SCHEMA_V3`). A correction is checked the way a returned score is: the item exists in
the system, the subject and the assessor are in the roster and the assessor is assigned the
subject, the score is read by `collect.normalise_score` (0..满分, text numbers), and there must
be an accepted score to correct — a correction never invents a missing return.

Which value counts: per (sheet, item) the latest correction not undone, applied by
`Ledger.accepted_scores`, so the report, the digest and the roll-up all use it. A correction
belongs to the return it corrected: when a newer return supersedes that sheet the correction no
longer applies (status 已失效) and the newer return's scores count as they are.

Undo is last-in first-out per score: a correction followed by another of the same score is
undone after it, so the value after an undo is always the one recorded before the correction.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from pipeline.collect import normalise_score, raw_text
from pipeline.config import Workspace
from pipeline.errors import UsageError
from pipeline.ledger import Ledger
from pipeline.roster import Roster
from pipeline.systems import System

IN_FORCE, UNDONE, STALE = "有效", "已撤销", "已失效"
AMEND, UNDO = "amend", "undo"

# Every message an officer reads from this module, written once.
MESSAGES = {
    "no_reason": "请用 --reason 写明更正理由（如“公示异议复核”），理由不能为空。",
    "unknown_item": "指标编号 {item} 不是“{system}”的指标（有效编号 {first}…{last}）。",
    "unknown_subject": "评估对象编号 {subject} 不在名单中（{type}）。",
    "unknown_assessor": "评估人编号 {assessor} 不在名单中。",
    "not_assigned": "评估对象 {subject} 未分配给评估人 {assessor}，不能更正其评分。",
    "blank_score": "请用 --score 填写新的得分（0 到 {max} 之间的数字）。",
    "not_a_number": "{item} 的新得分“{found}”不是数字，请填写 0 到 {max} 之间的数字。",
    "error_value": "{item} 的新得分“{found}”不是数字，请填写 0 到 {max} 之间的数字。",
    "out_of_range": "{item} 的新得分 {found} 超出范围，应在 0 到 {max} 之间。",
    "no_return": "该评估人（{assessor}）本轮没有已接收的 {subject} 评分，无法更正；请先收取其评分表。",
    "no_change": "{subject} / {assessor} / {item} 的现行得分已是 {score}，与新得分相同，未记录更正。",
    "undo_unknown": "本轮（{system} {period}）没有编号为 {number} 的更正；用 happyhome amend --list 查看本轮的更正。",
    "undo_undo": "#{number} 是一条撤销记录，不能再撤销；如需恢复该分数，请重新运行 happyhome amend。",
    "undo_twice": "更正 #{number} 已于 {when} 由 {who} 撤销（撤销记录 #{by}），不能重复撤销。",
    "undo_stale": "更正 #{number} 已失效：其所更正的评分表已被较新的评分表替换，无需撤销。",
    "undo_order": "更正 #{number} 之后，同一评分又有更正 #{later}，请先撤销 #{later}。",
}


def _fail(code: str, **fields) -> UsageError:
    return UsageError(MESSAGES[code].format(**fields))


def operator() -> str:
    """Who runs the command: the operating-system user."""
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # noqa: BLE001 - no login name (a container, a service account): still record something
        return os.environ.get("USERNAME") or os.environ.get("USER") or "unknown"


def shown(value: float) -> str:
    """A score as people write it: 8, 6.5."""
    return f"{float(value):g}"


@dataclass
class Recorded:
    """One row appended to the ledger by `amend` or `undo`."""

    id: int
    action: str
    subject: str
    assessor: str
    item: str
    old: float
    new: float
    reason: str
    operator: str
    created_at: str
    undoes: int | None = None


# -- amend -----------------------------------------------------------------------------------
def amend(ws: Workspace, system: System, period: str, roster: Roster, *, subject: str, assessor: str, item: str,
          score: object, reason: str, who: str | None = None, now: datetime | None = None) -> Recorded:
    """Record a correction of one accepted score of the round `period` (a round key)."""
    reason = (reason or "").strip()
    if not reason:
        raise _fail("no_reason")
    subject, assessor = str(subject).strip(), str(assessor).strip()
    code = system.codes_by_upper.get(str(item).strip().upper())
    if code is None:
        raise _fail("unknown_item", item=item, system=system.name, first=system.codes[0], last=system.codes[-1])
    of_type = {c for c, s in roster.subjects.items() if s.type == system.subject_type}
    if subject not in of_type:
        raise _fail("unknown_subject", subject=subject, type=system.subject_type)
    if assessor not in roster.assessors:
        raise _fail("unknown_assessor", assessor=assessor)
    if subject not in roster.assignments(system.subject_type).get(assessor, []):
        raise _fail("not_assigned", subject=subject, assessor=assessor)
    maximum = system.by_code[code].max
    value, _, error = normalise_score(score, maximum)
    if error is not None:
        raise _fail(error if error in MESSAGES else "not_a_number", item=code, found=raw_text(score), max=shown(maximum))
    with Ledger.open(ws, reading=True) as ledger, ledger.transaction():
        found = ledger.score_of(period, system.id, assessor, subject, code)
        if found is None:
            raise _fail("no_return", assessor=assessor, subject=subject)
        sheet_id, current, _ = found
        fixes = ledger.corrections_in_force(period, system.id)
        fixes = fixes[(fixes["sheet_id"] == sheet_id) & (fixes["item"] == code)]
        if len(fixes):
            current = float(fixes["new_score"].iloc[-1])
        if abs(current - value) < 1e-9:
            raise _fail("no_change", subject=subject, assessor=assessor, item=code, score=shown(current))
        row = {"action": AMEND, "period": period, "system": system.id, "assessor": assessor, "subject": subject,
               "item": code, "sheet_id": sheet_id, "old_score": current, "new_score": value, "raw": raw_text(score),
               "reason": reason, "operator": who or operator(), "created_at": _stamp(now)}
        number = ledger.add_correction(row)
    return _recorded(number, row)


# -- undo ------------------------------------------------------------------------------------
def undo(ws: Workspace, system: System, period: str, number: int, *, reason: str = "", who: str | None = None,
         now: datetime | None = None) -> Recorded:
    """Withdraw correction `number` of the round; the withdrawal is itself a row of the history."""
    with Ledger.open(ws, reading=True) as ledger, ledger.transaction():
        rows = ledger.corrections(period, system.id)
        mine = rows[rows["id"] == number]
        if not len(mine):
            raise _fail("undo_unknown", system=system.id, period=period, number=number)
        target = mine.iloc[0]
        if target["action"] == UNDO:
            raise _fail("undo_undo", number=number)
        if not pd.isna(target["undone_by"]):
            raise _fail("undo_twice", number=number, when=target["undone_at"], who=target["undone_op"],
                        by=int(target["undone_by"]))
        if target["sheet_status"] != "accepted":
            raise _fail("undo_stale", number=number)
        same = rows[(rows["action"] == AMEND) & (rows["sheet_id"] == target["sheet_id"])
                    & (rows["item"] == target["item"]) & rows["undone_by"].isna()]
        later = same[same["id"] > number]
        if len(later):
            raise _fail("undo_order", number=number, later=int(later["id"].iloc[-1]))
        # Last in, first out: the value before this correction is what it recorded as old.
        row = {"action": UNDO, "period": period, "system": system.id, "assessor": target["assessor"],
               "subject": target["subject"], "item": target["item"], "sheet_id": int(target["sheet_id"]),
               "old_score": float(target["new_score"]), "new_score": float(target["old_score"]), "raw": "",
               "reason": (reason or "").strip(), "operator": who or operator(), "created_at": _stamp(now),
               "undoes": int(number)}
        added = ledger.add_correction(row)
    return _recorded(added, row)


def _stamp(now: datetime | None) -> str:
    return (now or datetime.now()).isoformat(sep=" ", timespec="seconds")


def _recorded(number: int, row: dict) -> Recorded:
    return Recorded(number, row["action"], row["subject"], row["assessor"], row["item"], row["old_score"],
                    row["new_score"], row["reason"], row["operator"], row["created_at"], row.get("undoes"))


# -- the history -----------------------------------------------------------------------------
def history(rows: pd.DataFrame) -> pd.DataFrame:
    """`Ledger.corrections` with a `status` in Chinese: 有效 (counts), 已撤销, 已失效 (its return was
    superseded), 已被 #M 更正 (a later correction of the same score counts), 撤销 #N (an undo)."""
    rows = rows.copy()
    active = rows[(rows["action"] == AMEND) & rows["undone_by"].isna()]
    latest = active.groupby(["sheet_id", "item"])["id"].max().to_dict() if len(active) else {}
    status = []
    for r in rows.itertuples(index=False):
        if r.action == UNDO:
            status.append(f"撤销 #{int(r.undoes)}")
        elif not pd.isna(r.undone_by):
            status.append(UNDONE)
        elif r.sheet_status != "accepted":
            status.append(STALE)
        elif latest.get((r.sheet_id, r.item)) != r.id:
            status.append(f"已被 #{latest[(r.sheet_id, r.item)]} 更正")
        else:
            status.append(IN_FORCE)
    rows["status"] = pd.Series(status, index=rows.index, dtype=object)
    return rows


def round_history(ws: Workspace, system: System, period: str) -> pd.DataFrame:
    """The round's corrections and undos with their status (for `amend --list`)."""
    with Ledger.open(ws, reading=True) as ledger:
        return history(ledger.corrections(period, system.id))


REGISTER_HEAD = ["编号", "时间", "操作人", "操作", "对象编号", "对象名称", "评估人编号", "评估人", "指标编号", "三级指标",
                 "原分", "新分", "填写值", "理由", "状态"]


def register(rows: pd.DataFrame, roster: Roster | None, system: System) -> list[list]:
    """The rows of the summary's 更正记录 sheet, in REGISTER_HEAD order, oldest first."""
    subjects = {c: s.name for c, s in (roster.subjects if roster else {}).items()}
    people = {c: a.name for c, a in (roster.assessors if roster else {}).items()}
    level3 = {i.code: i.level3 for i in system.items}
    return [[int(r.id), r.created_at, r.operator, "更正" if r.action == AMEND else "撤销", r.subject,
             subjects.get(r.subject, ""), r.assessor, people.get(r.assessor, ""), r.item, level3.get(r.item, ""),
             float(r.old_score), float(r.new_score), r.raw, r.reason, r.status]
            for r in history(rows).itertuples(index=False)]


def cell_note(r) -> str:
    """What a corrected 得分 cell says: 更正 #1：原分 8 → 新分 6（理由；操作人 时间）."""
    return (f"更正 #{int(r.id)}：原分 {shown(r.old_score)} → 新分 {shown(r.new_score)}"
            f"（{r.reason}；{r.operator} {r.created_at}）")


def in_force(rows: pd.DataFrame) -> pd.DataFrame:
    """The corrections that count (status 有效)."""
    rows = history(rows)
    return rows[rows["status"] == IN_FORCE]


def subject_notes(rows: pd.DataFrame, roster: Roster | None, system: System) -> dict[str, list[str]]:
    """Per subject, one line per correction in force, for the digest."""
    people = {c: a.name for c, a in (roster.assessors if roster else {}).items()}
    level3 = {i.code: i.level3 for i in system.items}
    out: dict[str, list[str]] = {}
    for r in in_force(rows).itertuples(index=False):
        who = f"{people[r.assessor]}（{r.assessor}）" if r.assessor in people else r.assessor
        out.setdefault(r.subject, []).append(f"{who} · {r.item} {level3.get(r.item, '')}：{cell_note(r)}")
    return out
