"""Validation of one l1_imbalance partition: pure, vectorized checks -> one ``ValidationReport``.

Owns what "valid" means before data reaches the warehouse (ARCHITECTURE.md, "Validation").
Never imports dagster: the asset layer declares ``CHECKS`` up front as asset check specs and
turns each ``CheckResult`` into an asset check result.

Every check in ``CHECKS`` appears in every report, in declaration order, with one of three
outcomes:

- passed;
- failed: evaluated and found ``violations`` (for completeness: expected grid rows missing);
- not evaluated: a column the check needs was rejected by the ``schema`` check (missing,
  duplicated, wrong type, nulls in ``time``), or, for ``completeness``, the file is empty.
  Such a check has ``passed=False`` and ``evaluated=False``: it still keeps an error-severity
  report from being ``ok``, but its cause is counted once, by ``schema`` or ``non_empty``,
  and not again as a violation of its own.

Conventions: ``violations`` counts rows, except ``schema`` (problems), ``nan_share`` and
``nan_present`` (columns), ``non_empty`` (1 when empty) and ``completeness`` (missing grid rows).
Tolerance is ``|x - y| <= abs_tol + rel_tol * |y|`` with ``y`` the value the definition implies.
NaN or null operands are never identity or range violations; NaN is counted by ``nan_share`` and
``nan_present``. Times are compared as int64 nanoseconds since the epoch; naive means UTC.
No Python loop runs over rows: loops are over the fixed checks and columns, and over at most
``max_examples`` example rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .months import Month
from .schema import IDENTITY_COLUMNS, METRIC_COLUMNS, TIME, interval_seconds
from .universe import Instrument

Severity = Literal["error", "warn"]
#: JSON-like values: numbers, strings, and lists of small dicts (gaps).
Metadata = dict[str, Any]


@dataclass(frozen=True)
class CheckSpec:
    """A check as the Dagster layer declares it; ``columns`` are what it needs to run."""

    name: str
    severity: Severity
    description: str
    columns: tuple[str, ...] = ()


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

CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        "schema",
        "error",
        "time and the ten metric columns present once, metrics numeric, time a naive-UTC or UTC "
        "timestamp without nulls, no columns beyond the identity columns",
    ),
    CheckSpec("non_empty", "error", "the file has at least one row"),
    CheckSpec("time_unique", "error", "no time appears twice", (TIME,)),
    CheckSpec(
        "time_increasing",
        "error",
        "no row is earlier than the row before it (with time_unique: strictly increasing)",
        (TIME,),
    ),
    CheckSpec(
        "time_on_grid", "error", "time - window start is a whole number of intervals", (TIME,)
    ),
    CheckSpec("time_in_month", "error", "month start <= time < month end", (TIME,)),
    CheckSpec(
        "identity_columns",
        "error",
        "exchange, symbol, interval, timestamp_type equal the partition's; day equals time's day",
        (TIME,),
    ),
    CheckSpec("pct_sum_to_one", "error", "bid_percentage + ask_percentage = 1", _PCTS),
    CheckSpec(
        "ratio_equals_pct_difference",
        "error",
        "imbalance_ratio = bid_percentage - ask_percentage",
        ("imbalance_ratio", *_PCTS),
    ),
    CheckSpec(
        "bid_ask_ratio_matches_pcts",
        "error",
        "bid_ask_ratio = bid_percentage / ask_percentage where ask_percentage > 0, "
        "+inf where it is 0",
        ("bid_ask_ratio", *_PCTS),
    ),
    CheckSpec(
        "imbalance_sign_matches_ratio",
        "error",
        "sign(imbalance) = sign(imbalance_ratio) wherever |imbalance_ratio| > abs_tol",
        ("imbalance", "imbalance_ratio"),
    ),
    CheckSpec(
        "avg_pct_sum_to_one", "error", "bid_percentage_avg + ask_percentage_avg = 1", _AVG_PCTS
    ),
    CheckSpec(
        "avg_ratio_equals_pct_difference",
        "error",
        "imbalance_ratio_avg = bid_percentage_avg - ask_percentage_avg",
        ("imbalance_ratio_avg", *_AVG_PCTS),
    ),
    CheckSpec(
        "ranges",
        "error",
        "percentages in [0, 1], imbalance ratios in [-1, 1], bid/ask ratios >= 0 (inf allowed)",
        tuple(_RANGES),
    ),
    CheckSpec(
        "unexplained_inf",
        "error",
        "no +-inf outside bid_ask_ratio and bid_ask_ratio_avg",
        _INF_COLUMNS,
    ),
    CheckSpec(
        "nan_share",
        "error",
        "NaN share per metric column at most nan_share_max (violations = columns)",
        METRIC_COLUMNS,
    ),
    CheckSpec(
        "completeness",
        "warn",
        "every grid row of the expected window is present; gaps listed largest first",
        (TIME,),
    ),
    CheckSpec(
        "jensen_avg_ratio",
        "warn",
        "bid_ask_ratio_avg >= bid_percentage_avg / ask_percentage_avg (an average of ratios is "
        "never below the ratio of averages)",
        ("bid_ask_ratio_avg", *_AVG_PCTS),
    ),
    CheckSpec(
        "nan_present",
        "warn",
        "any NaN below the nan_share threshold (violations = columns)",
        METRIC_COLUMNS,
    ),
)


@dataclass(frozen=True)
class ValidationConfig:
    abs_tol: float = 1e-9
    rel_tol: float = 1e-9
    #: NaN share per column above which the partition is rejected.
    nan_share_max: float = 0.01
    max_examples: int = 5
    max_gaps: int = 10


@dataclass(frozen=True)
class CheckResult:
    name: str
    severity: Severity
    passed: bool
    violations: int
    message: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    metadata: Metadata = field(default_factory=dict)
    #: False when a column the check needs was rejected by ``schema`` (or the file is empty).
    evaluated: bool = True

    @property
    def failed(self) -> bool:
        """Evaluated and found a problem (a not-evaluated check is neither passed nor failed)."""
        return self.evaluated and not self.passed

    @property
    def status(self) -> Literal["passed", "failed", "not_evaluated"]:
        if not self.evaluated:
            return "not_evaluated"
        return "passed" if self.passed else "failed"


@dataclass
class ValidationReport:
    instrument: str
    month: str
    rows: int
    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        """Every error-severity check evaluated and passed: the partition may be written."""
        return all(c.passed for c in self.checks if c.severity == "error")

    @property
    def errors(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity == "error" and c.failed]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity == "warn" and c.failed]

    @property
    def not_evaluated(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.evaluated]

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r}; checks are {[s.name for s in CHECKS]}")

    def summary(self) -> str:
        """One line for logs: verdict, partition, and each failed check with its count."""
        parts = [
            f"{'OK' if self.ok else 'REJECTED'} {self.instrument} {self.month} ({self.rows} rows)"
        ]
        if self.errors:
            parts.append("errors: " + ", ".join(f"{c.name} {c.violations}" for c in self.errors))
        if self.warnings:
            parts.append(
                "warnings: " + ", ".join(f"{c.name} {c.violations}" for c in self.warnings)
            )
        if self.not_evaluated:
            parts.append("not evaluated: " + ", ".join(c.name for c in self.not_evaluated))
        return "; ".join(parts)

    def first_error_message(self) -> str | None:
        """The run failure message: partition, first failed check, its count and an example."""
        if not self.errors:
            return None
        c = self.errors[0]
        more = f" (and {len(self.errors) - 1} more failed checks)" if len(self.errors) > 1 else ""
        return (
            f"{self.instrument} {self.month}: check {c.name} failed "
            f"({c.violations} violations): {c.message}{more}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: non-finite floats become the strings "inf", "-inf", "nan"."""
        return _json_safe(
            {
                "instrument": self.instrument,
                "month": self.month,
                "rows": self.rows,
                "ok": self.ok,
                "summary": self.summary(),
                "checks": [
                    {
                        "name": c.name,
                        "severity": c.severity,
                        "status": c.status,
                        "passed": c.passed,
                        "evaluated": c.evaluated,
                        "violations": c.violations,
                        "message": c.message,
                        "examples": c.examples,
                        "metadata": c.metadata,
                    }
                    for c in self.checks
                ],
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def validate(
    table: pa.Table,
    instrument: Instrument,
    month: Month,
    config: ValidationConfig | None = None,
    *,
    expected_start: datetime | None = None,
    expected_end: datetime | None = None,
    window: tuple[datetime, datetime] | None = None,
) -> ValidationReport:
    """Run every check in ``CHECKS`` on one partition's table.

    ``window`` replaces ``[month.start, month.end)`` for ``time_in_month``, the grid origin and
    the default completeness window (the benchmark uses it to validate more than one month).
    ``expected_start``/``expected_end`` narrow the window completeness expects rows in: a
    listing month or a month still in progress is legitimately partial. Naive datetimes are UTC.
    """
    config = config or ValidationConfig()
    start, end = window or (month.start, month.end)
    window_ns = (_to_ns(start), _to_ns(end))
    expected_ns = (
        _to_ns(expected_start) if expected_start else window_ns[0],
        _to_ns(expected_end) if expected_end else window_ns[1],
    )
    ctx = _Context(
        table=table,
        instrument=instrument,
        config=config,
        window=window_ns,
        expected=expected_ns,
        interval_ns=interval_seconds(instrument.interval) * _NS_PER_S,
    )
    # inf and NaN are data here, judged explicitly by the checks: numpy need not warn about them.
    with np.errstate(all="ignore"):
        checks = [_run(spec, ctx) for spec in CHECKS]
    return ValidationReport(instrument.key, month.key, table.num_rows, checks)


# --- machinery ---------------------------------------------------------------------------

_NS_PER_S = 1_000_000_000
_NS_PER_DAY = 86_400 * _NS_PER_S
_EPOCH = datetime(1970, 1, 1)
_UNIT_NS = {"s": _NS_PER_S, "ms": 1_000_000, "us": 1_000, "ns": 1}
_UTC_NAMES = frozenset({"UTC", "ETC/UTC", "+00:00", "Z"})


class _NotEvaluated(Exception):
    """Raised by a check that cannot judge this table; the message says why."""


@dataclass(frozen=True)
class _Finding:
    violations: int
    message: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    metadata: Metadata = field(default_factory=dict)


@dataclass
class _Context:
    """One table, read once: usable columns as numpy arrays, schema problems, time in ns."""

    table: pa.Table
    instrument: Instrument
    config: ValidationConfig
    window: tuple[int, int]
    expected: tuple[int, int]
    interval_ns: int
    values: dict[str, np.ndarray] = field(init=False)
    time: np.ndarray | None = field(init=False)
    problems: list[dict[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.problems, self.values, self.time = _inspect(self.table)

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @property
    def usable(self) -> set[str]:
        return set(self.values) | ({TIME} if self.time is not None else set())

    @cached_property
    def nan_counts(self) -> dict[str, int]:
        return {c: int(np.count_nonzero(np.isnan(self.values[c]))) for c in METRIC_COLUMNS}

    def tol(self, expected: np.ndarray | float) -> np.ndarray | float:
        return self.config.abs_tol + self.config.rel_tol * np.abs(expected)

    def where(self, row: int) -> str:
        return _iso(int(self.time[row])) if self.time is not None else f"row {row}"

    def example(self, row: int, columns: tuple[str, ...]) -> dict[str, Any]:
        example: dict[str, Any] = {"row": row}
        if self.time is not None:
            example[TIME] = _iso(int(self.time[row]))
        for c in columns:
            if c in self.values:
                example[c] = float(self.values[c][row])
            elif c != TIME:
                example[c] = self.table.column(c)[row].as_py()
        return example

    def rows_finding(
        self,
        mask: np.ndarray,
        columns: tuple[str, ...],
        problem: str,
        detail: Callable[[int], str],
        ok: str,
    ) -> _Finding:
        """Count the rows in ``mask``; describe the first in words, keep a few as examples."""
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return _Finding(0, ok)
        first = int(rows[0])
        message = (
            f"{problem} in {rows.size} of {self.rows} rows "
            f"(first at {self.where(first)}: {detail(first)})"
        )
        examples = [self.example(int(r), columns) for r in rows[: self.config.max_examples]]
        return _Finding(int(rows.size), message, examples, {"first_row": first})


def _run(spec: CheckSpec, ctx: _Context) -> CheckResult:
    rejected = [c for c in spec.columns if c not in ctx.usable]
    try:
        if rejected:
            raise _NotEvaluated(
                f"not evaluated: needs column(s) {', '.join(rejected)}, "
                "rejected by the schema check"
            )
        finding = _RUNNERS[spec.name](ctx)
    except _NotEvaluated as skip:
        return CheckResult(spec.name, spec.severity, False, 0, str(skip), evaluated=False)
    return CheckResult(
        spec.name,
        spec.severity,
        finding.violations == 0,
        finding.violations,
        finding.message,
        finding.examples,
        finding.metadata,
    )


def _inspect(
    table: pa.Table,
) -> tuple[list[dict[str, str]], dict[str, np.ndarray], np.ndarray | None]:
    """Schema problems, the usable metric columns as float64 and ``time`` as int64 ns."""
    names = table.column_names
    problems: list[dict[str, str]] = []
    values: dict[str, np.ndarray] = {}
    time: np.ndarray | None = None
    counts = {n: names.count(n) for n in names}
    for name, n in counts.items():
        if n > 1:
            problems.append({"column": name, "problem": f"appears {n} times"})
    required = (TIME, *METRIC_COLUMNS)
    missing = [c for c in required if c not in counts]
    for c in missing:
        problems.append({"column": c, "problem": "missing"})
    for name in counts:
        if name in required or name in IDENTITY_COLUMNS:
            continue
        problem = f"unexpected column (type {table.schema.field(names.index(name)).type})"
        renamed = [m for m in missing if _loose(m) == _loose(name)]
        if renamed:
            problem += f"; looks like a rename of {renamed[0]}"
        problems.append({"column": name, "problem": problem})
    for name in METRIC_COLUMNS:
        if counts.get(name) != 1:
            continue
        column = table.column(name)
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            values[name] = np.asarray(column.to_numpy(), dtype=np.float64)
        else:
            problems.append(
                {"column": name, "problem": f"has type {column.type}, expected a number (float64)"}
            )
    if counts.get(TIME) == 1:
        column = table.column(TIME)
        kind = column.type
        if not pa.types.is_timestamp(kind):
            problems.append({"column": TIME, "problem": f"has type {kind}, expected timestamp[us]"})
        elif kind.tz is not None and kind.tz.upper() not in _UTC_NAMES:
            problems.append(
                {"column": TIME, "problem": f"has time zone {kind.tz}, expected naive UTC or UTC"}
            )
        elif column.null_count:
            problems.append({"column": TIME, "problem": f"has {column.null_count} null values"})
        else:
            raw = pc.cast(column, pa.int64()).to_numpy()
            time = np.asarray(raw, dtype=np.int64) * _UNIT_NS[kind.unit]
    return problems, values, time


def _loose(name: str) -> str:
    """Name with case and separators dropped, to recognise renames like imbalanceRatio."""
    return name.replace("_", "").replace("-", "").lower()


def _to_ns(moment: datetime) -> int:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1_000


def _iso(ns: int) -> str:
    try:
        return (_EPOCH + timedelta(microseconds=ns // 1_000)).isoformat()
    except OverflowError:
        return f"{ns} ns since 1970-01-01"


def _num(value: float) -> str:
    return f"{value:.12g}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else str(float(value))
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _tolerance_words(config: ValidationConfig) -> str:
    return f"tolerance {config.abs_tol:g} + {config.rel_tol:g}*|expected|"


# --- checks ------------------------------------------------------------------------------


def _check_schema(ctx: _Context) -> _Finding:
    if not ctx.problems:
        return _Finding(0, "time and the ten metric columns are present with the expected types")
    words = "; ".join(f"{p['column']}: {p['problem']}" for p in ctx.problems)
    return _Finding(
        len(ctx.problems),
        f"{len(ctx.problems)} schema problem(s): {words}",
        examples=list(ctx.problems),
        metadata={"columns": ", ".join(ctx.table.column_names)},
    )


def _check_non_empty(ctx: _Context) -> _Finding:
    if ctx.rows:
        return _Finding(0, f"{ctx.rows} rows")
    return _Finding(1, "empty file: 0 rows (the columns are there but no data)")


def _check_time_unique(ctx: _Context) -> _Finding:
    t = ctx.time
    repeat = np.zeros(t.size, dtype=bool)
    steps = np.diff(t)
    if np.all(steps >= 0):
        repeat[1:] = steps == 0
    else:
        order = np.argsort(t, kind="stable")
        ordered = t[order]
        repeat[order[1:][ordered[1:] == ordered[:-1]]] = True
    return ctx.rows_finding(
        repeat,
        (),
        "time repeats an earlier row's time",
        lambda r: "same time as an earlier row",
        "every time is unique",
    )


def _check_time_increasing(ctx: _Context) -> _Finding:
    t = ctx.time
    earlier = np.zeros(t.size, dtype=bool)
    earlier[1:] = t[1:] < t[:-1]
    return ctx.rows_finding(
        earlier,
        (),
        "time is earlier than the previous row's time",
        lambda r: f"previous row at {_iso(int(t[r - 1]))}",
        "rows are in time order",
    )


def _check_time_on_grid(ctx: _Context) -> _Finding:
    offset = (ctx.time - ctx.window[0]) % ctx.interval_ns
    seconds = ctx.interval_ns // _NS_PER_S
    return ctx.rows_finding(
        offset != 0,
        (),
        f"time is off the {ctx.instrument.interval} grid (multiples of {seconds} s from "
        f"{_iso(ctx.window[0])})",
        lambda r: f"{int(offset[r]) / _NS_PER_S:g} s past a grid point",
        f"every time is on the {ctx.instrument.interval} grid",
    )


def _check_time_in_month(ctx: _Context) -> _Finding:
    start, end = ctx.window
    outside = (ctx.time < start) | (ctx.time >= end)
    return ctx.rows_finding(
        outside,
        (),
        f"time outside [{_iso(start)}, {_iso(end)})",
        lambda r: "before the window" if ctx.time[r] < start else "at or after the window end",
        f"every time is inside [{_iso(start)}, {_iso(end)})",
    )


def _check_identity_columns(ctx: _Context) -> _Finding:
    names = ctx.table.column_names
    expected = {
        "exchange": ctx.instrument.exchange,
        "symbol": ctx.instrument.symbol,
        "interval": ctx.instrument.interval,
        "timestamp_type": ctx.instrument.timestamp,
    }
    present = tuple(c for c in IDENTITY_COLUMNS if names.count(c) == 1)
    mismatch = np.zeros(ctx.rows, dtype=bool)
    counts: dict[str, int] = {}
    for name in present:
        column = ctx.table.column(name)
        if name == "day":
            days = (ctx.time // _NS_PER_DAY).astype("datetime64[D]")
            day_of_month = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
            try:
                given = np.asarray(pc.cast(column, pa.int64()).to_numpy(), dtype=np.float64)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                given = np.full(ctx.rows, np.nan)
            wrong = given != day_of_month
        else:
            text = pc.cast(column, pa.string())
            wrong = np.asarray(
                pc.fill_null(pc.not_equal(text, expected[name]), True).to_numpy(), dtype=bool
            )
        counts[name] = int(np.count_nonzero(wrong))
        mismatch |= wrong
    wanted = {name: repr(value) for name, value in expected.items()}
    wanted["day"] = "the day of month of time"
    bad = [c for c in present if counts[c]]
    return ctx.rows_finding(
        mismatch,
        present,
        "identity columns disagree with the partition ("
        + ", ".join(f"{c} in {counts[c]} rows, expected {wanted[c]}" for c in bad)
        + ")",
        lambda r: ", ".join(f"{c}={ctx.table.column(c)[r].as_py()!r}" for c in bad),
        f"identity columns {', '.join(present)} match the partition"
        if present
        else "no identity columns in the file",
    )


def _sum_to_one(ctx: _Context, bid: str, ask: str) -> _Finding:
    b, a = ctx.values[bid], ctx.values[ask]
    total = b + a
    return ctx.rows_finding(
        np.abs(total - 1.0) > ctx.tol(1.0),
        (bid, ask),
        f"{bid} + {ask} differs from 1 beyond {_tolerance_words(ctx.config)}",
        lambda r: f"{_num(b[r])} + {_num(a[r])} = {_num(total[r])}",
        f"{bid} + {ask} = 1 in every row",
    )


def _ratio_is_difference(ctx: _Context, ratio: str, bid: str, ask: str) -> _Finding:
    x, b, a = ctx.values[ratio], ctx.values[bid], ctx.values[ask]
    difference = b - a
    return ctx.rows_finding(
        np.abs(x - difference) > ctx.tol(difference),
        (ratio, bid, ask),
        f"{ratio} differs from {bid} - {ask} beyond {_tolerance_words(ctx.config)}",
        lambda r: f"{ratio}={_num(x[r])} but {_num(b[r])} - {_num(a[r])} = {_num(difference[r])}",
        f"{ratio} = {bid} - {ask} in every row",
    )


def _check_pct_sum_to_one(ctx: _Context) -> _Finding:
    return _sum_to_one(ctx, *_PCTS)


def _check_ratio_equals_pct_difference(ctx: _Context) -> _Finding:
    return _ratio_is_difference(ctx, "imbalance_ratio", *_PCTS)


def _check_avg_pct_sum_to_one(ctx: _Context) -> _Finding:
    return _sum_to_one(ctx, *_AVG_PCTS)


def _check_avg_ratio_equals_pct_difference(ctx: _Context) -> _Finding:
    return _ratio_is_difference(ctx, "imbalance_ratio_avg", *_AVG_PCTS)


def _check_bid_ask_ratio_matches_pcts(ctx: _Context) -> _Finding:
    x, b, a = (ctx.values[c] for c in ("bid_ask_ratio", *_PCTS))
    quotient = b / a
    wrong_where_positive = (a > 0) & (np.abs(x - quotient) > ctx.tol(quotient))
    not_inf_where_zero = (a == 0) & ~np.isnan(x) & (x != np.inf)

    def detail(r: int) -> str:
        if a[r] == 0:
            return f"ask_percentage is 0, so bid_ask_ratio must be +inf, got {_num(x[r])}"
        return f"bid_ask_ratio={_num(x[r])} but {_num(b[r])} / {_num(a[r])} = {_num(quotient[r])}"

    return ctx.rows_finding(
        wrong_where_positive | not_inf_where_zero,
        ("bid_ask_ratio", *_PCTS),
        "bid_ask_ratio is not bid_percentage / ask_percentage (beyond "
        f"{_tolerance_words(ctx.config)}; +inf exactly where ask_percentage is 0)",
        detail,
        "bid_ask_ratio = bid_percentage / ask_percentage, +inf exactly where ask_percentage is 0",
    )


def _check_imbalance_sign_matches_ratio(ctx: _Context) -> _Finding:
    imbalance, ratio = ctx.values["imbalance"], ctx.values["imbalance_ratio"]
    differ = (
        (np.sign(imbalance) != np.sign(ratio))
        & ~np.isnan(imbalance)
        & (np.abs(ratio) > ctx.config.abs_tol)
    )
    return ctx.rows_finding(
        differ,
        ("imbalance", "imbalance_ratio"),
        "sign(imbalance) differs from sign(imbalance_ratio)",
        lambda r: f"imbalance={_num(imbalance[r])}, imbalance_ratio={_num(ratio[r])}",
        "imbalance and imbalance_ratio have the same sign in every row",
    )


def _check_ranges(ctx: _Context) -> _Finding:
    outside = np.zeros(ctx.rows, dtype=bool)
    per_column: dict[str, np.ndarray] = {}
    for name, (low, high) in _RANGES.items():
        v = ctx.values[name]
        wrong = (v < low - ctx.tol(low)) | (v > high + ctx.tol(high))
        if wrong.any():
            per_column[name] = wrong
            outside |= wrong

    def bounds(name: str) -> str:
        low, high = _RANGES[name]
        return f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"

    return ctx.rows_finding(
        outside,
        tuple(per_column),
        "values outside their valid range ("
        + ", ".join(f"{c} {bounds(c)} in {np.count_nonzero(m)} rows" for c, m in per_column.items())
        + ")",
        lambda r: ", ".join(f"{c}={_num(ctx.values[c][r])}" for c, m in per_column.items() if m[r]),
        "every value is inside its valid range",
    )


def _check_unexplained_inf(ctx: _Context) -> _Finding:
    infinite = np.zeros(ctx.rows, dtype=bool)
    per_column: dict[str, np.ndarray] = {}
    for name in _INF_COLUMNS:
        wrong = np.isinf(ctx.values[name])
        if wrong.any():
            per_column[name] = wrong
            infinite |= wrong
    return ctx.rows_finding(
        infinite,
        tuple(per_column),
        "+-inf outside bid_ask_ratio and bid_ask_ratio_avg, where no zero amount explains it ("
        + ", ".join(f"{c}: {np.count_nonzero(m)} rows" for c, m in per_column.items())
        + ")",
        lambda r: ", ".join(f"{c}={_num(ctx.values[c][r])}" for c, m in per_column.items() if m[r]),
        "no inf outside the bid/ask ratio columns",
    )


def _nan_finding(ctx: _Context, columns: list[str], headline: str, ok: str) -> _Finding:
    """Columns with NaN: counts per column in words and metadata, first NaN rows as examples."""
    if not columns:
        return _Finding(0, ok)
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
    return _Finding(
        len(columns),
        f"{headline} in {len(columns)} column(s): {words} (first at {ctx.where(int(first[0]))})",
        [ctx.example(int(r), tuple(columns)) for r in first],
        {f"nan_rows_{c}": counts[c] for c in columns},
    )


def _check_nan_share(ctx: _Context) -> _Finding:
    limit = ctx.config.nan_share_max
    over = [c for c, n in ctx.nan_counts.items() if ctx.rows and n / ctx.rows > limit]
    return _nan_finding(
        ctx, over, f"NaN share above {limit:.2%}", f"NaN share at most {limit:.2%} in every column"
    )


def _check_nan_present(ctx: _Context) -> _Finding:
    limit = ctx.config.nan_share_max
    under = [c for c, n in ctx.nan_counts.items() if n and n / ctx.rows <= limit]
    return _nan_finding(ctx, under, f"NaN (below the {limit:.2%} threshold)", "no NaN")


def _check_completeness(ctx: _Context) -> _Finding:
    if ctx.rows == 0:
        raise _NotEvaluated("not evaluated: the file is empty (see non_empty)")
    origin, step = ctx.window[0], ctx.interval_ns
    start, end = ctx.expected
    first_slot = -((origin - start) // step)  # ceil: the first grid point at or after start
    expected = max(0, -((origin - end) // step) - first_slot)
    t = ctx.time[(ctx.time >= start) & (ctx.time < end)]
    slots = (t - origin) // step - first_slot
    covered = np.zeros(expected, dtype=bool)
    covered[slots[(slots >= 0) & (slots < expected)]] = True
    present = int(np.count_nonzero(covered))
    missing = expected - present
    edges = np.diff(np.concatenate(([0], (~covered).astype(np.int8), [0])))
    gap_starts, gap_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = gap_ends - gap_starts
    largest = np.argsort(-lengths, kind="stable")[: ctx.config.max_gaps]

    def at(slot: int) -> str:
        return _iso(min(origin + (first_slot + slot) * step, end))

    gaps = [
        {
            "start": at(int(gap_starts[g])),
            "end": at(int(gap_ends[g])),
            "missing_rows": int(lengths[g]),
        }
        for g in largest
    ]
    share = present / expected if expected else 1.0
    metadata: Metadata = {
        "completeness_pct": round(100 * share, 4),
        "expected_rows": expected,
        "rows": present,
        "missing_rows": missing,
        "gap_count": int(lengths.size),
        "expected_start": _iso(start),
        "expected_end": _iso(end),
        "gaps": gaps,
    }
    if not missing:
        return _Finding(
            0, f"{present} of {expected} expected rows present (100% complete)", [], metadata
        )
    top = gaps[0]
    return _Finding(
        missing,
        f"{missing} of {expected} expected {ctx.instrument.interval} rows missing "
        f"({share:.2%} complete) in {lengths.size} gap(s); largest [{top['start']}, "
        f"{top['end']}) with {top['missing_rows']} rows",
        gaps[: ctx.config.max_examples],
        metadata,
    )


def _check_jensen_avg_ratio(ctx: _Context) -> _Finding:
    x, b, a = (ctx.values[c] for c in ("bid_ask_ratio_avg", *_AVG_PCTS))
    of_averages = b / a
    below = (a > 0) & np.isfinite(of_averages) & (x < of_averages - ctx.tol(of_averages))
    return ctx.rows_finding(
        below,
        ("bid_ask_ratio_avg", *_AVG_PCTS),
        "bid_ask_ratio_avg is below bid_percentage_avg / ask_percentage_avg, impossible for an "
        "average of bid/ask ratios (Jensen)",
        lambda r: f"{_num(x[r])} < {_num(b[r])} / {_num(a[r])} = {_num(of_averages[r])}",
        "bid_ask_ratio_avg >= bid_percentage_avg / ask_percentage_avg wherever finite",
    )


_RUNNERS: dict[str, Callable[[_Context], _Finding]] = {
    "schema": _check_schema,
    "non_empty": _check_non_empty,
    "time_unique": _check_time_unique,
    "time_increasing": _check_time_increasing,
    "time_on_grid": _check_time_on_grid,
    "time_in_month": _check_time_in_month,
    "identity_columns": _check_identity_columns,
    "pct_sum_to_one": _check_pct_sum_to_one,
    "ratio_equals_pct_difference": _check_ratio_equals_pct_difference,
    "bid_ask_ratio_matches_pcts": _check_bid_ask_ratio_matches_pcts,
    "imbalance_sign_matches_ratio": _check_imbalance_sign_matches_ratio,
    "avg_pct_sum_to_one": _check_avg_pct_sum_to_one,
    "avg_ratio_equals_pct_difference": _check_avg_ratio_equals_pct_difference,
    "ranges": _check_ranges,
    "unexplained_inf": _check_unexplained_inf,
    "nan_share": _check_nan_share,
    "completeness": _check_completeness,
    "jensen_avg_ratio": _check_jensen_avg_ratio,
    "nan_present": _check_nan_present,
}
