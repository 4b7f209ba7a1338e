"""The sandbox's universe: Atlas-sized symbol lists in real shapes, delisted symbols, and symbols
listed or delisted at run time (``list_symbol``/``delist_symbol``)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import select
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.sandbox import (
    LISTINGS,
    RemoteSandbox,
    Sandbox,
    SandboxConfig,
    UnknownSymbol,
    realistic_listings,
)
from aperiodic_assets.sandbox.__main__ import build_parser

from .conftest import KEY, TODAY

REPO = Path(__file__).resolve().parents[1]
BN, OKX, HL = "binance-futures", "okx-perps", "hyperliquid-perps"
BTC = "perpetual-BTC-USDT:USDT"
TIMEOUT = 10
#: Real Atlas entry: BUSD-margined, listed 2022-05-31, delisted on 2023-06-09 (mid-month, in the
#: monthly layout).
LUNC_BUSD = "perpetual-1000LUNC-BUSD:BUSD"


def symbols_of(sandbox: Sandbox | str, exchange: str) -> list[str]:
    base_url = sandbox if isinstance(sandbox, str) else sandbox.base_url
    response = requests.get(
        base_url + "/metadata/symbols",
        params={"exchange": exchange},
        headers={"X-API-KEY": KEY},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"symbols", "exchange", "bucket"}
    assert body["exchange"] == exchange and body["bucket"] == "l1_imbalance"
    return body["symbols"]


def list_files(
    sandbox: Sandbox, exchange: str, symbol: str, start: str, end: str
) -> requests.Response:
    return requests.get(
        sandbox.base_url + "/data/l1_imbalance",
        params={
            "timestamp": "exchange",
            "interval": "1h",
            "exchange": exchange,
            "symbol": symbol,
            "start_date": start,
            "end_date": end,
        },
        headers={"X-API-KEY": KEY},
        timeout=TIMEOUT,
    )


def files_of(sandbox: Sandbox, exchange: str, symbol: str, start: str, end: str) -> list[dict]:
    response = list_files(sandbox, exchange, symbol, start, end)
    assert response.status_code == 200, response.text
    return response.json()["files"]


def labels(files: list[dict]) -> list[tuple[int, ...]]:
    return [
        (f["year"], f["month"], f["day"]) if "day" in f else (f["year"], f["month"]) for f in files
    ]


def days(files: list[dict]) -> list[int]:
    return [f["day"] for f in files]


def time_range(url: str) -> tuple[datetime, datetime]:
    response = requests.get(url, timeout=TIMEOUT)
    assert response.status_code == 200
    times = pq.read_table(io.BytesIO(response.content)).column("time").to_pylist()
    return min(times), max(times)


def admin(sandbox: Sandbox, action: str, payload: dict) -> requests.Response:
    return requests.post(f"{sandbox.root_url}/_sandbox/{action}", json=payload, timeout=TIMEOUT)


# --- the realistic universe ---------------------------------------------------------------------


def test_each_exchange_lists_hundreds_of_symbols_in_real_shapes(sandbox: Sandbox):
    listed = {exchange: symbols_of(sandbox, exchange) for exchange in (BN, OKX, HL)}
    for exchange, symbols in listed.items():
        assert len(symbols) >= 300, exchange
        assert all(isinstance(s, str) for s in symbols) and symbols == sorted(symbols)
        assert set(LISTINGS[exchange]) <= set(symbols), "the small universe's names stay"
        for symbol in symbols:  # every one is a valid instrument (no | , [ ] .)
            Instrument(exchange, symbol, "1h")
        assert not any("SYN" in s for s in symbols), "synthetic symbols only when asked"
    assert {"perpetual-我踏马来了-USDT:USDT", "perpetual-1000PEPE-USDT:USDT"} <= set(listed[BN])
    assert sum(s.endswith("-USDC:USDC") for s in listed[BN]) >= 5
    assert "perpetual-BTC-USD:BTC" in listed[OKX]
    assert "perpetual-XYZ:TSLA-USDC:USDC" in listed[HL]
    builder_markets = [s for s in listed[HL] if ":" in s.split("-")[1]]
    assert len(builder_markets) >= 100


def test_listing_dates_spread_over_the_years_and_some_symbols_are_delisted():
    universe = realistic_listings()
    for exchange, listings in universe.items():
        delisted = [d for _, d in listings.values() if d is not None]
        assert len(delisted) >= len(listings) // 5, exchange
        assert all(listed < d for listed, d in listings.values() if d is not None)
        assert any(d.day != 1 for d in delisted), "some delisted mid-month"
    years = {listed.year for listings in universe.values() for listed, _ in listings.values()}
    assert set(range(2019, 2027)) <= years
    assert universe[BN][LUNC_BUSD] == (date(2022, 5, 31), date(2023, 6, 9))
    assert all(d is not None for s, (_, d) in universe[BN].items() if s.endswith("-BUSD:BUSD"))


def test_the_symbol_list_is_the_universe_listed_on_the_sandbox_day(sandbox: Sandbox):
    for exchange, listings in realistic_listings().items():
        expected = sorted(
            s
            for s, (listed, delisted) in listings.items()
            if listed <= TODAY and (delisted is None or delisted > TODAY)
        )
        assert symbols_of(sandbox, exchange) == expected


def test_the_realistic_universe_is_the_same_on_every_run():
    script = (
        "import hashlib, json; from aperiodic_assets.sandbox import realistic_listings;"
        "print(hashlib.sha256(json.dumps(realistic_listings(), default=str).encode()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    here = hashlib.sha256(json.dumps(realistic_listings(), default=str).encode()).hexdigest()
    assert digests == {here}


# --- delisted symbols ---------------------------------------------------------------------------


def test_a_delisted_symbol_leaves_the_symbol_list_and_its_files_stop_the_day_before(
    sandbox: Sandbox,
):
    assert LUNC_BUSD not in symbols_of(sandbox, BN)
    files = files_of(sandbox, BN, LUNC_BUSD, "2023-05-01", "2023-12-31")
    assert labels(files) == [(2023, 5), (2023, 6)], "its older files are still served"
    first, last = time_range(files[-1]["url"])
    assert first.date() == date(2023, 6, 1) and last.date() == date(2023, 6, 8)
    sandbox.set_today("2023-06-09")
    assert LUNC_BUSD not in symbols_of(sandbox, BN)
    sandbox.set_today("2023-06-08")
    assert LUNC_BUSD in symbols_of(sandbox, BN)


def test_delist_symbol_mid_month_ends_the_daily_files_on_the_day_before(sandbox: Sandbox):
    sandbox.set_today("2026-09-20")
    url_of_the_12th = files_of(sandbox, BN, BTC, "2026-09-12", "2026-09-12")[0]["url"]
    sandbox.delist_symbol(BN, BTC, "2026-09-10")
    assert BTC not in symbols_of(sandbox, BN)
    assert days(files_of(sandbox, BN, BTC, "2026-09-01", "2026-09-30")) == list(range(1, 10))
    assert files_of(sandbox, BN, BTC, "2026-09-10", "2026-12-31") == []
    assert requests.get(url_of_the_12th, timeout=TIMEOUT).status_code == 404
    assert labels(files_of(sandbox, BN, BTC, "2026-07-01", "2026-07-31")) == [(2026, 7)]
    assert BTC in symbols_of(sandbox, OKX), "the same name on another exchange stays listed"


def test_delisting_in_a_monthly_month_cuts_its_monthly_file(sandbox: Sandbox):
    sandbox.delist_symbol(OKX, BTC, date(2026, 3, 17))
    files = files_of(sandbox, OKX, BTC, "2026-02-01", "2026-08-31")
    assert labels(files) == [(2026, 2), (2026, 3)]
    first, last = time_range(files[-1]["url"])
    assert (first.date(), last.date()) == (date(2026, 3, 1), date(2026, 3, 16))


# --- listing at run time ------------------------------------------------------------------------


def test_list_symbol_lists_a_new_symbol_with_files_from_its_day(sandbox: Sandbox):
    new = "perpetual-我们-USDT:USDT"
    sandbox.set_today("2026-09-05")
    sandbox.list_symbol(OKX, new, "2026-09-10")
    assert new not in symbols_of(sandbox, OKX), "not before its listing day"
    assert list_files(sandbox, OKX, new, "2026-09-01", "2026-09-30").status_code == 404
    sandbox.set_today("2026-09-10")
    assert new in symbols_of(sandbox, OKX)
    assert files_of(sandbox, OKX, new, "2026-09-01", "2026-09-30") == [], (
        "today's file comes tomorrow"
    )
    sandbox.set_today("2026-09-20")
    assert days(files_of(sandbox, OKX, new, "2026-09-01", "2026-09-30")) == list(range(10, 20))
    first, last = time_range(files_of(sandbox, OKX, new, "2026-09-10", "2026-09-10")[0]["url"])
    assert first.date() == last.date() == date(2026, 9, 10)


def test_a_symbol_relisted_after_its_delisting_has_a_gap_without_files(sandbox: Sandbox):
    sandbox.set_today("2026-09-20")
    sandbox.delist_symbol(HL, "perpetual-HYPE-USDC:USDC", "2026-09-05")
    sandbox.list_symbol(HL, "perpetual-HYPE-USDC:USDC", "2026-09-12")
    listed = days(files_of(sandbox, HL, "perpetual-HYPE-USDC:USDC", "2026-09-01", "2026-09-30"))
    assert listed == [1, 2, 3, 4, *range(12, 20)]
    assert "perpetual-HYPE-USDC:USDC" in symbols_of(sandbox, HL)
    sandbox.set_today("2026-09-08")
    assert "perpetual-HYPE-USDC:USDC" not in symbols_of(sandbox, HL), "not listed in the gap"
    assert sandbox.snapshot()["listings"] == [
        {
            "exchange": HL,
            "symbol": "perpetual-HYPE-USDC:USDC",
            "spans": [
                {"listed": "2024-11-29", "delisted": "2026-09-05"},
                {"listed": "2026-09-12", "delisted": None},
            ],
        }
    ]


def test_relisting_on_or_before_the_delisting_day_leaves_no_gap(sandbox: Sandbox):
    sandbox.set_today("2026-09-20")
    sandbox.delist_symbol(BN, BTC, "2026-09-10")
    sandbox.list_symbol(BN, BTC, "2026-09-10")
    assert days(files_of(sandbox, BN, BTC, "2026-09-01", "2026-09-30")) == list(range(1, 20))
    assert sandbox.snapshot()["listings"][0]["spans"] == [
        {"listed": "2019-09-08", "delisted": None}
    ]


def test_a_delisted_symbol_can_be_relisted_from_the_realistic_universe(sandbox: Sandbox):
    sandbox.list_symbol(BN, LUNC_BUSD, TODAY)
    assert LUNC_BUSD in symbols_of(sandbox, BN)
    assert labels(files_of(sandbox, BN, LUNC_BUSD, "2023-05-01", "2023-07-31")) == [
        (2023, 5),
        (2023, 6),
    ]


def test_admin_endpoints_and_the_remote_handle_list_and_delist(sandbox: Sandbox):
    sandbox.set_today("2026-09-20")
    reply = admin(
        sandbox,
        "list_symbol",
        {"exchange": HL, "symbol": "perpetual-XYZ:ABC-USDC:USDC", "listed": "2026-09-01"},
    )
    assert reply.status_code == 200
    assert reply.json()["state"]["listings"][0]["symbol"] == "perpetual-XYZ:ABC-USDC:USDC"
    assert "perpetual-XYZ:ABC-USDC:USDC" in symbols_of(sandbox, HL)
    remote = RemoteSandbox(sandbox.base_url)
    remote.delist_symbol(HL, "perpetual-XYZ:ABC-USDC:USDC", date(2026, 9, 15))
    assert "perpetual-XYZ:ABC-USDC:USDC" not in symbols_of(sandbox, HL)
    files = files_of(sandbox, HL, "perpetual-XYZ:ABC-USDC:USDC", "2026-09-01", "2026-09-30")
    assert days(files) == list(range(1, 15))
    with pytest.raises(ValueError, match="HTTP 404"):
        remote.delist_symbol(HL, "perpetual-NEVER-USDC:USDC", "2026-09-15")


@pytest.mark.parametrize(
    ("action", "payload", "status", "names"),
    [
        ("list_symbol", {"exchange": "ftx", "symbol": BTC, "listed": "2026-09-01"}, 400, "ftx"),
        (
            "list_symbol",
            {"exchange": BN, "symbol": "perpetual-A|B-USDT:USDT", "listed": "2026-09-01"},
            400,
            "symbol",
        ),
        (
            "list_symbol",
            {"exchange": BN, "symbol": "perpetual-A.B-USDT:USDT", "listed": "2026-09-01"},
            400,
            "symbol",
        ),
        ("list_symbol", {"exchange": BN, "symbol": BTC, "listed": "2026-9-1"}, 400, "listed"),
        ("list_symbol", {"exchange": BN, "symbol": BTC}, 400, "listed"),
        ("delist_symbol", {"exchange": BN, "symbol": BTC, "delisted": "soon"}, 400, "delisted"),
        (
            "delist_symbol",
            {"exchange": BN, "symbol": BTC, "delisted": "2019-09-08"},
            400,
            "2019-09-08",
        ),
        ("delist_symbol", {"exchange": "ftx", "symbol": BTC, "delisted": "2026-09-01"}, 400, "ftx"),
        (
            "delist_symbol",
            {"exchange": BN, "symbol": "perpetual-NEVER-USDT:USDT", "delisted": "2026-09-01"},
            404,
            "perpetual-NEVER-USDT:USDT",
        ),
    ],
)
def test_bad_listing_requests_are_refused_with_a_clear_message(
    sandbox: Sandbox, action: str, payload: dict, status: int, names: str
):
    reply = admin(sandbox, action, payload)
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert names in body["details"][0]
    assert body["code"] == ("symbol_not_found" if status == 404 else "invalid_admin_request")
    assert sandbox.snapshot()["listings"] == [], "a refused request changes nothing"


def test_the_in_process_handle_raises_what_the_endpoints_answer(sandbox: Sandbox):
    with pytest.raises(UnknownSymbol, match="perpetual-NEVER-USDT:USDT"):
        sandbox.delist_symbol(BN, "perpetual-NEVER-USDT:USDT", "2026-09-01")
    with pytest.raises(ValueError, match="unknown exchange"):
        sandbox.list_symbol("ftx", BTC, "2026-09-01")
    unknown = list_files(sandbox, BN, "perpetual-NEVER-USDT:USDT", "2026-07-01", "2026-07-31")
    assert unknown.status_code == 404 and unknown.json()["code"] == "symbol_not_found"


# --- sizes and the small universe ---------------------------------------------------------------


def test_symbols_per_exchange_lists_exactly_that_many_on_each_exchange():
    with Sandbox(SandboxConfig(api_key=KEY, today=TODAY, symbols_per_exchange=150)) as sandbox:
        for exchange in (BN, HL):
            symbols = symbols_of(sandbox, exchange)
            assert len(symbols) == 150 and set(LISTINGS[exchange]) <= set(symbols)
            assert set(symbols) == set(realistic_listings(150)[exchange])
    beyond_atlas = realistic_listings(1000)
    assert [len(listings) for listings in beyond_atlas.values()] == [1000, 1000, 1000]
    assert all(d is None for listings in beyond_atlas.values() for _, d in listings.values())


def test_the_small_universe_lists_only_the_listings_table():
    with Sandbox(SandboxConfig(api_key=KEY, today=TODAY, universe="small")) as sandbox:
        for exchange, listed in LISTINGS.items():
            assert symbols_of(sandbox, exchange) == sorted(listed)
    with pytest.raises(ValueError, match="realistic universe"):
        Sandbox(SandboxConfig(universe="small", symbols_per_exchange=10))
    with pytest.raises(ValueError, match="universe must be one of"):
        Sandbox(SandboxConfig(universe="huge"))


def test_cli_flags_choose_the_universe_and_its_size():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aperiodic_assets.sandbox",
            "--port",
            "0",
            "--today",
            TODAY.isoformat(),
            "--symbols-per-exchange",
            "7",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the sandbox printed nothing within 30 s"
        base_url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert len(symbols_of(base_url, OKX)) == 7
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert build_parser().parse_args([]).universe == "realistic"
    assert build_parser().parse_args(["--universe", "small"]).universe == "small"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--universe", "huge"])
