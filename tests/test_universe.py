"""Instrument keys: parseable, stable, and still distinct when the UI cuts them in the middle.
The universe file: every mistake is named by file, entry and key."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from pathlib import Path

import pytest

from aperiodic_assets.core.universe import (
    DEFAULT_UNIVERSE,
    Instrument,
    UniverseError,
    load_configured_universe,
    load_universe,
)

from .conftest import TODAY
from .deployed import UNIVERSE

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


def entry(**fields: str) -> str:
    """One instrument entry in YAML flow style: BTC on binance-futures at 1h unless told."""
    fields = {
        "exchange": "binance-futures",
        "symbol": "'perpetual-BTC-USDT:USDT'",
        "interval": "1h",
        **fields,
    }
    return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


BTC = entry()


def universe_file(tmp_path: Path, *entries: str, start: str = '"2024-01"') -> Path:
    path = tmp_path / "universe.yaml"
    lines = [f"start_month: {start}", "instruments:", *(f"  - {e}" for e in entries)]
    path.write_text("\n".join(lines) + "\n")
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(UniverseError) as error:
        load_universe(path, today=TODAY)
    message = str(error.value)
    assert message.startswith(f"{path} is not a valid universe:") or message.startswith(str(path))
    return message


def test_the_packaged_universe_loads_at_every_instant_ci_checks():
    for today in (date(2026, 12, 31), date(2027, 1, 1), date(2028, 2, 29), date(2027, 3, 1)):
        assert len(load_universe(DEFAULT_UNIVERSE, today=today).instruments) == 4


def test_a_typo_in_a_key_names_the_entry_the_key_and_the_likely_one(tmp_path):
    path = universe_file(
        tmp_path,
        BTC,
        "{exchange: okx-perps, symbol: 'perpetual-BTC-USDT:USDT', intervall: 1h}",
    )
    message = problems_of(path)
    assert (
        "instruments[1] (okx-perps perpetual-BTC-USDT:USDT): unknown key 'intervall';"
        " did you mean 'interval'?" in message
    )
    assert "instruments[1] (okx-perps perpetual-BTC-USDT:USDT): missing key 'interval'" in message
    assert "instruments[0]" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('start_month: "2024-01"\n', "instruments: expected a non-empty list"),
        ('start_month: "2024-01"\ninstruments: []\n', "got list []"),
        (
            'start_month: "2024-01"\ninstrument:\n  - ' + BTC,
            "unknown key 'instrument'; did you mean",
        ),
        ("instruments:\n  - " + BTC, 'start_month: expected a month like "2024-01", got nothing'),
        ('start_month: "2030-01"\ninstruments:\n  - ' + BTC, "2030-01 is after the current month"),
        (
            'start_month: "2024-01"\ninstruments:\n  - binance-futures\n',
            "instruments[0]: expected a",
        ),
        (
            "- just a list\n",
            "expected a mapping with the keys ['start_month', 'instruments', 'discover']",
        ),
        ("instruments: [\n", "not valid YAML"),
    ],
    ids=[
        "no-list",
        "empty-list",
        "typo-list",
        "no-start",
        "future-start",
        "scalar-entry",
        "not-a-mapping",
        "bad-yaml",
    ],
)
def test_file_level_mistakes_are_named(tmp_path, text, expected):
    path = tmp_path / "universe.yaml"
    path.write_text(text)
    assert expected in problems_of(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            "interval: 2h",
            "interval '2h' is not one of ['1m', '5m', '15m', '30m', '1h', '4h', '1d']",
        ),
        ("interval: 60", "interval must be text, got int 60"),
        ("timestamp: exchanges", "timestamp 'exchanges' is not one of ['exchange', 'true']"),
        (
            "symbol: 'perpetual-BTC-USDT|USDT'",
            "symbol 'perpetual-BTC-USDT|USDT' is empty or contains",
        ),
        ("exchange: Binance Futures", "exchange 'Binance Futures' is not a lowercase slug"),
        (
            f"listed: {TODAY + timedelta(days=1)}",
            f"listed: {TODAY + timedelta(days=1)} is in the future (today is {TODAY})",
        ),
        ("listed: 2024-02-30", "listed: 2024-02-30 is not a calendar date"),
        ("listed: 1999-01-01", "listed: 1999-01-01 is before any crypto market existed"),
        ("listed: 20240315", "listed: expected a date like 2024-03-15, got int 20240315"),
        ("listed: 15.03.2024", "listed: expected a date like 2024-03-15, got str '15.03.2024'"),
    ],
)
def test_a_wrong_value_names_the_entry_and_the_key(tmp_path, change, expected):
    key, value = change.split(": ", 1)
    path = universe_file(tmp_path, BTC, entry(**{key: value}))
    message = problems_of(path)
    assert "instruments[1] (" in message and expected in message
    assert "instruments[0]" not in message


def test_every_problem_is_listed_at_once(tmp_path):
    path = universe_file(
        tmp_path,
        entry(interval="2h"),
        entry(exchange="okx-perps", listed="2030-01-01"),
    )
    message = problems_of(path)
    assert "instruments[0] (binance-futures perpetual-BTC-USDT:USDT 2h): interval '2h'" in message
    assert "instruments[1] (okx-perps perpetual-BTC-USDT:USDT 1h): listed: 2030-01-01" in message


@pytest.mark.parametrize("listed", ["2024-03-15", '"2024-03-15"'], ids=["plain", "quoted"])
def test_a_listing_day_may_be_quoted_or_not_and_ends_up_a_date(tmp_path, listed):
    path = universe_file(
        tmp_path,
        entry(exchange="okx-perps", symbol="'perpetual-SOL-USDT:USDT'", listed=listed),
    )
    (instrument,) = load_universe(path, today=TODAY).instruments
    assert instrument.listed == date(2024, 3, 15)


def test_timestamp_true_unquoted_is_the_mode_not_a_boolean(tmp_path):
    path = universe_file(
        tmp_path,
        entry(timestamp="true"),
    )
    (instrument,) = load_universe(path, today=TODAY).instruments
    assert instrument.timestamp == "true"


def test_duplicates_name_both_entries(tmp_path):
    message = problems_of(universe_file(tmp_path, BTC, BTC))
    assert "instruments[1]: duplicate of instruments[0] (BTC.1h.binance-futures" in message


def test_aperiodic_universe_names_another_file_and_a_missing_one_is_named(tmp_path):
    path = universe_file(tmp_path, BTC)
    universe = load_configured_universe({"APERIODIC_UNIVERSE": str(path)}, today=TODAY)
    assert universe.keys == ["BTC.1h.binance-futures.perpetual-BTC-USDT:USDT.exchange"]
    assert load_configured_universe({}, today=TODAY).keys == UNIVERSE.keys
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(UniverseError, match=f"^APERIODIC_UNIVERSE='{missing}': no such file"):
        load_configured_universe({"APERIODIC_UNIVERSE": missing}, today=TODAY)
