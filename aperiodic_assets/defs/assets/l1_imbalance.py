"""The ``aperiodic/l1_imbalance`` asset: one validated month of one instrument per partition.

Validation runs inside the asset, before anything is written (a blocking asset check would run
only after the data was stored); its result is reported as this asset's one ``validation``
check per partition, every rule's verdict in one evaluation. A rejected month records that
check, Failed (it describes no materialization: nothing was written), and raises a Failure naming
the failed rule and where the raw input was quarantined.

Backfills run as ranged runs (``BackfillPolicy.single_run``): Dagster's per-run start-up costs
seconds, the data work of a month a fraction of that. A ranged run processes its partitions on a
few threads and reports each one as it lands, with its own materialization, data version and
check result, exactly as a single-partition run would. Partitions that fail are left
unmaterialized and the run fails at the end, so the backfill's "re-execute from failure" (target
minus materialized) retries only them.
"""

import logging
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from ...core import clock
from ...core.api import AperiodicError, TransientError
from ...core.lifecycle import Lives, read_lives
from ...core.months import Month
from ...core.pipeline import PartitionRejected, completed_batches, run_partition
from ...core.schema import METRIC
from ...core.universe import Instrument
from ...core.validation import CHECKS, ValidationConfig
from ...core.warehouse import Warehouse
from .._dagster_internals import check_targets, mark_attempted, materialization_tags
from ..deployment import Deployment
from ..resources import AperiodicResource, WarehouseResource
from .reporting import (
    COLUMN_SCHEMA,
    L1_COLUMNS,
    SOURCE_IDENTITY,
    SOURCE_STAMPS,
    VALIDATION_CHECK,
    WARNINGS_TAG,
    Landed,
    check_evaluation,
    failed_checks,
    landed,
    table,
    table_metadata,
    validation_result,
    with_code_references,
)

__all__ = [
    "L1_IMBALANCE",
    "OUTCOME",
    "RETRY_AFTER",
    "SOURCE_IDENTITY",
    "SOURCE_STAMPS",
    "WARNINGS_TAG",
    "WITHDRAWN",
    "WITHDRAW_CONFIRMED",
    "WITHDRAW_TAG",
    "build_l1_imbalance",
]

#: The asset's key in the default deployment (another key prefix gives another key).
L1_IMBALANCE = dg.AssetKey(["aperiodic", "l1_imbalance"])
CODE_VERSION = "1"
#: Observation metadata of a partition that failed for good in a run: "rejected" or "failed".
OUTCOME = "aperiodic/outcome"
#: Observation metadata: the wait the API asked for (Retry-After), in seconds.
RETRY_AFTER = "retry_after_s"
#: Materialization metadata of a month whose files Aperiodic withdrew.
WITHDRAWN = "withdrawn"
#: Run tag set by the sensor once a month's files are confirmed withdrawn; a run with it moves
#: the month's file out of the warehouse when the listing is still empty.
WITHDRAW_TAG = "aperiodic/withdraw"
WITHDRAW_CONFIRMED = "confirmed"
RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
#: Fresh to yesterday: Aperiodic publishes each day's file shortly after midnight UTC and the
#: sensor notices it within its interval, so by 06:00 UTC the asset must have materialized since
#: midnight. Dagster evaluates it on the asset as a whole (its latest materialization of any
#: partition), shown as the asset's freshness state in the UI; needs `freshness: enabled` in
#: dagster.yaml.
FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=6))


