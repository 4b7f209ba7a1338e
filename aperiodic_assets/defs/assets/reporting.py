"""How our assets read in Dagster: catalog attributes, materialization metadata, tags and checks.

What a person looks at first comes first: the materialization's first metadata entry and a tag
say whether the month landed with warnings; a rejected month still records its validation check
(Failed, the failing rules first, with counts and examples beside every rule's verdict). Tables
use Dagster's own table metadata, so the UI renders them natively, and every materialization
carries Dagster's own keys (``dagster/row_count``, ``dagster/uri``, ``dagster/table_name``,
``dagster/column_schema``), which the catalog and other tools read without knowing this package.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import dagster as dg
import pyarrow as pa

from ...core.pipeline import PartitionOutcome
from ...core.schema import AVG_COLUMNS, METRIC, POINT_COLUMNS, SCHEMA, TIME
from ...core.validation import CheckResult, ValidationReport
from .._dagster_internals import AssetCheckEvaluationTargetMaterializationData

#: Metadata key of the source files' identity (one digest over every file).
SOURCE_IDENTITY = "source_files_identity"
#: Metadata key of each source file's identity (label -> ETag:size); the sensor compares probes.
SOURCE_STAMPS = "source_stamps"
#: Materialization tag naming the WARN checks that did not pass ("none" when all passed).
WARNINGS_TAG = "aperiodic/warnings"
#: Metadata key of what it took to bring the source files into the canonical form, in words.
NORMALIZED = "normalized"
ONE_DAY = timedelta(days=1)

# Dagster's table and URI metadata keys (TableMetadataSet, UriMetadataSet; the sets themselves
# are not exported by Dagster 1.13): the asset's overview shows the row count and the columns.
ROW_COUNT = "dagster/row_count"
URI = "dagster/uri"
TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"


def column_schema(
    schema: pa.Schema, descriptions: Mapping[str, str] | None = None
) -> dg.TableSchema:
    """An Arrow schema as Dagster's column schema; types as Arrow names them (``double``,
    ``timestamp[us]``), the names ``pyarrow.parquet.read_schema`` shows for the files."""
    described = descriptions or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(f.name, str(f.type), description=described.get(f.name)) for f in schema
        ]
    )


#: The columns of every l1_imbalance file in the warehouse.
L1_COLUMNS = column_schema(
    SCHEMA,
    {
        TIME: "interval start, UTC",
        **{c: "last value in the interval" for c in POINT_COLUMNS},
        **{c: "averaged over the interval" for c in AVG_COLUMNS},
    },
)


def table_metadata(
    table_name: str, location: str, rows: int, columns: dg.TableSchema
) -> dict[str, dg.MetadataValue]:
    """Dagster's table metadata of one written (or withdrawn: 0 rows) partition file."""
    return {
        ROW_COUNT: dg.MetadataValue.int(rows),
        URI: dg.MetadataValue.text(uri(location)),
        TABLE_NAME: dg.MetadataValue.text(table_name),
        COLUMN_SCHEMA: dg.MetadataValue.table_schema(columns),
    }


def uri(location: str) -> str:
    """A warehouse location as a URI: ``s3://`` and ``file://`` as they are, a local path as
    ``file://`` (hive folders' ``=`` and ``:`` kept: both are legal in a URI path)."""
    return location if "://" in location else "file://" + quote(location, safe="/:=")


