"""``AperiodicL1Imbalance``: the whole integration as one Dagster Component.

A Dagster project adds it in a ``defs.yaml``::

    type: aperiodic_assets.AperiodicL1Imbalance
    attributes:
      universe:
        start_month: "2026-01"
        instruments:
          - {exchange: binance-futures, symbol: "perpetual-BTC-USDT:USDT", interval: 1h}
      warehouse_url: s3://my-bucket/aperiodic

and gets the validated ``l1_imbalance`` asset with its checks, the downstream examples, the
new-month sensor, the monthly schedule, a job and the resources. This package's own code
location (``definitions.py``) is the same component with every attribute left to the
environment. Attributes left unset read the environment variable the code location has always
read (named in each description), so one image serves both.
"""

from __future__ import annotations

import os
import warnings
from importlib import import_module
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field, model_validator

from ..core.api import DEFAULT_API_URL
from ..core.settings import check_cron, check_owners, check_warehouse_url
from ..core.universe import Universe, load_configured_universe, load_universe, parse_universe
from ..core.validation import ValidationConfig
from .assets.downstream import L1_IMBALANCE_MONTHLY_SUMMARY, build_downstream
from .assets.l1_imbalance import build_l1_imbalance
from .assets.upstream import build_upstream_check, build_upstream_sensor
from .automation import build_monthly_schedule, build_new_month_sensor
from .deployment import (
    API_POOL,
    DEFAULT_KEY_PREFIX,
    MAX_BUDGET_S,
    Deployment,
    SensorSettings,
    UniverseSensorSettings,
    storage_kind,
)
from .resources import AperiodicResource, WarehouseResource
from .universe_sensor import build_universe_sensor


# Nested attribute models are Resolvable too: dg accepts a plain Model inside a component only
# when its fields carry no constraints (ge=, le=...).
class SensorAttributes(dg.Resolvable, dg.Model):
    """The new-month sensor; unset numbers come from APERIODIC_SENSOR_* or the defaults."""

    enabled: bool = True
    interval_s: int | None = Field(default=None, ge=1)
    lookback_months: int | None = Field(default=None, ge=0)
    budget_s: float | None = Field(default=None, gt=0, le=MAX_BUDGET_S)
    concurrency: int | None = Field(default=None, ge=1)

    def settings(self) -> SensorSettings | None:
        if not self.enabled:
            return None
        chosen = {k: v for k, v in self.model_dump(exclude={"enabled"}).items() if v is not None}
        return SensorSettings.from_env(**chosen)


class UniverseSensorAttributes(dg.Resolvable, dg.Model):
    """The universe sensor (universes with ``discover`` rules); unset numbers come from
    APERIODIC_UNIVERSE_SENSOR_* or the defaults."""

    enabled: bool = True
    interval_s: int | None = Field(default=None, ge=1)
    budget_s: float | None = Field(default=None, gt=0, le=MAX_BUDGET_S)

    def settings(self) -> UniverseSensorSettings | None:
        if not self.enabled:
            return None
        chosen = {k: v for k, v in self.model_dump(exclude={"enabled"}).items() if v is not None}
        return UniverseSensorSettings.from_env(**chosen)


class ScheduleAttributes(dg.Resolvable, dg.Model):
    """The monthly backstop schedule; unset cron: APERIODIC_SCHEDULE_CRON or ``0 6 1 * *``."""

    enabled: bool = True
    cron: str | None = None


class ToleranceAttributes(dg.Resolvable, dg.Model):
    """Validation tolerances (runs may still override them in run config)."""

    abs_tol: float = Field(default=ValidationConfig.abs_tol, ge=0)
    rel_tol: float = Field(default=ValidationConfig.rel_tol, ge=0)
    nan_share_max: float = Field(default=ValidationConfig.nan_share_max, ge=0, le=1)


class GitAttributes(dg.Resolvable, dg.Model):
    """The repository the package's code lives in, for the catalog's code links."""

    url: str = Field(description="e.g. https://github.com/acme/aperiodic-assets")
    branch: str = "main"


