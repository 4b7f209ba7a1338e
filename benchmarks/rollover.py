"""Benchmark: a month rollover through the scheduler daemon against the same work without Dagster.

Why: the automated path is the main way this package is used, and a rollover of N instruments
must not become N runs that each pay Dagster's run start-up. Timed in one run, on one sandbox:

(a) rollover: the real ``monthly_schedule`` fired by a real daemon (webserver + daemon of
    tests/dagster_services.py, sqlite instance configured by dagster_home/dagster.yaml as shipped)
    for N = 64 sandbox instruments (intervals 15m..1d, both timestamp modes) and the last
    completed month. The schedule's cron is set to every minute (APERIODIC_SCHEDULE_CRON), so the
    tick is at the next minute boundary; wall time from that boundary until the last run ended and
    every partition has its materialization. Its run key makes later ticks no-ops.
(b) bare: ``pipeline.run_partition`` over the same partitions, no Dagster, with as many threads as
    the asset's ranged run uses (``partition_concurrency``, default 4).
(c) sensor: one evaluation of ``new_month_sensor``'s logic for a 500-instrument universe (the
    sandbox's synthetic symbols), on a fresh instance (listings only), then again after every
    watched partition was recorded as materialized from the files it lists (listings + identity
    probes of the newest file of each partition + older files in rotation, within the budget).

Run: ``.venv/bin/python benchmarks/rollover.py`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    KEY,
    PARTITION_CONCURRENCY,
    TODAY,
    bare,
    load,
    location_env,
    write_universe,
)

from aperiodic_assets.core.api import AperiodicClient  # noqa: E402
from aperiodic_assets.core.months import Month  # noqa: E402
from aperiodic_assets.core.universe import Instrument  # noqa: E402
from aperiodic_assets.defs.assets.reporting import SOURCE_STAMPS  # noqa: E402
from aperiodic_assets.defs.automation import TRIGGER_TAG  # noqa: E402
from aperiodic_assets.tools.demo import sandbox_process  # noqa: E402
from tests.dagster_services import dagster_services  # noqa: E402

MONTH = Month.of(datetime.now(UTC).date()).previous()  # what the schedule targets
SYMBOLS = {
    "binance-futures": [
        "perpetual-BTC-USDT:USDT",
        "perpetual-ETH-USDT:USDT",
        "perpetual-SOL-USDT:USDT",
    ],
    "okx-perps": ["perpetual-BTC-USDT:USDT", "perpetual-ETH-USDT:USDT", "perpetual-SOL-USDT:USDT"],
    "hyperliquid-perps": ["perpetual-BTC-USDC:USDC", "perpetual-ETH-USDC:USDC"],
}
INTERVALS = ("15m", "30m", "1h", "4h")
INSTRUMENTS = [
    Instrument(exchange, symbol, interval, timestamp)
    for exchange, symbols in SYMBOLS.items()
    for symbol in symbols
    for interval in INTERVALS
    for timestamp in ("exchange", "true")
][:64]
SENSOR_INSTRUMENTS = 500
START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on PythonError { message }
  }
}
"""
RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status creationTime startTime endTime } }
  }
}
"""


def rollover(api_url: str, work: Path) -> tuple[float, int]:
    universe = write_universe(work / "universe.yaml", INSTRUMENTS)
    home = work / "dagster_home"
    os.environ["DAGSTER_HOME"] = str(home)
    env = location_env(api_url, work / "warehouse", universe)
    env["APERIODIC_SCHEDULE_CRON"] = "* * * * *"
    with dagster_services(
        home,
        env=env,
        start_daemon=False,
    ) as services:
        selector = {
            "repositoryLocationName": "aperiodic_assets",
            "repositoryName": "__repository__",
            "scheduleName": "monthly_schedule",
        }
        started = services.graphql(START_SCHEDULE, {"selector": selector})["startSchedule"]
        assert started["__typename"] == "ScheduleStateResult", started
        tick = (int(time.time()) // 60 + 1) * 60  # the next minute boundary
        services.start_daemon()
        filter_ = {"tags": [{"key": TRIGGER_TAG, "value": "monthly_schedule"}]}

        def finished():
            runs = services.graphql(RUNS, {"filter": filter_})["runsOrError"]["results"]
            done = runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)
            return runs if done else None

        runs = services.wait_for("scheduled runs", finished, timeout=900)
        assert all(r["status"] == "SUCCESS" for r in runs), runs
        with dg.DagsterInstance.get() as instance:
            landed = instance.get_materialized_partitions(
                dg.AssetKey(["aperiodic", "l1_imbalance"])
            )
        assert len(landed) == len(INSTRUMENTS), len(landed)
        created = min(float(r["creationTime"]) for r in runs)
        began = min(float(r["startTime"]) for r in runs)
        ended = max(float(r["endTime"]) for r in runs)
        print(
            f"    tick -> run created {created - tick:.1f}s, created -> started"
            f" {began - created:.1f}s, started -> ended {ended - began:.1f}s"
        )
        return ended - tick, len(runs)


def sensor_ticks(work: Path) -> tuple[float, float, str]:
    """Two evaluations for a 500-instrument universe: cold, then with everything materialized."""
    with sandbox_process(
        ["--today", TODAY.isoformat(), "--key", KEY, "--synthetic-symbols", "250"]
    ) as api_url:
        from aperiodic_assets.core.universe import Universe
        from aperiodic_assets.defs.automation import evaluate, watched_months
        from aperiodic_assets.defs.deployment import Deployment, SensorSettings
        from aperiodic_assets.sandbox.catalog import synthetic_symbol

        instruments = [
            Instrument(exchange, synthetic_symbol(n), "1d", timestamp)
            for n in range(1, SENSOR_INSTRUMENTS // 4 + 1)
            for exchange in ("binance-futures", "okx-perps")
            for timestamp in ("exchange", "true")
        ]
        current = Month.of(datetime.now(UTC).date())
        settings = SensorSettings.from_env()
        deployment = Deployment(Universe(tuple(instruments), current), sensor=settings)
        client = AperiodicClient(api_url, KEY, max_connections=settings.concurrency)
        (work / "sensor_home").mkdir()
        with dg.instance_for_test(temp_dir=str(work / "sensor_home")) as instance:
            start = time.perf_counter()
            cold = evaluate(dg.build_sensor_context(instance=instance), client, deployment, current)
            cold_s = time.perf_counter() - start
            # Record every partition as materialized from exactly the files it lists now.
            months = watched_months(current, settings.lookback_months)
            with ThreadPoolExecutor(16) as pool:
                stamps = list(pool.map(lambda i: _stamps(client, i, months), instruments))
            for instrument, by_month in zip(instruments, stamps, strict=True):
                for month, files in by_month.items():
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(
                            asset_key=["aperiodic", "l1_imbalance"],
                            partition=f"{instrument.key}|{month}",
                            metadata={SOURCE_STAMPS: dg.MetadataValue.json(files)},
                        )
                    )
            start = time.perf_counter()
            warm = evaluate(
                dg.build_sensor_context(instance=instance, cursor=cold.cursor),
                client,
                deployment,
                current,
            )
            warm_s = time.perf_counter() - start
        client.close()
        assert not warm.run_requests, "nothing changed: nothing may be requested"
        return cold_s, warm_s, warm.skip_reason.skip_message if warm.skip_reason else ""


def _stamps(client: AperiodicClient, instrument: Instrument, months: list[Month]):
    out = {}
    for month in months:
        stamps = client.probe_month(instrument, month)
        if stamps:
            out[month.key] = {s.label: s.token for s in stamps}
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with sandbox_process(["--today", TODAY.isoformat(), "--key", KEY]) as api_url:
            print(f"sandbox at {api_url}; {len(INSTRUMENTS)} instruments, month {MONTH}; {load()}")
            partitions = [(i, MONTH) for i in INSTRUMENTS]
            bare(api_url, work / "warm", partitions)  # warm-up: the sandbox renders every file
            bare_s = bare(api_url, work / "bare", partitions)
            print(f"(b) bare run_partition, {PARTITION_CONCURRENCY} threads: {bare_s:.1f}s")
            rollover_s, runs = rollover(api_url, work)
            print(f"(a) scheduled rollover: {runs} run(s), tick to done {rollover_s:.1f}s")
        cold_s, warm_s, summary = sensor_ticks(work)
        print(
            f"(c) sensor, {SENSOR_INSTRUMENTS} instruments: first tick {cold_s:.1f}s,"
            f" steady tick {warm_s:.1f}s ({summary})"
        )
    print(
        f"RESULT rollover_s={rollover_s:.1f} bare_s={bare_s:.1f}"
        f" rollover_over_bare={rollover_s / bare_s:.2f} runs={runs}"
        f" sensor_tick_500_s={max(cold_s, warm_s):.1f}"
    )


if __name__ == "__main__":
    main()
