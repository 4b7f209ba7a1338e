"""How rules are declared and run: ``CheckSpec`` groups ``RuleSpec``s; ``Context`` reads a table.

A rule is declared once, where its code is (``@check.rule(name, description, columns)`` or
``check.add(...)`` for a judge built by a factory), so no check can be described without the code
that evaluates it. ``Context`` reads the table once (schema problems, usable metric columns as
float64, ``time`` as int64 ns) and offers the few helpers every rule uses. Never imports dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..normalize import ExtraColumn, by_name, files_phrase
from ..schema import IDENTITY_COLUMNS, METRIC_COLUMNS, TIME, UTC_ZONES
from ..universe import Instrument
from .report import CheckResult, Metadata, RuleResult, Severity

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
_EPOCH = datetime(1970, 1, 1)
_UNIT_NS = {"s": NS_PER_S, "ms": 1_000_000, "us": 1_000, "ns": 1}
#: Identities of values stored in a narrower float than float64 are judged to this many machine
#: epsilons of that float at least. Each stored value is off by up to eps/2 relative; an identity
#: combines two or three of them, and a producer that also computed in that float adds about as
#: much per operation, so a correct float32 file misses by a few eps (1.2e-7 each). 8 eps
#: (9.5e-7 for float32) covers that with room, and is still a thousandth of the smallest defect
#: that matters (a percentage off in its third decimal).
PRECISION_EPS = 8


@dataclass(frozen=True)
class ValidationConfig:
    abs_tol: float = 1e-9
    rel_tol: float = 1e-9
    #: NaN share per column above which the partition is rejected.
    nan_share_max: float = 0.01
    max_examples: int = 5
    max_gaps: int = 10

    def at_precision(self, precision: str) -> ValidationConfig:
        """These tolerances, raised to ``PRECISION_EPS`` epsilons of ``precision`` (a float
        width such as "float32") where they are tighter than that precision can hold."""
        floor = PRECISION_EPS * float(np.finfo(precision).eps)
        return replace(self, abs_tol=max(self.abs_tol, floor), rel_tol=max(self.rel_tol, floor))


class NotEvaluated(Exception):
    """Raised by a rule that cannot judge this table; the message says why."""


@dataclass(frozen=True)
class Finding:
    """What a rule found: a count, a sentence, a few example rows and its own figures."""

    violations: int
    message: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    metadata: Metadata = field(default_factory=dict)


@dataclass
class Context:
    """One table, read once, and the spans it is judged against (int64 ns, [start, end))."""

    table: pa.Table
    instrument: Instrument
    #: The tolerances in force: the configured ones at ``precision`` (``at_precision``).
    config: ValidationConfig
    month_key: str
    month: tuple[int, int]
    window: tuple[int, int]
    interval_ns: int
    #: The narrowest float width the metrics were stored in (by the source files or the table).
    precision: str = "float64"
    #: Columns normalization dropped from the source files.
    dropped: Sequence[ExtraColumn] = ()
    values: dict[str, np.ndarray] = field(init=False)
    time: np.ndarray | None = field(init=False)
    problems: list[dict[str, str]] = field(init=False)
    #: Columns beyond the contract, in the table or dropped, that are not renames (schema drift).
    drift: list[ExtraColumn] = field(init=False)

    def __post_init__(self) -> None:
        self.problems, self.values, self.time, self.drift = _inspect(self.table, self.dropped)

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @cached_property
    def usable(self) -> frozenset[str]:
        return frozenset(self.values) | ({TIME} if self.time is not None else set())

    @cached_property
    def nan_counts(self) -> dict[str, int]:
        return {c: int(np.count_nonzero(np.isnan(self.values[c]))) for c in METRIC_COLUMNS}

    @cached_property
    def time_steps(self) -> np.ndarray:
        """``time[i + 1] - time[i]``, shared by the uniqueness and ordering rules."""
        return np.diff(self.time)

    def tol(self, expected: np.ndarray | float) -> np.ndarray | float:
        return self.config.abs_tol + self.config.rel_tol * np.abs(expected)

    @property
    def tolerance_words(self) -> str:
        """The tolerance in force, and why when it was widened for the stored precision."""
        words = f"tolerance {self.config.abs_tol:.3g} + {self.config.rel_tol:.3g}*|expected|"
        if self.precision != "float64":
            words += f", for values stored as {self.precision}"
        return words

    @property
    def tolerance_metadata(self) -> dict[str, Any]:
        return {
            "abs_tol": self.config.abs_tol,
            "rel_tol": self.config.rel_tol,
            "precision": self.precision,
        }

    def where(self, row: int) -> str:
        return iso(int(self.time[row])) if self.time is not None else f"row {row}"

    def example(self, row: int, columns: tuple[str, ...]) -> dict[str, Any]:
        example: dict[str, Any] = {"row": row}
        if self.time is not None:
            example[TIME] = iso(int(self.time[row]))
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
        metadata: Metadata | None = None,
    ) -> Finding:
        """Count the rows in ``mask``; describe the first in words, keep a few as examples."""
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return Finding(0, ok, metadata=metadata or {})
        first = int(rows[0])
        message = (
            f"{problem} in {rows.size} of {self.rows} rows "
            f"(first at {self.where(first)}: {detail(first)})"
        )
        examples = [self.example(int(r), columns) for r in rows[: self.config.max_examples]]
        return Finding(int(rows.size), message, examples, metadata or {})


Judge = Callable[[Context], Finding]


@dataclass(frozen=True)
class RuleSpec:
    """One rule: what it requires (``description``), the columns it reads, the code."""

    name: str
    description: str
    columns: tuple[str, ...]
    judge: Judge

    def run(self, ctx: Context, check: CheckSpec) -> RuleResult:
        rejected = [c for c in self.columns if c not in ctx.usable]
        try:
            if rejected:
                raise NotEvaluated(
                    f"not evaluated: needs column(s) {', '.join(rejected)}, "
                    "rejected by the schema rule"
                )
            finding = self.judge(ctx)
        except NotEvaluated as skip:
            return RuleResult(self.name, check.name, check.severity, 0, str(skip), evaluated=False)
        return RuleResult(
            self.name,
            check.name,
            check.severity,
            finding.violations,
            finding.message,
            finding.examples,
            finding.metadata,
        )


@dataclass(frozen=True)
class CheckSpec:
    """A reported check: rules that share one severity, registered where their code is."""

    name: str
    severity: Severity
    summary: str
    _rules: list[RuleSpec] = field(default_factory=list, repr=False, compare=False)

    @property
    def rules(self) -> tuple[RuleSpec, ...]:
        return tuple(self._rules)

    @property
    def description(self) -> str:
        """The summary, then each rule by name with what it requires."""
        rules = "; ".join(f"{r.name}: {r.description}" for r in self._rules)
        return f"{self.summary}. Rules: {rules}"

    def add(self, name: str, description: str, columns: tuple[str, ...], judge: Judge) -> Judge:
        self._rules.append(RuleSpec(name, description, columns, judge))
        return judge

    def rule(
        self, name: str, description: str, columns: tuple[str, ...] = ()
    ) -> Callable[[Judge], Judge]:
        """Decorator form of ``add``."""
        return lambda judge: self.add(name, description, columns, judge)

    def run(self, ctx: Context) -> CheckResult:
        return CheckResult(self.name, self.severity, tuple(r.run(ctx, self) for r in self._rules))


def _inspect(
    table: pa.Table, dropped: Sequence[ExtraColumn]
) -> tuple[list[dict[str, str]], dict[str, np.ndarray], np.ndarray | None, list[ExtraColumn]]:
    """Schema problems, the usable metric columns as float64, ``time`` as int64 ns, and the
    columns beyond the contract (in ``table`` or ``dropped`` from its files) that are drift.

    A column beyond the contract is a schema problem only where it looks like a rename of a
    missing column: then it explains that problem. Otherwise it is drift, data we do not keep.
    """
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
    extra = [
        ExtraColumn(name, str(table.schema.field(names.index(name)).type))
        for name in counts
        if name not in required and name not in IDENTITY_COLUMNS
    ]
    drift = []
    for name, found in by_name([*extra, *dropped]).items():
        renamed = [m for m in missing if _loose(m) == _loose(name)]
        if not renamed:
            drift += found
            continue
        where = "" if found[0].file is None else f" in {files_phrase(found)}"
        problem = f"unexpected column (type {found[0].type}){where}; looks like a rename of"
        problems.append({"column": name, "problem": f"{problem} {renamed[0]}"})
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
        elif kind.tz is not None and kind.tz.upper() not in UTC_ZONES:
            problems.append(
                {"column": TIME, "problem": f"has time zone {kind.tz}, expected naive UTC or UTC"}
            )
        elif column.null_count:
            problems.append({"column": TIME, "problem": f"has {column.null_count} null values"})
        else:
            raw = pc.cast(column, pa.int64()).to_numpy()
            time = np.asarray(raw, dtype=np.int64) * _UNIT_NS[kind.unit]
    return problems, values, time, drift


def _loose(name: str) -> str:
    """Name with case and separators dropped, to recognise renames like imbalanceRatio."""
    return name.replace("_", "").replace("-", "").lower()


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch; naive means UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1_000


def iso(ns: int) -> str:
    try:
        return (_EPOCH + timedelta(microseconds=ns // 1_000)).isoformat()
    except OverflowError:
        return f"{ns} ns since 1970-01-01"


def num(value: float) -> str:
    return f"{value:.12g}"
