"""The sandbox's network: round trips, handshakes on a new connection, paced bodies, steering.

Every test talks to a sandbox on 127.0.0.1 only. Timings are asserted as lower bounds (what the
network must cost at least); the only upper bounds are loose ones that tell overlapping or
instant replies from serialized or delayed ones, far from what a loaded machine adds.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

import pytest

from aperiodic_assets.sandbox import RemoteSandbox, Sandbox, SandboxConfig
from aperiodic_assets.sandbox.__main__ import build_parser
from aperiodic_assets.sandbox.network import HANDSHAKE_RTTS

from .test_sandbox import assert_stop_ends

TODAY = date(2026, 9, 15)
KEY = "sandbox"
BN = "binance-futures"
BTC = "perpetual-BTC-USDT:USDT"
SYMBOLS = "/api/v1/metadata/symbols?" + urlencode({"exchange": BN})
LIST = "/api/v1/data/l1_imbalance?" + urlencode(
    {
        "timestamp": "exchange",
        "interval": "1h",
        "exchange": BN,
        "symbol": BTC,
        "start_date": "2026-07-01",
        "end_date": "2026-07-31",
    }
)
TIMEOUT = 30


class Timed(NamedTuple):
    seconds: float
    status: int
    body: bytes


def connect(sandbox: Sandbox) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=TIMEOUT)


def timed(
    conn: http.client.HTTPConnection, target: str, method: str = "GET", body: Any = None
) -> Timed:
    """One exchange on ``conn``, from sending the request to the last byte of the body."""
    data = None if body is None else json.dumps(body).encode()
    start = time.perf_counter()
    conn.request(method, target, body=data, headers={"X-API-KEY": KEY})
    response = conn.getresponse()
    content = response.read()
    return Timed(time.perf_counter() - start, response.status, content)


def fetch(sandbox: Sandbox, target: str, method: str = "GET", body: Any = None) -> Timed:
    """One exchange on a new connection."""
    conn = connect(sandbox)
    try:
        return timed(conn, target, method, body)
    finally:
        conn.close()


def file_target(sandbox: Sandbox) -> str:
    """Path and query of the presigned URL of July 2026's monthly file."""
    listing = fetch(sandbox, LIST)
    assert listing.status == 200, listing.body
    url = urlsplit(json.loads(listing.body)["files"][0]["url"])
    assert url.hostname == "127.0.0.1"
    return f"{url.path}?{url.query}"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(today=TODAY, universe="small")) as sandbox:
        yield sandbox


def test_the_network_is_off_by_default(sb: Sandbox):
    assert SandboxConfig().latency_ms == 0.0
    assert SandboxConfig().mbps is None
    assert sb.snapshot()["network"] == {"latency_ms": 0.0, "mbps": None}


def test_a_new_connection_pays_its_handshakes_then_keep_alive_requests_one_round_trip():
    with Sandbox(SandboxConfig(today=TODAY, universe="small", latency_ms=80)) as sandbox:
        conn = connect(sandbox)
        try:
            first = timed(conn, SYMBOLS)
            second = timed(conn, SYMBOLS)
        finally:
            conn.close()
    assert first.status == second.status == 200
    assert first.seconds >= (1 + HANDSHAKE_RTTS) * 0.080 == 0.240
    assert second.seconds >= 0.080


def test_downloads_and_errors_wait_a_round_trip_too():
    with Sandbox(SandboxConfig(today=TODAY, universe="small", latency_ms=80)) as sandbox:
        target = file_target(sandbox)
        conn = connect(sandbox)
        try:
            timed(conn, SYMBOLS)  # the handshakes
            download = timed(conn, target)
            missing = timed(conn, "/api/v1/no-such-endpoint")
        finally:
            conn.close()
    assert download.status == 200 and download.body.startswith(b"PAR1")
    assert missing.status == 404
    assert download.seconds >= 0.080
    assert missing.seconds >= 0.080


