"""``make demo``: the whole flow on this machine, no API key and no cloud.

Starts the sandbox API as its own process, materializes the current month (through yesterday)
and the two completed months before it for every instrument in universe.yaml as real Dagster
runs on the DAGSTER_HOME instance (they show up in
``make dev`` afterwards), prints what landed in the warehouse, and stops the sandbox.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC, datetime

import pandas as pd

SANDBOX_KEY = "sandbox"
#: Keep the console to warnings; every event is still in the instance for `make dev`.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--months", type=int, default=3, help="months to materialize, the current one included"
    )
    parser.add_argument("--sandbox-arg", action="append", default=[], help="passed to the sandbox")
    args = parser.parse_args(argv)

    with sandbox_process(args.sandbox_arg) as api_url:
        print(f"sandbox API at {api_url}")
        os.environ["APERIODIC_API_URL"] = api_url
        os.environ["APERIODIC_API_KEY"] = SANDBOX_KEY
        os.environ.setdefault("WAREHOUSE_URL", "warehouse")
        return _materialize(args.months)


def _materialize(n_months: int) -> int:
    # Imported after the environment is set: definitions reads it.
    import dagster as dg

    from .definitions import defs
    from .months import Month
    from .partitions import UNIVERSE, partition_key
    from .warehouse import Warehouse

    instance = dg.DagsterInstance.get()
    warehouse_url = Warehouse(os.environ["WAREHOUSE_URL"]).url
    job = defs.resolve_job_def("l1_imbalance_job")
    months = [Month.of(datetime.now(UTC).date())]
    while len(months) < n_months:
        months.insert(0, months[0].previous())

    rows, failures = [], 0
    for instrument in UNIVERSE.instruments:
        for month in months:
            key = partition_key(instrument, month)
            result = job.execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET
            )
            rows.append(_row(instrument.key, month.key, result, warehouse_url))
            failures += not result.success
    print(pd.DataFrame(rows).fillna("").to_string(index=False))
    landed = sum(r["status"] == "ok" for r in rows)
    print(
        f"\n{landed} of {len(rows)} partitions materialized into {warehouse_url};"
        f" runs recorded in DAGSTER_HOME={os.environ.get('DAGSTER_HOME', '')}"
    )
    downstream = _materialize_downstream(instance, months, [r for r in rows if r["status"] == "ok"])
    print(f"downstream: {downstream} (lineage, summary table and chart in `make dev`)")
    return 1 if failures else 0


def _materialize_downstream(instance, months, landed_rows) -> str:
    """The downstream assets for the demo months, so the UI shows a populated lineage."""
    from .assets.downstream import L1_IMBALANCE_DAILY, L1_IMBALANCE_MONTHLY_SUMMARY
    from .definitions import defs

    # The code location's own asset job: the runs list names the asset, not an ad-hoc job.
    job = defs.resolve_implicit_global_asset_job_def()

    def run(asset_key, partition_key: str) -> bool:
        result = job.execute_in_process(
            asset_selection=[asset_key],
            partition_key=partition_key,
            instance=instance,
            raise_on_error=False,
            run_config=QUIET,
        )
        return result.success

    daily = sum(run(L1_IMBALANCE_DAILY, f"{r['instrument']}|{r['month']}") for r in landed_rows)
    summaries = sum(run(L1_IMBALANCE_MONTHLY_SUMMARY, month.key) for month in months)
    return (
        f"{daily} of {len(landed_rows)} l1_imbalance_daily partitions,"
        f" {summaries} of {len(months)} monthly summaries"
    )


def _row(instrument: str, month: str, result, warehouse_url: str) -> dict[str, str]:
    from .assets.reporting import WARNINGS_TAG

    row = {"instrument": instrument, "month": month, "status": "ok" if result.success else "FAILED"}
    events = result.get_asset_materialization_events()
    if events:
        mat = events[0].step_materialization_data.materialization
        meta = {k: v.value for k, v in mat.metadata.items()}
        row.update(
            rows=str(meta.get("rows", "")),
            bytes=str(meta.get("bytes", "")),
            data_version=str(mat.tags.get("dagster/data_version", ""))[:12],
            path=str(meta.get("path", "")).removeprefix(warehouse_url + "/"),
        )
        checks = result.get_asset_check_evaluations()
        if checks:
            passed = sum(c.passed for c in checks)
            row["checks"] = f"{passed}/{len(checks)}"
        row["warnings"] = mat.tags.get(WARNINGS_TAG, "")
        row["through"] = str(meta.get("through", ""))
    elif result.success:
        row["status"] = "no file"
    return row


if __name__ == "__main__":
    sys.exit(main())
