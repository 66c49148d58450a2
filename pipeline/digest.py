"""The round's HTML digest: one self-contained, offline page rendered from templates/.

The jinja2 `Environment` is built in one place (`environment()`), with autoescape on and the
filters registered beside it; the rollup page reuses it. Templates are looked up in the
installed package (the wheel ships the top-level templates/ as pipeline/templates) and then
in the source tree's templates/.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

import pipeline
from pipeline import charts
from pipeline.atomic import write_text
from pipeline.calibration import INTERVAL_NOTE
from pipeline.rounds import SUPERVISION, split_key
from pipeline.scoring import FLAG_KINDS, NOT_RATED, RoundResult, half_up, rounding_note



def template_dirs() -> list[Path]:
    """Where templates are looked up: the installed package first, then the source tree."""
    here = Path(pipeline.__file__).resolve().parent
    candidates = [here / "templates", here.parent / "templates"]
    return [p for p in candidates if p.is_dir()]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def fmt_num(value, decimals: int = 2, empty: str = "—") -> str:
    """A number with fixed decimals; — for a missing one."""
    if _missing(value):
        return empty
    return f"{float(value):.{decimals}f}"


def fmt_pct(value, decimals: int = 1, empty: str = "—") -> str:
    """A share 0..1 as a percentage."""
    if _missing(value):
        return empty
    return f"{float(value) * 100:.{decimals}f}%"


def fmt_int(value, empty: str = "—") -> str:
    if _missing(value):
        return empty
    return str(int(value))


def css_string(value) -> Markup:
    """`value` as a double-quoted CSS string, for `content:` in the page's stylesheet.

    Inside <style> HTML escapes are not decoded, so autoescaping would print &#34; literally:
    quotes, backslashes, line breaks, `<` (which could close the element) and other ASCII
    punctuation become CSS hex escapes instead; letters, digits and non-ASCII text stay as they are.
    """
    out = []
    for ch in "" if value is None else str(value):
        if ch.isalnum() or ch == " " or (ord(ch) > 0x7F and ch.isprintable()) or ch in "-_.,:;()/+":
            out.append(ch)
        else:
            out.append(f"\\{ord(ch):x} ")  # the space ends the escape and is not shown
    return Markup('"' + "".join(out) + '"')


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one jinja2 environment for every HTML happyhome writes."""
    dirs = template_dirs()
    if not dirs:
        raise RuntimeError("happyhome's templates are missing: the installation is incomplete")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in dirs]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(num=fmt_num, pct=fmt_pct, int0=fmt_int, css_string=css_string)
    # |tojson escapes < > & ' (so embedded data cannot close its <script>); Chinese stays as it
    # is rather than \uXXXX, which would double the size of a national ranking's data.
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False, "separators": (",", ":")}
    return env


def render(template: str, **context) -> str:
    """Render a template by name with the shared environment."""
    return environment().get_template(template).render(**context)


@dataclass
class Card:
    code: str
    name: str
    place: str
    total: float
    grade: str
    rank_label: str
    n_assessors: int
    strongest: list[tuple[str, float]] = field(default_factory=list)  # (item label, share)
    weakest: list[tuple[str, float]] = field(default_factory=list)
    remarks: list[tuple[str, str, str]] = field(default_factory=list)  # (assessor, item label, remark)
    flags: list[str] = field(default_factory=list)
    corrections: list[str] = field(default_factory=list)  # corrections in force after 公示, one line each
    why: str = ""  # in a large round's digest: why this subject has a card (前 20 名, 争议, 临近等级线 …)


def _place(row) -> str:
    return " ".join(str(v) for v in (row.get("province", ""), row.get("city", ""), row.get("county", "")) if v)


