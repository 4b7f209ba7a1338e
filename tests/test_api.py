"""The client on the happy path and on errors that must not be retried."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import date

import pytest

from aperiodic_assets.core.api import (
    AperiodicClient,
    AuthError,
    BadRequestError,
    NotFoundError,
    RetryConfig,
    redact,
)
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.defs.resources import AperiodicResource, RetrySettings
from aperiodic_assets.sandbox import Sandbox, SandboxConfig
from aperiodic_assets.sandbox.data import generate

from .conftest import BTC_1H, FAST_RETRY, KEY, TODAY


def list_requests(sandbox: Sandbox) -> list[dict]:
    return [r for r in sandbox.requests() if r["kind"] == "list"]


def test_a_monthly_file_month_is_one_file(client: AperiodicClient):
    files = client.fetch_month(BTC_1H, Month(2026, 7))
    assert [(f.info.label, f.info.day) for f in files] == [("2026-07", None)]
    expected = generate(*_args(BTC_1H), date(2026, 7, 1), date(2026, 8, 1))
    assert files[0].table.equals(expected)


def test_a_daily_file_month_lists_one_file_per_day(client: AperiodicClient):
    files = client.fetch_month(BTC_1H, Month(2026, 9))
    assert [f.info.day for f in files] == list(range(1, 31))


def test_a_transition_month_is_a_monthly_head_plus_daily_files():
    with Sandbox(SandboxConfig(api_key=KEY, today=TODAY, daily_from=date(2026, 8, 11))) as sb:
        c = AperiodicClient(sb.base_url, KEY, retry=FAST_RETRY)
        labels = [f.label for f in c.list_month(BTC_1H, Month(2026, 8))]
    assert labels[0] == "2026-08"
    assert labels[1:] == [f"2026-08-{d:02d}" for d in range(11, 32)]


def test_a_month_before_listing_has_no_files(client: AperiodicClient):
    hl = Instrument("hyperliquid-perps", "perpetual-BTC-USDC:USDC", "1h", "exchange")
    assert client.fetch_month(hl, Month(2020, 1)) == []


def test_file_info_repr_and_location_hide_the_signature(client: AperiodicClient):
    info = client.list_month(BTC_1H, Month(2026, 7))[0]
    assert "X-Amz-Signature" in info.url
    assert "X-Amz" not in repr(info) and "?" not in info.location
    assert redact("https://h.example:8443/a/b?X-Amz-Signature=s") == "h.example:8443/a/b"


def test_wrong_key_is_an_auth_error_with_a_hint_and_not_retried(sandbox: Sandbox):
    c = AperiodicClient(sandbox.base_url, "not-the-key", retry=FAST_RETRY)
    with pytest.raises(AuthError, match="APERIODIC_API_KEY") as err:
        c.list_month(BTC_1H, Month(2026, 7))
    assert err.value.status == 401
    assert "not-the-key" not in str(err.value)
    assert len(list_requests(sandbox)) == 1


def test_unknown_symbol_is_not_found_and_not_retried(sandbox: Sandbox, client: AperiodicClient):
    unknown = Instrument("binance-futures", "perpetual-NOPE-USDT:USDT", "1h", "exchange")
    with pytest.raises(NotFoundError, match="Atlas symbology") as err:
        client.list_month(unknown, Month(2026, 7))
    assert err.value.status == 404 and err.value.error
    assert len(list_requests(sandbox)) == 1


def test_bad_dates_are_a_bad_request_carrying_the_server_details(
    sandbox: Sandbox, client: AperiodicClient
):
    with pytest.raises(BadRequestError) as err:
        client.list_files(BTC_1H, date(2026, 7, 31), date(2026, 7, 1))
    assert err.value.status == 400 and err.value.details
    assert len(list_requests(sandbox)) == 1


def test_a_probe_is_a_one_byte_ranged_get_that_stamps_the_file_as_downloaded(
    sandbox: Sandbox, client: AperiodicClient
):
    stamps = client.probe_month(BTC_1H, Month(2026, 9))
    files = client.fetch_month(BTC_1H, Month(2026, 9))
    assert [s.label for s in stamps] == [f.info.label for f in files]
    assert [(s.etag, s.size) for s in stamps] == [(f.etag.strip('"'), f.size) for f in files]
    assert [s.token for s in stamps] == [f.token for f in files]
    assert all(s.last_modified for s in stamps)
    file_requests = [r for r in sandbox.requests() if r["kind"] == "download"]
    assert {r["method"] for r in file_requests} == {"GET"}, "never HEAD on a presigned URL"
    assert [r["status"] for r in file_requests] == [206] * 30 + [200] * 30


def test_probes_reuse_their_connection(sandbox: Sandbox, caplog):
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    client = AperiodicClient(sandbox.base_url, KEY, retry=FAST_RETRY, max_concurrent_downloads=1)
    assert len(client.probe_month(BTC_1H, Month(2026, 9))) == 30
    # urllib3's DEBUG lines for a new connection and for reconnecting a closed one
    connects = ("Starting new HTTP connection", "Resetting dropped connection")
    opened = [r for r in caplog.records if r.getMessage().startswith(connects)]
    assert len(opened) == 1, "a probe reads its one byte, so the connection is kept"


def test_the_connection_pool_fits_every_thread_sharing_the_client(sandbox: Sandbox, caplog):
    default = AperiodicClient(sandbox.base_url, KEY, max_concurrent_downloads=3)
    assert _pool_sizes(default) == {3}
    client = AperiodicClient(
        sandbox.base_url, KEY, retry=FAST_RETRY, max_concurrent_downloads=2, max_connections=8
    )
    assert _pool_sizes(client) == {8}
    caplog.set_level(logging.WARNING, logger="urllib3")
    months = [Month(2026, 8), Month(2026, 9), Month(2026, 10), Month(2026, 11)]
    with ThreadPoolExecutor(len(months)) as threads:
        fetched = list(threads.map(lambda m: client.fetch_month(BTC_1H, m), months))
    assert all(fetched)
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]


def test_the_resource_offers_every_retry_setting_and_hands_it_to_the_client():
    offered = {name: spec.default for name, spec in RetrySettings.model_fields.items()}
    assert offered == asdict(RetryConfig()), "one config field per RetryConfig setting"
    client = AperiodicResource(retry=RetrySettings(**asdict(FAST_RETRY))).get_client()
    assert client.retry == FAST_RETRY


def _pool_sizes(client: AperiodicClient) -> set[int]:
    """The connection pool size of the client's adapters for http and https."""
    return {
        client._session.get_adapter(
            f"{scheme}://files.aperiodic.io"
        ).poolmanager.connection_pool_kw["maxsize"]
        for scheme in ("http", "https")
    }


def _args(i: Instrument) -> tuple[str, str, str, str]:
    return i.exchange, i.symbol, i.interval, i.timestamp
