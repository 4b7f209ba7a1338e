"""Checks of a file's shape and its time column: ``schema``, ``time_grid``, ``completeness``,
``schema_drift``.

Times are int64 ns since the epoch. The grid is anchored at the month start; the expected window
(by default the whole month) is where rows may lie and where completeness counts them: a month
in progress ends at its first unpublished time, an instrument's first month starts at listing.
"""

from __future__ import annotations

import numpy as np

from ..months import Month
from ..normalize import by_name, day_of_month, disagreeing, expected_identity, files_phrase
from ..schema import IDENTITY_COLUMNS, TIME
from .engine import NS_PER_S, CheckSpec, Context, Finding, NotEvaluated, iso
from .report import Metadata

SCHEMA = CheckSpec(
    "schema",
    "error",
    "the file's shape: the expected columns and types, at least one row, identity columns that "
    "restate the partition",
)
TIME_GRID = CheckSpec(
    "time_grid",
    "error",
    "time is unique, increasing, on the interval grid, inside the month and the expected window",
)
COMPLETENESS = CheckSpec(
    "completeness",
    "warn",
    "rows present for the expected window's whole grid (the month, or less while it is "
    "published or after a listing)",
)
SCHEMA_DRIFT = CheckSpec(
    "schema_drift",
    "warn",
    "columns the source files carry beyond the contract; not kept, dropped before writing",
)


@SCHEMA.rule(
    "schema",
    "time and the ten metric columns present once, metrics numeric, time a naive-UTC or UTC "
    "timestamp without nulls; a column beyond the contract counts only where it looks like a "
    "rename of a missing one (others are schema_drift) (violations = problems)",
)
def _schema(ctx: Context) -> Finding:
    if not ctx.problems:
        return Finding(0, "time and the ten metric columns are present with the expected types")
    words = "; ".join(f"{p['column']}: {p['problem']}" for p in ctx.problems)
    return Finding(
        len(ctx.problems),
        f"{len(ctx.problems)} schema problem(s): {words}",
        examples=list(ctx.problems),
        metadata={"columns": ", ".join(ctx.table.column_names)},
    )


@SCHEMA.rule("non_empty", "the file has at least one row (violations = 1 when empty)")
def _non_empty(ctx: Context) -> Finding:
    if ctx.rows:
        return Finding(0, f"{ctx.rows} rows")
    return Finding(1, "empty file: 0 rows (the columns are there but no data)")


@SCHEMA.rule(
    "identity_columns",
    "exchange, symbol, interval, timestamp, timestamp_type, year, month equal the partition's; "
    "day equals time's day",
    (TIME,),
)
def _identity_columns(ctx: Context) -> Finding:
    names = ctx.table.column_names
    expected = expected_identity(ctx.instrument, Month.parse(ctx.month_key))
    present = tuple(c for c in IDENTITY_COLUMNS if names.count(c) == 1)
    mismatch = np.zeros(ctx.rows, dtype=bool)
    counts: dict[str, int] = {}
    for name in present:
        if name == "day":
            days = day_of_month(ctx.table.column(TIME))
            wrong = disagreeing(ctx.table.column(name), days)
        else:
            wrong = disagreeing(ctx.table.column(name), expected[name])
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


@TIME_GRID.rule("time_unique", "no time appears twice", (TIME,))
def _time_unique(ctx: Context) -> Finding:
    t, steps = ctx.time, ctx.time_steps
    repeat = np.zeros(t.size, dtype=bool)
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


@TIME_GRID.rule(
    "time_increasing",
    "no row is earlier than the row before it (with time_unique: strictly increasing)",
    (TIME,),
)
def _time_increasing(ctx: Context) -> Finding:
    t = ctx.time
    earlier = np.zeros(t.size, dtype=bool)
    earlier[1:] = ctx.time_steps < 0
    return ctx.rows_finding(
        earlier,
        (),
        "time is earlier than the previous row's time",
        lambda r: f"previous row at {iso(int(t[r - 1]))}",
        "rows are in time order",
    )


@TIME_GRID.rule("time_on_grid", "time - month start is a whole number of intervals", (TIME,))
def _time_on_grid(ctx: Context) -> Finding:
    origin = ctx.month[0]
    offset = (ctx.time - origin) % ctx.interval_ns
    seconds = ctx.interval_ns // NS_PER_S
    return ctx.rows_finding(
        offset != 0,
        (),
        f"time is off the {ctx.instrument.interval} grid (multiples of {seconds} s from "
        f"{iso(origin)})",
        lambda r: f"{int(offset[r]) / NS_PER_S:g} s past a grid point",
        f"every time is on the {ctx.instrument.interval} grid",
    )