class L1ImbalanceConfig(dg.Config):
    """Run config: validation tolerances, backfill threads and how long a run may wait for the
    API. Unset tolerances and waits are the deployment's (the component's attributes)."""

    abs_tol: float | None = Field(default=None, ge=0.0)
    rel_tol: float | None = Field(default=None, ge=0.0)
    nan_share_max: float | None = Field(default=None, ge=0.0, le=1.0)
    partition_concurrency: int = Field(
        default=4,
        ge=1,
        description="Partitions a backfill (ranged) run processes at once. Each holds one month"
        " in memory; API calls in flight are at most this times the client's download limit.",
    )
    retry_after_wait_max_s: float | None = Field(
        default=None,
        ge=0.0,
        le=900.0,
        description="Longest wait a run spends on a partition the API asked to come back to"
        " later (Retry-After) or that failed transiently. A run retries after waits up to this"
        " long; a longer one fails the partition at once, naming the wait, and the new-month"
        " sensor requests it again once the wait is over. No run sleeps longer. Default: the"
        " deployment's (APERIODIC_RUN_WAIT_MAX_S, else 300 s).",
    )
    partition_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Attempts a backfill (ranged) run makes at one partition whose API calls"
        " failed transiently (after the client's own retries), each after the wait the server"
        " asked for or a backoff; partitions that landed are never redone.",
    )

    def tolerances(self, deployment: ValidationConfig) -> ValidationConfig:
        chosen = self.model_dump(include={"abs_tol", "rel_tol", "nan_share_max"})
        return replace(deployment, **{k: v for k, v in chosen.items() if v is not None})


def check_spec(key: dg.AssetKey, partitions_def: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    """The validation check: one per partition, every rule's verdict in one evaluation."""
    errors = ", ".join(c.name for c in CHECKS if c.severity == "error")
    warns = ", ".join(c.name for c in CHECKS if c.severity == "warn")
    with warnings.catch_warnings():
        # Partitioned check specs are a preview feature; they are what makes each partition
        # show its own result instead of one check over all partitions.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            VALIDATION_CHECK,
            asset=key,
            description=f"Every validation rule on the month, each rule's verdict in the"
            f" evaluation's `rules` table. Errors ({errors}) reject the month: nothing is"
            f" written, the check fails with severity ERROR and blocks downstream. Warnings"
            f" ({warns}): the month is written, the check fails with severity WARN.",
            partitions_def=partitions_def,
            # An ERROR failure rejects the month: downstream must not run on it.
            blocking=True,
        )


def build_l1_imbalance(deployment: Deployment) -> dg.AssetsDefinition:
    """The validated monthly ``l1_imbalance`` asset of one deployment, with its checks."""
    key = deployment.l1_key
    partitions = deployment.partitions

    @dg.multi_asset(
        name=deployment.name("l1_imbalance"),
        specs=[
            dg.AssetSpec(
                key,
                partitions_def=partitions.l1,
                # A month Aperiodic has not published yet materializes nothing.
                skippable=True,
                group_name=deployment.group,
                kinds=deployment.kinds,
                owners=list(deployment.owners),
                # The catalog shows the columns before anything is materialized.
                metadata={COLUMN_SCHEMA: L1_COLUMNS},
                code_version=CODE_VERSION,
                freshness_policy=FRESHNESS,
                description="Aperiodic l1_imbalance for one instrument and month, validated, as"
                " hive-partitioned Parquet in the warehouse.",
            )
        ],
        check_specs=[check_spec(key, partitions.l1)],
        # Check outputs are only optional in a subsettable multi-asset; needed for skipped
        # months.
        can_subset=True,
        pool=deployment.pool,
        # One run per contiguous range of partition keys: run start-up is paid once per range.
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY_POLICY,
    )
    def l1_imbalance(
        context: dg.AssetExecutionContext,
        config: L1ImbalanceConfig,
        aperiodic: AperiodicResource,
        warehouse: WarehouseResource,
    ) -> Iterator[
        dg.MaterializeResult
        | dg.AssetMaterialization
        | dg.AssetObservation
        | dg.AssetCheckEvaluation
    ]:
        client = aperiodic.get_client(
            logger=context.log,
            client_tag=context.run.run_id,
            # Every partition thread shares the client's connection pool.
            max_connections=config.partition_concurrency * aperiodic.max_concurrent_downloads,
        )
        tolerances = config.tolerances(deployment.tolerances)
        wait_max = (
            deployment.run_wait_max_s
            if config.retry_after_wait_max_s is None
            else config.retry_after_wait_max_s
        )
        store = warehouse.get_warehouse()
        # Read once, before any listing: every partition of the run is judged at the same date.
        today = clock.today()
        withdraw = context.run.tags.get(WITHDRAW_TAG) == WITHDRAW_CONFIRMED

        # A discovered instrument's first and closing day (the universe sensor's record).
        lives = read_lives(store) if deployment.universe.discovers else Lives()

        def land(partition: str) -> Landed | None:
            instrument, month = partitions.parse(partition)
            instrument = lives.instrument(instrument)
            outcome = run_partition(client, store, instrument, month, tolerances, today=today)
            if outcome.published:
                return landed(outcome)
            if withdraw:
                return _withdrawn(context, store, instrument, month)
            context.log.info(
                f"{instrument.key} {month}: Aperiodic publishes no file for this month yet;"
                " nothing was materialized."
            )
            return None

        selected = {check.name for check in context.selected_asset_check_keys}
        try:
            if context.has_partition_key:
                yield from _one_partition(context, land, selected, wait_max)
            else:
                patient = _patiently(
                    land,
                    config.partition_attempts,
                    wait_max,
                    client.retry.backoff_max_s,
                    context.log,
                )
                yield from _partition_range(
                    context, patient, config.partition_concurrency, selected
                )
        finally:
            client.close()

    return with_code_references(l1_imbalance)


