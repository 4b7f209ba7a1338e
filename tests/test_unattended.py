"""An unattended week: the real daemon, the sensor on, the clock moving day by day across a month
end, and the API misbehaving on chosen days. Nobody re-runs anything by hand.

Days are shrunk to seconds: the sandbox's clock and the package's (APERIODIC_NOW, a file the
test rewrites) move together; the sensor looks every few seconds; the client's retry waits are
short and a run waits at most 2 s in-line (APERIODIC_RUN_WAIT_MAX_S), so a 6 s Retry-After is
"long": the run fails that partition at once and the sensor must come back after the wait. The
daemon's backfill loop runs every 2 s instead of Dagster's fixed 30 s (patched in the daemon
process only). At the end the warehouse must hold every instrument through yesterday, the
downstream assets must have followed, each file set must have been materialized once, no run may
have waited longer than its cap and no tick longer than its budget.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from aperiodic_assets.assets.downstream import L1_IMBALANCE_DAILY
from aperiodic_assets.assets.l1_imbalance import L1_IMBALANCE, OUTCOME, RETRY_AFTER
from aperiodic_assets.automation import watched_months
from aperiodic_assets.months import Month
from aperiodic_assets.partitions import month_partitions, partition_key
from aperiodic_assets.sandbox import Sandbox, SandboxConfig
from aperiodic_assets.universe import Instrument

from .conftest import KEY
from .dagster_services import REPO_ROOT, DagsterServices, dagster_services

LOCATION = "unattended"
BTC = Instrument("binance-futures", "perpetual-BTC-USDT:USDT", "4h", "exchange")
ETH = Instrument("okx-perps", "perpetual-ETH-USDT:USDT", "4h", "exchange")
INSTRUMENTS = (BTC, ETH)
SENSOR_INTERVAL_S = 4
BUDGET_S = 5.0
RUN_WAIT_MAX_S = 2.0
#: The month that ends during the week: the last completed one of Dagster's partitions, so the
#: month after it (reached on the week's 5th day) is a partition whatever the real date.
ENDING = Month.parse(month_partitions.get_last_partition_key()).previous()
FIRST_DAY = ENDING.last_day - timedelta(days=3)
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(8)]
#: Patches the daemon's fixed 30 s loop interval (backfills, declarative automation) before it
#: starts, then runs the ordinary `dagster-daemon` command line.
FAST_DAEMON = (
    "import sys, dagster._daemon.controller as c; c.DEFAULT_DAEMON_INTERVAL_SECONDS = 2;"
    " from dagster._daemon.cli import main; sys.argv[0] = 'dagster-daemon'; sys.exit(main())"
)
START_SENSOR = """
mutation StartSensor($sensorSelector: SensorSelector!) {
  startSensor(sensorSelector: $sensorSelector) {
    __typename
    ... on Sensor { name }
    ... on PythonError { message }
  }
}
"""


@dataclass
class Week:
    services: DagsterServices
    sandbox: Sandbox
    clock_file: Path
    instance: dg.DagsterInstance
    landed_per_day: dict[date, int] = field(default_factory=dict)
    faults: dict[date, str] = field(default_factory=dict)

    def set_day(self, day: date) -> None:
        """Both clocks to 02:00 UTC of ``day``: files exist up to the day before."""
        self.sandbox.set_today(day)
        self.clock_file.write_text(datetime(day.year, day.month, day.day, 2).isoformat())

    def wait(self, what: str, probe: Callable[[], object], timeout: float = 150.0) -> None:
        self.services.wait_for(what, probe, timeout, poll_s=1.0)

    def materializations(self, asset: dg.AssetKey) -> list[dg.EventLogRecord]:
        return list(
            self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset), 10_000
            ).records
        )

    def latest(self, asset: dg.AssetKey, key: str) -> dg.EventLogRecord | None:
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[key]), limit=1
        ).records
        return records[0] if records else None

    def expected(self, day: date) -> dict[str, date]:
        """Every watched partition with published files, and the last day it must hold."""
        yesterday = day - timedelta(days=1)
        return {
            str(partition_key(i, m)): min(m.last_day, yesterday)
            for i in INSTRUMENTS
            for m in watched_months(Month.of(day), 2)
            if m.first_day <= yesterday
        }

    def up_to_date(self, day: date) -> bool:
        """The warehouse holds every watched partition through yesterday, and downstream
        followed each partition's latest materialization."""
        for key, through in self.expected(day).items():
            upstream = self.latest(L1_IMBALANCE, key)
            if upstream is None:
                return False
            if upstream.asset_materialization.metadata["through"].value != through.isoformat():
                return False
            downstream = self.latest(L1_IMBALANCE_DAILY, key)
            if downstream is None or downstream.timestamp < upstream.timestamp:
                return False
        return True

    def observations(self) -> list[dg.AssetObservation]:
        records = self.instance.fetch_observations(L1_IMBALANCE, limit=1000).records
        return [r.asset_observation for r in records if r.asset_observation is not None]

    def rejected(self, key: str) -> bool:
        """The partition's latest word is a rejection (no materialization after it)."""
        rejections = [
            o
            for o in self.instance.fetch_observations(
                dg.AssetRecordsFilter(asset_key=L1_IMBALANCE, asset_partitions=[key]), limit=1
            ).records
            if o.asset_observation.metadata[OUTCOME].value == "rejected"
        ]
        latest = self.latest(L1_IMBALANCE, key)
        return bool(rejections) and (latest is None or latest.timestamp < rejections[0].timestamp)

    def sensor_ticks(self) -> list:
        states = [s for s in self.instance.all_instigator_state() if s.name == "new_month_sensor"]
        (state,) = states
        return list(self.instance.get_ticks(state.instigator_origin_id, state.selector_id))


