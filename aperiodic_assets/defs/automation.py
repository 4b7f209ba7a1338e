"""Schedules and sensors: new months, new days and republished files land with no one watching.

``new_month_sensor`` compares what Aperiodic publishes for the current month and the last
completed ones with what each partition was last built from (see :mod:`.watch`), using only
listings and one-byte ranged GETs (a presigned URL is signed for GET: HEAD is refused, as on S3),
concurrently and within a time budget well under Dagster's sensor timeout. The partitions of a
tick that need work are requested as ONE asset backfill, so the asset's BackfillPolicy makes as
few runs as a UI backfill. ``monthly_schedule`` materializes the last completed month of every
instrument shortly after month end, as the ranged runs such a backfill would make (a schedule
cannot request a backfill). Both start stopped; turn them on in the UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg

from ..core import clock, watch
from ..core.api import AperiodicClient, AperiodicError, FileInfo
from ..core.lifecycle import Lives, read_lives
from ..core.months import Month
from ..core.universe import Instrument
from ._dagster_internals import backfill_request, backfills_over, ranged_run_requests
from .assets.l1_imbalance import (
    OUTCOME,
    RETRY_AFTER,
    SOURCE_STAMPS,
    WITHDRAW_CONFIRMED,
    WITHDRAW_TAG,
)
from .deployment import Deployment, SensorSettings
from .partitions import partition_key
from .resources import AperiodicResource, WarehouseResource

#: Seconds of a tick's budget kept for its work after the API calls (at most a tenth of it).
WRAP_UP_S = 1.5
#: Tag on what the automation requests, naming which of it did (the sensor or the schedule).
TRIGGER_TAG = "aperiodic/trigger"
#: Tag on the sensor's backfills: which tick's request it carries, so the next ticks can ask
#: the instance whether it finished.
REQUEST_TAG = "aperiodic/request"
_T = TypeVar("_T")
_R = TypeVar("_R")


def watched_months(current: Month, lookback: int) -> list[Month]:
    """The current month and the ``lookback`` completed months before it, oldest first."""
    months = [current]
    while len(months) <= lookback:
        months.insert(0, months[0].previous())
    return months


def run_bounded(
    items: Sequence[_T], work: Callable[[_T], _R], concurrency: int, deadline: float
) -> tuple[list[tuple[_T, _R | AperiodicError]], int]:
    """``work`` over ``items`` in order, ``concurrency`` at a time, starting none after
    ``deadline``: the results of those done (an AperiodicError counts as a result) and how many
    were started."""
    results: list[tuple[_T, _R | AperiodicError]] = []
    started = 0
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sensor_probe") as pool:
        running: dict[Future, _T] = {}
        while started < len(items) or running:
            while started < len(items) and len(running) < concurrency:
                if time.monotonic() >= deadline:
                    break
                running[pool.submit(work, items[started])] = items[started]
                started += 1
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                item = running.pop(future)
                error = future.exception()
                if error is not None and not isinstance(error, AperiodicError):
                    raise error
                results.append((item, error if error is not None else future.result()))
    return results, started


@dataclass
class Tick:
    """One evaluation: what was listed, compared, probed and requested."""

    months: list[Month]
    settings: SensorSettings

    def list_instruments(
        self, client: AperiodicClient, instruments: Sequence[Instrument], deadline: float
    ) -> tuple[dict[Instrument, list[FileInfo]], list[str], int]:
        """Listings in rotation order: those that answered, the errors, and how far the
        rotation may move on (past every instrument that got a definite answer, so one whose
        listing the budget cut short comes first next tick)."""
        first, last = self.months[0].first_day, self.months[-1].last_day
        results, _ = run_bounded(
            instruments,
            lambda i: client.list_files(i, first, last),
            self.settings.concurrency,
            deadline,
        )
        listed, errors, answered = {}, [], set()
        for instrument, result in results:
            if isinstance(result, AperiodicError):
                errors.append(f"{instrument.key}: {result}")
                if not result.transient:
                    answered.add(instrument)
            else:
                listed[instrument] = result
                answered.add(instrument)
        done = 0
        while done < len(instruments) and (instruments[done] in answered):
            done += 1
        return listed, errors, done

    def watched(
        self,
        listed: dict[Instrument, list[FileInfo]],
        materialized: dict[str, watch.Materialized],
        failed: dict[str, watch.Failed],
        lives: Lives,
    ) -> list[watch.Watched]:
        out = []
        for instrument, files in listed.items():
            life = lives.by_key.get(instrument.key)
            for month in lives.months(instrument, self.months):
                key = str(partition_key(instrument, month))
                in_month = [f for f in files if (f.year, f.month) == (month.year, month.month)]
                closing = (
                    str(life.closed_since)
                    if life is not None and life.closed_since and life.last_month == month
                    else None
                )
                out.append(
                    watch.Watched(
                        key, in_month, materialized.get(key), failed.get(key), closing=closing
                    )
                )
        return out


@dataclass(frozen=True)
class History:
    """What the instance recorded for one asset's partitions: two queries per question."""

    instance: dg.DagsterInstance
    asset: dg.AssetKey

    def materialized(self, keys: Iterable[str]) -> dict[str, watch.Materialized]:
        """Per partition, the files its latest materialization was built from."""
        out = {}
        for record in self._latest(dg.DagsterEventType.ASSET_MATERIALIZATION, keys):
            mat = record.asset_materialization
            if mat is None or mat.partition is None:
                continue
            closed = mat.metadata.get("closed_since")
            out[mat.partition] = watch.Materialized(
                files=_stamps(mat.metadata),
                at=record.timestamp,
                closed_since=None if closed is None else str(closed.value),
            )
        return out

    def failed(self, keys: Iterable[str]) -> dict[str, watch.Failed]:
        """Per partition, its latest failed attempt as the asset recorded it."""
        out = {}
        for record in self._latest(dg.DagsterEventType.ASSET_OBSERVATION, keys):
            event = record.event_log_entry.asset_observation
            if event is None or event.partition is None or OUTCOME not in event.metadata:
                continue
            wait = event.metadata.get(RETRY_AFTER)
            out[event.partition] = watch.Failed(
                at=record.timestamp,
                rejected=event.metadata[OUTCOME].value == "rejected",
                files=_stamps(event.metadata),
                retry_after_s=None if wait is None else float(wait.value),
            )
        return out

    def complete(self, month: Month, keys: Iterable[str]) -> set[str]:
        """Partitions of ``month`` whose latest materialization already reaches its last day
        (the sensor landed them): the schedule, a backstop, leaves them alone."""
        last_day = month.last_day.isoformat()
        return {
            record.asset_materialization.partition
            for record in self._latest(dg.DagsterEventType.ASSET_MATERIALIZATION, keys)
            if record.asset_materialization is not None
            and record.asset_materialization.partition is not None
            and (through := record.asset_materialization.metadata.get("through")) is not None
            and through.value == last_day
        }

    def _latest(
        self, event_type: dg.DagsterEventType, keys: Iterable[str]
    ) -> list[dg.EventLogRecord]:
        storage_ids = self.instance.get_latest_storage_id_by_partition(
            self.asset, event_type, set(keys)
        )
        if not storage_ids:
            return []
        records_filter = dg.AssetRecordsFilter(
            asset_key=self.asset, storage_ids=list(storage_ids.values())
        )
        fetch = (
            self.instance.fetch_materializations
            if event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
            else self.instance.fetch_observations
        )
        return list(fetch(records_filter, limit=len(storage_ids)).records)


