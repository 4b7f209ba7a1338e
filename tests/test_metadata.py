"""Our assets in Dagster's own vocabulary: every materialization describes the file it wrote with
``dagster/row_count``, ``dagster/uri``, ``dagster/table_name`` and ``dagster/column_schema``;
the specs carry owners, kinds, code references and the column schema; the checks that reject a
month are blocking, so nothing downstream runs on a rejected month."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from aperiodic_assets import AperiodicL1Imbalance
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.schema import METRIC_COLUMNS
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.validation import CHECKS
from aperiodic_assets.core.warehouse import Warehouse
from aperiodic_assets.defs.assets import l1_imbalance as l1_imbalance_module
from aperiodic_assets.defs.assets.downstream import (
    DAILY_COLUMNS,
    DAILY_TABLE,
    SUMMARY_COLUMNS,
    SUMMARY_TABLE,
)
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE, WITHDRAW_CONFIRMED, WITHDRAW_TAG
from aperiodic_assets.defs.assets.reporting import (
    COLUMN_SCHEMA,
    L1_COLUMNS,
    ROW_COUNT,
    TABLE_NAME,
    URI,
    VALIDATION_CHECK,
)
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.defs.resources import AperiodicResource, RetrySettings, WarehouseResource

from .conftest import BTC_1H, FAST_RETRY, KEY, materialize_partition
from .deployed import DEPLOYMENT, l1_imbalance, l1_imbalance_daily, l1_imbalance_monthly_summary
from .test_retry_after import ranged

ROOT = Path(__file__).resolve().parents[1]
ETH_1H = Instrument("binance-futures", "perpetual-ETH-USDT:USDT", "1h", "exchange")
MAY, JUNE, JULY = Month(2026, 5), Month(2026, 6), Month(2026, 7)
GRAPH = [l1_imbalance, l1_imbalance_daily, l1_imbalance_monthly_summary]
DAGSTER_KEYS = (ROW_COUNT, URI, TABLE_NAME, COLUMN_SCHEMA)
#: The warehouse's l1_imbalance columns, as pyarrow.parquet.read_schema names their types.
L1_TYPES = [("time", "timestamp[us]"), *[(c, "double") for c in METRIC_COLUMNS]]
ERROR_CHECKS = {c.name for c in CHECKS if c.severity == "error"}


def latest(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str
) -> dg.AssetMaterialization:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    (record,) = records
    assert record.asset_materialization is not None
    return record.asset_materialization


def columns(schema: dg.TableSchema) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in schema.columns]


def dagster_keys(mat: dg.AssetMaterialization) -> dict[str, object]:
    return {k: mat.metadata[k].value for k in DAGSTER_KEYS}


def assert_describes_its_file(mat: dg.AssetMaterialization, table_name: str) -> pa.Table:
    """The dagster/* metadata names a file that holds exactly the rows and columns it says."""
    with fsspec.open(mat.metadata[URI].value, "rb") as f:
        table = pq.read_table(f)
    assert mat.metadata[TABLE_NAME].value == table_name
    assert mat.metadata[ROW_COUNT].value == table.num_rows > 0
    assert columns(mat.metadata[COLUMN_SCHEMA].value) == [
        (field.name, str(field.type)) for field in table.schema
    ]
    return table


def test_a_single_partition_run_describes_its_file(resources, instance, warehouse):
    assert materialize_partition(resources, instance, BTC_1H, JULY).success
    event = instance.get_latest_materialization_event(L1_IMBALANCE)
    assert event is not None and event.asset_materialization is not None
    mat = event.asset_materialization
    location = warehouse.uri(BTC_1H, JULY)
    assert mat.metadata[URI].value == f"file://{location}"
    assert mat.metadata[ROW_COUNT].value == 31 * 24
    assert mat.metadata[TABLE_NAME].value == "l1_imbalance"
    assert columns(mat.metadata[COLUMN_SCHEMA].value) == L1_TYPES
    assert mat.metadata[COLUMN_SCHEMA].value == L1_COLUMNS, "with the columns' descriptions"
    assert assert_describes_its_file(mat, "l1_imbalance").equals(pq.read_table(location))


def test_a_ranged_run_describes_each_file_as_a_single_partition_run_does(
    resources, instance, warehouse
):
    keys = [str(partition_key(BTC_1H, m)) for m in (MAY, JUNE, JULY)]
    assert ranged(resources, instance, keys).success
    rows = {}
    for key, month in zip(keys, (MAY, JUNE, JULY), strict=True):
        mat = latest(instance, L1_IMBALANCE, key)
        assert mat.metadata[URI].value == f"file://{warehouse.uri(BTC_1H, month)}"
        rows[month] = assert_describes_its_file(mat, "l1_imbalance").num_rows
    assert rows == {MAY: 31 * 24, JUNE: 30 * 24, JULY: 31 * 24}

    in_range = dagster_keys(latest(instance, L1_IMBALANCE, keys[-1]))
    assert materialize_partition(resources, instance, BTC_1H, JULY).success
    assert dagster_keys(latest(instance, L1_IMBALANCE, keys[-1])) == in_range


def test_the_uri_of_a_bucket_is_its_s3_url(warehouse_url, sandbox, instance):
    resources = {
        "aperiodic": AperiodicResource(
            api_url=sandbox.base_url, api_key=KEY, retry=RetrySettings(**asdict(FAST_RETRY))
        ),
        "warehouse": WarehouseResource(url=warehouse_url),
    }
    assert materialize_partition(resources, instance, BTC_1H, JULY).success
    mat = latest(instance, L1_IMBALANCE, str(partition_key(BTC_1H, JULY)))
    location = Warehouse(warehouse_url).uri(BTC_1H, JULY)
    expected = location if warehouse_url.startswith("s3://") else f"file://{location}"
    assert mat.metadata[URI].value == expected
    assert_describes_its_file(mat, "l1_imbalance")


def test_a_withdrawn_month_has_0_rows_at_its_address_in_the_table(
    sandbox, resources, instance, warehouse
):
    key = str(partition_key(BTC_1H, JULY))
    assert materialize_partition(resources, instance, BTC_1H, JULY).success
    sandbox.inject("withdraw", -1, month=JULY)
    withdrawal = dg.materialize(
        [l1_imbalance],
        partition_key=key,
        tags={WITHDRAW_TAG: WITHDRAW_CONFIRMED},
        resources=resources,
        instance=instance,
    )
    assert withdrawal.success
    mat = latest(instance, L1_IMBALANCE, key)
    assert dagster_keys(mat) == {
        ROW_COUNT: 0,
        URI: f"file://{warehouse.uri(BTC_1H, JULY)}",
        TABLE_NAME: "l1_imbalance",
        COLUMN_SCHEMA: L1_COLUMNS,
    }
    assert not warehouse.exists(BTC_1H, JULY)


def run(
    asset: dg.AssetsDefinition, partition: str, resources: dict, instance: dg.DagsterInstance
) -> dg.AssetMaterialization:
    result = dg.materialize(
        GRAPH, selection=[asset], partition_key=partition, resources=resources, instance=instance
    )
    (event,) = result.get_asset_materialization_events()
    return event.step_materialization_data.materialization


def test_downstream_materializations_describe_their_own_tables(resources, instance, warehouse):
    for instrument in (BTC_1H, ETH_1H):
        run(l1_imbalance, partition_key(instrument, JULY), resources, instance)
    daily = run(l1_imbalance_daily, partition_key(BTC_1H, JULY), resources, instance)
    summary = run(l1_imbalance_monthly_summary, JULY.key, resources, instance)

    assert daily.metadata[URI].value == f"file://{warehouse.uri(BTC_1H, JULY, DAILY_TABLE)}"
    assert assert_describes_its_file(daily, DAILY_TABLE).num_rows == 31
    assert daily.metadata[COLUMN_SCHEMA].value == DAILY_COLUMNS
    assert summary.metadata[URI].value == f"file://{warehouse.uri(None, JULY, SUMMARY_TABLE)}"
    # One row per instrument: the table's rows, not the source rows it summarizes.
    assert assert_describes_its_file(summary, SUMMARY_TABLE).num_rows == 2
    assert summary.metadata[COLUMN_SCHEMA].value == SUMMARY_COLUMNS

    warehouse.withdraw(BTC_1H, JULY)
    empty = run(l1_imbalance_daily, partition_key(BTC_1H, JULY), resources, instance)
    assert dagster_keys(empty) == {
        ROW_COUNT: 0,
        URI: f"file://{warehouse.uri(BTC_1H, JULY, DAILY_TABLE)}",
        TABLE_NAME: DAILY_TABLE,
        COLUMN_SCHEMA: DAILY_COLUMNS,
    }


@pytest.mark.parametrize(
    ("assets_def", "schema"),
    [
        (l1_imbalance, L1_COLUMNS),
        (l1_imbalance_daily, DAILY_COLUMNS),
        (l1_imbalance_monthly_summary, SUMMARY_COLUMNS),
    ],
    ids=["l1_imbalance", "daily", "monthly_summary"],
)
def test_each_spec_has_owners_kinds_columns_and_its_code(assets_def, schema):
    (spec,) = assets_def.specs
    assert spec.owners == list(DEPLOYMENT.owners) and spec.owners
    assert spec.kinds == DEPLOYMENT.kinds
    assert {"parquet", "python"} < spec.kinds and len(spec.kinds & {"s3", "filesystem"}) == 1
    assert spec.metadata[COLUMN_SCHEMA] == schema
    (reference,) = spec.metadata["dagster/code_references"].code_references
    assert isinstance(reference, dg.LocalFileCodeReference)
    source = Path(reference.file_path)
    assert source.parent == ROOT / "aperiodic_assets" / "defs" / "assets"
    assert reference.line_number is not None
    assert source.read_text().splitlines()[reference.line_number - 1].lstrip().startswith("@dg.")


def test_the_component_links_each_asset_to_its_line_in_git():
    component = AperiodicL1Imbalance(git={"url": "https://github.com/acme/aperiodic-assets"})
    defs = component.build(component.deployment())
    for assets_def in defs.assets:
        (spec,) = assets_def.specs
        (reference,) = spec.metadata["dagster/code_references"].code_references
        assert isinstance(reference, dg.UrlCodeReference)
        base, line = reference.url.split("#L")
        path = base.removeprefix("https://github.com/acme/aperiodic-assets/tree/main/")
        assert path.startswith("aperiodic_assets/defs/assets/"), reference.url
        assert (ROOT / path).read_text().splitlines()[int(line) - 1].lstrip().startswith("@dg.")


def test_one_blocking_check_carries_every_rule():
    (spec,) = l1_imbalance.check_specs
    assert (spec.name, spec.blocking) == (VALIDATION_CHECK, True)
    # Its description says which checks reject a month and which only warn.
    for check in CHECKS:
        assert check.name in str(spec.description)
    assert ERROR_CHECKS and {c.name for c in CHECKS} - ERROR_CHECKS, "both kinds exist"


def spec_with(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dg.AssetSpec:
    """The l1_imbalance spec as the code location builds it with ``env`` (the component with no
    attributes, as definitions.py has it)."""
    for name in ("APERIODIC_OWNERS", "WAREHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    component = AperiodicL1Imbalance()
    (spec,) = component.build(component.deployment()).get_assets_def(L1_IMBALANCE).specs
    return spec


def test_owners_and_the_storage_kind_come_from_the_environment(monkeypatch):
    default = spec_with(monkeypatch, {})
    assert (default.owners, default.kinds) == (
        ["team:data-platform"],
        {"filesystem", "parquet", "python"},
    )
    bucket = spec_with(
        monkeypatch,
        {
            "APERIODIC_OWNERS": "team:quant-research, alice@example.com",
            "WAREHOUSE_URL": "s3://bucket/x",
        },
    )
    assert bucket.owners == ["team:quant-research", "alice@example.com"]
    assert bucket.kinds == {"parquet", "python", "s3"}
    with pytest.raises(
        ValueError, match="APERIODIC_OWNERS='quant-research': 'quant-research' is not an owner"
    ):
        spec_with(monkeypatch, {"APERIODIC_OWNERS": "quant-research"})


def steps_started(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}


# One run of both assets: Dagster notes their backfill policies differ, which is right here.
@pytest.mark.filterwarnings("ignore:Asset job __ephemeral_asset_job__ materializes assets")
@pytest.mark.parametrize(
    ("corruption", "failed_check", "downstream_runs"),
    [(None, None, True), ("gap", "completeness", True), ("broken_identity", "identities", False)],
    ids=["clean", "warn_only", "rejected"],
)
def test_downstream_in_the_same_run_runs_unless_a_blocking_check_failed(
    corruption, failed_check, downstream_runs, sandbox, resources, instance
):
    if corruption:
        sandbox.corrupt(corruption, exchange=BTC_1H.exchange, month=JULY.key)
    key = str(partition_key(BTC_1H, JULY))
    result = dg.materialize(
        [l1_imbalance, l1_imbalance_daily],
        partition_key=key,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.blocking) == (VALIDATION_CHECK, True)
    assert evaluation.passed == (failed_check is None)
    if failed_check:
        severity = "error" if failed_check in ERROR_CHECKS else "warn"
        assert evaluation.metadata["failed"].value == f"{failed_check} ({severity})"
        # Dagster blocks downstream on an ERROR failure only: a WARN one lets it run.
        assert evaluation.severity == dg.AssetCheckSeverity[severity.upper()]
    landed = {e.asset_key for e in result.get_asset_materialization_events()}
    assert result.success == downstream_runs
    assert (l1_imbalance_daily.op.name in steps_started(result)) == downstream_runs
    assert landed == ({L1_IMBALANCE, l1_imbalance_daily.key} if downstream_runs else set())
    if not downstream_runs:
        # The run fails with the asset's own message, not Dagster's generic blocking-check error.
        failure = result.failure_data_for_node("l1_imbalance")
        assert failure is not None and "check identities failed" in str(failure.error.message)


def test_a_ranged_run_writes_two_records_per_partition_and_marks_only_its_failure(
    sandbox, resources, instance
):
    """As deployed (PLANNED_SUBSET_ENV): one planned event for the range, then per partition one
    materialization and one check evaluation; a failed partition adds its observation and its
    own planned event, so the partitions view still shows it Failed."""
    keys = [str(partition_key(BTC_1H, m)) for m in (MAY, JUNE, JULY)]
    sandbox.corrupt("broken_identity", exchange=BTC_1H.exchange, month=JULY.key)
    result = ranged(resources, instance, keys)
    assert not result.success
    types = Counter(
        r.dagster_event_type.value for r in instance.all_logs(result.run_id) if r.dagster_event_type
    )
    assert {t: n for t, n in types.items() if t.startswith("ASSET")} == {
        "ASSET_MATERIALIZATION_PLANNED": 2,  # the range, then the failed partition
        "ASSET_CHECK_EVALUATION_PLANNED": 1,
        "ASSET_MATERIALIZATION": 2,
        "ASSET_CHECK_EVALUATION": 3,
        "ASSET_OBSERVATION": 1,  # the failed partition's outcome, for the sensor
    }
    status = get_and_update_asset_status_cache_value(
        instance, L1_IMBALANCE, l1_imbalance.partitions_def
    )
    assert status is not None
    failed = status.deserialize_failed_partition_subsets(l1_imbalance.partitions_def)
    assert list(failed.get_partition_keys()) == [keys[2]]
    assert instance.get_materialized_partitions(L1_IMBALANCE) == set(keys[:2])


def test_a_single_partition_run_that_dies_unexpectedly_shows_its_partition_failed(
    sandbox, resources, instance, monkeypatch
):
    """A single-partition run plans its partition itself before any work, so whatever ends it
    without a materialization and without the asset's own failure record (here a failure from
    deep inside the work, not retried so the test stays short) shows the partition Failed."""

    def broken(*args, **kwargs):
        raise dg.Failure("No space left on device", allow_retries=False)

    monkeypatch.setattr(l1_imbalance_module, "run_partition", broken)
    key = str(partition_key(BTC_1H, JULY))
    assert not materialize_partition(resources, instance, BTC_1H, JULY).success
    status = get_and_update_asset_status_cache_value(
        instance, L1_IMBALANCE, l1_imbalance.partitions_def
    )
    assert status is not None
    failed = status.deserialize_failed_partition_subsets(l1_imbalance.partitions_def)
    assert list(failed.get_partition_keys()) == [key]


def test_a_ranged_run_records_its_checks_blocking_as_declared(sandbox, resources, instance):
    keys = [str(partition_key(BTC_1H, m)) for m in (JUNE, JULY)]
    sandbox.corrupt("broken_identity", exchange=BTC_1H.exchange, month=JULY.key)
    result = ranged(resources, instance, keys)
    assert not result.success
    failure = result.failure_data_for_node("l1_imbalance")
    assert failure is not None and "1 of 2 partitions failed" in str(failure.error.message)
    evaluations = result.get_asset_check_evaluations()
    assert sorted(str(e.partition) for e in evaluations) == sorted(keys)
    assert all(e.blocking and e.check_name == VALIDATION_CHECK for e in evaluations)
    assert [
        (e.partition, e.severity, e.metadata["failed"].value) for e in evaluations if not e.passed
    ] == [(keys[1], dg.AssetCheckSeverity.ERROR, "identities (error)")]
    assert [str(e.partition) for e in result.get_asset_materialization_events()] == [keys[0]]
