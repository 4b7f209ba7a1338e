"""Normalize one downloaded source file to the canonical form, before its month is assembled.

Tolerant reader, strict warehouse (ARCHITECTURE.md, "Source files"): a file that holds the same
data in another shape is accepted and rewritten into one form; only wrong data is rejected.

* Identity columns (``schema.IDENTITY_COLUMNS``: the instrument, the month, a daily file's day;
  e.g. the hive columns DuckDB once stored in objects) are compared with the partition and
  dropped. A value that disagrees raises :class:`NormalizationError` naming the file, the column,
  the value found and the one expected.
* Rows in any order are sorted by ``time``, stably: duplicates stay for validation to report.
* ``time`` in any unit, naive or with any time zone, becomes naive-UTC ``timestamp[us]``. An
  Arrow or Parquet timestamp with a zone holds UTC instants (the zone only says how to display
  them), so even a zone other than UTC converts exactly, not by a guess; the change is recorded.
  Values that are not whole microseconds are not truncated onto the grid: that file's ``time``
  stays in nanoseconds, and validation's ``time_on_grid`` rejects the rows off the grid.
* Metric columns of any float width or integer type become float64. The narrowest float width
  is recorded, so validation judges the identities at the precision the file was stored in.
* Any other column is dropped and recorded (file and name); validation warns about it as schema
  drift.

What cannot be normalized without guessing is left as found, for validation to reject with its
usual messages: a missing or repeated column, a metric that is not a number, a ``time`` that is
not a timestamp. Pure and vectorized; never imports dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .months import Month
from .schema import IDENTITY_COLUMNS, METRIC_COLUMNS, TIME, TIME_TYPE, UTC_ZONES
from .universe import Instrument

#: The float width of the warehouse's metric columns.
CANONICAL_FLOAT = "float64"


class NormalizationError(ValueError):
    """A source file contradicts the partition it was listed for."""


@dataclass(frozen=True)
class ExtraColumn:
    """A column beyond the file contract; ``file`` is the source file it was dropped from."""

    name: str
    type: str
    file: str | None = None


@dataclass(frozen=True)
class FileChanges:
    """What :func:`normalize` changed in one file; the defaults mean it was canonical already."""

    label: str
    identity_dropped: tuple[str, ...] = ()
    reordered: bool = False
    #: The type ``time`` was converted from, e.g. ``timestamp[ns, tz=UTC]``.
    time_from: str | None = None
    #: Values of ``time`` that are not whole microseconds; the column then stays in ns.
    time_sub_us: int = 0
    #: Metric column types cast to float64, e.g. ``("float32",)``.
    metrics_from: tuple[str, ...] = ()
    #: The narrowest float width among the metric columns.
    precision: str = CANONICAL_FLOAT
    extra_columns: tuple[ExtraColumn, ...] = ()

    @property
    def zone_converted(self) -> bool:
        """``time`` had a time zone other than UTC (converted exactly: see the module doc)."""
        if self.time_from is None or "tz=" not in self.time_from:
            return False
        return self.time_from.split("tz=", 1)[1].rstrip("]").upper() not in UTC_ZONES

    @property
    def changed(self) -> bool:
        return self != FileChanges(self.label)

    def record(self) -> dict[str, str]:
        """One row of the materialization's table of normalized files."""
        return {
            "file": self.label,
            "identity_dropped": ", ".join(self.identity_dropped),
            "rows_sorted": "yes" if self.reordered else "",
            "time_from": self.time_from or "",
            "metrics_from": ", ".join(self.metrics_from),
            "extra_dropped": ", ".join(c.name for c in self.extra_columns),
        }


@dataclass(frozen=True)
class Normalized:
    """One file in canonical form (``table``) and what it took to get there."""

    table: pa.Table
    changes: FileChanges


@dataclass(frozen=True)
class Normalization:
    """The changes to every file of a month: what validation needs and the materialization shows."""

    files: tuple[FileChanges, ...]

    @property
    def precision(self) -> str:
        """The narrowest float width any file stored its metrics in."""
        return narrowest(f.precision for f in self.files)

    @property
    def extra_columns(self) -> tuple[ExtraColumn, ...]:
        return tuple(c for f in self.files for c in f.extra_columns)

    def summary(self) -> str:
        """One line: each kind of change and in how many files, e.g. "rows sorted in 1 file"."""
        parts = []
        identity = [f for f in self.files if f.identity_dropped]
        if identity:
            dropped = {n for f in identity for n in f.identity_dropped}
            names = sorted(dropped, key=IDENTITY_COLUMNS.index)
            parts.append(
                f"identity columns ({', '.join(names)}) checked and dropped from {_files(identity)}"
            )
        parts += _grouped(self.files, lambda f: "rows sorted by time" if f.reordered else None)
        parts += _grouped(self.files, _time_change)
        parts += _grouped(
            self.files,
            lambda f: f"metrics {'/'.join(f.metrics_from)}->float64" if f.metrics_from else None,
        )
        if self.precision != CANONICAL_FLOAT:
            parts.append(f"identities judged at {self.precision} precision")
        for name, found in by_name(self.extra_columns).items():
            parts.append(f"extra column {name} dropped from {files_phrase(found)}")
        return "; ".join(parts) or "none: every file was in the canonical form"

    def records(self) -> list[dict[str, str]]:
        """The files that changed, one row each."""
        return [f.record() for f in self.files if f.changed]


