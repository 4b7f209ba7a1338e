"""`dg` works in this checkout, and the wheel works without it.

The dg half runs the CLI as a user does, from the repository root. The wheel half builds from a
copy of exactly what the Dockerfile copies (pyproject.toml, README.md, the package), installs the
wheel without dependencies into a folder, and imports it from there with this venv's packages
underneath: a module or data file left out of the wheel, or a path into the checkout, fails here.
No network: the build runs without isolation and pip installs the one local wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from dagster_dg_core.context import DgContext

from tests.dagster_services import BIN, REPO_ROOT

L1 = "aperiodic/l1_imbalance"


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    """argv's stdout; its stderr in the failure message when it exits non-zero."""
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment without APERIODIC_UNIVERSE, this venv active, a throwaway DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home)
    env = {k: v for k, v in os.environ.items() if k not in {"APERIODIC_UNIVERSE", "PYTHONPATH"}}
    return {
        **env,
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": sys.prefix,
        "DAGSTER_HOME": str(home),
        **extra,
    }


def test_dg_loads_the_code_location_workspace_yaml_names() -> None:
    """[tool.dg] points at the module and location name that workspace.yaml and the image use."""
    context = DgContext.from_file_discovery_and_command_line_config(REPO_ROOT, {})
    entry = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"][0]
    assert context.is_project
    assert context.root_path == REPO_ROOT
    assert context.target_args == {"module_name": entry["python_module"]["module_name"]}
    assert context.code_location_name == entry["python_module"]["location_name"]


def test_dg_check_and_list_defs(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    checked = run([str(BIN / "dg"), "check", "defs"], REPO_ROOT, env)
    assert "All definitions loaded successfully." in checked
    listed = json.loads(run([str(BIN / "dg"), "list", "defs", "--json"], REPO_ROOT, env))
    assert L1 in {asset["asset_key"] for asset in listed["assets"]}
    assert f"{L1}:validation" in {check["key"] for check in listed["asset_checks"]}
    assert "new_month_sensor" in {sensor["name"] for sensor in listed["sensors"]}


def build_wheel(tmp_path: Path) -> Path:
    """The wheel of a copy of what the Dockerfile copies, so nothing else of the checkout counts."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source)
    shutil.copytree(
        REPO_ROOT / "aperiodic_assets",
        source / "aperiodic_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    dist = tmp_path / "dist"
    argv = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)]
    run([*argv, str(source)], tmp_path, os.environ.copy())
    (wheel,) = dist.glob("aperiodic_assets-*.whl")
    return wheel


PROBE = """
import json
import aperiodic_assets, aperiodic_assets.definitions as definitions, aperiodic_assets.core.universe
keys = definitions.defs.resolve_asset_graph().get_all_asset_keys()
print(json.dumps({
    "package": aperiodic_assets.__file__,
    "universe": str(aperiodic_assets.core.universe.DEFAULT_UNIVERSE),
    "assets": sorted(key.to_user_string() for key in keys),
}))
"""


def test_the_wheel_works_outside_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "aperiodic_assets/universe.yaml" in names
    assert "aperiodic_assets/sandbox/__main__.py" in names
    top_level = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top_level == {"aperiodic_assets"}, "the package alone: no tests/ or benchmarks/"

    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"]
    run([*pip, "--target", str(site), str(wheel)], tmp_path, os.environ.copy())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env(elsewhere, PYTHONPATH=str(site))

    loaded = json.loads(run([sys.executable, "-c", PROBE], elsewhere, env))
    assert Path(loaded["package"]).is_relative_to(site)
    assert Path(loaded["universe"]) == site / "aperiodic_assets" / "universe.yaml"
    assert L1 in loaded["assets"]
    usage = run([sys.executable, "-m", "aperiodic_assets.sandbox", "--help"], elsewhere, env)
    assert usage.startswith("usage: python -m aperiodic_assets.sandbox")