def _stamps(metadata: Mapping[str, dg.MetadataValue]) -> dict[str, str]:
    stamps = metadata.get(SOURCE_STAMPS)
    return dict(stamps.value) if stamps is not None and stamps.value else {}


def evaluate(
    context: dg.SensorEvaluationContext,
    client: AperiodicClient,
    deployment: Deployment,
    current: Month,
    lives: Lives | None = None,
) -> dg.SensorResult:
    """One sensor evaluation of ``deployment``'s instruments with its sensor settings; with
    ``lives``, only the months of each instrument's life are watched (a closed instrument
    whose last month is behind the watched ones is not listed at all)."""
    settings = deployment.sensor or SensorSettings()
    lives = lives or Lives()
    tick = Tick(watched_months(current, settings.lookback_months), settings)
    instruments = [
        i
        for i in deployment.partitions.instrument_list(context.instance)
        if lives.months(i, tick.months)
    ]
    asset = deployment.l1_key
    started_at = time.monotonic()
    # Every listing and probe of this tick, retries and timeouts included, ends by the deadline,
    # early enough for what follows them (reading the record, comparing, the request: ~0.5 s at
    # 1,500 instruments) to end within the budget too.
    deadline = started_at + settings.budget_s - min(WRAP_UP_S, settings.budget_s / 10)
    client = client.bounded(deadline)
    now = time.time()
    cursor = watch.WatchCursor.load(context.cursor)

    order = watch.rotated(instruments, cursor.next_instrument)
    listed, errors, done = tick.list_instruments(client, order, deadline)
    cursor.next_instrument = (cursor.next_instrument + done) % max(1, len(instruments))
    history = History(context.instance, asset)
    all_keys = {str(partition_key(i, m)) for i in instruments for m in tick.months}
    listed_keys = {str(partition_key(i, m)) for i in listed for m in tick.months}
    watched = tick.watched(
        listed,
        history.materialized(listed_keys),
        history.failed(listed_keys),
        lives,
    )

    settled = watch.settle_in_flight(
        cursor,
        watched,
        backfills_over(context.instance, REQUEST_TAG, cursor.request_ids()),
        now,
        settings.interval_s,
    )
    watch.saw_trouble(cursor, all_keys - listed_keys)
    plan = watch.plan(watched, cursor, now, settings.interval_s)
    rechecked, _ = run_bounded(
        plan.rechecks, lambda item: client.stamp(item[1]), settings.concurrency, deadline
    )
    probed, probes_started = run_bounded(
        plan.probes, lambda pair: client.stamp(pair[1]), settings.concurrency, deadline
    )
    watch.probed(cursor, plan, probes_started)
    stamps = [(w, s) for (w, _), s in probed if not isinstance(s, AperiodicError)]
    errors += [
        f"probe {f.label} of {w.key}: {s}" for (w, f), s in probed if isinstance(s, Exception)
    ]
    changed, waiting = watch.republished(stamps, cursor, now)
    recovered = watch.cleared(rechecked, cursor, now)
    requests = plan.requests + changed + recovered
    for r in recovered:
        plan.waiting.pop(r.key, None)
    waiting = {**plan.waiting, **waiting}
    request_id = f"{now:.3f}"
    watch.settle(cursor, watched, requests + plan.withdrawals, all_keys, now, request_id)

    summary = (
        f"listed {len(listed)} of {len(instruments)} instruments"
        f" ({len(tick.months)} months each); {plan.up_to_date} partitions up to date,"
        f" {plan.unpublished} not published, {plan.in_flight} requested earlier and not landed,"
        f" {len(waiting)} waiting after a failure, {plan.rejected} rejected (waiting for"
        f" corrected files), {plan.empty_once} listed empty once; identity probes:"
        f" {len(stamps)} of {plan.up_to_date + plan.rejected} newest + {plan.older_files}"
        f" older files;"
        f" {time.monotonic() - started_at:.1f}s"
    )
    for line in settled:
        context.log.warning(f"earlier request not landed: {line}")
    for key, reason in sorted(waiting.items()):
        context.log.info(f"not requesting {key} yet: {reason}")
    for error in errors:
        context.log.warning(f"will retry next tick: {error}")
    skipped = len(instruments) - len(listed)
    if skipped:
        context.log.warning(
            f"{skipped} instrument(s) not listed this tick (errors above, or the tick's"
            f" {settings.budget_s:g}s budget ran out); the next tick starts with"
            f" {order[done].key if done < len(order) else order[0].key}"
        )
    if not listed and instruments:
        # Nothing could be compared: fail the tick so the UI shows it.
        raise RuntimeError(
            f"no listing succeeded this tick ({time.monotonic() - started_at:.1f}s);"
            f" {len(errors)} failed: " + "; ".join(errors[:5])
        )
    context.log.info(summary)
    if not requests and not plan.withdrawals:
        return dg.SensorResult(skip_reason=f"nothing new: {summary}", cursor=cursor.dump())
    shown = 20
    for r in (requests + plan.withdrawals)[:shown]:
        context.log.info(f"requesting {r.key}: {r.reason}")
    if len(requests) + len(plan.withdrawals) > shown:
        context.log.info(f"... and {len(requests) + len(plan.withdrawals) - shown} more partitions")
    tags = {TRIGGER_TAG: deployment.name("new_month_sensor"), REQUEST_TAG: request_id}
    run_requests = [
        backfill_request(
            asset,
            deployment.partitions.l1,
            [r.key for r in batch],
            {**tags, "aperiodic/partitions": str(len(batch)), **extra},
        )
        for batch, extra in (
            (requests, {}),
            (plan.withdrawals, {WITHDRAW_TAG: WITHDRAW_CONFIRMED}),
        )
        if batch
    ]
    return dg.SensorResult(run_requests=run_requests, cursor=cursor.dump())


