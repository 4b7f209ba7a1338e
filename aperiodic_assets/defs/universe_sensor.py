"""``universe_sensor``: the instrument dimension follows the exchanges' symbol lists.

For a universe with ``discover`` rules, each tick reads ``/metadata/symbols`` of every exchange
a rule names, resolves the rules (:mod:`..core.discovery`), lists the files of what is new or
changed to learn each instrument's life (:mod:`..core.lifecycle`), adds the new instruments to
the dynamic dimension (``SensorResult.dynamic_partitions_requests``: no edit, no redeploy, no
restart) and records the lives in the warehouse. A closing or reopening is also an observation
on the instrument's last month, so the UI shows since when. Work left when the tick's budget
runs out is done first on the next tick. No instrument is ever removed from the dimension: a
closed one keeps its history.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import dagster as dg

from ..core import clock
from ..core.api import AperiodicClient, AperiodicError
from ..core.discovery import Resolution, resolve
from ..core.lifecycle import Life, Lives, Probe, probed, probes, read_lives, write_lives
from ..core.months import Month
from ..core.warehouse import Warehouse
from .automation import run_bounded
from .deployment import Deployment, UniverseSensorSettings
from .partitions import partition_key
from .resources import AperiodicResource, WarehouseResource

#: Observation metadata of a closing or reopening.
LIFE = "aperiodic/life"


def evaluate(
    context: dg.SensorEvaluationContext,
    client: AperiodicClient,
    store: Warehouse,
    deployment: Deployment,
) -> dg.SensorResult:
    """One tick: symbol lists, then the files of what changed, within the budget."""
    settings = deployment.universe_sensor or UniverseSensorSettings()
    universe, partitions = deployment.universe, deployment.partitions
    started = time.monotonic()
    deadline = started + settings.budget_s
    client = client.bounded(deadline)
    today, now = clock.today(), time.time()

    answers, _ = run_bounded(
        universe.exchanges, client.list_symbols, settings.concurrency, deadline
    )
    symbols = {e: s for e, s in answers if not isinstance(s, AperiodicError)}
    for exchange, error in answers:
        if isinstance(error, AperiodicError):
            context.log.warning(f"symbols of {exchange} not read; asked again next tick: {error}")
    resolution = resolve(universe.rules, symbols)
    explicit = set(universe.keys)
    existing = set(context.instance.get_dynamic_partitions(partitions.dynamic_name))
    lives = read_lives(store)
    candidates = {k: r.delisted for k, r in resolution.candidates.items() if k not in explicit}
    todo = probes(
        existing - explicit, candidates, lives, symbols, universe.start_month.first_day, now
    )
    results, started_probes = run_bounded(
        todo,
        lambda p: client.list_files(p.instrument, p.since, today),
        settings.concurrency,
        deadline,
    )
    changes: list[tuple[Probe, Life | None, Life]] = []
    for probe, files in results:
        if isinstance(files, AperiodicError):
            context.log.warning(f"files of {probe.instrument.key} not listed: {files}")
            continue
        old = lives.get(probe.instrument.key)
        new = probed(old, files, probe.since, today, now, probe.listed, probe.selected)
        lives.by_key[probe.instrument.key] = new
        changes.append((probe, old, new))
    added = _additions(explicit, existing, lives, candidates, universe.start_month)
    if changes:
        write_lives(store, lives)
    events = [e for probe, old, new in changes if (e := _life_event(deployment, probe, old, new))]
    _log(context, resolution, symbols, added, events, len(todo) - started_probes, started)
    requests = (
        [dg.AddDynamicPartitionsRequest(partitions.dynamic_name, sorted(added))] if added else []
    )
    return dg.SensorResult(
        dynamic_partitions_requests=requests,
        asset_events=events,
        skip_reason=None if requests or events else "the universe did not change",
    )


def _additions(
    explicit: set[str],
    existing: set[str],
    lives: Lives,
    candidates: Mapping[str, bool],
    start: Month,
) -> set[str]:
    """Keys to add: the explicit instruments, and candidates whose files reach the start month
    (or that a ``delisted: true`` rule keeps)."""
    keep = {
        key
        for key, keep_delisted in candidates.items()
        if (life := lives.get(key)) is not None
        and life.last_day is not None
        and (keep_delisted or Month.of(life.last_day) >= start)
    }
    return (explicit | keep) - existing


def _life_event(
    deployment: Deployment, probe: Probe, old: Life | None, new: Life
) -> dg.AssetObservation | None:
    """An observation on the last month when an instrument closes or reopens."""
    if old is None or new.last_day is None:
        return None  # a new instrument: its partitions are added by this same tick
    if (new.closed_since is not None) == (old.closed_since is not None):
        return None
    month = Month.of(new.last_day)
    if month < deployment.universe.start_month:
        return None
    return dg.AssetObservation(
        asset_key=deployment.l1_key,
        partition=str(partition_key(probe.instrument, month)),
        metadata={
            LIFE: "closed" if new.closed_since else "reopened",
            "closed_since": str(new.closed_since or ""),
            "last_data": str(new.last_day),
            "reason": new.reason or "files published again",
        },
    )


def _log(
    context: dg.SensorEvaluationContext,
    resolution: Resolution,
    symbols: Mapping[str, list[str]],
    added: set[str],
    events: list[dg.AssetObservation],
    left: int,
    started: float,
) -> None:
    listed = ", ".join(f"{e} {len(s)}" for e, s in sorted(symbols.items()))
    context.log.info(
        f"symbols listed: {listed or 'none'}; {len(resolution.candidates)} instruments selected;"
        f" {len(added)} added, {len(events)} closed or reopened;"
        f" {time.monotonic() - started:.1f}s"
    )
    for exchange, names in sorted(resolution.unusable.items()):
        context.log.warning(
            f"{len(names)} symbol(s) of {exchange} cannot be partition keys (| , [ ] .):"
            f" {', '.join(names[:5])}"
        )
    if left:
        context.log.warning(f"{left} instrument(s) left for the next tick (budget)")


def build_universe_sensor(deployment: Deployment) -> dg.SensorDefinition:
    """The sensor that keeps a discovered instrument dimension current (see :func:`evaluate`)."""
    settings = deployment.universe_sensor or UniverseSensorSettings()

    @dg.sensor(
        name=deployment.name("universe_sensor"),
        description="Reads the symbol lists of the exchanges the discover rules name, adds new"
        " instruments to the instrument dimension and records when each one's files start and"
        " stop (closed instruments are no longer requested).",
        minimum_interval_seconds=settings.interval_s,
        # It launches no runs: on by default, so a discovered universe exists on a new instance.
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def universe_sensor(
        context: dg.SensorEvaluationContext,
        aperiodic: AperiodicResource,
        warehouse: WarehouseResource,
    ):
        client = aperiodic.get_client(logger=context.log, max_connections=settings.concurrency)
        try:
            return evaluate(context, client, warehouse.get_warehouse(), deployment)
        finally:
            client.close()

    return universe_sensor
