"""Partitions: instrument (from universe.yaml) × month (last key: the last completed month)."""

from __future__ import annotations

import dagster as dg

from .months import Month
from .universe import Instrument, load_universe

UNIVERSE = load_universe()

instrument_partitions = dg.StaticPartitionsDefinition(UNIVERSE.keys)
month_partitions = dg.MonthlyPartitionsDefinition(
    start_date=UNIVERSE.start_month.key, fmt="%Y-%m", end_offset=0
)
l1_partitions = dg.MultiPartitionsDefinition(
    {"instrument": instrument_partitions, "month": month_partitions}
)


def partition_key(instrument: Instrument, month: Month) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"instrument": instrument.key, "month": month.key})


def parse_partition_key(key: str | dg.MultiPartitionKey) -> tuple[Instrument, Month]:
    """The (instrument, month) behind a partition key of ``l1_partitions``."""
    if not isinstance(key, dg.MultiPartitionKey):
        key = l1_partitions.get_partition_key_from_str(key)
    dims = key.keys_by_dimension
    return Instrument.from_key(dims["instrument"]), Month.parse(dims["month"])
