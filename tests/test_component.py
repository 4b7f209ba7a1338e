"""A Dagster user's own dg project adds ``aperiodic_assets.AperiodicL1Imbalance`` in a defs.yaml.

The project is written into a temporary folder the way ``create-dagster project`` lays one out
(src layout, ``[tool.dg]`` in pyproject.toml, ``definitions.py`` calling
``dg.load_from_defs_folder``), depends on this package through this venv, and is driven with the
``dg`` CLI in subprocesses, as a user does: ``dg list defs`` shows what the component deploys
under the project's own key prefix, ``dg launch`` materializes one partition from the sandbox API
on loopback into the project's warehouse folder, and ``dg check defs`` refuses a wrong attribute
with a message that names it. The package clock is pinned to TODAY (APERIODIC_NOW), so nothing
depends on the date the suite runs.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from aperiodic_assets.core.months import Month
from aperiodic_assets.core.universe import Instrument
from aperiodic_assets.core.warehouse import Warehouse
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.sandbox import Sandbox
from tests.conftest import BTC_1H, KEY, TODAY
from tests.dagster_services import BIN
from tests.test_packaging import clean_env, run

#: About how long this module's tests take together: on a parallel run the longest modules
#: start first (see conftest).
pytestmark = pytest.mark.slow(seconds=55)

PROJECT = "my_pipelines"
PREFIX = ["market", "aperiodic"]
#: The project keeps the API key in its own variable, named by ``api_key_env``.
KEY_ENV = "MY_PIPELINES_APERIODIC_KEY"
ETH_4H = Instrument("okx-perps", "perpetual-ETH-USDT:USDT", "4h")
#: A month the sandbox publishes as one monthly file (daily files start in 2026-08).
JULY = Month.parse("2026-07")
L1 = "market/aperiodic/l1_imbalance"

PYPROJECT = f"""\
[project]
name = "{PROJECT.replace("_", "-")}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["aperiodic-assets"]

