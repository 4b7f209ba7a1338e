"""Benchmark: a whole universe's day and history through Dagster, against the same work without it.

Why: the package must serve two thousand perpetuals as easily as four, so what Dagster adds per
partition (run creation, event-log records, the daemon) must stay small beside the data work, on
sqlite and on the production storage, on a network as slow as a real one (loopback flatters the
bare loop: every request there is free).

What runs, side by side on one sandbox process (``--synthetic-symbols``: N instruments on two
exchanges, ``1h``):

- **rollover**: N instruments x 1 month, the run a day's rollover makes (default July 2026, one
  monthly file per partition: the least data work per partition, so the hardest ratio;
  ``--rollover-month 2026-11`` rebuilds a month of daily files instead).
- **history**: H instruments x 12 months (2025-08..2026-07), on the production storage at 60 ms.
- Each as a UI backfill (``launchPartitionBackfill`` over GraphQL against a real webserver +
  daemon, tests/dagster_services.py; ``benchmarks/backfill.py``'s machinery), on sqlite
  (dagster_home/dagster.yaml) and on the production storage (dagster.prod.yaml's storage section:
  Postgres through pgbouncer, both started for the run), at loopback and at a 60 ms round trip
  (the sandbox's ``--latency-ms``: one round trip per request, three on a new connection).
- **bare**: ``pipeline.run_partition`` over the same partitions with a backfill run's
  concurrency, no Dagster: the floor (benchmarks/common.py).
- **official**: the official client's loop, ``aperiodic.get_metrics`` per instrument over the
  same month, serial as a user's script is; timed on ``--official-sample`` instruments and
  scaled to N (it is a serial loop: its time is linear in N).

RESULT lines, per phase, storage and network: ``after_pickup_over_bare`` (launch to done minus the
daemon's pickup, over bare), ``overhead_ms_per_partition`` ((after pickup - bare) / partitions),
``run_start_s`` (median run created -> started), ``events_per_partition`` (every event-log record
of the backfill's runs, per partition) and ``over_official`` (launch to done over the official
loop). The load average is printed beside each figure: the 2 cores are shared by the sandbox, the
daemon, the webserver, Postgres and the runs.

Run: ``.venv/bin/python benchmarks/universe.py`` (about 10 minutes: N=1000, history H=200);
the full history, ``--history-instruments 1000`` (12,000 partitions, about 11 minutes more).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from backfill import Backfill, Partitions, grid, run_backfill, storage_deployment
from common import KEY, TODAY, bare, load, official_frame, write_universe

from aperiodic_assets.core.months import Month, month_range
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.sandbox import RemoteSandbox
from aperiodic_assets.sandbox.catalog import synthetic_symbol
from aperiodic_assets.tools.demo import sandbox_process
from tests.dagster_services import DagsterServices

EXCHANGES = ("binance-futures", "okx-perps")
HISTORY = month_range(Month(2025, 8), Month(2026, 7))
#: The networks every phase is measured on: round trip in ms.
NETWORKS = {"loopback": 0.0, "60ms": 60.0}
#: ``postgres`` is the production topology (through PgBouncer); ``postgres-direct`` without it.
STORAGES = ("sqlite", "postgres", "postgres-direct")


def universe(n: int) -> list[Instrument]:
    """``n`` synthetic instruments, alternating between the two exchanges."""
    symbols = -(-n // len(EXCHANGES))
    return [
        Instrument(exchange, synthetic_symbol(k), "1h", "exchange")
        for k in range(1, symbols + 1)
        for exchange in EXCHANGES
    ][:n]


def official(api_url: str, instruments: list[Instrument], month: Month) -> float:
    """Seconds the official client's serial loop takes over ``instruments`` for ``month``."""
    start = time.perf_counter()
    for i in instruments:
        assert len(official_frame(api_url, i, month.first_day, month.last_day)) > 0
    return time.perf_counter() - start


