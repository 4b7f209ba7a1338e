"""Specification of ``aperiodic_assets.core.validation``: a passing and a failing table per rule.

Tables come from ``build_table``: bid/ask amounts sampled a few times per interval, the metric
columns computed from them by their definitions (point columns from the last sample, ``*_avg``
as means of the per-sample quantities), so clean tables satisfy every identity exactly.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.schema import METRIC_COLUMNS, SCHEMA, TIME, interval_seconds
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.validation import CHECKS, RuleResult, ValidationConfig, validate

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


def result(table: pa.Table, name: str, **kwargs: Any) -> RuleResult:
    """One rule of a 1h table validated against ``MONTH``; ``kwargs`` go to ``validate``."""
    return validate(table, instrument(), MONTH, **kwargs).rule(name)


RULES = [rule for check in CHECKS for rule in check.rules]
CHECK_OF = {rule.name: check for check in CHECKS for rule in check.rules}


def assert_fails(rule: RuleResult, name: str, violations: int, *words: str) -> None:
    check = CHECK_OF[name]
    assert (rule.name, rule.check, rule.severity) == (name, check.name, check.severity)
    assert rule.status == "failed"
    assert rule.violations == violations, rule.message
    for word in words:
        assert word in rule.message, rule.message


CLEAN = build_table()
JULY_26 = datetime(2026, 7, 26)


# --- the clean table, the registry and the report ---------------------------------------------


@pytest.mark.parametrize("spec", RULES, ids=lambda s: s.name)
def test_clean_month_passes_every_rule(spec) -> None:
    rule = validate(CLEAN, instrument(), MONTH).rule(spec.name)
    assert (rule.status, rule.violations) == ("passed", 0), rule.message


def test_every_rule_is_declared_once_in_one_of_at_most_eight_checks() -> None:
    assert len(CHECKS) <= 8
    assert len({c.name for c in CHECKS}) == len(CHECKS)
    assert len({r.name for r in RULES}) == len(RULES) == 21
    for check in CHECKS:
        assert check.severity in ("error", "warn") and check.rules
        for rule in check.rules:
            assert f"{rule.name}: {rule.description}" in check.description


def test_report_lists_every_check_and_rule_in_declaration_order() -> None:
    report = validate(CLEAN, instrument(), MONTH)
    assert [c.name for c in report.checks] == [c.name for c in CHECKS]
    assert [r.name for r in report.rules] == [r.name for r in RULES]
    assert all(c.status == "passed" and c.violations == 0 for c in report.checks)
    assert report.ok and not report.errors and not report.warnings
    assert report.first_error_message() is None
    assert report.summary().startswith(f"OK {instrument().key} 2026-07 (744 rows)")


def test_failed_report_summarises_partition_checks_rules_and_counts() -> None:
    table = with_values(CLEAN, "bid_percentage", [3, 5], [0.0, 0.0])
    table = table.slice(0, 740)
    report = validate(table, instrument(), MONTH)
    assert not report.ok
    assert [c.name for c in report.errors] == ["identities"]
    assert [c.name for c in report.warnings] == ["completeness"]
    summary = report.summary()
    assert summary.startswith(f"REJECTED {instrument().key} 2026-07 (740 rows)")
    assert (
        "errors: identities (pct_sum_to_one 2, ratio_equals_pct_difference 2, "
        "bid_ask_ratio_matches_pcts 2)" in summary
    )
    assert "completeness (completeness 4)" in summary
    message = report.first_error_message()
    assert message is not None
    assert message.startswith(
        f"{instrument().key} 2026-07: check identities failed, rule pct_sum_to_one (2 violations): "
    )
    assert "first at 2026-07-01T03:00:00" in message
    assert message.endswith("(and 2 more failed rules)")


def test_a_check_reports_every_rule_count_and_the_first_example_of_each_failed_rule() -> None:
    table = with_values(CLEAN, "bid_percentage", [3, 5], [0.0, 0.0])
    table = with_values(table, "imbalance_avg", [9], [np.inf])
    check = validate(table, instrument(), MONTH).check("identities")
    failed = ["pct_sum_to_one", "ratio_equals_pct_difference", "bid_ask_ratio_matches_pcts"]
    assert (check.status, check.severity, check.violations) == ("failed", "error", 7)
    assert [r.name for r in check.failed_rules] == [*failed, "unexplained_inf"]
    assert [check.metadata[name] for name in failed] == [2, 2, 2]
    assert check.metadata["unexplained_inf"] == 1
    assert check.metadata["imbalance_sign_matches_ratio"] == 0
    assert check.metadata["pct_sum_to_one_example"]["row"] == 3
    assert check.metadata["unexplained_inf_example"]["imbalance_avg"] == "inf"
    assert "imbalance_sign_matches_ratio_example" not in check.metadata
    assert [(e["rule"], e["row"]) for e in check.examples] == [
        *((name, 3) for name in failed),
        ("unexplained_inf", 9),
    ]
    assert check.message.startswith("pct_sum_to_one: bid_percentage + ask_percentage differs")
    assert "; unexplained_inf: +-inf outside" in check.message


def test_report_json_round_trips_with_inf_and_nan_rendered_as_strings() -> None:
    table = with_values(CLEAN, "imbalance_avg", [1], [np.inf])
    table = with_values(table, "bid_percentage", [2], [np.nan])
    report = validate(table, instrument(), MONTH)
    text = report.to_json()
    assert json.loads(text) == report.to_dict()
    checks = {c["name"]: c for c in json.loads(text)["checks"]}
    assert checks["identities"]["status"] == "failed"
    assert checks["identities"]["examples"][0]["imbalance_avg"] == "inf"
    rules = {r["name"]: r for c in checks.values() for r in c["rules"]}
    assert rules["unexplained_inf"]["status"] == "failed"
    assert rules["nan_present"]["examples"][0]["bid_percentage"] == "nan"
    assert checks["plausibility"]["metadata"]["nan_present_example"]["bid_percentage"] == "nan"


def test_a_month_of_one_minute_rows_validates() -> None:
    month = Month(2024, 1)
    table = build_table("1m", start=month.start, rows=31 * 1440, zero_ask_rows=(5, 40_000))
    report = validate(table, instrument("1m"), month)
    assert report.ok and not report.warnings, report.summary()
    assert report.rows == 44_640


# --- schema ---------------------------------------------------------------------------------


def test_missing_column_fails_schema_and_skips_rules_that_need_it() -> None:
    report = validate(CLEAN.drop_columns(["ask_percentage"]), instrument(), MONTH)
    assert_fails(report.rule("schema"), "schema", 1, "ask_percentage: missing")
    skipped = report.rule("pct_sum_to_one")
    assert (skipped.status, skipped.passed, skipped.violations) == ("not_evaluated", False, 0)
    assert "not evaluated" in skipped.message and "ask_percentage" in skipped.message
    assert report.rule("avg_pct_sum_to_one").passed
    identities = report.check("identities")
    assert (identities.status, identities.passed, identities.failed) == (
        "not_evaluated",
        False,
        False,
    )
    assert identities.metadata["pct_sum_to_one"] == "not evaluated"
    assert "pct_sum_to_one: not evaluated" in identities.message
    assert not report.ok and [c.name for c in report.errors] == ["schema"]
    assert "not evaluated: pct_sum_to_one" in report.summary()


def test_string_metric_column_is_type_drift() -> None:
    table = CLEAN.set_column(
        3, "bid_ask_ratio", pc.cast(CLEAN.column("bid_ask_ratio"), pa.string())
    )
    rule = result(table, "schema")
    assert_fails(rule, "schema", 1, "bid_ask_ratio: has type string")


def test_renamed_column_is_named_with_its_likely_original() -> None:
    names = ["imbalanceRatio" if c == "imbalance_ratio" else c for c in CLEAN.column_names]
    rule = result(CLEAN.rename_columns(names), "schema")
    assert_fails(rule, "schema", 2, "imbalance_ratio: missing", "looks like a rename")


def test_an_unexpected_column_is_drift_a_warning_and_identity_columns_are_allowed() -> None:
    extra = CLEAN.append_column("venue", pa.array(["x"] * CLEAN.num_rows))
    report = validate(extra, instrument(), MONTH)
    assert report.ok and report.rule("schema").passed
    assert [c.name for c in report.warnings] == ["schema_drift"]
    assert_fails(report.rule("extra_columns"), "extra_columns", 1, "venue (string) in the table")
    identity = CLEAN.append_column("exchange", pa.array(["binance-futures"] * CLEAN.num_rows))
    assert validate(identity, instrument(), MONTH).check("schema_drift").passed


def test_integer_metric_column_is_numeric() -> None:
    imbalance = pc.cast(pc.round(CLEAN.column("imbalance")), pa.int64())
    assert result(CLEAN.set_column(1, "imbalance", imbalance), "schema").passed


@pytest.mark.parametrize("tz", [None, "UTC", "+00:00"])
def test_naive_or_utc_time_passes(tz: str | None) -> None:
    table = CLEAN.set_column(0, TIME, CLEAN.column(TIME).cast(pa.timestamp("us", tz)))
    assert result(table, "schema").passed


def test_time_in_another_zone_fails_and_time_rules_are_not_evaluated() -> None:
    table = CLEAN.set_column(0, TIME, CLEAN.column(TIME).cast(pa.timestamp("us", "Europe/Berlin")))
    report = validate(table, instrument(), MONTH)
    assert_fails(report.rule("schema"), "schema", 1, "time zone Europe/Berlin")
    assert report.rule("time_unique").status == "not_evaluated"
    assert report.check("time_grid").status == "not_evaluated"
    assert report.rule("completeness").status == "not_evaluated"


def test_time_that_is_not_a_timestamp_fails_schema() -> None:
    table = CLEAN.set_column(0, TIME, pc.cast(CLEAN.column(TIME), pa.int64()))
    assert_fails(result(table, "schema"), "schema", 1, "time: has type int64")


def test_empty_file_fails_non_empty_and_skips_completeness() -> None:
    report = validate(CLEAN.slice(0, 0), instrument(), MONTH)
    assert_fails(report.rule("non_empty"), "non_empty", 1, "empty file")
    assert report.rule("completeness").status == "not_evaluated"
    assert report.rule("schema").passed
    assert [c.name for c in report.errors] == ["schema"]


# --- time -------------------------------------------------------------------------------------


def test_duplicate_time_fails_time_unique_only() -> None:
    table = pa.concat_tables([CLEAN.slice(0, 11), CLEAN.slice(10)])
    report = validate(table, instrument(), MONTH)
    assert_fails(report.rule("time_unique"), "time_unique", 1, "repeats", "2026-07-01T10:00:00")
    assert [r.name for r in report.rules if not r.passed] == ["time_unique"]


def test_duplicate_times_are_counted_in_unordered_files_too() -> None:
    order = np.r_[np.arange(20, 744), np.arange(0, 20), [31, 30]]
    report = validate(CLEAN.take(order), instrument(), MONTH)
    assert_fails(report.rule("time_unique"), "time_unique", 2, "repeats")
    assert_fails(report.rule("time_increasing"), "time_increasing", 2, "earlier than the previous")


def test_out_of_order_rows_fail_time_increasing() -> None:
    table = CLEAN.take(np.r_[0, 1, 3, 2, np.arange(4, 744)])
    rule = result(table, "time_increasing")
    assert_fails(rule, "time_increasing", 1, "2026-07-01T02:00:00", "previous row at 2026-07-01T03")
    assert result(table, "time_unique").passed


def test_time_off_the_interval_grid_fails_time_on_grid() -> None:
    times = CLEAN.column(TIME).to_numpy().copy()
    times[5] += np.timedelta64(30, "s")
    times[9] += np.timedelta64(1500, "ms")
    rule = result(with_times(CLEAN, times), "time_on_grid")
    assert_fails(rule, "time_on_grid", 2, "off the 1h grid", "30 s past")
    assert rule.examples[1]["time"] == "2026-07-01T09:00:01.500000"


def test_time_outside_the_month_fails_time_in_month() -> None:
    times = CLEAN.column(TIME).to_numpy().copy()
    times[0] -= np.timedelta64(1, "h")
    after = CLEAN.slice(743).set_column(0, TIME, pa.array([MONTH.end], SCHEMA.field(TIME).type))
    table = pa.concat_tables([with_times(CLEAN, times), after])
    report = validate(table, instrument(), MONTH)
    assert_fails(
        report.rule("time_in_month"),
        "time_in_month",
        2,
        "2026-06-30T23:00:00",
        "lies before the month start 2026-07-01T00:00:00",
    )
    assert report.rule("time_in_window").passed


@pytest.mark.parametrize(
    "window",
    [
        (datetime(2026, 6, 30), JULY_26),
        (MONTH.start, datetime(2026, 8, 2)),
        (JULY_26, MONTH.start),
    ],
)
def test_a_window_that_is_reversed_or_reaches_outside_the_month_is_refused(window) -> None:
    with pytest.raises(ValueError, match="not a part of the month 2026-07"):
        validate(CLEAN, instrument(), MONTH, window=window)


# --- partial months: the expected window --------------------------------------------------------


def published(days: int) -> pa.Table:
    """The first ``days`` days of ``MONTH``, as a month still being published looks."""
    return CLEAN.slice(0, days * 24)


def test_a_partial_month_is_complete_when_its_published_days_are() -> None:
    report = validate(published(25), instrument(), MONTH, window=(MONTH.start, JULY_26))
    assert report.ok and not report.warnings, report.summary()
    completeness = report.check("completeness")
    assert completeness.metadata["completeness_pct"] == 100.0
    assert completeness.metadata["expected_rows"] == 25 * 24
    assert completeness.metadata["expected_from"] == "2026-07-01T00:00:00"
    assert completeness.metadata["expected_until"] == "2026-07-26T00:00:00"
    assert not validate(published(25), instrument(), MONTH).check("completeness").passed


def test_a_partial_month_with_a_gap_warns_within_its_window() -> None:
    table = published(25)
    table = pa.concat_tables([table.slice(0, 100), table.slice(103)])
    report = validate(table, instrument(), MONTH, window=(MONTH.start, JULY_26))
    assert report.ok and [c.name for c in report.warnings] == ["completeness"]
    rule = report.rule("completeness")
    assert_fails(rule, "completeness", 3, "3 of 600 expected 1h rows missing")
    assert "[2026-07-01T00:00:00, 2026-07-26T00:00:00)" in rule.message
    assert rule.metadata["gaps"] == [
        {"start": "2026-07-05T04:00:00", "end": "2026-07-05T07:00:00", "missing_rows": 3}
    ]


def test_a_row_on_or_after_the_window_end_is_rejected() -> None:
    report = validate(published(26), instrument(), MONTH, window=(MONTH.start, JULY_26))
    assert not report.ok
    assert_fails(
        report.rule("time_in_window"),
        "time_in_window",
        24,
        "first at 2026-07-26T00:00:00: lies on or after 2026-07-26T00:00:00, "
        "the first unpublished time",
    )
    assert report.rule("time_in_month").passed and report.check("completeness").passed
    message = report.first_error_message()
    assert message is not None and "rule time_in_window (24 violations)" in message


def test_an_empty_window_rejects_every_row_and_expects_none() -> None:
    report = validate(published(2), instrument(), MONTH, window=(MONTH.start, MONTH.start))
    assert_fails(report.rule("time_in_window"), "time_in_window", 48, "the first unpublished")
    assert report.check("completeness").metadata["expected_rows"] == 0
    assert report.rule("completeness").passed


def test_a_row_before_the_listing_is_rejected() -> None:
    listing = datetime(2026, 7, 20, 8)
    table = build_table(start=datetime(2026, 7, 20, 6))
    report = validate(table, instrument(), MONTH, window=(listing, MONTH.end))
    assert_fails(
        report.rule("time_in_window"),
        "time_in_window",
        2,
        "lies before 2026-07-20T08:00:00, the start of the expected window",
    )
    assert report.rule("completeness").passed


@pytest.mark.parametrize("listing", [datetime(2026, 7, 20, 8), datetime(2026, 7, 20, 7, 30)])
def test_an_instruments_first_month_from_its_listing_is_not_a_warning(listing) -> None:
    table = build_table(start=datetime(2026, 7, 20, 8))
    report = validate(table, instrument(), MONTH, window=(listing, MONTH.end))
    assert report.ok and not report.warnings, report.summary()
    completeness = report.check("completeness")
    assert completeness.metadata["expected_rows"] == table.num_rows
    assert completeness.metadata["expected_from"] == listing.isoformat()
    assert not validate(table, instrument(), MONTH).check("completeness").passed


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
    rule = result(table, "identity_columns")
    assert rule.passed, rule.message
    assert "exchange, symbol, interval, timestamp_type, day" in rule.message


def test_identity_columns_that_disagree_fail() -> None:
    n = CLEAN.num_rows
    exchanges = ["binance-futures"] * n
    exchanges[4] = "okx-perps"
    days = (np.arange(n) // 24 + 1).tolist()
    days[30] = 7
    table = with_identity(CLEAN, exchange=exchanges, day=days)
    rule = result(table, "identity_columns")
    assert_fails(rule, "identity_columns", 2, "exchange in 1 rows", "day in 1 rows", "okx-perps")
    assert rule.examples[0]["exchange"] == "okx-perps"


# --- identities ------------------------------------------------------------------------------


def test_bid_and_ask_percentages_not_summing_to_one_fail() -> None:
    table = with_values(CLEAN, "bid_percentage", [3, 8, 9], [0.4, 0.2, 0.1])
    rule = result(table, "pct_sum_to_one")
    assert_fails(
        rule, "pct_sum_to_one", 3, "bid_percentage + ask_percentage", "first at 2026-07-01T03"
    )
    assert set(rule.examples[0]) == {"row", "time", "bid_percentage", "ask_percentage"}


def test_differences_within_tolerance_pass_and_beyond_fail() -> None:
    ratio = CLEAN.column("imbalance_ratio").to_numpy()
    near = with_values(CLEAN, "imbalance_ratio", [1], [ratio[1] + 5e-10])
    assert result(near, "ratio_equals_pct_difference").passed
    far = with_values(CLEAN, "imbalance_ratio", [1, 2], [ratio[1] + 1e-6, ratio[2] - 1e-6])
    rule = result(far, "ratio_equals_pct_difference")
    assert_fails(rule, "ratio_equals_pct_difference", 2, "imbalance_ratio differs from")
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
    rule = result(table, "bid_ask_ratio_matches_pcts")
    assert_fails(rule, "bid_ask_ratio_matches_pcts", 3, "ask_percentage is 0", "must be +inf")
    assert [e["row"] for e in rule.examples] == [4, 6, 7]


def test_imbalance_sign_opposite_to_ratio_fails() -> None:
    imbalance = CLEAN.column("imbalance").to_numpy()
    table = with_values(CLEAN, "imbalance", [2, 3], [-imbalance[2], -imbalance[3]])
    rule = result(table, "imbalance_sign_matches_ratio")
    assert_fails(rule, "imbalance_sign_matches_ratio", 2, "sign(imbalance)")


def test_avg_percentages_not_summing_to_one_fail() -> None:
    table = with_values(CLEAN, "ask_percentage_avg", [10], [0.9])
    rule = result(table, "avg_pct_sum_to_one")
    assert_fails(rule, "avg_pct_sum_to_one", 1, "bid_percentage_avg + ask_percentage_avg")


def test_avg_ratio_not_the_avg_percentage_difference_fails() -> None:
    table = with_values(CLEAN, "imbalance_ratio_avg", [10, 11], [0.5, -0.5])
    rule = result(table, "avg_ratio_equals_pct_difference")
    assert_fails(rule, "avg_ratio_equals_pct_difference", 2, "imbalance_ratio_avg differs")


def test_nan_operands_are_not_identity_violations() -> None:
    table = with_values(CLEAN, "bid_percentage", [3], [np.nan])
    report = validate(table, instrument(), MONTH)
    for name in ("pct_sum_to_one", "ratio_equals_pct_difference", "bid_ask_ratio_matches_pcts"):
        assert report.rule(name).passed
    assert report.ok and [c.name for c in report.warnings] == ["plausibility"]
    assert [r.name for r in report.check("plausibility").failed_rules] == ["nan_present"]


# --- ranges, inf, NaN ------------------------------------------------------------------------


def test_values_outside_their_range_fail_ranges() -> None:
    table = with_values(CLEAN, "bid_percentage", [0], [1.5])
    table = with_values(table, "ask_percentage", [0], [-0.5])
    table = with_values(table, "bid_ask_ratio_avg", [6], [-2.0])
    rule = result(table, "ranges")
    assert_fails(rule, "ranges", 2, "bid_percentage [0, 1] in 1 rows", "bid_ask_ratio_avg >= 0")
    assert result(table, "pct_sum_to_one").passed


def test_inf_outside_the_ratio_columns_fails_unexplained_inf() -> None:
    table = with_values(CLEAN, "imbalance_avg", [12, 13], [np.inf, -np.inf])
    rule = result(table, "unexplained_inf")
    assert_fails(rule, "unexplained_inf", 2, "imbalance_avg in 2 rows")


def test_nan_share_over_the_threshold_fails_and_names_the_column() -> None:
    table = with_values(CLEAN, "bid_percentage", list(range(100, 110)), [np.nan] * 10)
    report = validate(table, instrument(), MONTH)
    assert_fails(report.rule("nan_share"), "nan_share", 1, "bid_percentage 10 of 744 rows (1.34%)")
    assert report.rule("nan_present").passed
    assert report.check("ranges_and_nan").metadata["nan_rows_bid_percentage"] == 10


def test_a_few_nan_below_the_threshold_warn_without_rejecting() -> None:
    table = with_values(CLEAN, "imbalance", [5], [np.nan])
    table = with_values(table, "ask_percentage_avg", [6, 7], [np.nan, np.nan])
    report = validate(table, instrument(), MONTH)
    assert_fails(
        report.rule("nan_present"), "nan_present", 2, "imbalance 1 of 744", "ask_percentage_avg 2"
    )
    assert report.ok and report.rule("nan_share").passed
    assert report.check("plausibility").severity == "warn"


# --- completeness ----------------------------------------------------------------------------


def test_missing_rows_warn_with_gaps_largest_first() -> None:
    keep = np.setdiff1d(np.arange(744), np.r_[np.arange(10, 16), 100])
    report = validate(CLEAN.take(keep), instrument(), MONTH)
    rule = report.rule("completeness")
    assert_fails(rule, "completeness", 7, "7 of 744", "2 gap(s)")
    assert report.ok
    metadata = report.check("completeness").metadata
    assert metadata["completeness"] == 7
    assert metadata["expected_rows"] == 744 and metadata["rows"] == 737
    assert metadata["gaps"] == [
        {"start": "2026-07-01T10:00:00", "end": "2026-07-01T16:00:00", "missing_rows": 6},
        {"start": "2026-07-05T04:00:00", "end": "2026-07-05T05:00:00", "missing_rows": 1},
    ]


def test_a_month_in_progress_is_complete_up_to_its_window_end() -> None:
    rule = result(
        CLEAN.slice(0, 100), "completeness", window=(MONTH.start, datetime(2026, 7, 5, 4))
    )
    assert rule.passed and rule.metadata["expected_rows"] == 100


# --- Jensen ----------------------------------------------------------------------------------


def test_avg_ratio_below_the_ratio_of_averages_warns() -> None:
    b = CLEAN.column("bid_percentage_avg").to_numpy()
    a = CLEAN.column("ask_percentage_avg").to_numpy()
    table = with_values(CLEAN, "bid_ask_ratio_avg", [20], [b[20] / a[20] * 0.9])
    report = validate(table, instrument(), MONTH)
    assert_fails(
        report.rule("jensen_avg_ratio"), "jensen_avg_ratio", 1, "bid_ask_ratio_avg is below"
    )
    assert report.ok
