"""Benchmark: the universe sensor and the new-month sensor at universe size on a realistic network.

Why: a discovered universe is about 1,500 instruments, and the real API is tens of milliseconds
away, not on loopback. Both sensors must finish a tick within their budget (25 s; Dagster times
an evaluation out at 60 s), and the new-month sensor must request every instrument's new day
within one sensor interval (3600 s) of its publication. Loopback flatters a sensor that makes one
request per instrument; this measures it with every request paying a round trip.

Setup: one sandbox process (``--symbols-per-exchange``: exactly N/2 symbols on binance-futures
and on okx-perps, none delisted; clock 2026-11-25), one ``discover:`` rule over both exchanges at
``1h`` (start month 2026-09), a real sqlite instance in a temporary DAGSTER_HOME configured by
dagster_home/dagster.yaml as shipped, a local warehouse. Each sensor is the deployment's own
definition, evaluated in-process as the daemon evaluates it (``dg.build_sensor_context`` with
the deployment's resources, the cursor carried from tick to tick); ticks run back to back, each
standing for one interval: nothing sleeps an hour, ticks are counted.

1. Universe sensor, empty instance: ticks until the dynamic dimension holds every instrument,
   each tick's ``dynamic_partitions_requests`` applied to the instance as the daemon applies them.
2. New-month sensor, the situation of a running deployment: every instrument's watched months
   (2026-09, 2026-10 and 2026-11 through the 24th) are materialized from exactly the files the
   sandbox lists. Two ticks run first with nothing new: each must request nothing, and the
   sandbox's request log shows which files their identity probes reached (the newest file of
   how many partitions, how many older ones). Then the sandbox's clock moves one day, so every
   instrument publishes the 25th's file, and ticks run from the steady cursor until every
   current-month partition was requested (the keys of each tick's backfill request).
3. The same at loopback (latency 0), for comparison.

How "up to date" is built: the sensor decides from each partition's latest materialization's
``source_stamps`` (file label -> ``ETag:size``, what its identity probes compare) and its
timestamp, nothing else. Materializing 4,500 partitions for real would take far longer than the
measurement, so the first instrument's three partitions are materialized for real (in-process
``dg.materialize``, at loopback) and every other partition gets a runless materialization
(``instance.report_runless_asset_event``) with that real materialization's metadata, its
per-partition entries (``source_stamps``, ``source_files_identity``, ``through``,
``source_files``, ``source_kind``) replaced by the values a run would write for what the sandbox
lists. Labels come from the same listing call the sensor makes; each ``ETag:size`` from the
sandbox's own file identity (``sandbox.files.file_identity``, computed in a process pool, as a
probe of 127,500 files over HTTP would take minutes). Both are checked before anything is
timed: the three real materializations' entries must equal the computed ones, a sample of
files probed over HTTP (``client.stamp``) must return the computed tokens, and the sensor's
ticks before the new day must request nothing. The other metadata (rows, path, sha256, schema)
is the template's, so records have a real run's size; the runless events carry no run tags and
no check records, which the sensor does not read.

Per tick: wall time against the budget, instruments listed, partitions requested (new ones of
the current month), and where the time went: listings, instance reads (``History``: latest
materializations and failure observations of the listed partitions), identity probes, the
backfill request. The parts are timed by wrapping the functions ``evaluate`` calls, which
behave exactly as before. "Requested within one interval" holds iff the first tick after the
publication requests every instrument's current month; otherwise the RESULT line says how many
ticks (intervals of 3600 s) it takes, and higher concurrencies are measured until one tick does.

Run: ``.venv/bin/python benchmarks/sensor.py`` (about 5 minutes on 2 cores);
``--instruments 300`` for a quick run, ``--latency-ms``, ``--concurrency 8,16,32`` to measure
more settings (about 100 s each), ``--no-loopback``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
from common import KEY, REPO_ROOT, TODAY, load

from aperiodic_assets.core.api import AperiodicClient, FileInfo, file_token, files_identity
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.defs import automation, universe_sensor
from aperiodic_assets.defs._dagster_internals import backfill_subset_keys
from aperiodic_assets.defs.assets.reporting import SOURCE_IDENTITY, SOURCE_STAMPS
from aperiodic_assets.defs.component import AperiodicL1Imbalance
from aperiodic_assets.defs.deployment import SensorSettings, UniverseSensorSettings
from aperiodic_assets.defs.partitions import Partitions, partition_key
from aperiodic_assets.defs.resources import AperiodicResource, WarehouseResource
from aperiodic_assets.sandbox.catalog import parse_object_path
from aperiodic_assets.sandbox.files import file_identity, stored_object, stored_version
from aperiodic_assets.sandbox.handles import RemoteSandbox
from aperiodic_assets.sandbox.state import SandboxConfig, SandboxState
from aperiodic_assets.tools.demo import sandbox_process

EXCHANGES = ("binance-futures", "okx-perps")
INTERVAL = "1h"
START_MONTH = "2026-09"
#: The sandbox's clock while every partition is up to date (files through the day before), and
#: the day it moves to, publishing DAY's file.
DAY = TODAY
NEXT = DAY + timedelta(days=1)
CURRENT = Month.of(DAY)
MAX_TICKS = 12
#: Ticks before the new day, to see which files the identity probes reach in steady state.
STEADY_TICKS = 2
#: Files probed over HTTP to check the computed tokens.
SAMPLE_FILES = 300
#: Threads of the untimed setup's listings and probes (at loopback).
SETUP_THREADS = 16


# --------------------------------------------------------------------------------- timing
@dataclass
class Meter:
    """Where one tick's time went, from wrappers around what the sensors call."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bounded: list[tuple[float, int, int]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.seconds.clear()
        self.counts.clear()
        self.bounded.clear()
        self.logs.clear()


