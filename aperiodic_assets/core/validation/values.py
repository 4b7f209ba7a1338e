"""Checks of the metric values: ``identities``, ``averages``, ``ranges_and_nan``, ``plausibility``.

Tolerance is ``|x - y| <= abs_tol + rel_tol * |y|`` with ``y`` the value the definition implies;
the tolerances in force are the configured ones, raised for metrics stored in a narrower float
(``ValidationConfig.at_precision``). Identity and average messages state them, and both checks
carry them in their metadata.
NaN operands are never identity or range violations: NaN is judged by ``nan_share`` (hard, over
the threshold) and ``nan_present`` (soft, under it), which count columns, not rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..schema import METRIC_COLUMNS
from .engine import CheckSpec, Context, Finding, Judge, num

_PCTS = ("bid_percentage", "ask_percentage")
_AVG_PCTS = ("bid_percentage_avg", "ask_percentage_avg")
#: Bounds of each bounded metric column; the ratio columns may be +inf (ask amount 0).
_RANGES: dict[str, tuple[float, float]] = {
    "imbalance_ratio": (-1.0, 1.0),
    "bid_ask_ratio": (0.0, math.inf),
    "bid_percentage": (0.0, 1.0),
    "ask_percentage": (0.0, 1.0),
    "imbalance_ratio_avg": (-1.0, 1.0),
    "bid_ask_ratio_avg": (0.0, math.inf),
    "bid_percentage_avg": (0.0, 1.0),
    "ask_percentage_avg": (0.0, 1.0),
}
#: Columns where +inf has an explanation (a zero ask amount); elsewhere inf is corruption.
_RATIO_COLUMNS = ("bid_ask_ratio", "bid_ask_ratio_avg")
_INF_COLUMNS = tuple(c for c in METRIC_COLUMNS if c not in _RATIO_COLUMNS)

IDENTITIES = CheckSpec(
    "identities",
    "error",
    "the point columns agree with their definitions from the bid and ask amounts",
)
AVERAGES = CheckSpec(
    "averages",
    "error",
    "the *_avg columns keep the linear identities (an average of linear quantities stays linear)",
)
RANGES_AND_NAN = CheckSpec(
    "ranges_and_nan", "error", "values inside their valid ranges, NaN share under the threshold"
)
PLAUSIBILITY = CheckSpec(
    "plausibility",
    "warn",
    "values that are possible but suspicious: averages below the Jensen bound, a few NaN",
)


def _sum_to_one(bid: str, ask: str) -> Judge:
    def judge(ctx: Context) -> Finding:
        b, a = ctx.values[bid], ctx.values[ask]
        total = b + a
        return ctx.rows_finding(
            np.abs(total - 1.0) > ctx.tol(1.0),
            (bid, ask),
            f"{bid} + {ask} differs from 1 beyond {ctx.tolerance_words}",
            lambda r: f"{num(b[r])} + {num(a[r])} = {num(total[r])}",
            f"{bid} + {ask} = 1 in every row ({ctx.tolerance_words})",
            ctx.tolerance_metadata,
        )

    return judge


def _ratio_is_difference(ratio: str, bid: str, ask: str) -> Judge:
    def judge(ctx: Context) -> Finding:
        x, b, a = ctx.values[ratio], ctx.values[bid], ctx.values[ask]
        difference = b - a
        return ctx.rows_finding(
            np.abs(x - difference) > ctx.tol(difference),
            (ratio, bid, ask),
            f"{ratio} differs from {bid} - {ask} beyond {ctx.tolerance_words}",
            lambda r: f"{ratio}={num(x[r])} but {num(b[r])} - {num(a[r])} = {num(difference[r])}",
            f"{ratio} = {bid} - {ask} in every row ({ctx.tolerance_words})",
            ctx.tolerance_metadata,
        )

    return judge


IDENTITIES.add("pct_sum_to_one", "bid_percentage + ask_percentage = 1", _PCTS, _sum_to_one(*_PCTS))
IDENTITIES.add(
    "ratio_equals_pct_difference",
    "imbalance_ratio = bid_percentage - ask_percentage",
    ("imbalance_ratio", *_PCTS),
    _ratio_is_difference("imbalance_ratio", *_PCTS),
)


@IDENTITIES.rule(
    "bid_ask_ratio_matches_pcts",
    "bid_ask_ratio = bid_percentage / ask_percentage where ask_percentage > 0, +inf where it is 0",
    ("bid_ask_ratio", *_PCTS),
)
def _bid_ask_ratio_matches_pcts(ctx: Context) -> Finding:
    x, b, a = (ctx.values[c] for c in ("bid_ask_ratio", *_PCTS))
    quotient = b / a
    wrong_where_positive = (a > 0) & (np.abs(x - quotient) > ctx.tol(quotient))
    not_inf_where_zero = (a == 0) & ~np.isnan(x) & (x != np.inf)

    def detail(r: int) -> str:
        if a[r] == 0:
            return f"ask_percentage is 0, so bid_ask_ratio must be +inf, got {num(x[r])}"
        return f"bid_ask_ratio={num(x[r])} but {num(b[r])} / {num(a[r])} = {num(quotient[r])}"

    return ctx.rows_finding(
        wrong_where_positive | not_inf_where_zero,
        ("bid_ask_ratio", *_PCTS),
        "bid_ask_ratio is not bid_percentage / ask_percentage (beyond "
        f"{ctx.tolerance_words}; +inf exactly where ask_percentage is 0)",
        detail,
        "bid_ask_ratio = bid_percentage / ask_percentage, +inf exactly where ask_percentage is 0 "
        f"({ctx.tolerance_words})",
        ctx.tolerance_metadata,
    )


@IDENTITIES.rule(
    "imbalance_sign_matches_ratio",
    "sign(imbalance) = sign(imbalance_ratio) wherever |imbalance_ratio| > abs_tol",
    ("imbalance", "imbalance_ratio"),
)
def _imbalance_sign_matches_ratio(ctx: Context) -> Finding:
    imbalance, ratio = ctx.values["imbalance"], ctx.values["imbalance_ratio"]
    differ = (
        (np.sign(imbalance) != np.sign(ratio))
        & ~np.isnan(imbalance)
        & (np.abs(ratio) > ctx.config.abs_tol)
    )
    return ctx.rows_finding(
        differ,
        ("imbalance", "imbalance_ratio"),
        "sign(imbalance) differs from sign(imbalance_ratio) where |imbalance_ratio| > "
        f"{ctx.config.abs_tol:.3g}",
        lambda r: f"imbalance={num(imbalance[r])}, imbalance_ratio={num(ratio[r])}",
        "imbalance and imbalance_ratio have the same sign in every row where |imbalance_ratio| > "
        f"{ctx.config.abs_tol:.3g}",
        ctx.tolerance_metadata,
    )


def _columns_finding(
    ctx: Context,
    per_column: dict[str, np.ndarray],
    problem: str,
    ok: str,
    label: Callable[[str], str] = str,
) -> Finding:
    """Rows where any of ``per_column``'s masks is set; each column's row count in words."""
    rows = np.zeros(ctx.rows, dtype=bool)
    for mask in per_column.values():
        rows |= mask
    return ctx.rows_finding(
        rows,
        tuple(per_column),
        f"{problem} ("
        + ", ".join(f"{label(c)} in {np.count_nonzero(m)} rows" for c, m in per_column.items())
        + ")",
        lambda r: ", ".join(f"{c}={num(ctx.values[c][r])}" for c, m in per_column.items() if m[r]),
        ok,
    )


@IDENTITIES.rule(
    "unexplained_inf", "no +-inf outside bid_ask_ratio and bid_ask_ratio_avg", _INF_COLUMNS
)
def _unexplained_inf(ctx: Context) -> Finding:
    infinite = {c: np.isinf(ctx.values[c]) for c in _INF_COLUMNS}
    return _columns_finding(
        ctx,
        {c: m for c, m in infinite.items() if m.any()},
        "+-inf outside bid_ask_ratio and bid_ask_ratio_avg, where no zero amount explains it",
        "no inf outside the bid/ask ratio columns",
    )


AVERAGES.add(
    "avg_pct_sum_to_one",
    "bid_percentage_avg + ask_percentage_avg = 1",
    _AVG_PCTS,
    _sum_to_one(*_AVG_PCTS),
)
AVERAGES.add(
    "avg_ratio_equals_pct_difference",
    "imbalance_ratio_avg = bid_percentage_avg - ask_percentage_avg",
    ("imbalance_ratio_avg", *_AVG_PCTS),
    _ratio_is_difference("imbalance_ratio_avg", *_AVG_PCTS),
)


@RANGES_AND_NAN.rule(
    "ranges",
    "percentages in [0, 1], imbalance ratios in [-1, 1], bid/ask ratios >= 0 (inf allowed)",
    tuple(_RANGES),
)
def _ranges(ctx: Context) -> Finding:
    outside = {}
    for name, (low, high) in _RANGES.items():
        v = ctx.values[name]
        wrong = v < low - ctx.tol(low)
        if math.isfinite(high):
            wrong |= v > high + ctx.tol(high)
        if wrong.any():
            outside[name] = wrong
    return _columns_finding(
        ctx,
        outside,
        "values outside their valid range",
        "every value is inside its valid range",
        label=lambda c: f"{c} {_bounds(*_RANGES[c])}",
    )


def _bounds(low: float, high: float) -> str:
    return f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"


def _nan_finding(ctx: Context, columns: list[str], headline: str, ok: str) -> Finding:
    """Columns with NaN: counts per column in words and metadata, first NaN rows as examples."""
    if not columns:
        return Finding(0, ok)
    counts = ctx.nan_counts
    by_count: dict[int, list[str]] = {}
    for c in columns:
        by_count.setdefault(counts[c], []).append(c)
    words = "; ".join(
        f"{', '.join(names)} {n} of {ctx.rows} rows ({n / ctx.rows:.2%})"
        for n, names in by_count.items()
    )
    rows = np.zeros(ctx.rows, dtype=bool)
    for c in columns:
        rows |= np.isnan(ctx.values[c])
    first = np.flatnonzero(rows)[: ctx.config.max_examples]
    return Finding(
        len(columns),
        f"{headline} in {len(columns)} column(s): {words} (first at {ctx.where(int(first[0]))})",
        [ctx.example(int(r), tuple(columns)) for r in first],
        {f"nan_rows_{c}": counts[c] for c in columns},
    )


@RANGES_AND_NAN.rule(
    "nan_share",
    "NaN share per metric column at most nan_share_max (violations = columns)",
    METRIC_COLUMNS,
)
def _nan_share(ctx: Context) -> Finding:
    limit = ctx.config.nan_share_max
    over = [c for c, n in ctx.nan_counts.items() if ctx.rows and n / ctx.rows > limit]
    return _nan_finding(
        ctx, over, f"NaN share above {limit:.2%}", f"NaN share at most {limit:.2%} in every column"
    )


@PLAUSIBILITY.rule(
    "jensen_avg_ratio",
    "bid_ask_ratio_avg >= bid_percentage_avg / ask_percentage_avg (an average of ratios is "
    "never below the ratio of averages)",
    ("bid_ask_ratio_avg", *_AVG_PCTS),
)
def _jensen_avg_ratio(ctx: Context) -> Finding:
    x, b, a = (ctx.values[c] for c in ("bid_ask_ratio_avg", *_AVG_PCTS))
    of_averages = b / a
    below = (a > 0) & np.isfinite(of_averages) & (x < of_averages - ctx.tol(of_averages))
    return ctx.rows_finding(
        below,
        ("bid_ask_ratio_avg", *_AVG_PCTS),
        "bid_ask_ratio_avg is below bid_percentage_avg / ask_percentage_avg, impossible for an "
        "average of bid/ask ratios (Jensen)",
        lambda r: f"{num(x[r])} < {num(b[r])} / {num(a[r])} = {num(of_averages[r])}",
        "bid_ask_ratio_avg >= bid_percentage_avg / ask_percentage_avg wherever finite",
    )


@PLAUSIBILITY.rule(
    "nan_present",
    "any NaN below the nan_share threshold (violations = columns)",
    METRIC_COLUMNS,
)
def _nan_present(ctx: Context) -> Finding:
    limit = ctx.config.nan_share_max
    under = [c for c, n in ctx.nan_counts.items() if n and n / ctx.rows <= limit]
    return _nan_finding(ctx, under, f"NaN (below the {limit:.2%} threshold)", "no NaN")
