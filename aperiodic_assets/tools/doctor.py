"""``make doctor`` (``python -m aperiodic_assets.tools.doctor``): will a run work here?

A preflight for a new set-up, with the variables a run uses (APERIODIC_API_URL,
APERIODIC_API_KEY, WAREHOUSE_URL, APERIODIC_UNIVERSE, DAGSTER_HOME). It checks, in one table with
a verdict per line: the universe file and the warehouse URL, the key (a 401), the plan for each
exchange and interval of the universe (a 403 on its listings), every symbol against the
exchange's symbol list (an unknown one is named with the closest listed symbols), one listing
per instrument and its newest file, downloaded and validated as a run would (what would be
rejected, and why), the warehouse (a probe object written under ``_doctor/``, read back and
deleted) and the Dagster instance (DAGSTER_HOME, the run queue, the ``aperiodic_api`` pool). It
exits 1 when anything would fail a run.

Reads and downloads; writes nothing but the probe. Never imports dagster: the instance is
checked from its dagster.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ..core import clock
from ..core.api import (
    DEFAULT_API_URL,
    AperiodicClient,
    AperiodicError,
    ApiError,
    RetryConfig,
)
from ..core.assemble import AssemblyError
from ..core.discovery import resolve
from ..core.lifecycle import read_lives
from ..core.months import Month
from ..core.normalize import NormalizationError, file_span
from ..core.pipeline import check_files, completed, expected_window
from ..core.settings import check_warehouse_url
from ..core.universe import (
    Instrument,
    Universe,
    UniverseError,
    load_configured_universe,
    universe_path,
)
from ..core.warehouse import Warehouse

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skipped"
#: The pool the l1_imbalance asset runs in (assets/l1_imbalance.py API_POOL).
API_POOL = "aperiodic_api"
PROBE_PREFIX = "_doctor"
#: A preflight answers in seconds: fewer and shorter retries than a run's.
DOCTOR_RETRY = RetryConfig(max_attempts=2, budget_s=30.0, read_timeout_s=30.0)
#: Instruments checked at once (a listing and a download each).
CONCURRENCY = 8
#: Instruments of each discover rule whose newest file the doctor downloads and validates.
RULE_SAMPLE = 3


@dataclass(frozen=True)
class Finding:
    """One line of the table: what was checked, on what, the verdict and why."""

    check: str
    subject: str
    verdict: str
    detail: str


def diagnose(
    environ: Mapping[str, str],
    today: date | None = None,
    retry: RetryConfig = DOCTOR_RETRY,
) -> list[Finding]:
    """Every check, in table order; ``today`` defaults to the package's clock."""
    today = today or clock.today()
    finding, universe = _universe(environ, today)
    warehouse = _warehouse(environ)
    return [
        finding,
        *_api(environ, universe, today, retry),
        warehouse,
        *(
            [_lives(Warehouse(warehouse.subject))]
            if universe and universe.discovers and warehouse.verdict == OK
            else []
        ),
        *_instance(environ),
    ]


def _universe(environ: Mapping[str, str], today: date) -> tuple[Finding, Universe | None]:
    path = str(universe_path(environ))
    try:
        universe = load_configured_universe(environ, today)
    except UniverseError as exc:
        return Finding("universe", path, FAIL, _one_line(exc)), None
    exchanges = sorted({i.exchange for i in universe.instruments} | set(universe.exchanges))
    detail = f"{len(universe.instruments)} instruments" + (
        f" and {len(universe.rules)} discover rule(s)" if universe.rules else ""
    )
    detail += f" on {', '.join(exchanges)}"
    return Finding("universe", path, OK, detail), universe


def _api(
    environ: Mapping[str, str], universe: Universe | None, today: date, retry: RetryConfig
) -> list[Finding]:
    api_url = environ.get("APERIODIC_API_URL") or DEFAULT_API_URL
    key = environ.get("APERIODIC_API_KEY", "")
    if not key:
        return [Finding("api key", api_url, FAIL, "APERIODIC_API_KEY is not set")]
    if universe is None:
        return [Finding("api key", api_url, SKIP, "needs a valid universe")]
    client = AperiodicClient(api_url, key, retry=retry, max_connections=CONCURRENCY)
    try:
        rules, sample = _rules(client, universe) if universe.discovers else ([], [])
        explicit = list(universe.instruments)
        return (
            [*rules, *_api_checks(client, explicit + sample, today)] if explicit + sample else rules
        )
    finally:
        client.close()