def _withdrawn(
    context: dg.AssetExecutionContext, warehouse: Warehouse, instrument: Instrument, month: Month
) -> Landed:
    """A confirmed withdrawal: the month's file moves to ``_withdrawn/`` and the partition says
    so (0 rows, a new data version), so downstream assets follow; nothing is deleted.

    Idempotent: when the file is already gone (an earlier withdrawal run died before recording
    it, or someone moved it), the partition is still recorded as withdrawn, pointing at the
    newest withdrawn copy if there is one, so the sensor stops asking.
    """
    moved_to = warehouse.withdraw(instrument, month)
    earlier = warehouse.withdrawn(instrument, month) if moved_to is None else []
    where = moved_to or (earlier[-1] if earlier else None)
    message = (
        f"{instrument.key} {month}: Aperiodic no longer lists any file for this month (confirmed"
        " by two listings at least one sensor interval apart); "
        + (
            f"the warehouse file was moved to {moved_to}."
            if moved_to
            else f"the warehouse holds no file for it (withdrawn copy: {where or 'none'})."
        )
    )
    context.log.warning(message)
    metadata = {
        "warnings": dg.MetadataValue.text(f"withdrawn: {message}"),
        "rows": dg.MetadataValue.int(0),
        WITHDRAWN: dg.MetadataValue.bool(True),
        SOURCE_STAMPS: dg.MetadataValue.json({}),
        **({"withdrawn_to": dg.MetadataValue.path(where)} if where is not None else {}),
        # The partition's address in the table, where no file is now: 0 rows.
        **table_metadata(METRIC, warehouse.uri(instrument, month), 0, L1_COLUMNS),
    }
    return Landed(
        sha256="withdrawn", metadata=metadata, tags={WARNINGS_TAG: "withdrawn"}, check=None
    )


def _rejected_checks(
    asset: dg.AssetKey, exc: PartitionRejected, partition: str, selected: set[str]
) -> Iterator[dg.AssetCheckEvaluation]:
    """The validation check of a rejected month: Failed (ERROR), every rule's verdict in it."""
    if exc.validation is None or VALIDATION_CHECK not in selected:
        return  # no table to judge: the files could not even be assembled into one
    yield check_evaluation(validation_result(exc.validation), asset, partition, target=None)


