"""The real service's file shapes, materialized through Dagster from the in-process sandbox.

Tolerant reader, strict warehouse: every shape the real files have been seen in (hive columns,
shuffled rows, float32 metrics, other time units, a UTC zone, an unknown column, a redirect, a
gzip-encoded object) lands as exactly the canonical file the clean data gives, byte for byte
(float32 only at its own precision), and the materialization says what was normalized; a file
of another partition, a plan error and a redirect off the allow-list fail with their cause named,
and nothing reaches the warehouse. A month Aperiodic withdraws is moved aside only once the
sensor saw two empty listings an interval apart, and downstream follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from aperiodic_assets.core import watch
from aperiodic_assets.core.clock import ENV as CLOCK_ENV
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.schema import METRIC, METRIC_COLUMNS, SCHEMA, TIME
from aperiodic_assets.core.universe import Universe
from aperiodic_assets.core.warehouse import QUARANTINE, Warehouse
from aperiodic_assets.defs._dagster_internals import backfill_subset_keys
from aperiodic_assets.defs.assets.downstream import DAILY_TABLE, SUMMARY_TABLE
from aperiodic_assets.defs.assets.l1_imbalance import (
    OUTCOME,
    WITHDRAW_CONFIRMED,
    WITHDRAW_TAG,
    WITHDRAWN,
)
from aperiodic_assets.defs.assets.reporting import NORMALIZED, WARNINGS_TAG
from aperiodic_assets.defs.automation import SensorSettings, evaluate
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.defs.resources import AperiodicResource, RetrySettings
from aperiodic_assets.sandbox import Sandbox
from aperiodic_assets.sandbox.shapes import EXTRA_COLUMN, other_exchange

from .conftest import BTC_1H, FAST_RETRY, KEY, TODAY, materialize_partition, month_table
from .deployed import DEPLOYMENT, l1_imbalance, l1_imbalance_daily, l1_imbalance_monthly_summary
from .loopback import serving

#: About how long this module's tests take together: on a parallel run the longest modules
#: start first (see conftest).
pytestmark = pytest.mark.slow(seconds=75)

JUNE, JULY, AUGUST, SEPTEMBER = (Month(2026, m) for m in (6, 7, 8, 9))
#: The month in progress on TODAY: daily files up to the day before.
CURRENT = Month.of(TODAY)
#: The days of August 2026 the backfill wrote with hive columns.
HIVE_DAYS = list(range(1, 10))
GRAPH = [l1_imbalance, l1_imbalance_daily, l1_imbalance_monthly_summary]
#: The sensor as these tests run it: one instrument, one month, a one-second interval.
SENSOR = SensorSettings(interval_s=1, lookback_months=0)
#: The sensor's view: BTC_1H alone, with SENSOR's settings.
WATCHING = replace(
    DEPLOYMENT, universe=Universe((BTC_1H,), DEPLOYMENT.universe.start_month), sensor=SENSOR
)


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs judge months at the sandbox's date, not the machine's."""
    monkeypatch.setenv(CLOCK_ENV, f"{TODAY.isoformat()}T12:00:00")


# --- helpers ------------------------------------------------------------------------------------


def labels(month: Month, days: list[int]) -> list[str]:
    return [f"{month.key}-{d:02d}" for d in days]


def daily_labels(month: Month) -> list[str]:
    """The labels of a daily month's files published by TODAY."""
    last = min(month.last_day, TODAY - timedelta(days=1))
    return labels(month, list(range(1, last.day + 1)))


def served(month: Month, float32: bool = False) -> pa.Table:
    """The clean data the sandbox generates for ``month``, cut to what is published by TODAY;
    with ``float32``, the metrics as a float32 file holds them, read back as float64."""
    table = month_table(BTC_1H, month)
    published = pa.scalar(datetime.combine(TODAY, datetime.min.time()), pa.timestamp("us"))
    table = table.filter(pc.less(table[TIME], published))
    if float32:
        for name in METRIC_COLUMNS:
            column = table[name].cast(pa.float32()).cast(pa.float64())
            table = table.set_column(table.column_names.index(name), name, column)
    return table


def materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    (event,) = result.get_asset_materialization_events()
    return event.step_materialization_data.materialization


def failure(result: dg.ExecuteInProcessResult) -> str:
    """The message the run failed with."""
    assert not result.success
    (event,) = result.get_step_failure_events()
    return event.step_failure_data.error.message


def outcome(result: dg.ExecuteInProcessResult) -> str:
    """What the run recorded for the sensor about the partition that failed."""
    (event,) = result.get_asset_observation_events()
    return event.asset_observation_data.asset_observation.metadata[OUTCOME].value


def canonical(path: str | Path) -> pa.Table:
    """A warehouse file, read as stored: exactly SCHEMA, strictly increasing time."""
    stored = pq.ParquetFile(path).read()
    assert stored.schema.equals(SCHEMA), f"{path}: {stored.schema}"
    assert stored.schema.field(TIME).type == pa.timestamp("us")  # naive: no zone
    times = stored[TIME].to_numpy().astype("int64")
    assert (np.diff(times) > 0).all(), f"{path}: not sorted by time"
    return stored


def assert_values(stored: pa.Table, expected: pa.Table) -> None:
    assert stored.num_rows == expected.num_rows
    for name in SCHEMA.names:
        np.testing.assert_array_equal(stored[name].to_numpy(), expected[name].to_numpy(), name)


def table_files(warehouse: Warehouse, table_name: str = METRIC) -> list[Path]:
    """Every file of a warehouse table (not quarantine, not withdrawn)."""
    return sorted((Path(warehouse.url) / table_name).rglob("*.parquet"))


def allowing(resources: dict, *hosts: str) -> dict:
    """``resources`` with ``hosts`` added to the client's download allow-list."""
    base = resources["aperiodic"]
    return {
        **resources,
        "aperiodic": AperiodicResource(
            api_url=base.api_url,
            api_key=KEY,
            retry=RetrySettings(**asdict(FAST_RETRY)),
            allowed_hosts=[*base.allowed_hosts, *hosts],
        ),
    }


def download_faults(sandbox: Sandbox) -> list[str | None]:
    return [r["fault"] for r in sandbox.requests() if r["kind"] == "download"]


class Sensor:
    """The new-month sensor over BTC_1H and one month, tick after tick, cursor carried."""

    def __init__(self, instance: dg.DagsterInstance, resources: dict, month: Month) -> None:
        self.instance, self.aperiodic, self.month = instance, resources["aperiodic"], month
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        client = self.aperiodic.get_client(max_connections=SENSOR.concurrency)
        try:
            context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
            result = evaluate(context, client, WATCHING, self.month)
        finally:
            client.close()
        self.cursor = result.cursor
        return list(result.run_requests or [])

    def wait_an_interval(self) -> None:
        """Let a sensor interval pass: the next tick's listing is one interval after this one."""
        time.sleep(SENSOR.interval_s)


# --- accepted shapes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One way the real service has served a month, and what the materialization must say."""

    id: str
    month: Month
    serve: Callable[[Sandbox], None]
    #: A fragment of the materialization's ``normalized`` text.
    normalized: str
    #: The files the ``normalized_files`` table lists.
    changed: list[str]
    float32: bool = False
    #: Faults the sandbox's log shows on the downloads.
    faults: tuple[str, ...] = ()
    #: Hosts the client must be allowed to download from.
    hosts: tuple[str, ...] = ()


