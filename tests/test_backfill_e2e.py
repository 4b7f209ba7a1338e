"""Backfills of l1_imbalance: ranged runs in process, then the whole loop as the UI drives it.

A backfill runs one ranged run per instrument (BackfillPolicy.single_run), which reports every
partition itself. The in-process tests pin that those reports are the ones a single-partition
run produces (same tags, so the same data version; checks that count as current), which also
guards the Dagster internals the asset uses for it. The end-to-end test starts the sandbox, the
webserver and the daemon, and launches, fails and re-executes backfills over GraphQL.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from aperiodic_assets.core.months import Month, month_range
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.sandbox import RemoteSandbox
from aperiodic_assets.tools.demo import sandbox_process

from .conftest import BTC_1H, KEY, TODAY
from .dagster_services import DagsterServices, dagster_services
from .deployed import l1_imbalance

#: About how long this module's tests take together: on a parallel run the longest modules
#: start first (see conftest).
pytestmark = pytest.mark.slow(seconds=110)

ETH_1H = Instrument("binance-futures", "perpetual-ETH-USDT:USDT", "1h", "exchange")
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
CHECK_KEYS = list(l1_imbalance.check_keys)


def ranged_run(
    first: dg.MultiPartitionKey, last: dg.MultiPartitionKey, resources, instance
) -> dg.ExecuteInProcessResult:
    """What a backfill run is: the asset job with partition range tags and no partition tag."""
    return dg.materialize(
        [l1_imbalance],
        resources=resources,
        instance=instance,
        raise_on_error=False,
        tags={RANGE_START: str(first), RANGE_END: str(last)},
    )


def landed(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    """The run's materializations by partition key."""
    materializations = (
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
    )
    return {str(m.partition): m for m in materializations}


def latest(instance: dg.DagsterInstance, key: str) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=L1_IMBALANCE, asset_partitions=[key]), limit=1
    ).records
    return records[0] if records else None


def materialization_counts(instance: dg.DagsterInstance, keys: list[str]) -> dict[str, int]:
    return {
        key: len(
            instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=L1_IMBALANCE, asset_partitions=[key]), limit=100
            ).records
        )
        for key in keys
    }


def check_results(result: dg.ExecuteInProcessResult, key: str) -> dict[str, tuple]:
    """What the run reported for each check of one partition."""
    return {
        e.check_name: (e.passed, e.severity, e.description, e.metadata, e.blocking)
        for e in result.get_asset_check_evaluations()
        if e.partition == key
    }


def checks_passed_and_current(instance: dg.DagsterInstance, key: str) -> bool:
    """Every check of the partition passed against its latest materialization (the UI's view)."""
    infos = instance.event_log_storage.get_asset_check_partition_info(
        CHECK_KEYS, partition_keys=[key]
    )
    return len(infos) == len(CHECK_KEYS) and all(
        i.latest_execution_status.value == "SUCCEEDED" and i.is_current for i in infos
    )


def test_a_ranged_run_reports_each_partition_as_a_single_partition_run_does(
    sandbox, resources, instance
):
    sandbox.set_today(date(2026, 10, 1))  # September is published, October is not yet
    single = dg.materialize(
        [l1_imbalance],
        partition_key=partition_key(BTC_1H, Month(2026, 8)),
        resources=resources,
        instance=instance,
    )
    (single_mat,) = landed(single).values()
    assert single_mat.tags["dagster/data_version"] == single_mat.metadata["sha256"].value

    result = ranged_run(
        partition_key(BTC_1H, Month(2026, 7)),
        partition_key(BTC_1H, Month(2026, 10)),
        resources,
        instance,
    )

    assert result.success
    ranged = landed(result)
    months = {k.split("|")[1] for k in ranged}
    assert months == {"2026-07", "2026-08", "2026-09"}, "unpublished October: nothing"
    august_key = str(partition_key(BTC_1H, Month(2026, 8)))
    august = ranged[august_key]
    # Same bytes, same data version, exactly the tags and check results of a single-partition run.
    assert august.tags == single_mat.tags
    assert august.metadata.keys() == single_mat.metadata.keys()
    assert check_results(result, august_key) == check_results(single, august_key)
    assert len(check_results(result, august_key)) == len(CHECK_KEYS)
    versions = {k: m.tags["dagster/data_version"] for k, m in ranged.items()}
    assert all(versions[k] == ranged[k].metadata["sha256"].value for k in ranged)
    assert len(set(versions.values())) == 3
    for key in ranged:
        record = latest(instance, key)
        assert record is not None and record.run_id == result.run_id
        assert record.asset_materialization.tags["dagster/data_version"] == versions[key]
        assert checks_passed_and_current(instance, key)
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 3 * len(CHECK_KEYS)
    assert {e.partition for e in evaluations} == set(ranged)


def test_a_ranged_run_fails_only_its_bad_partitions(sandbox, resources, instance, warehouse):
    july, august, september = (partition_key(BTC_1H, Month(2026, m)) for m in (7, 8, 9))
    sandbox.corrupt("broken_identity", BTC_1H.exchange, BTC_1H.symbol, "2026-08")
    sandbox.inject("status", count=-1, exchange=BTC_1H.exchange, month="2026-09", status=503)

    result = ranged_run(july, september, resources, instance)

    assert not result.success
    assert set(landed(result)) == {str(july)}
    assert latest(instance, str(august)) is None and latest(instance, str(september)) is None
    assert warehouse.partitions() == [(BTC_1H, Month(2026, 7))]
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.step_failure_data.error
    assert error is not None and "2 of 3 partitions failed" in error.message
    table = failure.step_failure_data.user_failure_data.metadata["failed_partitions"].value
    errors = {r.data["partition"]: r.data["error"] for r in table.records}
    august_row, september_row = errors[str(august)], errors[str(september)]
    assert "pct_sum_to_one" in august_row and "_quarantine" in august_row
    assert "HTTP 503" in september_row
    # A transient API error too: no step retry, which would redo July.
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def test_a_range_across_instruments_covers_exactly_them(resources, instance):
    """Backfills of fewer months than instruments get ranges over instruments, month fixed."""
    july = Month(2026, 7)

    result = ranged_run(
        partition_key(BTC_1H, july), partition_key(ETH_1H, july), resources, instance
    )

    assert result.success
    assert set(landed(result)) == {str(partition_key(i, july)) for i in (BTC_1H, ETH_1H)}


