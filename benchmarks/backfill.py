"""Benchmark: a backfill through the Dagster daemon against the same work without Dagster.

Why: a backfill of hundreds of partitions launched from the UI should cost little more than its
data work (issue 7). Three ways of fetching the same 4 instruments x 24 months of ``1m`` data from
one sandbox process are timed:

(a) backfill: ``launchPartitionBackfill`` over GraphQL, exactly as tests/test_backfill_e2e.py and
    the UI do, against a real webserver + daemon (tests/dagster_services.py) on a fresh sqlite
    instance configured by dagster_home/dagster.yaml as shipped. Wall time from the launch until
    the last run of the backfill ended (every partition then has its materialization). The
    backfill daemon looks for new backfills every 30 s (fixed in Dagster 1.13), so the launch is
    timed half-way between two of its iterations: the wait a user sees on average.
(b) bare: a loop over the same partitions calling ``pipeline.run_partition`` (our client,
    validation and warehouse), one after the other, no Dagster.
(c) official: ``aperiodic.get_metrics(..., output="pandas")`` for each instrument over the 24
    months (its own concurrent downloads), no validation, nothing written.

The sandbox is warmed first by one untimed pass of (c); its file cache holds 32 files, far fewer
than these months span, so every pass still renders most files, the same for (a), (b) and (c).
Peak RSS: /proc/<pid>/status VmHWM of every run-worker process (the code server's spawned child
that executes a run, and the step subprocess it spawns), sampled every 0.1 s while the backfill
runs (VmHWM is the kernel's high-water mark, so sampling only misses a process's last 0.1 s); the
figure per backfill is the largest run-worker tree (sum of its processes). 24 partitions = 4
instruments x 6 months, 96 = 4 x 24: both one run per instrument.

The instruments are not all in universe.yaml, so the code location is loaded through a small
generated module that points the universe at the benchmark's own file (see ``LOCATION``).

Run: ``.venv/bin/python benchmarks/backfill.py`` (about 2.5 minutes on 2 cores).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import aperiodic
import dagster as dg
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # tests.dagster_services

from aperiodic_assets.api import AperiodicClient  # noqa: E402
from aperiodic_assets.demo import sandbox_process  # noqa: E402
from aperiodic_assets.months import Month, month_range  # noqa: E402
from aperiodic_assets.pipeline import run_partition  # noqa: E402
from aperiodic_assets.universe import Instrument  # noqa: E402
from aperiodic_assets.warehouse import Warehouse  # noqa: E402
from tests.dagster_services import DagsterServices, dagster_services, load_yaml  # noqa: E402

KEY = "sandbox"
TODAY = date(2026, 11, 25)
INSTRUMENTS = [
    Instrument(exchange, symbol, "1m", "exchange")
    for exchange in ("binance-futures", "okx-perps")
    for symbol in ("perpetual-BTC-USDT:USDT", "perpetual-ETH-USDT:USDT")
]
MONTHS = month_range(Month(2024, 11), Month(2026, 10))  # 24, the last completed on TODAY
RSS_MONTHS = month_range(Month(2024, 5), Month(2024, 10))  # 6 others, for the 24-partition run
ASSET = ["aperiodic", "l1_imbalance"]
BACKFILL_DAEMON_INTERVAL_S = 30.0
#: The code location over the benchmark's universe. partitions.py reads universe.yaml at import
#: and has no setting for another file yet; with one, this module becomes an environment variable.
LOCATION = """\
import os

import aperiodic_assets.universe as universe

_load = universe.load_universe
universe.load_universe = lambda path=os.environ["BENCH_UNIVERSE"]: _load(path)

from aperiodic_assets.definitions import defs  # noqa: E402
"""


def partition_keys(months: list[Month]) -> list[str]:
    return [f"{i.key}|{m.key}" for i in INSTRUMENTS for m in months]


def bare(api_url: str, warehouse_dir: Path) -> float:
    client, warehouse = AperiodicClient(api_url, KEY), Warehouse(warehouse_dir)
    start = time.perf_counter()
    for instrument in INSTRUMENTS:
        for month in MONTHS:
            assert run_partition(client, warehouse, instrument, month).written is not None
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def official(api_url: str) -> float:
    start = time.perf_counter()
    for i in INSTRUMENTS:
        frame = aperiodic.get_metrics(
            api_key=KEY,
            metric="l1_imbalance",
            timestamp=i.timestamp,
            interval=i.interval,
            exchange=i.exchange,
            symbol=i.symbol,
            start_date=MONTHS[0].first_day,
            end_date=MONTHS[-1].last_day,
            base_url=api_url,
            output="pandas",
            show_progress=False,
        )
        assert len(frame) == sum(m.last_day.day for m in MONTHS) * 1440
    return time.perf_counter() - start


class RunWorkerMemory:
    """Peak VmHWM of run-worker process trees under the daemon, sampled from /proc."""

    def __init__(self, daemon_pid: int) -> None:
        self.daemon_pid = daemon_pid
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
        while not self._stop.wait(0.1):
            table = {int(p.name): s for p in Path("/proc").iterdir() if (s := _status(p))}
            for pid, (_, _, hwm) in table.items():
                root = self._run_worker(pid, table)
                if root is not None:
                    self.root[pid] = root
                    self.peak_kib[pid] = max(self.peak_kib.get(pid, 0), hwm)

    def _run_worker(self, pid: int, table: dict[int, tuple[int, str, int]]) -> int | None:
        """The run worker ``pid`` belongs to: the code server's spawned child, or None.

        The daemon's code server (``dagster api grpc``) starts each run in a multiprocessing
        "spawn" child; the multiprocess executor starts each step in a spawn child of that.
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