class AperiodicL1Imbalance(dg.Component, dg.Resolvable, dg.Model):
    """Aperiodic's l1_imbalance, validated, as a monthly-partitioned Parquet warehouse."""

    universe: str | dict[str, Any] | None = Field(
        default=None,
        description="The instruments: a universe file's path (relative to this defs.yaml's"
        " folder) or the same mapping inline (start_month, instruments, discover rules). Unset:"
        " the file"
        " APERIODIC_UNIVERSE names, else the packaged universe.yaml.",
    )
    warehouse_url: str | None = Field(
        default=None,
        description="A local folder or s3://bucket/prefix. Unset: WAREHOUSE_URL at run time,"
        " else ./warehouse.",
    )
    api_url: str | None = Field(
        default=None,
        description="The API's base URL. Unset: APERIODIC_API_URL at run time, else the real API.",
    )
    api_key_env: str = Field(
        default="APERIODIC_API_KEY",
        description="The environment variable holding the API key (read at run time; the key"
        " itself never belongs in YAML).",
    )
    key_prefix: list[str] = Field(
        default=list(DEFAULT_KEY_PREFIX),
        min_length=1,
        description="Asset key prefix. Another prefix also prefixes the job, sensor and"
        " schedule names, so two instances can share a code location.",
    )
    group: str = "aperiodic"
    pool: str = Field(default=API_POOL, description="The pool runs calling the API hold.")
    owners: list[str] | None = Field(
        default=None,
        description="Catalog owners. Unset: APERIODIC_OWNERS, else team:data-platform.",
    )
    downstream: bool = Field(default=True, description="Include the two downstream examples.")
    git: GitAttributes | None = Field(
        default=None,
        description="Where this package's source is hosted: the catalog links each asset to its"
        " code there. Unset: the code references are local file paths.",
    )
    sensor: SensorAttributes = Field(default_factory=SensorAttributes)
    universe_sensor: UniverseSensorAttributes = Field(default_factory=UniverseSensorAttributes)
    schedule: ScheduleAttributes = Field(default_factory=ScheduleAttributes)
    tolerances: ToleranceAttributes = Field(default_factory=ToleranceAttributes)

    @model_validator(mode="after")
    def _check(self) -> AperiodicL1Imbalance:
        """Mistakes stop the load, each naming its attribute."""
        if self.warehouse_url is not None:
            check_warehouse_url(self.warehouse_url, "warehouse_url")
        if self.owners is not None:
            check_owners(self.owners, f"owners: {self.owners}", "[team:data-platform]")
        if self.schedule.cron is not None:
            check_cron(self.schedule.cron, f"schedule.cron {self.schedule.cron!r}", "'0 6 1 * *'")
        return self

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.build(self.deployment(base=context.path))

    def build(self, deployment: Deployment) -> dg.Definitions:
        """Everything this instance deploys, for its :meth:`deployment`."""
        assets: list[dg.AssetsDefinition] = [build_l1_imbalance(deployment)]
        if deployment.downstream:
            assets += build_downstream(deployment)
        if self.git is not None:
            assets = _linked_to_git(assets, self.git)
        s3 = S3Resource()
        summary = deployment.key(L1_IMBALANCE_MONTHLY_SUMMARY.path[-1])
        return dg.Definitions(
            assets=assets,
            asset_checks=[build_upstream_check(deployment, summary)]
            if deployment.downstream
            else [],
            jobs=[
                dg.define_asset_job(
                    deployment.name("l1_imbalance_job"),
                    selection=[deployment.l1_key],
                )
            ],
            sensors=_sensors(deployment),
            schedules=(
                [build_monthly_schedule(deployment, deployment.schedule_cron)]
                if deployment.schedule_cron
                else []
            ),
            # Steps run in the run's own process: the default multiprocess executor starts a
            # second interpreter per step (~2 s and ~250 MB per run) for steps that mostly
            # wait on I/O.
            executor=dg.in_process_executor,
            resources={
                "aperiodic": AperiodicResource(
                    api_url=self.api_url or _env_or("APERIODIC_API_URL", DEFAULT_API_URL),
                    api_key=dg.EnvVar(self.api_key_env),
                ),
                # S3 settings for the warehouse; unset fields come from the standard AWS
                # configuration (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE...).
                "s3": s3,
                "warehouse": WarehouseResource(
                    url=self.warehouse_url or _env_or("WAREHOUSE_URL", "warehouse"), s3=s3
                ),
            },
        )

    def deployment(self, base: Path | None = None) -> Deployment:
        """This instance's choices, the unset ones from the environment; ``base``: the folder a
        relative universe path is read from (the defs.yaml's; default: the working directory).
        """
        chosen: dict[str, Any] = {
            "key_prefix": tuple(self.key_prefix),
            "group": self.group,
            "pool": self.pool,
            "downstream": self.downstream,
            "tolerances": ValidationConfig(**self.tolerances.model_dump()),
            "sensor": self.sensor.settings(),
            "universe_sensor": self.universe_sensor.settings(),
        }
        if self.owners is not None:
            chosen["owners"] = tuple(self.owners)
        if self.warehouse_url is not None:
            chosen["storage"] = storage_kind(self.warehouse_url)
        if not self.schedule.enabled:
            chosen["schedule_cron"] = None
        elif self.schedule.cron is not None:
            chosen["schedule_cron"] = self.schedule.cron
        return Deployment.from_env(self._universe(base or Path.cwd()), **chosen)

    def _universe(self, base: Path) -> Universe:
        if self.universe is None:
            return load_configured_universe()
        if isinstance(self.universe, str):
            return load_universe(base / self.universe)
        return parse_universe(self.universe, "the component's universe attribute")


def _sensors(deployment: Deployment) -> list[dg.SensorDefinition]:
    """The new-month sensor, the universe sensor where rules discover the instruments, and the
    sensor that says whether each monthly summary is current."""
    sensors = [build_new_month_sensor(deployment)] if deployment.sensor else []
    if deployment.universe.discovers and deployment.universe_sensor:
        sensors.append(build_universe_sensor(deployment))
    if deployment.downstream:
        summary = deployment.key(L1_IMBALANCE_MONTHLY_SUMMARY.path[-1])
        sensors.append(build_upstream_sensor(deployment, summary))
    return sensors


def _linked_to_git(
    assets: list[dg.AssetsDefinition], git: GitAttributes
) -> list[dg.AssetsDefinition]:
    """The assets' local code references as links into the repository at ``git``: the path of
    the package's ``__init__.py`` there anchors every other file, installed or checked out."""
    anchor = Path(import_module("aperiodic_assets").__file__ or "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        linked = dg.link_code_references_to_git(
            assets,
            git_url=git.url,
            git_branch=git.branch,
            file_path_mapping=dg.AnchorBasedFilePathMapping(
                local_file_anchor=anchor,
                file_anchor_path_in_repository="aperiodic_assets/__init__.py",
            ),
        )
    return [a for a in linked if isinstance(a, dg.AssetsDefinition)]


def _env_or(name: str, default: str) -> str | dg.EnvVar:
    """An EnvVar when the variable is set (resolved at run time), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default
