"""The universe sensor on a real instance against the sandbox's symbol lists: discovered
instruments join the dynamic dimension, a listing joins on the next tick, a delisting closes the
instrument (its last month lands whole with the warning, the next is never requested), a
relisting reopens it; the new-month sensor and the schedule follow the lives."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from aperiodic_assets.core.lifecycle import LEFT_LIST, read_lives
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.defs._dagster_internals import backfill_subset_keys
from aperiodic_assets.defs.component import AperiodicL1Imbalance
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.defs.resources import AperiodicResource, RetrySettings, WarehouseResource
from aperiodic_assets.defs.universe_sensor import LIFE
from aperiodic_assets.sandbox import Sandbox, SandboxConfig

from .conftest import FAST_RETRY, KEY
from .dagster_services import REPO_ROOT

pytestmark = pytest.mark.slow(seconds=40)

#: A fixed sandbox clock: the suite passes whatever today is.
TODAY = date(2026, 11, 25)
PER_EXCHANGE = 12
EXCHANGES = ["binance-futures", "okx-perps"]
NEW = "perpetual-NEWCOIN-USDT:USDT"


class World:
    """A sandbox, a discovering deployment over it, an instance, and the sensors' ticks."""

    def __init__(self, sandbox: Sandbox, tmp_path, instance: dg.DagsterInstance) -> None:
        self.sandbox = sandbox
        self.warehouse_url = str(tmp_path / "warehouse")
        self.build()
        self.resources = {
            "aperiodic": AperiodicResource(
                api_url=sandbox.base_url, api_key=KEY, retry=RetrySettings(**asdict(FAST_RETRY))
            ),
            "warehouse": WarehouseResource(url=self.warehouse_url),
        }
        self.instance = instance
        self.cursor: str | None = None

    def build(self, **attributes: object) -> None:
        """The deployment, with component ``attributes`` beside the discovering universe."""
        component = AperiodicL1Imbalance(
            universe={
                "start_month": "2026-09",
                "discover": [{"exchanges": EXCHANGES, "intervals": ["1d"]}],
            },
            warehouse_url=self.warehouse_url,
            api_url=self.sandbox.base_url,
            downstream=False,
            **attributes,
        )
        self.deployment = component.deployment()
        self.defs = component.build(self.deployment)
        self.partitions = self.deployment.partitions

    def universe_tick(self) -> dg.SensorResult:
        """One universe tick, its dynamic partition requests applied as the daemon would."""
        sensor = self.defs.get_unresolved_sensor_def("universe_sensor")
        with dg.build_sensor_context(instance=self.instance, resources=self.resources) as context:
            result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, request.partition_keys
            )
        return result

    def requested(self) -> list[str]:
        sensor = self.defs.get_unresolved_sensor_def("new_month_sensor")
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        ) as context:
            result = sensor(context)
        if isinstance(result, dg.SkipReason):
            return []
        self.cursor = result.cursor
        return sorted(k for r in result.run_requests or [] for k in backfill_subset_keys(r))

    def instruments(self) -> set[str]:
        return set(self.instance.get_dynamic_partitions(self.partitions.dynamic_name))

    def materialize(self, key: str) -> dg.AssetMaterialization:
        assets = self.defs.get_assets_def(self.deployment.l1_key)
        result = dg.materialize(
            [assets], partition_key=key, resources=self.resources, instance=self.instance
        )
        assert result.success
        (event,) = result.asset_materializations_for_node(assets.node_def.name)
        return event


@pytest.fixture
def world(tmp_path, monkeypatch, instance):
    monkeypatch.setenv("APERIODIC_NOW", f"{TODAY}T12:00:00")
    config = SandboxConfig(api_key=KEY, today=TODAY, symbols_per_exchange=PER_EXCHANGE)
    with Sandbox(config) as sandbox:
        yield World(sandbox, tmp_path, instance)


