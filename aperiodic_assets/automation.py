"""Schedules and sensors: new and republished months land with no one watching.

``new_month_sensor`` probes recently completed months cheaply (one listing plus HEAD requests,
nothing downloaded) and asks for a run per partition whose files it has not seen, with a
``run_key`` made of the partition and the files' identity: the same files never run twice, a
republished file runs again. ``monthly_schedule`` materializes the last completed month of every
instrument shortly after month end. Both start stopped; turn them on in the UI.
"""

import json
import os
from dataclasses import dataclass

import dagster as dg

from .api import AperiodicError, files_identity
from .assets.l1_imbalance import L1_IMBALANCE, SOURCE_IDENTITY
from .months import Month
from .partitions import UNIVERSE, month_partitions, partition_key
from .resources import AperiodicResource

#: Seconds between sensor evaluations (APERIODIC_SENSOR_INTERVAL_S, default one hour).
SENSOR_INTERVAL_S = int(os.environ.get("APERIODIC_SENSOR_INTERVAL_S", "3600"))
#: How many completed months back the sensor looks for new or republished files.
LOOKBACK_MONTHS = 2
#: At most this many (instrument, month) probes per tick; the rest wait for the next tick.
MAX_PROBES_PER_TICK = 20


@dataclass
class SensorCursor:
    """Per partition, the identity of the files last requested; plus where the round robin is."""

    seen: dict[str, str]
    position: int = 0

    @classmethod
    def load(cls, raw: str | None) -> "SensorCursor":
        data = json.loads(raw) if raw else {}
        return cls(seen=dict(data.get("seen", {})), position=int(data.get("position", 0)))

    def dump(self) -> str:
        return json.dumps({"seen": self.seen, "position": self.position}, sort_keys=True)


def recent_months(last: Month, count: int = LOOKBACK_MONTHS) -> list[Month]:
    months = [last]
    while len(months) < count:
        months.append(months[-1].previous())
    return months


@dg.sensor(
    name="new_month_sensor",
    description="Requests a run for each partition of a recently completed month whose files are"
    " new or were republished since the last request.",
    asset_selection=[L1_IMBALANCE],
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def new_month_sensor(context: dg.SensorEvaluationContext, aperiodic: AperiodicResource):
    cursor = SensorCursor.load(context.cursor)
    last_key = month_partitions.get_last_partition_key()
    if last_key is None:
        return dg.SkipReason("no completed month in the partitions yet")
    probes = [
        (instrument, month)
        for month in recent_months(Month.parse(last_key))
        for instrument in UNIVERSE.instruments
    ]
    start = cursor.position % len(probes)
    batch = (probes[start:] + probes[:start])[:MAX_PROBES_PER_TICK]
    cursor.position = (start + len(batch)) % len(probes)

    client = aperiodic.client(logger=context.log)
    run_requests, errors, unpublished = [], [], 0
    try:
        for instrument, month in batch:
            key = partition_key(instrument, month)
            try:
                stamps = client.probe_month(instrument, month)
            except AperiodicError as exc:
                errors.append(f"{instrument.key} {month}: {exc}")
                continue
            if not stamps:
                unpublished += 1
                continue
            identity = files_identity((s.label, s.etag, s.size) for s in stamps)
            if identity in (cursor.seen.get(str(key)), _materialized_identity(context, key)):
                cursor.seen[str(key)] = identity
                continue
            cursor.seen[str(key)] = identity
            run_requests.append(
                dg.RunRequest(
                    run_key=f"{key}:{identity}",
                    partition_key=key,
                    tags={"aperiodic/files": identity},
                )
            )
    finally:
        client.close()

    for error in errors:
        context.log.error(f"probe failed, will retry next tick: {error}")
    if errors and not run_requests:
        # Fail the tick so the UI shows it; the cursor is not advanced, so it is all retried.
        raise RuntimeError(f"{len(errors)} of {len(batch)} probes failed: " + "; ".join(errors))
    if not run_requests:
        return dg.SensorResult(
            skip_reason=f"nothing new: probed {len(batch)} partitions, the files of"
            f" {len(batch) - unpublished} are unchanged since their last run and"
            f" {unpublished} are not published yet",
            cursor=cursor.dump(),
        )
    return dg.SensorResult(run_requests=run_requests, cursor=cursor.dump())


def _materialized_identity(context: dg.SensorEvaluationContext, key: dg.MultiPartitionKey):
    """The source files identity recorded by the partition's latest materialization, if any."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=L1_IMBALANCE, asset_partitions=[str(key)]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get(SOURCE_IDENTITY)
    return value.value if value is not None else None


@dg.schedule(
    name="monthly_schedule",
    description="The last completed month of every instrument, a few hours after month end (UTC).",
    cron_schedule="0 6 1 * *",
    execution_timezone="UTC",
    target=[L1_IMBALANCE],
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def monthly_schedule(context: dg.ScheduleEvaluationContext):
    month = Month.of(context.scheduled_execution_time.date()).previous()
    for instrument in UNIVERSE.instruments:
        key = partition_key(instrument, month)
        yield dg.RunRequest(run_key=f"{key}:scheduled", partition_key=key)