def _cards(result: RoundResult, scores: pd.DataFrame, names: dict[str, str], n_items: int = 3,
           corrections: dict[str, list[str]] | None = None, only: dict[str, str] | None = None) -> list[Card]:
    """The subject cards, in ranking order: of every rated subject, or of those in `only`
    (code -> why it has a card)."""
    labels = {i.code: f"{i.code} {i.level3}" for i in result.system.items}
    items, rated = result.items, result.rated
    if only is not None:
        items = items[items["subject"].isin(list(only))]
        rated = rated[rated["subject"].isin(list(only))]
        scores = scores[scores["subject"].isin(list(only))] if len(scores) else scores
    by_subject: dict[str, list[tuple[str, float]]] = {}
    for subject, item, share in zip(items["subject"], items["item"], items["share"]):
        by_subject.setdefault(subject, []).append((item, float(share)))
    remarks: dict = {}
    if len(scores):
        said = scores[scores["remark"].fillna("").str.strip() != ""]
        remarks = dict(tuple(said.groupby("subject", sort=False)))
    flags = result.flags.groupby("subject", sort=False)["message"].agg(list).to_dict() if len(result.flags) else {}
    cards = []
    for row in rated.to_dict("records"):
        mine = by_subject.get(row["subject"], [])
        best = sorted(mine, key=lambda x: (-x[1], x[0]))[:n_items]
        worst = sorted(mine, key=lambda x: (x[1], x[0]))[:n_items]
        said = remarks.get(row["subject"])
        cards.append(Card(
            code=row["subject"], name=row["name"], place=_place(row), total=row["total"], grade=row["grade"],
            rank_label=row["rank_label"], n_assessors=int(row["n_assessors"]),
            strongest=[(labels.get(item, item), share) for item, share in best],
            weakest=[(labels.get(item, item), share) for item, share in worst],
            remarks=[] if said is None else [(names.get(r.assessor, r.assessor), labels.get(r.item, r.item), r.remark)
                                             for r in said.itertuples()],
            flags=flags.get(row["subject"], []),
            corrections=(corrections or {}).get(row["subject"], []),
            why=(only or {}).get(row["subject"], ""),
        ))
    return cards


DISAGREEMENT = ("total_range", "item_range", "few_assessors")  # 争议: what the assessors' scores say


def card_choice(result: RoundResult, *, each: int, near_points: float, limit: int) -> tuple[dict[str, str], int]:
    """Which subjects of a large round get a card, and why: the top and bottom `each`, those with
    a disagreement flag (总分分歧, 指标分歧, 评估人数不足), and those whose total is within
    `near_points` of a grade line; at most `limit`, in that order of priority, the nearest to a
    line first. Returns (code -> why, how many more were near a line than could be shown)."""
    rated = result.rated
    codes = list(rated["subject"])
    why: dict[str, str] = {}
    for code in codes[:each]:
        why[code] = f"前 {each} 名"
    for code in codes[-each:] if each else []:
        why.setdefault(code, f"后 {each} 名")
    disputed = [code for code in _by_severity(result.flags) if code not in why]
    for code in disputed[:max(0, limit - len(why))]:
        why[code] = "争议"
    lines = sorted({float(b["min"]) for b in result.params["grades"]})
    near = []
    for code, total in zip(rated["subject"], rated["total"]):
        gap = min((abs(total - line), line) for line in lines) if lines else (math.inf, 0)
        if gap[0] <= near_points + 1e-9 and code not in why:
            near.append((gap[0], code, gap[1]))
    near.sort()
    room = max(0, limit - len(why))
    for _, code, line in near[:room]:
        why[code] = f"临近 {line:g} 分等级线"
    return why, {"disputed": sum(code not in why for code in disputed), "near": max(0, len(near) - room)}


def _by_severity(flags: pd.DataFrame) -> list[str]:
    """Subjects with a disagreement flag, the most pressing first: too few assessors, then the
    widest spread of the assessors' totals, then the most items in dispute."""
    f = flags[flags["kind"].isin(DISAGREEMENT)]
    if f.empty:
        return []
    per = pd.DataFrame({
        "few": f["kind"].eq("few_assessors").groupby(f["subject"], sort=False).any(),
        "spread": f["value"].where(f["kind"].eq("total_range"), 0.0).groupby(f["subject"], sort=False).max(),
        "items": f["kind"].eq("item_range").groupby(f["subject"], sort=False).sum(),
    })
    per["at"] = range(len(per))  # ties: in the order of the 争议 sheet
    return list(per.sort_values(["few", "spread", "items", "at"], ascending=[False, False, False, True],
                                kind="mergesort").index)


def listed_flags(flags: pd.DataFrame, limit: int) -> pd.DataFrame:
    """A large round's 争议 table: the disagreement flags (not the 临界 ones), of the most pressing
    subjects first (`_by_severity`), at most `limit` rows."""
    order = {code: n for n, code in enumerate(_by_severity(flags))}
    f = flags[flags["kind"].isin(DISAGREEMENT)]
    f = f.assign(_o=f["subject"].map(order)).sort_values("_o", kind="mergesort").drop(columns="_o")
    return f.head(limit)


