"""What one deployment of the assets chooses: its instruments, names, policies and automation.

The component (:mod:`.component`) builds one from its YAML attributes; every factory of the
Dagster layer takes it, so two deployments differ only in this value. Anything left unset falls
back to the environment variable a deployment has always used, then to the default.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import dagster as dg

from ..core.settings import check_warehouse_url, env_cron, env_float, env_int, env_owners
from ..core.universe import Universe
from ..core.validation import ValidationConfig
from .partitions import Partitions

#: The pool every run that calls the API holds a slot of (``dagster instance concurrency``).
API_POOL = "aperiodic_api"
DEFAULT_KEY_PREFIX = ("aperiodic",)
DEFAULT_OWNERS = "team:data-platform"
DEFAULT_SCHEDULE_CRON = "0 6 1 * *"
#: Dagster times a sensor evaluation out at 60 s; the tick still has to read the instance and
#: write its cursor after the API work.
MAX_BUDGET_S = 45.0


def check_budget(variable: str, budget_s: float) -> None:
    """A sensor's tick budget: over 0 and at most :data:`MAX_BUDGET_S`, else ValueError."""
    if not 0 < budget_s <= MAX_BUDGET_S:
        raise ValueError(
            f"{variable}={budget_s:g}: the sensor's budget must be over 0 and at most"
            f" {MAX_BUDGET_S:g} s (Dagster times a sensor evaluation out at 60 s)"
        )


@dataclass(frozen=True)
class SensorSettings:
    """How often and how hard the sensor looks; environment variables override the defaults."""

    #: Seconds between evaluations (APERIODIC_SENSOR_INTERVAL_S).
    interval_s: int = 3600
    #: Completed months watched besides the current one (APERIODIC_SENSOR_LOOKBACK_MONTHS).
    lookback_months: int = 2
    #: Wall time one evaluation may spend on the API (APERIODIC_SENSOR_BUDGET_S, at most
    #: MAX_BUDGET_S).
    budget_s: float = 25.0
    #: Listings and ranged GETs in flight at once (APERIODIC_SENSOR_CONCURRENCY).
    concurrency: int = 8

    def __post_init__(self) -> None:
        check_budget("APERIODIC_SENSOR_BUDGET_S", self.budget_s)

    @classmethod
    def from_env(cls, **chosen: Any) -> SensorSettings:
        """``chosen`` settings; each other one from its APERIODIC_SENSOR_* variable, read only
        when not chosen, else the default."""
        from_environment: dict[str, Callable[[], Any]] = {
            "interval_s": lambda: env_int("APERIODIC_SENSOR_INTERVAL_S", cls.interval_s, minimum=1),
            "lookback_months": lambda: env_int(
                "APERIODIC_SENSOR_LOOKBACK_MONTHS", cls.lookback_months, minimum=0
            ),
            "budget_s": lambda: env_float("APERIODIC_SENSOR_BUDGET_S", cls.budget_s, minimum=1.0),
            "concurrency": lambda: env_int(
                "APERIODIC_SENSOR_CONCURRENCY", cls.concurrency, minimum=1
            ),
        }
        return cls(**_unchosen(from_environment, chosen), **chosen)


@dataclass(frozen=True)
class UniverseSensorSettings:
    """How often the universe sensor reads the symbol lists, and how long a tick may work."""

    #: Seconds between evaluations (APERIODIC_UNIVERSE_SENSOR_INTERVAL_S).
    interval_s: int = 3600
    #: Wall time one evaluation may spend on the API (APERIODIC_UNIVERSE_SENSOR_BUDGET_S).
    budget_s: float = 25.0
    #: Listings in flight at once.
    concurrency: int = 8

    def __post_init__(self) -> None:
        check_budget("APERIODIC_UNIVERSE_SENSOR_BUDGET_S", self.budget_s)

    @classmethod
    def from_env(cls, **chosen: Any) -> UniverseSensorSettings:
        """``chosen`` settings; the others from APERIODIC_UNIVERSE_SENSOR_*, else defaults."""
        from_environment: dict[str, Callable[[], Any]] = {
            "interval_s": lambda: env_int(
                "APERIODIC_UNIVERSE_SENSOR_INTERVAL_S", cls.interval_s, minimum=1
            ),
            "budget_s": lambda: env_float(
                "APERIODIC_UNIVERSE_SENSOR_BUDGET_S", cls.budget_s, minimum=1.0
            ),
        }
        return cls(**_unchosen(from_environment, chosen), **chosen)


