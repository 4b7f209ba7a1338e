"""The fault matrix: every way the API and its file host misbehave, and what the client does.

Each test injects one deterministic fault into the sandbox, runs one partition through the pure
pipeline (client → validation → warehouse), and asserts the outcome, the number of requests the
sandbox saw, and that a failure leaves no file in the warehouse.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from aperiodic_assets.core.api import (
    AperiodicClient,
    DisallowedHostError,
    DownloadRejectedError,
    RetryConfig,
    TransientError,
    UrlExpiredError,
)
from aperiodic_assets.core.api.retrying import _parse_retry_after
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.pipeline import run_partition
from aperiodic_assets.core.warehouse import Warehouse
from aperiodic_assets.sandbox import Sandbox

from .conftest import BTC_1H, FAST_RETRY, KEY

JULY = Month(2026, 7)  # one monthly file
SEPTEMBER = Month(2026, 9)  # thirty daily files
#: Retries that wait for a short Retry-After for real, so that wall time can be measured.
CAPPED = replace(FAST_RETRY, retry_after_max_s=2.0)


class RecordingSleep:
    """Stands in for time.sleep: records the waits the retry policy asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_client(sandbox: Sandbox, retry: RetryConfig = FAST_RETRY, **kwargs) -> AperiodicClient:
    return AperiodicClient(sandbox.base_url, KEY, retry=retry, **kwargs)


def count(sandbox: Sandbox, kind: str) -> int:
    return sum(1 for r in sandbox.requests() if r["kind"] == kind)


def assert_nothing_written(warehouse: Warehouse, month: Month = JULY) -> None:
    assert not warehouse.exists(BTC_1H, month)
    assert warehouse.partitions() == []


@pytest.mark.parametrize("status", [503, 502, 504])
def test_transient_5xx_on_listing_is_retried_until_it_clears(sandbox, warehouse, status):
    sandbox.inject("status", count=2, status=status)
    outcome = run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert outcome.written is not None and warehouse.exists(BTC_1H, JULY)
    assert count(sandbox, "list") == 3


def test_5xx_that_never_clears_gives_up_after_max_attempts(sandbox, warehouse):
    sandbox.inject("status", count=-1, status=503)
    with pytest.raises(TransientError, match=r"gave up after 4 attempt\(s\).*HTTP 503") as err:
        run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert err.value.transient and err.value.retry_after_s is None
    assert count(sandbox, "list") == FAST_RETRY.max_attempts
    assert_nothing_written(warehouse)


def test_5xx_on_a_download_is_retried(sandbox, warehouse):
    sandbox.inject("status_download", count=1, status=502)
    run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert warehouse.exists(BTC_1H, JULY)


def test_rate_limit_waits_for_retry_after_seconds(sandbox, warehouse):
    sandbox.inject("rate_limit", count=2, seconds=7)
    sleep = RecordingSleep()
    retry = replace(FAST_RETRY, retry_after_max_s=60.0)
    run_partition(make_client(sandbox, retry, sleep=sleep), warehouse, BTC_1H, JULY)
    assert sleep.waits == [7.0, 7.0]
    assert count(sandbox, "list") == 3


@pytest.mark.parametrize("target", ["list", "download"])
def test_a_retry_after_over_the_cap_fails_at_once_carrying_the_wait(sandbox, target):
    sandbox.inject("rate_limit", count=-1, seconds=3600, target=target)
    started = time.monotonic()
    with pytest.raises(TransientError, match="the server asked to retry after 3600 s") as err:
        make_client(sandbox, CAPPED).fetch_month(BTC_1H, JULY)
    elapsed = time.monotonic() - started
    assert "HTTP 429" in str(err.value) and err.value.retry_after_s == 3600.0
    assert count(sandbox, target) == 1, "no request after the 429"
    assert len(sandbox.requests()) == (1 if target == "list" else 2)
    assert elapsed < 1.0, f"failed after {elapsed:.2f}s instead of at once"


def test_a_retry_after_within_the_cap_is_waited_for_in_full(sandbox):
    sandbox.inject("rate_limit", count=1, seconds=1)
    started = time.monotonic()
    files = make_client(sandbox, CAPPED).fetch_month(BTC_1H, JULY)
    elapsed = time.monotonic() - started
    assert [f.info.label for f in files] == ["2026-07"]
    listings = [r for r in sandbox.requests() if r["kind"] == "list"]
    assert [r["status"] for r in listings] == [429, 200]
    assert listings[1]["t"] - listings[0]["t"] >= 1.0, "the sandbox saw the retry too early"
    assert elapsed >= 1.0


