"""Deterministic corruptions of a clean l1_imbalance table, for fault injection and tests.

Each mode breaks exactly one rule of the file contract, chosen so that exactly one validation
rule fails, and so exactly one check of ``validation.CHECKS``: ``MODES`` names the rule. The
schema modes (missing_column, renamed_column, string_column) also leave the rules that need the
broken column "not evaluated" (neither passed nor failed; see ``validation``). Pure: no I/O, no
randomness. Never imports dagster.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core.months import Month
from ..core.schema import METRIC_COLUMNS, TIME, interval_seconds

#: Corruption mode -> the one validation rule that catches it.
MODES: dict[str, str] = {
    "broken_identity": "pct_sum_to_one",
    "duplicate_times": "time_unique",
    "out_of_month": "time_in_month",
    "off_grid": "time_on_grid",
    "missing_column": "schema",
    "renamed_column": "schema",
    "string_column": "schema",
    "nan_burst": "nan_share",
    "unexplained_inf": "unexplained_inf",
    "empty_file": "non_empty",
    "gap": "completeness",
}

#: How far bid_percentage moves in broken_identity rows: far beyond any tolerance, small enough
#: to keep every percentage in [0, 1].
_SHIFT = 0.001
_BROKEN_ROWS = 3
_OFF_GRID_SECONDS = 7
#: Share of rows the NaN burst covers: above the default 1% hard threshold even when the
#: corrupted table is one daily file among the 31 that make up a month.
_NAN_BURST_SHARE = 0.5
_GAP_HOURS = 6
_MISSING_COLUMN = "bid_ask_ratio_avg"
_RENAMED = ("imbalance_ratio", "imbalanceRatio")
_STRING_COLUMN = "imbalance"


def apply_corruption(table: pa.Table, mode: str, interval: str) -> pa.Table:
    """Return ``table`` with the fault ``mode`` injected; ``interval`` sizes gaps and shifts."""
    if mode not in MODES:
        raise ValueError(f"unknown corruption mode {mode!r}; expected one of {list(MODES)}")
    if table.num_rows == 0:
        raise ValueError(f"cannot apply {mode!r} to an empty table")
    step = interval_seconds(interval)
    middle = table.num_rows // 2
    match mode:
        case "broken_identity":
            return _break_pct_sum(table)
        case "duplicate_times":
            return pa.concat_tables(
                [table.slice(0, middle + 1), table.slice(middle, table.num_rows - middle)]
            )
        case "out_of_month":
            last = table.slice(table.num_rows - 1)
            next_month = Month.of(last.column(TIME)[0].as_py()).end
            moved = last.set_column(0, TIME, pa.array([next_month], table.schema.field(TIME).type))
            return pa.concat_tables([table, moved])
        case "off_grid":
            if step <= _OFF_GRID_SECONDS:
                raise ValueError(f"interval {interval} is too short to shift a row off its grid")
            times = table.column(TIME).to_numpy().copy()
            times[middle] += np.timedelta64(_OFF_GRID_SECONDS, "s")
            return _replace(table, TIME, pa.array(times, table.schema.field(TIME).type))
        case "missing_column":
            return table.drop_columns([_MISSING_COLUMN])
        case "renamed_column":
            old, new = _RENAMED
            return table.rename_columns([new if c == old else c for c in table.column_names])
        case "string_column":
            return _replace(
                table, _STRING_COLUMN, pc.cast(table.column(_STRING_COLUMN), pa.string())
            )
        case "nan_burst":
            length = max(1, int(np.ceil(table.num_rows * _NAN_BURST_SHARE)))
            start = max(0, middle - length // 2)
            for name in METRIC_COLUMNS:
                values = table.column(name).to_numpy().copy()
                values[start : start + length] = np.nan
                table = _replace(table, name, pa.array(values))
            return table
        case "unexplained_inf":
            return _inject_inf(table)
        case "empty_file":
            return table.slice(0, 0)
        case "gap":
            if table.num_rows < 2:
                # A one-row file (a daily file of 1d data): the gap is that whole day.
                return table.slice(0, 0)
            length = min(max(1, _GAP_HOURS * 3600 // step), table.num_rows - 1)
            start = (table.num_rows - length) // 2
            return pa.concat_tables([table.slice(0, start), table.slice(start + length)])
    raise AssertionError(mode)  # unreachable: every key of MODES has a case


def _replace(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, column)


def _break_pct_sum(table: pa.Table) -> pa.Table:
    """Move bid_percentage away from 0.5 in a few rows and restate what derives from it.

    imbalance_ratio and bid_ask_ratio are recomputed from the new bid_percentage, so only
    bid + ask = 1 breaks. Moving away from 0.5 keeps the sign of imbalance_ratio; rows where
    both percentages exceed twice the shift keep every value inside its range.
    """
    bid = table.column("bid_percentage").to_numpy()
    ask = table.column("ask_percentage").to_numpy()
    side = np.sign(bid - ask)
    candidates = np.flatnonzero(
        (side != 0)
        & (side == np.sign(table.column("imbalance").to_numpy()))
        & (np.minimum(bid, ask) > 2 * _SHIFT)
    )
    if candidates.size == 0:
        raise ValueError("no row with an imbalance and both percentages above 0.002 to break")
    rows = np.unique(candidates[np.linspace(0, candidates.size - 1, _BROKEN_ROWS).astype(int)])
    new_bid = bid.copy()
    new_bid[rows] += _SHIFT * side[rows]
    ratio = table.column("imbalance_ratio").to_numpy().copy()
    ratio[rows] = new_bid[rows] - ask[rows]
    bid_ask = table.column("bid_ask_ratio").to_numpy().copy()
    bid_ask[rows] = new_bid[rows] / ask[rows]
    for name, values in (
        ("bid_percentage", new_bid),
        ("imbalance_ratio", ratio),
        ("bid_ask_ratio", bid_ask),
    ):
        table = _replace(table, name, pa.array(values))
    return table


def _inject_inf(table: pa.Table) -> pa.Table:
    """Set imbalance to inf in one row, with the row's own sign so only unexplained_inf fires."""
    ratio = table.column("imbalance_ratio").to_numpy()
    signed = np.flatnonzero(ratio != 0)
    if signed.size == 0:
        raise ValueError("no row with a non-zero imbalance_ratio to put an inf in")
    row = signed[signed.size // 2]
    imbalance = table.column("imbalance").to_numpy().copy()
    imbalance[row] = np.copysign(np.inf, ratio[row])
    return _replace(table, "imbalance", pa.array(imbalance))
