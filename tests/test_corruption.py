"""Each corruption mode is caught by exactly the rule ``MODES`` names, and so by exactly its check.

A rule that could not run because the schema rule rejected a column it needs is "not evaluated",
which is not a failure: the schema modes fail exactly ``schema``. Sandbox data is clean. Shapes
(``shapes.SHAPES``) are the opposite: the same values stored another way, on top of any corruption.
"""

from __future__ import annotations

from datetime import date, datetime

import pyarrow as pa
import pytest

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.schema import INTERVALS, METRIC_COLUMNS, SCHEMA, TIMESTAMP_MODES
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.validation import CHECKS, ValidationReport, validate
from aperiodic_assets.sandbox.corruption import MODES, apply_corruption
from aperiodic_assets.sandbox.data import generate
from aperiodic_assets.sandbox.shapes import HIVE_COLUMNS, SHAPES, apply_shape, other_exchange
from tests.test_validation import MONTH, build_table, instrument

CHECK_OF = {rule.name: check for check in CHECKS for rule in check.rules}
SCHEMA_MODES = {"missing_column", "renamed_column", "string_column"}


def assert_caught_by_exactly(report: ValidationReport, rule: str) -> None:
    """Only ``rule`` failed, only its check failed, and the check's metadata counts it."""
    check = CHECK_OF[rule].name
    assert {r.name for r in report.rules if r.failed} == {rule}, report.summary()
    assert {c.name for c in report.checks if c.failed} == {check}, report.summary()
    assert report.rule(rule).violations > 0
    assert report.check(check).metadata[rule] == report.rule(rule).violations
    assert report.ok == (CHECK_OF[rule].severity == "warn")


def ipc_bytes(table: pa.Table) -> bytes:
    """Bytes of ``table``: unlike ``Table.equals``, equal when both hold NaN in the same place."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def sandbox_month(interval: str, timestamp: str = "exchange") -> pa.Table:
    return generate(
        "binance-futures",
        "perpetual-BTC-USDT:USDT",
        interval,
        timestamp,
        MONTH.first_day,
        MONTH.next().first_day,
    )


def test_every_mode_names_a_declared_rule() -> None:
    assert set(MODES.values()) <= set(CHECK_OF)
    assert {m for m, rule in MODES.items() if CHECK_OF[rule].severity == "warn"} == {"gap"}


@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
@pytest.mark.parametrize("mode", list(MODES))
def test_corruption_fails_exactly_the_rule_named_for_it(mode: str, interval: str) -> None:
    clean = build_table(interval)
    assert validate(clean, instrument(interval), MONTH).ok

    report = validate(apply_corruption(clean, mode, interval), instrument(interval), MONTH)

    assert_caught_by_exactly(report, MODES[mode])
    if mode in SCHEMA_MODES:
        assert report.not_evaluated, "a broken column leaves the rules that need it unevaluated"


@pytest.mark.parametrize("mode", list(MODES))
def test_corruption_of_sandbox_data_fails_exactly_the_rule_named_for_it(mode: str) -> None:
    report = validate(apply_corruption(sandbox_month("1h"), mode, "1h"), instrument("1h"), MONTH)
    assert_caught_by_exactly(report, MODES[mode])


@pytest.mark.parametrize("mode", list(MODES))
def test_corruption_of_one_daily_file_fails_exactly_the_rule_named_for_it(mode: str) -> None:
    day = date(2026, 8, 5)
    table = generate("okx-perps", "perpetual-BTC-USDT:USDT", "1h", "true", day, day.replace(day=6))
    inst = Instrument("okx-perps", "perpetual-BTC-USDT:USDT", "1h", "true")
    report = validate(
        apply_corruption(table, mode, "1h"),
        inst,
        Month(2026, 8),
        window=(datetime(2026, 8, 5), datetime(2026, 8, 6)),
    )
    assert_caught_by_exactly(report, MODES[mode])


def test_a_gap_in_a_one_row_file_removes_that_row() -> None:
    assert apply_corruption(build_table("1d", rows=1), "gap", "1d").num_rows == 0


@pytest.mark.parametrize("mode", list(MODES))
def test_corruption_is_deterministic(mode: str) -> None:
    clean = build_table("1h")
    assert ipc_bytes(apply_corruption(clean, mode, "1h")) == ipc_bytes(
        apply_corruption(clean, mode, "1h")
    )


def test_unknown_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="broken_identity"):
        apply_corruption(build_table("1h"), "bitflip", "1h")


def test_empty_file_keeps_the_schema() -> None:
    assert apply_corruption(build_table("1h"), "empty_file", "1h").schema.equals(SCHEMA)


@pytest.mark.parametrize("timestamp", TIMESTAMP_MODES)
@pytest.mark.parametrize("interval", list(INTERVALS))
def test_sandbox_month_validates_clean_and_complete(interval: str, timestamp: str) -> None:
    table = sandbox_month(interval, timestamp)
    inst = Instrument("binance-futures", "perpetual-BTC-USDT:USDT", interval, timestamp)
    report = validate(table, inst, MONTH)
    assert report.ok, report.first_error_message()
    assert not report.warnings and not report.not_evaluated, report.summary()
    assert report.check("completeness").metadata["completeness_pct"] == 100.0
    assert report.rows == (date(2026, 8, 1) - date(2026, 7, 1)).days * 86400 // INTERVALS[interval]


# --- shapes: the same data, stored another way ----------------------------------------------------


def shaped(table: pa.Table, shape: str, interval: str = "1h", label: str = "2026-07") -> pa.Table:
    inst = instrument(interval)
    return apply_shape(
        table,
        shape,
        exchange=inst.exchange,
        symbol=inst.symbol,
        interval=interval,
        timestamp=inst.timestamp,
        label=label,
    )


FLOAT32_METRICS = [pa.field(c, pa.float32()) for c in METRIC_COLUMNS]


def canonical(table: pa.Table) -> pa.Table:
    """The file's columns, sorted by time, in the canonical types."""
    return table.select(list(SCHEMA.names)).sort_by("time").cast(SCHEMA)


