"""Validation of one l1_imbalance partition: pure, vectorized rules -> one ``ValidationReport``.

Owns what "valid" means before data reaches the warehouse (ARCHITECTURE.md, "Validation").
Never imports dagster: the asset layer declares ``CHECKS`` up front as asset check specs and
turns each ``CheckResult`` into an asset check result.

A check is a named group of rules sharing one severity; grouping keeps the UI and the event log
small while every rule is still evaluated and reported (``CheckResult.rules``, and per-rule
counts and first examples in ``CheckResult.metadata``). Every check and rule appears in every
report, in declaration order, as passed, failed (evaluated and found ``violations``), or not
evaluated: a column the rule needs was rejected by the ``schema`` rule (missing, duplicated,
wrong type, nulls in ``time``), or, for ``completeness``, the file is empty. A not-evaluated rule
keeps its check from passing, so an error check still blocks the partition, but its cause is
counted once, by ``schema`` or ``non_empty``, and not again as a violation of its own.

``violations`` counts rows, except where a rule's description says otherwise (schema problems,
NaN columns, missing grid rows). No Python loop runs over rows: loops are over the fixed rules
and columns, and over at most ``max_examples`` example rows.

The pipeline validates what ``normalize`` made of the source files (one canonical form), and
tells ``validate`` what it cannot see in that table: the float width the files stored their
metrics in (tolerances follow it) and the columns normalization dropped (``schema_drift``).

Modules: ``report`` (results), ``engine`` (declaring and running rules, reading the table),
``structure`` (schema, time, completeness, schema drift) and ``values`` (identities, ranges,
NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa

from ..months import Month
from ..normalize import CANONICAL_FLOAT, ExtraColumn, narrowest
from ..schema import METRIC_COLUMNS, interval_seconds
from ..universe import Instrument
from .engine import NS_PER_S, CheckSpec, Context, RuleSpec, ValidationConfig, iso, to_ns
from .report import CheckResult, RuleResult, Severity, ValidationReport
from .structure import COMPLETENESS, SCHEMA, SCHEMA_DRIFT, TIME_GRID
from .values import AVERAGES, IDENTITIES, PLAUSIBILITY, RANGES_AND_NAN

__all__ = [
    "CHECKS",
    "CheckResult",
    "CheckSpec",
    "RuleResult",
    "RuleSpec",
    "Severity",
    "ValidationConfig",
    "ValidationReport",
    "validate",
]

#: The reported checks, errors first; each holds its rules in the order they are evaluated.
CHECKS: tuple[CheckSpec, ...] = (
    SCHEMA,
    TIME_GRID,
    IDENTITIES,
    AVERAGES,
    RANGES_AND_NAN,
    COMPLETENESS,
    PLAUSIBILITY,
    SCHEMA_DRIFT,
)


def validate(
    table: pa.Table,
    instrument: Instrument,
    month: Month,
    config: ValidationConfig | None = None,
    *,
    window: tuple[datetime, datetime] | None = None,
    precision: str = CANONICAL_FLOAT,
    dropped: Sequence[ExtraColumn] = (),
) -> ValidationReport:
    """Run every rule of every check in ``CHECKS`` on one partition's table.

    ``precision`` is the narrowest float width the source files stored the metrics in, before
    normalization cast them to float64 (``Normalization.precision``); a float column of the table
    itself counts too. Tolerances are raised to that precision (``ValidationConfig.at_precision``)
    and the messages say which were used. ``dropped`` are the columns normalization removed from
    the files; ``schema_drift`` names them (and ``schema`` where they look like a rename).

    ``window`` is the part of the month ``[start, end)`` the data is expected to cover (naive
    datetimes are UTC); the default is the whole month. A month still being published ends at
    its first unpublished time, an instrument's first month starts at its listing: rows outside
    the window are errors, as rows outside the month are, and completeness counts only the
    window. An empty window (nothing published yet) makes every row an error. Raises ValueError
    for a window that ends before it starts or reaches outside the month.
    """
    month_ns = (to_ns(month.start), to_ns(month.end))
    window_ns = (to_ns(window[0]), to_ns(window[1])) if window else month_ns
    if not month_ns[0] <= window_ns[0] <= window_ns[1] <= month_ns[1]:
        raise ValueError(
            f"window [{iso(window_ns[0])}, {iso(window_ns[1])}) is not a part of the month "
            f"{month} [{iso(month_ns[0])}, {iso(month_ns[1])})"
        )
    stored = [
        table.schema.field(i).type.to_pandas_dtype()
        for i, name in enumerate(table.column_names)
        if name in METRIC_COLUMNS and pa.types.is_floating(table.schema.field(i).type)
    ]
    precision = narrowest([precision, *(np.dtype(t).name for t in stored)])
    ctx = Context(
        table=table,
        instrument=instrument,
        config=(config or ValidationConfig()).at_precision(precision),
        month_key=month.key,
        month=month_ns,
        window=window_ns,
        interval_ns=interval_seconds(instrument.interval) * NS_PER_S,
        precision=precision,
        dropped=tuple(dropped),
    )
    # inf and NaN are data here, judged explicitly by the rules: numpy need not warn about them.
    with np.errstate(all="ignore"):
        checks = [check.run(ctx) for check in CHECKS]
    return ValidationReport(instrument.key, month.key, table.num_rows, checks)
