"""Plan who rates whom (the roster's 分配) for one system: K assessors per subject.

The plan is a bipartite b-matching solved as a maximum flow with scipy's
`scipy.sparse.csgraph.maximum_flow` (Dinic), a well-kept solver already among our dependencies:

    source -> subject (capacity K) -> assessor (capacity 1, eligible pairs only)
           -> "floor" sink node (capacity floor(T/m) per assessor)
           -> "extra" sink node (capacity 1 per assessor, r = T - m*floor(T/m) in all)

With T = subjects x K and m eligible assessors, a flow of T saturates every floor edge, so each
assessor gets floor or floor+1 pairs: loads differ by at most one. The same seed permutes subjects
and assessors the same way, so the same roster and seed give the same plan. Afterwards the
assessor-subject graph is made connected by swapping pairs between components (loads unchanged).

Nothing here prints or writes except `write_plan` and `write_roster_pairs`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components, maximum_flow

from pipeline.atomic import atomic_path
from pipeline.errors import InputError, UsageError
from pipeline.roster import ASSIGNMENT_COLUMNS, ASSIGNMENT_STATE, ASSIGNMENTS, ASSESSORS, RELEASED, Roster

AVOID_RULES = ("区县", "城市", "省份", "单位")
REPLACED, BALANCE, DECLARED = "replaced", "balance", "declared"  # why a pair changed (Plan.changes)
CHANGES_SHEET = "变动"  # output/assign-<system>.xlsx: what --replace / --replace-declared changed
CHANGES_COLUMNS = ("评估对象编号", "名称", "原评估人", "新评估人", "原因")
CHANGE_TEXT = {REPLACED: "替换", BALANCE: "为均衡负荷或保持连通而调整", DECLARED: "声明回避后补充"}
_KEYS = {"省份": ("province",), "城市": ("province", "city"), "区县": ("province", "city", "county")}


@dataclass
class Plan:
    system: str
    subject_type: str
    k: int
    avoid: tuple[str, ...]
    max_load: int | None
    seed: int
    replace: tuple[str, ...]
    subjects: list[str]
    assessors: list[str]  # the pool: every roster assessor not replaced
    pairs: list[tuple[str, str]]  # (assessor, subject), sorted by subject then assessor
    checks: list[tuple[str, bool]] = field(default_factory=list)  # (说明, holds)
    # --replace-declared: the round's declared conflicts (回避 = 是) of assigned pairs. They stay
    # in the plan (the assessor returned the sheet) but neither count towards K nor as load.
    declared: frozenset[tuple[str, str]] = frozenset()
    # What changed against the roster's current 分配 (--replace, --replace-declared):
    # (subject, from assessor or "", to assessor or "", why) — why: replaced | balance | declared
    changes: list[tuple[str, str, str, str]] = field(default_factory=list)
    replace_declared: bool = False  # planned with --replace-declared

    def loads(self) -> dict[str, int]:
        """Pairs per assessor of the pool, declared conflicts not counted."""
        out = {a: 0 for a in self.assessors}
        for a, s in self.pairs:
            if (a, s) not in self.declared:
                out[a] += 1
        return out

    @property
    def released(self) -> list[str]:
        """--replace: the assessors left with nothing to rate in this system (still in 评估人)."""
        return list(self.replace)

    @property
    def moved(self) -> list[tuple[str, str, str, str]]:
        """Pairs of other assessors moved to keep loads within one (--replace)."""
        return [c for c in self.changes if c[3] == BALANCE]


def _place(rule: str, subject, assessor) -> bool:
    """True when the pair breaks one --avoid rule."""
    if rule == "单位":
        org = assessor.org.strip()
        return bool(org) and (org == subject.name or org in subject.name)
    keys = _KEYS[rule]
    theirs = tuple(getattr(subject, k) for k in keys)
    mine = tuple(getattr(assessor, k) for k in keys)
    # 城市 and 区县 names repeat across provinces (e.g. 鼓楼区): compared with the levels above;
    # a blank place (the rule's own level) on either side never conflicts.
    return bool(theirs[-1]) and theirs == mine


def eligibility(roster: Roster, subjects: list[str], assessors: list[str], avoid) -> np.ndarray:
    """Boolean subjects x assessors: True where the assessor may rate the subject."""
    ok = np.ones((len(subjects), len(assessors)), dtype=bool)
    for rule in avoid:
        if rule == "单位":
            names = np.array([roster.subjects[s].name for s in subjects])
            by_org: dict[str, list[int]] = {}
            for j, a in enumerate(assessors):
                if roster.assessors[a].org.strip():
                    by_org.setdefault(roster.assessors[a].org.strip(), []).append(j)
            for org, cols in by_org.items():  # "equal or contained" is one substring test
                hit = np.char.find(names, org) >= 0
                if hit.any():
                    ok[np.ix_(hit, cols)] = False
            continue
        # vectorised by the place key (as in _place) so 10,000 x 2,000 stays fast
        keys = _KEYS[rule]
        s_key = [tuple(getattr(roster.subjects[s], k) for k in keys) for s in subjects]
        a_key = [tuple(getattr(roster.assessors[a], k) for k in keys) for a in assessors]
        codes: dict[tuple, int] = {}
        s_code = np.array([codes.setdefault(k, len(codes)) if k[-1] else -1 for k in s_key])
        a_code = np.array([codes.setdefault(k, len(codes)) if k[-1] else -2 for k in a_key])
        ok &= s_code[:, None] != a_code[None, :]
    index = {a: j for j, a in enumerate(assessors)}
    row = {s: i for i, s in enumerate(subjects)}
    for (a, s) in roster.conflicts:
        if a in index and s in row:
            ok[row[s], index[a]] = False
    return ok


def _fail(lines: list[str]) -> None:
    raise InputError("无法生成分配方案，未写入任何文件：\n" + "\n".join(f"  - {x}" for x in lines))


def _max_flow(eligible: np.ndarray, k: int, upper: np.ndarray, floor: int, extra: int,
              cand: np.ndarray | None) -> np.ndarray | None:
    """Pairs matrix (subjects x assessors) of a flow of T = n*k, or None when none exists.

    Each assessor j takes floor pairs for certain, plus up to upper[j]-floor more drawn from a
    shared pool of `extra`.
    """
    n, m = eligible.shape
    mask = eligible if cand is None else eligible & cand
    S, T, F, X = 0, n + m + 1, n + m + 2, n + m + 3  # source, sink, floor node, extra node
    si, aj = np.nonzero(mask)
    rows = [np.zeros(n, int), 1 + si]
    cols = [1 + np.arange(n), 1 + n + aj]
    caps = [np.full(n, k), np.ones(len(si), int)]
    if floor:
        rows.append(1 + n + np.arange(m)); cols.append(np.full(m, F)); caps.append(np.full(m, floor))
        rows.append(np.array([F])); cols.append(np.array([T])); caps.append(np.array([floor * m]))
    more = upper - floor
    if extra and more.any():
        have = np.nonzero(more > 0)[0]
        rows.append(1 + n + have); cols.append(np.full(len(have), X)); caps.append(more[have])
        rows.append(np.array([X])); cols.append(np.array([T])); caps.append(np.array([extra]))
    graph = sparse.csr_matrix((np.concatenate(caps).astype(np.int32),
                               (np.concatenate(rows), np.concatenate(cols))), shape=(n + m + 4,) * 2)
    result = maximum_flow(graph, S, T, method="dinic")
    if result.flow_value < n * k:
        return None
    flow = result.flow.tocsr()[1:n + 1, n + 1:n + 1 + m]
    return (flow.toarray() > 0)


def _components(assigned: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    n, m = assigned.shape
    si, aj = np.nonzero(assigned)
    graph = sparse.coo_matrix((np.ones(len(si)), (si, n + aj)), shape=(n + m,) * 2)
    count, labels = connected_components(graph, directed=False)
    return count, labels[:n], labels[n:]


def _connect(assigned: np.ndarray, eligible: np.ndarray, used: np.ndarray, rng) -> bool:
    """Swap pairs (s1,a1),(s2,a2) -> (s1,a2),(s2,a1) across components until one remains.

    Loads and K per subject are unchanged by a swap. Assessors with no pair (`used` False) are
    outside the graph. Returns False when no swap joins two components.
    """
    for _round in range(assigned.shape[0] + assigned.shape[1]):
        count, s_lab, a_lab = _components(assigned)
        live = set(s_lab.tolist())  # components that have a subject (idle assessors don't count)
        if len(live) <= 1 and all(a_lab[j] in live for j in np.nonzero(used)[0]):
            return True
        big = np.bincount(s_lab).argmax()
        si, aj = np.nonzero(assigned)
        inside = s_lab[si] == big
        A = list(zip(si[inside], aj[inside]))
        B = list(zip(si[~inside], aj[~inside]))
        order_a = rng.permutation(len(A))
        order_b = rng.permutation(len(B))
        done = False
        for ib in order_b:
            s2, a2 = B[ib]
            # s1 in A eligible for a2, not already paired with it; a1 eligible for s2, not on s2
            for ia in order_a:
                s1, a1 = A[ia]
                if eligible[s1, a2] and eligible[s2, a1] and not assigned[s1, a2] and not assigned[s2, a1]:
                    assigned[s1, a1] = assigned[s2, a2] = False
                    assigned[s1, a2] = assigned[s2, a1] = True
                    done = True
                    break
            if done:
                break
        if not done:
            return False
    return _components(assigned)[0] == 1


def plan_assignment(roster: Roster, system, k: int, avoid=(), max_load: int | None = None, seed: int = 0,
                    replace=(), declared=None, replace_declared: bool = False) -> Plan:
    """Plan the 分配 of one system's subjects; raises InputError naming what cannot be met.

    `replace`: reassign only these assessors' pairs (others' pairs move only as far as keeping
    loads within one needs). `declared`: the round's declared conflicts, (assessor, subject)
    pairs (read from the ledger when a round is named): they stay in the 分配 but count neither
    towards K nor as load, and are never moved. `replace_declared`: keep every pair and give each
    subject left with fewer than K assessors who did not declare a replacement."""
    avoid = tuple(dict.fromkeys(avoid))
    bad = [r for r in avoid if r not in AVOID_RULES]
    if bad:
        raise UsageError(f"--avoid 只能是 {'、'.join(AVOID_RULES)}，实际为 {'、'.join(bad)}")
    if k < 1:
        raise UsageError("--per-subject 至少为 1")
    unknown = [a for a in replace if a not in roster.assessors]
    if unknown:
        raise UsageError(f"--replace：评估人 {'、'.join(unknown)} 不在工作表“{ASSESSORS}”中")
    if replace and replace_declared:
        raise UsageError("--replace 与 --replace-declared 请分两次运行")
    subjects = [c for c, s in roster.subjects.items() if s.type == system.subject_type]
    if not subjects:
        raise InputError(f"名册中没有类型为“{system.subject_type}”的评估对象")
    # Assessors released from this system earlier (分配 rows marked 已替换) are not planned again.
    mine = set(subjects)
    released = {a for a, s in roster.released if s in mine} - {a for a, s in roster.pairs if s in mine}
    out = set(replace) | released
    pool = [a for a in roster.assessors if a not in out]
    n, m = len(subjects), len(pool)
    eligible = eligibility(roster, subjects, pool, avoid)
    rng = np.random.default_rng(seed)
    current = set(roster.pairs)
    keep = replace_declared  # keep every pair, add replacements
    declared = frozenset(p for p in (declared or ()) if p in current)
    if declared:
        index = {a: j for j, a in enumerate(pool)}
        row = {s: i for i, s in enumerate(subjects)}
        for a, s in declared:  # a declared pair is a conflict from now on
            if a in index and s in row:
                eligible[row[s], index[a]] = False
    short = [(subjects[i], int(c)) for i, c in enumerate(eligible.sum(axis=1)) if c < k]
    if short and (replace or keep):
        short = []  # the current 分配 is kept: only the subjects that need someone new are checked below
    if short:
        named = "、".join(f"{s}（{roster.subjects[s].name}，{c} 位可选）" for s, c in short[:20])
        more = f" 等 {len(short)} 个" if len(short) > 20 else ""
        _fail([f"以下评估对象可选的评估人少于每个对象所需的 {k} 位：{named}{more}",
               "可以：增加来自其他区县/城市/单位的评估人；减小 --per-subject；或放宽 --avoid 规则（"
               f"当前：{'、'.join(avoid) or '无'}），或核对“回避”工作表"])
    if k == 1 and n > 1:
        _fail(["每个对象只有 1 位评估人时，评估人之间无法比较（分配图不连通）；请将 --per-subject 设为 2 或以上"])

    if keep:
        assigned, _added = _add_for_declared(roster, subjects, pool, eligible, k, max_load, declared, rng)
    elif replace:
        assigned = _replace(roster, subjects, pool, eligible, k, max_load, replace, rng, declared)
    else:
        assigned = _solve(roster, subjects, pool, eligible, k, max_load, rng)
    # Declared pairs give no scores: they neither join the graph nor are swapped away by _connect.
    void = np.zeros_like(assigned)
    index, row = {a: j for j, a in enumerate(pool)}, {s: i for i, s in enumerate(subjects)}
    for a, s in declared:
        if a in index and s in row:
            void[row[s], index[a]] = assigned[row[s], index[a]]
    live = assigned & ~void
    if not keep and not _connect(live, eligible, live.any(axis=0), rng):
        _fail(["符合规则的分配无法连成一个整体（评估人之间无法相互比较）",
               "可以：增加评估人、增大 --per-subject，或放宽 --avoid 规则"])
    assigned = live | void
    si, aj = np.nonzero(assigned)
    order = {a: j for j, a in enumerate(pool)}
    pairs = [(pool[j], subjects[i]) for i, j in sorted(zip(si.tolist(), aj.tolist()),
                                                        key=lambda p: (p[0], order[pool[p[1]]]))]
    plan = Plan(system.id, system.subject_type, k, avoid, max_load, seed, tuple(replace), subjects, pool, pairs,
                declared=declared, replace_declared=keep)
    if replace or keep:
        plan.changes = _changes(roster, subjects, pairs, replace, keep)
    plan.checks = check(plan, roster)
    failed = [text for text, ok in plan.checks if not ok]
    if failed:
        _fail([f"未满足：{t}" for t in failed] + ["可以：增加评估人、减小 --per-subject、放宽 --avoid，或设 --max-load"])
    return plan


def _solve(roster, subjects, pool, eligible, k, max_load, rng) -> np.ndarray:
    n, m = eligible.shape
    ps, pa = rng.permutation(n), rng.permutation(m)  # the seed decides who meets whom
    el = eligible[ps][:, pa]
    active = el.any(axis=0)
    m_live = int(active.sum())
    total = n * k
    floor, extra = divmod(total, m_live)
    attempts = []
    if max_load is None or max_load >= floor + (1 if extra else 0):
        upper = np.where(active, floor + 1 if extra else floor, 0)
        attempts.append((upper, floor, extra))
    if max_load is not None:
        attempts.append((np.where(active, max_load, 0), 0, total))
    result = None
    for upper, fl, ex in attempts:
        low = np.where(active, fl, 0)
        # floor edges only on active assessors: rebuild with floor per active assessor
        # a sparse candidate set first (fast on big rosters), the full set if that fails
        cand = None
        per = max(8 * k, 32)
        if m > 2 * per:
            keys = rng.random(el.shape) + (~el) * 2.0
            cand = keys <= np.partition(keys, per - 1, axis=1)[:, per - 1:per]
        for c in ([cand, None] if cand is not None else [None]):
            result = _flow_lower(el, k, upper, low, ex, c)
            if result is not None:
                break
        if result is not None:
            break
    if result is None:
        limit = f"每人不超过 {max_load} 个" if max_load is not None else f"每人 {floor}–{floor + (1 if extra else 0)} 个"
        counts = el.sum(axis=1)
        tight = [subjects[ps[i]] for i in np.argsort(counts, kind="stable")[:10]]
        _fail([f"在回避规则下，无法让每个对象有 {k} 位评估人且负荷均衡（{limit}）",
               f"可选评估人最少的评估对象：{'、'.join(tight)}",
               "可以：增加来自其他区县/城市/单位的评估人；减小 --per-subject；放宽 --avoid 规则；或设较大的 --max-load"])
    out = np.zeros_like(eligible)
    out[np.ix_(ps, pa)] = result
    return out


def _flow_lower(el, k, upper, low, extra, cand):
    """Flow with a per-assessor floor `low` (0 or one value for active assessors)."""
    fl = int(low.max()) if low.any() else 0
    if fl and not (low[low > 0] == fl).all():
        return None
    active = upper > 0
    if fl:
        # inactive assessors have neither floor nor extra edges
        n, m = el.shape
        keep = np.nonzero(active)[0]
        sub = _max_flow(el[:, keep], k, upper[keep], fl, int(extra), None if cand is None else cand[:, keep])
        if sub is None:
            return None
        out = np.zeros_like(el)
        out[:, keep] = sub
        return out
    return _max_flow(el, k, upper, 0, int(extra), cand)


def _replace(roster, subjects, pool, eligible, k, max_load, replace, rng, declared=frozenset()) -> np.ndarray:
    """Keep every pair but those of `replace`; give each freed slot to the least-loaded eligible,
    then rebalance (`_rebalance`). Declared pairs neither count nor move; a replaced assessor's
    declared pair frees nothing (its subject was already given someone else)."""
    row = {s: i for i, s in enumerate(subjects)}
    col = {a: j for j, a in enumerate(pool)}
    current = roster.assignments(roster.subjects[subjects[0]].type)
    assigned = np.zeros_like(eligible)
    void = np.zeros_like(eligible)
    freed: list[int] = []
    for a, ss in current.items():
        for s in ss:
            if a in col:
                assigned[row[s], col[a]] = True
                void[row[s], col[a]] = (a, s) in declared
            elif (a, s) not in declared:
                freed.append(row[s])
    counts = (assigned & ~void).sum(axis=1)
    if (counts + np.bincount(freed, minlength=len(subjects)) != k).any():
        wrong = [subjects[i] for i in np.nonzero(counts + np.bincount(freed, minlength=len(subjects)) != k)[0]]
        raise UsageError(f"--replace 只替换已有分配；现有分配中这些对象的评估人数不是 {k}："
                         f"{'、'.join(wrong[:20])}。若这些对象因评估人声明回避而补充过评估人，请加 --period 读取本期的声明回避；"
                         "否则请先不带 --replace 重新生成分配")
    rank = rng.permutation(len(pool))  # ties broken by a seeded order
    loads = (assigned & ~void).sum(axis=0)
    for i in sorted(freed, key=lambda i: rng.random()):
        ok = eligible[i] & ~assigned[i]
        if max_load is not None:
            ok &= loads < max_load
        if not ok.any():
            _fail([f"评估对象 {subjects[i]}（{roster.subjects[subjects[i]].name}）没有可接替的评估人",
                   "可以：增加评估人、放宽 --avoid 规则，或设较大的 --max-load"])
        j = min(np.nonzero(ok)[0], key=lambda j: (loads[j], rank[j]))
        assigned[i, j] = True
        loads[j] += 1
    if max_load is None and not _rebalance(assigned, eligible, rank, void):
        busy = (assigned & ~void).sum(axis=0)
        heavy = [pool[j] for j in np.nonzero(busy == busy.max())[0]][:10]
        _fail([f"替换后评估人负荷相差超过 1（{busy[busy > 0].min()}–{busy.max()}），且无法通过调整其他评估人的分配消除："
               f"负荷最高的 {'、'.join(heavy)} 的评估对象都不能转给负荷较低的评估人（回避规则）",
               "可以：不带 --replace 重新生成分配；或设 --max-load 允许负荷不均"])
    return assigned


def _rebalance(assigned: np.ndarray, eligible: np.ndarray, rank: np.ndarray, void: np.ndarray) -> bool:
    """Move pairs until the loads of assessors with work differ by at most one; False if stuck.

    Each step takes one pair off a most-loaded assessor and, through the shortest chain of moves
    (a gives subject s1 to b, b gives s2 to c, ...), adds one to an assessor at least two below
    the most loaded; every move keeps the rules (eligible, not already on the subject). Shortest
    chains move as few other pairs as a step allows; the pairs moved are reported by the caller.
    Declared pairs (`void`) are neither load nor moved.
    """
    busy = (assigned & ~void).any(axis=0)
    while True:
        loads = (assigned & ~void).sum(axis=0)
        live = loads[busy]
        high, low = int(live.max()), int(live.min())
        if high - low <= 1:
            return True
        sources = sorted(np.nonzero(busy & (loads == high))[0], key=lambda j: rank[j])
        parent: dict[int, tuple[int, int] | None] = {int(j): None for j in sources}
        queue, goal = list(parent), None
        for a in queue:  # breadth first: the list grows as it is walked
            own = np.nonzero(assigned[:, a] & ~void[:, a])[0]
            for i in own:
                cand = np.nonzero(eligible[i] & ~assigned[i] & busy)[0]
                for b in sorted(cand.tolist(), key=lambda j: rank[j]):
                    if b in parent:
                        continue
                    parent[b] = (a, int(i))
                    if loads[b] <= high - 2:
                        goal = b
                        break
                    queue.append(b)
                if goal is not None:
                    break
            if goal is not None:
                break
        if goal is None:
            return False
        b = goal
        while parent[b] is not None:
            a, i = parent[b]
            assigned[i, a], assigned[i, b] = False, True
            b = a


def _add_for_declared(roster, subjects, pool, eligible, k, max_load, declared, rng) -> tuple[np.ndarray, int]:
    """Keep every pair; give each subject with fewer than K assessors who did not declare a
    conflict a replacement: eligible (the rules, the 回避 sheet, not a declared pair), not already
    on it, lowest load first (declared pairs not counted), ties in seeded order."""
    row = {s: i for i, s in enumerate(subjects)}
    col = {a: j for j, a in enumerate(pool)}
    assigned = np.zeros_like(eligible)
    void = np.zeros_like(eligible)  # declared pairs: assigned, but no load and no part of K
    for a, ss in roster.assignments(roster.subjects[subjects[0]].type).items():
        for s in ss:
            if a in col:
                assigned[row[s], col[a]] = True
                void[row[s], col[a]] = (a, s) in declared
    rank = rng.permutation(len(pool))
    loads = (assigned & ~void).sum(axis=0)
    added = 0
    for i in range(len(subjects)):
        while (assigned[i] & ~void[i]).sum() < k:
            ok = eligible[i] & ~assigned[i]
            if max_load is not None:
                ok &= loads < max_load
            if not ok.any():
                _fail([f"评估对象 {subjects[i]}（{roster.subjects[subjects[i]].name}）没有可补充的评估人"
                       "（都已评估该对象、声明回避，或违反回避规则）",
                       "可以：增加评估人、放宽 --avoid 规则，或设较大的 --max-load"])
            j = min(np.nonzero(ok)[0], key=lambda j: (loads[j], rank[j]))
            assigned[i, j] = True
            loads[j] += 1
            added += 1
    return assigned, added


def _changes(roster: Roster, subjects: list[str], pairs, replace, keep: bool) -> list[tuple[str, str, str, str]]:
    """What the plan changes in the roster's 分配 for these subjects: (subject, from, to, why)."""
    mine = set(subjects)
    before = {p for p in roster.pairs if p[1] in mine}
    after = set(pairs)
    gone = sorted(before - after, key=lambda p: (p[0] not in replace, p[1], p[0]))  # the replaced first
    new = sorted(after - before, key=lambda p: (p[1], p[0]))
    out, taken = [], set()
    for a, s in gone:
        to = next((b for b, t in new if t == s and (b, t) not in taken), "")
        taken.add((to, s))
        out.append((s, a, to, REPLACED if a in replace else BALANCE))
    out += [(s, "", b, DECLARED if keep else BALANCE) for b, s in new if (b, s) not in taken]
    return sorted(out, key=lambda x: (x[0], x[3], x[1]))