def instrument(exchange: str, symbol: str) -> Instrument:
    return Instrument(exchange, symbol, "1d")


def test_the_first_tick_adds_every_listed_symbol_and_records_its_first_month(world):
    result = world.universe_tick()
    keys = world.instruments()
    assert len(keys) == PER_EXCHANGE * len(EXCHANGES)
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == "aperiodic_instruments"
    lives = read_lives(world.resources["warehouse"].get_warehouse())
    assert set(lives.by_key) == keys
    assert all(
        life.open and life.last_day == TODAY - timedelta(days=1) for life in lives.by_key.values()
    )
    # Nothing changed: the next tick adds nothing and says so.
    again = world.universe_tick()
    assert not again.dynamic_partitions_requests and again.skip_reason


def test_the_new_month_sensor_requests_the_watched_months_of_every_discovered_instrument(world):
    world.universe_tick()
    requested = world.requested()
    current, last = Month.of(TODAY), Month.of(TODAY).previous()
    assert len(requested) == len(world.instruments()) * 3
    assert {world.partitions.parse(k)[1] for k in requested} == {last.previous(), last, current}


def test_a_listing_joins_on_the_next_tick_from_its_first_month(world):
    world.universe_tick()
    world.sandbox.list_symbol("okx-perps", NEW, "2026-11-10")
    result = world.universe_tick()
    new = instrument("okx-perps", NEW)
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [[new.key]]
    life = read_lives(world.resources["warehouse"].get_warehouse()).get(new.key)
    assert life.first_day == date(2026, 11, 10)
    requested = [k for k in world.requested() if new.key in k]
    assert requested == [str(partition_key(new, Month(2026, 11)))], "no month before its first"


def test_a_delisting_closes_the_instrument_its_last_month_lands_whole_with_a_warning(world):
    world.universe_tick()
    lives = read_lives(world.resources["warehouse"].get_warehouse())
    gone = Instrument.from_key(sorted(k for k in lives.by_key if "binance-futures" in k)[0])
    world.sandbox.delist_symbol(gone.exchange, gone.symbol, "2026-11-15")
    result = world.universe_tick()
    (event,) = result.asset_events
    assert event.partition == str(partition_key(gone, Month(2026, 11)))
    assert event.metadata[LIFE].value == "closed"
    assert event.metadata["closed_since"].value == "2026-11-15"
    life = read_lives(world.resources["warehouse"].get_warehouse()).get(gone.key)
    assert life.closed_since == date(2026, 11, 15) and life.reason == LEFT_LIST
    assert gone.key in world.instruments(), "a closed instrument keeps its partitions and history"

    landed = world.materialize(str(partition_key(gone, Month(2026, 11))))
    metadata = {k: v.value for k, v in landed.metadata.items()}
    assert metadata["closed_since"] == "2026-11-15"
    assert metadata["warnings"].startswith(
        "instrument closed since 2026-11-15, last data 2026-11-14; completeness:"
    )
    assert "largest [2026-11-15T00:00:00" in metadata["warnings"], "the gap starts there"
    # The month is as whole as it will ever be: the schedule does not ask for it again.
    assert metadata["through"] == "2026-11-30"
    print("closed month's warnings:", metadata["warnings"])

    # The next month is never requested, by the sensor or the schedule.
    world.sandbox.set_today(date(2026, 12, 5))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APERIODIC_NOW", "2026-12-05T12:00:00")
        requested = world.requested()
        assert not [k for k in requested if gone.key in k and "2026-12" in k]
        schedule = world.defs.get_unresolved_schedule_def("monthly_schedule")
        with dg.build_schedule_context(
            instance=world.instance,
            scheduled_execution_time=datetime(2027, 1, 1, 6, tzinfo=UTC),
            resources=world.resources,
        ) as context:
            runs = list(schedule(context))
        covered = {
            key
            for run in runs
            for key in world.partitions.l1.get_partition_keys_in_range(
                dg.PartitionKeyRange(
                    run.tags["dagster/asset_partition_range_start"],
                    run.tags["dagster/asset_partition_range_end"],
                ),
                dynamic_partitions_store=world.instance,
            )
        }
        assert covered and not any(gone.key in k for k in covered)