CANONICAL = "none: every file was in the canonical form"
#: The current month's files so far.
IN_PROGRESS = daily_labels(CURRENT)
SHAPES = [
    Shape(
        "hive_columns",
        AUGUST,
        lambda sb: sb.corrupt("hive_columns", month=AUGUST, days=HIVE_DAYS),
        "identity columns (exchange, symbol, interval, timestamp) checked and dropped from"
        " 9 files (2026-08-01 … 2026-08-09)",
        labels(AUGUST, HIVE_DAYS),
    ),
    Shape(
        "unsorted_monthly",
        JUNE,
        lambda sb: sb.corrupt("unsorted", month=JUNE),
        "rows sorted by time in file 2026-06",
        ["2026-06"],
    ),
    Shape(
        "unsorted_daily",
        SEPTEMBER,
        lambda sb: sb.corrupt("unsorted", month=SEPTEMBER),
        "rows sorted by time in 30 files (2026-09-01 … 2026-09-30)",
        daily_labels(SEPTEMBER),
    ),
    Shape(
        "float32",
        JULY,
        lambda sb: sb.corrupt("float32"),
        "metrics float32->float64 in file 2026-07; identities judged at float32 precision",
        ["2026-07"],
        float32=True,
    ),
    Shape(
        "time_s",
        AUGUST,
        lambda sb: sb.corrupt("time_s", days=[10, 11]),
        # Parquet has no second unit: the file holds milliseconds.
        "time timestamp[ms]->timestamp[us] in 2 files (2026-08-10, 2026-08-11)",
        labels(AUGUST, [10, 11]),
    ),
    Shape(
        "time_ms",
        JUNE,
        lambda sb: sb.corrupt("time_ms"),
        "time timestamp[ms]->timestamp[us] in file 2026-06",
        ["2026-06"],
    ),
    Shape(
        "time_ns_current_month",
        CURRENT,
        lambda sb: sb.corrupt("time_ns"),
        f"time timestamp[ns]->timestamp[us] in {len(IN_PROGRESS)} files"
        f" ({IN_PROGRESS[0]} … {IN_PROGRESS[-1]})",
        IN_PROGRESS,
    ),
    Shape(
        "time_utc",
        JULY,
        lambda sb: sb.corrupt("time_utc"),
        "time timestamp[us, tz=UTC]->timestamp[us] in file 2026-07",
        ["2026-07"],
    ),
    Shape(
        "redirect_same_host",
        JULY,
        lambda sb: sb.inject("redirect", -1),
        CANONICAL,
        [],
        faults=("redirect",),
    ),
    Shape(
        "redirect_to_another_allowed_host",
        SEPTEMBER,
        # The same sandbox under another name: a host only the allow-list entry lets through.
        lambda sb: sb.inject("redirect", -1, base=f"http://localhost:{sb.port}", hops=2),
        CANONICAL,
        [],
        faults=("redirect",),
        hosts=("localhost",),
    ),
    Shape("gzip", JULY, lambda sb: sb.inject("gzip", -1), CANONICAL, [], faults=("gzip",)),
    Shape(
        "gzip_behind_a_redirect",
        AUGUST,
        lambda sb: (sb.inject("redirect", -1), sb.inject("gzip", -1)),
        CANONICAL,
        [],
        faults=("redirect", "gzip"),
    ),
]


@pytest.mark.parametrize("shape", SHAPES, ids=[s.id for s in SHAPES])
def test_each_real_file_shape_lands_as_the_canonical_month(
    shape: Shape, sandbox, resources, instance, warehouse, tmp_path
):
    shape.serve(sandbox)
    sandbox.reset_log()
    resources = allowing(resources, *shape.hosts)
    result = materialize_partition(resources, instance, BTC_1H, shape.month)
    assert result.success
    meta = {k: v.value for k, v in materialization(result).metadata.items()}

    expected = served(shape.month, shape.float32)
    assert meta["path"] == warehouse.uri(BTC_1H, shape.month)
    assert_values(canonical(meta["path"]), expected)
    # Byte for byte what the clean data (at the file's precision) gives.
    clean = Warehouse(tmp_path / "clean").write(BTC_1H, shape.month, expected)
    assert meta["sha256"] == clean.sha256 and meta["rows"] == clean.rows

    assert shape.normalized in meta[NORMALIZED], meta[NORMALIZED]
    listed = [r.data["file"] for r in meta["normalized_files"].records] if shape.changed else []
    assert listed == shape.changed
    assert "normalized_files" in meta or not shape.changed
    assert meta["warnings"] == "none"
    assert set(shape.faults) <= set(download_faults(sandbox))

    # What the month was built from is what the sensor's probes see: nothing is asked again.
    assert Sensor(instance, resources, shape.month).tick() == []


