"""Tolerant reader, strict warehouse: every shape of the same data is accepted, normalized and
written in one canonical form; only data that is wrong is rejected.

Shapes are made from the sandbox's clean tables; ``run`` takes a month through
``run_partition`` with a stand-in client serving those tables as the month's files, so each
shape is followed to the file in the warehouse.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from aperiodic_assets.core.api import FileInfo, SourceFile
from aperiodic_assets.core.assemble import AssemblyError, Part, assemble
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.normalize import (
    Normalization,
    NormalizationError,
    normalize,
)
from aperiodic_assets.core.pipeline import PartitionOutcome, PartitionRejected, run_partition
from aperiodic_assets.core.schema import METRIC_COLUMNS, SCHEMA, TIME
from aperiodic_assets.core.validation import validate
from aperiodic_assets.core.warehouse import QUARANTINE, Warehouse
from aperiodic_assets.defs.assets.reporting import NORMALIZED, WARNINGS_TAG, landed
from aperiodic_assets.sandbox.corruption import apply_corruption
from aperiodic_assets.sandbox.data import generate

from .conftest import BTC_1H, TODAY, month_table

ETH = "perpetual-ETH-USDT:USDT"

JULY, AUGUST = Month(2026, 7), Month(2026, 8)
CLEAN = month_table(BTC_1H, JULY)
ROWS = CLEAN.num_rows
HALF_US = pa.scalar(500, pa.duration("ns"))
Shape = Callable[[pa.Table], pa.Table]


def day_table(day: int) -> pa.Table:
    start = date(2026, 8, day)
    end = date(2026, 8, day + 1) if day < 31 else date(2026, 9, 1)
    return generate(BTC_1H.exchange, BTC_1H.symbol, "1h", BTC_1H.timestamp, start, end)


def replaced(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, column)


def with_columns(table: pa.Table, **columns: pa.Array | list) -> pa.Table:
    for name, values in columns.items():
        table = table.append_column(name, values if isinstance(values, pa.Array) else [values])
    return table


def constant(value: object, rows: int, kind: pa.DataType | None = None) -> pa.Array:
    return pa.array([value] * rows, kind)


def hive(table: pa.Table, day: int | None = None) -> pa.Table:
    """The columns DuckDB's August backfill stored: the partition's identity, as DuckDB types
    them (VARCHAR ``timestamp`` holding the mode, dictionary-encoded strings, numbers as ints
    or text)."""
    rows = table.num_rows
    days = pc.day(table[TIME]) if day is None else constant(day, rows, pa.int8())
    return with_columns(
        table,
        exchange=constant(BTC_1H.exchange, rows).dictionary_encode(),
        symbol=constant(BTC_1H.symbol, rows, pa.large_string()),
        interval=constant(BTC_1H.interval, rows),
        timestamp=constant(BTC_1H.timestamp, rows),
        year=constant(2026, rows, pa.int64()),
        month=constant(f"{table[TIME][0].as_py().month:02d}", rows),
        day=days,
    )


def shuffled(table: pa.Table) -> pa.Table:
    return table.take(np.random.default_rng(11).permutation(table.num_rows))


def in_unit(unit: str, tz: str | None = None) -> Shape:
    return lambda t: replaced(t, TIME, t[TIME].cast(pa.timestamp(unit, tz)))


def as_float(kind: pa.DataType) -> Shape:
    def shape(table: pa.Table) -> pa.Table:
        for c in METRIC_COLUMNS:
            table = replaced(table, c, table[c].cast(kind))
        return table

    return shape


def rounded(kind: pa.DataType) -> Shape:
    """What a file stored in ``kind`` holds, back in float64: the warehouse's view of it."""
    return lambda t: as_float(pa.float64())(as_float(kind)(t))


def with_extra(table: pa.Table) -> pa.Table:
    return with_columns(table, venue=constant("binance", table.num_rows))


class MonthFiles:
    """Stands in for the API client: serves the given tables as one month's files."""

    def __init__(self, tables: dict[str, pa.Table]) -> None:
        self.tables = tables

    def fetch_month(self, instrument, month: Month) -> list[SourceFile]:
        files = []
        for label, table in self.tables.items():
            day = int(label[8:]) if len(label) > 7 else None
            sink = io.BytesIO()
            pq.write_table(table, sink)
            info = FileInfo(month.year, month.month, day, f"https://files.test/{label}.parquet")
            data = sink.getvalue()
            files.append(SourceFile(info, data, table, etag=f'"{label}"', size=len(data)))
        return files


