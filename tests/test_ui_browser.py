"""The Dagster UI as a person sees it, in headless Chromium: what ``make screenshots`` shows.

Same path as ``make screenshots`` (aperiodic_assets.tools.screenshots) on two instruments of the
same exchange and symbol, which differ only in their interval: the UI cuts keys in the middle, so
the partitions view must still tell them apart; the month the sandbox corrupts must show, on its
validation check, the failing check and rule by name and on how many rows, and that the check
blocks downstream.
Needs Chromium (`make test` installs Debian's package through tools/system-deps): without it
this test fails, it does not skip.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from playwright.sync_api import sync_playwright

from aperiodic_assets.core import clock
from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import DEFAULT_UNIVERSE, Instrument, load_universe
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE
from aperiodic_assets.defs.assets.reporting import VALIDATION_CHECK
from aperiodic_assets.tools.screenshots import (
    FAILING_CHECK,
    FAILING_RULE,
    TRUNCATED,
    DemoInstance,
    demo_instance,
    find_chromium,
    photograph,
    webserver,
)

#: About how long this module's tests take together: on a parallel run the longest modules
#: start first (see conftest).
pytestmark = pytest.mark.slow(seconds=50)

#: The README links these; a few hundred KB at most each.
PNGS = {"lineage", "partitions", "rejected_month_checks", "monthly_summary", "summary_chart"}
MAX_PNG_BYTES = 400_000


def two_intervals_of_one_symbol(path: Path) -> Path:
    """A universe of BTC on binance-futures at 1h and at 1m: keys alike but for the interval."""
    raw = yaml.safe_load(DEFAULT_UNIVERSE.read_text())
    raw["instruments"] = [
        i
        for i in raw["instruments"]
        if (i["exchange"], i["symbol"]) == ("binance-futures", "perpetual-BTC-USDT:USDT")
    ]
    path.write_text(yaml.safe_dump(raw))
    return path


CHECK_EXECUTIONS = """
query($check: String!, $partition: String!) {
  assetCheckExecutions(assetKey: {path: ["aperiodic", "l1_imbalance"]}, checkName: $check,
                       partition: $partition, limit: 1) {
    status partition evaluation { severity description }
  }
}
"""


def rejected_month_check(url: str, partition: str) -> dict:
    """The validation check's latest execution for one partition, over the webserver's GraphQL."""
    variables = {"check": VALIDATION_CHECK, "partition": partition}
    body = json.dumps({"query": CHECK_EXECUTIONS, "variables": variables}).encode()
    request = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        (execution,) = json.loads(response.read())["data"]["assetCheckExecutions"]
    return execution


def test_partitions_and_rejected_month_read_right_in_the_ui(tmp_path: Path) -> None:
    find_chromium()  # a clear failure, before the set-up, when Chromium is missing
    universe = two_intervals_of_one_symbol(tmp_path / "universe.yaml")
    instruments = load_universe(universe).instruments
    assert sorted(i.interval for i in instruments) == ["1h", "1m"]
    out = tmp_path / "img"

    # Two months: on the 1st the current month has no file yet, and one month would leave the
    # monthly summary empty.
    with demo_instance(tmp_path, 2, universe) as instance, webserver(instance) as url:
        text = photograph(url, instance, out)
        execution = rejected_month_check(url, instance.rejected)

    # What the UI reads for the rejected partition: Failed, an ERROR, the rule named first.
    assert execution["partition"] == instance.rejected
    assert (execution["status"], execution["evaluation"]["severity"]) == ("FAILED", "ERROR")
    failed_first = f"{FAILING_CHECK} [error]: {FAILING_RULE}: "
    assert failed_first in execution["evaluation"]["description"]

    labels = text.instrument_labels
    assert set(labels) == {i.key for i in instruments}
    shown = list(labels.values())
    assert all("…" in label for label in shown), f"keys not cut by the UI: {shown}"
    assert len(set(shown)) == 2, f"two instruments read the same in the partitions view: {shown}"
    # At a glance on the check's page: Failed, which month, which check and rule, how many
    # rows, and that it blocks downstream.
    assert text.check_state == "Failed"
    detail = text.failing_check_text
    print(f"\n--- the rejected month's validation check, as the UI shows it:\n{detail[:1200]}")
    assert "Failed" in detail and instance.rejected in detail
    assert failed_first in detail
    assert re.search(r"in \d+ of \d+ rows", detail), detail
    assert f"{FAILING_CHECK} (error)" in detail  # the `failed` metadata entry
    assert text.check_blocking
    sizes = {p.stem: p.stat().st_size for p in out.glob("*.png")}
    assert set(sizes) == PNGS
    assert all(0 < size < MAX_PNG_BYTES for size in sizes.values()), sizes


def test_the_partitions_tab_of_a_discovered_universe_loads_at_1500_instruments_x_36_months(
    tmp_path: Path,
) -> None:
    """The dynamic instrument dimension at universe size: 1,500 instruments (as the universe
    sensor adds them) x 36 months, one month materialized for every instrument (reported as
    the runs would, with data versions). The asset page and its Partitions tab must render the
    partition grid in headless Chromium; the time to the first paint of the grid is printed."""

    chromium = find_chromium()
    months = 36
    start = Month.of(clock.today())
    for _ in range(months - 1):
        start = start.previous()
    universe = tmp_path / "universe.yaml"
    universe.write_text(
        yaml.safe_dump(
            {
                "start_month": start.key,
                "discover": [{"exchanges": ["binance-futures", "okx-perps"], "intervals": ["1h"]}],
            }
        )
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    keys = [
        Instrument(exchange, f"perpetual-{synthetic_base(n)}-USDT:USDT", "1h").key
        for exchange in ("binance-futures", "okx-perps")
        for n in range(750)
    ]
    month = Month.of(clock.today() - timedelta(days=1))
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions("aperiodic_instruments", keys)
        for key in keys:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    L1_IMBALANCE,
                    partition=str(dg.MultiPartitionKey({"instrument": key, "month": month.key})),
                    tags={"dagster/data_version": key},
                )
            )
        config = home / "dagster.yaml"
        config.write_text(yaml.safe_dump({"telemetry": {"enabled": False}}))
    env = {
        "DAGSTER_HOME": str(home),
        "WAREHOUSE_URL": str(tmp_path / "warehouse"),
        "APERIODIC_UNIVERSE": str(universe),
    }
    instance_ = DemoInstance(home, env, (), "")
    with webserver(instance_) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        started = time.monotonic()
        page.goto(f"{url}/assets/aperiodic/l1_imbalance")
        page.get_by_text("l1_imbalance", exact=True).first.wait_for(timeout=120_000)
        asset_page_s = time.monotonic() - started
        started = time.monotonic()
        page.goto(f"{url}/assets/aperiodic/l1_imbalance?view=partitions")
        # The grid: the first instrument's row (its key, cut in the middle) and the counts.
        page.locator(f"{TRUNCATED}[title='{keys[0]}']").wait_for(timeout=120_000)
        grid_s = time.monotonic() - started
        page.get_by_text(f"Materialized ({len(keys)})").wait_for(timeout=120_000)
        counted_s = time.monotonic() - started
        rows = page.locator(f"{TRUNCATED}[title$='.exchange']").count()
        total = page.get_by_text(f"{len(keys) * months:,} Partitions").count()
        page.screenshot(path=str(tmp_path / "partitions_1500x36.png"))
        browser.close()
    print(
        f"UI at {len(keys)} instruments x {months} months: asset page {asset_page_s:.1f}s;"
        f" partitions grid first painted {grid_s:.1f}s after navigation, status counts"
        f" {counted_s:.1f}s ({rows} instrument rows rendered: the list is virtualized)"
    )
    assert rows > 0
    assert total == 1, f"the partition count {len(keys) * months:,} is shown"


def synthetic_base(n: int) -> str:
    """A base like ``QZAB`` from a number: 1,500 distinct instruments with real-looking keys."""
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    out = ""
    for _ in range(4):
        n, digit = divmod(n, len(letters))
        out += letters[digit]
    return "Q" + out
