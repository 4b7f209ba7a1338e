"""The Dagster UI as a person sees it, in headless Chromium: what ``make screenshots`` shows.

Same path as ``make screenshots`` (aperiodic_assets.tools.screenshots) on two instruments of the
same exchange and symbol, which differ only in their interval: the UI cuts keys in the middle, so
the partitions view must still tell them apart; the month the sandbox corrupts must show its
failing check by name; and the checks whose failure rejects a month must say they are blocking.
Needs Chromium (`make test` installs Debian's package through tools/system-deps): without it
this test fails, it does not skip.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml

from aperiodic_assets.core.universe import DEFAULT_UNIVERSE, load_universe
from aperiodic_assets.core.validation import CHECKS
from aperiodic_assets.tools.screenshots import (
    FAILING_CHECK,
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
                       partition: $partition, limit: 1) { status partition }
}
"""


def rejected_month_checks(url: str, partition: str) -> dict[str, str]:
    """Each check's latest execution status for one partition, over the webserver's GraphQL."""
    statuses = {}
    for check in CHECKS:
        variables = {"check": check.name, "partition": partition}
        body = json.dumps({"query": CHECK_EXECUTIONS, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            (execution,) = json.loads(response.read())["data"]["assetCheckExecutions"]
        assert execution["partition"] == partition
        statuses[check.name] = execution["status"]
    return statuses


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
        statuses = rejected_month_checks(url, instance.rejected)

    # What the UI reads, per check, for the rejected partition alone: one Failed, none unrun.
    assert statuses == {
        c.name: "FAILED" if c.name == FAILING_CHECK else "SUCCEEDED" for c in CHECKS
    }

    labels = text.instrument_labels
    assert set(labels) == {i.key for i in instruments}
    shown = list(labels.values())
    assert all("…" in label for label in shown), f"keys not cut by the UI: {shown}"
    assert len(set(shown)) == 2, f"two instruments read the same in the partitions view: {shown}"
    assert text.check_states == {
        c.name: "Failed" if c.name == FAILING_CHECK else "Succeeded" for c in CHECKS
    }
    assert "Failed" in text.failing_check_text
    assert instance.rejected in text.failing_check_text
    assert "pct_sum_to_one" in text.failing_check_text
    # The checks whose failure rejects a month say they are blocking; the warnings do not.
    assert text.check_blocking == {c.name: c.severity == "error" for c in CHECKS}
    sizes = {p.stem: p.stat().st_size for p in out.glob("*.png")}
    assert set(sizes) == PNGS
    assert all(0 < size < MAX_PNG_BYTES for size in sizes.values()), sizes