@dataclass(frozen=True)
class Measured:
    phase: str
    storage: str
    network: str
    backfill: Backfill
    bare_s: float
    official_s: float | None

    def result(self) -> str:
        done = self.backfill
        overhead_ms = (done.after_pickup_s - self.bare_s) / done.partitions * 1000
        over_official = (
            f" over_official={done.wall_s / self.official_s:.2f}" if self.official_s else ""
        )
        return (
            f"RESULT phase={self.phase} storage={self.storage} network={self.network}"
            f" partitions={done.partitions} backfill_s={done.wall_s:.1f}"
            f" pickup_s={done.pickup_s:.1f} bare_s={self.bare_s:.1f}"
            f" after_pickup_over_bare={done.after_pickup_s / self.bare_s:.2f}"
            f" overhead_ms_per_partition={overhead_ms:.0f}"
            f" run_start_s={done.start_up_s:.1f}"
            f" events_per_partition={done.events / done.partitions:.2f}{over_official}"
        )


def measure(
    services: DagsterServices, partitions: Partitions, bare_s: float, label: str
) -> Backfill:
    done = run_backfill(services, partitions, timeout_s=7200.0, sample_s=0.5)
    print(f"  {label}: {done.describe()}; {load()}", flush=True)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=1000, help="rollover instruments")
    parser.add_argument("--history-instruments", type=int, default=200)
    parser.add_argument("--rollover-month", type=Month.parse, default=Month(2026, 7))
    parser.add_argument("--official-sample", type=int, default=100)
    parser.add_argument(
        "--storage", choices=STORAGES, action="append", help="default: sqlite and postgres"
    )
    parser.add_argument("--network", choices=list(NETWORKS), action="append")
    parser.add_argument("--no-history", action="store_true")
    args = parser.parse_args()
    storages = args.storage or ["sqlite", "postgres"]
    networks = args.network or list(NETWORKS)
    instruments = universe(max(args.instruments, args.history_instruments))
    rollover = grid(instruments[: args.instruments], [args.rollover_month])
    history = grid(instruments[: args.history_instruments], HISTORY)
    sandbox_args = ["--today", TODAY.isoformat(), "--key", KEY]
    sandbox_args += ["--synthetic-symbols", str(-(-len(instruments) // len(EXCHANGES)))]
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(sandbox_args) as api_url:
        work, steer = Path(tmp), RemoteSandbox(api_url)
        print(
            f"sandbox at {api_url}; rollover {len(rollover)} partitions"
            f" ({args.instruments} x {args.rollover_month}), history {len(history)}"
            f" ({args.history_instruments} x {len(HISTORY)} months); {load()}",
            flush=True,
        )
        bare(api_url, work / "warm", rollover[:200])  # imports, connections, first renders
        floors: dict[tuple[str, str], float] = {}
        officials: dict[str, float] = {}
        for network in networks:
            steer.network(latency_ms=NETWORKS[network])
            floors["rollover", network] = bare(api_url, work / f"bare_{network}", rollover)
            print(f"(b) bare, rollover, {network}: {floors['rollover', network]:.1f}s; {load()}")
            sample = instruments[: min(args.official_sample, args.instruments)]
            sample_s = official(api_url, sample, args.rollover_month)
            officials[network] = sample_s * args.instruments / len(sample)
            print(
                f"(c) official client, {network}: {sample_s:.1f}s for {len(sample)} instruments,"
                f" {officials[network]:.1f}s scaled to {args.instruments}; {load()}",
                flush=True,
            )
        for storage in storages:
            universe_file = write_universe(
                work / f"universe_{storage}.yaml", instruments, "2025-08"
            )
            with storage_deployment(storage, work, api_url, universe_file) as services:
                for network in networks:
                    steer.network(latency_ms=NETWORKS[network])
                    done = measure(
                        services, rollover, floors["rollover", network], f"{storage} {network}"
                    )
                    measured.append(
                        Measured(
                            "rollover",
                            storage,
                            network,
                            done,
                            floors["rollover", network],
                            officials[network],
                        )
                    )
                    print(measured[-1].result(), flush=True)
                if storage.startswith("postgres") and not args.no_history:
                    steer.network(latency_ms=NETWORKS["60ms"])
                    floor = bare(api_url, work / "bare_history", history)
                    print(f"(b) bare, history, 60ms: {floor:.1f}s; {load()}", flush=True)
                    done = measure(services, history, floor, f"{storage} history 60ms")
                    measured.append(Measured("history", storage, "60ms", done, floor, None))
                    print(measured[-1].result(), flush=True)
        print(f"after: {load()}")
    for m in measured:
        print(m.result())


if __name__ == "__main__":
    main()
