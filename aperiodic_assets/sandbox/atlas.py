"""The realistic universe: exchanges listing hundreds of symbols, as Aperiodic's Atlas lists them.

Code that reads ``/metadata/symbols`` must meet what the real lists hold (aperiodic-io/atlas
``data/{exchange}.json``, mid-2026): hundreds of symbols per exchange, listed over the years and a
fifth to a third of them ended, in shapes a regular expression written for ``BTC-USDT`` misses:
CJK names, digits (``1000PEPE``), BUSD (all ended) and USDC margins on binance-futures, inverse
``-USD:`` contracts on okx-perps, HIP-3 builder markets whose base carries a colon
(``XYZ:TSLA``) on hyperliquid-perps. :data:`ATLAS` holds real entries with their Atlas dates;
:func:`generated` yields more in the same shapes (a seeded generator: the same names and dates
on every run); ``catalog.realistic_listings`` makes the universe of them. Every symbol is a
valid instrument symbol (no ``| , [ ] .``). Never imports dagster.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta

BINANCE, OKX, HYPERLIQUID = "binance-futures", "okx-perps", "hyperliquid-perps"
#: ``(listed, delisted)``: data from ``listed`` on, none from ``delisted`` on (``None``: trading).
Dates = tuple[date, date | None]

#: The newest listing day of the realistic universe: with a sandbox clock from 2026-08 on, every
#: symbol it lists and never delisted is in the symbol list.
LAST_LISTED = date(2026, 7, 31)


def _d(text: str) -> date:
    return date.fromisoformat(text)


#: Real entries of Atlas (symbol -> first capture, end date), beyond ``catalog.LISTINGS``.
ATLAS: dict[str, dict[str, Dates]] = {
    BINANCE: {
        "perpetual-1000PEPE-USDT:USDT": (_d("2023-05-05"), None),
        "perpetual-1000PEPE-USDC:USDC": (_d("2024-03-07"), None),
        "perpetual-1000SHIB-USDT:USDT": (_d("2021-05-10"), None),
        "perpetual-1000BONK-USDT:USDT": (_d("2023-11-22"), None),
        "perpetual-1MBABYDOGE-USDT:USDT": (_d("2024-09-16"), None),
        "perpetual-1000BTTC-USDT:USDT": (_d("2022-01-26"), _d("2022-04-12")),
        "perpetual-1000WHY-USDT:USDT": (_d("2024-11-25"), _d("2026-03-18")),
        "perpetual-1000LUNC-BUSD:BUSD": (_d("2022-05-31"), _d("2023-06-09")),
        "perpetual-1000SHIB-BUSD:BUSD": (_d("2022-07-20"), _d("2023-06-02")),
        "perpetual-ADA-BUSD:BUSD": (_d("2021-08-02"), _d("2023-08-18")),
        "perpetual-XRP-BUSD:BUSD": (_d("2021-08-09"), _d("2023-12-09")),
        "perpetual-ADA-USDT:USDT": (_d("2020-01-31"), None),
        "perpetual-ADA-USDC:USDC": (_d("2025-03-06"), None),
        "perpetual-XRP-USDT:USDT": (_d("2020-01-06"), None),
        "perpetual-XRP-USDC:USDC": (_d("2024-01-04"), None),
        "perpetual-AAVE-USDC:USDC": (_d("2025-06-16"), None),
        "perpetual-ZEC-USDC:USDC": (_d("2025-11-19"), None),
        "perpetual-AAPL-USDT:USDT": (_d("2026-04-06"), None),
        "perpetual-AGIX-USDT:USDT": (_d("2023-02-16"), _d("2024-06-27")),
        "perpetual-AKRO-USDT:USDT": (_d("2021-01-19"), _d("2022-05-28")),
        "perpetual-YFII-USDT:USDT": (_d("2020-09-03"), _d("2022-04-13")),
        "perpetual-42-USDT:USDT": (_d("2025-10-27"), _d("2026-01-31")),
        "perpetual-币安人生-USDT:USDT": (_d("2025-10-20"), None),
        "perpetual-我踏马来了-USDT:USDT": (_d("2026-01-21"), None),
        "perpetual-龙虾-USDT:USDT": (_d("2026-03-11"), None),
    },
    OKX: {
        "perpetual-BTC-USD:BTC": (_d("2019-03-30"), None),
        "perpetual-ADA-USD:ADA": (_d("2020-04-29"), None),
        "perpetual-UNI-USD:UNI": (_d("2020-09-17"), None),
        "perpetual-TRX-USD:TRX": (_d("2019-03-30"), _d("2025-08-16")),
        "perpetual-BSV-USD:BSV": (_d("2019-03-30"), _d("2025-05-17")),
        "perpetual-ALGO-USD:ALGO": (_d("2020-05-13"), _d("2025-06-28")),
        "perpetual-BTT-USD:BTT": (_d("2021-04-09"), _d("2021-12-30")),
        "perpetual-BTC-USD_UM:BTC": (_d("2025-11-05"), _d("2026-05-21")),
        "perpetual-BTC-USDC:USDC": (_d("2022-10-18"), _d("2025-12-12")),
        "perpetual-0G-USDT:USDT": (_d("2025-09-22"), None),
        "perpetual-2Z-USDT:USDT": (_d("2025-10-02"), None),
        "perpetual-1INCH-USDT:USDT": (_d("2020-12-25"), None),
        "perpetual-AI16Z-USDT:USDT": (_d("2024-12-20"), _d("2025-11-07")),
        "perpetual-AAPL-USDT:USDT": (_d("2026-03-04"), None),
        "perpetual-TSLA-USDT:USDT": (_d("2026-02-25"), None),
        "perpetual-ANTHROPIC-USDT:USDT": (_d("2026-05-07"), None),
        "perpetual-WNXM-USDT:USDT": (_d("2020-09-09"), _d("2022-11-15")),
        "perpetual-WEMIX-USDT:USDT": (_d("2022-11-08"), _d("2022-12-09")),
    },
    HYPERLIQUID: {
        "perpetual-XYZ:TSLA-USDC:USDC": (_d("2025-12-02"), None),
        "perpetual-XYZ:NVDA-USDC:USDC": (_d("2025-12-02"), None),
        "perpetual-XYZ:XYZ100-USDC:USDC": (_d("2025-12-02"), None),
        "perpetual-XYZ:GOLD-USDC:USDC": (_d("2025-12-22"), None),
        "perpetual-XYZ:SP500-USDC:USDC": (_d("2026-03-18"), None),
        "perpetual-XYZ:JP225-USDC:USDC": (_d("2026-04-08"), None),
        "perpetual-FLX:TSLA-USDC:USDC": (_d("2025-12-02"), _d("2026-06-21")),
        "perpetual-FLX:GOLD-USDC:USDC": (_d("2025-12-04"), _d("2026-06-20")),
        "perpetual-KM:TSLA-USDC:USDC": (_d("2026-01-16"), _d("2026-06-12")),
        "perpetual-KM:US500-USDC:USDC": (_d("2026-01-12"), _d("2026-06-18")),
        "perpetual-HYNA:1000PEPE-USDC:USDC": (_d("2026-02-11"), None),
        "perpetual-HYNA:BTC-USDC:USDC": (_d("2025-12-03"), None),
        "perpetual-HYNA:LIT-USDC:USDC": (_d("2025-12-21"), _d("2025-12-23")),
        "perpetual-HYNA:BCH-USDC:USDC": (_d("2026-01-20"), _d("2026-07-16")),
        "perpetual-KPEPE-USDC:USDC": (_d("2024-10-29"), None),
        "perpetual-KBONK-USDC:USDC": (_d("2024-10-29"), None),
        "perpetual-KDOGS-USDC:USDC": (_d("2024-10-29"), _d("2025-08-05")),
        "perpetual-AI-USDC:USDC": (_d("2024-10-29"), _d("2025-06-27")),
        "perpetual-BLAST-USDC:USDC": (_d("2024-10-29"), _d("2026-05-26")),
        "perpetual-0G-USDC:USDC": (_d("2025-09-22"), None),
        "perpetual-2Z-USDC:USDC": (_d("2025-10-02"), None),
    },
}

#: Symbols per exchange in Atlas (mid-2026): the realistic universe's default size.
ATLAS_SIZES = {BINANCE: 901, OKX: 664, HYPERLIQUID: 434}
#: Share of generated symbols that ended, as in Atlas (195/901, 221/664, 125/434); on
#: binance-futures the BUSD-margined ones (7%, all ended) come on top of this share.
_ENDED_SHARE = {BINANCE: 0.16, OKX: 0.33, HYPERLIQUID: 0.29}
#: First listing day of generated symbols on each exchange.
_FIRST_LISTED = {
    BINANCE: date(2019, 9, 8),
    OKX: date(2019, 3, 30),
    HYPERLIQUID: date(2023, 6, 1),
}
#: Hyperliquid's HIP-3 builders (deployer prefixes of builder markets) and their first day.
_BUILDERS = ("XYZ", "FLX", "HYNA", "KM", "VNTL", "CASH")
_HIP3_FROM = date(2025, 10, 13)
#: Binance's BUSD-margined perpetuals: listed 2021-2022, every one ended during 2023.
_BUSD_LISTED = (date(2021, 6, 1), date(2022, 12, 31))
_BUSD_ENDED = (date(2023, 1, 15), date(2023, 12, 15))
#: Binance's USDC-margined perpetuals start in 2024.
_USDC_FROM = date(2024, 1, 4)
_CONSONANTS = "BCDFGHJKLMNPRSTVWZ"
_VOWELS = "AEIOU"


def _between(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randrange((last - first).days + 1))


def _base(rng: random.Random) -> str:
    """A coin-like name of 5 to 7 letters (``KAVEN``, ``ZOLIRA``): longer than most real tickers,
    so it rarely meets one, and never ``SYN...`` (``catalog.synthetic_symbol``'s prefix)."""
    pairs = 2 + rng.randrange(2)
    name = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(pairs))
    if pairs == 2 or rng.random() < 0.4:
        name += rng.choice(_CONSONANTS)
    return name


