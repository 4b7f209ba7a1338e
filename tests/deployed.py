"""The default deployment, as the code location builds it (``aperiodic_assets.definitions``):
its universe, partitions and the definitions the tests run."""

from __future__ import annotations

from aperiodic_assets.definitions import defs, deployment
from aperiodic_assets.defs.assets.downstream import L1_IMBALANCE_DAILY, L1_IMBALANCE_MONTHLY_SUMMARY
from aperiodic_assets.defs.assets.l1_imbalance import L1_IMBALANCE

DEPLOYMENT = deployment
UNIVERSE = deployment.universe
PARTITIONS = deployment.partitions
l1_partitions = PARTITIONS.l1
month_partitions = PARTITIONS.months
parse_partition_key = PARTITIONS.parse
l1_imbalance = defs.get_assets_def(L1_IMBALANCE)
l1_imbalance_daily = defs.get_assets_def(L1_IMBALANCE_DAILY)
l1_imbalance_monthly_summary = defs.get_assets_def(L1_IMBALANCE_MONTHLY_SUMMARY)
new_month_sensor = defs.get_unresolved_sensor_def("new_month_sensor")
monthly_schedule = defs.get_unresolved_schedule_def("monthly_schedule")
