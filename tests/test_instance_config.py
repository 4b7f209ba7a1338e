"""The instance configs validate against Dagster's schemas, without AWS or a database.

Every configurable class they name (storage, run launcher, compute logs, coordinator) is
imported and its config section checked against that class's own schema, so a typo in
dagster.prod.yaml fails here rather than at deploy time. The run launchers' environment is
resolved by the launchers' own code (ECS and K8s container contexts), so a variable they would
demand at every launch is found here too.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster_aws.ecs.container_context import EcsContainerContext
from dagster_k8s.container_context import K8sContainerContext

ROOT = Path(__file__).resolve().parents[1]
INSTANCE_FILES = ["dagster_home/dagster.yaml", "dagster_home/dagster.prod.yaml"]
HELM_VALUES = ROOT / "deploy/helm/values.yaml"
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
#: What a run needs besides the instance's own variables: production has no sensible default.
REQUIRED_RUN_ENV = {"WAREHOUSE_URL": "s3://example-warehouse/aperiodic"}
#: Variables the README calls optional: a run must launch with every one of them unset.
OPTIONAL_ENV = [
    "APERIODIC_API_URL",
    "APERIODIC_UNIVERSE",
    "APERIODIC_SENSOR_INTERVAL_S",
    "APERIODIC_SENSOR_LOOKBACK_MONTHS",
    "APERIODIC_SENSOR_BUDGET_S",
    "APERIODIC_SENSOR_CONCURRENCY",
    "APERIODIC_SCHEDULE_CRON",
    "AWS_ENDPOINT_URL",
]


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
    for key, value in {**PROD_ENV, **REQUIRED_RUN_ENV}.items():
        monkeypatch.setenv(key, value)
    for key in OPTIONAL_ENV:
        monkeypatch.delenv(key, raising=False)


def ecs_launch_environment() -> dict[str, str]:
    """The environment EcsRunLauncher gives a run, resolved as it does at every launch."""
    config = yaml.safe_load((ROOT / "dagster_home/dagster.prod.yaml").read_text())
    env_vars = config["run_launcher"]["config"].get("env_vars", [])
    return dict(EcsContainerContext(env_vars=env_vars).get_environment_dict())


def k8s_launch_environment() -> dict[str, str]:
    """The environment K8sRunLauncher gives a run of the Helm values' code location."""
    values = yaml.safe_load(HELM_VALUES.read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    context = K8sContainerContext(
        env_vars=values["runLauncher"]["config"]["k8sRunLauncher"].get("envVars", []),
        env=deployment.get("env", []),
    )
    return {e["name"]: e["value"] for e in context.run_k8s_config.container_config.get("env", [])}


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


def test_runs_launch_with_every_optional_variable_unset():
    assert ecs_launch_environment() == REQUIRED_RUN_ENV
    assert k8s_launch_environment() == {"WAREHOUSE_URL": "s3://example-warehouse/aperiodic"}


def test_the_ecs_launcher_refuses_to_launch_without_the_warehouse(monkeypatch):
    monkeypatch.delenv("WAREHOUSE_URL")
    with pytest.raises(Exception, match="WAREHOUSE_URL, but it was not set"):
        ecs_launch_environment()


def test_an_optional_variable_listed_by_name_would_fail_every_launch(monkeypatch):
    """Why optional variables stay out of env_vars: the launcher demands every bare name."""
    with pytest.raises(Exception, match="APERIODIC_API_URL, but it was not set"):
        EcsContainerContext(env_vars=["APERIODIC_API_URL"]).get_environment_dict()
    monkeypatch.setenv("APERIODIC_API_URL", "http://127.0.0.1:1/api/v1")
    assert EcsContainerContext(env_vars=["APERIODIC_API_URL"]).get_environment_dict() == {
        "APERIODIC_API_URL": "http://127.0.0.1:1/api/v1"
    }
