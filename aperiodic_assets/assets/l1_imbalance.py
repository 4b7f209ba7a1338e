"""The ``aperiodic/l1_imbalance`` asset: one validated month of one instrument per partition.

Validation runs inside the asset, before anything is written (a blocking asset check would run
only after the data was stored); its results are reported as this asset's own checks. A
rejected month raises a Failure that names the check and where the raw input was quarantined.
No check result is emitted then: it would attach to the previous, still valid, materialization.
"""

import math
import warnings
from collections.abc import Iterator

import dagster as dg

from ..api import AperiodicError
from ..partitions import l1_partitions, parse_partition_key
from ..pipeline import PartitionOutcome, PartitionRejected, run_partition
from ..resources import AperiodicResource, WarehouseResource
from ..validation import CHECKS, CheckResult, ValidationConfig

L1_IMBALANCE = dg.AssetKey(["aperiodic", "l1_imbalance"])
API_POOL = "aperiodic_api"
#: Metadata key of the source files' identity; the new-month sensor compares it with its probe.
SOURCE_IDENTITY = "source_files_identity"
_SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}

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
    """Validation tolerances; the defaults suit Aperiodic's float64 files."""

    abs_tol: float = 1e-9
    rel_tol: float = 1e-9
    nan_share_max: float = 0.01


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
            code_version="1",
            description="Aperiodic l1_imbalance for one instrument and month, validated, as"
            " hive-partitioned Parquet in the warehouse.",
        )
    ],
    check_specs=CHECK_SPECS,
    # Check outputs are only optional in a subsettable multi-asset; needed for skipped months.
    can_subset=True,
    pool=API_POOL,
    retry_policy=dg.RetryPolicy(
        max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    ),
)
def l1_imbalance(
    context: dg.AssetExecutionContext,
    config: L1ImbalanceConfig,
    aperiodic: AperiodicResource,
    warehouse: WarehouseResource,
) -> Iterator[dg.MaterializeResult]:
    instrument, month = parse_partition_key(context.partition_key)
    client = aperiodic.client(logger=context.log, client_tag=context.run.run_id)
    tolerances = ValidationConfig(
        abs_tol=config.abs_tol, rel_tol=config.rel_tol, nan_share_max=config.nan_share_max
    )
    try:
        outcome = run_partition(client, warehouse.warehouse(), instrument, month, tolerances)
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
        raise dg.Failure(description=str(exc), allow_retries=exc.transient) from None
    finally:
        client.close()
    if outcome.written is None:
        context.log.info(
            f"{instrument.key} {month}: Aperiodic publishes no file for this month yet;"
            " nothing was materialized."
        )
        return
    selected = {key.name for key in context.selected_asset_check_keys}
    yield _materialize_result(outcome, selected)


def _materialize_result(outcome: PartitionOutcome, checks: set[str]) -> dg.MaterializeResult:
    written, table, report = outcome.written, outcome.table, outcome.report
    assert written is not None and table is not None and report is not None
    times = table["time"]
    daily = sum(1 for s in outcome.sources if s.info.day)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(written.sha256),
        metadata={
            "rows": dg.MetadataValue.int(written.rows),
            "first_time": str(times[0].as_py()),
            "last_time": str(times[-1].as_py()),
            "bytes": dg.MetadataValue.int(written.bytes),
            "source_files": dg.MetadataValue.int(len(outcome.sources)),
            "source_kind": f"{len(outcome.sources) - daily} monthly + {daily} daily",
            "path": dg.MetadataValue.path(written.path),
            "sha256": written.sha256,
            SOURCE_IDENTITY: outcome.source_identity,
            "checks": report.summary(),
        },
        check_results=[_check_result(c) for c in report.checks if c.name in checks],
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
