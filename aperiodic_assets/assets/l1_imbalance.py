"""The ``aperiodic/l1_imbalance`` asset: one validated month of one instrument per partition.

Validation runs inside the asset, before anything is written (a blocking asset check would run
only after the data was stored); its results are reported as this asset's own checks. A
rejected month raises a Failure that names the check and where the raw input was quarantined.
No check result is emitted then: it would attach to the previous, still valid, materialization.

Backfills run as ranged runs (``BackfillPolicy.single_run``): Dagster's per-run start-up costs
seconds, the data work of a month a fraction of that. A ranged run processes its partitions on a
few threads and reports each one as it lands, with its own materialization, data version and
check results, exactly as a single-partition run would. Partitions that fail are left
unmaterialized and the run fails at the end, so the backfill's "re-execute from failure" (target
minus materialized) retries only them.
"""

import math
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import dagster as dg
from pydantic import Field

from .._dagster_internals import (
    AssetCheckEvaluationTargetMaterializationData,
    check_target,
    materialization_tags,
)
from ..api import AperiodicClient, AperiodicError
from ..partitions import l1_partitions, parse_partition_key
from ..pipeline import PartitionOutcome, PartitionRejected, run_partition
from ..resources import AperiodicResource, WarehouseResource
from ..validation import CHECKS, CheckResult, ValidationConfig
from ..warehouse import Warehouse

L1_IMBALANCE = dg.AssetKey(["aperiodic", "l1_imbalance"])
API_POOL = "aperiodic_api"
CODE_VERSION = "1"
#: Metadata key of the source files' identity (one digest over every file).
SOURCE_IDENTITY = "source_files_identity"
#: Metadata key of each source file's identity (label -> ETag:size); the sensor compares probes.
SOURCE_STAMPS = "source_stamps"
#: Fresh to yesterday: Aperiodic publishes each day's file shortly after midnight UTC and the
#: sensor notices it within its interval, so by 06:00 UTC the asset must have materialized since
#: midnight. Dagster evaluates it on the asset as a whole (its latest materialization of any
#: partition), shown as the asset's freshness state in the UI; needs `freshness: enabled` in
#: dagster.yaml.
FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *", lower_bound_delta=timedelta(hours=6))
_SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}
_K = TypeVar("_K")
_R = TypeVar("_R")

with warnings.catch_warnings():
    # Partitioned check specs are a preview feature; they are what makes each partition show
    # its own check results instead of one check over all partitions.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    CHECK_SPECS = [
        dg.AssetCheckSpec(
            spec.name,
            asset=L1_IMBALANCE,
            description=f"[{spec.severity}] {spec.description}",
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
    # One run per contiguous range of partitions (per instrument): run start-up is paid once.
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
    client = aperiodic.client(
        logger=context.log,
        client_tag=context.run.run_id,
        # Every partition thread shares the client's connection pool.
        max_connections=config.partition_concurrency * aperiodic.max_concurrent_downloads,
    )
    tolerances = ValidationConfig(
        abs_tol=config.abs_tol, rel_tol=config.rel_tol, nan_share_max=config.nan_share_max
    )
    store = warehouse.warehouse()
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


@dataclass(frozen=True)
class _Landed:
    """What a written partition reports; small, so a ranged run keeps no tables around."""

    sha256: str
    metadata: dict[str, dg.MetadataValue]
    checks: list[dg.AssetCheckResult]


def _land(
    client: AperiodicClient, warehouse: Warehouse, key: str, tolerances: ValidationConfig
) -> _Landed | None:
    """Run one partition; None when Aperiodic publishes no file for the month."""
    instrument, month = parse_partition_key(key)
    return _landed(run_partition(client, warehouse, instrument, month, tolerances))


def _one_partition(
    context: dg.AssetExecutionContext,
    client: AperiodicClient,
    warehouse: Warehouse,
    tolerances: ValidationConfig,
    selected: set[str],
    retry_after_wait_max_s: float,
) -> Iterator[dg.MaterializeResult]:
    """A single-partition run (UI, sensor, schedule): Dagster stores the result and retries."""
    key = context.partition_key
    try:
        landed = _land(client, warehouse, key, tolerances)
    except PartitionRejected as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={
                "quarantine": dg.MetadataValue.path(exc.quarantine_url),
                "failed_checks": dg.MetadataValue.md(_failed_checks_table(exc.report)),
            },
            allow_retries=False,
        ) from None
    except AperiodicError as exc:
        wait = getattr(exc, "retry_after_s", None)
        if wait is None:
            raise dg.Failure(description=str(exc), allow_retries=exc.transient) from None
        if wait <= retry_after_wait_max_s:
            # Not sooner than the server allowed: the RetryPolicy's own delay could be shorter.
            context.log.warning(f"{exc} Retrying this partition in {wait:.0f}s.")
            raise dg.RetryRequested(max_retries=3, seconds_to_wait=wait) from None
        raise dg.Failure(
            description=f"{exc} That is longer than retry_after_wait_max_s"
            f" ({retry_after_wait_max_s:.0f}s), so this run does not wait: the new-month sensor"
            " requests the partition again later, or re-execute it yourself after the wait.",
            allow_retries=False,
        ) from None
    if landed is None:
        _log_unpublished(context, key)
        return
    yield dg.MaterializeResult(
        data_version=dg.DataVersion(landed.sha256),
        metadata=landed.metadata,
        check_results=[c for c in landed.checks if c.check_name in selected],
    )