[build-system]
requires = ["hatchling>=1.19.0"]
build-backend = "hatchling.build"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{PROJECT}"
registry_modules = ["{PROJECT}.components.*"]
"""

DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""


def attributes(api_url: str, warehouse: Path) -> dict[str, Any]:
    """The component's attributes in the user's project: its own universe, prefix and names."""
    return {
        "universe": {
            "start_month": "2026-01",
            "instruments": [
                {"exchange": i.exchange, "symbol": i.symbol, "interval": i.interval}
                for i in (BTC_1H, ETH_4H)
            ],
        },
        "warehouse_url": str(warehouse),
        "api_url": api_url,
        "api_key_env": KEY_ENV,
        "key_prefix": PREFIX,
        "group": "market_data",
        "owners": ["team:quant"],
        "sensor": {"enabled": True, "interval_s": 600, "lookback_months": 1},
        "schedule": {"enabled": True, "cron": "0 7 2 * *"},
        "tolerances": {"abs_tol": 1e-9, "rel_tol": 1e-6, "nan_share_max": 0.01},
    }


def scaffold(root: Path, attrs: dict[str, Any]) -> Path:
    """A dg project at ``root`` with the component in ``defs/aperiodic``; its defs.yaml path."""
    package = root / "src" / PROJECT
    defs_yaml = package / "defs" / "aperiodic" / "defs.yaml"
    defs_yaml.parent.mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS)
    document = {"type": "aperiodic_assets.AperiodicL1Imbalance", "attributes": attrs}
    defs_yaml.write_text(yaml.safe_dump(document, sort_keys=False))
    return defs_yaml


def project_env(tmp_path: Path, project: Path) -> dict[str, str]:
    """This venv, a throwaway DAGSTER_HOME, the project's src importable, the clock at TODAY,
    and none of the variables the component would fall back to: only its YAML counts."""
    env = clean_env(
        tmp_path,
        PYTHONPATH=str(project / "src"),
        APERIODIC_NOW=f"{TODAY.isoformat()}T12:00:00",
        **{KEY_ENV: KEY},
    )
    fallbacks = {"WAREHOUSE_URL", "APERIODIC_API_KEY", "APERIODIC_API_URL", "APERIODIC_OWNERS"}
    return {
        name: value
        for name, value in env.items()
        if name not in fallbacks and not name.startswith(("APERIODIC_SENSOR_", "APERIODIC_SCH"))
    }


def dg_cli(*args: str) -> list[str]:
    return [str(BIN / "dg"), *args]


@dataclass(frozen=True)
class Checked:
    returncode: int
    output: str


def dg_check(project: Path, env: dict[str, str]) -> Checked:
    """``dg check defs`` in ``project``: its exit code and everything it printed."""
    result = subprocess.run(
        dg_cli("check", "defs"), cwd=project, env=env, capture_output=True, text=True, timeout=180
    )
    return Checked(result.returncode, result.stdout + result.stderr)


def test_a_user_project_lists_and_materializes_the_component(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "my-pipelines"
    warehouse = tmp_path / "lake"
    defs_yaml = scaffold(project, attributes(sandbox.base_url, warehouse))
    env = project_env(tmp_path, project)
    print(f"\n--- {defs_yaml.relative_to(tmp_path)}\n{defs_yaml.read_text()}")

    listed_text = run(dg_cli("list", "defs", "--json"), project, env)
    print(f"--- dg list defs --json\n{listed_text}")
    listed = json.loads(listed_text)
    assets = {asset["asset_key"]: asset for asset in listed["assets"]}
    assert set(assets) == {
        L1,
        "market/aperiodic/l1_imbalance_daily",
        "market/aperiodic/l1_imbalance_monthly_summary",
    }
    assert assets["market/aperiodic/l1_imbalance_daily"]["dependency_keys"] == [L1]
    assert all(asset["group_name"] == "market_data" for asset in assets.values())
    assert all(asset["owners"] == [{"team": "quant"}] for asset in assets.values())
    assert assets[L1]["kinds"] == ["filesystem", "parquet", "python"]
    checks = {check["key"] for check in listed["asset_checks"]}
    assert f"{L1}:validation" in checks
    assert all(key.startswith("market/aperiodic/") for key in checks)
    assert [job["name"] for job in listed["jobs"]] == ["market_aperiodic_l1_imbalance_job"]
    # Dagster adds its automation-condition sensor for the downstream assets' conditions.
    assert {sensor["name"] for sensor in listed["sensors"]} == {
        "market_aperiodic_new_month_sensor",
        "market_aperiodic_summary_upstream_sensor",
        "default_automation_condition_sensor",
    }
    (schedule,) = listed["schedules"]
    assert schedule["name"] == "market_aperiodic_monthly_schedule"
    assert schedule["cron_schedule"] == "0 7 2 * *"
    assert {"aperiodic", "warehouse", "s3"} <= {r["name"] for r in listed["resources"]}

    partition = str(partition_key(BTC_1H, JULY))
    launched = subprocess.run(
        dg_cli("launch", "--assets", L1, "--partition", partition),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert launched.returncode == 0, launched.stderr[-4000:]
    assert "RUN_SUCCESS" in launched.stderr, launched.stderr[-4000:]

    expected = Path(Warehouse(warehouse).uri(BTC_1H, JULY))
    assert sorted(warehouse.rglob("*.parquet")) == [expected]
    table = pq.read_table(expected)
    assert table.num_rows == 31 * 24

    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(PREFIX + ["l1_imbalance"])), limit=10
        ).records
    (record,) = records
    materialization = record.asset_materialization
    assert materialization is not None
    assert materialization.partition == partition
    row_count = materialization.metadata["dagster/row_count"].value
    assert row_count == 31 * 24
    print(
        f"--- materialized {partition}: {expected.relative_to(tmp_path)},"
        f" {table.num_rows} rows, columns {table.column_names}; dagster/row_count={row_count}"
    )


def wrong_interval(attrs: dict[str, Any]) -> None:
    attrs["universe"]["instruments"][1]["interval"] = "2h"


def wrong_warehouse(attrs: dict[str, Any]) -> None:
    attrs["warehouse_url"] = "s3:/bucket"


def wrong_sensor_interval(attrs: dict[str, Any]) -> None:
    attrs["sensor"]["interval_s"] = 0


@pytest.mark.parametrize(
    ("mistake", "expected"),
    [
        (
            wrong_interval,
            "instruments[1] (okx-perps perpetual-ETH-USDT:USDT 2h): interval '2h' is not one of",
        ),
        (wrong_warehouse, "warehouse_url='s3:/bucket' starts like a URL but s3: is not followed"),
        (wrong_sensor_interval, "attributes.sensor {'enabled': True, 'interval_s': 0"),
    ],
)
def test_check_defs_names_a_wrong_attribute(
    tmp_path: Path, mistake: Callable[[dict[str, Any]], None], expected: str
) -> None:
    attrs = attributes("http://127.0.0.1:9/api/v1", tmp_path / "lake")
    mistake(attrs)
    project = tmp_path / "my-pipelines"
    scaffold(project, attrs)
    checked = dg_check(project, project_env(tmp_path, project))
    print(f"\n--- dg check defs exited {checked.returncode}\n{checked.output}")
    assert checked.returncode != 0
    assert expected in checked.output


def test_a_universe_file_is_read_beside_the_defs_yaml(tmp_path: Path) -> None:
    """``universe: instruments.yaml`` is the file in the defs.yaml's folder, though dg runs from
    the project root."""
    attrs = attributes("http://127.0.0.1:9/api/v1", tmp_path / "lake")
    inline, attrs["universe"] = attrs["universe"], "instruments.yaml"
    project = tmp_path / "my-pipelines"
    defs_yaml = scaffold(project, attrs)
    (defs_yaml.parent / "instruments.yaml").write_text(yaml.safe_dump(inline, sort_keys=False))
    env = project_env(tmp_path, project)
    checked = dg_check(project, env)
    assert checked.returncode == 0, checked.output
    assert "All definitions loaded successfully." in checked.output

    (defs_yaml.parent / "instruments.yaml").unlink()
    missing = dg_check(project, env)
    print(f"\n--- without the file, dg check defs exited {missing.returncode}\n{missing.output}")
    assert missing.returncode != 0
    assert f"{defs_yaml.parent / 'instruments.yaml'}: cannot be read" in missing.output


def test_an_environment_variable_is_read_only_for_an_unset_attribute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mistyped variable stops the load, naming itself, unless the attribute it stands in for
    is set: then it is never read."""
    from aperiodic_assets import AperiodicL1Imbalance

    monkeypatch.setenv("WAREHOUSE_URL", "s3:/bucket")
    monkeypatch.setenv("APERIODIC_SENSOR_INTERVAL_S", "1h")
    with pytest.raises(ValueError, match="WAREHOUSE_URL='s3:/bucket' starts like a URL"):
        AperiodicL1Imbalance(sensor={"interval_s": 60}).deployment()
    with pytest.raises(ValueError, match="APERIODIC_SENSOR_INTERVAL_S='1h' is not a whole number"):
        AperiodicL1Imbalance(warehouse_url="s3://bucket/x").deployment()
    deployment = AperiodicL1Imbalance(
        warehouse_url="s3://bucket/x", sensor={"interval_s": 60}
    ).deployment()
    assert deployment.storage == "s3"
    assert deployment.sensor is not None and deployment.sensor.interval_s == 60