def normalize(table: pa.Table, instrument: Instrument, label: str) -> Normalized:
    """``table``, one source file labelled ``YYYY-MM`` or ``YYYY-MM-DD``, in canonical form.

    Raises NormalizationError when an identity column disagrees with ``instrument``, the label's
    month or a daily file's day (in a monthly file: the day of each row's ``time``).
    """
    month, day = file_span(label)
    names = table.column_names
    time_at = [i for i, n in enumerate(names) if n == TIME]
    time, time_from, sub_us = None, None, 0
    if len(time_at) == 1 and pa.types.is_timestamp(table.column(time_at[0]).type):
        time, time_from, sub_us = _canonical_time(table.column(time_at[0]), label)
        columns = [(TIME, time)]
    else:  # not a usable time column: validation's schema rule says why
        columns = [(TIME, table.column(i)) for i in time_at]

    identity = [i for i, n in enumerate(names) if n in IDENTITY_COLUMNS]
    _check_identity(table, identity, instrument, month, day, time, label)

    metrics_from: list[str] = []
    precision = CANONICAL_FLOAT
    for name in METRIC_COLUMNS:
        for i in (i for i, n in enumerate(names) if n == name):
            column, dtype = _as_float64(table.column(i))
            if dtype is not None and dtype != CANONICAL_FLOAT:
                metrics_from.append(dtype)
            if dtype is not None and dtype.startswith("float"):
                precision = narrowest((precision, dtype))
            columns.append((name, column))

    known = {TIME, *METRIC_COLUMNS, *IDENTITY_COLUMNS}
    extra = tuple(
        ExtraColumn(n, str(table.schema.field(i).type), label)
        for i, n in enumerate(names)
        if n not in known
    )
    out = pa.Table.from_arrays([c for _, c in columns], names=[n for n, _ in columns])
    reordered = False
    if time is not None:
        order = pc.sort_indices(time)
        reordered = bool(np.any(order.to_numpy() != np.arange(out.num_rows)))
        if reordered:
            out = out.take(order)
    return Normalized(
        out,
        FileChanges(
            label=label,
            identity_dropped=tuple(names[i] for i in identity),
            reordered=reordered,
            time_from=time_from,
            time_sub_us=sub_us,
            metrics_from=tuple(dict.fromkeys(metrics_from)),
            precision=precision,
            extra_columns=extra,
        ),
    )


def file_span(label: str) -> tuple[Month, int | None]:
    """The month and, for a daily file, the day that a file label ``YYYY-MM[-DD]`` names."""
    parts = label.split("-")
    if len(parts) in (2, 3) and all(p.isdigit() for p in parts):
        return Month.parse(label), int(parts[2]) if len(parts) == 3 else None
    raise ValueError(f"not a file label: {label!r}; expected YYYY-MM or YYYY-MM-DD")


def expected_identity(instrument: Instrument, month: Month) -> dict[str, str | int]:
    """What each identity column but ``day`` must hold in a file of this partition."""
    return {
        "exchange": instrument.exchange,
        "symbol": instrument.symbol,
        "interval": instrument.interval,
        "timestamp": instrument.timestamp,
        "timestamp_type": instrument.timestamp,
        "year": month.year,
        "month": month.month,
    }


