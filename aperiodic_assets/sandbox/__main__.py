"""Command line: ``python -m aperiodic_assets.sandbox [--port N] [--today YYYY-MM-DD] ...``.

Owns argument and environment parsing and the process lifecycle: start, print one line
(``Aperiodic sandbox listening on http://HOST:PORT/api/v1``) so a parent process can read the
port, serve until Ctrl-C or SIGTERM, stop cleanly. Never imports dagster.

Environment: ``APERIODIC_SANDBOX_TODAY`` (the clock, unless ``--today`` is given) and
``APERIODIC_SANDBOX_FAULTS`` (comma-separated ``NAME[:COUNT][:key=value...]``, added to
``--fault``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import date
from types import FrameType

from .catalog import SYNTHETIC_LISTED, synthetic_symbol
from .faults import FAULTS, Fault, parse_fault_list, parse_fault_spec
from .handles import Sandbox
from .state import CORRUPTION_MODES, SandboxConfig


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r}; expected YYYY-MM-DD") from None


def _count(text: str) -> int:
    if not text.isdecimal():
        raise argparse.ArgumentTypeError(f"not a count: {text!r}; expected an integer >= 0")
    return int(text)


def _fault(text: str) -> Fault:
    try:
        return parse_fault_spec(text)
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
        "--corrupt", choices=CORRUPTION_MODES, default=None, help="corrupt every file this way"
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
    )
    sandbox = Sandbox(config)
    for fault in [*args.fault, *env_faults]:
        sandbox.state.faults.add(fault)
    if args.corrupt:
        sandbox.corrupt(args.corrupt)

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
