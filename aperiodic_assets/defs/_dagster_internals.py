"""Every use of Dagster's private modules (``dagster._…``), in one place.

Ranged (backfill) runs report each partition themselves, so they must attach what Dagster would
have attached to a single-partition materialization; the sensor requests asset backfills, whose
request type Dagster keeps private, and learns from the backfill table (also private) whether a
request finished; a schedule cannot request a backfill, so it builds the ranged
runs a ``BackfillPolicy.single_run()`` backfill would. These paths have moved between Dagster
releases: this module checks the version it was written for at import and says what to do when
it differs. ``tests/test_backfill_e2e.py`` compares a ranged run's events with a single-partition
run's and fails if an upgrade changes any of this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

WRITTEN_FOR = "1.13"

if not dg.__version__.startswith(WRITTEN_FOR + "."):
    raise ImportError(
        f"aperiodic_assets uses private Dagster APIs written for Dagster {WRITTEN_FOR}.x, and"
        f" Dagster {dg.__version__} is installed. Check aperiodic_assets/defs/_dagster_internals.py"
        " against that release. Until then, the asset still works with"
        " BackfillPolicy.multi_run(1) (one run per partition, no ranged runs) and a sensor that"
        " yields one RunRequest per partition."
    )

from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # noqa: E402
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.assets.graph.asset_graph_subset import (  # noqa: E402
    AssetGraphSubset,
)
from dagster._core.definitions.data_version import (  # noqa: E402
    CODE_VERSION_TAG,
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
)
from dagster._core.definitions.partitions.context import partition_loading_context  # noqa: E402
from dagster._core.definitions.partitions.utils import (  # noqa: E402
    get_tags_from_multi_partition_key,
)
from dagster._core.events import (  # noqa: E402
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
)
from dagster._core.execution.backfill import (  # noqa: E402
    BulkActionsFilter,
    BulkActionStatus,
)
from dagster._core.storage.tags import (  # noqa: E402
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)


def materialization_tags(
    partitions_def: dg.MultiPartitionsDefinition, key: str, code_version: str, data_version: str
) -> dict[str, str]:
    """The tags Dagster adds to a single-partition run's materialization.

    Data-version tags as ``execute_step._build_data_version_tags`` writes them (the asset has no
    inputs, so no provenance tags), plus the dimension tags of ``_get_output_asset_events``, which
    staleness and the multi-partition status read.
    """
    return {
        CODE_VERSION_TAG: code_version,
        DATA_VERSION_TAG: data_version,
        DATA_VERSION_IS_USER_PROVIDED_TAG: "true",
        **get_tags_from_multi_partition_key(partitions_def.get_partition_key_from_str(key)),
    }


def check_targets(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, keys: Sequence[str], run_id: str
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Per partition, the materialization of run ``run_id`` its check result points at, as
    ``AssetCheckResult.to_asset_check_evaluation`` sets it (a partitioned check only counts as
    current when it targets the partition's latest materialization): one query for ``keys``,
    each just materialized by that run, so their records are the newest ``len(keys)``."""
    if not keys:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(keys)), limit=len(keys)
    ).records
    targets = {
        record.partition_key: AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
        for record in reversed(records)  # oldest first: a later record of a key wins
        if record.partition_key is not None and record.run_id == run_id
    }
    missing = [k for k in keys if k not in targets]
    if missing and len(missing) < len(keys):
        # Another run materialized one of them meanwhile, crowding the others out.
        for key in missing:
            targets.update(check_targets(instance, asset_key, [key], run_id))
    return targets


#: Set in the environment of every process that creates runs (webserver, daemon, CLI): a ranged
#: run then records ONE planned event for its whole range instead of one per partition, written
#: before the run can start (see docs/architecture.md, "What each record costs").
PLANNED_SUBSET_ENV = {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}


