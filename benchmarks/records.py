"""Benchmark: what each event-log record a run of ours writes costs, per instance storage.

Why: at a universe's size a run's time is Dagster's bookkeeping, not the data work, and that
bookkeeping is a few records per partition whose cost depends on the storage. dagster-postgres
opens a new connection for every storage operation outside the webserver (``NullPool``), so on
Postgres a record costs connections as much as statements; this prices each record kind on
sqlite, on Postgres directly and on Postgres through PgBouncer (transaction pooling, as
docs/deploy.md recommends), side by side in one process.

How: one fresh instance per storage, each configured as the deployments are. ``sqlite``:
dagster_home/dagster.yaml as shipped, in a temporary DAGSTER_HOME. ``postgres_direct`` and
``postgres_pgbouncer``: the storage section of dagster_home/dagster.prod.yaml (the rest
dagster.yaml's, as benchmarks/backfill.py's ``storage_instance``), on one throwaway PostgreSQL
cluster (tests/postgres_server.py), each in its own database so both start empty; the second
through a throwaway PgBouncer with the tests' settings (``PGBOUNCER_SETTINGS``). Every record is
handed to ``instance.handle_new_event`` as a run worker's log manager hands it, in a run created
for it, for ``--records`` (default 300) distinct partitions of the multi-partitioned
``aperiodic/l1_imbalance``. The materialization and the check evaluation are the ones a ranged
(backfill) run reports for a real partition (a sandbox month written and validated once, its
metadata, tags and check reused for every key; tags as ``materialization_tags`` makes them: code
version, data version, the partition's dimension tags). Kinds, per partition:

- ``connection`` (Postgres only): what every storage operation starts with under ``NullPool``,
  a new psycopg2 connection with one statement on it, then closed.
- ``materialization``: the partition's materialization (every landed partition).
- ``check_evaluation``: its validation check's evaluation, targeting that materialization
  (every landed partition).
- ``read``: ``fetch_materializations(AssetRecordsFilter(asset, asset_partitions=[key]),
  limit=1)``, the latest materialization a partition's check evaluation targets (every landed
  partition); ``4 per query``: the same for a ranged run's concurrency of partitions in one
  query (``asset_partitions`` of 4, ``limit=4``), per partition.
- ``observation``: the observation a failed partition records for the new-month sensor.
- ``planned``: a per-partition planned materialization: a failed partition writes one; without
  ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`` run creation writes one per partition.

``batch=50``: the same with ``DAGSTER_EVENT_BATCH_SIZE=50``, for the events that carry batch
metadata: planned events as run creation sends them (one batch per run), and, for comparison,
materializations as Dagster sends those of outputs (ours are reported one by one, without batch
metadata, so the setting does not change them). Postgres writes a batch in one statement only
when it is all materializations or all observations; sqlite stores a batch event by event.

The storages run in the order sqlite, direct, pooled, pooled, direct, sqlite, each turn with
half of the partitions, so drift in the machine's load falls on all three alike; the figures are
milliseconds per record over both turns. Warm-up records (engine, tables) are not timed.

Run: ``.venv/bin/python benchmarks/records.py`` (about 2 minutes on 2 cores);
``--records N`` per kind and storage; ``--pgbouncer KEY=VALUE`` overrides a PgBouncer setting
(e.g. ``server_reset_query_always=0``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import yaml
from common import KEY, PARTITION_CONCURRENCY, TODAY, load
from dagster._core.definitions.dependency import NodeHandle
from dagster._core.events import (
    AssetMaterializationPlannedData,
    AssetObservationData,
    DagsterEvent,
    DagsterEventBatchMetadata,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.execution.plan.handle import StepHandle
from dagster._core.test_utils import create_run_for_test

from aperiodic_assets.core.months import Month, month_range
from aperiodic_assets.core.pipeline import run_partition
from aperiodic_assets.core.universe import Instrument, Universe
from aperiodic_assets.core.warehouse import Warehouse
from aperiodic_assets.defs._dagster_internals import check_targets, materialization_tags
from aperiodic_assets.defs.assets.l1_imbalance import CODE_VERSION, L1_IMBALANCE, OUTCOME
from aperiodic_assets.defs.assets.reporting import Landed, check_evaluation, landed
from aperiodic_assets.defs.partitions import Partitions, partition_key
from aperiodic_assets.defs.resources import AperiodicResource
from aperiodic_assets.sandbox.catalog import synthetic_symbol
from aperiodic_assets.tools.demo import sandbox_process
from tests.dagster_services import REPO_ROOT, load_yaml
from tests.postgres_server import (
    PGBOUNCER_SETTINGS,
    Postgres,
    pgbouncer_pool,
    postgres_cluster,
)

JOB = "l1_imbalance_job"
STEP = "aperiodic__l1_imbalance"
MONTHS = month_range(Month(2024, 1), Month(2024, 12))
#: The real partition whose report every record reuses: one month of 1h data.
SAMPLE = (Instrument("binance-futures", "perpetual-BTC-USDT:USDT", "1h"), Month(2026, 9))
BATCH = 50
#: Partitions per query in the batched read: a ranged run's concurrency.
READ_BATCH = PARTITION_CONCURRENCY
WARM_UP = 5
STORAGES = ("sqlite", "postgres_direct", "postgres_pgbouncer")
#: (kind, batch size) in the order each turn times them: the check targets the materialization
#: the read found.
KINDS = [
    ("connection", 0),
    ("materialization", 0),
    ("read", 0),
    ("read", READ_BATCH),
    ("check_evaluation", 0),
    ("observation", 0),
    ("planned", 0),
    ("planned", BATCH),
    ("materialization", BATCH),
]


def sample_partition(api_url: str, work: Path) -> Landed:
    """What a ranged run reports for one real partition: a sandbox month, written and checked."""
    resource = AperiodicResource(api_url=api_url, api_key=KEY)
    client = resource.get_client(max_connections=4)
    try:
        result = landed(run_partition(client, Warehouse(work / "warehouse"), *SAMPLE))
    finally:
        client.close()
    assert result is not None and result.check is not None
    return result


class Turn:
    """One storage's instance writing the record kinds for a set of partition keys."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        postgres: Postgres | None,
        partitions: Partitions,
        sample: Landed,
    ):
        self.instance = instance
        self.postgres = postgres
        self.partitions = partitions
        self.sample = sample
        self.targets: dict[str, Any] = {}

    def step_event(self, event_type: DagsterEventType, data: Any, message: str) -> DagsterEvent:
        """An event as ``DagsterEvent.from_step`` builds it in our asset's step."""
        return DagsterEvent(
            event_type_value=event_type.value,
            job_name=JOB,
            step_handle=StepHandle(NodeHandle(STEP, None)),
            node_handle=NodeHandle(STEP, None),
            step_kind_value="COMPUTE",
            logging_tags={"job_name": JOB, "op_name": STEP},
            event_specific_data=data,
            message=message,
            pid=os.getpid(),
        )

    def store(
        self,
        run: dg.DagsterRun,
        event: DagsterEvent,
        batch: DagsterEventBatchMetadata | None = None,
    ) -> None:
        """As the run's log manager stores an event: one EventLogEntry to the instance."""
        entry = EventLogEntry(
            user_message=event.message or "",
            level=logging.DEBUG,
            job_name=JOB,
            run_id=run.run_id,
            error_info=None,
            timestamp=time.time(),
            step_key=event.step_key,
            dagster_event=event,
        )
        self.instance.handle_new_event(entry, batch_metadata=batch)

    def materialization(self, key: str) -> DagsterEvent:
        materialization = dg.AssetMaterialization(
            asset_key=L1_IMBALANCE,
            partition=key,
            metadata=self.sample.metadata,
            tags={
                **self.sample.tags,
                **materialization_tags(self.partitions.l1, key, CODE_VERSION, self.sample.sha256),
            },
        )
        return self.step_event(
            DagsterEventType.ASSET_MATERIALIZATION,
            StepMaterializationData(materialization),
            "Materialized value.",
        )

    def connect(self) -> None:
        """What each storage operation starts with (NullPool): a new connection, as
        dagster-postgres opens it (psycopg2), and a first statement on it."""
        assert self.postgres is not None
        conn = psycopg2.connect(self.postgres.url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            conn.close()

    def write(self, kind: str, batch_size: int, run: dg.DagsterRun, keys: list[str]) -> None:
        batch_id = f"{kind}-{run.run_id}"
        for i, key in enumerate(keys):
            batch = DagsterEventBatchMetadata(batch_id, i == len(keys) - 1) if batch_size else None
            if kind == "connection":
                self.connect()
            elif kind == "materialization":
                self.store(run, self.materialization(key), batch)
            elif kind == "read":
                if batch_size:
                    if i % batch_size == 0:
                        check_targets(
                            self.instance, L1_IMBALANCE, keys[i : i + batch_size], run.run_id
                        )
                else:
                    self.targets |= check_targets(self.instance, L1_IMBALANCE, [key], run.run_id)
            elif kind == "check_evaluation":
                assert self.sample.check is not None
                evaluation = check_evaluation(
                    self.sample.check, L1_IMBALANCE, key, self.targets.get(key)
                )
                message = f"Asset check '{evaluation.check_name}' on '{L1_IMBALANCE}' passed."
                self.store(
                    run,
                    self.step_event(DagsterEventType.ASSET_CHECK_EVALUATION, evaluation, message),
                )
            elif kind == "observation":
                observation = dg.AssetObservation(
                    asset_key=L1_IMBALANCE,
                    partition=key,
                    metadata={OUTCOME: "failed", "error": "HTTP 503 from the API", "retry": 1.0},
                )
                self.store(
                    run,
                    self.step_event(
                        DagsterEventType.ASSET_OBSERVATION, AssetObservationData(observation), ""
                    ),
                    batch,
                )
            else:
                planned = DagsterEvent.build_asset_materialization_planned_event(
                    JOB, STEP, AssetMaterializationPlannedData(L1_IMBALANCE, partition=key)
                )
                self.store(run, planned, batch)

    def run(self, keys: list[str], timings: dict[tuple[str, int], list[float]]) -> None:
        """Every kind for ``keys`` in a run of its own; adds (seconds, records) per kind."""
        run = create_run_for_test(self.instance, job_name=JOB)
        for kind, batch_size in KINDS:
            if kind == "connection" and self.postgres is None:
                continue  # sqlite opens files, not connections
            os.environ["DAGSTER_EVENT_BATCH_SIZE"] = str(batch_size if kind != "read" else 0)
            try:
                start = time.perf_counter()
                self.write(kind, batch_size, run, keys)
                elapsed = time.perf_counter() - start
            finally:
                os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
            spent = timings.setdefault((kind, batch_size), [0.0, 0.0])
            spent[0] += elapsed
            spent[1] += len(keys)


def write_instance(home: Path, storage: dict[str, Any], env: dict[str, str]) -> dg.DagsterInstance:
    """dagster.yaml with ``storage``, as an instance in ``home`` (env read at creation)."""
    config = load_yaml(REPO_ROOT / "dagster_home" / "dagster.yaml")
    if storage:
        config["storage"] = storage
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    os.environ.update({**env, "DAGSTER_HOME": str(home)})
    return dg.DagsterInstance.from_config(str(home))


def database(pg: Postgres, name: str) -> Postgres:
    """A new empty database in ``pg``'s cluster, as ``pg`` with that database."""
    conn = psycopg2.connect(pg.url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
    finally:
        conn.close()
    return dataclasses.replace(pg, db_name=name)


@contextmanager
def instances(
    work: Path, pgbouncer_settings: dict[str, str]
) -> Iterator[dict[str, tuple[dg.DagsterInstance, Postgres | None]]]:
    """Per storage, its fresh instance and the Postgres it connects to (None: sqlite)."""
    prod_storage = load_yaml(REPO_ROOT / "dagster_home" / "dagster.prod.yaml")["storage"]
    with ExitStack() as stack:
        pg = stack.enter_context(postgres_cluster())
        direct = database(pg, "direct")
        pooled = stack.enter_context(pgbouncer_pool(database(pg, "pooled"), **pgbouncer_settings))
        built = {
            "sqlite": (write_instance(work / "sqlite", {}, {}), None),
            "postgres_direct": (write_instance(work / "direct", prod_storage, direct.env), direct),
            "postgres_pgbouncer": (
                write_instance(work / "pooled", prod_storage, pooled.env),
                pooled,
            ),
        }
        for instance, _ in built.values():
            stack.enter_context(instance)
        yield built


def partition_keys(count: int) -> tuple[Partitions, list[str]]:
    symbols = -(-count // len(MONTHS))
    instruments = [
        Instrument("binance-futures", synthetic_symbol(n), "1h", "exchange")
        for n in range(1, symbols + 1)
    ]
    partitions = Partitions(Universe(tuple(instruments), MONTHS[0]))
    keys = [str(partition_key(i, m)) for i in instruments for m in MONTHS][:count]
    return partitions, keys


def report(timings: dict[str, dict[tuple[str, int], list[float]]]) -> None:
    kinds = [k for k in KINDS if k[0] != "read"] + [k for k in KINDS if k[0] == "read"]
    print(f"\nms per record ({'/'.join(STORAGES)})")
    print(f"{'record':<28}" + "".join(f"{s:>20}" for s in STORAGES))
    ms = {
        storage: {k: seconds / records * 1000 for k, (seconds, records) in by_kind.items()}
        for storage, by_kind in timings.items()
    }
    for kind, size in kinds:
        label = kind + (f" ({size} per query)" if kind == "read" else f" (batch={size})")
        label = label if size else kind
        figures = (ms[s].get((kind, size)) for s in STORAGES)
        print(
            f"{label:<28}" + "".join("-".rjust(20) if f is None else f"{f:>20.2f}" for f in figures)
        )
    landed_partition = [("materialization", 0), ("check_evaluation", 0), ("read", 0)]
    per_partition = {s: sum(ms[s][k] for k in landed_partition) for s in STORAGES}
    print(
        f"{'landed partition (3 above)':<28}"
        + "".join(f"{per_partition[s]:>20.2f}" for s in STORAGES)
    )
    for storage in STORAGES:
        for kind, size in kinds:
            figure = ms[storage].get((kind, size))
            if figure is not None:
                print(f"RESULT record={kind} batch={size} storage={storage} ms={figure:.2f}")
        print(f"RESULT record=landed_partition storage={storage} ms={per_partition[storage]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=300, help="per kind and storage (even)")
    parser.add_argument(
        "--pgbouncer", action="append", default=[], metavar="KEY=VALUE", help="a pooler setting"
    )
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.pgbouncer)
    half = args.records // 2
    partitions, keys = partition_keys(2 * half + WARM_UP)
    warm, turns = keys[:WARM_UP], [keys[WARM_UP : WARM_UP + half], keys[WARM_UP + half :]]
    print(f"{2 * half} records per kind and storage; PgBouncer {PGBOUNCER_SETTINGS | settings}")
    print(f"before: {load()}")
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(["--today", TODAY.isoformat(), "--key", KEY]) as api_url,
    ):
        work = Path(tmp)
        sample = sample_partition(api_url, work)
        with instances(work, settings) as built:
            each = {s: Turn(i, pg, partitions, sample) for s, (i, pg) in built.items()}
            for turn in each.values():
                turn.run(warm, {})
            timings: dict[str, dict[tuple[str, int], list[float]]] = {s: {} for s in STORAGES}
            for n, storage in enumerate((*STORAGES, *reversed(STORAGES))):
                each[storage].run(turns[n // len(STORAGES)], timings[storage])
    print(f"after: {load()}")
    report(timings)


if __name__ == "__main__":
    main()
