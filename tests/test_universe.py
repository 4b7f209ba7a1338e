"""Instrument keys: parseable, stable, and still distinct when the UI cuts them in the middle."""

from __future__ import annotations

import itertools

import pytest

from aperiodic_assets.partitions import UNIVERSE
from aperiodic_assets.universe import Instrument

#: What Dagster's UI shows of a long partition key at 1600 px: both ends, the middle cut; as few
#: as 9 characters each side in a check's partition list (11 in the asset's partitions view).
VISIBLE = 9


def truncated(key: str) -> str:
    return key if len(key) <= 2 * VISIBLE else f"{key[:VISIBLE]}…{key[-VISIBLE:]}"


def test_keys_round_trip_and_lead_with_base_and_interval():
    btc = Instrument("binance-futures", "perpetual-BTC-USDT:USDT", "1h", "exchange")
    assert btc.key == "BTC.1h.binance-futures.perpetual-BTC-USDT:USDT.exchange"
    assert Instrument.from_key(btc.key) == btc


def test_every_pair_of_a_realistic_universe_differs_when_truncated():
    instruments = [
        Instrument(exchange, symbol, interval, timestamp)
        for exchange, symbol in [
            ("binance-futures", "perpetual-BTC-USDT:USDT"),
            ("binance-futures", "perpetual-ETH-USDT:USDT"),
            ("okx-perps", "perpetual-BTC-USDT:USDT"),
            ("okx-perps", "perpetual-ETH-USDT:USDT"),
            ("hyperliquid-perps", "perpetual-BTC-USDC:USDC"),
        ]
        for interval in ("1m", "1h", "1d")
        for timestamp in ("exchange", "true")
    ] + list(UNIVERSE.instruments)
    shown = {truncated(i.key) for i in set(instruments)}
    assert len(shown) == len(set(instruments))


def test_a_key_whose_base_does_not_match_its_symbol_is_refused():
    with pytest.raises(ValueError, match="not .*'s base"):
        Instrument.from_key("ETH.1h.binance-futures.perpetual-BTC-USDT:USDT.exchange")
    with pytest.raises(ValueError, match="expected base.interval.exchange.symbol.timestamp"):
        Instrument.from_key("binance-futures.perpetual-BTC-USDT:USDT.1h.exchange")


def test_exchanges_are_data_not_a_fixed_list():
    assert Instrument("bybit-perps", "perpetual-BTC-USDT:USDT", "1h").exchange == "bybit-perps"
    with pytest.raises(ValueError, match="lowercase slug"):
        Instrument("Bybit Perps", "perpetual-BTC-USDT:USDT", "1h")


def test_the_packaged_universe_has_distinct_truncated_keys():
    for a, b in itertools.combinations(UNIVERSE.instruments, 2):
        assert truncated(a.key) != truncated(b.key)
