"""What the benchmarks share: the sandbox's key and date, a universe file, the bare loop, load.

Every benchmark compares Dagster against the same work without it, so the floor is defined once:
``pipeline.run_partition`` through ``pipeline.completed`` at the concurrency of a backfill run,
with the client the asset builds. Importing this module also puts the repository on
``sys.path``, so a benchmark run as a script can import ``tests.dagster_services``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import aperiodic
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from aperiodic_assets.core.months import Month  # noqa: E402
from aperiodic_assets.core.pipeline import completed, run_partition  # noqa: E402
from aperiodic_assets.core.universe import Instrument  # noqa: E402
from aperiodic_assets.core.warehouse import Warehouse  # noqa: E402
from aperiodic_assets.defs.assets.l1_imbalance import L1ImbalanceConfig  # noqa: E402
from aperiodic_assets.defs.resources import AperiodicResource  # noqa: E402

#: The sandbox's API key, and the day it pretends it is (its last completed month: 2026-10).
KEY = "sandbox"
TODAY = date(2026, 11, 25)
#: Partitions a backfill run works on at once: the asset's default ``partition_concurrency``.
PARTITION_CONCURRENCY: int = L1ImbalanceConfig.model_fields["partition_concurrency"].default


def write_universe(path: Path, instruments: Sequence[Instrument], start: str = "2024-01") -> Path:
    """A universe file for ``APERIODIC_UNIVERSE``: the code location partitions by it."""
    entries = [
        {
            "exchange": i.exchange,
            "symbol": i.symbol,
            "interval": i.interval,
            "timestamp": i.timestamp,
        }
        for i in instruments
    ]
    path.write_text(yaml.safe_dump({"start_month": start, "instruments": entries}))
    return path


def location_env(api_url: str, warehouse: Path, universe: Path) -> dict[str, str]:
    """The environment of a code location on the sandbox, a local warehouse and ``universe``."""
    return {
        "APERIODIC_API_URL": api_url,
        "APERIODIC_API_KEY": KEY,
        "WAREHOUSE_URL": str(warehouse),
        "APERIODIC_UNIVERSE": str(universe),
    }


def bare(
    api_url: str,
    warehouse_dir: Path,
    partitions: Sequence[tuple[Instrument, Month]],
    concurrency: int = PARTITION_CONCURRENCY,
) -> float:
    """Seconds for ``run_partition`` over ``partitions``, ``concurrency`` at a time, no Dagster.

    The client is built as the asset builds it for a ranged run of that concurrency, so the only
    difference from a backfill run is Dagster. Every partition must land.
    """
    resource = AperiodicResource(api_url=api_url, api_key=KEY)
    client = resource.get_client(max_connections=concurrency * resource.max_concurrent_downloads)
    warehouse = Warehouse(warehouse_dir)
    start = time.perf_counter()
    outcomes = list(
        completed(partitions, lambda p: run_partition(client, warehouse, *p), concurrency)
    )
    elapsed = time.perf_counter() - start
    client.close()
    failed = [(p, o) for p, o in outcomes if isinstance(o, BaseException) or o.written is None]
    assert not failed, failed[:3]
    return elapsed


def official_frame(api_url: str, instrument: Instrument, first: date, last: date) -> Any:
    """One instrument's days ``first``..``last`` through the official client, as a user's
    script fetches them: ``aperiodic.get_metrics(..., output="pandas")``, nothing validated or
    written."""
    return aperiodic.get_metrics(
        api_key=KEY,
        metric="l1_imbalance",
        **instrument.query,
        start_date=first,
        end_date=last,
        base_url=api_url,
        output="pandas",
        show_progress=False,
    )


def load() -> str:
    """The machine's load averages, printed beside every figure (the cores are shared)."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f} on {os.cpu_count()} cores"
