"""Same data, other shape: the representations the real service's files have been seen in.

Each mode keeps every value of a clean table and changes only how it is stored (extra identity
columns, row order, float width, timestamp unit or zone, an unknown extra column), so a tolerant
reader must accept it and write the same canonical month; only ``hive_columns_wrong`` carries an
identity value that disagrees with the file's partition and must be rejected. Unlike
:mod:`.corruption`, shapes break no rule of the data. Pure and deterministic: a file's shuffled
order and extra column come from seeds of its label. Never imports dagster.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core.schema import METRIC_COLUMNS, TIME
from .catalog import LISTINGS
from .data import stable_seed

#: Shape mode -> what it changes in the stored object.
SHAPES: dict[str, str] = {
    "hive_columns": "four string columns exchange, symbol, interval, timestamp appended, as"
    " DuckDB's synthesized hive partitions in the August 2026 backfill",
    "hive_columns_wrong": "as hive_columns, but exchange names another exchange (must be rejected)",
    "unsorted": "rows in a shuffled order, deterministic per file",
    "float32": "the ten metric columns stored as float32",
    "time_s": "time as timestamp[s] (Parquet has no second unit: it is stored, and reads back,"
    " as milliseconds, as from any writer of second timestamps)",
    "time_ms": "time as timestamp[ms]",
    "time_ns": "time as timestamp[ns]",
    "time_utc": "time as timestamp[us, tz=UTC]",
    "extra_column": "an unknown float64 column mid_price_avg appended",
}

#: The columns DuckDB synthesized from the hive path, in its order; all VARCHAR.
HIVE_COLUMNS: tuple[str, ...] = ("exchange", "symbol", "interval", "timestamp")
#: The unknown column ``extra_column`` appends.
EXTRA_COLUMN = "mid_price_avg"
_TIME_TYPES: dict[str, pa.DataType] = {
    "time_s": pa.timestamp("s"),
    "time_ms": pa.timestamp("ms"),
    "time_ns": pa.timestamp("ns"),
    "time_utc": pa.timestamp("us", tz="UTC"),
}


def other_exchange(exchange: str) -> str:
    """An exchange slug that is not ``exchange``: the next one of the catalogue, cyclically."""
    names = sorted(LISTINGS)
    if exchange not in names:
        return names[0]
    return names[(names.index(exchange) + 1) % len(names)]


def apply_shape(
    table: pa.Table,
    mode: str,
    *,
    exchange: str,
    symbol: str,
    interval: str,
    timestamp: str,
    label: str,
) -> pa.Table:
    """``table`` stored as ``mode`` does it; ``label`` (``2026-08`` or ``2026-08-05``) seeds it.

    Applied after any corruption, so it tolerates a table missing a column or holding one as a
    string; a column it appends replaces one of the same name, so shapes stack.
    """
    if mode not in SHAPES:
        raise ValueError(f"unknown shape {mode!r}; expected one of {list(SHAPES)}")
    match mode:
        case "hive_columns" | "hive_columns_wrong":
            slug = exchange if mode == "hive_columns" else other_exchange(exchange)
            for name, value in zip(HIVE_COLUMNS, (slug, symbol, interval, timestamp), strict=True):
                table = _put(table, name, pa.array([value] * table.num_rows, pa.string()))
            return table
        case "unsorted":
            return table.take(_permutation(table.num_rows, stable_seed("unsorted", label)))
        case "float32":
            for name in set(METRIC_COLUMNS) & set(table.column_names):
                if pa.types.is_floating(table.schema.field(name).type):
                    table = _put(table, name, pc.cast(table.column(name), pa.float32()))
            return table
        case "time_s" | "time_ms" | "time_ns" | "time_utc":
            return _put(table, TIME, pc.cast(table.column(TIME), _TIME_TYPES[mode]))
        case "extra_column":
            rng = np.random.default_rng(stable_seed(EXTRA_COLUMN, exchange, symbol, label))
            mid = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, table.num_rows)))
            return _put(table, EXTRA_COLUMN, pa.array(mid, pa.float64()))
    raise AssertionError(mode)  # unreachable: every key of SHAPES has a case


def _put(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` with column ``name`` replaced in place, or appended when it has none."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


def _permutation(rows: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``rows`` indexes, never the identity when ``rows > 1``."""
    order = np.random.default_rng(seed).permutation(rows)
    if rows > 1 and (order == np.arange(rows)).all():
        order = order[::-1].copy()
    return order
