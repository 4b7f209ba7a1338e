"""The Dagster layer: the component, assets, checks, partitions, sensor, schedule and resources
that put the pure layer (:mod:`aperiodic_assets.core`) to work. Only this folder, the tools and
``definitions.py`` may import Dagster.
"""