@pytest.fixture
def week(tmp_path: Path, monkeypatch) -> Iterator[Week]:
    home = tmp_path / "dagster_home"
    clock_file = tmp_path / "clock"
    universe = tmp_path / "universe.yaml"
    universe.write_text(
        yaml.safe_dump(
            {
                "start_month": "2024-01",
                "instruments": [
                    {"exchange": i.exchange, "symbol": i.symbol, "interval": i.interval}
                    for i in INSTRUMENTS
                ],
            }
        )
    )
    with Sandbox(SandboxConfig(api_key=KEY, today=DAYS[0])) as sandbox:
        env = {
            "APERIODIC_API_URL": sandbox.base_url,
            "APERIODIC_API_KEY": KEY,
            "WAREHOUSE_URL": str(tmp_path / "warehouse"),
            "APERIODIC_UNIVERSE": str(universe),
            "APERIODIC_NOW": f"@{clock_file}",
            "APERIODIC_SENSOR_INTERVAL_S": str(SENSOR_INTERVAL_S),
            "APERIODIC_SENSOR_BUDGET_S": str(BUDGET_S),
            "APERIODIC_RUN_WAIT_MAX_S": str(RUN_WAIT_MAX_S),
        }
        workspace = {
            "load_from": [
                {
                    "python_module": {
                        "module_name": "tests.unattended_location",
                        "location_name": LOCATION,
                        "working_directory": str(REPO_ROOT),
                    }
                }
            ]
        }
        monkeypatch.setenv("DAGSTER_HOME", str(home.resolve()))
        home.mkdir()
        clock_file.write_text(datetime(*DAYS[0].timetuple()[:3], 2).isoformat())
        with dagster_services(home, workspace=workspace, env=env, start_daemon=False) as services:
            services.daemon_argv = [
                sys.executable,
                "-c",
                FAST_DAEMON,
                *services.daemon_argv[1:],
            ]
            services.start_daemon()
            started = services.graphql(
                START_SENSOR,
                {
                    "sensorSelector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": "__repository__",
                        "sensorName": "new_month_sensor",
                    }
                },
            )["startSensor"]
            assert started["__typename"] == "Sensor", started
            with dg.DagsterInstance.get() as instance:
                week = Week(services, sandbox, clock_file, instance)
                week.set_day(DAYS[0])
                yield week