def _rules(client: AperiodicClient, universe: Universe) -> tuple[list[Finding], list[Instrument]]:
    """A line per ``discover`` rule: what it selects now per exchange and interval and its
    first symbols (FAIL when nothing); and a few of each rule's instruments for the file checks
    (all of them would be a run's work, not a preflight's)."""
    symbols: dict[str, list[str]] = {}
    findings = []
    for exchange in universe.exchanges:
        try:
            symbols[exchange] = client.list_symbols(exchange)
        except AperiodicError as exc:
            findings.append(Finding("symbols", exchange, FAIL, _one_line(exc)))
    resolution = resolve(universe.rules, symbols)
    empty = resolution.empty_rules(universe.rules)
    for rule in universe.rules:
        if rule in empty:
            detail = f"selects nothing on {', '.join(rule.exchanges)}: check its filters"
            findings.append(Finding("rule", rule.describe(), FAIL, detail))
            continue
        per = "; ".join(
            f"{exchange} {interval}: {n}"
            for exchange, by_interval in sorted(resolution.counts[rule.where].items())
            for interval, n in by_interval.items()
        )
        first = ", ".join(resolution.examples[rule.where])
        findings.append(Finding("rule", rule.describe(), OK, f"{per}; first: {first}"))
    for exchange, names in sorted(resolution.unusable.items()):
        detail = f"{len(names)} symbol(s) cannot be partition keys (| , [ ] .): {names[:5]}"
        findings.append(Finding("rule", exchange, WARN, detail))
    sample = []
    for rule in universe.rules:
        keys = [k for k, selector in resolution.candidates.items() if selector == rule]
        sample += [Instrument.from_key(k) for k in keys[:RULE_SAMPLE]]
    return findings, sample


def _lives(warehouse: Warehouse) -> Finding:
    """What the universe sensor recorded: how many instruments, which closed and since when."""
    lives = read_lives(warehouse)
    closed = sorted(
        ((k, life) for k, life in lives.by_key.items() if life.closed_since),
        key=lambda kl: kl[1].closed_since or date.min,
        reverse=True,
    )
    if not len(lives):
        return Finding(
            "instruments",
            warehouse.url,
            WARN,
            "none recorded yet: the universe sensor records them on its first tick",
        )
    shown = "; ".join(f"{k} {life.describe()}" for k, life in closed[:5])
    detail = f"{len(lives) - len(closed)} open, {len(closed)} closed" + (
        f" (latest: {shown})" if closed else ""
    )
    return Finding("instruments", warehouse.url, OK, detail)


def _api_checks(
    client: AperiodicClient, instruments: Sequence[Instrument], today: date
) -> list[Finding]:
    """The key (on the first exchange's symbol list), symbols, plans and newest files."""
    listed: dict[str, list[str] | AperiodicError] = {}
    for exchange in dict.fromkeys(i.exchange for i in instruments):
        try:
            listed[exchange] = client.list_symbols(exchange)
        except AperiodicError as exc:
            listed[exchange] = exc
    first = next(iter(listed.values()))
    if isinstance(first, ApiError) and first.status == 401:
        return [Finding("api key", client.api_url, FAIL, f"refused: {_one_line(first)}")]
    if isinstance(first, AperiodicError) and not isinstance(first, ApiError):
        detail = f"the API did not answer: {_one_line(first)}"
        return [Finding("api key", client.api_url, FAIL, detail)]
    findings = [Finding("api key", client.api_url, OK, "accepted")]
    findings += _symbols(instruments, listed)
    known = [i for i in instruments if i.symbol in _names(listed[i.exchange])]
    newest = dict(completed(known, lambda i: _newest(client, i, today), CONCURRENCY))
    findings += _plans(instruments, newest)
    for instrument in instruments:
        outcome = newest.get(instrument)
        if isinstance(outcome, Finding):
            findings.append(outcome)
        elif outcome is None:
            findings.append(Finding("newest file", instrument.key, SKIP, "symbol not listed"))
        elif _plan_refused(outcome):
            findings.append(Finding("newest file", instrument.key, SKIP, "refused by the plan"))
        else:
            findings.append(Finding("newest file", instrument.key, FAIL, _one_line(outcome)))
    return findings