@pytest.mark.parametrize("interval", ["1m", "1h", "1d"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_shape_keeps_every_value_and_is_deterministic(shape: str, interval: str) -> None:
    clean = build_table(interval)
    table = shaped(clean, shape, interval)
    assert ipc_bytes(table) == ipc_bytes(shaped(clean, shape, interval))
    if shape == "float32":  # the same numbers, as float32 holds them
        clean = clean.cast(pa.schema([SCHEMA.field("time"), *FLOAT32_METRICS]))
    assert canonical(table).equals(canonical(clean))


def test_hive_columns_restate_the_partition_and_the_wrong_one_names_another_exchange() -> None:
    inst = instrument()
    right = shaped(build_table(), "hive_columns").select(list(HIVE_COLUMNS))
    wrong = shaped(build_table(), "hive_columns_wrong").select(list(HIVE_COLUMNS))
    values = (inst.exchange, inst.symbol, inst.interval, inst.timestamp)
    assert right.to_pylist()[0] == dict(zip(HIVE_COLUMNS, values, strict=True))
    assert wrong.to_pylist()[-1] == {
        **right.to_pylist()[-1],
        "exchange": other_exchange(inst.exchange),
    }
    assert other_exchange(inst.exchange) != inst.exchange


def test_unsorted_order_depends_on_the_label_and_never_is_the_identity() -> None:
    clean = build_table("1h")
    july = shaped(clean, "unsorted", label="2026-07")["time"]
    other = shaped(clean, "unsorted", label="2026-07-02")["time"]
    assert not july.equals(clean["time"]) and not july.equals(other)
    two = build_table("1h", rows=2)
    assert not shaped(two, "unsorted")["time"].equals(two["time"])


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("mode", list(MODES))
def test_a_shape_applies_on_top_of_every_corruption(mode: str, shape: str) -> None:
    corrupted = apply_corruption(build_table("1h"), mode, "1h")
    table = shaped(corrupted, shape)
    assert table.num_rows == corrupted.num_rows
    assert set(corrupted.column_names) <= set(table.column_names)


def test_shapes_stack_and_replace_the_columns_they_append() -> None:
    table = shaped(shaped(build_table(), "hive_columns"), "hive_columns_wrong")
    assert table.column_names.count("exchange") == 1
    assert table["exchange"][0].as_py() == other_exchange(instrument().exchange)
    both = shaped(shaped(build_table(), "float32"), "time_ms")
    assert both.schema.field("time").type == pa.timestamp("ms")
    assert both.schema.field("imbalance").type == pa.float32()
