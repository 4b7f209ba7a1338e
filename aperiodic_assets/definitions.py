"""The code location: one Definitions object, resources chosen from the environment.

APERIODIC_API_URL (default: the real API), APERIODIC_API_KEY (a secret, read through EnvVar
so it never lands in run config) and WAREHOUSE_URL (default: ./warehouse).
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_aws.s3 import S3Resource

from .api import DEFAULT_API_URL
from .assets.downstream import l1_imbalance_daily, l1_imbalance_monthly_summary
from .assets.l1_imbalance import l1_imbalance
from .automation import monthly_schedule, new_month_sensor
from .partitions import l1_partitions
from .resources import AperiodicResource, WarehouseResource
from .settings import check_warehouse_url

# A mistyped WAREHOUSE_URL (s3:/bucket, S3://...) stops the code location here, not later as a
# local folder named "s3:".
check_warehouse_url(os.environ.get("WAREHOUSE_URL") or "warehouse")


def _env_or(name: str, default: str) -> str | dg.EnvVar:
    """An EnvVar when the variable is set (resolved at run time), else the default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


l1_imbalance_job = dg.define_asset_job(
    "l1_imbalance_job", selection=[l1_imbalance], partitions_def=l1_partitions
)

#: S3 settings for the whole code location (the warehouse and anyone else's S3 access); unset
#: fields come from the standard AWS configuration (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE...).
s3 = S3Resource()

defs = dg.Definitions(
    assets=[l1_imbalance, l1_imbalance_daily, l1_imbalance_monthly_summary],
    jobs=[l1_imbalance_job],
    sensors=[new_month_sensor],
    schedules=[monthly_schedule],
    # Steps run in the run's own process: the default multiprocess executor starts a second
    # interpreter per step (~2 s and ~250 MB per run) for steps that mostly wait on I/O.
    executor=dg.in_process_executor,
    resources={
        "aperiodic": AperiodicResource(
            api_url=_env_or("APERIODIC_API_URL", DEFAULT_API_URL),
            api_key=dg.EnvVar("APERIODIC_API_KEY"),
        ),
        "s3": s3,
        "warehouse": WarehouseResource(url=_env_or("WAREHOUSE_URL", "warehouse"), s3=s3),
    },
)