# --- end to end: sandbox, webserver and daemon as separate processes ---------------------------

#: BTC_1H's middle month of MIXED_MONTHS is the one that goes wrong.
GOOD_MONTHS = month_range(Month(2026, 4), Month(2026, 6))
MIXED_MONTHS = month_range(Month(2026, 7), Month(2026, 9))
BAD = partition_key(BTC_1H, Month(2026, 8))


def keys(months: list[Month]) -> list[str]:
    return [str(partition_key(i, m)) for i in (BTC_1H, ETH_1H) for m in months]


@pytest.fixture
def sandbox_url():
    with sandbox_process(["--today", TODAY.isoformat(), "--key", KEY]) as url:
        yield url


@pytest.fixture
def services(tmp_path: Path, sandbox_url: str, monkeypatch) -> DagsterServices:
    home = tmp_path / "dagster_home"
    env = {
        "APERIODIC_API_URL": sandbox_url,
        "APERIODIC_API_KEY": KEY,
        "WAREHOUSE_URL": str(tmp_path / "warehouse"),
    }
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # for reading the instance from this process
    with dagster_services(
        home,
        env=env,
        start_daemon=False,
    ) as running:
        yield running


def status_counts(backfill: dict) -> dict:
    (counts,) = backfill["assetBackfillData"]["assetBackfillStatuses"]
    return {k: v for k, v in counts.items() if k.startswith("num")}


def test_ui_backfill_lands_every_partition_and_reexecutes_only_the_failed_one(
    services: DagsterServices, sandbox_url: str
):
    sandbox = RemoteSandbox(sandbox_url)
    sandbox.corrupt("broken_identity", BTC_1H.exchange, BTC_1H.symbol, "2026-08")
    good = services.launch_backfill(L1_IMBALANCE.path, keys(GOOD_MONTHS), title="clean months")
    mixed = services.launch_backfill(L1_IMBALANCE.path, keys(MIXED_MONTHS), title="one bad month")
    # The backfill daemon looks for work every 30 s (fixed in Dagster 1.13); started now, its
    # first iteration takes both backfills at once instead of up to 30 s later.
    services.start_daemon()

    clean, failing = services.wait_backfill(good, 150), services.wait_backfill(mixed, 60)

    assert clean["status"] == "COMPLETED_SUCCESS"
    assert status_counts(clean) == {
        "numPartitionsTargeted": 6,
        "numPartitionsInProgress": 0,
        "numPartitionsMaterialized": 6,
        "numPartitionsFailed": 0,
    }
    assert failing["status"] in ("COMPLETED_FAILED", "FAILED")
    assert status_counts(failing)["numPartitionsMaterialized"] == 5
    assert status_counts(failing)["numPartitionsFailed"] == 1
    # One ranged run per instrument, not one run per partition.
    runs = {b: services.backfill_runs(b) for b in (good, mixed)}
    assert [len(r) for r in runs.values()] == [2, 2]
    assert all(RANGE_START in {t["key"] for t in r["tags"]} for rs in runs.values() for r in rs)
    assert sorted(r["status"] for r in runs[mixed]) == ["FAILURE", "SUCCESS"]

    instance = dg.DagsterInstance.get()
    good_keys = [k for k in keys(GOOD_MONTHS + MIXED_MONTHS) if k != str(BAD)]
    versions = set()
    for key in good_keys:
        record = latest(instance, key)
        assert record is not None and record.asset_materialization is not None
        mat = record.asset_materialization
        assert mat.tags["dagster/data_version"] == mat.metadata["sha256"].value
        versions.add(mat.tags["dagster/data_version"])
        assert checks_passed_and_current(instance, key), key
    assert len(versions) == len(good_keys)
    assert latest(instance, str(BAD)) is None

    sandbox.clear_corruption()
    before = len(sandbox.requests())
    retry = services.reexecute_backfill(mixed)

    retried = services.wait_backfill(retry, 150)

    assert retried["status"] == "COMPLETED_SUCCESS"
    assert status_counts(retried)["numPartitionsTargeted"] == 1
    (run,) = services.backfill_runs(retry)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (tags[RANGE_START], tags[RANGE_END], run["status"]) == (str(BAD), str(BAD), "SUCCESS")
    assert checks_passed_and_current(instance, str(BAD))
    # Only the failed partition was fetched again, and every other partition materialized once.
    fetched = [r for r in sandbox.requests()[before:] if r["kind"] in ("list", "download")]
    assert {r["client"] for r in fetched if r["kind"] == "list"} == {run["runId"]}
    downloads = {r["path"] for r in fetched if r["kind"] == "download"}
    # August 2026 is one daily file per day (the sandbox's default layout, as Aperiodic's).
    august = "/files/l1_imbalance/binance-futures/perpetual-BTC-USDT%3AUSDT/1h/exchange/2026/08"
    assert downloads == {f"{august}/{d:02d}.parquet" for d in range(1, 32)}
    assert set(materialization_counts(instance, keys(GOOD_MONTHS + MIXED_MONTHS)).values()) == {1}