def test_extra_column_lands_and_a_warn_check_names_the_column_and_file(
    sandbox, resources, instance, warehouse
):
    sandbox.corrupt("extra_column", month=AUGUST, days=[5])
    result = materialize_partition(resources, instance, BTC_1H, AUGUST)
    assert result.success
    mat = materialization(result)
    assert_values(canonical(mat.metadata["path"].value), served(AUGUST))

    where = f"{EXTRA_COLUMN} (double) in file 2026-08-05"
    (drift,) = [c for c in result.get_asset_check_evaluations() if not c.passed]
    assert (drift.check_name, drift.metadata["failed"].value) == (
        "validation",
        "schema_drift (warn)",
    )
    assert drift.severity == dg.AssetCheckSeverity.WARN
    assert where in drift.description
    assert mat.tags[WARNINGS_TAG] == "schema_drift"
    assert where in mat.metadata["warnings"].value
    normalized = mat.metadata[NORMALIZED].value
    assert f"extra column {EXTRA_COLUMN} dropped from file 2026-08-05" in normalized


def test_every_shape_in_turn_on_one_partition_keeps_every_warehouse_file_canonical(
    sandbox, resources, instance, warehouse
):
    """Shapes stack as a real object's can (hive columns and unsorted and float32 ...); after
    each one the partition is materialized again and every file of the table is read back."""
    assert materialize_partition(resources, instance, BTC_1H, JUNE).success
    shapes = [
        ("hive_columns", {"days": HIVE_DAYS}, "identity columns"),
        ("unsorted", {}, "rows sorted by time"),
        ("float32", {}, "float32->float64"),
        ("time_s", {}, "timestamp[ms]->"),
        ("time_ms", {}, "timestamp[ms]->"),
        ("time_ns", {}, "timestamp[ns]->"),
        ("time_utc", {}, "tz=UTC"),
        ("extra_column", {}, EXTRA_COLUMN),
    ]
    steps = [(m, lambda m=m, kw=kw: sandbox.corrupt(m, **kw), said) for m, kw, said in shapes]
    steps += [(f, lambda f=f: sandbox.inject(f, -1), None) for f in ("redirect", "gzip")]
    versions, drifted = set(), False
    for name, serve, said in steps:
        serve()
        sandbox.reset_log()
        result = materialize_partition(resources, instance, BTC_1H, AUGUST)
        assert result.success, name
        meta = materialization(result).metadata
        if said is None:
            assert name in download_faults(sandbox), name
        else:
            assert said in meta[NORMALIZED].value, (name, meta[NORMALIZED].value)
        drifted = drifted or said == EXTRA_COLUMN
        warned = "schema_drift: extra_columns" if drifted else "none"
        assert meta["warnings"].value.startswith(warned), (name, meta["warnings"].value)
        files = table_files(warehouse)
        assert [f.parent.name for f in files] == ["month=06", "month=08"], name
        for path in files:
            canonical(path)
        float32 = name not in ("hive_columns", "unsorted")
        assert_values(canonical(meta["path"].value), served(AUGUST, float32))
        versions.add((float32, meta["sha256"].value))
    # The file changes only when the values do: once, at float32.
    assert len(versions) == 2


# --- rejected -----------------------------------------------------------------------------------


def test_hive_columns_of_another_partition_are_rejected_naming_the_file_and_column(
    sandbox, resources, instance, warehouse
):
    sandbox.corrupt("hive_columns_wrong", month=AUGUST, days=HIVE_DAYS)
    result = materialize_partition(resources, instance, BTC_1H, AUGUST)
    message = failure(result)
    assert (
        f"file 2026-08-01 does not belong to this partition: column exchange holds"
        f" {other_exchange(BTC_1H.exchange)!r} in 24 of 24 rows, expected {BTC_1H.exchange!r}"
    ) in message
    assert "Nothing was written to the warehouse" in message
    assert outcome(result) == "rejected"
    assert result.get_asset_materialization_events() == []
    assert warehouse.partitions() == [] and table_files(warehouse) == []
    # The raw files are kept, as served, beside the table.
    quarantined = list((Path(warehouse.url) / QUARANTINE).rglob("2026-08-01.parquet"))
    assert len(quarantined) == 1 and "exchange" in pq.read_schema(quarantined[0]).names