def _unchosen(read: dict[str, Callable[[], Any]], chosen: dict[str, Any]) -> dict[str, Any]:
    """The values of the fields not in ``chosen``, each read only then."""
    return {name: value() for name, value in read.items() if name not in chosen}


def run_wait_max_s() -> float:
    """APERIODIC_RUN_WAIT_MAX_S, else 300 s: runs the sensor launches take no run config."""
    return env_float("APERIODIC_RUN_WAIT_MAX_S", 300.0, minimum=0.0)


def storage_kind(warehouse_url: str) -> str:
    """The catalog's storage kind for a warehouse URL: ``s3`` or ``filesystem``."""
    return "s3" if warehouse_url.startswith("s3://") else "filesystem"


@dataclass(frozen=True, eq=False)
class Deployment:
    """One deployment's choices. ``sensor``/``schedule_cron`` None: no sensor/schedule."""

    universe: Universe
    key_prefix: tuple[str, ...] = DEFAULT_KEY_PREFIX
    group: str = "aperiodic"
    pool: str = API_POOL
    owners: tuple[str, ...] = (DEFAULT_OWNERS,)
    #: The warehouse's storage kind in the catalog (:func:`storage_kind`). Kinds are fixed when
    #: the definitions load, so this follows the URL known then (the component's
    #: ``warehouse_url``, else WAREHOUSE_URL at load); each materialization's ``dagster/uri``
    #: names where the data really went.
    storage: str = "filesystem"
    tolerances: ValidationConfig = field(default_factory=ValidationConfig)
    run_wait_max_s: float = 300.0
    sensor: SensorSettings | None = field(default_factory=SensorSettings)
    #: The universe sensor's settings; it exists only for a universe with ``discover`` rules.
    universe_sensor: UniverseSensorSettings | None = field(default_factory=UniverseSensorSettings)
    schedule_cron: str | None = DEFAULT_SCHEDULE_CRON
    downstream: bool = True

    @classmethod
    def from_env(cls, universe: Universe, **chosen: Any) -> Deployment:
        """``chosen`` fields; the others from the environment variables the code location has
        always read (APERIODIC_OWNERS, WAREHOUSE_URL, APERIODIC_RUN_WAIT_MAX_S,
        APERIODIC_SCHEDULE_CRON; the sensor's are :meth:`SensorSettings.from_env`'s), else the
        defaults. A variable is read only for a field not chosen, so a wrong one never hides
        behind a chosen value; a mistyped WAREHOUSE_URL (s3:/bucket, S3://...) stops the load
        here, not later as a local folder named "s3:"."""
        from_environment: dict[str, Callable[[], Any]] = {
            "owners": lambda: tuple(env_owners("APERIODIC_OWNERS", DEFAULT_OWNERS)),
            "storage": lambda: storage_kind(
                check_warehouse_url(os.environ.get("WAREHOUSE_URL") or "warehouse")
            ),
            "run_wait_max_s": run_wait_max_s,
            "schedule_cron": lambda: env_cron("APERIODIC_SCHEDULE_CRON", DEFAULT_SCHEDULE_CRON),
            "universe_sensor": UniverseSensorSettings.from_env,
        }
        return cls(universe, **_unchosen(from_environment, chosen), **chosen)

    @cached_property
    def partitions(self) -> Partitions:
        return Partitions(self.universe, self.name("instruments", always=True))

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([*self.key_prefix, name])

    @property
    def l1_key(self) -> dg.AssetKey:
        return self.key("l1_imbalance")

    @property
    def kinds(self) -> set[str]:
        return {"parquet", "python", self.storage}

    def name(self, base: str, always: bool = False) -> str:
        """A job/sensor/schedule name, prefixed unless the key prefix is the default (or
        ``always``), so deployments with other prefixes can share a code location."""
        if self.key_prefix == DEFAULT_KEY_PREFIX and not always:
            return base
        return "_".join([*self.key_prefix, base])