def _names(symbols: list[str] | AperiodicError) -> list[str]:
    return symbols if isinstance(symbols, list) else []


def _symbols(
    instruments: Sequence[Instrument], listed: Mapping[str, list[str] | AperiodicError]
) -> Iterator[Finding]:
    for exchange, symbols in listed.items():
        mine = sorted({i.symbol for i in instruments if i.exchange == exchange})
        if isinstance(symbols, AperiodicError):
            yield Finding("symbols", exchange, FAIL, _one_line(symbols))
            continue
        unknown = [s for s in mine if s not in symbols]
        for symbol in unknown:
            closest = difflib.get_close_matches(symbol, symbols, n=3, cutoff=0.6)
            hint = f"; closest listed: {', '.join(closest)}" if closest else ""
            yield Finding("symbols", f"{exchange} {symbol}", FAIL, f"not listed{hint}")
        if not unknown:
            yield Finding(
                "symbols", exchange, OK, f"all {len(mine)} listed ({len(symbols)} on the exchange)"
            )


def _newest(client: AperiodicClient, instrument: Instrument, today: date) -> Finding:
    """One listing (last month and this one), then the newest file downloaded and validated."""
    current = Month.of(today)
    files = client.list_files(instrument, current.previous().first_day, today)
    subject = instrument.key
    if not files:
        detail = f"no file published for {current.previous()} or {current}"
        return Finding("newest file", subject, WARN, detail)
    info = files[-1]
    source = client.download(info)
    month, day = file_span(info.label)
    kind = f"{info.label} ({'daily' if day else 'monthly'} file, {source.table.num_rows} rows)"
    start, end = expected_window(month, [info], today, instrument.listed)
    if day is not None:  # a daily file covers its own day (from the listing day on)
        end = datetime(month.year, month.month, day) + timedelta(days=1)
        start = min(max(start, end - timedelta(days=1)), end)
    try:
        report = check_files([(info.label, source.table)], instrument, month, (start, end)).report
    except (NormalizationError, AssemblyError) as exc:
        return Finding("newest file", subject, FAIL, f"{kind}: rejected: {exc}")
    if not report.ok:
        detail = f"{kind}: would be rejected: {report.first_error_message()}"
        return Finding("newest file", subject, FAIL, detail)
    if report.warnings:
        detail = f"{kind}: valid, with warnings: {report.summary()}"
        return Finding("newest file", subject, WARN, detail)
    return Finding("newest file", subject, OK, f"{kind}: valid")


def _plans(
    instruments: Sequence[Instrument], newest: Mapping[Instrument, Finding | BaseException]
) -> Iterator[Finding]:
    """One line per (exchange, interval): refused (403) if any listing of it was."""
    groups: dict[tuple[str, str], list[Instrument]] = {}
    for instrument in instruments:
        groups.setdefault((instrument.exchange, instrument.interval), []).append(instrument)
    for (exchange, interval), members in groups.items():
        outcomes = [newest[i] for i in members if i in newest]
        refused = [o for o in outcomes if _plan_refused(o)]
        subject = f"{exchange} {interval}"
        if refused:
            yield Finding("plan", subject, FAIL, _one_line(refused[0]))
        elif any(isinstance(o, Finding) for o in outcomes):
            yield Finding(
                "plan", subject, OK, f"listings answered for {len(outcomes)} instrument(s)"
            )
        else:
            yield Finding("plan", subject, SKIP, "no listing answered")


def _plan_refused(outcome: object) -> bool:
    return isinstance(outcome, ApiError) and outcome.status == 403


def _warehouse(environ: Mapping[str, str]) -> Finding:
    """Write, read back and delete a probe object under ``_doctor/``."""
    raw = environ.get("WAREHOUSE_URL") or "warehouse"
    try:
        url = check_warehouse_url(raw)
        warehouse = Warehouse(url)
    except (ValueError, ImportError) as exc:
        return Finding("warehouse", raw, FAIL, _one_line(exc))
    probe = warehouse.root / PROBE_PREFIX / f"probe-{uuid.uuid4().hex}"
    payload = b"aperiodic-assets doctor probe\n"
    try:
        if warehouse.is_local:  # on S3 a folder is implied; mkdir there would create the bucket
            probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(payload)
        if probe.read_bytes() != payload:
            return Finding("warehouse", warehouse.url, FAIL, "the probe read back differently")
    except Exception as exc:  # every storage error is the finding
        return Finding("warehouse", warehouse.url, FAIL, f"cannot write {probe}: {_one_line(exc)}")
    try:
        probe.unlink()
    except Exception as exc:
        return Finding("warehouse", warehouse.url, WARN, f"writable, but {probe} stays: {exc}")
    if warehouse.is_local:  # the folder too, unless something else is in it
        with contextlib.suppress(OSError):
            probe.parent.rmdir()
    return Finding("warehouse", warehouse.url, OK, f"wrote, read and deleted {PROBE_PREFIX}/probe")