def check(plan: Plan, roster: Roster) -> list[tuple[str, bool]]:
    """Each guarantee of a plan, worded for the 说明 sheet and the terminal, with whether it holds."""
    per: dict[str, set[str]] = {s: set() for s in plan.subjects}
    dup = False
    for a, s in plan.pairs:
        dup |= a in per[s]
        if (a, s) not in plan.declared:
            per[s].add(a)
    sizes = {len(v) for v in per.values()}
    if plan.declared:
        out = [(f"每个评估对象恰有 {plan.k} 位未声明回避的评估人（声明回避 {len(plan.declared)} 对，不计入）",
                sizes == {plan.k} and not dup)]
    else:
        out = [(f"每个评估对象恰有 {plan.k} 位不同的评估人", sizes == {plan.k} and not dup)]
    pool = plan.assessors
    new = {(b, s) for s, _a, b, why in plan.changes if b}
    # kept pairs of --replace-declared were planned under the rules of their day: only new ones are checked
    checked = [p for p in plan.pairs if p in new] if plan.replace_declared else plan.pairs
    bad = [(a, s) for a, s in checked if any(_place(r, roster.subjects[s], roster.assessors[a]) for r in plan.avoid)]
    rules = "、".join(plan.avoid) or "无"
    out.append((f"没有违反回避规则（--avoid：{rules}）的分配", not bad))
    out.append(("没有违反“回避”工作表的分配", not any(p in roster.conflicts for p in checked)))
    loads = plan.loads()
    busy = [v for v in loads.values() if v]
    spread = max(busy) - min(busy) if busy else 0
    if plan.max_load is not None:
        out.append((f"每位评估人负荷不超过 {plan.max_load}（实际 {min(busy)}–{max(busy)}）", max(busy) <= plan.max_load))
    elif plan.replace_declared:  # replacements mid-round go to the lowest loads; others' pairs are never moved
        out.append((f"补充的评估人均取自可选者中负荷最低的（负荷不计声明回避，实际 {min(busy)}–{max(busy)}）", True))
    else:
        moved = len(plan.moved)
        extra = f"；为此另调整了其他评估人的 {moved} 个分配" if moved else ""
        out.append((f"评估人负荷相差不超过 1（实际 {min(busy)}–{max(busy)}{extra}）", spread <= 1))
    if plan.replace:
        out.append((f"被替换的评估人 {'、'.join(plan.replace)} 不再有分配（仍保留在“评估人”表中）",
                    not any(a in plan.replace for a, _s in plan.pairs)))
    index = {a: j for j, a in enumerate(pool)}
    row = {s: i for i, s in enumerate(plan.subjects)}
    assigned = np.zeros((len(plan.subjects), len(pool)), dtype=bool)
    for a, s in plan.pairs:
        if (a, s) not in plan.declared:  # a declared pair gives no scores to compare
            assigned[row[s], index[a]] = True
    count, s_lab, a_lab = _components(assigned)
    labels = set(s_lab.tolist()) | set(a_lab[assigned.any(axis=0)].tolist())
    out.append(("评估人与评估对象的分配图连通（评估人宽严可相互比较）", len(labels) == 1))
    return out