def test_a_rate_limit_that_never_clears_gives_up_with_the_last_wait_asked(sandbox):
    sandbox.inject("rate_limit", count=-1, seconds=1)
    sleep = RecordingSleep()
    with pytest.raises(
        TransientError, match=r"gave up after 4 attempt\(s\).*Retry-After 1s"
    ) as err:
        make_client(sandbox, CAPPED, sleep=sleep).fetch_month(BTC_1H, JULY)
    assert sleep.waits == [1.0, 1.0, 1.0] and err.value.retry_after_s == 1.0


def test_rate_limit_retry_after_as_http_date_is_honoured(sandbox, warehouse):
    sandbox.inject("rate_limit", count=1, seconds=30, http_date=True)
    sleep = RecordingSleep()
    retry = replace(FAST_RETRY, retry_after_max_s=60.0, budget_s=120.0)
    run_partition(make_client(sandbox, retry, sleep=sleep), warehouse, BTC_1H, JULY)
    assert len(sleep.waits) == 1 and 25 <= sleep.waits[0] <= 31


def test_retry_after_parsing_accepts_both_forms():
    assert _parse_retry_after("12") == 12.0
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= _parse_retry_after(in_a_minute) <= 61
    assert _parse_retry_after("soon") is None


def test_backoff_grows_exponentially_with_jitter_under_the_cap(sandbox, warehouse):
    sandbox.inject("status", count=3, status=503)
    sleep = RecordingSleep()
    retry = replace(FAST_RETRY, backoff_initial_s=1.0, backoff_max_s=3.0, jitter_s=0.5)
    run_partition(make_client(sandbox, retry, sleep=sleep), warehouse, BTC_1H, JULY)
    assert len(sleep.waits) == 3
    assert 1.0 <= sleep.waits[0] <= 1.5 and 2.0 <= sleep.waits[1] <= 2.5
    assert sleep.waits[2] == 3.0


def test_the_time_budget_stops_retrying_before_a_wait_would_exceed_it(sandbox, warehouse):
    sandbox.inject("rate_limit", count=-1, seconds=5)
    retry = replace(FAST_RETRY, max_attempts=10, retry_after_max_s=5.0, budget_s=1.0)
    sleep = RecordingSleep()
    with pytest.raises(TransientError, match="HTTP 429.*asked to retry after 5 s") as err:
        run_partition(make_client(sandbox, retry, sleep=sleep), warehouse, BTC_1H, JULY)
    assert err.value.retry_after_s == 5.0
    assert sleep.waits == [] and count(sandbox, "list") == 1
    assert_nothing_written(warehouse)


def test_connection_reset_is_retried(sandbox, warehouse):
    sandbox.inject("reset", count=2)
    run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert warehouse.exists(BTC_1H, JULY)
    resets = [r for r in sandbox.requests() if r.get("fault") == "reset"]
    assert len(resets) == 2


def test_truncated_body_is_detected_and_downloaded_again(sandbox, warehouse):
    sandbox.inject("truncate", count=1)
    outcome = run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert outcome.written is not None and outcome.written.rows == 31 * 24


def test_truncated_body_every_time_fails_without_writing(sandbox, warehouse):
    sandbox.inject("truncate", count=-1)
    with pytest.raises(TransientError, match="incomplete body"):
        run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == FAST_RETRY.max_attempts
    assert_nothing_written(warehouse)