METER = Meter()


def _timed(name: str, function: Callable[..., Any], count: Callable[[Any], int] | None = None):
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            result = function(*args, **kwargs)
        finally:
            METER.seconds[name] += time.perf_counter() - start
        if count is not None:
            METER.counts[name] += count(result)
        return result

    return wrapper


def _bounded(function: Callable[..., Any]):
    """``run_bounded``: seconds, items started and items offered, per call, in call order."""

    def wrapper(items, work, concurrency, deadline):
        start = time.perf_counter()
        results, started = function(items, work, concurrency, deadline)
        METER.bounded.append((time.perf_counter() - start, started, len(items)))
        return results, started

    return wrapper


def instrument_sensors() -> None:
    """Time the parts of both sensors' ticks; what they do is unchanged."""
    tick = automation.Tick
    tick.list_instruments = _timed("listings", tick.list_instruments, lambda r: len(r[0]))
    history = automation.History
    history.materialized = _timed("reads", history.materialized, len)
    history.failed = _timed("reads", history.failed)
    automation.backfills_over = _timed("backfills", automation.backfills_over)
    automation.backfill_request = _timed("request", automation.backfill_request)
    automation._lives = _timed("lives", automation._lives)
    automation.run_bounded = _bounded(automation.run_bounded)
    Partitions.instrument_list = _timed("dimension", Partitions.instrument_list)
    universe_sensor.run_bounded = _bounded(universe_sensor.run_bounded)
    universe_sensor.read_lives = _timed("lives", universe_sensor.read_lives)
    universe_sensor.write_lives = _timed("lives", universe_sensor.write_lives)


class _Capture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        METER.logs.append(record.getMessage())