def test_an_unattended_week_heals_itself(week: Week):
    sandbox, started = week.sandbox, time.monotonic()
    week.wait("the first day's partitions", lambda: week.up_to_date(DAYS[0]), timeout=240)
    week.landed_per_day[DAYS[0]] = len(week.materializations(L1_IMBALANCE))

    for n, day in enumerate(DAYS[1:], start=1):
        before = len(week.materializations(L1_IMBALANCE))
        week.set_day(day)
        if n == 1:
            week.faults[day] = "429 Retry-After 6 s (over the 2 s run cap) on a download"
            # On the run's own listing of the month (the sensor lists from an older month).
            month = Month.of(day - timedelta(days=1))
            sandbox.inject("rate_limit", 1, exchange=BTC.exchange, month=month, seconds=6)
        elif n == 2:
            week.faults[day] = "API down (503 on every list and download) for 3 sensor intervals"
            sandbox.inject("status", -1, status=503)
            sandbox.inject("status_download", -1, status=503)
            time.sleep(3 * SENSOR_INTERVAL_S)
            sandbox.clear_faults()
        elif n == 3:
            week.faults[day] = "a stalled download (30 s of silence; read timeout 2 s)"
            sandbox.inject("stall", 1, target="download", seconds=30)
        elif n == 4:
            week.faults[day] = "a file rejected by validation, republished corrected later"
            month = Month.of(day - timedelta(days=1))
            sandbox.corrupt("broken_identity", ETH.exchange, ETH.symbol, month)
            bad = str(partition_key(ETH, month))
            week.wait("the corrupted month's rejection", lambda k=bad: week.rejected(k))
            seen = len(week.sensor_ticks())
            week.wait("two more sensor ticks", lambda n=seen: len(week.sensor_ticks()) >= n + 2)
            assert week.rejected(bad), "not requested again while its files are unchanged"
            sandbox.clear_corruption()
            sandbox.republish(ETH.exchange, ETH.symbol, month, revision=1)
        week.wait(f"day {n} ({day}) through yesterday", lambda d=day: week.up_to_date(d))
        week.landed_per_day[day] = len(week.materializations(L1_IMBALANCE)) - before
        print(f"{day}: settled after {time.monotonic() - started:.0f}s", flush=True)

    # What the week did.
    records = week.materializations(L1_IMBALANCE)
    identities = Counter(
        (r.asset_materialization.partition, r.asset_materialization.metadata[k].value)
        for r in records
        for k in ["source_files_identity"]
    )
    observations = week.observations()
    failed = [o for o in observations if o.metadata[OUTCOME].value == "failed"]
    rejected = [o for o in observations if o.metadata[OUTCOME].value == "rejected"]
    waits = _run_waits(week.instance)
    ticks = week.sensor_ticks()
    tick_seconds = [t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp]
    requests_per_partition = _requested_partitions(week.instance)
    again = {k: n for k, n in requests_per_partition.items() if n > 1}

    print(
        f"\nunattended week: {len(DAYS)} days {DAYS[0]}..{DAYS[-1]} in {time.monotonic() - started:.0f}s"
    )
    for day in DAYS:
        print(
            f"  {day}: {week.landed_per_day[day]} partitions landed; fault: {week.faults.get(day, '-')}"
        )
    print(
        f"  failed attempts {len(failed)} (with Retry-After:"
        f" {sorted({o.metadata[RETRY_AFTER].value for o in failed if RETRY_AFTER in o.metadata})}),"
        f" rejections {len(rejected)}, partitions requested more than once: {len(again)}"
    )
    print(f"  longest in-run wait {max(waits, default=0.0):.1f}s (cap {RUN_WAIT_MAX_S:g}s)")
    print(f"  sensor ticks {len(ticks)}, longest {max(tick_seconds):.1f}s (budget {BUDGET_S:g}s)")

    assert week.up_to_date(DAYS[-1])
    twice = {k: n for k, n in identities.items() if n > 1}
    assert not twice, f"file sets materialized more than once: {twice}; requests: {again}"
    assert any(RETRY_AFTER in o.metadata and o.metadata[RETRY_AFTER].value == 6 for o in failed)
    assert len(rejected) >= 1
    assert max(waits, default=0.0) <= RUN_WAIT_MAX_S
    assert max(tick_seconds) < BUDGET_S + 5.0, "a tick outlived its budget"
    assert again, "failed partitions were requested again by the sensor"


def _run_waits(instance: dg.DagsterInstance) -> list[float]:
    """Every in-run wait the asset logged ("Trying this partition again in Xs")."""
    waits = []
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            message = entry.user_message or ""
            if "Trying this partition again in " in message:
                waits.append(float(message.split("again in ")[1].split("s")[0]))
            if "Retrying this partition in " in message:
                waits.append(float(message.split("partition in ")[1].split("s")[0]))
    return waits


def _requested_partitions(instance: dg.DagsterInstance) -> dict[str, int]:
    """How often the sensor's backfills asked for each partition."""
    counts: dict[str, int] = defaultdict(int)
    for backfill in instance.get_backfills():
        if backfill.tags.get("aperiodic/trigger") != "new_month_sensor":
            continue
        subset = backfill.asset_backfill_data.target_subset
        for asset_partition in subset.iterate_asset_partitions():
            if asset_partition.asset_key == L1_IMBALANCE:
                counts[str(asset_partition.partition_key)] += 1
    return counts
