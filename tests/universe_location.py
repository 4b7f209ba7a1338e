"""The code location as deployed for the discovered-universe daemon test: the package's own
definitions with the short client retries of the unattended week, and no automation-condition
sensor (300 downstream runs would queue ahead of the listings the test times)."""

from __future__ import annotations

import dagster as dg

from aperiodic_assets import definitions as deployed
from aperiodic_assets.defs.resources import AperiodicResource

from .unattended_location import SHORT_RETRY

defs = dg.Definitions(
    assets=list(deployed.defs.assets or []),
    asset_checks=list(deployed.defs.asset_checks or []),
    jobs=list(deployed.defs.jobs or []),
    schedules=list(deployed.defs.schedules or []),
    sensors=list(deployed.defs.sensors or []),
    executor=deployed.defs.executor,
    resources={
        **(deployed.defs.resources or {}),
        "aperiodic": AperiodicResource(
            api_url=dg.EnvVar("APERIODIC_API_URL"),
            api_key=dg.EnvVar("APERIODIC_API_KEY"),
            retry=SHORT_RETRY,
        ),
    },
)