def test_concurrent_requests_wait_their_round_trips_side_by_side():
    """8 new connections at 200 ms each wait 600 ms; one after another they would take 4.8 s."""
    results: list[Timed] = []
    with Sandbox(SandboxConfig(today=TODAY, universe="small", latency_ms=200)) as sandbox:
        start = threading.Barrier(8)

        def one() -> None:
            start.wait()
            results.append(fetch(sandbox, SYMBOLS))

        threads = [threading.Thread(target=one) for _ in range(8)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
    assert [r.status for r in results] == [200] * 8
    assert all(r.seconds >= 0.600 for r in results)
    assert elapsed < 8 * 0.200, f"8 concurrent requests took {elapsed:.2f}s: they did not overlap"


@pytest.mark.parametrize("what", ["download", "file list"])
def test_a_body_takes_at_least_its_size_over_the_bandwidth(sb: Sandbox, what: str):
    target = file_target(sb) if what == "download" else LIST
    unpaced = fetch(sb, target)
    assert unpaced.status == 200
    mbps = 2.0 if what == "download" else 0.02
    sb.network(mbps=mbps)
    paced = fetch(sb, target)
    assert paced.status == 200
    # The whole body (a list's URLs are signed anew, so only its length is the same).
    assert len(paced.body) == len(unpaced.body)
    if what == "download":
        assert paced.body == unpaced.body
    minimum = len(paced.body) * 8 / (mbps * 1e6)
    assert minimum >= 0.1, f"the body ({len(paced.body)} bytes) is too small to tell"
    assert paced.seconds >= minimum, (len(paced.body), paced.seconds)


def test_steering_changes_the_network_at_runtime_and_back_to_none(sb: Sandbox):
    conn = connect(sb)
    try:
        assert timed(conn, SYMBOLS).status == 200  # the handshakes, at no cost
        sb.network(latency_ms=500)
        assert sb.snapshot()["network"] == {"latency_ms": 500.0, "mbps": None}
        assert timed(conn, SYMBOLS).seconds >= 0.500
        sb.network()
        assert sb.snapshot()["network"] == {"latency_ms": 0.0, "mbps": None}
        assert timed(conn, SYMBOLS).seconds < 0.400
    finally:
        conn.close()


def test_the_admin_endpoint_and_the_remote_handle_steer_it_and_stay_instant(sb: Sandbox):
    changed = fetch(sb, "/_sandbox/network", "POST", {"latency_ms": 500, "mbps": 100})
    assert changed.status == 200, changed.body
    assert json.loads(changed.body)["state"]["network"] == {"latency_ms": 500.0, "mbps": 100.0}
    state = fetch(sb, "/_sandbox/state")
    assert json.loads(state.body)["network"] == {"latency_ms": 500.0, "mbps": 100.0}
    # Steering is outside the network: instant even on a new connection at 500 ms.
    assert state.seconds < 0.400
    assert fetch(sb, SYMBOLS).seconds >= 1.500
    RemoteSandbox(sb.root_url).network(latency_ms=0)
    assert sb.snapshot()["network"] == {"latency_ms": 0.0, "mbps": None}
    assert fetch(sb, SYMBOLS).seconds < 0.400


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"latency_ms": -5}, "latency_ms must be a finite number of milliseconds >= 0, got -5"),
        ({"latency_ms": "fast"}, "latency_ms must be a number of milliseconds >= 0, got 'fast'"),
        ({"latency_ms": True}, "latency_ms must be a number"),
        ({"mbps": 0}, "mbps must be a finite number of megabits per second > 0, got 0"),
        ({"mbps": -1.5}, "mbps must be a finite number of megabits per second > 0, got -1.5"),
    ],
)
def test_bad_values_are_a_clear_bad_request_and_change_nothing(
    sb: Sandbox, fields: dict, message: str
):
    sb.network(latency_ms=1)
    refused = fetch(sb, "/_sandbox/network", "POST", fields)
    assert refused.status == 400
    error = json.loads(refused.body)
    assert error["code"] == "invalid_admin_request"
    assert error["details"][0].startswith(message)
    assert sb.snapshot()["network"] == {"latency_ms": 1.0, "mbps": None}
    with pytest.raises(ValueError, match="must be"):
        sb.network(**fields)


def test_a_sandbox_configured_with_a_bad_value_is_refused():
    with pytest.raises(ValueError, match="latency_ms must be"):
        Sandbox(SandboxConfig(latency_ms=-1))
    with pytest.raises(ValueError, match="mbps must be"):
        Sandbox(SandboxConfig(mbps=0))


def test_stopping_the_sandbox_wakes_a_reply_waiting_on_the_network():
    sandbox = Sandbox(SandboxConfig(today=TODAY, universe="small", latency_ms=20_000)).start()
    errors = (OSError, http.client.HTTPException)
    assert_stop_ends(sandbox, lambda: fetch(sandbox, SYMBOLS), errors)


def test_the_cli_flags_set_the_network():
    defaults = build_parser().parse_args([])
    assert (defaults.latency_ms, defaults.mbps) == (0.0, None)
    args = build_parser().parse_args(["--latency-ms", "60", "--mbps", "100"])
    assert (args.latency_ms, args.mbps) == (60.0, 100.0)
    assert build_parser().parse_args(["--latency-ms=0.5"]).latency_ms == 0.5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--latency-ms", "-5"], "argument --latency-ms: latency_ms must be a finite number"),
        (["--latency-ms", "slow"], "argument --latency-ms: not a number: 'slow'"),
        (["--mbps", "0"], "argument --mbps: mbps must be a finite number of megabits"),
        (["--mbps", "nan"], "argument --mbps: mbps must be a finite number of megabits"),
    ],
)
def test_the_cli_refuses_bad_values_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert message in capsys.readouterr().err
