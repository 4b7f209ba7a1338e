"""The span a month's data must cover: the whole month once it is over, the published days
while it is in progress, and nothing before the instrument's listing."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from aperiodic_assets.core.api import FileInfo
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.pipeline import expected_window
from aperiodic_assets.core.universe import load_universe

NOVEMBER = Month(2026, 11)


def daily(*days: int) -> list[FileInfo]:
    return [FileInfo(2026, 11, d, f"http://127.0.0.1/{d}.parquet") for d in days]


@pytest.mark.parametrize("today", [date(2026, 12, 1), date(2026, 12, 3)])
def test_a_month_just_over_ends_at_its_newest_daily_file_during_the_grace_period(today):
    """The last day's file comes out after midnight: not published yet is not a gap."""
    window = expected_window(NOVEMBER, daily(*range(1, 30)), today=today)
    assert window == (datetime(2026, 11, 1), datetime(2026, 11, 30))


@pytest.mark.parametrize("today", [date(2026, 12, 4), date(2027, 3, 1)])
def test_after_the_grace_period_a_month_that_is_over_must_reach_its_end(today):
    window = expected_window(NOVEMBER, daily(*range(1, 30)), today=today)
    assert window == (datetime(2026, 11, 1), datetime(2026, 12, 1))


def test_a_month_that_is_over_with_a_monthly_file_must_reach_its_end_at_once():
    monthly = [FileInfo(2026, 11, None, "http://127.0.0.1/11.parquet")]
    window = expected_window(NOVEMBER, monthly, today=date(2026, 12, 1))
    assert window == (datetime(2026, 11, 1), datetime(2026, 12, 1))


def test_a_complete_month_is_complete_on_the_first_day_after_it():
    window = expected_window(NOVEMBER, daily(*range(1, 31)), today=date(2026, 12, 1))
    assert window == (datetime(2026, 11, 1), datetime(2026, 12, 1))


def test_the_current_month_ends_after_its_newest_daily_file():
    window = expected_window(NOVEMBER, daily(*range(1, 26)), today=date(2026, 11, 26))
    assert window == (datetime(2026, 11, 1), datetime(2026, 11, 26))


def test_the_current_month_with_only_a_monthly_file_ends_today():
    monthly = [FileInfo(2026, 11, None, "http://127.0.0.1/11.parquet")]
    window = expected_window(NOVEMBER, monthly, today=date(2026, 11, 26))
    assert window == (datetime(2026, 11, 1), datetime(2026, 11, 26))


@pytest.mark.parametrize("today", [date(2026, 11, 26), date(2026, 12, 5)])
def test_an_instrument_listed_mid_month_is_expected_from_its_listing_day(today):
    start, _ = expected_window(NOVEMBER, daily(20, 21), today=today, listed=date(2026, 11, 20))
    assert start == datetime(2026, 11, 20)


def test_a_listing_after_the_published_days_gives_an_empty_window_not_an_inverted_one():
    start, end = expected_window(
        NOVEMBER, daily(3), today=date(2026, 11, 4), listed=date(2026, 11, 10)
    )
    assert start == end == datetime(2026, 11, 4)


def test_the_universe_file_may_give_a_listing_day(tmp_path):
    path = tmp_path / "universe.yaml"
    path.write_text(
        'start_month: "2024-01"\ninstruments:\n'
        '  - {exchange: okx-perps, symbol: "perpetual-SOL-USDT:USDT", interval: 1h,'
        " listed: 2021-04-23}\n"
    )
    (instrument,) = load_universe(path).instruments
    assert instrument.listed == date(2021, 4, 23)