def test_a_relisting_reopens_the_instrument(world):
    world.universe_tick()
    lives = read_lives(world.resources["warehouse"].get_warehouse())
    back = Instrument.from_key(sorted(k for k in lives.by_key if "okx-perps" in k)[0])
    world.sandbox.delist_symbol(back.exchange, back.symbol, "2026-11-20")
    world.universe_tick()
    world.sandbox.list_symbol(back.exchange, back.symbol, "2026-11-22")
    result = world.universe_tick()
    (event,) = result.asset_events
    assert event.metadata[LIFE].value == "reopened"
    assert read_lives(world.resources["warehouse"].get_warehouse()).get(back.key).open


def test_on_a_fresh_instance_one_sync_lets_the_cli_materialize_a_discovered_instrument(
    tmp_path, sandbox
):
    """No daemon yet: `python -m aperiodic_assets.tools.universe` runs the universe sensor once
    and `dagster asset materialize` then finds the instrument's partition."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    universe = tmp_path / "universe.yaml"
    universe.write_text(
        'start_month: "2026-09"\n'
        "discover:\n"
        "  - exchanges: [hyperliquid-perps]\n"
        "    intervals: [1d]\n"
        "    include: ['*-BTC-*', '*XYZ:TSLA*']\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "APERIODIC_UNIVERSE": str(universe),
        "APERIODIC_API_URL": sandbox.base_url,
        "APERIODIC_API_KEY": KEY,
        "WAREHOUSE_URL": str(tmp_path / "warehouse"),
        "APERIODIC_NOW": f"{TODAY}T12:00:00",
    }

    def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, check=check, cwd=REPO_ROOT
        )

    sync = [sys.executable, "-m", "aperiodic_assets.tools.universe"]
    assert "2 instrument(s) added; the instrument dimension holds 2" in run(*sync).stdout
    tsla = Instrument("hyperliquid-perps", "perpetual-XYZ:TSLA-USDC:USDC", "1d")
    dagster = str(Path(sys.executable).parent / "dagster")
    done = run(
        *(dagster, "asset", "materialize", "-m", "aperiodic_assets.definitions"),
        *("--select", "aperiodic/l1_imbalance", "--partition", f"{tsla.key}|2026-10"),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "warehouse" / "l1_imbalance" / "exchange=hyperliquid-perps").is_dir()
    assert "0 instrument(s) added; the instrument dimension holds 2" in run(*sync).stdout


@pytest.mark.parametrize(
    "fault",
    [
        {"fault": "rate_limit", "target": "list", "seconds": 20},
        {"fault": "stall", "target": "list", "seconds": 30.0},
    ],
    ids=["retry-after-20s", "stalled-listing"],
)
def test_a_tick_ends_within_its_budget_and_the_next_one_catches_up(world, fault):
    """With the production retry settings, a throttled or stalled file listing cannot hold a
    universe tick past its budget; nothing is added from half an answer, and once the API is
    back the next tick adds every instrument."""
    budget = 3.0
    world.build(universe_sensor={"budget_s": budget})
    # The production retry settings: waits up to 60 s in-line, 300 s per call.
    world.resources["aperiodic"] = AperiodicResource(api_url=world.sandbox.base_url, api_key=KEY)
    world.sandbox.inject(count=-1, **fault)
    started = time.monotonic()
    result = world.universe_tick()
    elapsed = time.monotonic() - started
    assert elapsed < budget + 2.0, f"the tick took {elapsed:.1f}s"
    assert not result.dynamic_partitions_requests and world.instruments() == set()
    world.sandbox.clear_faults()
    world.universe_tick()
    assert len(world.instruments()) == PER_EXCHANGE * len(EXCHANGES)