def test_a_plan_error_fails_the_run_naming_the_interval_exchange_and_plan(
    sandbox, resources, instance, warehouse
):
    sandbox.inject("plan", -1)
    result = materialize_partition(resources, instance, BTC_1H, JULY)
    message = failure(result)
    assert "HTTP 403 [interval_not_in_plan]" in message
    assert "Your plan does not include this interval (interval 1h requires a higher plan)" in (
        message
    )
    assert "plan does not include l1_imbalance at interval 1h on binance-futures" in message
    assert outcome(result) == "failed"
    assert [(r["kind"], r["status"]) for r in sandbox.requests()] == [("list", 403)]
    assert warehouse.partitions() == [] and not (Path(warehouse.url) / QUARANTINE).exists()


def test_a_redirect_off_the_allow_list_fails_and_nothing_is_requested_there(
    sandbox, resources, instance, warehouse
):
    with serving() as elsewhere:
        # 127.0.0.1 is allowed (the API's host); the name localhost is not.
        base = f"http://localhost:{elsewhere.port}"
        sandbox.inject("redirect", -1, base=base)
        result = materialize_partition(resources, instance, BTC_1H, JULY)
        message = failure(result)
        assert elsewhere.seen == []
    assert "file 2026-07: a redirect points at http://localhost, which is not an allowed" in (
        message
    )
    assert "nothing was requested from it" in message
    assert outcome(result) == "failed"
    # The 302 only: no request followed it, to that host or any other.
    downloads = [(r["status"], r["fault"]) for r in sandbox.requests() if r["kind"] == "download"]
    assert downloads == [(302, "redirect")]
    assert warehouse.partitions() == [] and table_files(warehouse) == []


# --- withdrawn months ---------------------------------------------------------------------------


def run_daily(key: str, resources: dict, instance: dg.DagsterInstance) -> dg.AssetMaterialization:
    result = dg.materialize(
        GRAPH,
        selection=[l1_imbalance_daily],
        partition_key=key,
        resources=resources,
        instance=instance,
    )
    return materialization(result)