def _partition_range(
    context: dg.AssetExecutionContext,
    land: Callable[[str], _Landed | None],
    concurrency: int,
    selected: set[str],
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """A ranged (backfill) run: every partition reported on its own as soon as it lands.

    No step retry: it would redo the partitions that landed. Transient API errors are retried by
    the client; what still fails is left to the backfill's "re-execute from failure".
    """
    keys = context.partition_keys
    failures: dict[str, str] = {}
    for key, result in _completed(keys, land, concurrency):
        if isinstance(result, BaseException):
            failures[key] = _describe(result)
            context.log.error(f"{key}: {failures[key]}")
        elif result is None:
            _log_unpublished(context, key)
        else:
            yield dg.AssetMaterialization(
                asset_key=L1_IMBALANCE,
                partition=key,
                metadata=result.metadata,
                tags=materialization_tags(l1_partitions, key, CODE_VERSION, result.sha256),
            )
            target = check_target(context.instance, L1_IMBALANCE, key)
            yield from (
                _partition_check(check, key, target)
                for check in result.checks
                if check.check_name in selected
            )
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} of {len(keys)} partitions failed; the others were"
            " materialized. Re-execute the backfill from failure to retry only these.",
            metadata={
                "failed_partitions": dg.MetadataValue.md(
                    _markdown([{"partition": k, "error": e} for k, e in sorted(failures.items())])
                )
            },
            allow_retries=False,
        )


def _completed(
    keys: Sequence[_K], work: Callable[[_K], _R], concurrency: int
) -> Iterator[tuple[_K, _R | BaseException]]:
    """``(key, result or exception)`` in completion order, ``concurrency`` keys at a time."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="l1_partition")
    try:
        futures = {pool.submit(work, key): key for key in keys}
        for future in as_completed(futures):
            error = future.exception()
            yield futures[future], error if error is not None else future.result()
    finally:
        # A failed or terminated run must not wait for partitions that have not started.
        pool.shutdown(wait=True, cancel_futures=True)


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


def _partition_check(
    check: dg.AssetCheckResult,
    partition: str,
    target: AssetCheckEvaluationTargetMaterializationData | None,
) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=L1_IMBALANCE,
        check_name=str(check.check_name),
        passed=check.passed,
        metadata=check.metadata,
        target_materialization_data=target,
        severity=check.severity,
        description=check.description,
        blocking=False,
        partition=partition,
    )


# --- reporting ---------------------------------------------------------------------------------


def _landed(outcome: PartitionOutcome) -> _Landed | None:
    written, table, report = outcome.written, outcome.table, outcome.report
    if written is None:
        return None
    assert table is not None and report is not None
    times = table["time"]
    daily = sum(1 for s in outcome.sources if s.info.day)
    return _Landed(
        sha256=written.sha256,
        metadata={
            "rows": dg.MetadataValue.int(written.rows),
            "first_time": dg.MetadataValue.text(str(times[0].as_py())),
            "last_time": dg.MetadataValue.text(str(times[-1].as_py())),
            "bytes": dg.MetadataValue.int(written.bytes),
            "source_files": dg.MetadataValue.int(len(outcome.sources)),
            "source_kind": dg.MetadataValue.text(
                f"{len(outcome.sources) - daily} monthly + {daily} daily"
            ),
            "through": dg.MetadataValue.text(str(outcome.through)),
            "path": dg.MetadataValue.path(written.path),
            "sha256": dg.MetadataValue.text(written.sha256),
            SOURCE_IDENTITY: dg.MetadataValue.text(outcome.source_identity),
            SOURCE_STAMPS: dg.MetadataValue.json(outcome.source_stamps),
            "checks": dg.MetadataValue.text(report.summary()),
        },
        checks=[_check_result(c) for c in report.checks],
    )


def _check_result(check: CheckResult) -> dg.AssetCheckResult:
    metadata: dict[str, dg.RawMetadataValue] = {
        "violations": dg.MetadataValue.int(check.violations),
        "message": check.message,
    }
    for key, value in check.metadata.items():
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            metadata[key] = str(value)
        elif isinstance(value, bool | int | float | str):
            metadata[key] = value
        else:
            metadata[key] = dg.MetadataValue.json(value)
    if check.examples:
        metadata["examples"] = dg.MetadataValue.md(_markdown(check.examples))
    return dg.AssetCheckResult(
        check_name=check.name,
        passed=check.passed,
        severity=_SEVERITY[check.severity],
        metadata=metadata,
        description=check.message,
    )


def _failed_checks_table(report: dict) -> str:
    rows = [
        {
            "check": c["name"],
            "severity": c["severity"],
            "violations": c["violations"],
            "message": c["message"],
        }
        for c in report.get("checks", [])
        if not c["passed"]
    ]
    return _markdown(rows) if rows else report.get("error", "")


def _markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = (str(r.get(c, "")).replace("|", "\\|").replace("\n", " ") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
