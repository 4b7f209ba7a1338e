"""``make demo``: the whole flow on this machine, no API key and no cloud.

Starts the sandbox API as its own process, materializes the current month (through yesterday)
and the months before it for every instrument in universe.yaml as real Dagster runs on the
DAGSTER_HOME instance (they show up in ``make dev`` afterwards), then the downstream assets of
the months that have data, prints what landed in the warehouse, and stops the sandbox.

One clock decides everything, read once at the start (the package's clock: APERIODIC_NOW or
the system's; ``--now`` or the ``now`` argument override it): the sandbox publishes files up to
that day, the months are counted from it, and Dagster judges partition keys by it. So the demo
is right on every date, a run that crosses midnight included: on the 1st of a month the new
month is shown as not published yet, and the monthly summary is only asked for months with
data.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pandas as pd

from ..core import clock
from ..core.months import Month

if TYPE_CHECKING:  # Dagster is imported when the demo runs: `make dev` imports this module too.
    import dagster as dg

    from ..core.universe import Instrument

    Run = Callable[..., dg.ExecuteInProcessResult]

SANDBOX_KEY = "sandbox"
#: Keep the console to warnings; every event is still in the instance for `make dev`.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
OK, FAILED, NOT_PUBLISHED, NO_FILE = "ok", "FAILED", "not published yet", "no file"


@contextmanager
def sandbox_process(extra_args: list[str]):
    """The sandbox as a child process on a free port; yields its API base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aperiodic_assets.sandbox", "--port", "0", *extra_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        if "http://" not in line:
            raise RuntimeError(f"the sandbox did not start (it printed {line!r})")
        yield line[line.index("http://") :]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _instant(text: str) -> datetime:
    """An ISO date and time, read as UTC unless it says otherwise."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main(argv: list[str] | None = None, now: datetime | None = None) -> int:
    """Run the demo; ``now`` (or ``--now``) replaces the system clock, for tests and rehearsals."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--months", type=int, default=3, help="months to materialize, the current one included"
    )
    parser.add_argument(
        "--instrument",
        action="append",
        help="an instrument key of the universe (repeatable; default: every instrument)",
    )
    parser.add_argument(
        "--now", type=_instant, help="the demo's clock, ISO date and time in UTC (default: now)"
    )
    parser.add_argument("--sandbox-arg", action="append", default=[], help="passed to the sandbox")
    args = parser.parse_args(argv)
    now = now or args.now or clock.now()
    from ..defs._dagster_internals import PLANNED_SUBSET_ENV  # runs are created here

    # The sandbox publishes up to the demo's day and the runs in this process read the package's
    # clock at the same instant, even if the demo runs past midnight.
    with (
        _environment({clock.ENV: now.isoformat(), **PLANNED_SUBSET_ENV}),
        sandbox_process(["--today", now.date().isoformat(), *args.sandbox_arg]) as api_url,
    ):
        print(f"sandbox API at {api_url}; clock {now:%Y-%m-%d %H:%M} UTC")
        return _materialize(api_url, now, args.months, args.instrument)


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in os.environ for the block; the previous values come back after it."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _materialize(
    api_url: str, now: datetime, n_months: int, instrument_keys: Sequence[str] | None
) -> int:
    import dagster as dg

    from ..core.warehouse import Warehouse
    from ..definitions import defs, deployment
    from ..defs.automation import watched_months
    from ..defs.partitions import partition_key
    from ..defs.resources import AperiodicResource, WarehouseResource

    instance = dg.DagsterInstance.get()
    warehouse_url = Warehouse(os.environ.get("WAREHOUSE_URL") or "warehouse").url
    # The code location's assets and jobs with the sandbox and this warehouse, given here rather
    # than through the environment, which definitions.py reads once, at import.
    demo_defs = dg.Definitions(
        assets=defs.assets,
        jobs=defs.jobs,
        executor=defs.executor,
        resources={
            **(defs.resources or {}),
            "aperiodic": AperiodicResource(api_url=api_url, api_key=SANDBOX_KEY),
            "warehouse": WarehouseResource(url=warehouse_url, s3=defs.resources["s3"]),
        },
    )
    universe = deployment.universe
    unknown = set(instrument_keys or ()) - set(universe.keys)
    if unknown:
        raise SystemExit(f"--instrument: not in the universe: {sorted(unknown)}")
    instruments = [
        i for i in universe.instruments if instrument_keys is None or i.key in instrument_keys
    ]
    current = Month.of(now.date())
    months = watched_months(current, n_months - 1)
    job = demo_defs.resolve_job_def("l1_imbalance_job")

    def run(job_def: dg.JobDefinition, key: str, **kwargs) -> dg.ExecuteInProcessResult:
        return job_def.execute_in_process(
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            run_config=QUIET,
            **kwargs,
        )

    # Dagster's partition keys end with the current month of this clock, not of the system's.
    with dg.partition_loading_context(effective_dt=now):
        rows = [
            _row(
                instrument,
                month,
                current,
                run(job, partition_key(instrument, month)),
                warehouse_url,
            )
            for instrument in instruments
            for month in months
        ]
        print(pd.DataFrame(rows).fillna("").to_string(index=False))
        landed = [r for r in rows if r["status"] == OK]
        failed = sum(r["status"] == FAILED for r in rows)
        print(
            f"\n{len(landed)} of {len(rows)} partitions materialized into {warehouse_url};"
            f" runs recorded in DAGSTER_HOME={os.environ.get('DAGSTER_HOME', '')}"
        )
        downstream_failed = _materialize_downstream(demo_defs, run, months, landed)
    return 1 if failed or downstream_failed else 0


