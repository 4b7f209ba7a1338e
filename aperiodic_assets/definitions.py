"""The code location: one Definitions object, resources chosen from the environment.

APERIODIC_API_URL (default: the real API), APERIODIC_API_KEY (a secret, read through EnvVar
so it never lands in run config) and WAREHOUSE_URL (default: ./warehouse).
"""

from __future__ import annotations

import os

import dagster as dg

from .api import DEFAULT_API_URL
from .assets.l1_imbalance import l1_imbalance
from .automation import monthly_schedule, new_month_sensor
from .partitions import l1_partitions
from .resources import AperiodicResource, WarehouseResource


def _env_or(name: str, default: str) -> str | dg.EnvVar:
    """An EnvVar when the variable is set (resolved at run time), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


l1_imbalance_job = dg.define_asset_job(
    "l1_imbalance_job", selection=[l1_imbalance], partitions_def=l1_partitions
)

defs = dg.Definitions(
    assets=[l1_imbalance],
    jobs=[l1_imbalance_job],
    sensors=[new_month_sensor],
    schedules=[monthly_schedule],
    resources={
        "aperiodic": AperiodicResource(
            api_url=_env_or("APERIODIC_API_URL", DEFAULT_API_URL),
            api_key=dg.EnvVar("APERIODIC_API_KEY"),
        ),
        "warehouse": WarehouseResource(url=_env_or("WAREHOUSE_URL", "warehouse")),
    },
)
