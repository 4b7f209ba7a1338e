"""The code location as deployed, with days shrunk to seconds, for the unattended-week test.

Everything is the package's own: the assets, the new-month sensor, the schedule, the resources.
What differs is time: the client's retry waits are short (as in the other tests), and the
automation-condition sensor that makes the downstream assets follow looks every few seconds
instead of every 30 s. The clock (APERIODIC_NOW), the sensor interval, the longest in-run wait
and the universe come from the environment, as in a deployment.
"""

from __future__ import annotations

import dagster as dg

from aperiodic_assets import definitions as deployed
from aperiodic_assets.defs.resources import AperiodicResource, RetrySettings

SHORT_RETRY = RetrySettings(
    max_attempts=3,
    backoff_initial_s=0.2,
    backoff_max_s=1.0,
    jitter_s=0.1,
    retry_after_max_s=1.0,
    budget_s=10.0,
    connect_timeout_s=2.0,
    read_timeout_s=2.0,
)


def deployed_with_short_retries(*extra_sensors: dg.SensorDefinition) -> dg.Definitions:
    """The package's definitions, the client's retries short, ``extra_sensors`` added."""
    return dg.Definitions(
        assets=list(deployed.defs.assets or []),
        asset_checks=list(deployed.defs.asset_checks or []),
        jobs=list(deployed.defs.jobs or []),
        schedules=list(deployed.defs.schedules or []),
        sensors=[*(deployed.defs.sensors or []), *extra_sensors],
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


defs = deployed_with_short_retries(
    dg.AutomationConditionSensorDefinition(
        "downstream_follows",
        target=dg.AssetSelection.all(),
        minimum_interval_seconds=2,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
)
