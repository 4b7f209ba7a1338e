"""Warehouse layout, atomic and idempotent writes, reads and quarantine, on a local folder and
on S3 (moto server on 127.0.0.1): every test here runs on both."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from aperiodic_assets.months import Month
from aperiodic_assets.universe import Instrument
from aperiodic_assets.warehouse import Warehouse

from .conftest import BTC_1H, month_table

ETH_1H = Instrument("binance-futures", "perpetual-ETH-USDT:USDT", "1h", "exchange")
JULY = Month(2026, 7)


@pytest.fixture
def warehouse(warehouse_url: str) -> Warehouse:
    return Warehouse(warehouse_url)


def read_parquet(warehouse: Warehouse, url: str) -> pa.Table:
    return pq.read_table(io.BytesIO(warehouse.fs.cat_file(url)))


def test_write_uses_the_hive_layout_and_reads_back(warehouse: Warehouse):
    table = month_table(BTC_1H, JULY)
    written = warehouse.write(BTC_1H, JULY, table)
    assert written.path.endswith(
        "l1_imbalance/exchange=binance-futures/symbol=perpetual-BTC-USDT:USDT/interval=1h"
        "/timestamp=exchange/year=2026/month=07/data.parquet"
    )
    assert written.rows == 31 * 24
    back = read_parquet(warehouse, written.path)
    assert back.equals(table)


def test_same_table_gives_identical_bytes_and_hash(warehouse: Warehouse):
    table = month_table(BTC_1H, JULY)
    first = warehouse.write(BTC_1H, JULY, table)
    bytes_1 = warehouse.read_bytes(BTC_1H, JULY)
    second = warehouse.write(BTC_1H, JULY, table)
    assert first.sha256 == second.sha256
    assert warehouse.read_bytes(BTC_1H, JULY) == bytes_1


def test_identity_columns_are_dropped_on_write(warehouse: Warehouse):
    table = month_table(BTC_1H, JULY)
    tagged = table.append_column("exchange", pa.array(["binance-futures"] * table.num_rows))
    warehouse.write(BTC_1H, JULY, tagged)
    assert read_parquet(warehouse, warehouse.uri(BTC_1H, JULY)).column_names == table.column_names


def test_write_leaves_no_temporary_files(warehouse: Warehouse):
    warehouse.write(BTC_1H, JULY, month_table(BTC_1H, JULY))
    folder = warehouse.uri(BTC_1H, JULY).rsplit("/", 1)[0]
    assert sorted(p.rsplit("/", 1)[1] for p in warehouse.fs.ls(folder)) == ["data.parquet"]


def test_read_selects_instruments_and_months_with_partition_columns(warehouse: Warehouse):
    for instrument in (BTC_1H, ETH_1H):
        for month in (Month(2026, 6), JULY):
            warehouse.write(instrument, month, month_table(instrument, month))
    table = warehouse.read([ETH_1H], [JULY])
    assert table.num_rows == 31 * 24
    assert set(table["symbol"].to_pylist()) == {"perpetual-ETH-USDT:USDT"}
    assert set(table["month"].to_pylist()) == {7}
    assert warehouse.read().num_rows == (30 + 31) * 24 * 2
    assert warehouse.partitions() == [
        (BTC_1H, Month(2026, 6)),
        (BTC_1H, JULY),
        (ETH_1H, Month(2026, 6)),
        (ETH_1H, JULY),
    ]


def test_whole_warehouse_reads_as_one_hive_dataset(warehouse: Warehouse):
    warehouse.write(BTC_1H, JULY, month_table(BTC_1H, JULY))
    warehouse.write(ETH_1H, JULY, month_table(ETH_1H, JULY))
    base = (warehouse.root / "l1_imbalance").path
    dataset = ds.dataset(base, filesystem=warehouse.fs, partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 2 * 31 * 24
    assert {"exchange", "symbol", "interval", "timestamp", "year", "month"} <= set(
        table.column_names
    )


def test_quarantine_keeps_raw_bytes_and_report(warehouse: Warehouse):
    url = warehouse.quarantine(BTC_1H, JULY, [("2026-07.parquet", b"raw")], {"error": "bad"})
    assert "/_quarantine/l1_imbalance/exchange=binance-futures/" in url
    assert warehouse.fs.cat_file(f"{url}/2026-07.parquet") == b"raw"
    assert json.loads(warehouse.fs.cat_file(f"{url}/report.json"))["error"] == "bad"
    assert not warehouse.exists(BTC_1H, JULY)


def test_a_relative_url_is_resolved_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Warehouse("warehouse").url == str(tmp_path / "warehouse")


def test_read_keeps_partition_columns_when_selecting_columns(warehouse: Warehouse):
    warehouse.write(BTC_1H, JULY, month_table(BTC_1H, JULY))
    table = warehouse.read(columns=["time", "imbalance_ratio"])
    assert table.column_names == [
        "time",
        "imbalance_ratio",
        "exchange",
        "symbol",
        "interval",
        "timestamp",
        "year",
        "month",
    ]


def test_an_empty_selection_reads_as_an_empty_table_with_every_column(warehouse: Warehouse):
    warehouse.write(BTC_1H, JULY, month_table(BTC_1H, JULY))
    table = warehouse.read([ETH_1H], [JULY])
    assert table.num_rows == 0
    assert table.schema.equals(warehouse.read([BTC_1H], [JULY]).schema)


def test_other_tables_use_the_same_layout_and_writer(warehouse: Warehouse):
    per_day = pa.table({"day_of_month": [1, 2], "rows": [24, 23]})
    per_month = pa.table({"exchange": ["binance-futures"], "symbol": ["x"], "rows": [47]})
    daily = warehouse.write(BTC_1H, JULY, per_day, table_name="example_daily")
    monthly = warehouse.write(None, JULY, per_month, table_name="example_monthly")
    chart = warehouse.write_file(None, JULY, "chart.png", b"png", table_name="example_monthly")
    assert daily.path == (
        f"{warehouse.url}/example_daily/exchange=binance-futures/symbol=perpetual-BTC-USDT:USDT"
        "/interval=1h/timestamp=exchange/year=2026/month=07/data.parquet"
    )
    assert monthly.path == f"{warehouse.url}/example_monthly/year=2026/month=07/data.parquet"
    assert chart == f"{warehouse.url}/example_monthly/year=2026/month=07/chart.png"
    assert warehouse.read_bytes(None, JULY, "example_monthly", "chart.png") == b"png"
    assert warehouse.partitions("example_daily") == [(BTC_1H, JULY)]
    assert warehouse.partitions() == []
    back = warehouse.read(table_name="example_monthly")
    # The instrument columns of a month-only table are its data, not its partitions.
    assert back.to_pylist() == [
        {"exchange": "binance-futures", "symbol": "x", "rows": 47, "year": 2026, "month": 7}
    ]
    assert warehouse.read([BTC_1H], [JULY], table_name="example_daily")["rows"].to_pylist() == [
        24,
        23,
    ]
