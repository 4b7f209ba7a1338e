"""``load_l1_imbalance``: the warehouse as one pandas DataFrame, for downstream users.

Reads the validated Parquet files directly (no Dagster, no API call), so a notebook, a script or
another team's asset gets the same rows our assets stored. Never imports dagster.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import pandas as pd

from .months import Month, month_range
from .settings import check_warehouse_url
from .universe import Instrument
from .warehouse import Warehouse

InstrumentLike = Instrument | str


def load_l1_imbalance(
    instruments: InstrumentLike | Iterable[InstrumentLike],
    start_month: str | Month,
    end_month: str | Month | None = None,
    columns: list[str] | None = None,
    warehouse_url: str | None = None,
    storage_options: Mapping | None = None,
) -> pd.DataFrame:
    """Validated l1_imbalance rows of ``instruments`` from ``start_month`` to ``end_month``.

    ``instruments``: Instrument objects or keys such as
    ``"BTC.1h.binance-futures.perpetual-BTC-USDT:USDT.exchange"``, or a single one. Months are
    ``"YYYY-MM"`` or :class:`Month`, inclusive; ``end_month`` defaults to ``start_month``.
    ``columns`` selects metric columns (``time`` is one); the partition columns (exchange,
    symbol, interval, timestamp, year, month) are always included. ``warehouse_url`` defaults to
    ``WAREHOUSE_URL``, else ``./warehouse``; S3 settings come from the standard AWS
    configuration or ``storage_options`` (s3fs arguments). Partitions that were never
    materialized, or were withdrawn, are simply absent: an empty selection gives an empty frame
    with all columns. ``time`` is always naive UTC (``datetime64[us]``) and the metrics float64,
    whatever shape the source files had.
    """
    if isinstance(instruments, Instrument | str):
        instruments = [instruments]
    selected = [i if isinstance(i, Instrument) else Instrument.from_key(i) for i in instruments]
    first = start_month if isinstance(start_month, Month) else Month.parse(start_month)
    last = first if end_month is None else end_month
    last = last if isinstance(last, Month) else Month.parse(last)
    if last < first:
        raise ValueError(f"end_month {last} is before start_month {first}")
    url = warehouse_url or check_warehouse_url(os.environ.get("WAREHOUSE_URL") or "warehouse")
    warehouse = Warehouse(url, storage_options=storage_options)
    return warehouse.read(selected, month_range(first, last), columns).to_pandas()