# ---------------------------------------------------------------------------------- world
class World:
    """One instance, warehouse and deployment on the sandbox; the sensors' ticks."""

    def __init__(self, home: Path, api_url: str, concurrency: int | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)  # dagster.yaml's storage reads it
        self.home = home
        self.instance = dg.DagsterInstance.from_config(str(home))
        self.api_url = api_url
        self.warehouse_url = str(home.parent / f"{home.name}-warehouse")
        self.resources = {
            "aperiodic": AperiodicResource(api_url=api_url, api_key=KEY),
            "warehouse": WarehouseResource(url=self.warehouse_url),
        }
        self.build(concurrency)

    def build(self, concurrency: int | None = None) -> None:
        component = AperiodicL1Imbalance(
            universe={
                "start_month": START_MONTH,
                "discover": [{"exchanges": list(EXCHANGES), "intervals": [INTERVAL]}],
            },
            warehouse_url=self.warehouse_url,
            api_url=self.api_url,
            downstream=False,
            sensor={} if concurrency is None else {"concurrency": concurrency},
        )
        self.deployment = component.deployment()
        self.defs = component.build(self.deployment)
        self.settings = self.deployment.sensor or SensorSettings()

    def close(self) -> None:
        self.instance.dispose()

    def evaluate(self, name: str, cursor: str | None = None) -> tuple[Any, float]:
        """One evaluation of the sensor ``name`` and its wall time; its log kept in METER."""
        sensor = self.defs.get_unresolved_sensor_def(name)
        METER.reset()
        with dg.build_sensor_context(
            instance=self.instance, cursor=cursor, resources=self.resources
        ) as context:
            context.log.handlers = [_Capture()]
            start = time.perf_counter()
            result = sensor(context)
            elapsed = time.perf_counter() - start
        return result, elapsed

    def instruments(self) -> list[str]:
        return self.instance.get_dynamic_partitions(self.deployment.partitions.dynamic_name)


@contextmanager
def clock(day: date) -> Iterator[None]:
    """The package's clock (sensors, runs) on ``day``, midday UTC."""
    os.environ["APERIODIC_NOW"] = f"{day.isoformat()}T12:00:00"
    try:
        yield
    finally:
        os.environ.pop("APERIODIC_NOW", None)


# --------------------------------------------------------------------- 1. universe sensor
@dataclass
class Outcome:
    label: str
    latency_ms: float
    ticks: list[float]
    budget_s: float
    count: int
    concurrency: int = 0
    requested: int = 0
    expected: int = 0
    first_tick_requested: int = 0

    @property
    def max_tick_s(self) -> float:
        return max(self.ticks) if self.ticks else 0.0

    @property
    def over_budget(self) -> list[float]:
        return [t - self.budget_s for t in self.ticks if t > self.budget_s]


def universe_ticks(world: World, latency_ms: float, expected: int) -> Outcome:
    budget = (world.deployment.universe_sensor or UniverseSensorSettings()).budget_s
    print(f"  universe sensor, latency {latency_ms:g} ms, budget {budget:g} s ({load()}):")
    ticks = []
    with clock(DAY):
        while len(world.instruments()) < expected and len(ticks) < MAX_TICKS:
            result, elapsed = world.evaluate(world.deployment.name("universe_sensor"))
            ticks.append(elapsed)
            start = time.perf_counter()
            added = 0
            for request in result.dynamic_partitions_requests or []:
                world.instance.add_dynamic_partitions(
                    request.partitions_def_name, request.partition_keys
                )
                added += len(request.partition_keys)
            applied = time.perf_counter() - start
            calls = METER.bounded
            symbols_s = calls[0][0] if calls else 0.0
            listing = calls[1] if len(calls) > 1 else (0.0, 0, 0)
            print(
                f"    tick {len(ticks)}: {elapsed:.1f}s of {budget:g}s"
                f" ({'within' if elapsed <= budget else 'OVER'} budget); symbols {symbols_s:.1f}s,"
                f" {listing[1]} of {listing[2]} instruments listed {listing[0]:.1f}s, lives"
                f" {METER.seconds['lives']:.1f}s; +{added} -> {len(world.instruments())}"
                f" instruments (added to the instance in {applied:.1f}s, after the tick)"
            )
    count = len(world.instruments())
    assert count == expected, f"the dimension holds {count} of {expected} instruments"
    return Outcome("universe", latency_ms, ticks, budget, count)


