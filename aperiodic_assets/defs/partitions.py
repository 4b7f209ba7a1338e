"""Partitions: instrument (from the deployment's universe) × month.

The month dimension ends with the current month (``end_offset=1``): it materializes from the
daily files published so far, so the warehouse is fresh to yesterday. A universe of explicit
instruments is a static dimension; one with ``discover`` rules is a dynamic one, which the
universe sensor keeps current (instruments join at run time, and none ever leaves: a closed
instrument keeps its history).
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

    def __init__(self, universe: Universe, dynamic_name: str = "aperiodic_instruments") -> None:
        self.universe = universe
        #: The instance-wide name of the dynamic instrument dimension (universes with rules).
        self.dynamic_name = dynamic_name
        self._by_key = {i.key: i for i in universe.instruments}

    @cached_property
    def instruments(self) -> dg.StaticPartitionsDefinition | dg.DynamicPartitionsDefinition:
        if self.universe.discovers:
            return dg.DynamicPartitionsDefinition(name=self.dynamic_name)
        return dg.StaticPartitionsDefinition(self.universe.keys)

    def instrument_list(self, instance: dg.DagsterInstance) -> list[Instrument]:
        """Every instrument of the dimension now: the explicit ones, then those the universe
        sensor added (in the order it added them)."""
        if not self.universe.discovers:
            return list(self.universe.instruments)
        found = instance.get_dynamic_partitions(self.dynamic_name)
        return list(self.universe.instruments) + [
            Instrument.from_key(k) for k in found if k not in self._by_key
        ]

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
