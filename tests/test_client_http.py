"""The client's HTTP rules against hosts that misbehave in ways the sandbox does not (yet):
redirects on presigned URLs, the R2 download host, a 403 plan error on the listing, a file's
identity across download and probe, and calls bounded by a caller's deadline. Loopback servers
(tests/loopback.py) play the API and the file hosts; ``localhost`` names a second host."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from aperiodic_assets.core.api import (
    AperiodicClient,
    AperiodicError,
    ApiError,
    DisallowedHostError,
    FileInfo,
    PlanError,
    RetryConfig,
    TransientError,
    UrlExpiredError,
)
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument

from .conftest import BTC_1H, FAST_RETRY
from .loopback import Host, error, redirect, serving, stalled_headers, stored

KEY = "sk-test-7d41-KEY"
SIGNATURE = "X-Amz-Signature=SIG-9c2d"
TABLE = pa.table({"x": pa.array(range(1000), pa.int64())})
ETAG = '"e1"'
LISTING = "/data/l1_imbalance"
BTC_1M = Instrument("binance-futures", "perpetual-BTC-USDT:USDT", "1m", "exchange")
#: Generous for a loaded machine: a call with 2 s left must end well before this.
WITHIN_S = 6.0


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


PARQUET = _parquet(TABLE)


@pytest.fixture
def host() -> Iterator[Host]:
    """The API host (127.0.0.1, allowed as the API's own host); serves ``/file``."""
    with serving() as server:
        server.routes["/file"] = stored(PARQUET, ETAG)
        yield server


@pytest.fixture
def other() -> Iterator[Host]:
    """A second host, addressed as ``localhost``: not on the allow-list unless a test adds it."""
    with serving() as server:
        server.routes["/file"] = stored(PARQUET, ETAG)
        yield server


def client_for(host: Host, retry: RetryConfig = FAST_RETRY, **kwargs) -> AperiodicClient:
    return AperiodicClient(host.url, KEY, retry=retry, **kwargs)


def signed(url: str) -> str:
    return f"{url}?{SIGNATURE}"


def file_at(url: str) -> FileInfo:
    return FileInfo(2026, 7, None, signed(url))


def assert_safe(message: str) -> None:
    """Neither the key nor a presigned signature in an error message."""
    assert KEY not in message and "X-Amz" not in message and "SIG-" not in message


def assert_no_credentials(*hosts: Host) -> None:
    for h in hosts:
        for seen in h.seen:
            assert "x-api-key" not in seen.headers and "authorization" not in seen.headers


# -------------------------------------------------------------------------------- redirects
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_on_the_same_host_is_followed(host: Host, status: int):
    host.routes["/old"] = redirect(status, signed(f"{host.url}/file"))
    source = client_for(host).download(file_at(f"{host.url}/old"))
    assert source.table.equals(TABLE)
    assert host.paths() == ["/old", "/file"]
    assert_no_credentials(host)


def test_a_relative_location_resolves_against_the_current_url(host: Host):
    host.routes["/a/b/old"] = redirect(302, "../moved?X-Amz-Signature=x")
    host.routes["/a/moved"] = redirect(307, "/file")
    assert client_for(host).download(file_at(f"{host.url}/a/b/old")).table.equals(TABLE)
    assert host.paths() == ["/a/b/old", "/a/moved", "/file"]


def test_a_chain_of_three_redirects_is_followed(host: Host):
    for hop, status in enumerate([301, 302, 307], start=1):
        host.routes[f"/r{hop}"] = redirect(status, signed(f"/r{hop + 1}"))
    host.routes["/r4"] = stored(PARQUET, ETAG)
    assert client_for(host).download(file_at(f"{host.url}/r1")).table.equals(TABLE)
    assert host.paths() == ["/r1", "/r2", "/r3", "/r4"]


@pytest.mark.parametrize("use", ["download", "stamp"])
def test_a_fourth_redirect_is_refused(host: Host, use: str):
    for hop in range(1, 5):
        host.routes[f"/r{hop}"] = redirect(302, signed(f"/r{hop + 1}"))
    with pytest.raises(AperiodicError, match="more than 3 redirects in a row") as err:
        getattr(client_for(host), use)(file_at(f"{host.url}/r1"))
    assert not err.value.transient
    assert host.paths() == ["/r1", "/r2", "/r3", "/r4"], "not retried, /r5 never requested"
    assert_safe(str(err.value))


@pytest.mark.parametrize("use", ["download", "stamp"])
def test_a_redirect_off_the_allow_list_is_refused_before_any_request_to_it(
    host: Host, other: Host, use: str
):
    host.routes["/old"] = redirect(302, signed(f"http://localhost:{other.port}/file"))
    with pytest.raises(DisallowedHostError, match="a redirect points at http://localhost") as e:
        getattr(client_for(host), use)(file_at(f"{host.url}/old"))
    assert other.seen == [], "no request reached the foreign host"
    assert host.paths() == ["/old"] and not e.value.transient
    assert_safe(str(e.value))


def test_a_redirect_to_another_allowed_host_carries_no_credentials(
    host: Host, other: Host, tmp_path: Path, monkeypatch
):
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine localhost login u password netrc-secret\n"
        "machine 127.0.0.1 login u password netrc-secret\n"
    )
    monkeypatch.setenv("NETRC", str(netrc))
    plain = requests.get(f"http://localhost:{other.port}/file", timeout=5)
    assert "authorization" in other.seen[-1].headers, "control: requests alone would send it"
    plain.close()
    other.seen.clear()

    host.routes["/old"] = redirect(307, signed(f"http://localhost:{other.port}/file"))
    client = client_for(host, allowed_hosts=["localhost"])
    source = client.download(file_at(f"{host.url}/old"))
    stamp = client.stamp(file_at(f"{host.url}/old"))
    assert source.token == stamp.token
    assert host.paths() == ["/old", "/old"] and other.paths() == ["/file", "/file"]
    assert [s.headers.get("range") for s in other.seen] == [None, "bytes=0-0"]
    assert_no_credentials(host, other)