# ------------------------------------------------------------ 2. the up-to-date state
_STATES: dict[tuple[int, date], SandboxState] = {}


def file_tokens(per_exchange: int, today: date, paths: list[str]) -> list[str]:
    """The ``ETag:size`` a probe of each ``/files/...`` path gets: the sandbox's own identity
    of the object, built as its download handler builds it (no fault, no corruption)."""
    state = _STATES.get((per_exchange, today))
    if state is None:
        config = SandboxConfig(today=today, symbols_per_exchange=per_exchange)
        state = _STATES[(per_exchange, today)] = SandboxState(config)
    out = []
    for path in paths:
        found = stored_object(state, path)
        assert found is not None, f"no such object: {path}"
        identity = file_identity(stored_version(state, *found, None))
        out.append(file_token(identity.etag, identity.size))
    return out


def _partition_metadata(
    template: dict[str, dg.MetadataValue], stamps: dict[str, str]
) -> dict[str, dg.MetadataValue]:
    """What a run writes for a month built from ``stamps`` (daily files): ``template`` with
    the entries that depend on the files replaced."""
    days = sorted(stamps)
    return {
        **template,
        "through": dg.MetadataValue.text(days[-1]),
        "source_files": dg.MetadataValue.int(len(days)),
        "source_kind": dg.MetadataValue.text(f"0 monthly + {len(days)} daily"),
        SOURCE_IDENTITY: dg.MetadataValue.text(files_identity(stamps)),
        SOURCE_STAMPS: dg.MetadataValue.json(stamps),
    }


def up_to_date(world: World, api_url: str, per_exchange: int) -> dict[str, str]:
    """Every watched partition materialized from exactly the files the sandbox lists on DAY.
    Returns each partition's newest file label."""
    started = time.perf_counter()
    instruments = [Instrument.from_key(k) for k in world.instruments()]
    months = automation.watched_months(CURRENT, world.settings.lookback_months)
    client = AperiodicClient(api_url, KEY, max_connections=SETUP_THREADS)
    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        listings = list(
            pool.map(
                lambda i: client.list_files(i, months[0].first_day, months[-1].last_day),
                instruments,
            )
        )
    files: dict[str, list[FileInfo]] = {}
    for instrument, listed in zip(instruments, listings, strict=True):
        for month in months:
            in_month = [f for f in listed if (f.year, f.month) == (month.year, month.month)]
            if in_month:
                files[str(partition_key(instrument, month))] = in_month
    listed_s = time.perf_counter() - started
    count = sum(len(f) for f in files.values())

    # Tokens in a process pool; each partition is recorded as soon as its tokens are known, the
    # first instrument's partitions by real runs (whose metadata is every other's template).
    start = time.perf_counter()
    real = [k for m in months if (k := str(partition_key(instruments[0], m))) in files]
    keys = real + [k for k in files if k not in real]
    workers = max(2, os.cpu_count() or 2)
    stamps: dict[str, dict[str, str]] = {}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(file_tokens, per_exchange, DAY, [urlsplit(f.url).path for f in files[k]]): k
            for k in keys
        }
        by_key = {k: f for f, k in futures.items()}
        for key in real:
            stamps[key] = dict(
                zip([f.label for f in files[key]], by_key[key].result(), strict=True)
            )
        template = materialize_for_real(world, real, stamps)
        for future in as_completed(futures):
            key = futures[future]
            if key in real:
                continue
            stamps[key] = dict(zip([f.label for f in files[key]], future.result(), strict=True))
            world.instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=world.deployment.l1_key,
                    partition=key,
                    metadata=_partition_metadata(template, stamps[key]),
                )
            )
    recorded_s = time.perf_counter() - start

    # What a probe returns equals what was computed, on a sample.
    sample = random.Random(1).sample([(k, f) for k in keys for f in files[k]], SAMPLE_FILES)
    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        probed = list(pool.map(lambda kf: client.stamp(kf[1]), sample))
    client.close()
    wrong = [
        (k, p.label)
        for (k, _), p in zip(sample, probed, strict=True)
        if stamps[k][p.label] != p.token
    ]
    assert not wrong, f"computed tokens differ from probes: {wrong[:5]}"
    print(
        f"  up to date on {DAY}: {len(keys)} partitions, {count} files, listed in"
        f" {listed_s:.1f}s; {len(real)} partitions materialized for real and"
        f" {len(keys) - len(real)} runless materializations recorded, tokens computed by"
        f" {workers} processes, in {recorded_s:.1f}s; the real runs' file entries and"
        f" {SAMPLE_FILES} probes over HTTP equal the computed ones ({load()})"
    )
    return {k: max(f.label for f in fs) for k, fs in files.items()}


