"""Benchmark: backfills through the Dagster daemon against the same work without Dagster.

Why: a backfill launched from the UI should cost little more than its data work, and that must
hold for a handful of heavy partitions and for thousands of light ones, on sqlite and Postgres.
The RESULT ratios compare timings taken side by side in one run, on one sandbox process; the load
average is printed before and after, as the cores may be shared.

Default run: 4 instruments x 24 months of ``1m`` data (96 partitions):

(a) backfill: ``launchPartitionBackfill`` over GraphQL, exactly as tests/test_backfill_e2e.py and
    the UI do, against a real webserver + daemon (tests/dagster_services.py) on a fresh sqlite
    instance configured by dagster_home/dagster.yaml as shipped, the code location loaded from
    workspace.yaml with ``APERIODIC_UNIVERSE`` pointing at the benchmark's instruments. Wall time
    from the launch until the last run of the backfill ended. The backfill daemon looks for new
    backfills every 30 s (fixed in Dagster 1.13), so the launch is timed half-way between two of
    its iterations, the wait a user sees on average; ``pickup_s`` (launch to first run created)
    is reported on its own, and ``after_pickup_over_bare`` leaves it out.
(b) bare: ``pipeline.run_partition`` over the same partitions through ``pipeline.completed`` with
    the concurrency of one backfill run (``partition_concurrency``), no Dagster: the floor. The
    serial loop is printed for information.
(c) official: ``aperiodic.get_metrics(..., output="pandas")`` for each instrument over the 24
    months (its own concurrent downloads), no validation, nothing written.

The sandbox is warmed first by one untimed pass of (c); its file cache holds 32 files, far fewer
than these months span, so every pass still renders most files, the same for (a), (b) and (c).
``events_per_partition``: event log records of the backfill's runs (run and step events, logs,
materializations, check evaluations), read back through the instance, per partition.
Peak RSS: /proc/<pid>/status VmHWM of every run-worker process (the code server's spawned child
that executes a run, and anything it spawns), sampled while the backfill runs (VmHWM is the
kernel's high-water mark, so sampling only misses a process's last interval); the figure per
backfill is the largest run-worker tree. 24 partitions = 4 instruments x 6 months, 96 = 4 x 24.

``--scale``: 200 synthetic instruments x 24 months (2024-01..2025-12, one small monthly file each)
of ``1d`` data, 4,800 partitions, so Dagster's per-partition bookkeeping dominates. The same UI
backfill (launched without waiting for a daemon phase; pickup is left out of the ratio) against
(b), once on a sqlite instance and once on a throwaway PostgreSQL cluster (tests/postgres_server.py)
with the storage section of dagster_home/dagster.prod.yaml; everything else (run queue, pool,
local compute logs, default run launcher) is dagster.yaml's, so storage is the only difference.
``scale_over_bare`` = backfill after pickup / bare; ``overhead_ms_per_partition`` = (backfill
after pickup - bare) / partitions. ``--instruments`` and ``--months`` shrink it; ``--storage``
picks one storage.

Run: ``.venv/bin/python benchmarks/backfill.py`` (about 3 minutes on 2 cores);
``.venv/bin/python benchmarks/backfill.py --scale`` (about 25 minutes for both storages).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from common import (
    KEY,
    PARTITION_CONCURRENCY,
    REPO_ROOT,
    TODAY,
    bare,
    load,
    location_env,
    official_frame,
    write_universe,
)

from aperiodic_assets.core.months import Month, month_range
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.sandbox.catalog import synthetic_symbol
from aperiodic_assets.tools.demo import sandbox_process
from tests.dagster_services import DagsterServices, dagster_services, load_yaml
from tests.postgres_server import pgbouncer_pool, postgres_cluster

INSTRUMENTS = [
    Instrument(exchange, symbol, "1m", "exchange")
    for exchange in ("binance-futures", "okx-perps")
    for symbol in ("perpetual-BTC-USDT:USDT", "perpetual-ETH-USDT:USDT")
]
MONTHS = month_range(Month(2024, 11), Month(2026, 10))  # 24, the last completed on TODAY
RSS_MONTHS = month_range(Month(2024, 5), Month(2024, 10))  # 6 others, for the 24-partition run
#: Scale: monthly files only (daily files start on 2026-08-01), so one tiny download each.
SCALE_MONTHS = month_range(Month(2024, 1), Month(2025, 12))
SCALE_EXCHANGES = ("binance-futures", "okx-perps")
ASSET = ["aperiodic", "l1_imbalance"]
BACKFILL_DAEMON_INTERVAL_S = 30.0
Partitions = list[tuple[Instrument, Month]]


def partition_keys(partitions: Partitions) -> list[str]:
    return [str(partition_key(i, m)) for i, m in partitions]


def grid(instruments: list[Instrument], months: list[Month]) -> Partitions:
    return [(i, m) for i in instruments for m in months]


def official(api_url: str) -> float:
    start = time.perf_counter()
    for i in INSTRUMENTS:
        frame = official_frame(api_url, i, MONTHS[0].first_day, MONTHS[-1].last_day)
        assert len(frame) == sum(m.last_day.day for m in MONTHS) * 1440
    return time.perf_counter() - start


class RunWorkerMemory:
    """Peak VmHWM of run-worker process trees under the daemon, sampled from /proc."""

    def __init__(self, daemon_pid: int, interval_s: float) -> None:
        self.daemon_pid = daemon_pid
        self.interval_s = interval_s
        self.peak_kib: dict[int, int] = {}  # pid -> VmHWM
        self.root: dict[int, int] = {}  # pid -> its run worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @contextmanager
    def sampling(self) -> Iterator[RunWorkerMemory]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def peak_tree_mib(self) -> float:
        trees: dict[int, int] = {}
        for pid, kib in self.peak_kib.items():
            trees[self.root[pid]] = trees.get(self.root[pid], 0) + kib
        return max(trees.values()) / 1024

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            table = {int(p.name): s for p in Path("/proc").iterdir() if (s := _status(p))}
            for pid, (_, _, hwm) in table.items():
                root = self._run_worker(pid, table)
                if root is not None:
                    self.root[pid] = root
                    self.peak_kib[pid] = max(self.peak_kib.get(pid, 0), hwm)

    def _run_worker(self, pid: int, table: dict[int, tuple[int, str, int]]) -> int | None:
        """The run worker ``pid`` belongs to: the code server's spawned child, or None.

        The daemon's code server (``dagster api grpc``) starts each run in a multiprocessing
        "spawn" child; whatever that child starts belongs to the same run.
        """
        chain = [pid]
        while chain[-1] in table and chain[-1] != self.daemon_pid:
            chain.append(table[chain[-1]][0])
        if chain[-1] != self.daemon_pid:
            return None
        cmdlines = [table[p][1] for p in chain[:-1]]
        server = next((i for i, c in enumerate(cmdlines) if "api grpc" in c), None)
        if server is None or server == 0 or "spawn_main" not in cmdlines[0]:
            return None
        return chain[server - 1]


def _status(proc: Path) -> tuple[int, str, int] | None:
    """(parent pid, command line, VmHWM in KiB) of a /proc entry, None if not a readable process."""
    if not proc.name.isdigit():
        return None
    try:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        fields = dict(
            line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line
        )
    except OSError:  # gone in the meantime
        return None
    return int(fields["PPid"]), cmdline, int(fields.get("VmHWM", "0 kB").split()[0])


@dataclass(frozen=True)
class Backfill:
    """What one UI backfill took, from the launch (epoch seconds throughout)."""

    partitions: int
    launched: float
    runs: list[dict[str, Any]]
    events: int
    partitions_per_run: list[int]
    rss_mib: float

    @property
    def created(self) -> float:
        return min(float(r["creationTime"]) for r in self.runs)

    @property
    def pickup_s(self) -> float:
        return self.created - self.launched

    @property
    def wall_s(self) -> float:
        return max(float(r["endTime"]) for r in self.runs) - self.launched

    @property
    def after_pickup_s(self) -> float:
        return self.wall_s - self.pickup_s

    @property
    def start_up_s(self) -> float:
        """Median of the runs' created -> started (queue wait included)."""
        waits = sorted(float(r["startTime"]) - float(r["creationTime"]) for r in self.runs)
        return waits[len(waits) // 2]

    @property
    def run_s(self) -> float:
        """Median of the runs' started -> ended: start-up excluded, the pace inside a run."""
        spans = sorted(float(r["endTime"]) - float(r["startTime"]) for r in self.runs)
        return spans[len(spans) // 2]

    def describe(self) -> str:
        sizes = sorted(set(self.partitions_per_run))
        return (
            f"{self.partitions} partitions: {len(self.runs)} runs of {'/'.join(map(str, sizes))}"
            f" partitions, launch to done {self.wall_s:.1f}s (daemon pickup {self.pickup_s:.1f}s,"
            f" then {self.after_pickup_s:.1f}s; median run created -> started"
            f" {self.start_up_s:.1f}s, started -> ended {self.run_s:.1f}s),"
            f" {self.events / self.partitions:.1f} events per"
            f" partition, peak run RSS {self.rss_mib:.0f} MiB"
        )


def run_backfill(
    services: DagsterServices,
    partitions: Partitions,
    *,
    not_before: float = 0.0,
    timeout_s: float = 900.0,
    sample_s: float = 0.1,
) -> Backfill:
    """Launch a UI backfill of ``partitions`` at ``not_before`` (epoch s); wait until it landed.

    Done when every run of the backfill has ended and every partition has its materialization
    (then no run is still to come), whatever number of runs Dagster split the selection into.
    """
    keys = partition_keys(partitions)
    time.sleep(max(0.0, not_before - time.time()))
    assert services.daemon is not None
    with (
        RunWorkerMemory(services.daemon.process.pid, sample_s).sampling() as memory,
        dg.DagsterInstance.get() as instance,
    ):
        launched = time.time()
        backfill_id = services.launch_backfill(ASSET, keys)

        def landed() -> list[dict[str, Any]] | None:
            runs = services.backfill_runs(backfill_id)
            if not runs or any(r["status"] not in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
                return None
            if any(r["status"] != "SUCCESS" for r in runs):
                raise RuntimeError(f"backfill {backfill_id} failed:\n{failures(instance, runs)}")
            done = instance.get_materialized_partitions(dg.AssetKey(ASSET))
            return runs if set(keys) <= done else None

        runs = services.wait_for(f"backfill {backfill_id}", landed, timeout_s)
    with dg.DagsterInstance.get() as instance:
        logs = [instance.all_logs(r["runId"]) for r in runs]
    per_run = [
        sum(1 for e in run if e.dagster_event_type == "ASSET_MATERIALIZATION") for run in logs
    ]
    assert sum(per_run) == len(keys), per_run
    return Backfill(
        partitions=len(keys),
        launched=launched,
        runs=runs,
        events=sum(len(run) for run in logs),
        partitions_per_run=per_run,
        rss_mib=memory.peak_tree_mib(),
    )


def failures(instance: dg.DagsterInstance, runs: list[dict[str, Any]]) -> str:
    """The step failures of ``runs``, for the error a failed backfill raises."""
    lines = []
    for run in runs:
        for event in instance.all_logs(run["runId"], of_type=dg.DagsterEventType.STEP_FAILURE):
            error = event.dagster_event.step_failure_data.error if event.dagster_event else None
            lines.append(f"{run['runId']}: {error.to_string() if error else event.message}")
    return "\n".join(lines)[-8000:]


@contextmanager
def storage_instance(storage: str, home: Path) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """(instance config, its environment) for ``storage`` in ``home``: ``sqlite``, ``postgres``
    (the production topology: a throwaway cluster behind a throwaway PgBouncer) or
    ``postgres-direct`` (the same cluster without the pooler, for comparison).

    Postgres: the storage section of dagster.prod.yaml; the rest is dagster.yaml's, so only the
    storage differs.
    """
    config = load_yaml(REPO_ROOT / "dagster_home" / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)  # this process reads the instance too
    if storage == "sqlite":
        yield config, {}
        return
    config["storage"] = load_yaml(REPO_ROOT / "dagster_home" / "dagster.prod.yaml")["storage"]
    with ExitStack() as stack:
        pg = stack.enter_context(postgres_cluster())
        if storage == "postgres":
            pg = stack.enter_context(pgbouncer_pool(pg))
        os.environ.update(pg.env)
        yield config, pg.env


@contextmanager
def storage_deployment(
    storage: str, work: Path, api_url: str, universe: Path
) -> Iterator[DagsterServices]:
    """A webserver + daemon on ``storage`` (:func:`storage_instance`) in ``work``, their code
    location on the sandbox at ``api_url`` partitioning the instruments of ``universe``."""
    home = work / f"dagster_home_{storage}"
    with (
        storage_instance(storage, home) as (config, storage_env),
        dagster_services(
            home,
            instance_config=config,
            env={**location_env(api_url, work / f"warehouse_{storage}", universe), **storage_env},
        ) as services,
    ):
        yield services


def default_benchmark() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(["--today", TODAY.isoformat(), "--key", KEY]) as api_url,
    ):
        work = Path(tmp)
        print(f"sandbox at {api_url}; {len(INSTRUMENTS)} instruments x {len(MONTHS)} months of 1m")
        print(f"before: {load()}")
        large, small = grid(INSTRUMENTS, MONTHS), grid(INSTRUMENTS, RSS_MONTHS)
        official(api_url)  # warm-up: the sandbox renders (and caches what it can) every file
        serial_s = bare(api_url, work / "serial", large, concurrency=1)
        print(f"(b) bare run_partition loop, serial: {serial_s:.1f}s (information)")
        bare_s = bare(api_url, work / "bare", large)
        print(f"(b) bare run_partition loop, {PARTITION_CONCURRENCY} threads: {bare_s:.1f}s")
        official_s = official(api_url)
        print(f"(c) official client: {official_s:.1f}s")

        universe = write_universe(work / "universe.yaml", INSTRUMENTS)
        with (
            storage_instance("sqlite", work / "dagster_home") as (config, _),
            dagster_services(
                work / "dagster_home",
                instance_config=config,
                env=location_env(api_url, work / "warehouse", universe),
            ) as services,
        ):
            first = run_backfill(services, small)
            print(f"    {first.describe()}")
            # Half-way between two iterations of the backfill daemon, whose phase the first
            # backfill revealed (its runs are created at the start of an iteration).
            cycles = int((time.time() - first.created) // BACKFILL_DAEMON_INTERVAL_S) + 1
            mid_cycle = first.created + BACKFILL_DAEMON_INTERVAL_S * (cycles + 0.5)
            timed = run_backfill(services, large, not_before=mid_cycle)
            print(f"(a) {timed.describe()}")
        print(f"after: {load()}")
    print(
        f"RESULT backfill_s={timed.wall_s:.1f} bare_s={bare_s:.1f} official_s={official_s:.1f}"
        f" pickup_s={timed.pickup_s:.1f}"
        f" after_pickup_over_bare={timed.after_pickup_s / bare_s:.2f}"
        f" backfill_over_official={timed.wall_s / official_s:.2f}"
        f" rss_96_over_24={timed.rss_mib / first.rss_mib:.2f}"
        f" events_per_partition={timed.events / timed.partitions:.1f}"
    )


def scale_benchmark(instruments: int, months: int, storages: list[str]) -> None:
    symbols = -(-instruments // len(SCALE_EXCHANGES))
    universe_instruments = [
        Instrument(exchange, synthetic_symbol(n), "1d", "exchange")
        for n in range(1, symbols + 1)
        for exchange in SCALE_EXCHANGES
    ][:instruments]
    partitions = grid(universe_instruments, SCALE_MONTHS[:months])
    sandbox_args = ["--today", TODAY.isoformat(), "--key", KEY, "--synthetic-symbols", str(symbols)]
    results = []
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(sandbox_args) as api_url:
        work = Path(tmp)
        print(
            f"sandbox at {api_url}; {len(universe_instruments)} instruments x {months} months"
            f" of 1d = {len(partitions)} partitions"
        )
        print(f"before: {load()}")
        bare(api_url, work / "warm", partitions[:200])  # warm-up: imports, connections
        bare_s = bare(api_url, work / "bare", partitions)
        print(f"(b) bare run_partition loop, {PARTITION_CONCURRENCY} threads: {bare_s:.1f}s")
        universe = write_universe(work / "universe.yaml", universe_instruments)
        for storage in storages:
            with storage_deployment(storage, work, api_url, universe) as services:
                done = run_backfill(services, partitions, timeout_s=7200.0, sample_s=0.5)
            overhead_ms = (done.after_pickup_s - bare_s) / len(partitions) * 1000
            print(
                f"(a) {storage}: {done.describe()}; after pickup {done.after_pickup_s / bare_s:.2f}"
                f" x bare, {overhead_ms:.0f} ms per partition over bare; {load()}"
            )
            results.append((storage, done, overhead_ms))
    for storage, done, overhead_ms in results:
        print(
            f"RESULT scale_partitions={done.partitions}"
            f" scale_over_bare={done.after_pickup_s / bare_s:.2f}"
            f" overhead_ms_per_partition={overhead_ms:.0f} {storage}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", action="store_true", help="many light partitions instead")
    parser.add_argument("--instruments", type=int, default=200, help="--scale: instruments")
    parser.add_argument(
        "--months", type=int, default=len(SCALE_MONTHS), choices=range(1, len(SCALE_MONTHS) + 1)
    )
    parser.add_argument(
        "--storage",
        choices=("sqlite", "postgres", "postgres-direct"),
        action="append",
        help="--scale: default sqlite and postgres (through PgBouncer, as deployed)",
    )
    args = parser.parse_args()
    if args.scale:
        scale_benchmark(args.instruments, args.months, args.storage or ["sqlite", "postgres"])
    else:
        default_benchmark()


if __name__ == "__main__":
    main()
