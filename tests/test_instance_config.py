"""The instance configs validate against Dagster's schemas, without AWS or a database.

Every configurable class they name (storage, run launcher, compute logs, coordinator) is
imported and its config section checked against that class's own schema, so a typo in
dagster.prod.yaml fails here rather than at deploy time.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config_schema

ROOT = Path(__file__).resolve().parents[1]
INSTANCE_FILES = ["dagster_home/dagster.yaml", "dagster_home/dagster.prod.yaml"]
#: What a deployment provides through its environment (values are placeholders).
PROD_ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "placeholder",
    "DAGSTER_COMPUTE_LOG_BUCKET": "example-dagster-logs",
    "APERIODIC_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:000000000000:secret:k",
}


def problems(config: dict) -> list[str]:
    """Schema errors of an instance config and of each configurable class it names."""
    found = []
    result = process_config(dagster_instance_config_schema(), config)
    found += [e.message for e in result.errors or []]
    for section in config.values():
        if isinstance(section, dict) and {"module", "class"} <= set(section):
            cls = getattr(importlib.import_module(section["module"]), section["class"])
            result = process_config(cls.config_type(), section.get("config") or {})
            found += [f"{section['class']}: {e.message}" for e in result.errors or []]
    return found


@pytest.fixture(autouse=True)
def deployment_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for key, value in PROD_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("path", INSTANCE_FILES)
def test_instance_config_is_valid(path: str):
    config = yaml.safe_load((ROOT / path).read_text())
    assert problems(config) == []


def test_prod_config_uses_postgres_s3_logs_ecs_and_the_api_pool():
    config = yaml.safe_load((ROOT / "dagster_home/dagster.prod.yaml").read_text())
    assert set(config["storage"]) == {"postgres"}
    assert config["compute_logs"]["class"] == "S3ComputeLogManager"
    assert config["run_launcher"]["class"] == "EcsRunLauncher"
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["default_limit"] >= 1
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["enabled"]
    secret_names = [s["name"] for s in config["run_launcher"]["config"]["secrets"]]
    assert secret_names == ["APERIODIC_API_KEY"]


@pytest.mark.parametrize(
    "break_it",
    [
        lambda c: c.update(run_launcherr=c.pop("run_launcher")),
        lambda c: c["run_launcher"]["config"].update(use_current_ecs_task_confg=True),
        lambda c: c["storage"]["postgres"]["postgres_db"].update(hostname=None),
        lambda c: c["concurrency"]["pools"].update(default_limit="many"),
    ],
    ids=["misspelled-section", "misspelled-launcher-field", "missing-host", "wrong-type"],
)
def test_a_typo_in_the_prod_config_is_caught(break_it):
    config = yaml.safe_load((ROOT / "dagster_home/dagster.prod.yaml").read_text())
    break_it(config)
    assert problems(config) != []
