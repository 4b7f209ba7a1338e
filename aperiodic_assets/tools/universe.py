"""``python -m aperiodic_assets.tools.universe``: one universe-sensor tick, now, on this instance.

A universe with ``discover`` rules has a dynamic instrument dimension that the universe sensor
fills on its first tick. Where no daemon runs yet (a new instance, ``dagster asset materialize``
or ``dg launch`` from a shell, a CI job), this command evaluates the same sensor once against
DAGSTER_HOME's instance and applies what it decided: the new instruments, their lives in the
warehouse, the closing and reopening observations. Same environment as the code location.
"""

from __future__ import annotations

import argparse
import sys

import dagster as dg


def sync(instance: dg.DagsterInstance, defs: dg.Definitions, name: str) -> list[str]:
    """Evaluate the sensor ``name`` of ``defs`` once and apply its result; the keys added."""
    sensor = defs.get_unresolved_sensor_def(name)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
        result = sensor(context)
    if not isinstance(result, dg.SensorResult):
        return []
    added: list[str] = []
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            added += request.partition_keys
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    from ..definitions import defs, deployment

    if not deployment.universe.discovers:
        print("the universe has no discover rules: its instruments are fixed, nothing to sync")
        return 0
    name = deployment.name("universe_sensor")
    with dg.DagsterInstance.get() as instance:
        added = sync(instance, defs, name)
        total = len(instance.get_dynamic_partitions(deployment.partitions.dynamic_name))
    print(f"{len(added)} instrument(s) added; the instrument dimension holds {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