def materialize_for_real(
    world: World, keys: list[str], stamps: dict[str, dict[str, str]]
) -> dict[str, dg.MetadataValue]:
    """Real runs of ``keys``; each must record the file entries computed for it. Returns the
    last one's metadata, the template of the runless materializations."""
    assets = world.defs.get_assets_def(world.deployment.l1_key)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    template: dict[str, dg.MetadataValue] = {}
    for key in keys:
        result = dg.materialize(
            [assets],
            partition_key=key,
            resources=world.resources,
            instance=world.instance,
            run_config=quiet,
        )
        assert result.success, key
        (event,) = result.asset_materializations_for_node(assets.node_def.name)
        template = dict(event.metadata)
        mine = _partition_metadata(template, stamps[key])
        differ = [
            name
            for name in ("through", "source_files", "source_kind", SOURCE_IDENTITY, SOURCE_STAMPS)
            if mine[name] != template[name]
        ]
        assert not differ, f"{key}: a real run wrote other {differ}"
    return template


# ------------------------------------------------------------------ 3. new-month sensor
def _print_tick(n: int, elapsed: float, budget: float, requested: list[str], new: int) -> None:
    calls = METER.bounded
    listing = calls[0] if calls else (0.0, 0, 0)
    probes = calls[2] if len(calls) > 2 else (0.0, 0, 0)
    parts = {
        "listings": METER.seconds["listings"],
        "reads": METER.seconds["reads"],
        "probes": probes[0] + (calls[1][0] if len(calls) > 1 else 0.0),
        "request": METER.seconds["request"],
        "lives+dimension": METER.seconds["lives"] + METER.seconds["dimension"],
        "backfills": METER.seconds["backfills"],
    }
    other = elapsed - sum(parts.values())
    print(
        f"    tick {n} after: {elapsed:.1f}s of {budget:g}s"
        f" ({'within' if elapsed <= budget else f'+{elapsed - budget:.2f}s past the'} budget);"
        f" listed {METER.counts['listings']} of {listing[2]}; requested {len(requested)}"
        f" ({new} new current-month); time: listings {parts['listings']:.1f}s, instance reads"
        f" {parts['reads']:.1f}s ({METER.counts['reads']} partitions' materializations),"
        f" probes {parts['probes']:.1f}s ({probes[1]} of {probes[2]} started), backfill"
        f" request {parts['request']:.1f}s, lives+dimension {parts['lives+dimension']:.1f}s,"
        f" in-flight check {parts['backfills']:.1f}s, other {other:.1f}s"
    )


@dataclass
class Steady:
    """Steady ticks (nothing new): their times and which files their identity probes reached."""

    cursor: str
    ticks: list[float]
    newest: list[set[str]]
    older: list[int]


def probed_files(sandbox: RemoteSandbox) -> list[tuple[str, str]]:
    """(partition key, file label) of every one-byte probe the sandbox answered since its log
    was reset."""
    out = []
    for entry in sandbox.requests():
        fid = parse_object_path(entry["path"]) if entry["kind"] == "download" else None
        if fid is None or entry["status"] != 206:
            continue
        instrument = Instrument(fid.exchange, fid.symbol, fid.interval, fid.timestamp)
        key = str(partition_key(instrument, Month(fid.year, fid.month)))
        day = f"-{fid.day:02d}" if fid.day else ""
        out.append((key, f"{fid.year:04d}-{fid.month:02d}{day}"))
    return out