def run(warehouse: Warehouse, tables: dict[str, pa.Table], month: Month = JULY):
    return run_partition(MonthFiles(tables), warehouse, BTC_1H, month, today=TODAY)  # type: ignore[arg-type]


def stored(warehouse: Warehouse, outcome: PartitionOutcome) -> pa.Table:
    """The partition's file as written; it holds exactly the canonical schema, sorted."""
    assert outcome.written is not None
    table = pq.read_table(io.BytesIO(warehouse.fs.cat_file(outcome.written.path)))
    assert table.schema.equals(SCHEMA)
    assert pc.all(pc.greater(table[TIME][1:], table[TIME][:-1])).as_py()
    return table


# --- each shape of the same data: accepted, normalized, written canonical ---------------------

SHAPES: dict[str, tuple[Shape, Shape]] = {
    # shape of the source file -> what the warehouse then holds (the clean data, or it rounded)
    "hive columns": (hive, lambda t: t),
    "unsorted rows": (shuffled, lambda t: t),
    **{f"time in {u}": (in_unit(u), lambda t: t) for u in ("s", "ms", "ns")},
    **{f"time {tz}": (in_unit("us", tz), lambda t: t) for tz in ("UTC", "Etc/UTC", "+00:00")},
    "time ns UTC": (in_unit("ns", "UTC"), lambda t: t),
    "time Europe/Berlin": (in_unit("ms", "Europe/Berlin"), lambda t: t),
    "float32 metrics": (as_float(pa.float32()), rounded(pa.float32())),
    "float16 metrics": (as_float(pa.float16()), rounded(pa.float16())),
    "extra column": (with_extra, lambda t: t),
    "all at once": (
        lambda t: with_extra(hive(in_unit("ns", "UTC")(as_float(pa.float32())(shuffled(t))))),
        rounded(pa.float32()),
    ),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_each_shape_of_the_same_data_lands_as_the_canonical_file(name: str, warehouse):
    shape, expected = SHAPES[name]
    outcome = run(warehouse, {JULY.key: shape(CLEAN)})
    assert outcome.report is not None and outcome.report.ok, outcome.report.summary()
    assert stored(warehouse, outcome).equals(expected(CLEAN))
    assert outcome.normalized is not None
    (changes,) = outcome.normalized.files
    assert changes.changed


def test_a_canonical_file_is_left_as_it_is(warehouse):
    result = normalize(CLEAN, BTC_1H, JULY.key)
    assert result.table.equals(CLEAN) and not result.changes.changed
    outcome = run(warehouse, {JULY.key: CLEAN})
    assert outcome.normalized is not None
    assert outcome.normalized.summary() == "none: every file was in the canonical form"
    assert outcome.normalized.records() == []
    assert outcome.written is not None
    again = run(warehouse, {JULY.key: hive(shuffled(CLEAN))})
    assert again.written is not None and again.written.sha256 == outcome.written.sha256


# --- identity columns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month"),
    [
        (constant(2026, ROWS), constant(7, ROWS)),
        (constant("2026", ROWS), constant("07", ROWS)),
        (constant("2026", ROWS).dictionary_encode(), constant("7", ROWS)),
        (constant(2026, ROWS, pa.int16()), constant(7.0, ROWS)),
    ],
    ids=["ints", "zero-padded text", "dictionary text", "narrow int and float"],
)
def test_agreeing_identity_columns_of_any_type_are_dropped(year: pa.Array, month: pa.Array):
    table = with_columns(
        CLEAN,
        exchange=constant(BTC_1H.exchange, ROWS).dictionary_encode(),
        timestamp_type=constant(BTC_1H.timestamp, ROWS, pa.string_view()),
        year=year,
        month=month,
    )
    result = normalize(table, BTC_1H, JULY.key)
    assert result.table.equals(CLEAN)
    assert result.changes.identity_dropped == ("exchange", "timestamp_type", "year", "month")


