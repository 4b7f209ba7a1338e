"""The ``aperiodic/l1_imbalance`` asset: one validated month of one instrument per partition.

Validation runs inside the asset, before anything is written (a blocking asset check would run
only after the data was stored); its results are reported as this asset's own checks. A
rejected month records each check's result for that partition (none of them describes a
materialization: nothing was written) and raises a Failure naming the failed rule and where the
raw input was quarantined.

Backfills run as ranged runs (``BackfillPolicy.single_run``): Dagster's per-run start-up costs
seconds, the data work of a month a fraction of that. A ranged run processes its partitions on a
few threads and reports each one as it lands, with its own materialization, data version and
check results, exactly as a single-partition run would. Partitions that fail are left
unmaterialized and the run fails at the end, so the backfill's "re-execute from failure" (target
minus materialized) retries only them.
"""

import traceback
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta

import dagster as dg
from pydantic import Field

from .._dagster_internals import check_target, materialization_tags
from ..api import AperiodicClient, AperiodicError
from ..partitions import l1_partitions, parse_partition_key
from ..pipeline import PartitionRejected, completed, run_partition
from ..resources import AperiodicResource, WarehouseResource
from ..validation import CHECKS, ValidationConfig
from ..warehouse import Warehouse
from .reporting import (
    SOURCE_IDENTITY,
    SOURCE_STAMPS,
    WARNINGS_TAG,
    Landed,
    check_evaluation,
    check_results,
    failed_checks,
    landed,
    table,
)

__all__ = ["L1_IMBALANCE", "SOURCE_IDENTITY", "SOURCE_STAMPS", "WARNINGS_TAG", "l1_imbalance"]

L1_IMBALANCE = dg.AssetKey(["aperiodic", "l1_imbalance"])
API_POOL = "aperiodic_api"
CODE_VERSION = "1"
#: Fresh to yesterday: Aperiodic publishes each day's file shortly after midnight UTC and the
#: sensor notices it within its interval, so by 06:00 UTC the asset must have materialized since
#: midnight. Dagster evaluates it on the asset as a whole (its latest materialization of any
#: partition), shown as the asset's freshness state in the UI; needs `freshness: enabled` in
#: dagster.yaml.
FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=6))

with warnings.catch_warnings():
    # Partitioned check specs are a preview feature; they are what makes each partition show
    # its own check results instead of one check over all partitions.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    CHECK_SPECS = [
        dg.AssetCheckSpec(
            spec.name,
            asset=L1_IMBALANCE,
            description=f"[{spec.severity}] {spec.description}"
            + (
                " A failure rejects the month: nothing is written to the warehouse."
                if spec.severity == "error"
                else " A failure is a warning: the month is written."
            ),
            partitions_def=l1_partitions,
        )
        for spec in CHECKS
    ]


class L1ImbalanceConfig(dg.Config):
    """Validation tolerances (the defaults suit Aperiodic's float64 files) and backfill threads."""

    abs_tol: float = 1e-9
    rel_tol: float = 1e-9
    nan_share_max: float = 0.01
    partition_concurrency: int = Field(
        default=4,
        ge=1,
        description="Partitions a backfill (ranged) run processes at once. Each holds one month"
        " in memory; API calls in flight are at most this times the client's download limit.",
    )
    retry_after_wait_max_s: float = Field(
        default=3600.0,
        description="When the API asks to come back later (Retry-After) than its client waits"
        " in-line, a single-partition run is retried after exactly that wait if it is at most"
        " this long; otherwise it fails and the sensor requests the partition again later.",
    )


