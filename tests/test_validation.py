"""Specification of ``aperiodic_assets.validation``: one passing and one failing table per check.

Tables come from ``build_table``: bid/ask amounts sampled a few times per interval, the metric
columns computed from them by their definitions (point columns from the last sample, ``*_avg``
as means of the per-sample quantities), so clean tables satisfy every identity exactly.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aperiodic_assets.months import Month
from aperiodic_assets.schema import METRIC_COLUMNS, SCHEMA, TIME, interval_seconds
from aperiodic_assets.universe import Instrument
from aperiodic_assets.validation import CHECKS, CheckResult, ValidationConfig, validate

MONTH = Month(2026, 7)
SAMPLES = 4


def instrument(interval: str = "1h") -> Instrument:
    return Instrument("binance-futures", "perpetual-BTC-USDT:USDT", interval, "exchange")


def build_table(
    interval: str = "1h",
    rows: int | None = None,
    start: datetime = MONTH.start,
    zero_ask_rows: tuple[int, ...] = (),
    seed: int = 7,
) -> pa.Table:
    """A clean table on the grid from ``start``; a whole month of ``MONTH`` by default.

    ``zero_ask_rows`` get an ask amount of exactly 0 in their last sample, so the point
    ask_percentage is 0 and both bid/ask ratio columns are +inf there.
    """
    step = interval_seconds(interval)
    if rows is None:
        rows = int((MONTH.end - start).total_seconds()) // step
    rng = np.random.default_rng(seed)
    bid = rng.lognormal(3.0, 0.6, size=(rows, SAMPLES))
    ask = rng.lognormal(3.0, 0.6, size=(rows, SAMPLES))
    ask[list(zero_ask_rows), -1] = 0.0
    with np.errstate(divide="ignore"):
        per_sample = {
            "imbalance": bid - ask,
            "imbalance_ratio": (bid - ask) / (bid + ask),
            "bid_ask_ratio": bid / ask,
            "bid_percentage": bid / (bid + ask),
            "ask_percentage": ask / (bid + ask),
        }
    columns = {name: v[:, -1] for name, v in per_sample.items()}
    columns |= {f"{name}_avg": v.mean(axis=1) for name, v in per_sample.items()}
    times = np.datetime64(start, "us") + np.arange(rows) * np.timedelta64(step, "s")
    arrays = [pa.array(times, SCHEMA.field(TIME).type)]
    arrays += [pa.array(columns[name]) for name in METRIC_COLUMNS]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def with_values(table: pa.Table, column: str, rows: list[int], values: list[float]) -> pa.Table:
    """``table`` with ``column`` set to ``values`` at ``rows``."""
    data = table.column(column).to_numpy().copy()
    data[rows] = values
    index = table.column_names.index(column)
    return table.set_column(index, column, pa.array(data, table.schema.field(column).type))


def with_times(table: pa.Table, times: np.ndarray) -> pa.Table:
    return table.set_column(0, TIME, pa.array(times, SCHEMA.field(TIME).type))


def result(table: pa.Table, name: str, **kwargs: Any) -> CheckResult:
    """One check of a 1h table validated against ``MONTH``; ``kwargs`` go to ``validate``."""
    return validate(table, instrument(), MONTH, **kwargs).check(name)


def assert_fails(check: CheckResult, name: str, violations: int, *words: str) -> None:
    severity = {spec.name: spec.severity for spec in CHECKS}[name]
    assert (check.name, check.severity, check.evaluated) == (name, severity, True)
    assert not check.passed
    assert check.violations == violations, check.message
    for word in words:
        assert word in check.message, check.message


CLEAN = build_table()


# --- the clean table and the report ----------------------------------------------------------


@pytest.mark.parametrize("spec", CHECKS, ids=lambda s: s.name)
def test_clean_month_passes_every_check(spec) -> None:
    check = validate(CLEAN, instrument(), MONTH).check(spec.name)
    assert (check.passed, check.evaluated, check.violations) == (True, True, 0), check.message
    assert check.severity == spec.severity


def test_report_lists_every_check_in_declaration_order() -> None:
    report = validate(CLEAN, instrument(), MONTH)
    assert [c.name for c in report.checks] == [s.name for s in CHECKS]
    assert len({s.name for s in CHECKS}) == len(CHECKS)
    assert report.ok and not report.errors and not report.warnings
    assert report.first_error_message() is None
    assert report.summary().startswith(f"OK {instrument().key} 2026-07 (744 rows)")


def test_failed_report_summarises_partition_checks_and_counts() -> None:
    table = with_values(CLEAN, "bid_percentage", [3, 5], [0.0, 0.0])
    table = table.slice(0, 740)
    report = validate(table, instrument(), MONTH)
    assert not report.ok
    assert [c.name for c in report.errors][0] == "pct_sum_to_one"
    assert [c.name for c in report.warnings] == ["completeness"]
    summary = report.summary()
    assert summary.startswith(f"REJECTED {instrument().key} 2026-07 (740 rows)")
    assert "pct_sum_to_one 2" in summary and "completeness 4" in summary
    message = report.first_error_message()
    assert message is not None
    assert message.startswith(f"{instrument().key} 2026-07: check pct_sum_to_one failed (2 ")
    assert "2026-07-01T03:00:00" in message


def test_report_json_round_trips_with_inf_and_nan_rendered_as_strings() -> None:
    table = with_values(CLEAN, "imbalance_avg", [1], [np.inf])
    table = with_values(table, "bid_percentage", [2], [np.nan])
    report = validate(table, instrument(), MONTH)
    text = report.to_json()
    assert json.loads(text) == report.to_dict()
    inf_check = next(c for c in json.loads(text)["checks"] if c["name"] == "unexplained_inf")
    assert inf_check["status"] == "failed"
    assert inf_check["examples"][0]["imbalance_avg"] == "inf"
    nan_check = next(c for c in json.loads(text)["checks"] if c["name"] == "nan_present")
    assert nan_check["examples"][0]["bid_percentage"] == "nan"


def test_a_million_rows_validate_in_one_window() -> None:
    rows = 1_000_000
    table = build_table("1m", rows=rows, start=datetime(2024, 1, 1), zero_ask_rows=(5, 900_000))
    window = (datetime(2024, 1, 1), datetime(2024, 1, 1) + timedelta(minutes=rows))
    report = validate(table, instrument("1m"), Month(2024, 1), window=window)
    assert report.ok, report.summary()
    assert report.rows == rows and not report.warnings


# --- schema ---------------------------------------------------------------------------------


def test_missing_column_fails_schema_and_skips_checks_that_need_it() -> None:
    report = validate(CLEAN.drop_columns(["ask_percentage"]), instrument(), MONTH)
    assert_fails(report.check("schema"), "schema", 1, "ask_percentage: missing")
    skipped = report.check("pct_sum_to_one")
    assert (skipped.status, skipped.passed, skipped.violations) == ("not_evaluated", False, 0)
    assert "not evaluated" in skipped.message and "ask_percentage" in skipped.message
    assert report.check("avg_pct_sum_to_one").passed
    assert not report.ok and [c.name for c in report.errors] == ["schema"]


def test_string_metric_column_is_type_drift() -> None:
    table = CLEAN.set_column(
        3, "bid_ask_ratio", pc.cast(CLEAN.column("bid_ask_ratio"), pa.string())
    )
    check = result(table, "schema")
    assert_fails(check, "schema", 1, "bid_ask_ratio: has type string")


def test_renamed_column_is_named_with_its_likely_original() -> None:
    names = ["imbalanceRatio" if c == "imbalance_ratio" else c for c in CLEAN.column_names]
    check = result(CLEAN.rename_columns(names), "schema")
    assert_fails(check, "schema", 2, "imbalance_ratio: missing", "looks like a rename")


def test_unexpected_column_fails_but_identity_columns_are_allowed() -> None:
    extra = CLEAN.append_column("venue", pa.array(["x"] * CLEAN.num_rows))
    assert_fails(result(extra, "schema"), "schema", 1, "venue: unexpected column")
    identity = CLEAN.append_column("exchange", pa.array(["binance-futures"] * CLEAN.num_rows))
    assert result(identity, "schema").passed


def test_integer_metric_column_is_numeric() -> None:
    imbalance = pc.cast(pc.round(CLEAN.column("imbalance")), pa.int64())
    assert result(CLEAN.set_column(1, "imbalance", imbalance), "schema").passed


@pytest.mark.parametrize("tz", [None, "UTC", "+00:00"])
def test_naive_or_utc_time_passes(tz: str | None) -> None:
    table = CLEAN.set_column(0, TIME, CLEAN.column(TIME).cast(pa.timestamp("us", tz)))
    assert result(table, "schema").passed


def test_time_in_another_zone_fails_and_time_checks_are_not_evaluated() -> None:
    table = CLEAN.set_column(0, TIME, CLEAN.column(TIME).cast(pa.timestamp("us", "Europe/Berlin")))
    report = validate(table, instrument(), MONTH)
    assert_fails(report.check("schema"), "schema", 1, "time zone Europe/Berlin")
    assert report.check("time_unique").status == "not_evaluated"
    assert report.check("completeness").status == "not_evaluated"


def test_time_that_is_not_a_timestamp_fails_schema() -> None:
    table = CLEAN.set_column(0, TIME, pc.cast(CLEAN.column(TIME), pa.int64()))
    assert_fails(result(table, "schema"), "schema", 1, "time: has type int64")


# --- non_empty --------------------------------------------------------------------------------


def test_empty_file_fails_non_empty_and_skips_completeness() -> None:
    report = validate(CLEAN.slice(0, 0), instrument(), MONTH)
    assert_fails(report.check("non_empty"), "non_empty", 1, "empty file")
    assert report.check("completeness").status == "not_evaluated"
    assert report.check("schema").passed


# --- time -------------------------------------------------------------------------------------


def test_duplicate_time_fails_time_unique_only() -> None:
    table = pa.concat_tables([CLEAN.slice(0, 11), CLEAN.slice(10)])
    report = validate(table, instrument(), MONTH)
    assert_fails(report.check("time_unique"), "time_unique", 1, "repeats", "2026-07-01T10:00:00")
    assert report.check("time_increasing").passed
    assert report.check("completeness").passed


def test_duplicate_times_are_counted_in_unordered_files_too() -> None:
    order = np.r_[np.arange(20, 744), np.arange(0, 20), [31, 30]]
    report = validate(CLEAN.take(order), instrument(), MONTH)
    assert_fails(report.check("time_unique"), "time_unique", 2, "repeats")
    assert_fails(report.check("time_increasing"), "time_increasing", 2, "earlier than the previous")


def test_out_of_order_rows_fail_time_increasing() -> None:
    table = CLEAN.take(np.r_[0, 1, 3, 2, np.arange(4, 744)])
    check = result(table, "time_increasing")
    assert_fails(
        check, "time_increasing", 1, "2026-07-01T02:00:00", "previous row at 2026-07-01T03"
    )
    assert result(table, "time_unique").passed


def test_time_off_the_interval_grid_fails_time_on_grid() -> None:
    times = CLEAN.column(TIME).to_numpy().copy()
    times[5] += np.timedelta64(30, "s")
    times[9] += np.timedelta64(1500, "ms")
    check = result(with_times(CLEAN, times), "time_on_grid")
    assert_fails(check, "time_on_grid", 2, "off the 1h grid", "30 s past")
    assert check.examples[1]["time"] == "2026-07-01T09:00:01.500000"


def test_time_outside_the_month_fails_time_in_month() -> None:
    times = CLEAN.column(TIME).to_numpy().copy()
    times[0] -= np.timedelta64(1, "h")
    after = CLEAN.slice(743).set_column(0, TIME, pa.array([MONTH.end], SCHEMA.field(TIME).type))
    table = pa.concat_tables([with_times(CLEAN, times), after])
    check = result(table, "time_in_month")
    assert_fails(check, "time_in_month", 2, "2026-06-30T23:00:00", "before the window")


def test_window_overrides_the_month_for_time_checks() -> None:
    table = build_table(rows=48, start=datetime(2026, 8, 1))
    window = (datetime(2026, 8, 1), datetime(2026, 8, 3))
    report = validate(table, instrument(), MONTH, window=window)
    assert report.ok and not report.warnings, report.summary()
    assert not validate(table, instrument(), MONTH).check("time_in_month").passed


# --- identity columns -------------------------------------------------------------------------


def with_identity(table: pa.Table, **values: list[object]) -> pa.Table:
    for name, column in values.items():
        table = table.append_column(name, pa.array(column))
    return table


def test_identity_columns_matching_the_partition_pass() -> None:
    n = CLEAN.num_rows
    days = (np.arange(n) // 24 + 1).tolist()
    table = with_identity(
        CLEAN,
        exchange=["binance-futures"] * n,
        symbol=["perpetual-BTC-USDT:USDT"] * n,
        interval=["1h"] * n,
        timestamp_type=["exchange"] * n,
        day=days,
    )
    check = result(table, "identity_columns")
    assert check.passed, check.message
    assert "exchange, symbol, interval, timestamp_type, day" in check.message


def test_identity_columns_that_disagree_fail() -> None:
    n = CLEAN.num_rows
    exchanges = ["binance-futures"] * n
    exchanges[4] = "okx-perps"
    days = (np.arange(n) // 24 + 1).tolist()
    days[30] = 7
    table = with_identity(CLEAN, exchange=exchanges, day=days)
    check = result(table, "identity_columns")
    assert_fails(check, "identity_columns", 2, "exchange in 1 rows", "day in 1 rows", "okx-perps")
    assert check.examples[0]["exchange"] == "okx-perps"


# --- identities ------------------------------------------------------------------------------


def test_bid_and_ask_percentages_not_summing_to_one_fail() -> None:
    table = with_values(CLEAN, "bid_percentage", [3, 8, 9], [0.4, 0.2, 0.1])
    check = result(table, "pct_sum_to_one")
    assert_fails(
        check, "pct_sum_to_one", 3, "bid_percentage + ask_percentage", "first at 2026-07-01T03"
    )
    assert set(check.examples[0]) == {"row", "time", "bid_percentage", "ask_percentage"}


def test_differences_within_tolerance_pass_and_beyond_fail() -> None:
    ratio = CLEAN.column("imbalance_ratio").to_numpy()
    near = with_values(CLEAN, "imbalance_ratio", [1], [ratio[1] + 5e-10])
    assert result(near, "ratio_equals_pct_difference").passed
    far = with_values(CLEAN, "imbalance_ratio", [1, 2], [ratio[1] + 1e-6, ratio[2] - 1e-6])
    check = result(far, "ratio_equals_pct_difference")
    assert_fails(check, "ratio_equals_pct_difference", 2, "imbalance_ratio differs from")
    strict = ValidationConfig(abs_tol=1e-12, rel_tol=0.0)
    assert_fails(
        result(near, "ratio_equals_pct_difference", config=strict), "ratio_equals_pct_difference", 1
    )


def test_bid_ask_ratio_is_inf_exactly_where_ask_percentage_is_zero() -> None:
    table = build_table(zero_ask_rows=(4, 200))
    assert np.isinf(table.column("bid_ask_ratio").to_numpy()).sum() == 2
    report = validate(table, instrument(), MONTH)
    assert report.ok and not report.warnings, report.summary()


def test_bid_ask_ratio_not_matching_the_percentages_fails() -> None:
    table = build_table(zero_ask_rows=(4,))
    ratio = table.column("bid_ask_ratio").to_numpy()
    table = with_values(table, "bid_ask_ratio", [4, 6, 7], [12.0, np.inf, ratio[7] * 1.01])
    check = result(table, "bid_ask_ratio_matches_pcts")
    assert_fails(check, "bid_ask_ratio_matches_pcts", 3, "ask_percentage is 0", "must be +inf")
    assert [e["row"] for e in check.examples] == [4, 6, 7]


def test_imbalance_sign_opposite_to_ratio_fails() -> None:
    imbalance = CLEAN.column("imbalance").to_numpy()
    table = with_values(CLEAN, "imbalance", [2, 3], [-imbalance[2], -imbalance[3]])
    check = result(table, "imbalance_sign_matches_ratio")
    assert_fails(check, "imbalance_sign_matches_ratio", 2, "sign(imbalance)")


def test_avg_percentages_not_summing_to_one_fail() -> None:
    table = with_values(CLEAN, "ask_percentage_avg", [10], [0.9])
    check = result(table, "avg_pct_sum_to_one")
    assert_fails(check, "avg_pct_sum_to_one", 1, "bid_percentage_avg + ask_percentage_avg")


def test_avg_ratio_not_the_avg_percentage_difference_fails() -> None:
    table = with_values(CLEAN, "imbalance_ratio_avg", [10, 11], [0.5, -0.5])
    check = result(table, "avg_ratio_equals_pct_difference")
    assert_fails(check, "avg_ratio_equals_pct_difference", 2, "imbalance_ratio_avg differs")


def test_nan_operands_are_not_identity_violations() -> None:
    table = with_values(CLEAN, "bid_percentage", [3], [np.nan])
    report = validate(table, instrument(), MONTH)
    for name in ("pct_sum_to_one", "ratio_equals_pct_difference", "bid_ask_ratio_matches_pcts"):
        assert report.check(name).passed
    assert report.ok and [c.name for c in report.warnings] == ["nan_present"]


# --- ranges, inf, NaN ------------------------------------------------------------------------


def test_values_outside_their_range_fail_ranges() -> None:
    table = with_values(CLEAN, "bid_percentage", [0], [1.5])
    table = with_values(table, "ask_percentage", [0], [-0.5])
    table = with_values(table, "bid_ask_ratio_avg", [6], [-2.0])
    check = result(table, "ranges")
    assert_fails(check, "ranges", 2, "bid_percentage [0, 1] in 1 rows", "bid_ask_ratio_avg >= 0")
    assert result(table, "pct_sum_to_one").passed


def test_inf_outside_the_ratio_columns_fails_unexplained_inf() -> None:
    table = with_values(CLEAN, "imbalance_avg", [12, 13], [np.inf, -np.inf])
    check = result(table, "unexplained_inf")
    assert_fails(check, "unexplained_inf", 2, "imbalance_avg: 2 rows")


def test_nan_share_over_the_threshold_fails_and_names_the_column() -> None:
    table = with_values(CLEAN, "bid_percentage", list(range(100, 110)), [np.nan] * 10)
    report = validate(table, instrument(), MONTH)
    assert_fails(report.check("nan_share"), "nan_share", 1, "bid_percentage 10 of 744 rows (1.34%)")
    assert report.check("nan_present").passed
    assert report.check("nan_share").metadata["nan_rows_bid_percentage"] == 10


def test_a_few_nan_below_the_threshold_warn() -> None:
    table = with_values(CLEAN, "imbalance", [5], [np.nan])
    table = with_values(table, "ask_percentage_avg", [6, 7], [np.nan, np.nan])
    report = validate(table, instrument(), MONTH)
    assert_fails(
        report.check("nan_present"), "nan_present", 2, "imbalance 1 of 744", "ask_percentage_avg 2"
    )
    assert report.ok and report.check("nan_share").passed


# --- completeness ----------------------------------------------------------------------------


def test_missing_rows_warn_with_gaps_largest_first() -> None:
    keep = np.setdiff1d(np.arange(744), np.r_[np.arange(10, 16), 100])
    report = validate(CLEAN.take(keep), instrument(), MONTH)
    check = report.check("completeness")
    assert_fails(check, "completeness", 7, "7 of 744", "2 gap(s)")
    assert report.ok
    assert check.metadata["expected_rows"] == 744 and check.metadata["rows"] == 737
    assert check.metadata["gaps"] == [
        {"start": "2026-07-01T10:00:00", "end": "2026-07-01T16:00:00", "missing_rows": 6},
        {"start": "2026-07-05T04:00:00", "end": "2026-07-05T05:00:00", "missing_rows": 1},
    ]


def test_a_month_that_starts_late_is_complete_within_its_expected_window() -> None:
    listing = datetime(2026, 7, 20, 8)
    table = build_table(start=listing)
    assert not result(table, "completeness").passed
    check = result(table, "completeness", expected_start=listing)
    assert check.passed and check.metadata["expected_rows"] == table.num_rows


def test_a_month_in_progress_is_complete_up_to_its_expected_end() -> None:
    table = CLEAN.slice(0, 100)
    check = result(table, "completeness", expected_end=datetime(2026, 7, 5, 4))
    assert check.passed and check.metadata["expected_rows"] == 100


# --- Jensen ----------------------------------------------------------------------------------


def test_avg_ratio_below_the_ratio_of_averages_warns() -> None:
    b = CLEAN.column("bid_percentage_avg").to_numpy()
    a = CLEAN.column("ask_percentage_avg").to_numpy()
    table = with_values(CLEAN, "bid_ask_ratio_avg", [20], [b[20] / a[20] * 0.9])
    report = validate(table, instrument(), MONTH)
    assert_fails(
        report.check("jensen_avg_ratio"), "jensen_avg_ratio", 1, "bid_ask_ratio_avg is below"
    )
    assert report.ok