def write_plan(plan: Plan, roster: Roster, target: str | Path) -> Path:
    """output/assign-<system>.xlsx: 分配 (the roster's two columns), 负荷 and 说明, atomically; with
    --replace or --replace-declared also 变动 (each pair changed, and why)."""
    import xlsxwriter

    target = Path(target)
    with atomic_path(target) as tmp:
        book = xlsxwriter.Workbook(str(tmp))
        head = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
        ws = book.add_worksheet(ASSIGNMENTS)
        ws.write_row(0, 0, ASSIGNMENT_COLUMNS, head)
        for r, (a, s) in enumerate(plan.pairs, start=1):
            ws.write_string(r, 0, a)
            ws.write_string(r, 1, s)
        ws.set_column(0, 1, 14)
        ws.freeze_panes(1, 0)
        ws = book.add_worksheet("负荷")
        ws.write_row(0, 0, ("评估人编号", "姓名", "单位", "负荷"), head)
        for r, (a, load) in enumerate(plan.loads().items(), start=1):
            person = roster.assessors[a]
            ws.write_row(r, 0, (a, person.name, person.org))
            ws.write_number(r, 3, load)
        ws.set_column(0, 3, 14)
        ws.set_column(2, 2, 28)
        ws.freeze_panes(1, 0)
        ws = book.add_worksheet("说明")
        ws.write_row(0, 0, ("项目", "内容"), head)
        rows = [("指标体系", plan.system), ("评估对象类型", plan.subject_type),
                ("评估对象数", str(len(plan.subjects))), ("评估人数", str(len(plan.assessors))),
                ("每个对象的评估人数（--per-subject）", str(plan.k)),
                ("回避规则（--avoid）", "、".join(plan.avoid) or "无"),
                ("负荷上限（--max-load）", "无" if plan.max_load is None else str(plan.max_load)),
                ("随机种子（--seed）", str(plan.seed)),
                ("替换的评估人（--replace）", "、".join(plan.replace) or "无")]
        if plan.replace:
            rows += [("已释放的评估人（本体系不再有评估对象，仍保留在“评估人”表中，不生成评分表、不催收）",
                      "、".join(f"{a} {roster.assessors[a].name}" for a in plan.released)),
                     ("替换规则", "被替换者的每个评估对象交给符合回避规则、未评该对象、负荷最低的评估人（同负荷按随机种子）；"
                                  "若负荷相差仍超过 1，再沿最短的调整链把负荷最高者的评估对象逐个转给负荷低者，"
                                  "直到相差不超过 1（其他分配不变；调整的分配见“变动”表）"),
                     ("为均衡负荷另调整的分配数", str(len(plan.moved)))]
        if plan.replace_declared:
            rows += [("声明回避（--replace-declared）", f"{len(plan.declared)} 对；评估人保留该分配（已交回声明），"
                                                      "为每个对象补充一位评估人，其他分配不变")]
        rows += [(("✓ " if ok else "✗ ") + text, "满足" if ok else "不满足") for text, ok in plan.checks]
        for r, row in enumerate(rows, start=1):
            ws.write_row(r, 0, row)
        ws.set_column(0, 0, 60)
        ws.set_column(1, 1, 20)
        ws.freeze_panes(1, 0)
        if plan.replace or plan.replace_declared:
            ws = book.add_worksheet(CHANGES_SHEET)
            ws.write_row(0, 0, CHANGES_COLUMNS, head)
            for r, (subject, old, new, why) in enumerate(plan.changes, start=1):
                ws.write_row(r, 0, (subject, roster.subjects[subject].name, old, new, CHANGE_TEXT[why]))
            ws.set_column(0, 4, 14)
            ws.set_column(1, 1, 26)
            ws.set_column(4, 4, 28)
            ws.freeze_panes(1, 0)
        for ws in book.worksheets():  # printed: A4 landscape, one page wide, the header on every page
            ws.set_landscape()
            ws.set_paper(9)
            ws.fit_to_pages(1, 0)
            ws.repeat_rows(0)
        book.close()
    return target


