"""The l1_imbalance asset materialized through Dagster, one partition at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import aperiodic
import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.warehouse import Warehouse
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE
from aperiodic_assets.defs.assets.reporting import ROW_COUNT

from .conftest import BTC_1H, KEY, materialize_partition

ROOT = Path(__file__).resolve().parents[1]


def materialize(
    instrument: Instrument, month: Month, resources, instance
) -> dg.ExecuteInProcessResult:
    return materialize_partition(resources, instance, instrument, month)


def materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    events = result.get_asset_materialization_events()
    assert len(events) == 1
    return events[0].step_materialization_data.materialization


def test_one_partition_lands_in_the_warehouse_with_metadata(resources, instance, warehouse):
    result = materialize(BTC_1H, Month(2026, 7), resources, instance)
    assert result.success
    mat = materialization(result)
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta[ROW_COUNT] == 31 * 24
    assert meta["first_time"] == "2026-07-01 00:00:00"
    assert meta["last_time"] == "2026-07-31 23:00:00"
    assert meta["source_files"] == 1
    assert meta["path"] == warehouse.uri(BTC_1H, Month(2026, 7))
    assert pq.read_table(meta["path"]).num_rows == 31 * 24
    assert mat.tags["dagster/data_version"] == meta["sha256"]


def test_rematerializing_gives_identical_bytes_and_data_version(resources, instance, warehouse):
    first = materialization(materialize(BTC_1H, Month(2026, 9), resources, instance))
    bytes_1 = warehouse.read_bytes(BTC_1H, Month(2026, 9))
    second = materialization(materialize(BTC_1H, Month(2026, 9), resources, instance))
    assert warehouse.read_bytes(BTC_1H, Month(2026, 9)) == bytes_1
    assert first.tags["dagster/data_version"] == second.tags["dagster/data_version"]
    record = instance.get_latest_materialization_event(L1_IMBALANCE)
    assert record is not None


def test_a_month_not_yet_published_materializes_nothing(sandbox, resources, instance, warehouse):
    sandbox.set_today(date(2026, 10, 1))  # October's first file appears on the 2nd
    result = materialize(BTC_1H, Month(2026, 10), resources, instance)
    assert result.success
    assert result.get_asset_materialization_events() == []
    assert warehouse.partitions() == []


@pytest.mark.parametrize(
    ("month", "daily_from"),
    [
        (Month(2026, 7), date(2026, 8, 1)),
        (Month(2026, 8), date(2026, 8, 11)),  # a monthly file for the 1st-10th, then days
        (Month(2026, 9), date(2026, 8, 1)),
    ],
    ids=["monthly", "mixed", "daily"],
)
def test_official_client_returns_exactly_the_rows_we_write(
    month: Month, daily_from: date, sandbox, resources, instance, warehouse: Warehouse
):
    sandbox.set_daily_from(daily_from)
    assert materialize(BTC_1H, month, resources, instance).success
    ours = pq.read_table(warehouse.uri(BTC_1H, month)).to_pandas()
    theirs = aperiodic.get_metrics(
        api_key=KEY,
        metric="l1_imbalance",
        **BTC_1H.query,
        start_date=month.first_day,
        end_date=month.last_day,
        base_url=sandbox.base_url,
        output="pandas",
        show_progress=False,
    )
    pd.testing.assert_frame_equal(ours, theirs[ours.columns.tolist()], check_dtype=False)
    assert list(theirs.columns) == list(ours.columns)
    assert len(ours) == month.last_day.day * 24


def test_definitions_validate_through_the_dagster_cli(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All code locations passed validation" in result.stderr + result.stdout