def test_a_daily_files_day_column_is_its_day():
    table = hive(day_table(5), day=5)
    assert normalize(table, BTC_1H, "2026-08-05").table.equals(day_table(5))
    with pytest.raises(NormalizationError, match="column day holds 5 in 24 of 24 rows, expected 6"):
        normalize(table, BTC_1H, "2026-08-06")


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        (
            "exchange",
            "okx-perps",
            "exchange holds 'okx-perps' in 744 of 744 rows, expected 'binance",
        ),
        ("symbol", ETH, f"column symbol holds '{ETH}' in 744 of 744 rows"),
        ("interval", "1m", "column interval holds '1m' in 744 of 744 rows, expected '1h'"),
        (
            "timestamp",
            "true",
            "column timestamp holds 'true' in 744 of 744 rows, expected 'exchange'",
        ),
        ("year", 2025, "column year holds 2025 in 744 of 744 rows, expected 2026"),
        ("month", "08", "column month holds '08' in 744 of 744 rows, expected 7"),
        ("day", 3, "column day holds 3 in 720 of 744 rows, expected the day of time (1)"),
        ("exchange", None, "column exchange holds None in 744 of 744 rows"),
    ],
)
def test_a_disagreeing_identity_column_is_rejected_naming_file_column_value_and_expectation(
    column, value, words
):
    table = replaced(hive(CLEAN), column, pa.array([value] * ROWS))
    with pytest.raises(NormalizationError) as error:
        normalize(table, BTC_1H, JULY.key)
    assert str(error.value).startswith("file 2026-07 does not belong to this partition: ")
    assert words in str(error.value)


def test_one_row_that_disagrees_is_enough():
    table = hive(CLEAN)
    exchange = table["exchange"].to_pylist()
    exchange[100] = "okx-perps"
    table = replaced(table, "exchange", pa.array(exchange).dictionary_encode())
    with pytest.raises(NormalizationError, match="holds 'okx-perps' in 1 of 744 rows"):
        normalize(table, BTC_1H, JULY.key)


def test_a_file_of_another_partition_is_rejected_and_quarantined_with_nothing_written(warehouse):
    days = {f"2026-08-{d:02d}": hive(day_table(d), day=d) for d in range(1, 32)}
    days["2026-08-04"] = replaced(days["2026-08-04"], "symbol", constant(ETH, 24))
    with pytest.raises(PartitionRejected) as error:
        run(warehouse, days, AUGUST)
    message = str(error.value)
    assert "file 2026-08-04 does not belong to this partition: column symbol holds" in message
    assert "expected 'perpetual-BTC-USDT:USDT'" in message
    assert error.value.validation is None
    assert f"/{QUARANTINE}/" in error.value.quarantine_url
    assert not warehouse.exists(BTC_1H, AUGUST)
    report = json.loads(warehouse.fs.cat_file(f"{error.value.quarantine_url}/report.json"))
    assert "column symbol holds" in report["error"]


# --- rows, time -------------------------------------------------------------------------------


def test_unsorted_rows_are_sorted_and_duplicates_stay_for_validation():
    table = shuffled(pa.concat_tables([CLEAN, CLEAN.slice(40, 1)]))
    result = normalize(table, BTC_1H, JULY.key)
    assert result.changes.reordered
    times = result.table[TIME]
    assert pc.all(pc.greater_equal(times[1:], times[:-1])).as_py()
    report = validate(result.table, BTC_1H, JULY)
    assert [r.name for r in report.rules if r.failed] == ["time_unique"]


@pytest.mark.parametrize("unit", ["s", "ms", "ns"])
def test_time_in_any_unit_becomes_naive_microseconds(unit: str):
    result = normalize(in_unit(unit)(CLEAN), BTC_1H, JULY.key)
    assert result.table.equals(CLEAN)
    assert result.changes.time_from == f"timestamp[{unit}]"
    assert (
        f"time timestamp[{unit}]->timestamp[us] in file 2026-07"
        in Normalization((result.changes,)).summary()
    )


def test_a_zone_other_than_utc_converts_exactly_and_is_said_so():
    berlin = in_unit("us", "Europe/Berlin")(CLEAN)
    result = normalize(berlin, BTC_1H, JULY.key)
    assert result.table.equals(CLEAN)
    assert result.changes.zone_converted
    assert "(converted to UTC)" in Normalization((result.changes,)).summary()
    assert not normalize(in_unit("us", "Etc/UTC")(CLEAN), BTC_1H, JULY.key).changes.zone_converted