def _dates(rng: random.Random, first: date, ended_share: float) -> Dates:
    """A listing day from ``first`` to :data:`LAST_LISTED`; for ``ended_share`` of the symbols
    listed over a month before it, a delisting day at least two weeks later and by then."""
    ended = rng.random() < ended_share
    listed = _between(rng, first, LAST_LISTED)
    if not ended or (LAST_LISTED - listed).days <= 30:
        return listed, None
    return listed, _between(rng, listed + timedelta(days=14), LAST_LISTED)


def _binance(rng: random.Random, base: str, shape: float) -> tuple[str, Dates]:
    """USDT-margined; 4% USDC-margined, 7% BUSD-margined (all ended), 4% ``1000``-prefixed."""
    if shape < 0.04:
        return f"perpetual-{base}-USDC:USDC", _dates(rng, _USDC_FROM, _ENDED_SHARE[BINANCE])
    if shape < 0.11:
        return f"perpetual-{base}-BUSD:BUSD", (
            _between(rng, *_BUSD_LISTED),
            _between(rng, *_BUSD_ENDED),
        )
    base = f"1000{base}" if shape > 0.96 else base
    return f"perpetual-{base}-USDT:USDT", _dates(rng, _FIRST_LISTED[BINANCE], _ENDED_SHARE[BINANCE])