def run_request(
    request: dg.RunRequest, ranged: bool, resources: dict, instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    """What the backfill daemon makes of the sensor's request: a ranged run of its one key (as
    BackfillPolicy.single_run does), or a single-partition run."""
    (key,) = backfill_subset_keys(request)
    if ranged:
        tags = {**request.tags, ASSET_PARTITION_RANGE_START_TAG: key}
        tags[ASSET_PARTITION_RANGE_END_TAG] = key
        return dg.materialize([l1_imbalance], tags=tags, resources=resources, instance=instance)
    return dg.materialize(
        [l1_imbalance], partition_key=key, tags=request.tags, resources=resources, instance=instance
    )


@pytest.mark.parametrize("ranged", [True, False], ids=["ranged_run", "single_partition_run"])
def test_a_withdrawn_month_moves_aside_after_two_empty_listings_and_downstream_follows(
    ranged, sandbox, resources, instance, warehouse
):
    key = str(partition_key(BTC_1H, SEPTEMBER))
    assert materialize_partition(resources, instance, BTC_1H, SEPTEMBER).success
    assert run_daily(key, resources, instance).metadata["rows"].value == 30
    original = warehouse.read_bytes(BTC_1H, SEPTEMBER)
    sensor = Sensor(instance, resources, SEPTEMBER)
    assert sensor.tick() == [], "up to date"

    sandbox.inject("withdraw", -1, month=SEPTEMBER)
    assert sensor.tick() == [], "one empty listing is not a withdrawal"
    assert warehouse.read_bytes(BTC_1H, SEPTEMBER) == original
    sensor.wait_an_interval()
    (request,) = sensor.tick()
    assert request.tags[WITHDRAW_TAG] == WITHDRAW_CONFIRMED
    assert backfill_subset_keys(request) == [key]

    result = run_request(request, ranged, resources, instance)
    assert result.success
    mat = materialization(result)
    assert mat.partition == key
    assert mat.metadata["rows"].value == 0 and mat.metadata[WITHDRAWN].value is True
    (moved,) = warehouse.withdrawn(BTC_1H, SEPTEMBER)
    assert mat.metadata["withdrawn_to"].value == moved
    assert moved.startswith(
        f"{warehouse.url}/_withdrawn/{warehouse.relative_dir(BTC_1H, SEPTEMBER)}/"
    )
    # Moved, not deleted: the same bytes, out of the table's reach.
    assert Path(moved).read_bytes() == original
    assert not warehouse.exists(BTC_1H, SEPTEMBER) and table_files(warehouse) == []
    assert sensor.tick() == [], "recorded as withdrawn: nothing more to do"

    daily = run_daily(key, resources, instance)
    assert daily.metadata["rows"].value == 0
    assert daily.metadata["upstream"].value == (
        f"withdrawn: the l1_imbalance partition was moved to {moved}"
    )
    assert table_files(warehouse, DAILY_TABLE) == []
    assert len(warehouse.withdrawn(BTC_1H, SEPTEMBER, DAILY_TABLE)) == 1

    # Aperiodic lists the month again: it is requested and lands as before.
    sandbox.clear_faults()
    (again,) = sensor.tick()
    assert WITHDRAW_TAG not in again.tags and backfill_subset_keys(again) == [key]
    assert run_request(again, ranged, resources, instance).success
    assert warehouse.read_bytes(BTC_1H, SEPTEMBER) == original


def test_a_one_off_empty_listing_changes_nothing(sandbox, resources, instance, warehouse):
    assert materialize_partition(resources, instance, BTC_1H, SEPTEMBER).success
    original = warehouse.read_bytes(BTC_1H, SEPTEMBER)
    sensor = Sensor(instance, resources, SEPTEMBER)
    sandbox.inject("withdraw", 1, month=SEPTEMBER)
    assert sensor.tick() == []
    sensor.wait_an_interval()
    assert sensor.tick() == [], "listed again: the first empty listing is forgotten"
    sensor.wait_an_interval()
    # A second glitch an interval after the first does not pair up with it.
    sandbox.inject("withdraw", 1, month=SEPTEMBER)
    assert sensor.tick() == []
    sensor.wait_an_interval()
    assert sensor.tick() == []
    assert warehouse.read_bytes(BTC_1H, SEPTEMBER) == original
    assert warehouse.withdrawn(BTC_1H, SEPTEMBER) == []

    # Even a run tagged as a confirmed withdrawal moves nothing while the month is listed.
    confirmed = {WITHDRAW_TAG: WITHDRAW_CONFIRMED}
    result = dg.materialize(
        [l1_imbalance],
        partition_key=str(partition_key(BTC_1H, SEPTEMBER)),
        tags=confirmed,
        resources=resources,
        instance=instance,
    )
    assert result.success
    assert WITHDRAWN not in materialization(result).metadata
    assert warehouse.read_bytes(BTC_1H, SEPTEMBER) == original
    assert warehouse.withdrawn(BTC_1H, SEPTEMBER) == []


# --- downstream of a UTC-aware source -----------------------------------------------------------


def test_daily_and_summary_of_a_utc_aware_source_equal_the_naive_ones(
    sandbox, resources, instance, warehouse
):
    key = str(partition_key(BTC_1H, JULY))

    def downstream() -> tuple[pa.Table, pa.Table]:
        run_daily(key, resources, instance)
        result = dg.materialize(
            GRAPH,
            selection=[l1_imbalance_monthly_summary],
            partition_key=JULY.key,
            resources=resources,
            instance=instance,
        )
        assert result.success
        return (
            pq.read_table(warehouse.uri(BTC_1H, JULY, DAILY_TABLE)),
            pq.read_table(warehouse.uri(None, JULY, SUMMARY_TABLE)),
        )

    naive = materialization(materialize_partition(resources, instance, BTC_1H, JULY))
    daily, summary = downstream()
    assert daily["date"].to_pylist() == [date(2026, 7, d) for d in range(1, 32)]
    assert set(daily["rows"].to_pylist()) == {24}
    assert summary["rows"].to_pylist() == [31 * 24]

    sandbox.corrupt("time_utc", month=JULY)
    aware = materialization(materialize_partition(resources, instance, BTC_1H, JULY))
    assert "tz=UTC" in aware.metadata[NORMALIZED].value
    assert aware.metadata["sha256"].value == naive.metadata["sha256"].value
    aware_daily, aware_summary = downstream()
    assert aware_daily.equals(daily)
    assert aware_summary.equals(summary)


def test_a_rejected_month_is_requested_again_once_aperiodic_fixes_its_files(
    sandbox, resources, instance, warehouse
):
    sandbox.corrupt("hive_columns_wrong", month=AUGUST, days=HIVE_DAYS)
    assert outcome(materialize_partition(resources, instance, BTC_1H, AUGUST)) == "rejected"
    sensor = Sensor(instance, resources, AUGUST)
    assert sensor.tick() == [], "the rejected files are still the listed ones"
    sandbox.clear_corruption()
    (request,) = sensor.tick()
    assert backfill_subset_keys(request) == [str(partition_key(BTC_1H, AUGUST))]
    assert run_request(request, True, resources, instance).success
    assert_values(canonical(warehouse.uri(BTC_1H, AUGUST)), served(AUGUST))
    assert sensor.tick() == []


def test_a_withdrawal_whose_file_was_already_moved_is_recorded(
    sandbox, resources, instance, warehouse, monkeypatch
):
    """A withdrawal run that moved the file and died before its materialization was recorded
    (or any run after a manual move): the next confirmed run must still record it."""
    monkeypatch.setattr(watch, "REQUEST_EXPIRY_S", 0.0)
    assert materialize_partition(resources, instance, BTC_1H, SEPTEMBER).success
    sensor = Sensor(instance, resources, SEPTEMBER)
    assert sensor.tick() == []
    moved = warehouse.withdraw(BTC_1H, SEPTEMBER)  # the run that died after the move
    sandbox.inject("withdraw", -1, month=SEPTEMBER)
    assert sensor.tick() == []
    sensor.wait_an_interval()
    (request,) = sensor.tick()
    result = run_request(request, True, resources, instance)
    assert result.success
    events = result.get_asset_materialization_events()
    assert len(events) == 1, "the confirmed withdrawal is not recorded"
    mat = events[0].step_materialization_data.materialization
    assert mat.metadata[WITHDRAWN].value is True and mat.metadata["withdrawn_to"].value == moved
    assert sensor.tick() == [], "recorded as withdrawn: the sensor stops asking"


def test_downstream_of_the_month_in_progress_follows_the_clock(
    sandbox, resources, instance, warehouse
):
    """Days after the clock's yesterday are not days yet, whatever the machine's date."""
    yesterday = TODAY - timedelta(days=1)
    in_progress = Month.of(yesterday)
    key = str(partition_key(BTC_1H, in_progress))
    assert materialize_partition(resources, instance, BTC_1H, in_progress).success
    daily = run_daily(key, resources, instance)
    dg.materialize(
        GRAPH,
        selection=[l1_imbalance_monthly_summary],
        partition_key=in_progress.key,
        resources=resources,
        instance=instance,
    )
    summary = pq.read_table(warehouse.uri(None, in_progress, SUMMARY_TABLE)).to_pylist()
    assert daily.metadata["rows"].value == yesterday.day
    assert summary[0]["completeness"] == 1.0
