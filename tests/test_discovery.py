"""Universes by rule and each instrument's life, without Dagster: rules parsed with every mistake
named by file, rule and key; symbol lists resolved (real symbol shapes); lives opened, closed and
reopened from what the files say."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from aperiodic_assets.core.api import FileInfo
from aperiodic_assets.core.discovery import quote_of, resolve
from aperiodic_assets.core.lifecycle import (
    FILES_STOPPED,
    LEFT_LIST,
    NOT_SELECTED,
    RECHECK_S,
    STALE_DAYS,
    Life,
    Lives,
    probed,
    probes,
    read_lives,
    write_lives,
)
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.pipeline import expected_window
from aperiodic_assets.core.universe import Instrument, UniverseError, load_universe, parse_universe

from .conftest import TODAY

REAL_SHAPES = {
    "binance-futures": [
        "perpetual-BTC-USDT:USDT",
        "perpetual-我踏马来了-USDT:USDT",
        "perpetual-1000PEPE-USDT:USDT",
        "perpetual-ETH-USDC:USDC",
        "perpetual-BTC-BUSD:BUSD",
    ],
    "okx-perps": ["perpetual-BTC-USDT:USDT", "perpetual-BTC-USD:BTC", "perpetual-TEST01-USDT:USDT"],
    "hyperliquid-perps": ["perpetual-XYZ:TSLA-USDC:USDC", "perpetual-HYPE-USDC:USDC"],
}


def universe(**rule) -> dict:
    return {"start_month": "2024-01", "discover": [{"exchanges": ["binance-futures"], **rule}]}


def test_a_universe_file_with_rules_and_explicit_instruments(tmp_path):
    path = tmp_path / "universe.yaml"
    path.write_text(
        'start_month: "2024-01"\n'
        "discover:\n"
        "  - exchanges: [binance-futures, okx-perps]\n"
        "    intervals: [1h]\n"
        "    timestamp: exchange\n"
        "    quote: [USDT, USDC]\n"
        '    include: ["*"]\n'
        '    exclude: ["*-USD:*"]\n'
        "    delisted: false\n"
        "instruments:\n"
        '  - {exchange: okx-perps, symbol: "perpetual-BTC-USD:BTC", interval: 4h}\n'
    )
    loaded = load_universe(path, today=TODAY)
    assert loaded.discovers and loaded.exchanges == ["binance-futures", "okx-perps"]
    (rule,) = loaded.rules
    assert rule.quote == ("USDT", "USDC") and rule.exclude == ("*-USD:*",)
    assert rule.delisted is False and rule.where == "discover[0]"
    assert [i.key for i in loaded.instruments] == [
        "BTC.4h.okx-perps.perpetual-BTC-USD:BTC.exchange"
    ]


def test_rules_alone_are_a_universe_and_explicit_only_still_is():
    assert parse_universe(universe(intervals=["1h"]), "u", TODAY).instruments == ()
    explicit = parse_universe(
        {
            "start_month": "2024-01",
            "instruments": [
                {"exchange": "okx-perps", "symbol": "perpetual-BTC-USDT:USDT", "interval": "1h"}
            ],
        },
        "u",
        TODAY,
    )
    assert not explicit.discovers and explicit.exchanges == []


@pytest.mark.parametrize(
    "rule, expected",
    [
        ({}, "discover[0]: missing key 'intervals'"),
        ({"intervals": ["2h"]}, "discover[0]: intervals: '2h' is not one of"),
        ({"intervals": ["1h"], "exchanges": ["Binance"]}, "discover[0]: exchanges: exchange"),
        ({"intervals": ["1h"], "timestamp": "local"}, "discover[0]: timestamp: expected one of"),
        ({"intervals": ["1h"], "delisted": "sometimes"}, "discover[0]: delisted: expected true"),
        ({"intervals": ["1h"], "quote": []}, "discover[0]: quote: expected a non-empty list"),
        ({"intervals": ["1h"], "exclude": [3]}, "discover[0]: exclude: expected a non-empty"),
        ({"intervals": ["1h"], "qoute": ["USDT"]}, "unknown key 'qoute'; did you mean 'quote'?"),
    ],
)
def test_every_rule_mistake_is_named_by_file_rule_and_key(tmp_path, rule, expected):
    path = tmp_path / "universe.yaml"
    lines = "".join(f"    {k}: {v!r}\n".replace("'", '"') for k, v in rule.items())
    path.write_text('start_month: "2024-01"\ndiscover:\n  - exchanges: [binance-futures]\n' + lines)
    with pytest.raises(UniverseError) as error:
        load_universe(path, today=TODAY)
    assert str(error.value).startswith(f"{path} is not a valid universe:")
    assert expected in str(error.value)


def test_an_empty_discover_list_is_refused():
    with pytest.raises(UniverseError, match="discover: expected a non-empty list of rules"):
        parse_universe({"start_month": "2024-01", "discover": []}, "u", TODAY)


def test_delisted_reads_yaml_and_inline_booleans():
    for value in ("true", "True", True):
        (rule,) = parse_universe(universe(intervals=["1h"], delisted=value), "u", TODAY).rules
        assert rule.delisted is True


@pytest.mark.parametrize(
    "symbol, quote",
    [
        ("perpetual-BTC-USDT:USDT", "USDT"),
        ("perpetual-XYZ:TSLA-USDC:USDC", "USDC"),
        ("perpetual-BTC-USD:BTC", "USD"),
        ("perpetual-我踏马来了-USDT:USDT", "USDT"),
        ("BTCUSDT", ""),
    ],
)
def test_the_quote_is_read_from_the_right(symbol, quote):
    assert quote_of(symbol) == quote


def test_rules_resolve_the_real_symbol_shapes():
    raw = {
        "start_month": "2024-01",
        "discover": [
            {
                "exchanges": ["binance-futures", "okx-perps"],
                "intervals": ["1h", "4h"],
                "quote": ["USDT", "USDC"],
                "exclude": ["*TEST*"],
            },
            {"exchanges": ["hyperliquid-perps"], "intervals": ["1h"], "include": ["*XYZ:*"]},
        ],
    }
    rules = parse_universe(raw, "u", TODAY).rules
    resolution = resolve(rules, REAL_SHAPES)
    keys = set(resolution.candidates)
    assert "我踏马来了.1h.binance-futures.perpetual-我踏马来了-USDT:USDT.exchange" in keys
    assert "1000PEPE.4h.binance-futures.perpetual-1000PEPE-USDT:USDT.exchange" in keys
    assert "XYZ:TSLA.1h.hyperliquid-perps.perpetual-XYZ:TSLA-USDC:USDC.exchange" in keys
    assert not any("BUSD" in k or "TEST01" in k or "-USD:BTC" in k or "HYPE" in k for k in keys)
    assert resolution.counts["discover[0]"] == {
        "binance-futures": {"1h": 4, "4h": 4},
        "okx-perps": {"1h": 1, "4h": 1},
    }
    assert resolution.examples["discover[1]"] == ["perpetual-XYZ:TSLA-USDC:USDC"]
    for key in keys:  # every candidate is a valid partition key that parses back
        assert Instrument.from_key(key).key == key


def test_a_rule_that_matches_nothing_is_reported_and_unusable_symbols_are_named():
    rules = parse_universe(universe(intervals=["1h"], include=["*DOGE*"]), "u", TODAY).rules
    symbols = {"binance-futures": ["perpetual-BRK.B-USDT:USDT", "perpetual-BTC-USDT:USDT"]}
    assert resolve(rules, symbols).empty_rules(rules) == list(rules)
    everything = parse_universe(universe(intervals=["1h"]), "u", TODAY).rules
    resolution = resolve(everything, symbols)
    assert resolution.unusable == {"binance-futures": ["perpetual-BRK.B-USDT:USDT"]}
    assert len(resolution.candidates) == 1


def daily(*days: date) -> list[FileInfo]:
    return [FileInfo(d.year, d.month, d.day, f"http://127.0.0.1/{d}.parquet") for d in days]


def span(first: date, last: date) -> list[FileInfo]:
    return daily(*(first + timedelta(days=n) for n in range((last - first).days + 1)))


TODAY_ = date(2026, 11, 25)
YESTERDAY = TODAY_ - timedelta(days=1)


START = date(2024, 1, 1)


def test_a_new_instrument_opens_at_its_first_file_and_monthly_files_count_to_month_end():
    files = [FileInfo(2025, 3, None, "http://x/m"), *daily(YESTERDAY)]
    life = probed(None, files, START, TODAY_, 1.0, listed=True, selected=True)
    assert life.open and life.first_day == date(2025, 3, 1) and life.last_day == YESTERDAY
    assert life.first_month == Month(2025, 3) and not life.covers(Month(2025, 2))


def test_leaving_the_list_closes_on_the_first_day_without_a_file_and_coming_back_reopens():
    first = date(2026, 10, 1)
    open_ = probed(None, span(first, YESTERDAY), START, TODAY_, 1.0, True, True)
    # Off the list, and its files end on the 20th (a delisting dated back: later files vanished).
    gone = probed(open_, span(first, date(2026, 11, 20)), first, TODAY_, 2.0, False, True)
    assert gone == Life(first, date(2026, 11, 20), date(2026, 11, 21), LEFT_LIST, 2.0)
    assert gone.last_month == Month(2026, 11) and not gone.covers(Month(2026, 12))
    assert "last data 2026-11-20" in gone.describe()
    # Listed again with files after it was closed: open; listed again without: still closed.
    back = probed(gone, daily(YESTERDAY), date(2026, 11, 19), TODAY_, 3.0, True, True)
    assert back.open and back.last_day == YESTERDAY and back.first_day == first
    still = probed(gone, [], date(2026, 11, 19), TODAY_, 3.0, listed=True, selected=True)
    assert still.closed_since == date(2026, 11, 19), "nothing from the 19th on: closed then"


def test_a_recheck_trusts_the_listing_from_where_it_starts():
    open_ = probed(None, span(date(2026, 10, 1), YESTERDAY), START, TODAY_, 1.0, True, True)
    since = YESTERDAY - timedelta(days=31)
    same = probed(open_, span(since, YESTERDAY), since, TODAY_, 2.0, True, True)
    assert same == replace(open_, checked=2.0)
    withdrawn = probed(open_, span(since, date(2026, 11, 10)), since, TODAY_, 2.0, True, True)
    assert withdrawn.last_day == date(2026, 11, 10) and withdrawn.reason == FILES_STOPPED


def test_files_that_stop_close_a_listed_instrument_and_a_dropped_rule_closes_too():
    last = YESTERDAY - timedelta(days=STALE_DAYS + 1)
    stopped = probed(None, span(date(2026, 10, 1), last), START, TODAY_, 1.0, True, True)
    assert stopped.reason == FILES_STOPPED and stopped.closed_since == last + timedelta(days=1)
    two_days_late = span(date(2026, 10, 1), YESTERDAY - timedelta(days=2))
    recent = probed(None, two_days_late, START, TODAY_, 1.0, True, True)
    assert recent.open, "a few days' delay is not a stop"
    dropped = probed(recent, two_days_late, START, TODAY_, 2.0, listed=True, selected=False)
    assert dropped.reason == NOT_SELECTED


def test_no_file_since_the_start_month_is_not_an_instrument_yet():
    life = probed(None, [], START, TODAY_, 1.0, True, True)
    assert life.first_day is None and not life.open and not life.covers(Month(2026, 11))


def test_lives_round_trip_through_the_warehouse(warehouse):
    lives = Lives(
        {
            "A.1h.okx-perps.perpetual-A-USDT:USDT.exchange": Life(
                date(2024, 1, 2), date(2026, 11, 14), date(2026, 11, 15), LEFT_LIST, 5.0
            ),
            "我踏马来了.1h.binance-futures.perpetual-我踏马来了-USDT:USDT.exchange": Life(
                date(2025, 1, 1), YESTERDAY
            ),
        }
    )
    assert read_lives(warehouse).by_key == {}
    url = write_lives(warehouse, lives)
    assert url.endswith("_state/l1_imbalance/instruments.json")
    assert read_lives(warehouse).by_key == lives.by_key
    a = Instrument("okx-perps", "perpetual-A-USDT:USDT", "1h")
    enriched = read_lives(warehouse).instrument(a)
    assert enriched.listed == date(2024, 1, 2) and enriched.closed_since == date(2026, 11, 15)
    assert lives.months(a, [Month(2026, 10), Month(2026, 11), Month(2026, 12)]) == [
        Month(2026, 10),
        Month(2026, 11),
    ]


def test_a_tick_probes_new_and_leaving_instruments_first_then_what_is_due():
    now = 10 * RECHECK_S
    new = "NEW.1h.okx-perps.perpetual-NEW-USDT:USDT.exchange"
    gone = "GONE.1h.okx-perps.perpetual-GONE-USDT:USDT.exchange"
    due = "DUE.1h.okx-perps.perpetual-DUE-USDT:USDT.exchange"
    fresh = "FRESH.1h.okx-perps.perpetual-FRESH-USDT:USDT.exchange"
    other = "X.1h.binance-futures.perpetual-X-USDT:USDT.exchange"
    lives = Lives(
        {
            gone: Life(date(2025, 1, 1), YESTERDAY, checked=now),
            due: Life(date(2025, 1, 1), YESTERDAY, checked=now - RECHECK_S),
            fresh: Life(date(2025, 1, 1), YESTERDAY, checked=now - 60),
            other: Life(date(2025, 1, 1), YESTERDAY, checked=0.0),
        }
    )
    symbols = {
        "okx-perps": [
            "perpetual-NEW-USDT:USDT",
            "perpetual-DUE-USDT:USDT",
            "perpetual-FRESH-USDT:USDT",
        ]
    }
    todo = probes(
        [gone, due, fresh, other],
        {new: False, due: False, fresh: False},
        lives,
        symbols,
        date(2024, 1, 1),
        now,
    )
    assert [p.instrument.key for p in todo] == [gone, new, due]
    assert todo[0].listed is False and todo[1].since == date(2024, 1, 1)
    assert todo[2].since == YESTERDAY - timedelta(days=31), "a month back: late withdrawals"


def test_a_closed_instruments_month_is_expected_whole_at_once():
    month = Month(2026, 11)
    files = daily(*(date(2026, 11, d) for d in range(1, 15)))
    assert expected_window(month, files, TODAY_)[1] == datetime(2026, 11, 15)
    assert expected_window(month, files, TODAY_, closed_since=date(2026, 11, 15)) == (
        datetime(2026, 11, 1),
        datetime(2026, 12, 1),
    )
    later = expected_window(Month(2026, 10), span(date(2026, 10, 1), date(2026, 10, 31)), TODAY_)
    assert later == (datetime(2026, 10, 1), datetime(2026, 11, 1))
