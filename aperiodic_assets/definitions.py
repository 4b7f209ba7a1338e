"""The code location: the :class:`AperiodicL1Imbalance` component with every attribute left to
the environment, exactly as a Dagster project would add it without attributes.

APERIODIC_UNIVERSE (the instruments), APERIODIC_API_URL (default: the real API),
APERIODIC_API_KEY (a secret, read through EnvVar so it never lands in run config),
WAREHOUSE_URL (default: ./warehouse); the rest in README's configuration table.
"""

from __future__ import annotations

from .defs.component import AperiodicL1Imbalance

component = AperiodicL1Imbalance()
#: What the environment chose (the universe, owners, sensor settings...), for tools and tests.
deployment = component.deployment()
defs = component.build(deployment)
