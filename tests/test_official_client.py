"""The official ``aperiodic`` client, unchanged, against the sandbox: the contract both honour.

The client reads ``APERIODIC_API_URL`` at import time and defaults to polars, so every call here
passes ``base_url=`` and ``output="pandas"``. What it does with a layout, a file shape or a fault
is what the real service's users see; the sandbox must give it nothing the real service would not.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import aperiodic
import pandas as pd
import pytest

from aperiodic_assets.sandbox import Sandbox, SandboxConfig
from aperiodic_assets.sandbox.data import generate

TODAY = date(2026, 9, 15)
KEY = "sandbox"
BN, OKX = "binance-futures", "okx-perps"
BTC = "perpetual-BTC-USDT:USDT"
ETH = "perpetual-ETH-USDT:USDT"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(today=TODAY)) as sandbox:
        yield sandbox


def get_metrics(sandbox: Sandbox, start: date, end: date, **overrides: Any) -> pd.DataFrame:
    """``aperiodic.get_metrics`` for BTC 1h on binance-futures, ``start..end`` inclusive."""
    arguments: dict[str, Any] = {
        "api_key": KEY,
        "metric": "l1_imbalance",
        "timestamp": "exchange",
        "interval": "1h",
        "exchange": BN,
        "symbol": BTC,
        "start_date": start,
        "end_date": end,
        "base_url": sandbox.base_url,
        "output": "pandas",
        "show_progress": False,
        **overrides,
    }
    return aperiodic.get_metrics(**arguments)


def expected(start: date, end: date) -> pd.DataFrame:
    """The generator's rows for ``start <= day < end``, as the client returns them."""
    return generate(BN, BTC, "1h", "exchange", start, end).to_pandas()


def downloads(sandbox: Sandbox) -> list[str]:
    return [r["path"] for r in sandbox.requests() if r["kind"] == "download"]


def test_official_client_reads_the_default_layout_unchanged(sb: Sandbox):
    """July 2026 is one monthly file, August 2026 is 31 daily files: the real service's layout."""
    frame = get_metrics(sb, date(2026, 7, 1), date(2026, 8, 31))
    pd.testing.assert_frame_equal(frame, expected(date(2026, 7, 1), date(2026, 9, 1)))
    preview = get_metrics(sb, date(2026, 7, 1), date(2026, 8, 31), api_key=None, preview=True)
    pd.testing.assert_frame_equal(preview, frame)
    symbols = aperiodic.get_symbols(api_key=KEY, exchange=OKX, base_url=sb.base_url)
    assert BTC in symbols and ETH in symbols
    kinds = [r["kind"] for r in sb.requests()]
    # July's monthly file, then August's 31 daily files, for each of the two calls.
    assert kinds.count("download") == 2 * (1 + 31) and kinds.count("list") == 2
    paths = downloads(sb)[: 1 + 31]
    assert sum(p.endswith("/2026/07.parquet") for p in paths) == 1
    assert sorted(p for p in paths if "/2026/08/" in p) == sorted(
        f"/files/l1_imbalance/{BN}/perpetual-BTC-USDT%3AUSDT/1h/exchange/2026/08/{d:02d}.parquet"
        for d in range(1, 32)
    )


def test_official_client_reads_an_all_daily_month_alone(sb: Sandbox):
    frame = get_metrics(sb, date(2026, 8, 1), date(2026, 8, 31))
    pd.testing.assert_frame_equal(frame, expected(date(2026, 8, 1), date(2026, 9, 1)))
    assert len(downloads(sb)) == 31


def test_official_client_orders_a_mixed_month(sb: Sandbox):
    """A monthly file for the 1st-10th, then daily files: the order the client still pins."""
    sb.set_daily_from(date(2026, 8, 11))
    frame = get_metrics(sb, date(2026, 8, 1), date(2026, 8, 31))
    pd.testing.assert_frame_equal(frame, expected(date(2026, 8, 1), date(2026, 9, 1)))
    assert len(downloads(sb)) == 1 + 21


def test_official_client_follows_redirect_hops_to_another_host_name(sb: Sandbox):
    sb.inject("redirect", count=-1, hops=2, base=f"http://localhost:{sb.port}")
    frame = get_metrics(sb, date(2026, 8, 1), date(2026, 8, 3))
    pd.testing.assert_frame_equal(frame, expected(date(2026, 8, 1), date(2026, 8, 4)))
    statuses = [r["status"] for r in sb.requests() if r["kind"] == "download"]
    assert sorted(statuses) == [200] * 3 + [302] * 6


def test_official_client_decodes_a_gzip_encoded_object(sb: Sandbox):
    sb.inject("gzip", count=-1)
    frame = get_metrics(sb, date(2026, 7, 1), date(2026, 8, 2))
    pd.testing.assert_frame_equal(frame, expected(date(2026, 7, 1), date(2026, 8, 3)))


def test_official_client_sorts_unsorted_files(sb: Sandbox):
    sb.corrupt("unsorted")
    frame = get_metrics(sb, date(2026, 7, 30), date(2026, 8, 2))
    pd.testing.assert_frame_equal(frame, expected(date(2026, 7, 30), date(2026, 8, 3)))


def test_official_client_refuses_the_august_2026_hive_columns_across_files(sb: Sandbox):
    """Days 1-9 with four extra columns: the client names the first file that differs."""
    sb.corrupt("hive_columns", month="2026-08", days=list(range(1, 10)))
    with pytest.raises(aperiodic.AperiodicDataError, match="2026-08-10 has 11 column"):
        get_metrics(sb, date(2026, 8, 1), date(2026, 8, 12))


def plan_error(sandbox: Sandbox, interval: str) -> aperiodic.APIError:
    with pytest.raises(aperiodic.APIError) as caught:
        get_metrics(sandbox, date(2026, 8, 1), date(2026, 8, 2), interval=interval)
    return caught.value


def test_official_client_raises_the_plan_error_of_a_higher_tier_interval(sb: Sandbox):
    error = plan_error(sb, "15s")
    assert (error.status_code, error.code, error.message) == (
        403,
        "interval_not_in_plan",
        "Your plan does not include this interval",
    )
    assert error.details == ["interval 15s requires a higher plan"]


def test_official_client_raises_an_injected_plan_error_with_its_code(sb: Sandbox):
    sb.inject("plan", code="raw_not_in_plan", error="Your plan does not include raw data")
    error = plan_error(sb, "1h")
    assert (error.status_code, error.code, error.message) == (
        403,
        "raw_not_in_plan",
        "Your plan does not include raw data",
    )
    assert len(sb.requests()) == 1, "a 403 is an answer, not retried"
