"""``make demo`` at the instants that break date arithmetic: the first minutes of a month (and of
a year), the last minutes of a month, a leap day. The demo's clock is injected (``now``), so
these run in-process on any date: the sandbox publishes up to that day and Dagster judges
partition keys by it."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.warehouse import Warehouse
from aperiodic_assets.tools import demo

from .conftest import BTC_1H, TEST_NOW

#: About how long this module's tests take together: on a parallel run the longest modules
#: start first (see conftest).
pytestmark = pytest.mark.slow(seconds=30)

INSTANCE_CONFIG = Path(__file__).resolve().parents[1] / "dagster_home/dagster.yaml"
#: In `make test-dates`, the one instant the process clock is set to; else all four in-process.
INSTANTS = (
    [TEST_NOW]
    if TEST_NOW
    else [
        datetime(2027, 1, 1, 0, 20, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 40, tzinfo=UTC),
        datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
        datetime(2027, 3, 1, 0, 5, tzinfo=UTC),
    ]
)


def status_line(output: str, month: Month) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith(f"{BTC_1H.key} {month}")]
    return line


@pytest.mark.parametrize("now", INSTANTS, ids=lambda now: f"{now:%Y-%m-%dT%H:%M}")
def test_the_demo_is_right_on_every_date(now, tmp_path, monkeypatch, capfd):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_CONFIG, home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("WAREHOUSE_URL", str(tmp_path / "warehouse"))

    code = demo.main(["--months", "2", "--instrument", BTC_1H.key], now=now)

    out, err = capfd.readouterr()
    assert code == 0, out + err
    assert "ERROR" not in out + err and "Traceback" not in out + err
    today, current = now.date(), Month.of(now.date())
    previous = current.previous()
    assert re.search(r"\sok\s.*\s" + str(previous.last_day) + "$", status_line(out, previous))
    warehouse = Warehouse(tmp_path / "warehouse")
    summaries = warehouse.read(table_name="l1_imbalance_monthly_summary")
    if today == current.first_day:
        # Nothing of the new month is out yet: shown as such, and not summarized.
        assert re.search(r"\snot published yet\s*$", status_line(out, current))
        assert f"no monthly summary for {current}: no instrument has data for it yet" in out
        assert warehouse.partitions() == [(BTC_1H, previous)]
        assert summaries["month"].to_pylist() == [previous.month]
    else:
        # The current month runs through yesterday.
        yesterday = today - timedelta(days=1)
        assert re.search(r"\sok\s.*\s" + str(yesterday) + "$", status_line(out, current))
        assert "2 of 2 monthly summaries" in out
        assert warehouse.partitions() == [(BTC_1H, previous), (BTC_1H, current)]
        assert sorted(summaries["month"].to_pylist()) == sorted([previous.month, current.month])