def steady(world: World, sandbox: RemoteSandbox, newest: dict[str, str]) -> Steady:
    """STEADY_TICKS ticks before the new day: each must request nothing (the state is what a
    running deployment has). The last cursor is a running sensor's."""
    name = world.deployment.name("new_month_sensor")
    out = Steady("", [], [], [])
    for n in range(1, STEADY_TICKS + 1):
        sandbox.reset_log()
        with clock(DAY):
            result, elapsed = world.evaluate(name, out.cursor or None)
        assert isinstance(result, dg.SensorResult), result
        assert not result.run_requests, (
            f"the state is not up to date: {len(backfill_subset_keys(result.run_requests[0]))}"
            " partitions requested"
        )
        assert result.cursor is not None
        probed = probed_files(sandbox)
        out.cursor = result.cursor
        out.ticks.append(elapsed)
        out.newest.append({k for k, label in probed if newest.get(k) == label})
        out.older.append(sum(1 for k, label in probed if newest.get(k) != label))
        summary = next((line for line in METER.logs if line.startswith("listed ")), "")
        print(f"    steady tick {n} on {DAY} (nothing new): {elapsed:.1f}s; {summary}")
    union = set().union(*out.newest)
    both = set.intersection(*out.newest)
    print(
        f"    identity probes over {STEADY_TICKS} steady ticks: newest files of"
        f" {', '.join(str(len(n)) for n in out.newest)} partitions (of {len(newest)}),"
        f" {len(union)} distinct, {len(both)} probed in every tick; older files"
        f" {', '.join(str(o) for o in out.older)}"
    )
    return out


def new_day_ticks(world: World, latency_ms: float, cursor: str, expected: set[str]) -> Outcome:
    settings = world.settings
    name = world.deployment.name("new_month_sensor")
    print(f"    {DAY}'s files published (sandbox clock {NEXT}); ticks from the steady cursor:")
    requested: set[str] = set()
    ticks: list[float] = []
    first = 0
    with clock(NEXT):
        while not expected <= requested and len(ticks) < MAX_TICKS:
            result, elapsed = world.evaluate(name, cursor)
            ticks.append(elapsed)
            assert isinstance(result, dg.SensorResult), result
            cursor = result.cursor or cursor
            keys = [k for r in result.run_requests or [] for k in backfill_subset_keys(r)]
            new = len((set(keys) & expected) - requested)
            requested |= set(keys)
            if len(ticks) == 1:
                first = new
            _print_tick(len(ticks), elapsed, settings.budget_s, keys, new)
    done = len(expected & requested)
    extra = requested - expected
    assert not extra, f"requested beyond the new day: {sorted(extra)[:5]}"
    return Outcome(
        "new_month",
        latency_ms,
        ticks,
        settings.budget_s,
        len(expected),
        concurrency=settings.concurrency,
        requested=done,
        expected=len(expected),
        first_tick_requested=first,
    )


def result_line(outcome: Outcome, instruments: int) -> str:
    over = outcome.over_budget
    line = (
        f"RESULT sensor={outcome.label} instruments={instruments} latency_ms={outcome.latency_ms:g}"
    )
    if outcome.concurrency:
        line += f" concurrency={outcome.concurrency}"
    line += (
        f" ticks={len(outcome.ticks)} max_tick_s={outcome.max_tick_s:.1f}"
        f" budget_s={outcome.budget_s:g}"
        f" over_budget_s={max(over) if over else 0:.2f}"
    )
    if outcome.label == "universe":
        return line + f" dimension={outcome.count}"
    one = outcome.requested == outcome.expected and len(outcome.ticks) == 1
    return line + (
        f" requested={outcome.requested} first_tick_requested={outcome.first_tick_requested}"
        f" within_one_interval={'yes' if one else 'no'}"
        f" intervals={len(outcome.ticks) if outcome.requested == outcome.expected else 'more'}"
    )


