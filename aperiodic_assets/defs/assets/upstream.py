"""Whether an asset over every instrument of a month is current, at any universe size.

Dagster's staleness gives up past 100 upstream partitions (see :mod:`...core.versions`), so the
monthly summary records the data version of every ``l1_imbalance`` partition it read
(``upstream_data_versions``, with a fingerprint), and its ``upstream_current`` check says whether
that is still the upstream's latest for every month. A sensor evaluates it whenever a summary or
its upstream changes, so the check fails (WARN, naming the months and instruments that changed)
from the moment one instrument's month is republished until the summary has re-run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from ...core.months import Month
from ...core.universe import Instrument
from ...core.versions import drift, fingerprint, recorded
from .._dagster_internals import latest_data_versions
from ..deployment import Deployment
from ..partitions import partition_key

UPSTREAM_CURRENT = "upstream_current"
UPSTREAM_VERSIONS = "upstream_data_versions"
UPSTREAM_FINGERPRINT = "upstream_fingerprint"


def upstream_versions(
    instance: dg.DagsterInstance,
    deployment: Deployment,
    month: Month,
    instruments: Sequence[Instrument] | None = None,
) -> dict[str, str]:
    """Instrument key -> latest data version, for every instrument of ``month`` (``instruments``:
    the dimension's, when the caller already read them)."""
    if instruments is None:
        instruments = deployment.partitions.instrument_list(instance)
    keys = {str(partition_key(i, month)): i.key for i in instruments}
    latest = latest_data_versions(instance, deployment.l1_key, list(keys))
    return {keys[k]: v for k, v in latest.items()}


def built_from_metadata(versions: dict[str, str]) -> dict[str, dg.MetadataValue]:
    """What a build records of its upstream: how many partitions, a fingerprint, each version."""
    record = recorded(versions)
    return {
        "upstream_partitions": dg.MetadataValue.int(len(record)),
        UPSTREAM_FINGERPRINT: dg.MetadataValue.text(fingerprint(record)),
        UPSTREAM_VERSIONS: dg.MetadataValue.json(record),
    }


@dataclass(frozen=True)
class Report:
    """Every summarized month's record against the upstream now."""

    behind: dict[str, str]
    checked: int
    #: Changes when any month's summary or upstream changes: when to report again.
    state: str

    @property
    def text(self) -> str:
        if self.behind:
            return "; ".join(f"{month}: {what}" for month, what in self.behind.items())
        return f"all {self.checked} summarized months are built from the latest upstream data"

    def result(self) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            check_name=UPSTREAM_CURRENT,
            passed=not self.behind,
            severity=dg.AssetCheckSeverity.WARN,
            description=self.text[:2000],
            metadata={
                "upstream": dg.MetadataValue.text(self.text),
                "months_behind": dg.MetadataValue.json(sorted(self.behind)),
                "months_checked": dg.MetadataValue.int(self.checked),
            },
        )


def upstream_report(
    instance: dg.DagsterInstance, deployment: Deployment, summary: dg.AssetKey
) -> Report:
    """Two queries per summarized month: its latest record, the upstream's latest versions."""
    behind: dict[str, str] = {}
    states = []
    instruments = deployment.partitions.instrument_list(instance)
    for month_key in sorted(instance.get_materialized_partitions(summary)):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=summary, asset_partitions=[month_key]), limit=1
        ).records
        materialization = records[0].asset_materialization if records else None
        built = materialization.metadata.get(UPSTREAM_VERSIONS) if materialization else None
        if built is None:
            continue
        latest = upstream_versions(instance, deployment, Month.parse(month_key), instruments)
        states.append(f"{month_key}:{records[0].storage_id}:{fingerprint(recorded(latest))}")
        moved = drift(dict(built.value), latest)
        if not moved.current:
            behind[month_key] = moved.describe()
    state = hashlib.sha256("\n".join(states).encode()).hexdigest()
    return Report(behind, len(states), state)


def build_upstream_check(deployment: Deployment, summary: dg.AssetKey) -> dg.AssetChecksDefinition:
    """``upstream_current`` on the summary, over every month. Not partitioned: Dagster 1.13
    stores a runless evaluation of a partitioned check only once per partition (a unique index
    on run id and partition), and the sensor must report it again each time the upstream moves.
    Runnable from the UI too."""

    @dg.asset_check(
        asset=summary,
        name=UPSTREAM_CURRENT,
        description="[warn] Every month's summary was built from the latest data version of"
        " each l1_imbalance partition of its month (Dagster's own staleness stops at 100"
        " upstream partitions); fails naming the months and instruments that changed since."
        " The summary_upstream_sensor evaluates it whenever that changes.",
    )
    def upstream_current(context) -> dg.AssetCheckResult:  # a string annotation Dagster refuses
        return upstream_report(context.instance, deployment, summary).result()

    return upstream_current


def evaluate_upstream(
    context: dg.SensorEvaluationContext, deployment: Deployment, summary: dg.AssetKey
) -> dg.SensorResult | dg.SkipReason:
    """One tick: the check reported when its answer differs from the last one (cursor)."""
    report = upstream_report(context.instance, deployment, summary)
    if context.cursor == report.state:
        return dg.SkipReason("every summarized month's upstream is as last reported")
    result = report.result()
    evaluation = dg.AssetCheckEvaluation(
        asset_key=summary,
        check_name=UPSTREAM_CURRENT,
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata=result.metadata,
    )
    return dg.SensorResult(asset_events=[evaluation], cursor=report.state)


def build_upstream_sensor(deployment: Deployment, summary: dg.AssetKey) -> dg.SensorDefinition:
    """The sensor that keeps the summary's ``upstream_current`` check true to the upstream."""
    interval = deployment.sensor.interval_s if deployment.sensor else 3600

    @dg.sensor(
        name=deployment.name("summary_upstream_sensor"),
        description="Compares each monthly summary's record of the l1_imbalance data it was"
        " built from with the latest, and reports its upstream_current check when that changes.",
        minimum_interval_seconds=min(interval, 600),
        # It launches no runs and only reads the instance: on by default.
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def summary_upstream_sensor(context: dg.SensorEvaluationContext):
        return evaluate_upstream(context, deployment, summary)

    return summary_upstream_sensor
