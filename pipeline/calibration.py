"""Assessor calibration, bootstrap uncertainty and agreement for score totals.

Every function is pure: ``totals`` is a DataFrame with columns ``subject``,
``assessor`` and ``total`` (one row per accepted score sheet, 0..100).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import lsqr

LSQR_ROWS = 20_000  # above this, solve the sparse design iteratively
NOTE_INSEPARABLE = "与其他评估人没有共同评估对象，无法估计"
EFFECT_COLUMNS = ["assessor", "effect", "se", "n_subjects", "n_shared", "component", "separable", "note"]


def _clean(totals: pd.DataFrame) -> pd.DataFrame:
    # A sheet without a total carries no information for any statistic here.
    return totals.loc[totals["total"].notna(), ["subject", "assessor", "total"]].astype({"total": float})


def _components(a: np.ndarray, s: np.ndarray, n_a: int, n_s: int) -> tuple[int, np.ndarray]:
    """Component id (1-based) of each assessor in the assessor–subject graph."""
    graph = sparse.coo_matrix((np.ones(len(a)), (a, n_a + s)), shape=(n_a + n_s,) * 2)
    count, labels = connected_components(graph, directed=False)
    # Every subject hangs off some assessor, so the assessor labels are all of them.
    return count, labels[:n_a] + 1


def _within_subject_design(a: np.ndarray, s: np.ndarray, n_a: int, n_s: int) -> sparse.csr_matrix:
    """Assessor indicators minus their subject means (subject effects projected out)."""
    n = len(a)
    ind = sparse.csr_matrix((np.ones(n), (np.arange(n), a)), shape=(n, n_a))
    by_subject = sparse.csr_matrix((np.ones(n), (s, np.arange(n))), shape=(n_s, n))
    size = np.asarray(by_subject.sum(axis=1)).ravel()
    means = sparse.diags(1.0 / size) @ by_subject @ ind
    return (ind - means[s]).tocsr()


def _fit(design: sparse.csr_matrix, y: np.ndarray) -> np.ndarray:
    """Minimum-norm least-squares solution."""
    if design.shape[0] > LSQR_ROWS:
        return lsqr(design, y, atol=1e-12, btol=1e-12, iter_lim=10 * design.shape[1] + 100)[0]
    return np.linalg.lstsq(design.toarray(), y, rcond=None)[0]


def assessor_effects(totals: pd.DataFrame) -> pd.DataFrame:
    """Fit total = subject effect + assessor effect + noise; one row per assessor.

    Effects sum to zero within each connected component of the design;
    ``attrs["components"]`` and ``attrs["message"]`` describe connectivity.
    """
    t = _clean(totals)
    if t.empty:
        out = pd.DataFrame(columns=EFFECT_COLUMNS)
        out.attrs.update(components=0, message="")
        return out
    a, assessors = pd.factorize(t["assessor"], sort=True)
    s, subjects = pd.factorize(t["subject"], sort=True)
    n_a, n_s, n = len(assessors), len(subjects), len(t)
    count, comp = _components(a, s, n_a, n_s)
    separable = np.bincount(comp, minlength=count + 1)[comp] >= 2

    # Frisch–Waugh–Lovell: projecting out the subject effects leaves an n × assessors
    # problem. Its null space is exactly the per-component constants, so the
    # minimum-norm solution is the sum-to-zero-within-component estimate, and its
    # covariance is sigma² times the pseudo-inverse of the normal matrix.
    y = t["total"].to_numpy()
    y = y - pd.Series(y).groupby(s).transform("mean").to_numpy()
    design = _within_subject_design(a, s, n_a, n_s)
    effect = _fit(design, y)
    resid = y - design @ effect
    df = n - n_s - (n_a - count)
    sigma2 = resid @ resid / df if df > 0 else math.nan
    normal = (design.T @ design).toarray()
    se = np.sqrt(np.clip(sigma2 * np.diag(np.linalg.pinv(normal, rcond=1e-10, hermitian=True)), 0, None))

    raters = np.bincount(s, minlength=n_s)
    out = pd.DataFrame({
        "assessor": assessors.astype(str),
        "effect": np.where(separable, effect, math.nan),
        "se": np.where(separable, se, math.nan),
        "n_subjects": np.bincount(a, minlength=n_a),
        "n_shared": np.bincount(a, weights=(raters[s] >= 2).astype(float), minlength=n_a).astype(int),
        "component": comp,
        "separable": separable,
        "note": np.where(separable, "", NOTE_INSEPARABLE),
    }, columns=EFFECT_COLUMNS)
    groups = int((np.bincount(comp)[1:] >= 2).sum())
    out.attrs["components"] = count
    out.attrs["message"] = (
        f"评估设计不连通：评估人分成{groups}个互不共享评估对象的组，宽严效应只能在同一组内比较。"
        if groups > 1 else ""
    )
    return out


def calibrated_totals(totals: pd.DataFrame, effects: pd.DataFrame) -> pd.DataFrame:
    """Mean over a subject's assessors of (total − assessor effect).

    Inseparable or unknown assessors count as effect 0. Results are NOT clipped
    to 0..100: clipping would bias exactly the subjects at the ends of the scale.
    In a disconnected design, levels are only comparable within a component.
    """
    t = _clean(totals)
    shift = t["assessor"].map(effects.set_index("assessor")["effect"]).fillna(0.0)
    out = (t["total"] - shift).groupby(t["subject"]).mean()
    return out.rename("calibrated_total").rename_axis("subject").reset_index()


def _centre(draws: np.ndarray, trim: bool) -> np.ndarray:
    """Mean over the last axis, after dropping one highest and one lowest if trim."""
    if trim:
        draws = np.sort(draws, axis=-1)[..., 1:-1]
    return draws.mean(axis=-1)


def bootstrap(
    totals: pd.DataFrame,
    *,
    n: int = 2000,
    seed: int | None = 0,
    level: float = 0.90,
    trim_min: int | None = None,
) -> pd.DataFrame:
    """Percentile intervals for each subject's total and competition rank.

    Resamples each subject's assessors with replacement; trimming needs at least
    three values so something is left after dropping the extremes.
    """
    if not 0 < level < 1 or n < 1:
        raise ValueError("level must be in (0, 1) and n >= 1")
    t = _clean(totals)
    groups = t.groupby("subject", sort=True)["total"]
    subjects = [str(k) for k in groups.groups]
    values = [g.to_numpy() for _, g in groups]
    sizes = np.array([len(v) for v in values], dtype=int)
    rng = np.random.default_rng(seed)
    reps = np.empty((n, len(values)))
    for k in np.unique(sizes):  # sorted, so the draw order is fixed by the data
        cols = np.flatnonzero(sizes == k)
        table = np.stack([values[c] for c in cols])
        trim = trim_min is not None and k >= max(trim_min, 3)
        # Replicates in chunks of about 4M draws, so memory stays flat at national scale.
        step = max(1, 4_000_000 // (len(cols) * k))
        for start in range(0, n, step):
            stop = min(n, start + step)
            idx = rng.integers(0, k, size=(stop - start, len(cols), k))
            reps[start:stop, cols] = _centre(table[np.arange(len(cols))[None, :, None], idx], trim)
    ranks = _competition_ranks(reps)
    q = (1 - level) / 2 * 100
    return pd.DataFrame({
        "subject": subjects,
        "total_lo": _percentile(reps, q, "lower"),
        "total_hi": _percentile(reps, 100 - q, "higher"),
        "rank_lo": _percentile(ranks, q, "lower").astype(int),
        "rank_hi": _percentile(ranks, 100 - q, "higher").astype(int),
    })


def _percentile(values: np.ndarray, q: float, method: str, block: int = 1000) -> np.ndarray:
    """np.percentile over replicates, a block of subjects at a time: it sorts a copy."""
    if values.shape[1] == 0:
        return np.empty(0)
    return np.concatenate([np.percentile(values[:, i:i + block], q, axis=0, method=method)
                           for i in range(0, values.shape[1], block)])


def half_up_array(values: np.ndarray, decimals: int = 2) -> np.ndarray:
    """scoring.half_up over an array: half away from zero, after removing binary noise (59.995
    is 59.99499999… as a float; np.round would give 59.99, and rounds 0.125 to even, 0.12)."""
    scale = 10.0 ** decimals
    magnitude = np.floor(np.round(np.abs(values) * scale, 6) + 0.5) / scale
    return np.copysign(magnitude, values)


def _competition_ranks(reps: np.ndarray) -> np.ndarray:
    """Per replicate: 1 + how many subjects scored strictly higher (1, 2, 2, 4).

    Totals equal to 2 decimals (四舍五入) tie, as they do in the published ranking.
    """
    ranks = np.empty(reps.shape, dtype=np.int32)
    for i, row in enumerate(reps):
        key = half_up_array(row, 2)
        ranks[i] = len(key) - np.searchsorted(np.sort(key), key, side="right") + 1
    return ranks


def rank_label(rank: int, lo: int, hi: int) -> str:
    """"第3名（2–5）", or just "第3名" when the interval is that one rank."""
    rank, lo, hi = int(rank), int(lo), int(hi)
    return f"第{rank}名" if lo == hi == rank else f"第{rank}名（{lo}–{hi}）"


def decision_flags(
    plain: pd.DataFrame,
    intervals: pd.DataFrame,
    *,
    top_n: int | None = None,
    boundaries=(),
) -> pd.DataFrame:
    """One row per (subject, flag) where an interval straddles a decision line."""
    merged = plain[["subject", "rank"]].merge(intervals, on="subject").sort_values(["rank", "subject"])
    rows = []
    for r in merged.itertuples(index=False):
        if top_n is not None and r.rank_lo <= top_n < r.rank_hi:
            rows.append((r.subject, f"排名区间跨越前{top_n}名入选线（第{r.rank_lo}–{r.rank_hi}名）"))
        for b in boundaries:
            # Values on both sides of b: some below it, some at or above it.
            if r.total_lo < b <= r.total_hi:
                rows.append((r.subject, f"总分区间跨越{b:g}分等级线（{r.total_lo:.1f}–{r.total_hi:.1f}）"))
    return pd.DataFrame(rows, columns=["subject", "flag"])


def _reading(alpha: float, why_nan: str) -> str:
    if math.isnan(alpha):
        return why_nan
    a = f"α={alpha:.2f}"
    if alpha >= 0.8:
        return f"评估人之间一致性高（{a}），排名可信度较好。"
    if alpha >= 0.667:
        return f"评估人之间一致性尚可（{a}），排名可作参考，相近名次宜谨慎解读。"
    return f"评估人之间一致性偏低（{a}），排名可信度有限，建议复核争议对象。"


def interval_alpha(values: np.ndarray, units: np.ndarray) -> float:
    """Krippendorff's alpha, interval metric, in closed form: O(n) time and memory.

    The `krippendorff` package builds a value-by-value coincidence matrix, which grows with the
    square of the distinct totals (1.6 s and 700 MB for 500 ratings); the interval metric needs
    only per-unit sums: over ordered pairs, sum (a - b)^2 = 2 (m * sum v^2 - (sum v)^2).
    Units with fewer than two values are not pairable and are left out, as in the definition.
    """
    values = np.asarray(values, dtype=float)
    _, unit, counts = np.unique(np.asarray(units), return_inverse=True, return_counts=True)
    keep = counts[unit] >= 2
    v, unit = values[keep], unit[keep]
    n = v.size
    if n < 2:
        return math.nan
    m = np.bincount(unit).astype(float)
    s1, s2 = np.bincount(unit, weights=v), np.bincount(unit, weights=v * v)
    pairable = m >= 2
    observed = (2 * (m[pairable] * s2[pairable] - s1[pairable] ** 2) / (m[pairable] - 1)).sum() / n
    expected = 2 * (n * (v * v).sum() - v.sum() ** 2) / (n * (n - 1))
    return math.nan if expected <= 0 else float(1 - observed / expected)


def agreement(totals: pd.DataFrame) -> dict:
    """Krippendorff's alpha (interval) over the assessor × subject matrix."""
    t = _clean(totals)
    n_s, n_a = t["subject"].nunique(), t["assessor"].nunique()
    matrix = t.pivot_table(index="assessor", columns="subject", values="total", aggfunc="mean")
    # Subjects with a single rating are not pairable; alpha ignores them anyway.
    shared = matrix.loc[:, matrix.notna().sum(axis=0) >= 2].to_numpy()
    alpha, why = math.nan, "评估人数不足，无法计算一致性。"
    if n_a >= 2 and shared.size == 0:
        why = "没有被两名及以上评估人共同评估的对象，无法计算一致性。"
    elif n_a >= 2 and np.unique(shared[~np.isnan(shared)]).size < 2:
        why = "共同评估对象的评分完全相同，无法计算一致性。"
    elif n_a >= 2:
        units = np.broadcast_to(np.arange(shared.shape[1]), shared.shape)
        present = ~np.isnan(shared)
        alpha = interval_alpha(shared[present], units[present])
    return {"alpha": alpha, "n_subjects": n_s, "n_assessors": n_a, "reading": _reading(alpha, why)}