def _lives(deployment: Deployment, warehouse: WarehouseResource) -> Lives:
    """The discovered instruments' lives (none for a universe of explicit instruments)."""
    return read_lives(warehouse.get_warehouse()) if deployment.universe.discovers else Lives()


def build_new_month_sensor(deployment: Deployment) -> dg.SensorDefinition:
    """The sensor that requests what is new or changed at Aperiodic (see :func:`evaluate`)."""
    settings = deployment.sensor or SensorSettings()

    @dg.sensor(
        name=deployment.name("new_month_sensor"),
        description="Requests one backfill of the partitions (current month and the last"
        " completed ones) whose published files are new, have new days, or were republished"
        " since they were last materialized.",
        asset_selection=[deployment.l1_key],
        minimum_interval_seconds=settings.interval_s,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def new_month_sensor(
        context: dg.SensorEvaluationContext,
        aperiodic: AperiodicResource,
        warehouse: WarehouseResource,
    ):
        current = deployment.partitions.current_month(Month.of(clock.today()))
        if current is None:
            return dg.SkipReason("no month in the partitions yet")
        client = aperiodic.get_client(logger=context.log, max_connections=settings.concurrency)
        try:
            return evaluate(context, client, deployment, current, _lives(deployment, warehouse))
        finally:
            client.close()

    return new_month_sensor


def schedule_requests(
    deployment: Deployment,
    month: Month,
    instruments: Iterable[Instrument],
    instance: dg.DagsterInstance | None = None,
) -> list[dg.RunRequest]:
    """Every instrument's ``month`` as the ranged runs of one single-run backfill."""
    keys = [str(partition_key(i, month)) for i in instruments]
    return ranged_run_requests(
        deployment.l1_key,
        deployment.partitions.l1,
        keys,
        run_key=f"scheduled:{month}",
        tags={TRIGGER_TAG: deployment.name("monthly_schedule"), "aperiodic/month": month.key},
        instance=instance,
    )


def build_monthly_schedule(deployment: Deployment, cron: str) -> dg.ScheduleDefinition:
    """The backstop schedule: the last completed month of every instrument, after month end."""
    asset = deployment.l1_key

    @dg.schedule(
        name=deployment.name("monthly_schedule"),
        description="The last completed month of every instrument that does not hold it whole"
        " yet, a few hours after month end (UTC), in as few runs as a backfill: a backstop for"
        " the sensor.",
        cron_schedule=cron,
        execution_timezone="UTC",
        target=[asset],
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    def monthly_schedule(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
        month = Month.of(context.scheduled_execution_time.date()).previous()
        instruments = _lives(deployment, warehouse).covering(
            deployment.partitions.instrument_list(context.instance), month
        )
        keys = {str(partition_key(i, month)): i for i in instruments}
        done = History(context.instance, asset).complete(month, keys)
        todo = [i for k, i in keys.items() if k not in done]
        if not todo:
            return dg.SkipReason(f"{month}: every instrument already holds the whole month")
        return schedule_requests(deployment, month, todo, context.instance)

    return monthly_schedule