def run_backfill(services: DagsterServices, keys: list[str], not_before: float) -> dict:
    """Launch a backfill at ``not_before`` (epoch s); timings and peak run-worker memory."""
    time.sleep(max(0.0, not_before - time.time()))
    assert services.daemon is not None
    with RunWorkerMemory(services.daemon.process.pid).sampling() as memory:
        launched = time.time()
        backfill_id = services.launch_backfill(ASSET, keys)
        runs = services.wait_runs_finished(backfill_id, len(INSTRUMENTS), timeout=900)
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    with dg.DagsterInstance.get() as instance:
        materialized = instance.get_materialized_partitions(dg.AssetKey(ASSET))
    assert set(keys) <= materialized, set(keys) - materialized
    created = min(float(r["creationTime"]) for r in runs)
    return {
        "created": created,
        "pickup_s": created - launched,
        "wall_s": max(float(r["endTime"]) for r in runs) - launched,
        "runs": len(runs),
        "rss_mib": memory.peak_tree_mib(),
    }


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(["--today", TODAY.isoformat(), "--key", KEY]) as api_url,
    ):
        work = Path(tmp)
        print(f"sandbox at {api_url}; {len(INSTRUMENTS)} instruments x {len(MONTHS)} months of 1m")
        official(api_url)  # warm-up: the sandbox renders (and caches what it can) every file
        bare_s = bare(api_url, work / "bare_warehouse")
        print(f"(b) bare run_partition loop: {bare_s:.1f}s")
        official_s = official(api_url)
        print(f"(c) official client: {official_s:.1f}s")

        universe = work / "universe.yaml"
        universe.write_text(
            yaml.safe_dump(
                {
                    "start_month": "2024-01",
                    "instruments": [vars(i) for i in INSTRUMENTS],
                }
            )
        )
        location = work / "location.py"
        location.write_text(LOCATION)
        home = work / "dagster_home"
        os.environ["DAGSTER_HOME"] = str(home)  # this process reads the instance too
        with dagster_services(
            home,
            instance_config=load_yaml(REPO_ROOT / "dagster_home" / "dagster.yaml"),
            workspace={
                "load_from": [
                    {
                        "python_file": {
                            "relative_path": str(location),
                            "location_name": "aperiodic_assets",
                            "working_directory": str(REPO_ROOT),
                        }
                    }
                ]
            },
            env={
                "APERIODIC_API_URL": api_url,
                "APERIODIC_API_KEY": KEY,
                "WAREHOUSE_URL": str(work / "warehouse"),
                "BENCH_UNIVERSE": str(universe),
            },
        ) as services:
            small = run_backfill(services, partition_keys(RSS_MONTHS), not_before=0)
            print(
                f"24 partitions: {small['runs']} runs, launch to done {small['wall_s']:.1f}s"
                f" (daemon pickup {small['pickup_s']:.1f}s), peak run RSS {small['rss_mib']:.0f}"
                " MiB"
            )
            # Half-way between two iterations of the backfill daemon, whose phase the first
            # backfill revealed (its runs are created at the start of an iteration).
            cycles = int((time.time() - small["created"]) // BACKFILL_DAEMON_INTERVAL_S) + 1
            mid_cycle = small["created"] + BACKFILL_DAEMON_INTERVAL_S * (cycles + 0.5)
            large = run_backfill(services, partition_keys(MONTHS), not_before=mid_cycle)
            print(
                f"(a) 96 partitions: {large['runs']} runs, launch to done {large['wall_s']:.1f}s"
                f" (daemon pickup {large['pickup_s']:.1f}s, then"
                f" {large['wall_s'] - large['pickup_s']:.1f}s), peak run RSS"
                f" {large['rss_mib']:.0f} MiB"
            )
    backfill_s = large["wall_s"]
    print(
        f"RESULT backfill_s={backfill_s:.1f} bare_s={bare_s:.1f} official_s={official_s:.1f}"
        f" backfill_over_bare={backfill_s / bare_s:.2f}"
        f" backfill_over_official={backfill_s / official_s:.2f}"
        f" rss_96_over_24={large['rss_mib'] / small['rss_mib']:.2f}"
    )


if __name__ == "__main__":
    main()