def _materialize_downstream(
    defs: dg.Definitions, run: Run, months: list[Month], landed_rows: list[dict[str, str]]
) -> int:
    """The downstream assets of the months that have data; returns how many runs failed.

    A month no instrument has yet (the current one on the 1st) gets no summary: there is nothing
    to summarize, and asking would only fail.
    """
    from ..defs.assets.downstream import L1_IMBALANCE_DAILY, L1_IMBALANCE_MONTHLY_SUMMARY

    # The code location's own asset job: the runs list names the asset, not an ad-hoc job.
    job = defs.resolve_implicit_global_asset_job_def()
    daily = [
        run(job, f"{r['instrument']}|{r['month']}", asset_selection=[L1_IMBALANCE_DAILY]).success
        for r in landed_rows
    ]
    with_data = sorted({r["month"] for r in landed_rows})
    summaries = [
        run(job, month, asset_selection=[L1_IMBALANCE_MONTHLY_SUMMARY]).success
        for month in with_data
    ]
    print(
        f"downstream: {sum(daily)} of {len(daily)} l1_imbalance_daily partitions,"
        f" {sum(summaries)} of {len(summaries)} monthly summaries"
        " (lineage, summary table and chart in `make dev`)"
    )
    for month in (m.key for m in months if m.key not in with_data):
        print(f"no monthly summary for {month}: no instrument has data for it yet")
    return daily.count(False) + summaries.count(False)


def _row(
    instrument: Instrument,
    month: Month,
    current: Month,
    result: dg.ExecuteInProcessResult,
    warehouse_url: str,
) -> dict[str, str]:
    from ..defs.assets.reporting import ROW_COUNT, WARNINGS_TAG

    status = OK if result.success else FAILED
    row = {"instrument": instrument.key, "month": month.key, "status": status}
    events = result.get_asset_materialization_events()
    if events:
        mat = events[0].step_materialization_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        row.update(
            rows=str(meta.get(ROW_COUNT, "")),
            bytes=str(meta.get("bytes", "")),
            data_version=str(mat.tags.get("dagster/data_version", ""))[:12],
            path=str(meta.get("path", "")).removeprefix(warehouse_url + "/"),
        )
        for check in result.get_asset_check_evaluations():
            # The validation check names the checks that failed ("none" when all passed).
            row["checks"] = "passed" if check.passed else str(check.metadata["failed"].value)
        row["warnings"] = mat.tags.get(WARNINGS_TAG, "")
        row["through"] = str(meta.get("through", ""))
    elif result.success:
        # The current month's first file appears on its 2nd day; an older month without a
        # file predates the instrument's listing.
        row["status"] = NOT_PUBLISHED if month == current else NO_FILE
    return row


if __name__ == "__main__":
    sys.exit(main())
