"""Partitions: instrument (from the deployment's universe) × month.

The month dimension ends with the current month (``end_offset=1``): it materializes from the
daily files published so far, so the warehouse is fresh to yesterday.
"""

from __future__ import annotations

from functools import cached_property

import dagster as dg

from ..core.months import Month
from ..core.universe import Instrument, Universe


def partition_key(instrument: Instrument, month: Month) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"instrument": instrument.key, "month": month.key})


class Partitions:
    """The partitions of one universe: its instruments, its months, and both together."""

    def __init__(self, universe: Universe) -> None:
        self.universe = universe
        self._by_key = {i.key: i for i in universe.instruments}

    @cached_property
    def instruments(self) -> dg.StaticPartitionsDefinition:
        return dg.StaticPartitionsDefinition(self.universe.keys)

    @cached_property
    def months(self) -> dg.MonthlyPartitionsDefinition:
        return dg.MonthlyPartitionsDefinition(
            start_date=self.universe.start_month.key, fmt="%Y-%m", end_offset=1
        )

    @cached_property
    def l1(self) -> dg.MultiPartitionsDefinition:
        return dg.MultiPartitionsDefinition({"instrument": self.instruments, "month": self.months})

    def parse(self, key: str | dg.MultiPartitionKey) -> tuple[Instrument, Month]:
        """The (instrument, month) behind a partition key of :attr:`l1`."""
        if not isinstance(key, dg.MultiPartitionKey):
            key = self.l1.get_partition_key_from_str(key)
        dims = key.keys_by_dimension
        name = dims["instrument"]
        return self._by_key.get(name) or Instrument.from_key(name), Month.parse(dims["month"])

    def current_month(self, today: Month) -> Month | None:
        """``today``'s month, or the last month the partitions have if that is earlier."""
        last = self.months.get_last_partition_key()
        return None if last is None else min(today, Month.parse(last))