def mark_attempted(context: dg.AssetExecutionContext, partition: str) -> None:
    """Record that this run attempted ``partition``: its own planned materialization event.

    With ``PLANNED_SUBSET_ENV`` a run's planned event names its range, not each partition, and
    Dagster marks a partition Failed in the partitions view only from a per-partition planned
    event of a failed run without a materialization. So a ranged run writes one for each
    partition that failed in it (failures cost a record, successes none), and a single-partition
    run one for its partition before any work, so even a crash shows it Failed.
    """
    step = context.get_step_execution_context()
    event = DagsterEvent.build_asset_materialization_planned_event(
        context.run.job_name,
        step.step.key,
        AssetMaterializationPlannedData(context.asset_key, partition=partition),
    )
    context.instance.report_dagster_event(event, context.run.run_id)


def latest_data_versions(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys: Sequence[str]
) -> dict[str, str]:
    """Partition key -> data version of each partition's latest materialization, in one query
    (``get_latest_tags_by_partition``, what Dagster's staleness reads; storage API)."""
    if not partition_keys:
        return {}
    tags = instance.event_log_storage.get_latest_tags_by_partition(
        asset_key,
        DagsterEventType.ASSET_MATERIALIZATION,
        [DATA_VERSION_TAG],
        asset_partitions=list(partition_keys),
    )
    return {key: t[DATA_VERSION_TAG] for key, t in tags.items() if DATA_VERSION_TAG in t}


def backfill_request(
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    keys: Iterable[str],
    tags: Mapping[str, str],
) -> dg.RunRequest:
    """A sensor's request for one asset backfill over ``keys`` (so the BackfillPolicy applies).

    ``RunRequest.for_asset_graph_subset`` is what the sensor daemon turns into a backfill; its
    argument type is private. Backfill requests carry no run key: the caller dedupes.
    """
    subset = AssetGraphSubset(
        partitions_subsets_by_asset_key={
            asset_key: partitions_def.subset_with_partition_keys(sorted(keys))
        },
        non_partitioned_asset_keys=set(),
    )
    return dg.RunRequest.for_asset_graph_subset(subset, tags=dict(tags))


def ranged_run_requests(
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    keys: Iterable[str],
    run_key: str,
    tags: Mapping[str, str],
    instance: dg.DagsterInstance | None = None,
) -> list[dg.RunRequest]:
    """The runs a ``BackfillPolicy.single_run()`` backfill of ``keys`` would make: one per
    contiguous partition key range (as ``_build_run_requests_with_backfill_policy`` does), for
    a schedule, which cannot request a backfill. Each keeps a run key for idempotence.
    ``instance`` answers for a dynamic dimension's keys."""
    subset = partitions_def.subset_with_partition_keys(sorted(keys))
    requests = []
    with partition_loading_context(dynamic_partitions_store=instance):
        ranges = subset.get_partition_key_ranges(partitions_def)
    for key_range in ranges:
        requests.append(
            dg.RunRequest(
                run_key=f"{run_key}:{key_range.start}..{key_range.end}",
                asset_selection=[asset_key],
                tags={
                    **tags,
                    ASSET_PARTITION_RANGE_START_TAG: key_range.start,
                    ASSET_PARTITION_RANGE_END_TAG: key_range.end,
                },
            )
        )
    return requests


def backfill_subset_keys(request: dg.RunRequest) -> list[str]:
    """The partition keys a backfill request covers (for tests and logs)."""
    subset = request.asset_graph_subset
    if subset is None:
        return []
    return sorted(
        str(p.partition_key) for p in subset.iterate_asset_partitions() if p.partition_key
    )


#: Backfill statuses after which the daemon launches nothing more for a backfill.
_BACKFILL_OVER = [
    BulkActionStatus.COMPLETED,
    BulkActionStatus.COMPLETED_SUCCESS,
    BulkActionStatus.COMPLETED_FAILED,
    BulkActionStatus.FAILED,
    BulkActionStatus.CANCELED,
]


def backfills_over(instance: dg.DagsterInstance, tag: str, values: Iterable[str]) -> set[str]:
    """The values of ``tag`` whose backfill is over (succeeded, failed or canceled): one query
    per value. Backfills, their filter and statuses are not public API."""
    return {
        value
        for value in values
        if instance.get_backfills(
            filters=BulkActionsFilter(tags={tag: value}, statuses=_BACKFILL_OVER), limit=1
        )
    }