def _okx(rng: random.Random, base: str, shape: float) -> tuple[str, Dates]:
    """USDT-margined; 7% inverse contracts, margined in their own coin (``-USD:BTC``)."""
    symbol = f"perpetual-{base}-USD:{base}" if shape < 0.07 else f"perpetual-{base}-USDT:USDT"
    return symbol, _dates(rng, _FIRST_LISTED[OKX], _ENDED_SHARE[OKX])


def _hyperliquid(rng: random.Random, base: str, shape: float) -> tuple[str, Dates]:
    """USDC-margined; 47% HIP-3 builder markets (``XYZ:TSLA``), listed since HIP-3 began."""
    if shape < 0.47:
        symbol = f"perpetual-{rng.choice(_BUILDERS)}:{base}-USDC:USDC"
        return symbol, _dates(rng, _HIP3_FROM, _ENDED_SHARE[HYPERLIQUID])
    return f"perpetual-{base}-USDC:USDC", _dates(
        rng, _FIRST_LISTED[HYPERLIQUID], _ENDED_SHARE[HYPERLIQUID]
    )


_SHAPES = {BINANCE: _binance, OKX: _okx, HYPERLIQUID: _hyperliquid}


def generated(exchange: str, taken: set[str]) -> Iterator[tuple[str, Dates]]:
    """Generated symbols of ``exchange`` in Atlas's shapes, none in ``taken``, endlessly: the
    same names and dates, in the same order, on every run."""
    rng = random.Random(f"aperiodic-sandbox:{exchange}")
    shaped = _SHAPES[exchange]
    seen = set(taken)
    while True:
        base, shape = _base(rng), rng.random()
        symbol, dates = shaped(rng, base, shape)
        if symbol not in seen:
            seen.add(symbol)
            yield symbol, dates