def test_a_403_on_the_last_hop_means_the_url_expired(host: Host):
    host.routes["/old"] = redirect(302, signed("/gone"))
    host.routes["/gone"] = lambda h: h.send(403, b"<Error><Code>AccessDenied</Code></Error>")
    with pytest.raises(UrlExpiredError, match=r"refused \(HTTP 403\)") as err:
        client_for(host).stamp(file_at(f"{host.url}/old"))
    assert host.paths() == ["/old", "/gone"]
    assert_safe(str(err.value))


# ------------------------------------------------------------------------------- allow-list
def test_r2_presigned_hosts_are_allowed_by_default():
    client = AperiodicClient()
    r2 = file_at("https://0123abcd.r2.cloudflarestorage.com/bucket/l1/2026-07.parquet")
    client._check_host(r2, r2.url)  # no request: this test never leaves the machine
    for url in (
        "https://r2.cloudflarestorage.com.evil.example/f",
        "https://evil.example/0123abcd.r2.cloudflarestorage.com/f",
        "ftp://0123abcd.r2.cloudflarestorage.com/f",
    ):
        with pytest.raises(DisallowedHostError) as err:
            client.stamp(file_at(url))
        assert_safe(str(err.value))


# ------------------------------------------------------------------------------ plan errors
def test_a_403_on_the_listing_is_a_plan_error_naming_interval_exchange_and_code(host: Host):
    host.routes[LISTING] = error(
        403,
        {
            "error": "Interval not available on your plan",
            "details": ["1m requires the Pro tier"],
            "code": "interval_not_in_plan",
        },
    )
    with pytest.raises(PlanError) as err:
        client_for(host).list_month(BTC_1M, Month(2026, 7))
    message = str(err.value)
    assert isinstance(err.value, ApiError) and not err.value.transient
    assert err.value.status == 403 and err.value.code == "interval_not_in_plan"
    assert message.startswith(f"list {BTC_1M.key} 2026-07-01..2026-07-31: HTTP 403")
    assert "[interval_not_in_plan]: Interval not available on your plan" in message
    assert "(1m requires the Pro tier)" in message
    assert "plan does not include l1_imbalance at interval 1m on binance-futures" in message
    assert host.paths() == [LISTING], "not retried"
    assert_safe(message)


