"""The API key and presigned-URL signatures never reach Dagster's event log, compute logs or output.

Runs the real job out of process (the Dagster CLI, as a deployment's run worker would, compute
logs captured) on an on-disk instance, with the key set to a recognisable secret, under several
faults and one failure, then searches every byte the instance wrote, plus everything printed and
logged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from aperiodic_assets.core.months import Month
from aperiodic_assets.defs.partitions import partition_key
from aperiodic_assets.sandbox import Sandbox, SandboxConfig

from .conftest import BTC_1H, TODAY

SECRET = "sk-live-7f3a9c1e-SECRET-d4b2"
SIGNATURE = "X-Amz-Signature="
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_partition(month: Month) -> subprocess.CompletedProcess:
    """One partition of ``l1_imbalance_job`` through the Dagster CLI, in its own process, so
    the code location reads this test's environment (key, API URL, warehouse) as a deployment
    does; its output reaches ``capfd``."""
    key = partition_key(BTC_1H, month)
    tags = {"dagster/partition": str(key)}
    tags.update({f"dagster/partition/{dim}": value for dim, value in key.keys_by_dimension.items()})
    command = [str(BIN / "dagster"), "job", "execute", "-m", "aperiodic_assets.definitions"]
    command += ["-j", "l1_imbalance_job", "--tags", json.dumps(tags)]
    return subprocess.run(command, cwd=ROOT, env=dict(os.environ), timeout=300)


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


def test_secrets_never_reach_event_log_compute_logs_or_output(
    home: Path, tmp_path: Path, monkeypatch, capfd, caplog
):
    caplog.set_level(logging.DEBUG)
    with Sandbox(SandboxConfig(api_key=SECRET, today=TODAY)) as sandbox:
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("APERIODIC_API_URL", sandbox.base_url)
        monkeypatch.setenv("APERIODIC_API_KEY", SECRET)
        monkeypatch.setenv("WAREHOUSE_URL", str(tmp_path / "warehouse"))
        sandbox.inject("status", count=1, status=503)
        sandbox.inject("rate_limit", count=1, seconds=1)
        sandbox.inject("expire_urls", count=1)
        sandbox.inject("truncate", count=1)
        ok = run_partition(Month(2026, 7))
        sandbox.clear_faults()
        sandbox.inject("foreign_host", count=-1)
        refused = run_partition(Month(2026, 6))
        faults_seen = {r.get("fault") for r in sandbox.requests()} - {None}
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            run_configs = [str(r.run_config) for r in runs]
            statuses = sorted(r.status.value for r in runs)

    assert ok.returncode == 0, "the faults are all recoverable"
    assert refused.returncode != 0, "a foreign download host fails the run"
    assert statuses == ["FAILURE", "SUCCESS"]
    assert {"status", "rate_limit", "expire_urls", "truncate"} <= faults_seen
    logs = list(home.rglob("*.err")) + list(home.rglob("*.out"))
    assert any(b"attempt 1 of" in p.read_bytes() for p in logs), "compute logs were captured"
    assert any(b"files.example.com" in p.read_bytes() for p in home.rglob("*") if p.is_file())

    captured = capfd.readouterr()
    for needle in (SECRET, SIGNATURE):
        assert files_containing(home, needle.encode()) == []
        assert needle not in captured.out and needle not in captured.err
        assert needle not in caplog.text
        assert not any(needle in c for c in run_configs)
