"""Command line: ``python -m aperiodic_assets.sandbox [--port N] [--today YYYY-MM-DD] ...``.

Owns argument and environment parsing and the process lifecycle: start, print one line
(``Aperiodic sandbox listening on http://HOST:PORT/api/v1``) so a parent process can read the
port, serve until Ctrl-C or SIGTERM, stop cleanly. Never imports dagster.

Environment: ``APERIODIC_SANDBOX_TODAY`` (the clock, unless ``--today`` is given) and
``APERIODIC_SANDBOX_FAULTS`` (comma-separated ``NAME[:COUNT][:key=value...]``, added to
``--fault``). ``--corrupt MODE[:key=value...]`` takes a corruption or shape mode with the filters
``exchange``, ``symbol``, ``month`` and ``days`` (``1-9`` or ``1,5,7-9``), e.g.
``--corrupt hive_columns:month=2026-08:days=1-9``. ``--latency-ms MS`` and ``--mbps N`` put the
sandbox behind a realistic network (see ``network.py``): every response waits a round trip of
``MS`` milliseconds (a new connection's first one two more, for its TCP and TLS handshakes) and
every body arrives at ``N`` megabits per second; e.g. ``--latency-ms 60 --mbps 100`` for
benchmarks, which loopback would flatter.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import date
from types import FrameType
from typing import Any

from .catalog import SYNTHETIC_LISTED, UNIVERSES, synthetic_symbol
from .faults import FAULTS, Fault, parse_fault_list, parse_fault_spec, parse_spec
from .handles import Sandbox
from .network import valid_latency_ms, valid_mbps
from .state import CORRUPTION_MODES, SHAPE_MODES, SandboxConfig

CORRUPT_FILTERS = ("exchange", "symbol", "month", "days")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r}; expected YYYY-MM-DD") from None


def _count(text: str) -> int:
    if not text.isdecimal():
        raise argparse.ArgumentTypeError(f"not a count: {text!r}; expected an integer >= 0")
    return int(text)


def _number(parse: Callable[[object], float | None]) -> Callable[[str], float | None]:
    """An argparse type: a number checked by ``parse`` (a ``network.valid_*`` function)."""

    def convert(text: str) -> float | None:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _fault(text: str) -> Fault:
    try:
        return parse_fault_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_days(text: str) -> list[int]:
    """Days of a month from ``1-9``, ``5`` or ``1,5,7-9``."""
    days: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        if not first.isdecimal() or (sep and not last.isdecimal()):
            raise ValueError(f"not a day or a range of days: {part!r}; expected e.g. 1-9,15")
        days += range(int(first), int(last if sep else first) + 1)
    return days


def parse_corrupt_spec(text: str) -> dict[str, Any]:
    """``MODE[:key=value...]`` as keyword arguments of ``Sandbox.corrupt``."""
    mode, count, options = parse_spec(text)
    if mode not in CORRUPTION_MODES + SHAPE_MODES:
        raise ValueError(
            f"unknown corruption mode {mode!r}; expected one of {CORRUPTION_MODES + SHAPE_MODES}"
        )
    unknown = sorted(set(options) - set(CORRUPT_FILTERS))
    if count is not None or unknown:
        raise ValueError(
            f"{text!r}: a corruption takes only the filters {list(CORRUPT_FILTERS)} as key=value"
        )
    rule: dict[str, Any] = {"mode": mode, **{k: str(v) for k, v in options.items()}}
    if "days" in rule:
        rule["days"] = parse_days(rule["days"])
    return rule


def _corruption(text: str) -> dict[str, Any]:
    try:
        return parse_corrupt_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(
        prog="python -m aperiodic_assets.sandbox",
        description="Aperiodic-compatible sandbox server with synthetic l1_imbalance data.",
    )
    parser.add_argument("--host", default=defaults.host, help="bind address (default %(default)s)")
    parser.add_argument("--port", type=int, default=defaults.port, help="0 = a free port")
    parser.add_argument("--key", default=defaults.api_key, help="accepted X-API-KEY")
    parser.add_argument(
        "--today",
        type=_date,
        default=None,
        help="sandbox clock, YYYY-MM-DD (env APERIODIC_SANDBOX_TODAY; default: real UTC date)",
    )
    parser.add_argument(
        "--daily-from",
        type=_date,
        default=defaults.daily_from,
        help="first day served as daily files, monthly files before it (default %(default)s, as"
        " Aperiodic); a day other than the 1st makes its month mixed: a monthly file, then days",
    )
    parser.add_argument(
        "--url-ttl", type=int, default=defaults.url_ttl_s, help="presigned URL lifetime, seconds"
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        help=f"NAME[:COUNT][:key=value...], repeatable; COUNT -1 = forever; NAME: {sorted(FAULTS)}",
    )
    parser.add_argument(
        "--corrupt",
        type=_corruption,
        action="append",
        default=[],
        metavar="MODE[:key=value...]",
        help="serve matching files corrupted or reshaped, repeatable; filters exchange=, symbol=,"
        f" month=YYYY-MM, days=1-9 (default: every file); MODE: {list(CORRUPTION_MODES)}"
        f" or a shape {list(SHAPE_MODES)}",
    )
    parser.add_argument("--secret", default=None, help="URL-signing secret (default: random)")
    parser.add_argument(
        "--synthetic-symbols",
        type=_count,
        default=defaults.synthetic_symbols,
        metavar="N",
        help=f"also list N synthetic symbols on every exchange, {synthetic_symbol(1)} and on,"
        f" listed on {SYNTHETIC_LISTED} (for scale tests; default %(default)s)",
    )
    parser.add_argument(
        "--universe",
        choices=UNIVERSES,
        default=defaults.universe,
        help="what /metadata/symbols lists: realistic = hundreds of symbols per exchange in"
        " Atlas's shapes, some delisted, as the real service; small = three per exchange"
        " (default %(default)s)",
    )
    parser.add_argument(
        "--symbols-per-exchange",
        type=_count,
        default=defaults.symbols_per_exchange,
        metavar="N",
        help="exactly N symbols per exchange, none delisted, from the realistic universe (real"
        " names first), for scale tests (default: the whole universe)",
    )
    parser.add_argument(
        "--latency-ms",
        type=_number(valid_latency_ms),
        default=defaults.latency_ms,
        metavar="MS",
        help="round-trip time every response waits, as over a real network; a new connection's"
        " first response waits two more (TCP and TLS handshakes) (default %(default)s: none)",
    )
    parser.add_argument(
        "--mbps",
        type=_number(valid_mbps),
        default=defaults.mbps,
        metavar="N",
        help="bandwidth of each response body, megabits per second (default: unpaced)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="one stderr line per request (no query strings)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    today = args.today
    if today is None and os.environ.get("APERIODIC_SANDBOX_TODAY"):
        today = _date(os.environ["APERIODIC_SANDBOX_TODAY"])
    try:
        env_faults = parse_fault_list(os.environ.get("APERIODIC_SANDBOX_FAULTS", ""))
    except ValueError as exc:
        parser.error(f"APERIODIC_SANDBOX_FAULTS: {exc}")
    config = SandboxConfig(
        api_key=args.key,
        today=today,
        daily_from=args.daily_from,
        url_ttl_s=args.url_ttl,
        host=args.host,
        port=args.port,
        verbose=args.verbose,
        secret=args.secret,
        synthetic_symbols=args.synthetic_symbols,
        universe=args.universe,
        symbols_per_exchange=args.symbols_per_exchange,
        latency_ms=args.latency_ms,
        mbps=args.mbps,
    )
    sandbox = Sandbox(config)
    for fault in [*args.fault, *env_faults]:
        sandbox.state.faults.add(fault)
    for rule in args.corrupt:
        sandbox.corrupt(**rule)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sandbox.start()
    try:
        print(f"Aperiodic sandbox listening on {sandbox.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