def paged_table(rows: list[list], columns: list[list], *, body: str, keys: dict[str, int], grades: list[str],
                page_rows: int, grade_options: list[tuple[str, int]], flag_options: list[tuple[str, int]] | None,
                noscript: str, decimals: int = 2, **more) -> dict:
    """A large table of subjects for templates/_ranking_paged.html (the digest's ranking, the
    roll-up's heatmap): `rows` are lists of cells, `columns` say how the script draws each one
    ([kind, class, where in the row, …]: text, name, region, strong, badge, heat, nodata, spark,
    delta, move), `keys` where a row keeps its code, name, province, grade (and flag, fixes,
    tints). The rows' 省份 (at keys["province"]) and the cells of "region" columns are replaced
    by their places in the lists "provinces" and "regions": 10,000 copies of 浙江省 杭州市 would
    be 200 KB of a page that should stay under 3 MB. `more` goes into the data as it is."""
    provinces = sorted({r[keys["province"]] for r in rows if r[keys["province"]]})
    where = [c[2] for c in columns if c[0] == "region"]
    regions = sorted({r[at] for r in rows for at in where})
    p_at, r_at = {p: n for n, p in enumerate(provinces)}, {p: n for n, p in enumerate(regions)}
    for r in rows:
        r[keys["province"]] = p_at.get(r[keys["province"]], -1)
        for at in where:
            r[at] = r_at[r[at]]
    data = {"rows": rows, "columns": columns, "body": body, "keys": keys, "grades": grades, "provinces": provinces,
            "regions": regions, "decimals": decimals, **more}
    return {"data": data, "page_rows": page_rows, "grade_options": grade_options, "flag_options": flag_options,
            "noscript": noscript, "sparklines": any(c[0] == "spark" for c in columns)}


def ranking_data(rows: list[dict], level2: list[str], grades: list[str], *, by: str | None, calibrated: bool,
                 decimals: int, **table) -> dict:
    """The ranking of a large round as a `paged_table`: each row's cells already formatted as the
    small round's table shows them, plus what the filters need. Cells: 排名, 编号, 名称, 地区
    (its index in "regions"), 总分, 等级, 排名区间, [分组排名], [校准总分, 校准排名], 评估人数, one per
    二级指标, 标记 (the kinds; the messages are in 争议 and the summary's 争议 sheet); then 省份 (its
    index in "provinces"), corrections. `table` is the rest of paged_table's arguments."""
    out = []
    for r in rows:
        region = r["province"] + (f" {r['city']}" if r["city"] and r["city"] != r["province"] else "")
        cells = [fmt_int(r["rank"]), r["subject"], r["name"], region, fmt_num(r["total"], decimals), r["grade"],
                 r["rank_label"]]
        if by:
            cells.append(fmt_int(r["group_rank"]))
        if calibrated:
            cells += [fmt_num(r["calibrated_total"], decimals), fmt_int(r["calibrated_rank"])]
        cells.append(str(r["n_assessors"]))
        cells += [fmt_num(r[name], decimals) for name in level2]
        cells.append(r.get("flag_kinds", r["flags"]))
        out.append(cells + [r["province"] or "", int(r.get("corrections", 0) or 0)])
    flag = 7 + bool(by) + 2 * bool(calibrated) + 1 + len(level2)
    columns = ([["text", "n", 0], ["text", "", 1], ["name", "nowrap", 2], ["region", "nowrap", 3], ["strong", "n", 4],
                ["badge", "", 5], ["text", "nowrap", 6]] + [["text", "n", at] for at in range(7, flag)]
               + [["text", "flagtext flagkinds", flag]])
    return paged_table(out, columns, body="ranking-rows", grades=grades, decimals=decimals,
                       keys={"code": 1, "name": 2, "grade": 5, "flag": flag, "province": flag + 1, "fixes": flag + 2},
                       by=bool(by), calibrated=bool(calibrated), n_level2=len(level2), **table)


