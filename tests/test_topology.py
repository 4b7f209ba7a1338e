"""The production topology on one machine: Postgres behind PgBouncer, a code server, the daemon
and the webserver.

``dagster_home/dagster.prod.yaml`` is the instance config, with one difference isolated in
:func:`local_instance_config`: runs start as local subprocesses instead of ECS tasks. Storage is
a real PostgreSQL cluster that every Dagster process (webserver, daemon, code server, runs, the
CLI) reaches through a PgBouncer in transaction mode, as in production; compute logs and the
warehouse go to S3 (a moto server on 127.0.0.1), the code location is served by
``dagster code-server start`` over gRPC, and the sandbox API runs as its own process. Everything
the tests check, they read from Postgres directly.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest
import s3fs
from dagster._core.scheduler.instigation import TickStatus
from dagster._serdes import deserialize_value

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.sandbox import RemoteSandbox
from aperiodic_assets.tools.demo import SANDBOX_KEY, sandbox_process

from .conftest import BTC_1H
from .dagster_services import (
    BIN,
    REPO_ROOT,
    DagsterServices,
    Service,
    dagster_services,
    free_port,
    load_yaml,
    start_service,
)
from .deployed import month_partitions
from .postgres_server import Postgres, pgbouncer_pool, pgbouncer_show, postgres_cluster

#: About how long this module's tests take together: on a parallel run the longest modules
#: start first (see conftest).
pytestmark = pytest.mark.slow(seconds=150)

ETH_1H = Instrument("binance-futures", "perpetual-ETH-USDT:USDT", "1h", "exchange")
OKX_1H = Instrument("okx-perps", "perpetual-BTC-USDT:USDT", "1h", "exchange")
LOCATION = "aperiodic_assets"
LOG_BUCKET = "dagster-compute-logs"
WAREHOUSE_BUCKET = "aperiodic-topology"
SENSOR_INTERVAL_S = 5

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


def local_instance_config() -> dict[str, Any]:
    """dagster.prod.yaml with the one local difference: Dagster's default run launcher."""
    config = load_yaml(REPO_ROOT / "dagster_home" / "dagster.prod.yaml")
    config["run_launcher"] = {
        "module": "dagster._core.launcher.default_run_launcher",
        "class": "DefaultRunLauncher",
    }
    return config