def test_sub_microsecond_times_are_not_truncated_but_rejected_as_off_the_grid():
    late = pc.add(CLEAN[TIME].cast(pa.timestamp("ns")), HALF_US)
    table = replaced(CLEAN, TIME, late)
    result = normalize(table, BTC_1H, JULY.key)
    assert result.table.schema.field(TIME).type == pa.timestamp("ns")
    assert result.changes.time_sub_us == ROWS
    # A day in ns among days in us still assembles (in ns); validation rejects its rows.
    second = day_table(2)
    second = replaced(second, TIME, pc.add(second[TIME].cast(pa.timestamp("ns")), HALF_US))
    month = assemble(
        [
            Part("2026-08-01", normalize(day_table(1), BTC_1H, "2026-08-01").table),
            Part("2026-08-02", normalize(second, BTC_1H, "2026-08-02").table),
        ]
    )
    report = validate(month, BTC_1H, AUGUST, window=(AUGUST.start, AUGUST.start.replace(day=3)))
    assert [r.name for r in report.rules if r.failed] == ["time_on_grid"]
    rule = report.rule("time_on_grid")
    assert rule.violations == 24 and "5e-07 s past a grid point" in rule.message


# --- metric dtypes: float widths are judged at their precision --------------------------------


def test_float32_metrics_are_judged_at_float32_precision():
    result = normalize(as_float(pa.float32())(CLEAN), BTC_1H, JULY.key)
    assert result.table.schema.equals(SCHEMA)
    assert (result.changes.metrics_from, result.changes.precision) == (("float32",), "float32")
    assert not validate(result.table, BTC_1H, JULY).ok, "float32 rounding fails at 1e-9"
    report = validate(result.table, BTC_1H, JULY, precision="float32")
    assert report.ok and not report.warnings, report.summary()
    message = report.check("identities").message
    assert "tolerance 9.54e-07 + 9.54e-07*|expected|, for values stored as float32" in message
    assert "tolerance 9.54e-07" in report.check("averages").message
    assert report.check("identities").metadata["precision"] == "float32"
    # A float64 file is judged exactly as before.
    exact = validate(CLEAN, BTC_1H, JULY).check("identities")
    assert "tolerance 1e-09 + 1e-09*|expected|)" in exact.message


def test_a_float32_table_given_to_validate_is_judged_at_its_own_precision():
    report = validate(as_float(pa.float32())(CLEAN), BTC_1H, JULY)
    assert report.ok, report.summary()


def test_a_broken_identity_in_a_float32_file_is_still_rejected(warehouse):
    broken = as_float(pa.float32())(apply_corruption(CLEAN, "broken_identity", "1h"))
    with pytest.raises(PartitionRejected) as error:
        run(warehouse, {JULY.key: broken})
    report = error.value.validation
    assert report is not None
    assert [r.name for r in report.rules if r.failed] == ["pct_sum_to_one"]
    assert "beyond tolerance 9.54e-07 + 9.54e-07*|expected|, for values stored as float32" in str(
        error.value
    )
    assert not warehouse.exists(BTC_1H, JULY)


def test_integer_metrics_become_float64_without_widening_the_tolerance():
    imbalance = pc.cast(pc.round(CLEAN["imbalance"]), pa.int32())
    result = normalize(replaced(CLEAN, "imbalance", imbalance), BTC_1H, JULY.key)
    assert result.table.schema.equals(SCHEMA)
    assert (result.changes.metrics_from, result.changes.precision) == (("int32",), "float64")


# --- columns beyond the contract, and columns missing -----------------------------------------


def test_an_extra_column_is_dropped_and_named_with_its_file_as_a_warning(warehouse):
    days = {f"2026-08-{d:02d}": day_table(d) for d in range(1, 32)}
    for d in (3, 4):
        days[f"2026-08-{d:02d}"] = with_extra(days[f"2026-08-{d:02d}"])
    outcome = run(warehouse, days, AUGUST)
    stored(warehouse, outcome)
    report = outcome.report
    assert report is not None and report.ok
    assert [c.name for c in report.warnings] == ["schema_drift"]
    rule = report.rule("extra_columns")
    assert rule.violations == 1
    assert "venue (string) in 2 files (2026-08-03, 2026-08-04)" in rule.message
    assert rule.examples == [
        {"column": "venue", "type": "string", "where": "2 files (2026-08-03, 2026-08-04)"}
    ]