def test_a_stalled_body_times_out_and_is_retried(sandbox, warehouse):
    sandbox.inject("stall", count=1, seconds=5)
    retry = replace(FAST_RETRY, read_timeout_s=0.5)
    run_partition(make_client(sandbox, retry), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert warehouse.exists(BTC_1H, JULY)


def test_expired_url_is_relisted_once(sandbox, warehouse):
    sandbox.inject("expire_urls", count=1)
    outcome = run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert outcome.written is not None
    assert count(sandbox, "list") == 2 and count(sandbox, "download") == 2


def fetch(client: AperiodicClient, warehouse: Warehouse, month: Month) -> list:
    """The asset's use of a month's presigned URLs: download, validate, write."""
    return run_partition(client, warehouse, BTC_1H, month).sources


def probe(client: AperiodicClient, warehouse: Warehouse, month: Month) -> list:
    """The sensor's use of them: a one-byte ranged GET per file."""
    return client.probe_month(BTC_1H, month)


#: Both uses of presigned URLs re-list a month once when URLs are refused.
EITHER_USE = pytest.mark.parametrize("use", [fetch, probe], ids=["fetch", "probe"])


@EITHER_USE
def test_expired_urls_in_a_month_of_daily_files_relist_only_once(sandbox, warehouse, use):
    sandbox.inject("expire_urls", count=1)
    results = use(make_client(sandbox), warehouse, SEPTEMBER)
    assert len(results) == 30
    assert count(sandbox, "list") == 2 and count(sandbox, "download") == 60


@EITHER_USE
def test_urls_that_stay_expired_fail_clearly_after_one_relisting(sandbox, warehouse, use):
    sandbox.inject("expire_urls", count=-1)
    with pytest.raises(UrlExpiredError, match=r"refused \(HTTP 403\) twice"):
        use(make_client(sandbox), warehouse, JULY)
    assert count(sandbox, "list") == 2 and count(sandbox, "download") == 2
    assert_nothing_written(warehouse)


@EITHER_USE
def test_refused_files_gone_from_the_new_listing_fail_clearly(sandbox, warehouse, monkeypatch, use):
    sandbox.inject("expire_urls", count=1)
    client = make_client(sandbox)
    listings = [client.list_month(BTC_1H, SEPTEMBER), []]  # then the files are withdrawn
    monkeypatch.setattr(client, "list_month", lambda instrument, month: listings.pop(0))
    with pytest.raises(UrlExpiredError) as err:
        use(client, warehouse, SEPTEMBER)
    assert "2026-09-01" in str(err.value) and "2026-09-30" in str(err.value)
    assert "the new file list no longer holds them" in str(err.value)
    assert count(sandbox, "download") == 30 and not listings
    assert_nothing_written(warehouse, SEPTEMBER)


def test_a_probe_of_an_expired_url_fails_at_once_without_the_signature(sandbox):
    sandbox.inject("expire_urls", count=1)
    client = make_client(sandbox)
    info = client.list_month(BTC_1H, JULY)[0]
    with pytest.raises(UrlExpiredError, match=r"probe 2026-07 .*refused \(HTTP 403\)") as err:
        client.stamp(info)
    assert count(sandbox, "download") == 1, "a refused probe is not retried"
    assert "X-Amz" not in str(err.value) and "?" not in str(err.value)


def test_a_url_on_a_foreign_host_is_refused_without_a_request(sandbox, warehouse):
    sandbox.inject("foreign_host", count=-1)
    with pytest.raises(DisallowedHostError, match="files.example.com") as err:
        run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert not err.value.transient
    assert count(sandbox, "download") == 0
    assert "X-Amz" not in str(err.value)
    assert_nothing_written(warehouse)


def test_a_configured_extra_host_is_allowed(sandbox):
    client = make_client(sandbox, allowed_hosts=["files.example.com"])
    assert "files.example.com" in client.allowed_hosts and "127.0.0.1" in client.allowed_hosts


def test_corrupt_parquet_is_downloaded_once_more(sandbox, warehouse):
    sandbox.inject("corrupt_parquet", count=1)
    run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert warehouse.exists(BTC_1H, JULY)


def test_corrupt_parquet_twice_is_rejected(sandbox, warehouse):
    sandbox.inject("corrupt_parquet", count=-1)
    with pytest.raises(DownloadRejectedError, match="not readable Parquet on two downloads"):
        run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 2
    assert_nothing_written(warehouse)


def test_an_oversize_file_is_refused_before_its_body_is_read(sandbox, warehouse):
    sandbox.inject("oversize", count=-1, bytes=8 * 1024 * 1024)
    client = make_client(sandbox, max_file_bytes=1024 * 1024)
    with pytest.raises(DownloadRejectedError, match="over the limit of 1048576"):
        run_partition(client, warehouse, BTC_1H, JULY)
    assert count(sandbox, "download") == 1
    assert_nothing_written(warehouse)


def test_debug_logging_of_the_http_library_shows_no_signature(sandbox, warehouse, caplog):
    caplog.set_level(logging.DEBUG, logger="urllib3")
    run_partition(make_client(sandbox), warehouse, BTC_1H, JULY)
    request_lines = [r.getMessage() for r in caplog.records if "/files/" in r.getMessage()]
    assert request_lines, "urllib3 logged the download"
    assert all("X-Amz" not in line and "?<redacted>" in line for line in request_lines)