def write_roster_pairs(plan: Plan, roster: Roster, path: str | Path) -> Path:
    """Replace the 分配 rows of the plan's subjects in the roster, keeping every other row.

    The old roster is first copied to roster-YYYYMMDD-HHMMSS.xlsx beside it. A roster whose
    分配 is empty (everyone rates everything) gets the other subjects' implicit pairs written out,
    so other systems keep their meaning.
    """
    import openpyxl

    path = Path(path)
    backup = path.with_name(f"{path.stem}-{datetime.now():%Y%m%d-%H%M%S}{path.suffix}")
    shutil.copy2(path, backup)
    mine = set(plan.subjects)
    if roster.pairs:
        kept = [(a, s) for a, s in roster.pairs if s not in mine]
    else:
        kept = [(a, s) for s in roster.subjects if s not in mine for a in roster.assessors]
    live = set(kept) | set(plan.pairs)
    released = [p for p in roster.released if p not in live]
    released += [(a, s) for s, a, _to, why in plan.changes if why == REPLACED and (a, s) not in released]
    book = openpyxl.load_workbook(path)
    if ASSIGNMENTS in book.sheetnames:
        ws = book[ASSIGNMENTS]
        ws.delete_rows(2, ws.max_row)
    else:
        ws = book.create_sheet(ASSIGNMENTS)
    for c, name in enumerate((*ASSIGNMENT_COLUMNS, *((ASSIGNMENT_STATE,) if released else ())), start=1):
        ws.cell(row=1, column=c, value=name)
    rows = [(a, s, "") for a, s in [*kept, *plan.pairs]] + [(a, s, RELEASED) for a, s in released]
    for r, (a, s, state) in enumerate(rows, start=2):
        ws.cell(row=r, column=1, value=a).number_format = "@"
        ws.cell(row=r, column=2, value=s).number_format = "@"
        if state:
            ws.cell(row=r, column=3, value=state).number_format = "@"
    with atomic_path(path) as tmp:
        book.save(tmp)
    return backup
