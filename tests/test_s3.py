"""The warehouse through Dagster, on a local folder and on S3 (moto server on 127.0.0.1).

Every test runs against both storages (``warehouse_url``): the hive layout of materialized
partitions as other engines see it, idempotent re-materialization, and writers killed with
SIGKILL in the middle of a write.
"""

from __future__ import annotations

import glob
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pytest
from dagster_aws.s3 import S3Resource

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.warehouse import Warehouse
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.defs.resources import AperiodicResource, WarehouseResource

from .conftest import BTC_1H, KEY, month_table
from .deployed import l1_imbalance
from .s3_server import BUCKET, REGION

ROOT = Path(__file__).resolve().parents[1]
ETH_1H = Instrument("binance-futures", "perpetual-ETH-USDT:USDT", "1h", "exchange")
JULY = Month(2026, 7)
#: Rows of the killed writer's table: ~130 MB of Parquet, above s3fs's 100 MiB multipart limit.
BIG_ROWS = 1_600_000
WRITER = """
import sys
import numpy as np
import pyarrow as pa
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.schema import METRIC_COLUMNS, TIME
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.warehouse import Warehouse

url, key, month, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
random = np.random.default_rng(7)
times = pa.array(np.arange(rows, dtype="int64") * 60_000_000, pa.timestamp("us"))
table = pa.table({TIME: times, **{c: random.random(rows) for c in METRIC_COLUMNS}})
warehouse = Warehouse(url)
print("ready", flush=True)
warehouse.write(Instrument.from_key(key), Month.parse(month), table)
print("written", flush=True)
"""


@pytest.fixture
def warehouse(warehouse_url: str) -> Warehouse:
    return Warehouse(warehouse_url)


def materialize(
    instrument: Instrument, month: Month, resources: dict, instance: dg.DagsterInstance
) -> dg.AssetMaterialization:
    result = dg.materialize(
        [l1_imbalance],
        partition_key=partition_key(instrument, month),
        resources=resources,
        instance=instance,
    )
    (event,) = result.get_asset_materialization_events()
    return event.step_materialization_data.materialization


def test_materialized_partitions_have_the_hive_layout(warehouse, resources, instance):
    mats = [materialize(i, JULY, resources, instance) for i in (BTC_1H, ETH_1H)]
    base = warehouse.root.path
    keys = sorted(p.removeprefix(f"{base}/") for p in warehouse.fs.find(base))
    assert keys == [
        "l1_imbalance/exchange=binance-futures/symbol=perpetual-BTC-USDT:USDT/interval=1h"
        "/timestamp=exchange/year=2026/month=07/data.parquet",
        "l1_imbalance/exchange=binance-futures/symbol=perpetual-ETH-USDT:USDT/interval=1h"
        "/timestamp=exchange/year=2026/month=07/data.parquet",
    ]
    for mat, key in zip(mats, keys, strict=True):
        assert mat.metadata["path"].value == f"{warehouse.url}/{key}"
        data = warehouse.fs.cat_file(f"{base}/{key}")
        assert mat.tags["dagster/data_version"] == hashlib.sha256(data).hexdigest()

    table = ds.dataset(
        f"{base}/l1_imbalance", filesystem=warehouse.fs, partitioning="hive"
    ).to_table()
    assert table.num_rows == 2 * 31 * 24 == sum(m.metadata["rows"].value for m in mats)
    assert set(table["symbol"].to_pylist()) == {BTC_1H.symbol, ETH_1H.symbol}
    assert set(table["year"].to_pylist()) == {2026}
    assert set(table["month"].to_pylist()) == {7}
    assert warehouse.partitions() == [(BTC_1H, JULY), (ETH_1H, JULY)]
    ours = warehouse.read()
    assert ours.num_rows == table.num_rows
    assert sorted(ours.column_names) == sorted(table.column_names)


def test_rematerializing_identical_input_gives_identical_bytes_and_data_version(
    warehouse, resources, instance
):
    first = materialize(BTC_1H, JULY, resources, instance)
    stored = warehouse.read_bytes(BTC_1H, JULY)
    second = materialize(BTC_1H, JULY, resources, instance)
    assert warehouse.read_bytes(BTC_1H, JULY) == stored
    assert second.tags["dagster/data_version"] == first.tags["dagster/data_version"]
    assert first.tags["dagster/data_version"] == hashlib.sha256(stored).hexdigest()


def test_a_killed_writer_leaves_no_partition_and_then_the_previous_version(warehouse):
    _kill_mid_write(warehouse)
    assert not warehouse.exists(BTC_1H, JULY)
    assert warehouse.partitions() == []

    previous = warehouse.write(BTC_1H, JULY, month_table(BTC_1H, JULY))
    stored = warehouse.read_bytes(BTC_1H, JULY)
    _kill_mid_write(warehouse)
    assert warehouse.read_bytes(BTC_1H, JULY) == stored
    assert hashlib.sha256(stored).hexdigest() == previous.sha256
    assert warehouse.read().num_rows == previous.rows
    # What the killed writers leave behind: a hidden temporary file each (local), an incomplete
    # multipart upload each (S3; a bucket lifecycle rule removes those). No reader sees them.
    assert len(_pending_writes(warehouse)) == 2


def test_the_shared_s3_resource_configures_the_warehouse(s3_env, monkeypatch, sandbox, instance):
    # Only the S3Resource knows the endpoint now.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    s3 = S3Resource(endpoint_url=s3_env, region_name=REGION)
    resource = WarehouseResource(url=f"s3://{BUCKET}/shared-resource-{uuid.uuid4().hex}", s3=s3)
    aperiodic = AperiodicResource(api_url=sandbox.base_url, api_key=KEY)
    mat = materialize(BTC_1H, JULY, {"aperiodic": aperiodic, "warehouse": resource}, instance)
    warehouse = resource.get_warehouse()
    assert warehouse.fs.endpoint_url == s3_env
    assert mat.metadata["path"].value == warehouse.uri(BTC_1H, JULY)
    assert warehouse.read([BTC_1H], [JULY]).num_rows == 31 * 24


def _pending_writes(warehouse: Warehouse) -> set[str]:
    """Writes of the BTC_1H July partition not swapped in: temporary files, or S3 upload ids."""
    target = f"{warehouse.root.path}/{warehouse.relative_dir(BTC_1H, JULY)}/data.parquet"
    if warehouse.is_local:
        folder, name = target.rsplit("/", 1)
        return set(glob.glob(f"{folder}/.{name}.*.tmp"))
    bucket, key = target.split("/", 1)
    uploads = warehouse.fs.list_multipart_uploads(bucket)
    return {u["UploadId"] for u in uploads if u["Key"] == key}


def _kill_mid_write(warehouse: Warehouse) -> None:
    """Start a writer process of a big BTC_1H July partition; SIGKILL it while it writes."""
    before = _pending_writes(warehouse)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, warehouse.url, BTC_1H.key, JULY.key, str(BIG_ROWS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not (started := _pending_writes(warehouse) - before):
            assert child.poll() is None, "the writer finished before it could be interrupted"
            assert time.monotonic() < deadline, "the write never started"
            time.sleep(0.002)
        # Freeze it first: once stopped, it provably has not swapped the file in yet.
        child.send_signal(signal.SIGSTOP)
        os.waitpid(child.pid, os.WUNTRACED)
        assert started <= _pending_writes(warehouse)
        child.kill()
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
