"""Each corruption mode is caught by exactly the rule ``MODES`` names, and so by exactly its check.

A rule that could not run because the schema rule rejected a column it needs is "not evaluated",
which is not a failure: the schema modes fail exactly ``schema``. Sandbox data is clean.
"""

from __future__ import annotations

from datetime import date, datetime

import pyarrow as pa
import pytest

from aperiodic_assets.months import Month
from aperiodic_assets.sandbox.corruption import MODES, apply_corruption
from aperiodic_assets.sandbox.data import generate
from aperiodic_assets.schema import INTERVALS, SCHEMA, TIMESTAMP_MODES
from aperiodic_assets.universe import Instrument
from aperiodic_assets.validation import CHECKS, ValidationReport, validate
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
