"""A running deployment whose days pass in seconds: the harness of the unattended-week test and the
recovery benchmark.

The sandbox's clock and the package's (APERIODIC_NOW, a file rewritten as days pass) move
together; the code location is tests/unattended_location.py (the package's own definitions with
short client retries and a fast automation-condition sensor); the new-month sensor is started;
the daemon's backfill and automation loops run every 1 s instead of Dagster's fixed 30 s
(patched in the daemon process only).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import yaml

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.defs.assets.downstream import L1_IMBALANCE_DAILY
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE, OUTCOME
from aperiodic_assets.defs.automation import watched_months
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.sandbox import Sandbox, SandboxConfig

from .dagster_services import REPO_ROOT, DagsterServices, dagster_services

KEY = "sandbox"
LOCATION = "unattended"
#: Patches the daemon's fixed 30 s loop interval (backfills, declarative automation) before it
#: starts, then runs the ordinary `dagster-daemon` command line.
FAST_DAEMON = (
    "import sys, dagster._daemon.controller as c; c.DEFAULT_DAEMON_INTERVAL_SECONDS = 1;"
    " from dagster._daemon.cli import main; sys.argv[0] = 'dagster-daemon'; sys.exit(main())"
)


@dataclass
class Week:
    services: DagsterServices
    sandbox: Sandbox
    clock_file: Path
    instance: dg.DagsterInstance
    instruments: Sequence[Instrument]
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
            for i in self.instruments
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

    def sensor_ticks(self, name: str = "new_month_sensor") -> list:
        states = [s for s in self.instance.all_instigator_state() if s.name == name]
        (state,) = states
        return list(self.instance.get_ticks(state.instigator_origin_id, state.selector_id))


@contextmanager
def running_week(
    tmp_path: Path,
    first_day: date,
    instruments: Sequence[Instrument],
    env: dict[str, str],
    universe_file: dict | None = None,
    sandbox_config: dict | None = None,
    module: str = "tests.unattended_location",
) -> Iterator[Week]:
    """The deployment on ``tmp_path`` at ``first_day``, the sensor on; ``env`` adds settings
    (sensor interval, budget, in-run wait cap); ``universe_file`` replaces the universe of
    ``instruments`` (discover rules), ``sandbox_config`` adds SandboxConfig fields, ``module``
    is the code location."""
    home = (tmp_path / "dagster_home").resolve()
    clock_file = tmp_path / "clock"
    universe = tmp_path / "universe.yaml"
    universe.write_text(
        yaml.safe_dump(
            universe_file
            or {
                "start_month": "2024-01",
                "instruments": [
                    {"exchange": i.exchange, "symbol": i.symbol, "interval": i.interval}
                    for i in instruments
                ],
            }
        )
    )
    config = SandboxConfig(api_key=KEY, today=first_day, **(sandbox_config or {}))
    with Sandbox(config) as sandbox:
        full_env = {
            "APERIODIC_API_URL": sandbox.base_url,
            "APERIODIC_API_KEY": KEY,
            "WAREHOUSE_URL": str(tmp_path / "warehouse"),
            "APERIODIC_UNIVERSE": str(universe),
            "APERIODIC_NOW": f"@{clock_file}",
            **env,
        }
        workspace = {
            "load_from": [
                {
                    "python_module": {
                        "module_name": module,
                        "location_name": LOCATION,
                        "working_directory": str(REPO_ROOT),
                    }
                }
            ]
        }
        home.mkdir(parents=True)
        clock_file.write_text(datetime(*first_day.timetuple()[:3], 2).isoformat())
        with dagster_services(
            home, workspace=workspace, env=full_env, start_daemon=False
        ) as services:
            services.daemon_argv = [sys.executable, "-c", FAST_DAEMON, *services.daemon_argv[1:]]
            services.start_daemon()
            services.start_sensor(LOCATION, "new_month_sensor")
            # The instance config names its folder through DAGSTER_HOME, as the services see it.
            previous = os.environ.get("DAGSTER_HOME")
            os.environ["DAGSTER_HOME"] = str(home)
            try:
                with dg.DagsterInstance.from_config(str(home)) as instance:
                    yield Week(services, sandbox, clock_file, instance, instruments)
            finally:
                if previous is None:
                    del os.environ["DAGSTER_HOME"]
                else:
                    os.environ["DAGSTER_HOME"] = previous