def steady_line(
    steady: Steady, world: World, latency_ms: float, instruments: int, partitions: int
) -> str:
    return (
        f"RESULT sensor=new_month_steady instruments={instruments} latency_ms={latency_ms:g}"
        f" concurrency={world.settings.concurrency} ticks={len(steady.ticks)}"
        f" max_tick_s={max(steady.ticks):.1f} partitions={partitions}"
        f" newest_probed_per_tick={min(len(n) for n in steady.newest)}"
        f" newest_probed_distinct={len(set().union(*steady.newest))}"
        f" older_probed_per_tick={min(steady.older)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=1500, help="even; half per exchange")
    parser.add_argument("--latency-ms", type=float, default=60.0)
    parser.add_argument(
        "--concurrency",
        default=str(SensorSettings.concurrency),
        help="comma-separated sensor concurrencies to measure (default: the default setting);"
        " higher ones are added while a tick cannot request every instrument",
    )
    parser.add_argument("--no-loopback", action="store_true", help="skip the latency-0 runs")
    args = parser.parse_args()
    per_exchange = args.instruments // 2
    instruments = per_exchange * len(EXCHANGES)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    loopback = not args.no_loopback and args.latency_ms > 0
    instrument_sensors()
    results: list[str] = []
    sandbox_args = ["--today", DAY.isoformat(), "--key", KEY]
    sandbox_args += ["--symbols-per-exchange", str(per_exchange)]
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(sandbox_args) as api_url:
        work = Path(tmp)
        sandbox = RemoteSandbox(api_url)
        print(
            f"sandbox at {api_url}, {per_exchange} symbols on each of {', '.join(EXCHANGES)};"
            f" discover rule at {INTERVAL}; {instruments} instruments; {load()}"
        )
        print("1. universe sensor (empty instance)")
        sandbox.network(latency_ms=args.latency_ms)
        world = World(work / "home", api_url)
        results.append(
            result_line(universe_ticks(world, args.latency_ms, instruments), instruments)
        )
        if loopback:
            sandbox.network(latency_ms=0)
            scratch = World(work / "loopback-home", api_url)
            results.append(result_line(universe_ticks(scratch, 0.0, instruments), instruments))
            scratch.close()
            os.environ["DAGSTER_HOME"] = str(world.home)

        print("2. new-month sensor: every partition up to date, then one new day")
        sandbox.network(latency_ms=0)
        with clock(DAY):
            newest = up_to_date(world, api_url, per_exchange)
        expected = {
            str(partition_key(Instrument.from_key(k), CURRENT)) for k in world.instruments()
        }
        runs = [(args.latency_ms, c) for c in concurrencies]
        runs += [(0.0, concurrencies[0])] if loopback else []
        measured: set[tuple[float, int]] = set()
        while runs:
            latency, concurrency = runs.pop(0)
            if (latency, concurrency) in measured:
                continue
            measured.add((latency, concurrency))
            sandbox.network(latency_ms=latency)
            world.build(concurrency)
            print(
                f"  new-month sensor, latency {latency:g} ms, concurrency"
                f" {world.settings.concurrency}, budget {world.settings.budget_s:g}s ({load()}):"
            )
            sandbox.set_today(DAY)
            before = steady(world, sandbox, newest)
            results.append(steady_line(before, world, latency, instruments, len(newest)))
            sandbox.set_today(NEXT)  # DAY's file is published
            outcome = new_day_ticks(world, latency, before.cursor, expected)
            results.append(result_line(outcome, instruments))
            one = outcome.requested == outcome.expected and len(outcome.ticks) == 1
            if latency == args.latency_ms and not one and concurrency < 64:
                runs.insert(0, (latency, concurrency * 2))
        world.close()
    print(f"done; {load()}")
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