def _attempt(
    asset: dg.AssetKey, partition: str, error: BaseException, description: str | None = None
) -> dg.AssetObservation:
    """A partition that failed for good in this run, recorded where the new-month sensor reads
    it (a rejected month waits for its files to change, a transient failure for its wait) and
    where the partitions view reads a failure (``mark_attempted``, by the caller)."""
    metadata: dict[str, Any] = {OUTCOME: "failed", "error": description or _describe(error)}
    if isinstance(error, PartitionRejected):
        metadata[OUTCOME] = "rejected"
        metadata[SOURCE_STAMPS] = dg.MetadataValue.json(error.source_stamps)
    wait = getattr(error, "retry_after_s", None)
    if wait is not None:
        metadata[RETRY_AFTER] = float(wait)
    return dg.AssetObservation(asset_key=asset, partition=partition, metadata=metadata)


def _one_partition(
    context: dg.AssetExecutionContext,
    land: Callable[[str], Landed | None],
    selected: set[str],
    retry_after_wait_max_s: float,
) -> Iterator[dg.MaterializeResult | dg.AssetObservation | dg.AssetCheckEvaluation]:
    """A single-partition run (UI, or a backfill of one key under another policy): Dagster
    stores the result and retries transient failures.

    The partition's own planned event comes first (``mark_attempted``), so whatever ends the
    run without a materialization, a crash included, shows the partition Failed.
    """
    key = context.partition_key
    if context.retry_number == 0:
        mark_attempted(context, key)
    try:
        result = land(key)
    except PartitionRejected as exc:
        yield from _rejected_checks(context.asset_key, exc, key, selected)
        yield _attempt(context.asset_key, key, exc)
        raise dg.Failure(
            description=str(exc),
            metadata={
                "quarantine": dg.MetadataValue.path(exc.quarantine_url),
                "failed_checks": failed_checks(exc.report),
            },
            allow_retries=False,
        ) from None
    except AperiodicError as exc:
        failure = _api_failure(context, exc, retry_after_wait_max_s)
        if isinstance(failure, dg.Failure) and (
            not failure.allow_retries or context.retry_number >= RETRY_POLICY.max_retries
        ):
            # No retry follows: the sensor takes over.
            yield _attempt(context.asset_key, key, exc, failure.description)
        raise failure from None
    if result is None:
        return
    yield dg.MaterializeResult(
        data_version=dg.DataVersion(result.sha256),
        metadata=result.metadata,
        tags=result.tags,
        check_results=[result.check] if result.check and VALIDATION_CHECK in selected else [],
    )


def _api_failure(
    context: dg.AssetExecutionContext, exc: AperiodicError, retry_after_wait_max_s: float
) -> Exception:
    """What a single-partition run raises for an API error: retry, not sooner than asked."""
    wait = getattr(exc, "retry_after_s", None)
    if wait is None:
        return dg.Failure(description=str(exc), allow_retries=exc.transient)
    if wait <= retry_after_wait_max_s and context.retry_number < RETRY_POLICY.max_retries:
        # Not sooner than the server allowed: the RetryPolicy's own delay could be shorter.
        context.log.warning(f"{exc} Retrying this partition in {wait:.0f}s.")
        return dg.RetryRequested(max_retries=RETRY_POLICY.max_retries, seconds_to_wait=wait)
    if wait <= retry_after_wait_max_s:  # the retries are spent: the sensor takes over
        return dg.Failure(description=f"{exc} No retry left in this run.", allow_retries=False)
    return dg.Failure(description=_too_long(exc, wait, retry_after_wait_max_s), allow_retries=False)


def _too_long(exc: AperiodicError, wait: float, wait_max: float) -> str:
    return (
        f"{exc} The server asked to wait {wait:.0f}s, longer than retry_after_wait_max_s"
        f" ({wait_max:.0f}s), so this run does not wait: the new-month sensor requests the"
        " partition again once the wait is over, or re-execute it yourself after it."
    )