@TIME_GRID.rule("time_in_month", "month start <= time < month end", (TIME,))
def _time_in_month(ctx: Context) -> Finding:
    start, end = ctx.month
    return _outside(
        ctx,
        ctx.time < start,
        ctx.time >= end,
        f"time outside the month {ctx.month_key} [{iso(start)}, {iso(end)})",
        f"lies before the month start {iso(start)}",
        f"lies on or after the month end {iso(end)}",
        f"every time is inside the month {ctx.month_key}",
    )


@TIME_GRID.rule(
    "time_in_window",
    "no row of the month lies before the expected window (before the listing) or on or after "
    "its end (the first unpublished time)",
    (TIME,),
)
def _time_in_window(ctx: Context) -> Finding:
    if ctx.window == ctx.month:
        return Finding(0, "the expected window is the whole month")
    (month_start, month_end), (start, end) = ctx.month, ctx.window
    t = ctx.time
    return _outside(
        ctx,
        (t >= month_start) & (t < start),
        (t >= end) & (t < month_end),
        f"time inside the month but outside the expected window [{iso(start)}, {iso(end)})",
        f"lies before {iso(start)}, the start of the expected window (before the listing)",
        f"lies on or after {iso(end)}, the first unpublished time",
        f"every time is inside the expected window [{iso(start)}, {iso(end)})",
    )


def _outside(
    ctx: Context,
    early: np.ndarray,
    late: np.ndarray,
    problem: str,
    before: str,
    after: str,
    ok: str,
) -> Finding:
    """Rows before or after a span, each described by the side it is on."""
    return ctx.rows_finding(early | late, (), problem, lambda r: before if early[r] else after, ok)


@COMPLETENESS.rule(
    "completeness",
    "every grid row of the expected window is present; gaps listed largest first "
    "(violations = missing grid rows)",
    (TIME,),
)
def _completeness(ctx: Context) -> Finding:
    if ctx.rows == 0:
        raise NotEvaluated("not evaluated: the file is empty (see non_empty)")
    origin, step = ctx.month[0], ctx.interval_ns
    start, end = ctx.window
    first_slot = -((origin - start) // step)  # ceil: the first grid point at or after start
    expected = -((origin - end) // step) - first_slot
    t = ctx.time
    slots = (t[(t >= start) & (t < end)] - origin) // step - first_slot
    covered = np.zeros(expected, dtype=bool)
    covered[slots[slots >= 0]] = True
    present = int(np.count_nonzero(covered))
    missing = expected - present
    share = present / expected if expected else 1.0
    metadata: Metadata = {
        "completeness_pct": round(100 * share, 4),
        "expected_rows": expected,
        "rows": present,
        "missing_rows": missing,
        "expected_from": iso(start),
        "expected_until": iso(end),
    }
    if not missing:
        return Finding(
            0,
            f"{present} of {expected} expected rows present (100% complete) in "
            f"[{iso(start)}, {iso(end)})",
            [],
            metadata | {"gap_count": 0, "gaps": []},
        )
    edges = np.diff(np.concatenate(([0], (~covered).astype(np.int8), [0])))
    gap_starts, gap_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = gap_ends - gap_starts
    largest = np.argsort(-lengths, kind="stable")[: ctx.config.max_gaps]

    def at(slot: int) -> str:
        return iso(min(origin + (first_slot + slot) * step, end))

    gaps = [
        {
            "start": at(int(gap_starts[g])),
            "end": at(int(gap_ends[g])),
            "missing_rows": int(lengths[g]),
        }
        for g in largest
    ]
    top = gaps[0]
    return Finding(
        missing,
        f"{missing} of {expected} expected {ctx.instrument.interval} rows missing "
        f"({share:.2%} complete) in [{iso(start)}, {iso(end)}), {lengths.size} gap(s); "
        f"largest [{top['start']}, {top['end']}) with {top['missing_rows']} rows",
        gaps[: ctx.config.max_examples],
        metadata | {"gap_count": int(lengths.size), "gaps": gaps},
    )


@SCHEMA_DRIFT.rule(
    "extra_columns",
    "no column beyond time, the ten metrics and the identity columns, in the table or dropped "
    "from a source file by normalization (violations = columns)",
)
def _extra_columns(ctx: Context) -> Finding:
    if not ctx.drift:
        return Finding(0, "no columns beyond the contract")
    found = [
        {
            "column": name,
            "type": ", ".join(dict.fromkeys(c.type for c in columns)),
            "where": files_phrase(columns),
        }
        for name, columns in by_name(ctx.drift).items()
    ]
    words = "; ".join(f"{f['column']} ({f['type']}) in {f['where']}" for f in found)
    return Finding(
        len(found),
        f"{len(found)} column(s) beyond the contract, not kept (dropped before writing): {words}",
        found[: ctx.config.max_examples],
        {"extra_columns": found},
    )
