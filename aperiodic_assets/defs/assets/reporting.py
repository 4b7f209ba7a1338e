"""How our assets read in Dagster: catalog attributes, materialization metadata, tags and checks.

What a person looks at first comes first: the materialization's first metadata entry and a tag
say whether the month landed with warnings; a rejected month still records each check's result
(the failing ones Failed with counts and examples, the others Passed). Tables use Dagster's own
table metadata, so the UI renders them natively, and every materialization carries Dagster's
own keys (``dagster/row_count``, ``dagster/uri``, ``dagster/table_name``,
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
from ...core.validation import CHECKS, CheckResult, ValidationReport
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
_SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}

# Dagster's table and URI metadata keys (TableMetadataSet, UriMetadataSet; the sets themselves
# are not exported by Dagster 1.13): the asset's overview shows the row count and the columns.
ROW_COUNT = "dagster/row_count"
URI = "dagster/uri"
TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"

#: The checks whose failure rejects a month (severity error). Blocking: a downstream asset in the
#: same run does not run after one fails, and the UI says so.
BLOCKING_CHECKS = frozenset(c.name for c in CHECKS if c.severity == "error")


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
    checks: list[dg.AssetCheckResult]


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
        checks=check_results(report),
    )


def warnings_text(report: ValidationReport) -> str:
    if not report.warnings:
        return "none"
    return "; ".join(f"{c.name}: {c.message}" for c in report.warnings)


def check_results(report: ValidationReport) -> list[dg.AssetCheckResult]:
    return [_check_result(c) for c in report.checks]


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
        metadata["examples"] = table(check.examples)
    return dg.AssetCheckResult(
        check_name=check.name,
        passed=check.passed,
        severity=_SEVERITY[check.severity],
        metadata=metadata,
        description=check.message,
    )


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
        blocking=check.check_name in BLOCKING_CHECKS,
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