@dataclass
class Topology:
    services: DagsterServices
    postgres: Postgres  # the cluster itself, for the tests' own queries
    pooler: Postgres  # PgBouncer in front of it, which the Dagster processes connect to
    sandbox: RemoteSandbox

    def sql(self, query: str, *args: Any) -> list[tuple]:
        with psycopg2.connect(self.postgres.url) as conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall()

    def dagster(self, *args: str) -> str:
        """The dagster CLI against this instance (what an operator runs)."""
        result = subprocess.run(
            [str(BIN / "dagster"), *args],
            env={**self.services.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout


def wait_for_code_server(server: Service, port: int, timeout: float = 120.0) -> None:
    """Until the gRPC code server answers a health check (it loads the definitions first)."""
    deadline = time.monotonic() + timeout
    while subprocess.run(
        [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)],
        capture_output=True,
    ).returncode:
        if not server.alive or time.monotonic() > deadline:
            raise RuntimeError(f"the code server did not come up:\n{server.log_tail()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def topology(tmp_path_factory, s3_endpoint: str) -> Iterator[Topology]:
    home = tmp_path_factory.mktemp("dagster_home")
    aws = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    s3 = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key="testing", secret="testing")
    for bucket in (LOG_BUCKET, WAREHOUSE_BUCKET):
        if not s3.exists(bucket):
            s3.mkdir(bucket)
    with (
        postgres_cluster() as pg,
        pgbouncer_pool(pg) as pooler,
        sandbox_process([]) as api_url,
    ):
        env = {
            **aws,
            **pooler.env,
            "DAGSTER_HOME": str(home),
            "DAGSTER_COMPUTE_LOG_BUCKET": LOG_BUCKET,
            "APERIODIC_API_KEY_SECRET_ARN": "unused-by-the-local-launcher",
            "APERIODIC_API_URL": api_url,
            "APERIODIC_API_KEY": SANDBOX_KEY,
            "WAREHOUSE_URL": f"s3://{WAREHOUSE_BUCKET}/warehouse",
            "APERIODIC_SENSOR_INTERVAL_S": str(SENSOR_INTERVAL_S),
        }
        port = free_port()
        code_server = start_service(
            "code-server",
            [
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                "aperiodic_assets.definitions",
                "--location-name",
                LOCATION,
            ],
            env=env,
            cwd=REPO_ROOT,
            log_dir=home,
        )
        wait_for_code_server(code_server, port)
        workspace = {
            "load_from": [
                {"grpc_server": {"host": "127.0.0.1", "port": port, "location_name": LOCATION}}
            ]
        }
        try:
            with dagster_services(
                home / "instance",
                instance_config=local_instance_config(),
                workspace=workspace,
                env=env,
                cwd=REPO_ROOT,
            ) as services:
                yield Topology(services, pg, pooler, RemoteSandbox(api_url))
        finally:
            code_server.stop()


def test_a_ui_backfill_completes_and_everything_is_in_postgres(topology: Topology):
    services = topology.services
    months = [Month(2026, 7), Month(2026, 8), Month(2026, 9)]
    keys = [str(partition_key(i, m)) for i in (BTC_1H, ETH_1H) for m in months]
    backfill_id = services.launch_backfill(["aperiodic", "l1_imbalance"], keys)
    backfill = services.wait_backfill(backfill_id, timeout=150)
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill

    runs = topology.sql(
        "select r.run_id, r.status from runs r join run_tags t on t.run_id = r.run_id"
        " where t.key = 'dagster/backfill' and t.value = %s",
        backfill_id,
    )
    assert runs and {status for _, status in runs} == {"SUCCESS"}
    materialized = topology.sql(
        "select partition from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'"
        " and asset_key = %s and run_id = any(%s)",
        json.dumps(["aperiodic", "l1_imbalance"]),
        [run_id for run_id, _ in runs],
    )
    assert sorted(p for (p,) in materialized) == sorted(keys)
    events = topology.sql(
        "select count(*) from event_logs where run_id = any(%s)", [r for r, _ in runs]
    )
    assert events[0][0] > len(keys)
    logs = s3fs.S3FileSystem(
        endpoint_url=services.env["AWS_ENDPOINT_URL"], key="testing", secret="testing"
    ).find(LOG_BUCKET)
    assert logs, "compute logs were uploaded to S3"

    # Every Dagster process reached Postgres through PgBouncer: dagster-postgres opens a
    # connection per storage operation (NullPool), so direct connections would have started at
    # least one Postgres session per event these runs stored (and more for the daemon's and the
    # webserver's work); through the pooler, Postgres saw only its few server connections (and
    # this test's own), which carried all of those transactions.
    (pool,) = [p for p in pgbouncer_show(topology.pooler, "POOLS") if p["database"] == "dagster"]
    assert pool["pool_mode"] == "transaction"
    (stats,) = [s for s in pgbouncer_show(topology.pooler, "STATS") if s["database"] == "dagster"]
    (sessions,) = topology.sql(
        "select sessions from pg_stat_database where datname = current_database()"
    )[0]
    assert sessions < events[0][0] < stats["total_xact_count"], (sessions, events, stats)


def test_the_pool_bounds_api_work_across_runs(topology: Topology):
    services = topology.services
    topology.dagster("instance", "concurrency", "set", "aperiodic_api", "1")
    topology.sandbox.reset_log()
    run_ids = []
    for instrument in (BTC_1H, ETH_1H, OKX_1H):
        key = partition_key(instrument, Month(2026, 6))
        tags = [{"key": "dagster/partition", "value": str(key)}] + [
            {"key": f"dagster/partition/{dim}", "value": value}
            for dim, value in key.keys_by_dimension.items()
        ]
        result = services.graphql(
            LAUNCH_RUN,
            {
                "executionParams": {
                    "selector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": "__repository__",
                        "jobName": "l1_imbalance_job",
                    },
                    "executionMetadata": {"tags": tags},
                }
            },
        )["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        run_ids.append(result["run"]["runId"])

    def finished() -> bool:
        rows = topology.sql("select status from runs where run_id = any(%s)", run_ids)
        return len(rows) == 3 and all(s in ("SUCCESS", "FAILURE", "CANCELED") for (s,) in rows)

    services.wait_for("the three runs", finished, timeout=150)
    statuses = topology.sql("select status from runs where run_id = any(%s)", run_ids)
    assert {s for (s,) in statuses} == {"SUCCESS"}

    windows = {}
    for request in topology.sandbox.requests():
        if request.get("client") in run_ids and request["kind"] in ("list", "download"):
            first, last = windows.get(request["client"], (request["t"], request["t"]))
            windows[request["client"]] = (min(first, request["t"]), max(last, request["t"]))
    assert set(windows) == set(run_ids), "every run did API work, tagged with its run id"
    ordered = sorted(windows.values())
    assert all(
        a_end < b_start for (_, a_end), (b_start, _) in zip(ordered, ordered[1:], strict=False)
    ), f"API work of two runs overlapped: {ordered}"
    started = topology.sql("select start_time from runs where run_id = any(%s)", run_ids)
    assert len(started) == 3


SENSOR_BACKFILLS = """
{ partitionBackfillsOrError(limit: 20) {
    ... on PartitionBackfills { results { id status numPartitions tags { key value } } }
} }
"""


def sensor_state(topology: Topology) -> tuple[str | None, list]:
    """The sensor's stored cursor and its ticks (newest first), straight from Postgres."""
    cursor = None
    for (body,) in topology.sql("select instigator_body from instigators"):
        state = deserialize_value(body)
        if state.name == "new_month_sensor" and state.instigator_data is not None:
            cursor = state.instigator_data.cursor
    ticks = [
        deserialize_value(body)
        for (body,) in topology.sql("select tick_body from job_ticks order by id desc")
    ]
    return cursor, [t for t in ticks if t.instigator_name == "new_month_sensor"]


def test_the_sensor_cursor_survives_a_daemon_restart(topology: Topology):
    services = topology.services
    last = Month.parse(month_partitions.get_last_partition_key())
    topology.sandbox.set_today(f"{last.next().key}-02")
    services.start_sensor(LOCATION, "new_month_sensor")
    services.wait_for("a sensor tick with a cursor", lambda: sensor_state(topology)[0], 90)

    services.daemon.stop()
    services.daemon = None
    before, ticks = sensor_state(topology)
    assert json.loads(before)["requested"], before  # the first tick's backfill, in flight
    ticks_before = len(ticks)
    services.start_daemon()

    def next_tick():
        _, ticks = sensor_state(topology)
        new = ticks[: len(ticks) - ticks_before]
        done = [t for t in new if t.status != TickStatus.STARTED]
        return done[-1] if done else None

    tick = services.wait_for("a sensor tick after the restart", next_tick, 90)
    assert tick.status == TickStatus.SKIPPED, tick
    assert "nothing new" in (tick.skip_reason or ""), (
        tick.tick_data,
        sensor_state(topology)[1][:4],
    )
    # Requests that landed are forgotten; nothing was requested again after the restart.
    after = json.loads(sensor_state(topology)[0])
    assert set(after["requested"]) <= set(json.loads(before)["requested"])

    # The tick's request was ONE asset backfill, which the daemon carries out.
    backfills = services.graphql(SENSOR_BACKFILLS)["partitionBackfillsOrError"]["results"]
    (backfill,) = [
        b
        for b in backfills
        if {"key": "aperiodic/trigger", "value": "new_month_sensor"} in b["tags"]
    ]
    assert backfill["numPartitions"] == len(json.loads(before)["requested"])
    done = services.wait_backfill(backfill["id"], timeout=300)
    assert done["status"] == "COMPLETED_SUCCESS", done


FRESHNESS = """
{ assetNodeOrError(assetKey: {path: ["aperiodic", "l1_imbalance"]}) {
    ... on AssetNode {
      freshnessStatusInfo { freshnessStatus }
      internalFreshnessPolicy { ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds } }
    }
} }
"""


def test_the_daemon_shows_the_asset_fresh_once_it_materialized_today(topology: Topology):
    """The asset's freshness policy is evaluated by the daemon and shown by the webserver
    (after this module's backfill and pool tests materialized partitions today)."""
    services = topology.services

    def state():
        node = services.graphql(FRESHNESS)["assetNodeOrError"]
        status = node["freshnessStatusInfo"]["freshnessStatus"]
        return node if status != "UNKNOWN" else None

    node = services.wait_for("a freshness evaluation", state, timeout=120)
    assert node["internalFreshnessPolicy"] == {
        "deadlineCron": "0 6 * * *",
        "lowerBoundDeltaSeconds": 6 * 3600,
    }
    assert node["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY"