def with_code_references(assets_def: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """``assets_def`` with the file and line of its function on each asset (the catalog's code
    link). Local paths: linking to a Git host needs a remote URL, and the repository has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        (referenced,) = dg.with_source_code_references([assets_def])
    assert isinstance(referenced, dg.AssetsDefinition)
    return referenced


@dataclass(frozen=True)
class Landed:
    """What a written partition reports; small, so a ranged run keeps no tables around."""

    sha256: str
    metadata: dict[str, dg.MetadataValue]
    tags: dict[str, str]
    check: dg.AssetCheckResult | None


def landed(outcome: PartitionOutcome) -> Landed | None:
    """The report of a written partition; None when Aperiodic publishes no file for the month."""
    written, data, report = outcome.written, outcome.table, outcome.report
    normalized = outcome.normalized
    if written is None:
        return None
    assert data is not None and report is not None and normalized is not None
    times = data["time"]
    daily = sum(1 for s in outcome.sources if s.info.day)
    warnings = warnings_text(report)
    changed = normalized.records()
    closed = outcome.instrument.closed_since
    if closed is not None:
        warnings = f"instrument closed since {closed}, last data {closed - ONE_DAY}; {warnings}"
    return Landed(
        sha256=written.sha256,
        metadata={
            # First, so the partition's page says it before anything else.
            "warnings": dg.MetadataValue.text(warnings),
            "rows": dg.MetadataValue.int(written.rows),
            "through": dg.MetadataValue.text(str(outcome.through)),
            "first_time": dg.MetadataValue.text(str(times[0].as_py())),
            "last_time": dg.MetadataValue.text(str(times[-1].as_py())),
            "bytes": dg.MetadataValue.int(written.bytes),
            "source_files": dg.MetadataValue.int(len(outcome.sources)),
            "source_kind": dg.MetadataValue.text(
                f"{len(outcome.sources) - daily} monthly + {daily} daily"
            ),
            # What the source files looked like, as far as it differed from what was written.
            NORMALIZED: dg.MetadataValue.text(normalized.summary()),
            **({"normalized_files": table(changed)} if changed else {}),
            "path": dg.MetadataValue.path(written.path),
            "sha256": dg.MetadataValue.text(written.sha256),
            SOURCE_IDENTITY: dg.MetadataValue.text(outcome.source_identity),
            SOURCE_STAMPS: dg.MetadataValue.json(outcome.source_stamps),
            "checks": dg.MetadataValue.text(report.summary()),
            **({"closed_since": dg.MetadataValue.text(str(closed))} if closed else {}),
            **table_metadata(METRIC, written.path, written.rows, L1_COLUMNS),
        },
        tags={WARNINGS_TAG: ",".join(c.name for c in report.warnings) or "none"},
        check=validation_result(report),
    )


def warnings_text(report: ValidationReport) -> str:
    if not report.warnings:
        return "none"
    return "; ".join(f"{c.name}: {c.message}" for c in report.warnings)


#: The asset's one check: every validation rule's verdict on a partition, in one record.
VALIDATION_CHECK = "validation"


def validation_result(report: ValidationReport) -> dg.AssetCheckResult:
    """One partition's validation as ONE check result: every rule's verdict in a table, the
    failing rules first in the description, severity the worst failing check's.

    One record per partition instead of one per check: each check evaluation is a write to
    Dagster's event log and check index, and at a universe's size those writes, not the data
    work, were the cost of a run. Dagster blocks downstream only on an ERROR failure, so a month
    with warnings alone is a WARN failure that blocks nothing.
    """
    failed = [c for c in report.checks if c.failed]
    metadata: dict[str, dg.RawMetadataValue] = {
        # First: what a person needs to read in the check's row in the UI.
        "failed": ", ".join(f"{c.name} ({c.severity})" for c in failed) or "none",
        "violations": dg.MetadataValue.int(sum(c.violations for c in failed)),
        "rules": table(
            [
                {
                    "check": c.name,
                    "rule": r.name,
                    "severity": c.severity,
                    "status": r.status,
                    "violations": r.violations,
                    "message": r.message,
                }
                for c in report.checks
                for r in c.rules
            ]
        ),
    }
    examples = [{"check": c.name, **e} for c in failed for e in c.examples]
    if examples:
        metadata["examples"] = table(examples)
    for check in failed:  # what a failing check measured; the table has every verdict
        for key, value in check.metadata.items():
            if key.endswith("_example") or value is None:
                continue  # the examples table holds them
            metadata[f"{check.name}/{key}"] = _metadata_value(value)
    errors = any(c.severity == "error" for c in failed)
    return dg.AssetCheckResult(
        check_name=VALIDATION_CHECK,
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=_verdict(report, failed),
    )


def _verdict(report: ValidationReport, failed: Sequence[CheckResult]) -> str:
    """The check's description: the failing checks with their rules' counts and messages."""
    if not failed:
        return f"all {len(report.checks)} checks passed ({report.rows} rows)"
    return f"{report.rows} rows; " + "; ".join(
        f"{c.name} [{c.severity}]: {c.message}" for c in failed
    )


def _metadata_value(value: Any) -> dg.RawMetadataValue:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return dg.MetadataValue.json(value)


def check_evaluation(
    check: dg.AssetCheckResult,
    asset_key: dg.AssetKey,
    partition: str,
    target: AssetCheckEvaluationTargetMaterializationData | None,
) -> dg.AssetCheckEvaluation:
    """A check result for one partition of a run that reports partitions itself; ``target``
    None for a rejected month (there is no materialization it could describe)."""
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=str(check.check_name),
        passed=check.passed,
        metadata=check.metadata,
        target_materialization_data=target,
        severity=check.severity,
        description=check.description,
        blocking=True,
        partition=partition,
    )


def failed_checks(report: Mapping[str, Any]) -> dg.MetadataValue:
    """The checks a rejected month failed, as a table (or the assembly error when no report)."""
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
    return table(rows) if rows else dg.MetadataValue.text(str(report.get("error", "")))


def table(rows: Sequence[Mapping[str, Any]]) -> dg.MetadataValue:
    """Rows of small dicts as Dagster table metadata; every cell shown as text."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: _cell(r.get(c)) for c in columns}) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]),
    )


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
