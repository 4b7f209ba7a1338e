"""Shared fixtures: an in-process sandbox API on 127.0.0.1, a temporary warehouse and instance."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime

import dagster as dg
import pyarrow as pa
import pytest

from aperiodic_assets.core.api import AperiodicClient, RetryConfig
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.warehouse import Warehouse
from aperiodic_assets.defs._dagster_internals import PLANNED_SUBSET_ENV
from aperiodic_assets.defs.resources import AperiodicResource, RetrySettings, WarehouseResource
from aperiodic_assets.sandbox import Sandbox, SandboxConfig
from aperiodic_assets.sandbox.data import generate

# Runs are created as the package's deployments create them (docs/deploy.md).
os.environ.update(PLANNED_SUBSET_ENV)

#: The instant `make test-dates` runs the date-sensitive tests at (APERIODIC_TEST_NOW, ISO, UTC),
#: the process clock set to it by faketime; None in the normal suite.
TEST_NOW = (
    datetime.fromisoformat(os.environ["APERIODIC_TEST_NOW"]).replace(tzinfo=UTC)
    if os.environ.get("APERIODIC_TEST_NOW")
    else None
)
#: The sandbox clock in tests: files exist up to the day before.
TODAY = TEST_NOW.date() if TEST_NOW else date(2026, 11, 25)
KEY = "sandbox"
BTC_1H = Instrument("binance-futures", "perpetual-BTC-USDT:USDT", "1h", "exchange")
#: Retries that do not sleep for real: the fault matrix runs in seconds.
FAST_RETRY = RetryConfig(
    max_attempts=4,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    jitter_s=0.01,
    retry_after_max_s=0.2,
    budget_s=20.0,
    connect_timeout_s=2.0,
    read_timeout_s=2.0,
)


def month_table(instrument: Instrument, month: Month) -> pa.Table:
    """The sandbox's data for one whole month of one instrument, as the generator makes it."""
    return generate(
        instrument.exchange,
        instrument.symbol,
        instrument.interval,
        instrument.timestamp,
        month.first_day,
        month.next().first_day,
    )


def materialize_partition(
    resources: dict,
    instance: dg.DagsterInstance,
    instrument: Instrument,
    month: Month,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """One partition of the l1_imbalance asset, as a single-partition run does it."""
    from aperiodic_assets.defs.partitions import partition_key

    from .deployed import l1_imbalance

    return dg.materialize(
        [l1_imbalance],
        partition_key=partition_key(instrument, month),
        resources=resources,
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first (``slow(seconds=...)``), each module's tests together: `make
    test` hands whole modules to its workers (``--dist loadscope``) in this order, so each
    worker takes the next longest module when it is free and no worker ends the run alone
    with a daemon test it started last."""
    items.sort(key=lambda item: -_module_seconds(item))


def _module_seconds(item: pytest.Item) -> float:
    mark = item.get_closest_marker("slow")
    return float(mark.kwargs.get("seconds", 0)) if mark is not None else 0.0


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(api_key=KEY, today=TODAY)) as sb:
        yield sb


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[AperiodicClient]:
    c = AperiodicClient(sandbox.base_url, KEY, retry=FAST_RETRY)
    yield c
    c.close()


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse")


@pytest.fixture
def instance(tmp_path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def resources(sandbox: Sandbox, warehouse: Warehouse) -> dict:
    return {
        "aperiodic": AperiodicResource(
            api_url=sandbox.base_url, api_key=KEY, retry=RetrySettings(**asdict(FAST_RETRY))
        ),
        "warehouse": WarehouseResource(url=warehouse.url),
    }


# S3 on a local moto server, and `warehouse_url` (local and s3) for the warehouse suites.
from .s3_server import s3_endpoint, s3_env, warehouse_url  # noqa: E402, F401
