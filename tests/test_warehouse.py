"""Warehouse layout, atomic and idempotent writes, reads and quarantine, on a local folder and
on S3 (moto server on 127.0.0.1): every test here runs on both."""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.schema import METRIC_COLUMNS, SCHEMA
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.warehouse import Warehouse

from .conftest import BTC_1H, month_table

ONE_NS = pa.scalar(1, pa.duration("ns"))
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


# --- strict: one canonical form whatever comes in ----------------------------------------------


def reshaped(table: pa.Table) -> pa.Table:
    """The same rows in another shape: shuffled, ns UTC-aware time, float32-exact metrics as
    float32, columns reordered, an identity and an extra column."""
    order = np.random.default_rng(3).permutation(table.num_rows)
    shuffled = table.take(order)
    columns = {
        "venue": pa.array(["x"] * table.num_rows),
        **{c: shuffled[c].cast(pa.float32()) for c in reversed(METRIC_COLUMNS)},
        "time": shuffled["time"].cast(pa.timestamp("ns", "UTC")),
        "exchange": pa.array(["binance-futures"] * table.num_rows).dictionary_encode(),
    }
    return pa.table(columns)


def float32_exact(table: pa.Table) -> pa.Table:
    """``table`` with every metric rounded to float32 and back: what a float32 file holds."""
    for c in METRIC_COLUMNS:
        i = table.column_names.index(c)
        table = table.set_column(i, c, table[c].cast(pa.float32()).cast(pa.float64()))
    return table


def test_any_shape_of_the_same_data_is_written_as_the_same_canonical_bytes(warehouse: Warehouse):
    canonical = float32_exact(month_table(BTC_1H, JULY))
    first = warehouse.write(BTC_1H, JULY, canonical)
    again = warehouse.write(BTC_1H, JULY, reshaped(canonical))
    assert again.sha256 == first.sha256
    back = read_parquet(warehouse, again.path)
    assert back.schema.equals(SCHEMA) and back.equals(canonical)


def test_rechunked_data_gives_the_same_bytes(warehouse: Warehouse):
    table = month_table(BTC_1H, JULY)
    whole = warehouse.write(BTC_1H, JULY, table)
    pieces = pa.concat_tables([table.slice(0, 100), table.slice(100, 7), table.slice(107)])
    assert warehouse.write(BTC_1H, JULY, pieces).sha256 == whole.sha256


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda t: t.drop_columns(["imbalance"]), "column imbalance is missing"),
        (
            lambda t: t.set_column(1, "imbalance", t["imbalance"].cast(pa.string())),
            "column imbalance of type string is not double",
        ),
        (
            lambda t: t.set_column(0, "time", pc.add(t["time"].cast(pa.timestamp("ns")), ONE_NS)),
            "cannot be stored exactly as timestamp[us]",
        ),
        (lambda t: t.set_column(0, "time", t["time"].cast(pa.int64())), "time of type int64"),
    ],
    ids=["missing", "string", "sub-microsecond", "not-a-timestamp"],
)
def test_a_table_that_cannot_be_stored_exactly_is_refused(warehouse: Warehouse, change, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        warehouse.write(BTC_1H, JULY, change(month_table(BTC_1H, JULY)))
    assert not warehouse.exists(BTC_1H, JULY)


def test_reads_return_the_canonical_schema_from_files_in_an_older_shape(warehouse: Warehouse):
    """A file written before the warehouse was strict (UTC-aware ns time, float32) reads as
    naive us and float64."""
    old = float32_exact(month_table(BTC_1H, JULY))
    warehouse.write_file(
        BTC_1H, JULY, "data.parquet", pq_bytes(reshaped(old).drop_columns(["venue", "exchange"]))
    )
    table = warehouse.read([BTC_1H], [JULY])
    assert table.schema.field("time").type == pa.timestamp("us")
    assert table.select(SCHEMA.names).sort_by("time").equals(old)


# --- withdraw ----------------------------------------------------------------------------------


def test_withdraw_moves_the_file_aside_and_readers_no_longer_see_it(warehouse: Warehouse):
    written = warehouse.write(BTC_1H, JULY, month_table(BTC_1H, JULY))
    data = warehouse.read_bytes(BTC_1H, JULY)
    warehouse.write(ETH_1H, JULY, month_table(ETH_1H, JULY))

    url = warehouse.withdraw(BTC_1H, JULY)

    assert url is not None
    folder = f"{warehouse.url}/_withdrawn/{warehouse.relative_dir(BTC_1H, JULY)}/"
    assert url.startswith(folder) and url.endswith("Z-data.parquet")
    assert re.fullmatch(r"\d{8}T\d{12}Z-data\.parquet", url[len(folder) :])
    assert warehouse.fs.cat_file(url) == data
    assert hashlib.sha256(data).hexdigest() == written.sha256
    assert not warehouse.exists(BTC_1H, JULY)
    assert warehouse.partitions() == [(ETH_1H, JULY)]
    assert warehouse.read([BTC_1H], [JULY]).num_rows == 0
    assert warehouse.withdrawn(BTC_1H, JULY) == [url]
    assert warehouse.withdrawn(ETH_1H, JULY) == []


def test_withdrawing_twice_keeps_both_versions_and_nothing_is_none(warehouse: Warehouse):
    assert warehouse.withdraw(BTC_1H, JULY) is None
    warehouse.write(BTC_1H, JULY, month_table(BTC_1H, JULY))
    first = warehouse.withdraw(BTC_1H, JULY)
    assert warehouse.withdraw(BTC_1H, JULY) is None
    warehouse.write(BTC_1H, JULY, month_table(BTC_1H, JULY).slice(0, 24))
    second = warehouse.withdraw(BTC_1H, JULY)
    assert warehouse.withdrawn(BTC_1H, JULY) == [first, second]
    assert pq.read_table(io.BytesIO(warehouse.fs.cat_file(second))).num_rows == 24


def test_a_withdrawn_month_can_be_written_again(warehouse: Warehouse):
    table = month_table(BTC_1H, JULY)
    first = warehouse.write(BTC_1H, JULY, table)
    warehouse.withdraw(BTC_1H, JULY)
    assert warehouse.write(BTC_1H, JULY, table).sha256 == first.sha256
    assert warehouse.partitions() == [(BTC_1H, JULY)]


def pq_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