def day_of_month(time: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each row's day of month as float64 (NaN where ``time`` is null)."""
    return np.asarray(pc.day(time).cast(pa.float64()).to_numpy(zero_copy_only=False))


def disagreeing(column: pa.ChunkedArray, expected: str | int | np.ndarray) -> np.ndarray:
    """Rows of an identity column that do not restate ``expected``; a null never does.

    Text may be dictionary-encoded or of any string type; numbers (year, month, day) may be
    integers or digit strings such as ``"07"``. ``expected`` is one value, or one per row where
    NaN means "cannot be judged" (a null ``time``), never a disagreement.
    """
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if isinstance(expected, str):
        try:
            text = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return np.ones(len(column), dtype=bool)
        return np.asarray(pc.fill_null(pc.not_equal(text, expected), True).to_numpy(), dtype=bool)
    wrong = _as_numbers(column) != expected
    if isinstance(expected, np.ndarray):
        wrong &= ~np.isnan(expected)
    return wrong


def by_name(columns: Iterable[ExtraColumn]) -> dict[str, list[ExtraColumn]]:
    """Extra columns grouped by name, in order of first appearance."""
    found: dict[str, list[ExtraColumn]] = {}
    for c in columns:
        found.setdefault(c.name, []).append(c)
    return found


def files_phrase(columns: Iterable[ExtraColumn]) -> str:
    """Where columns were found, in words: ``file 2026-08-01``, ``9 files (2026-08-01 …
    2026-08-09)``, ``the table`` for columns of a table that was not normalized."""
    labels = [c.file for c in columns if c.file is not None]
    return _labels(labels) if labels else "the table"


def narrowest(precisions: Iterable[str]) -> str:
    """The float width with the fewest bits among ``precisions`` ("float16" < "float32" < ...)."""
    return min(precisions, key=lambda p: np.finfo(p).bits, default=CANONICAL_FLOAT)


def _check_identity(
    table: pa.Table,
    identity: list[int],
    instrument: Instrument,
    month: Month,
    day: int | None,
    time: pa.ChunkedArray | None,
    label: str,
) -> None:
    expected: dict[str, str | int | np.ndarray] = dict(expected_identity(instrument, month))
    if day is not None:
        expected["day"] = day
    elif time is not None:
        expected["day"] = day_of_month(time)
    problems = []
    for i in identity:
        name, column = table.column_names[i], table.column(i)
        if name not in expected:  # a monthly file's day without a usable time: nothing to compare
            continue
        want = expected[name]
        wrong = disagreeing(column, want)
        if not wrong.any():
            continue
        first = int(np.flatnonzero(wrong)[0])
        wanted = (
            f"the day of time ({int(want[first])})" if isinstance(want, np.ndarray) else repr(want)
        )
        problems.append(
            f"column {name} holds {_show(column[first].as_py())} in "
            f"{int(np.count_nonzero(wrong))} of {table.num_rows} rows, expected {wanted}"
        )
    if problems:
        raise NormalizationError(
            f"file {label} does not belong to this partition: {'; '.join(problems)}"
        )


def _canonical_time(column: pa.ChunkedArray, label: str) -> tuple[pa.ChunkedArray, str | None, int]:
    """``time`` as naive-UTC ``timestamp[us]``, the type it had, and values not whole µs."""
    kind = column.type
    if kind == TIME_TYPE:
        return column, None, 0
    naive = column.cast(pa.timestamp(kind.unit))  # drops the zone; the UTC instants stay
    try:
        return naive.cast(TIME_TYPE), str(kind), 0
    except pa.ArrowInvalid as exc:
        if kind.unit != "ns":
            raise NormalizationError(f"file {label}: time out of range ({exc})") from None
    # Truncating would move these rows onto the grid; in ns they stay off it, to be rejected.
    truncated = naive.cast(TIME_TYPE, safe=False).cast(naive.type)
    return naive, str(kind), int(pc.sum(pc.not_equal(naive, truncated)).as_py() or 0)


def _as_float64(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, str | None]:
    """A numeric metric column as float64 and the numpy name of the type it had; anything else
    unchanged, with None."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    kind = column.type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
        return column, None
    # Integers beyond 2**53 round, as any float64 store of them would.
    return column.cast(pa.float64(), safe=False), _dtype(kind)


def _as_numbers(column: pa.ChunkedArray) -> np.ndarray:
    """Integers, floats or digit strings as float64; NaN for nulls and anything else."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return np.asarray(column.cast(pa.float64(), safe=False).to_numpy(), dtype=np.float64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        text = column.cast(pa.string())
        digits = pc.if_else(pc.fill_null(pc.utf8_is_digit(text), False), text, None)
        try:
            return np.asarray(digits.cast(pa.float64()).to_numpy(), dtype=np.float64)
        except pa.ArrowInvalid:  # digits of another script: not a number we can compare
            pass
    return np.full(len(column), np.nan)


def _dtype(kind: pa.DataType) -> str:
    """numpy's name of a numeric Arrow type: float32 rather than Arrow's "float"."""
    return np.dtype(kind.to_pandas_dtype()).name


def _time_change(f: FileChanges) -> str | None:
    if f.time_from is None:
        return None
    if f.time_sub_us:
        return f"time {f.time_from} kept in ns ({f.time_sub_us} values not whole microseconds)"
    zone = " (converted to UTC)" if f.zone_converted else ""
    return f"time {f.time_from}->{TIME_TYPE}{zone}"


def _grouped(
    files: Iterable[FileChanges], describe: Callable[[FileChanges], str | None]
) -> list[str]:
    """``describe`` of each file, equal descriptions counted: "rows sorted in 3 files (…)"."""
    groups: dict[str, list[FileChanges]] = {}
    for f in files:
        text = describe(f)
        if text is not None:
            groups.setdefault(text, []).append(f)
    return [f"{text} in {_files(group)}" for text, group in groups.items()]


def _files(files: list[FileChanges]) -> str:
    return _labels([f.label for f in files])


def _labels(labels: list[str]) -> str:
    """``file 2026-08-01``, ``2 files (2026-08-01, 2026-08-02)``, ``9 files (2026-08-01 …
    2026-08-09)``."""
    if len(labels) == 1:
        return f"file {labels[0]}"
    shown = ", ".join(labels) if len(labels) <= 3 else f"{labels[0]} … {labels[-1]}"
    return f"{len(labels)} files ({shown})"


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)