# ---------------------------------------------------------------------------------- deadline
#: Settings under which only a deadline stops a call early: long waits, long timeouts.
PATIENT = RetryConfig(max_attempts=10, retry_after_max_s=60.0, read_timeout_s=60.0)


def test_a_retry_after_past_the_deadline_fails_at_once_carrying_the_wait(host: Host):
    host.routes[LISTING] = error(429, {"error": "Too Many Requests"}, {"Retry-After": "20"})
    waits: list[float] = []
    client = client_for(host, PATIENT, sleep=waits.append)
    started = time.monotonic()
    with pytest.raises(TransientError, match="asked to retry after 20 s") as err:
        client.bounded(started + 2).list_month(BTC_1H, Month(2026, 7))
    assert time.monotonic() - started < WITHIN_S
    assert err.value.retry_after_s == 20.0 and waits == []
    assert "s left before the caller's deadline" in str(err.value)
    assert host.paths() == [LISTING]
    assert_safe(str(err.value))


def test_a_deadline_cuts_backoff_short(host: Host):
    host.routes[LISTING] = error(503, {"error": "Failed to list symbols"})
    retry = replace(PATIENT, backoff_initial_s=0.3, backoff_max_s=0.6, jitter_s=0.0)
    started = time.monotonic()
    with pytest.raises(TransientError, match="the caller's deadline left no time for more"):
        client_for(host, retry).bounded(started + 2).list_month(BTC_1H, Month(2026, 7))
    assert time.monotonic() - started < WITHIN_S
    assert 2 <= len(host.seen) < retry.max_attempts


LISTING_BODY = b'{"files": [' + b" " * 200 + b"]}"


@pytest.mark.parametrize(
    "reply",
    [
        stalled_headers,
        lambda h: h.send(200, LISTING_BODY, hold=True),
        lambda h: h.send(200, LISTING_BODY, trickle_s=0.2),
    ],
    ids=["no-answer", "stalled-body", "trickling-body"],
)
def test_a_slow_server_cannot_hold_a_call_past_its_deadline(host: Host, reply):
    host.routes[LISTING] = reply
    started = time.monotonic()
    with pytest.raises(TransientError, match="the caller's deadline"):
        client_for(host, PATIENT).bounded(started + 2).list_month(BTC_1H, Month(2026, 7))
    assert time.monotonic() - started < WITHIN_S


def test_eight_bounded_probes_at_once_all_end_by_the_deadline(host: Host):
    host.routes["/stalled"] = lambda h: h.send(
        206, b"x", {"Content-Range": "bytes 0-0/9"}, hold=True
    )
    client = client_for(host, PATIENT, max_connections=8)
    started = time.monotonic()
    view = client.bounded(started + 2)
    with ThreadPoolExecutor(8) as threads:
        futures = [threads.submit(view.stamp, file_at(f"{host.url}/stalled")) for _ in range(8)]
    assert all(isinstance(f.exception(), TransientError) for f in futures)
    assert time.monotonic() - started < WITHIN_S
    assert len(host.seen) == 8


def test_a_call_after_the_deadline_sends_nothing(host: Host):
    client = client_for(host)
    past = client.bounded(time.monotonic() - 1)
    for view in (past, past.bounded(time.monotonic() + 60)):  # the earlier deadline holds
        with pytest.raises(TransientError, match="not started, the caller's deadline has passed"):
            view.list_files(BTC_1H, date(2026, 7, 1), date(2026, 7, 31))
    assert host.seen == []


def test_a_bounded_view_works_within_its_deadline_and_leaves_the_client_unbounded(
    client: AperiodicClient,
):
    """``client``: conftest's, on the sandbox."""
    files = client.bounded(time.monotonic() + 60).fetch_month(BTC_1H, Month(2026, 9))
    assert len(files) == 30
    client.bounded(time.monotonic() - 1)
    assert [s.label for s in client.probe_month(BTC_1H, Month(2026, 7))] == ["2026-07"]