def _patiently(
    land: Callable[[str], Landed | None],
    attempts: int,
    wait_max: float,
    backoff_s: float,
    log: logging.Logger,
    sleep: Callable[[float], None] = time.sleep,
) -> Callable[[str], Landed | None]:
    """``land`` with a ranged run's own retries of one partition after a transient API error.

    A ranged run has no step retry (it would redo the partitions that landed), so each
    partition gets ``attempts`` tries here, each after the server's Retry-After or a doubling
    backoff; a wait over ``wait_max`` ends the partition's tries at once, with the wait in its
    error, for the sensor to honour.
    """

    def run(key: str) -> Landed | None:
        for attempt in range(1, attempts):
            try:
                return land(key)
            except AperiodicError as exc:
                if not exc.transient:
                    raise
                asked = getattr(exc, "retry_after_s", None)
                wait = asked if asked is not None else backoff_s * 2 ** (attempt - 1)
                if wait > wait_max:
                    raise TransientError(_too_long(exc, wait, wait_max), wait) from None
                log.warning(
                    f"{key}: {exc} Trying this partition again in {wait:.1f}s"
                    f" (attempt {attempt + 1} of {attempts})."
                )
                sleep(wait)
        return land(key)  # the last attempt: whatever it raises is the partition's error

    return run


def _partition_range(
    context: dg.AssetExecutionContext,
    land: Callable[[str], Landed | None],
    concurrency: int,
    selected: set[str],
) -> Iterator[dg.AssetMaterialization | dg.AssetObservation | dg.AssetCheckEvaluation]:
    """A ranged (backfill) run: every partition reported on its own as soon as it lands (with
    whatever else landed meanwhile, up to ``concurrency`` of them).

    No step retry: it would redo the partitions that landed. Transient API errors are retried
    per partition (see :func:`_patiently`); what still fails is recorded for the sensor and left
    to it, or to the backfill's "re-execute from failure".
    """
    asset, keys = context.asset_key, context.partition_keys
    partitions_def = context.assets_def.partitions_def
    failures: dict[str, str] = {}
    # Reported together: at most ``concurrency`` partitions are ever materialized with their
    # check result not yet stored (their materializations, one query, their check results).
    finished = completed_batches(keys, land, concurrency)
    step = concurrency
    for batch in (done[i : i + step] for done in finished for i in range(0, len(done), step)):
        checked: dict[str, dg.AssetCheckResult] = {}
        for key, result in batch:
            if isinstance(result, BaseException):
                failures[key] = _describe(result)
                context.log.error(f"{key}: {failures[key]}")
                if isinstance(result, PartitionRejected):
                    yield from _rejected_checks(asset, result, key, selected)
                mark_attempted(context, key)
                yield _attempt(asset, key, result)
            elif result is not None:
                yield dg.AssetMaterialization(
                    asset_key=asset,
                    partition=key,
                    metadata=result.metadata,
                    tags={
                        **result.tags,
                        **materialization_tags(partitions_def, key, CODE_VERSION, result.sha256),
                    },
                )
                if result.check and VALIDATION_CHECK in selected:
                    checked[key] = result.check
        # The batch's check results, each pointing at the materialization just stored: one
        # query for the batch.
        targets = check_targets(context.instance, asset, list(checked), context.run.run_id)
        for key, check in checked.items():
            yield check_evaluation(check, asset, key, targets.get(key))
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} of {len(keys)} partitions failed; the others were"
            " materialized. The new-month sensor requests them again (after any wait the API"
            " asked for); or re-execute the backfill from failure to retry only these.",
            metadata={
                "failed_partitions": table(
                    [{"partition": k, "error": e} for k, e in sorted(failures.items())]
                )
            },
            allow_retries=False,
        )


def _describe(error: BaseException) -> str:
    if isinstance(error, PartitionRejected | AperiodicError):
        return str(error)
    return "".join(traceback.format_exception(error)).strip()