def category_shares(result: RoundResult) -> list[tuple[str, float, float, float | None]]:
    """Per 二级指标: (name, 满分, mean subtotal over rated subjects, mean as a share of 满分)."""
    out = []
    rated = result.rated
    for name in result.system.level2_names:
        full = sum(i.max for i in result.system.items if i.level2 == name)
        # Shown and written with the round's decimals, so the workbook cell is the number read.
        mean = half_up(float(rated[name].mean()), result.params["rank_decimals"]) if len(rated) else math.nan
        # Shares are shown as 81.3%: kept at that precision too.
        out.append((name, full, mean, None if math.isnan(mean) else half_up(mean / full, 3)))
    return out


FLAG_ORDER = ("total_range", "item_range", "decision", "few_assessors")
# The [report] settings of the digest's layout (pipeline/happyhome.toml has them with their reasons).
LAYOUT = {"digest_full_max": 300, "digest_page_rows": 100, "digest_cards_each": 20, "digest_near_points": 0.5,
          "digest_cards_max": 200, "digest_flags_max": 300}


def flag_counts(result: RoundResult) -> list[tuple[str, int]]:
    """(kind in Chinese, number of subjects with it), for the kinds present, in a fixed order."""
    f = result.flags
    if f.empty:
        return []
    per_kind = f.groupby("kind")["subject"].nunique()
    return [(FLAG_KINDS[k], int(per_kind[k])) for k in FLAG_ORDER if k in per_kind]


def agreement_note(result: RoundResult, counts: list[tuple[str, int]]) -> str:
    """The agreement reading, qualified by the 争议 section's own counts so the two never disagree:
    alpha is about all subjects together, the flags about single ones."""
    reading = result.agreement.get("reading", "")
    if not counts:
        return f"{reading}本期没有需要提示的分歧或临界对象。"
    listed = "、".join(f"{kind} {n} 个对象" for kind, n in counts)
    return f"{reading}这是全体对象的总体情况；个别对象仍需留意（{listed}），见“争议与提示”。"


