"""Warehouse layout, atomic and idempotent writes, reads and quarantine (local folder)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from aperiodic_assets.months import Month
from aperiodic_assets.sandbox.data import generate
from aperiodic_assets.universe import Instrument
from aperiodic_assets.warehouse import Warehouse

from .conftest import BTC_1H

ETH_1H = Instrument("binance-futures", "perpetual-ETH-USDT:USDT", "1h", "exchange")
JULY = Month(2026, 7)


def month_table(instrument: Instrument, month: Month) -> pa.Table:
    return generate(
        instrument.exchange,
        instrument.symbol,
        instrument.interval,
        instrument.timestamp,
        month.first_day,
        month.next().first_day,
    )


def test_write_uses_the_hive_layout_and_reads_back(warehouse: Warehouse):
    table = month_table(BTC_1H, JULY)
    written = warehouse.write(BTC_1H, JULY, table)
    assert written.path.endswith(
        "l1_imbalance/exchange=binance-futures/symbol=perpetual-BTC-USDT:USDT/interval=1h"
        "/timestamp=exchange/year=2026/month=07/data.parquet"
    )
    assert written.rows == 31 * 24
    back = pq.read_table(written.path)
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
    assert pq.read_table(warehouse.uri(BTC_1H, JULY)).column_names == table.column_names


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
    dataset = ds.dataset(f"{warehouse.url}/l1_imbalance", partitioning="hive")
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