def _instance(environ: Mapping[str, str]) -> list[Finding]:
    """DAGSTER_HOME and what its dagster.yaml says about the run queue and the API pool."""
    home = environ.get("DAGSTER_HOME")
    if not home:
        return [
            Finding(
                "dagster instance",
                "DAGSTER_HOME",
                WARN,
                "not set: `dagster dev` would keep runs in a temporary instance with no run"
                " queue or pool limits (make targets set it to ./dagster_home)",
            )
        ]
    path = Path(home)
    if not path.is_absolute() or not path.is_dir():
        detail = "must be an absolute path to an existing folder (Dagster refuses anything else)"
        return [Finding("dagster instance", f"DAGSTER_HOME={home}", FAIL, detail)]
    config_path = path / "dagster.yaml"
    if not config_path.is_file():
        detail = "no dagster.yaml: Dagster's defaults, no run queue limit and no pool limit"
        return [Finding("dagster instance", str(path), WARN, detail)]
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [Finding("dagster instance", str(config_path), FAIL, _one_line(exc))]
    if not isinstance(config, dict):
        return [Finding("dagster instance", str(config_path), FAIL, "not a YAML mapping")]
    findings = []
    unset = sorted({name for name in _env_references(config) if not environ.get(name)})
    if unset:
        detail = f"needs {', '.join(unset)} in the environment: Dagster cannot load it without"
        findings.append(Finding("dagster instance", str(config_path), FAIL, detail))
    else:
        detail = "found; every variable it names is set"
        findings.append(Finding("dagster instance", str(config_path), OK, detail))
    findings += [_run_queue(config), _pool(config)]
    return findings


def _env_references(node: Any) -> Iterator[str]:
    """Every ``{env: NAME}`` in an instance config."""
    if isinstance(node, dict):
        if set(node) == {"env"} and isinstance(node["env"], str):
            yield node["env"]
        for value in node.values():
            yield from _env_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _env_references(value)


def _run_queue(config: Mapping[str, Any]) -> Finding:
    coordinator = (config.get("run_coordinator") or {}).get("class", "")
    limit = ((config.get("concurrency") or {}).get("runs") or {}).get("max_concurrent_runs")
    if coordinator != "QueuedRunCoordinator":
        detail = f"run_coordinator is {coordinator or 'not set'}: runs are not queued"
        return Finding("run queue", "dagster.yaml", WARN, detail)
    bound = f"at most {limit} runs at once" if limit is not None else "Dagster's default limit"
    return Finding("run queue", "dagster.yaml", OK, f"queued, {bound}")


def _pool(config: Mapping[str, Any]) -> Finding:
    limit = ((config.get("concurrency") or {}).get("pools") or {}).get("default_limit")
    override = f"`dagster instance concurrency set {API_POOL} N` overrides it"
    if limit is None:
        detail = f"no concurrency.pools.default_limit: unbounded API work unless {override}"
        return Finding("pool", API_POOL, WARN, detail)
    return Finding(
        "pool", API_POOL, OK, f"at most {limit} steps at once (default_limit; {override})"
    )


def _one_line(error: object) -> str:
    return " ".join(str(error).split())


def render(findings: Iterable[Finding]) -> str:
    """The table: one line per finding, the verdict in its own column."""
    rows = [("check", "subject", "verdict", "detail")]
    rows += [(f.check, f.subject, f.verdict, f.detail) for f in findings]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    )


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Print the table; 1 when anything would fail a run, else 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    findings = diagnose(os.environ if environ is None else environ)
    print(render(findings))
    failed = [f for f in findings if f.verdict == FAIL]
    counts = {v: sum(f.verdict == v for f in findings) for v in (OK, WARN, FAIL, SKIP)}
    print("\n" + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    if failed:
        print(f"{len(failed)} problem(s) would fail a run: fix the FAIL lines above.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