@dg.multi_asset(
    name="l1_imbalance",
    specs=[
        dg.AssetSpec(
            L1_IMBALANCE,
            partitions_def=l1_partitions,
            # A month Aperiodic has not published yet materializes nothing.
            skippable=True,
            group_name="aperiodic",
            kinds={"parquet"},
            code_version=CODE_VERSION,
            freshness_policy=FRESHNESS,
            description="Aperiodic l1_imbalance for one instrument and month, validated, as"
            " hive-partitioned Parquet in the warehouse.",
        )
    ],
    check_specs=CHECK_SPECS,
    # Check outputs are only optional in a subsettable multi-asset; needed for skipped months.
    can_subset=True,
    pool=API_POOL,
    # One run per contiguous range of partition keys: run start-up is paid once per range.
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=dg.RetryPolicy(
        max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
)
def l1_imbalance(
    context: dg.AssetExecutionContext,
    config: L1ImbalanceConfig,
    aperiodic: AperiodicResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.MaterializeResult | dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    client = aperiodic.get_client(
        logger=context.log,
        client_tag=context.run.run_id,
        # Every partition thread shares the client's connection pool.
        max_connections=config.partition_concurrency * aperiodic.max_concurrent_downloads,
    )
    tolerances = ValidationConfig(
        abs_tol=config.abs_tol, rel_tol=config.rel_tol, nan_share_max=config.nan_share_max
    )
    store = warehouse.get_warehouse()
    selected = {key.name for key in context.selected_asset_check_keys}
    try:
        if context.has_partition_key:
            yield from _one_partition(
                context, client, store, tolerances, selected, config.retry_after_wait_max_s
            )
        else:
            yield from _partition_range(
                context,
                lambda key: _land(client, store, key, tolerances),
                config.partition_concurrency,
                selected,
            )
    finally:
        client.close()


def _land(
    client: AperiodicClient, warehouse: Warehouse, key: str, tolerances: ValidationConfig
) -> Landed | None:
    """Run one partition; None when Aperiodic publishes no file for the month."""
    instrument, month = parse_partition_key(key)
    return landed(run_partition(client, warehouse, instrument, month, tolerances))


def _rejected_checks(
    exc: PartitionRejected, partition: str, selected: set[str]
) -> Iterator[dg.AssetCheckEvaluation]:
    """Each check's result for a rejected month: the failing ones Failed, the others Passed."""
    if exc.validation is None:  # the files could not even be assembled into one table
        return
    for check in check_results(exc.validation):
        if check.check_name in selected:
            yield check_evaluation(check, L1_IMBALANCE, partition, target=None)


def _one_partition(
    context: dg.AssetExecutionContext,
    client: AperiodicClient,
    warehouse: Warehouse,
    tolerances: ValidationConfig,
    selected: set[str],
    retry_after_wait_max_s: float,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckEvaluation]:
    """A single-partition run (UI, sensor, schedule): Dagster stores the result and retries."""
    key = context.partition_key
    try:
        result = _land(client, warehouse, key, tolerances)
    except PartitionRejected as exc:
        yield from _rejected_checks(exc, key, selected)
        raise dg.Failure(
            description=str(exc),
            metadata={
                "quarantine": dg.MetadataValue.path(exc.quarantine_url),
                "failed_checks": failed_checks(exc.report),
            },
            allow_retries=False,
        ) from None
    except AperiodicError as exc:
        raise _api_failure(context, exc, retry_after_wait_max_s) from None
    if result is None:
        _log_unpublished(context, key)
        return
    yield dg.MaterializeResult(
        data_version=dg.DataVersion(result.sha256),
        metadata=result.metadata,
        tags=result.tags,
        check_results=[c for c in result.checks if c.check_name in selected],
    )


def _api_failure(
    context: dg.AssetExecutionContext, exc: AperiodicError, retry_after_wait_max_s: float
) -> Exception:
    """What a single-partition run raises for an API error: retry, not sooner than asked."""
    wait = getattr(exc, "retry_after_s", None)
    if wait is None:
        return dg.Failure(description=str(exc), allow_retries=exc.transient)
    if wait <= retry_after_wait_max_s:
        # Not sooner than the server allowed: the RetryPolicy's own delay could be shorter.
        context.log.warning(f"{exc} Retrying this partition in {wait:.0f}s.")
        return dg.RetryRequested(max_retries=3, seconds_to_wait=wait)
    return dg.Failure(
        description=f"{exc} That is longer than retry_after_wait_max_s"
        f" ({retry_after_wait_max_s:.0f}s), so this run does not wait: the new-month sensor"
        " requests the partition again later, or re-execute it yourself after the wait.",
        allow_retries=False,
    )


def _partition_range(
    context: dg.AssetExecutionContext,
    land: Callable[[str], Landed | None],
    concurrency: int,
    selected: set[str],
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """A ranged (backfill) run: every partition reported on its own as soon as it lands.

    No step retry: it would redo the partitions that landed. Transient API errors are retried by
    the client; what still fails is left to the backfill's "re-execute from failure".
    """
    keys = context.partition_keys
    failures: dict[str, str] = {}
    for key, result in completed(keys, land, concurrency):
        if isinstance(result, BaseException):
            failures[key] = _describe(result)
            context.log.error(f"{key}: {failures[key]}")
            if isinstance(result, PartitionRejected):
                yield from _rejected_checks(result, key, selected)
        elif result is None:
            _log_unpublished(context, key)
        else:
            yield dg.AssetMaterialization(
                asset_key=L1_IMBALANCE,
                partition=key,
                metadata=result.metadata,
                tags={
                    **result.tags,
                    **materialization_tags(l1_partitions, key, CODE_VERSION, result.sha256),
                },
            )
            target = check_target(context.instance, L1_IMBALANCE, key)
            yield from (
                check_evaluation(check, L1_IMBALANCE, key, target)
                for check in result.checks
                if check.check_name in selected
            )
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} of {len(keys)} partitions failed; the others were"
            " materialized. Re-execute the backfill from failure to retry only these.",
            metadata={
                "failed_partitions": table(
                    [{"partition": k, "error": e} for k, e in sorted(failures.items())]
                )
            },
            allow_retries=False,
        )


def _log_unpublished(context: dg.AssetExecutionContext, key: str) -> None:
    instrument, month = parse_partition_key(key)
    context.log.info(
        f"{instrument.key} {month}: Aperiodic publishes no file for this month yet;"
        " nothing was materialized."
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, PartitionRejected | AperiodicError):
        return str(error)
    return "".join(traceback.format_exception(error)).strip()
