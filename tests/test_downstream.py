"""Downstream assets, the public loader and DuckDB: what other teams build on our warehouse.

Staleness and automation are checked on a real instance: downstream partitions go stale, and are
requested, only when the upstream data version really changed (a republished month), not when
identical data is materialized again.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import subprocess
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import matplotlib.image
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from aperiodic_assets.core.assemble import Part, assemble
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.normalize import normalize
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.warehouse import PARTITION_COLUMNS, Warehouse
from aperiodic_assets.defs.assets.downstream import (
    CHART_FILE,
    DAILY_TABLE,
    SUMMARY_TABLE,
    build_downstream,
    daily_stats,
    monthly_summary,
)
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE, build_l1_imbalance
from aperiodic_assets.defs.assets.reporting import ROW_COUNT
from aperiodic_assets.defs.assets.upstream import (
    UPSTREAM_CURRENT,
    UPSTREAM_VERSIONS,
    build_upstream_check,
    evaluate_upstream,
    upstream_versions,
)
from aperiodic_assets.defs.deployment import Deployment
from aperiodic_assets.defs.partitions import partition_key

from .conftest import BTC_1H, month_table
from .deployed import (
    DEPLOYMENT,
    l1_imbalance,
    l1_imbalance_daily,
    l1_imbalance_monthly_summary,
)

ROOT = Path(__file__).resolve().parents[1]
ETH_1H = Instrument("binance-futures", "perpetual-ETH-USDT:USDT", "1h", "exchange")
JUNE, JULY = Month(2026, 6), Month(2026, 7)
GRAPH = [l1_imbalance, l1_imbalance_daily, l1_imbalance_monthly_summary]
DAILY, SUMMARY = l1_imbalance_daily.key, l1_imbalance_monthly_summary.key
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(
    asset: dg.AssetsDefinition, partition: str, resources: dict, instance: dg.DagsterInstance
) -> dg.AssetMaterialization:
    """Materialize one partition of one asset, with the whole graph known (lineage)."""
    result = dg.materialize(
        GRAPH, selection=[asset], partition_key=partition, resources=resources, instance=instance
    )
    (event,) = result.get_asset_materialization_events()
    return event.step_materialization_data.materialization


def stale(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> StaleStatus:
    return get_stale_status_resolver(instance, GRAPH).get_status(key, partition)


def data_version(mat: dg.AssetMaterialization) -> str:
    return mat.tags["dagster/data_version"]


def test_downstream_follows_only_real_upstream_data_changes(sandbox, resources, instance):
    upstream, month = partition_key(BTC_1H, JULY), JULY.key
    cursor = None

    def requested() -> dict[dg.AssetKey, set[str | None]]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(
            dg.Definitions(assets=GRAPH, resources=resources), instance, cursor=cursor
        )
        cursor = result.cursor
        found = {key: set(result.get_requested_partitions(key)) for key in (DAILY, SUMMARY)}
        return {key: partitions for key, partitions in found.items() if partitions}

    assert requested() == {}
    first = run(l1_imbalance, upstream, resources, instance)
    # July is not the latest month: plain eager() would wait for a human here.
    assert requested() == {DAILY: {upstream}, SUMMARY: {month}}
    run(l1_imbalance_daily, upstream, resources, instance)
    run(l1_imbalance_monthly_summary, month, resources, instance)
    assert stale(instance, DAILY, upstream) == StaleStatus.FRESH
    assert stale(instance, SUMMARY, month) == StaleStatus.FRESH
    assert requested() == {}

    again = run(l1_imbalance, upstream, resources, instance)
    assert data_version(again) == data_version(first)
    assert stale(instance, DAILY, upstream) == StaleStatus.FRESH
    assert stale(instance, SUMMARY, month) == StaleStatus.FRESH
    assert requested() == {}

    sandbox.republish(BTC_1H.exchange, BTC_1H.symbol, JULY, revision=1)
    corrected = run(l1_imbalance, upstream, resources, instance)
    assert data_version(corrected) != data_version(first)
    assert stale(instance, DAILY, upstream) == StaleStatus.STALE
    assert stale(instance, SUMMARY, month) == StaleStatus.STALE
    assert requested() == {DAILY: {upstream}, SUMMARY: {month}}

    run(l1_imbalance_daily, upstream, resources, instance)
    run(l1_imbalance_monthly_summary, month, resources, instance)
    assert stale(instance, DAILY, upstream) == StaleStatus.FRESH
    assert stale(instance, SUMMARY, month) == StaleStatus.FRESH


def test_daily_and_monthly_summary_agree_with_duckdb(resources, instance, warehouse):
    instruments = (BTC_1H, ETH_1H)
    for instrument in instruments:
        run(l1_imbalance, partition_key(instrument, JULY), resources, instance)
    daily = [
        run(l1_imbalance_daily, partition_key(i, JULY), resources, instance) for i in instruments
    ]
    summary = run(l1_imbalance_monthly_summary, JULY.key, resources, instance)
    source = (
        f"read_parquet('{warehouse.url}/l1_imbalance/**/*.parquet', hive_partitioning=true,"
        " hive_types={'year': INTEGER, 'month': INTEGER})"
    )

    for instrument, mat in zip(instruments, daily, strict=True):
        assert mat.metadata["path"].value == warehouse.uri(instrument, JULY, DAILY_TABLE)
        assert mat.metadata[ROW_COUNT].value == 31
        preview = mat.metadata["preview"].value
        assert "imbalance_ratio_mean" in [c.name for c in preview.schema.columns]
        assert len(preview.records) == 10
        ours = pq.read_table(mat.metadata["path"].value).to_pandas()
        theirs = duckdb.sql(
            "select cast(time as date) as date, count(*) as rows,"
            " avg(imbalance_ratio) as imbalance_ratio_mean,"
            " min(imbalance_ratio) as imbalance_ratio_min,"
            " max(imbalance_ratio) as imbalance_ratio_max,"
            " avg(bid_percentage) as bid_percentage_mean,"
            " count(*) / 24 as completeness"
            f" from {source} where symbol = '{instrument.symbol}' and year = 2026 and month = 7"
            " group by all order by date"
        ).df()
        theirs["date"] = theirs["date"].dt.date
        pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)

    meta = summary.metadata
    assert meta["instruments"].value == 2
    assert meta["path"].value == warehouse.uri(None, JULY, SUMMARY_TABLE)
    ours = pq.read_table(meta["path"].value).to_pandas()
    theirs = duckdb.sql(
        "select exchange, symbol, interval, timestamp, count(*) as rows,"
        " avg(imbalance_ratio) as imbalance_ratio_mean,"
        " avg(bid_percentage) as bid_percentage_mean, count(*) / (31 * 24) as completeness"
        f" from {source} where year = 2026 and month = 7 group by all order by symbol"
    ).df()
    pd.testing.assert_frame_equal(ours, theirs, check_dtype=False)
    assert meta["rows"].value == int(theirs["rows"].sum())
    shown = meta["table"].value
    assert {r.data["symbol"] for r in shown.records} == {i.symbol for i in instruments}
    assert "completeness" in [c.name for c in shown.schema.columns]
    assert next(iter(meta)) == "chart", "the chart is the first thing on the asset's page"

    (encoded,) = re.findall(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", meta["chart"].value)
    png = base64.b64decode(encoded)
    assert png.startswith(PNG_SIGNATURE)
    assert matplotlib.image.imread(io.BytesIO(png), format="png").shape == (320, 720, 4)
    assert meta["chart_path"].value == warehouse.uri(None, JULY, SUMMARY_TABLE, CHART_FILE)
    assert warehouse.read_bytes(None, JULY, SUMMARY_TABLE, CHART_FILE) == png


def test_daily_stats_count_missing_rows_and_days():
    frame = month_table(BTC_1H, JULY).to_pandas()
    day = frame["time"].dt.day
    gappy = frame[(day != 3) & ~((day == 4) & (frame["time"].dt.hour % 2 == 1))].assign(
        exchange=BTC_1H.exchange,
        symbol=BTC_1H.symbol,
        interval=BTC_1H.interval,
        timestamp=BTC_1H.timestamp,
    )
    stats = daily_stats(gappy, JULY).set_index("date")
    assert len(stats) == 31
    july = pd.Series(pd.date_range("2026-07-01", periods=31)).dt.date
    assert stats.loc[july[2], "rows"] == 0 and stats.loc[july[2], "completeness"] == 0
    assert np.isnan(stats.loc[july[2], "imbalance_ratio_mean"])
    assert stats.loc[july[3], "rows"] == 12 and stats.loc[july[3], "completeness"] == 0.5
    assert (stats.drop(index=[july[2], july[3]])["completeness"] == 1).all()
    expected = frame[day == 5]["imbalance_ratio"]
    assert stats.loc[july[4], "imbalance_ratio_max"] == expected.max()
    assert stats.loc[july[4], "imbalance_ratio_mean"] == pytest.approx(expected.mean())


def test_a_month_in_progress_is_summarized_against_the_days_published_so_far():
    """Ten days of July published, on July 11th: complete, not a third complete."""
    frame = month_table(BTC_1H, JULY).to_pandas()
    published = frame[frame["time"].dt.day <= 10].assign(
        exchange=BTC_1H.exchange,
        symbol=BTC_1H.symbol,
        interval=BTC_1H.interval,
        timestamp=BTC_1H.timestamp,
    )
    on = date(2026, 7, 11)
    (row,) = monthly_summary(published, JULY, today=on).to_dict("records")
    assert row["rows"] == 240 and row["completeness"] == 1.0
    assert len(daily_stats(published, JULY, today=on)) == 10
    # Once July is over, the same rows are a third of the month.
    (over,) = monthly_summary(published, JULY, today=date(2026, 8, 2)).to_dict("records")
    assert over["completeness"] == pytest.approx(240 / 744)


@pytest.fixture
def filled(tmp_path) -> tuple[Warehouse, pd.DataFrame]:
    """A local warehouse with two instruments × two months, and what was written to it."""
    warehouse = Warehouse(tmp_path / "warehouse")
    written = []
    for instrument in (BTC_1H, ETH_1H):
        for month in (JUNE, JULY):
            table = month_table(instrument, month)
            warehouse.write(instrument, month, table)
            written.append(table.to_pandas().assign(symbol=instrument.symbol))
    # Rejected input lives outside the table's folder: no reader picks it up.
    warehouse.quarantine(
        BTC_1H, JULY, [("2026-07.parquet", pq_bytes(month_table(BTC_1H, JULY)))], {}
    )
    return warehouse, pd.concat(written, ignore_index=True)


def pq_bytes(table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_load_l1_imbalance_returns_the_stored_rows(filled, monkeypatch):
    from aperiodic_assets import load_l1_imbalance

    warehouse, written = filled
    frame = load_l1_imbalance([BTC_1H.key, ETH_1H], "2026-06", JULY, warehouse_url=warehouse.url)
    assert len(frame) == len(written) == 2 * (30 + 31) * 24
    assert list(frame.columns) == [*written.columns.drop("symbol"), *PARTITION_COLUMNS]
    ours = frame.sort_values(["symbol", "time"], ignore_index=True)
    theirs = written.sort_values(["symbol", "time"], ignore_index=True)
    pd.testing.assert_frame_equal(ours[theirs.columns], theirs, check_dtype=False)
    assert set(zip(frame["year"], frame["month"], strict=True)) == {(2026, 6), (2026, 7)}

    monkeypatch.setenv("WAREHOUSE_URL", warehouse.url)
    one = load_l1_imbalance(ETH_1H.key, "2026-07", columns=["time", "imbalance_ratio"])
    assert len(one) == 31 * 24
    assert list(one.columns) == ["time", "imbalance_ratio", *PARTITION_COLUMNS]
    assert set(one["symbol"]) == {ETH_1H.symbol}
    assert load_l1_imbalance(BTC_1H, "2026-05").empty


def test_importing_the_package_stays_light():
    code = (
        "import sys, aperiodic_assets;"
        "assert 'pyarrow' not in sys.modules and 'dagster' not in sys.modules;"
        "from aperiodic_assets import load_l1_imbalance;"
        "assert callable(load_l1_imbalance) and 'dagster' not in sys.modules;"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_duckdb_reads_the_warehouse_as_one_table(filled):
    warehouse, written = filled
    glob = f"{warehouse.url}/l1_imbalance/**/*.parquet"
    (count,) = duckdb.sql(
        f"select count(*) from read_parquet('{glob}', hive_partitioning=true)"
    ).fetchall()[0]
    assert count == len(written)
    # Zero-padded months are read as text unless the types are given.
    per_partition = duckdb.sql(
        f"select symbol, year, month, count(*) from read_parquet('{glob}', hive_partitioning=true,"
        " hive_types={'year': INTEGER, 'month': INTEGER}) group by all order by all"
    ).fetchall()
    expected = written.groupby(["symbol", written["time"].dt.year, written["time"].dt.month])
    assert per_partition == [(s, y, m, n) for (s, y, m), n in expected.size().items()]


# --- withdrawn upstream partitions, UTC-aware sources -------------------------------------------


def test_a_withdrawn_upstream_partition_gives_0_daily_rows_and_leaves_the_summary(
    resources, instance, warehouse
):
    for instrument in (BTC_1H, ETH_1H):
        warehouse.write(instrument, JULY, month_table(instrument, JULY))
    btc = partition_key(BTC_1H, JULY)
    before = run(l1_imbalance_daily, btc, resources, instance)
    assert before.metadata[ROW_COUNT].value == 31
    moved = warehouse.withdraw(BTC_1H, JULY)

    daily = run(l1_imbalance_daily, btc, resources, instance)
    assert daily.metadata[ROW_COUNT].value == 0
    assert daily.metadata["upstream"].value == (
        f"withdrawn: the l1_imbalance partition was moved to {moved}"
    )
    assert data_version(daily) == hashlib.sha256(b"").hexdigest() != data_version(before)
    # The daily numbers of data that is gone are withdrawn too, not left for readers.
    assert not warehouse.exists(BTC_1H, JULY, DAILY_TABLE)
    (kept,) = warehouse.withdrawn(BTC_1H, JULY, DAILY_TABLE)
    assert daily.metadata["withdrawn_to"].value == kept

    summary = run(l1_imbalance_monthly_summary, JULY.key, resources, instance)
    assert summary.metadata["instruments"].value == 1
    (row,) = pq.read_table(summary.metadata["path"].value).to_pylist()
    assert row["symbol"] == ETH_1H.symbol and row["rows"] == 31 * 24

    warehouse.withdraw(ETH_1H, JULY)
    empty = run(l1_imbalance_monthly_summary, JULY.key, resources, instance)
    assert empty.metadata[ROW_COUNT].value == 0
    assert "no instrument has an l1_imbalance partition" in empty.metadata["upstream"].value
    assert not warehouse.exists(None, JULY, SUMMARY_TABLE)
    assert warehouse.read_bytes(None, JULY, SUMMARY_TABLE, CHART_FILE).startswith(PNG_SIGNATURE)


def test_a_partition_never_written_gives_0_daily_rows_and_says_so(resources, instance, warehouse):
    daily = run(l1_imbalance_daily, partition_key(BTC_1H, JULY), resources, instance)
    assert daily.metadata[ROW_COUNT].value == 0
    assert daily.metadata["upstream"].value.startswith("no upstream data")
    assert "withdrawn_to" not in daily.metadata


def with_instrument(frame: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    return frame.assign(
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        interval=instrument.interval,
        timestamp=instrument.timestamp,
    )


def test_daily_stats_and_summary_of_a_utc_aware_frame_equal_the_naive_ones():
    naive = with_instrument(month_table(BTC_1H, JULY).to_pandas(), BTC_1H)
    aware = naive.assign(time=naive["time"].dt.tz_localize("UTC"))
    berlin = aware.assign(time=aware["time"].dt.tz_convert("Europe/Berlin"))
    expected = daily_stats(naive, JULY)
    assert len(expected) == 31 and (expected["rows"] == 24).all()
    for frame in (aware, berlin):
        pd.testing.assert_frame_equal(daily_stats(frame, JULY), expected)
        pd.testing.assert_frame_equal(monthly_summary(frame, JULY), monthly_summary(naive, JULY))


def test_a_utc_aware_source_file_lands_as_the_naive_one_and_gives_the_same_daily_rows(tmp_path):
    naive = month_table(BTC_1H, JULY)
    aware = naive.set_column(0, "time", naive["time"].cast(pa.timestamp("ms", "UTC")))
    daily = {}
    for name, source in (("naive", naive), ("aware", aware)):
        store = Warehouse(tmp_path / name)
        table = assemble([Part(JULY.key, normalize(source, BTC_1H, JULY.key).table)])
        store.write(BTC_1H, JULY, table)
        daily[name] = daily_stats(store.read([BTC_1H], [JULY]).to_pandas(), JULY)
        daily[f"{name}_bytes"] = store.read_bytes(BTC_1H, JULY)
    assert daily["aware_bytes"] == daily["naive_bytes"]
    pd.testing.assert_frame_equal(daily["aware"], daily["naive"])
    assert len(daily["naive"]) == 31


def summary_check(instance: dg.DagsterInstance) -> dict:
    """The latest ``upstream_current`` evaluation: passed and what it says."""
    (record,) = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(SUMMARY, UPSTREAM_CURRENT), limit=1
    )
    evaluation = record.event.dagster_event.event_specific_data
    return {"passed": evaluation.passed, "upstream": evaluation.metadata["upstream"].value}


def upstream_tick(
    instance: dg.DagsterInstance, cursor: str | None, deployment: Deployment = DEPLOYMENT
) -> tuple[list, str | None]:
    result = evaluate_upstream(
        dg.build_sensor_context(instance=instance, cursor=cursor), deployment, SUMMARY
    )
    if isinstance(result, dg.SkipReason):
        return [], cursor
    # The daemon stores a sensor's asset events; here, as it would:
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return list(result.asset_events), result.cursor


def test_the_summary_records_its_upstream_and_says_when_one_instrument_changed(
    sandbox, resources, instance
):
    upstream, month = partition_key(BTC_1H, JULY), JULY.key
    first = run(l1_imbalance, upstream, resources, instance)
    summary = run(l1_imbalance_monthly_summary, month, resources, instance)
    built = summary.metadata[UPSTREAM_VERSIONS].value
    assert built == {BTC_1H.key: data_version(first)[:16]}
    assert summary.metadata["upstream_partitions"].value == 1

    events, cursor = upstream_tick(instance, None)
    assert [e.passed for e in events] == [True]
    assert summary_check(instance)["upstream"] == (
        "all 1 summarized months are built from the latest upstream data"
    )
    assert upstream_tick(instance, cursor)[0] == [], "nothing reported twice"

    sandbox.republish(BTC_1H.exchange, BTC_1H.symbol, JULY, revision=1)
    run(l1_imbalance, upstream, resources, instance)
    events, cursor = upstream_tick(instance, cursor)
    assert [e.passed for e in events] == [False]
    check = summary_check(instance)
    assert not check["passed"]
    assert check["upstream"].startswith("2026-07: upstream moved since it was built: 1 changed")
    assert BTC_1H.key in check["upstream"]

    run(l1_imbalance_monthly_summary, month, resources, instance)
    events, cursor = upstream_tick(instance, cursor)
    assert [e.passed for e in events] == [True] and summary_check(instance)["passed"]


def test_past_100_instruments_the_summary_reruns_and_says_which_upstream_it_was_built_from(
    instance, resources
):
    """Past 100 upstream partitions Dagster skips data-version staleness; the record and the
    automation condition do not. 150 upstream materializations are reported directly, with the
    data versions a run would give them (no run needs to fetch them)."""
    month = JULY
    keys = [f"SYN{n:04d}.1h.okx-perps.perpetual-SYN{n:04d}-USDT:USDT.exchange" for n in range(150)]
    universe = replace(DEPLOYMENT.universe, instruments=tuple(map(Instrument.from_key, keys)))
    deployment = replace(DEPLOYMENT, universe=universe)
    graph = [build_l1_imbalance(deployment), *build_downstream(deployment)]
    defs = dg.Definitions(
        assets=graph,
        asset_checks=[build_upstream_check(deployment, SUMMARY)],
        resources=resources,
    )

    def report(key: str, version: str) -> None:
        partition = dg.MultiPartitionKey({"instrument": key, "month": month.key})
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                L1_IMBALANCE, partition=str(partition), tags={"dagster/data_version": version}
            )
        )

    cursor = None

    def summary_requested() -> bool:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs, instance, cursor=cursor)
        cursor = result.cursor
        return month.key in result.get_requested_partitions(SUMMARY)

    assert not summary_requested()
    versions = {k: hashlib.sha256(k.encode()).hexdigest() for k in keys}
    for key, version in versions.items():
        report(key, version)
    assert upstream_versions(instance, deployment, month) == versions
    assert summary_requested()
    built = dg.materialize(
        graph, selection=[SUMMARY], partition_key=month.key, resources=resources, instance=instance
    )
    (event,) = built.get_asset_materialization_events()
    metadata = event.step_materialization_data.materialization.metadata
    assert metadata["upstream_partitions"].value == 150
    assert metadata[UPSTREAM_VERSIONS].value == {k: v[:16] for k, v in versions.items()}
    assert not summary_requested()
    events, check_cursor = upstream_tick(instance, None, deployment)
    assert [e.passed for e in events] == [True]

    report(keys[123], hashlib.sha256(b"republished").hexdigest())
    assert summary_requested(), "one upstream month of 150 changed: the summary runs again"
    events, check_cursor = upstream_tick(instance, check_cursor, deployment)
    assert [e.passed for e in events] == [False]
    assert f"1 changed ({keys[123]})" in summary_check(instance)["upstream"]
