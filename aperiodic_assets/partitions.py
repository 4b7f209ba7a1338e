"""Partitions: instrument (from universe.yaml) × month.

The month dimension ends with the current month (``end_offset=1``): it materializes from the
daily files published so far, so the warehouse is fresh to yesterday.
"""

from __future__ import annotations

import dagster as dg

from .months import Month
from .universe import Instrument, load_configured_universe

#: APERIODIC_UNIVERSE: another instruments file (default: the packaged universe.yaml).
UNIVERSE = load_configured_universe()
_BY_KEY = {i.key: i for i in UNIVERSE.instruments}

instrument_partitions = dg.StaticPartitionsDefinition(UNIVERSE.keys)
month_partitions = dg.MonthlyPartitionsDefinition(
    start_date=UNIVERSE.start_month.key, fmt="%Y-%m", end_offset=1
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
    name = dims["instrument"]
    return _BY_KEY.get(name) or Instrument.from_key(name), Month.parse(dims["month"])