def digest_context(
    result: RoundResult,
    *,
    period: str,
    scores: pd.DataFrame,
    roster,
    chase: list[dict],
    assigned: int,
    received: int,
    files: list[dict],
    organiser: str = "",
    generated: datetime | None = None,
    files_received: int | None = None,
    self_files: int = 0,
    selection: dict | None = None,
    corrections: dict[str, list[str]] | None = None,
    layout: dict | None = None,
) -> dict:
    """Everything the digest template shows, as plain values.

    `layout` is the workspace's [report] settings: a round of more than `digest_full_max`
    subjects gets the large-round page (a searchable, filterable, paged ranking drawn by a small
    inline script from embedded data, printed whole; cards only for the subjects `card_choice`
    picks; the 临界 flags counted rather than listed).

    `received` and `assigned` count subject sheets; `files_received` counts the assessors'
    workbooks that came in (accepted or not), `files` those whose scores were counted, and
    `self_files` the subjects' own self-assessment workbooks, told apart (they are never scored).
    `selection` is a 遴选 round's outcome (`pipeline.selection.digest_part`), shown with its
    selection line. `corrections` are the lines of the corrections in force per subject
    (`corrections.subject_notes`).
    """
    system = result.system
    decimals = result.params["rank_decimals"]
    names = {a.code: a.name for a in roster.assessors.values()} if roster is not None else {}
    rated = result.rated
    grades = [b["name"] for b in result.params["grades"]] + [result.params["fail"]]
    dist = [(g, int((result.subjects["grade"] == g).sum())) for g in grades]
    unrated = int((result.subjects["grade"] == NOT_RATED).sum())
    cats = category_shares(result)
    rows = result.subjects.to_dict("records")
    subject_names = {r["subject"]: r["name"] for r in rows}
    kinds = result.flags.groupby("subject", sort=False)["kind"].agg(list).to_dict() if len(result.flags) else {}
    for r in rows:
        # The ranking shows what kind of flag a subject has; the messages are in 争议 and on its card.
        mine = kinds.get(r["subject"], [])
        r["flag_kinds"] = "、".join(FLAG_KINDS[k] for k in FLAG_ORDER if k in mine) or (
            r["flags"] if r["grade"] == NOT_RATED else "")
        r["corrections"] = len((corrections or {}).get(r["subject"], []))  # marked in the ranking
    counts = flag_counts(result)
    month, stage = split_key(period) or (period, SUPERVISION)  # a round's key: 2026-11 or 2027-03-遴选
    layout = {**LAYOUT, **(layout or {})}
    large = len(result.subjects) > int(layout["digest_full_max"])
    grades_all = grades + [NOT_RATED]
    chosen, more = (card_choice(result, each=int(layout["digest_cards_each"]),
                                     near_points=float(layout["digest_near_points"]),
                                     limit=int(layout["digest_cards_max"]))
                         if large else (None, {}))
    shown_flags = result.flags if not large else listed_flags(result.flags, int(layout["digest_flags_max"]))
    return {
        "title": f"{system.name} · {month} " + ("评估结果" if stage == SUPERVISION else f"{stage}结果"),
        "system": system,
        "period": month,
        "stage": "" if stage == SUPERVISION else stage,
        "organiser": organiser,
        "generated": (generated or datetime.now()).strftime("%Y-%m-%d %H:%M"),
        "headline": {
            "subjects": len(result.subjects),
            "rated": len(rated),
            "unrated": unrated,
            "assessors": int(scores["assessor"].nunique()) if len(scores) else 0,
            "received": received,
            "assigned": assigned,
            "files_received": len(files) if files_received is None else files_received,
            "files_counted": len(files),
            "self_files": self_files,
            "mean_total": half_up(float(rated["total"].mean()), decimals) if len(rated) else math.nan,
            "grades": dist + ([(NOT_RATED, unrated)] if unrated else []),
        },
        "rows": rows,
        "level2": list(system.level2_names),
        "by": result.by,
        "calibrated": result.calibrated,
        "categories": cats,
        "category_chart": Markup(charts.share_bars([c[0] for c in cats], [None if c[3] is None else c[3] * 100 for c in cats],
                                                   chart_id="categories")),
        "grade_chart": Markup(charts.count_bars([g for g, _ in dist], [n for _, n in dist], chart_id="grades")),
        "cards": _cards(result, scores, names, corrections=corrections, only=chosen),
        "n_corrections": sum(map(len, (corrections or {}).values())),
        "unrated": [r for r in rows if r["grade"] == NOT_RATED],
        "flags": [
            {"subject": f.subject, "name": subject_names.get(f.subject, ""),
             "kind": FLAG_KINDS.get(f.kind, f.kind), "message": f.message}
            for f in shown_flags.itertuples()
        ],
        "n_flags": len(result.flags),
        "large": large and {
            "table": ranking_data(rows, list(system.level2_names), grades_all, by=result.by,
                                  calibrated=result.calibrated, decimals=decimals,
                                  page_rows=int(layout["digest_page_rows"]),
                                  grade_options=dist + ([(NOT_RATED, unrated)] if unrated else []),
                                  flag_options=counts,
                                  noscript=f"同一文件夹中的 results-{system.id}.csv（完整排名）"),
            "cards_each": int(layout["digest_cards_each"]),
            "cards_max": int(layout["digest_cards_max"]),
            "near_points": float(layout["digest_near_points"]),
            "more": more,
            "more_flags": int(result.flags["kind"].isin(DISAGREEMENT).sum()) - len(shown_flags) if len(result.flags) else 0,
            "decision_subjects": int(result.flags.loc[result.flags["kind"] == "decision", "subject"].nunique())
            if len(result.flags) else 0,
        },
        "flag_counts": counts,
        "flagged_subjects": int(result.flags["subject"].nunique()) if len(result.flags) else 0,
        "agreement_note": agreement_note(result, counts),
        "chase": chase,
        "assessors": result.assessors.to_dict("records"),
        "method": {
            "note": result.method_note,
            "params": result.params,
            "agreement": result.agreement,
            "effects_message": result.effects_message,
            "files": files,
            "declared": 0,  # declared conflicts (回避 = 是) of the round, set by report
        },
        "rank_changes": result.rank_changes.to_dict("records") if result.rank_changes is not None else [],
        "level_pct": f"{result.params['level']:.0%}",
        "interval_note": INTERVAL_NOTE,
        "decimals": decimals,
        "rounding": rounding_note(decimals),
        "selection": selection,
        "acceptance": None,  # a 验收 round's results (pipeline.acceptance.digest_part), set by report
        "selfcheck": None,  # 自评与核定 (pipeline.selfcheck.digest_part) when self-assessments are in, set by report
    }


def render_digest(context: dict) -> str:
    return render("digest.html", **context)


def write_digest(path: str | Path, context: dict) -> Path:
    """Render and write the digest atomically."""
    return write_text(path, render_digest(context))