def test_a_renamed_column_is_still_a_schema_error_naming_the_file():
    renamed = CLEAN.rename_columns(
        ["imbalanceRatio" if c == "imbalance_ratio" else c for c in CLEAN.column_names]
    )
    result = normalize(renamed, BTC_1H, JULY.key)
    report = validate(result.table, BTC_1H, JULY, dropped=result.changes.extra_columns)
    rule = report.rule("schema")
    assert rule.violations == 2 == validate(renamed, BTC_1H, JULY).rule("schema").violations
    assert "imbalance_ratio: missing" in rule.message
    assert (
        "imbalanceRatio: unexpected column (type double) in file 2026-07; looks like a rename"
        " of imbalance_ratio" in rule.message
    )
    assert report.check("schema_drift").passed


@pytest.mark.parametrize("mode", ["missing_column", "string_column"])
def test_a_broken_metric_column_gets_the_same_schema_message_as_before(mode: str):
    raw = apply_corruption(CLEAN, mode, "1h")
    result = normalize(raw, BTC_1H, JULY.key)
    before = validate(raw, BTC_1H, JULY).rule("schema")
    after = validate(result.table, BTC_1H, JULY).rule("schema")
    assert after.failed and after.message == before.message


def test_a_daily_file_missing_a_metric_column_cannot_join_its_month():
    days = [normalize(day_table(d), BTC_1H, f"2026-08-{d:02d}").table for d in (1, 2)]
    days[1] = days[1].drop_columns(["bid_ask_ratio_avg"])
    words = "file 2026-08-02 has no such column where file 2026-08-01 has bid_ask_ratio_avg:double"
    with pytest.raises(AssemblyError, match=words):
        assemble([Part("2026-08-01", days[0]), Part("2026-08-02", days[1])])


# --- a month of mixed shapes, and what the materialization says -------------------------------


def test_a_month_of_mixed_shapes_lands_canonical_and_the_materialization_says_what_changed(
    warehouse,
):
    days = {f"2026-08-{d:02d}": day_table(d) for d in range(1, 32)}
    for d in range(1, 10):  # the August backfill's hive columns
        days[f"2026-08-{d:02d}"] = hive(days[f"2026-08-{d:02d}"], day=d)
    days["2026-08-12"] = shuffled(days["2026-08-12"])
    days["2026-08-13"] = as_float(pa.float32())(days["2026-08-13"])
    days["2026-08-14"] = in_unit("ns", "UTC")(days["2026-08-14"])
    days["2026-08-15"] = with_extra(days["2026-08-15"])
    outcome = run(warehouse, days, AUGUST)

    expected = pa.concat_tables(
        rounded(pa.float32())(day_table(d)) if d == 13 else day_table(d) for d in range(1, 32)
    )
    assert stored(warehouse, outcome).equals(expected)
    assert outcome.normalized is not None
    assert outcome.normalized.summary() == (
        "identity columns (exchange, symbol, interval, timestamp, year, month, day) checked and"
        " dropped from 9 files (2026-08-01 … 2026-08-09); rows sorted by time in file 2026-08-12;"
        " time timestamp[ns, tz=UTC]->timestamp[us] in file 2026-08-14;"
        " metrics float32->float64 in file 2026-08-13; identities judged at float32 precision;"
        " extra column venue dropped from file 2026-08-15"
    )

    report = landed(outcome)
    assert report is not None
    metadata = {k: v.value for k, v in report.metadata.items()}
    assert metadata[NORMALIZED] == outcome.normalized.summary()
    rows = [r.data for r in report.metadata["normalized_files"].value.records]
    assert [r["file"] for r in rows] == [*days][:9] + [f"2026-08-{d}" for d in (12, 13, 14, 15)]
    assert rows[9]["rows_sorted"] == "yes" and rows[10]["metrics_from"] == "float32"
    assert rows[11]["time_from"] == "timestamp[ns, tz=UTC]" and rows[12]["extra_dropped"] == "venue"
    assert metadata["warnings"].startswith("schema_drift: extra_columns: 1 column(s) beyond")
    assert "venue (string) in file 2026-08-15" in metadata["warnings"]
    assert report.tags[WARNINGS_TAG] == "schema_drift"
