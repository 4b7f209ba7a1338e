"""Assembling a month from monthly and daily files."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from aperiodic_assets.core.assemble import AssemblyError, Part, assemble
from aperiodic_assets.sandbox.data import generate


def days(start: date, end: date) -> pa.Table:
    return generate("binance-futures", "perpetual-BTC-USDT:USDT", "1h", "exchange", start, end)


def test_monthly_head_plus_daily_files_make_the_month():
    parts = [Part("2026-08", days(date(2026, 8, 1), date(2026, 8, 11)))]
    for d in range(11, 32):
        end = date(2026, 8, d + 1) if d < 31 else date(2026, 9, 1)
        parts.append(Part(f"2026-08-{d:02d}", days(date(2026, 8, d), end)))
    table = assemble(parts)
    assert table.equals(days(date(2026, 8, 1), date(2026, 9, 1)))


def test_overlapping_files_are_rejected_naming_both():
    parts = [
        Part("2026-08", days(date(2026, 8, 1), date(2026, 8, 12))),
        Part("2026-08-11", days(date(2026, 8, 11), date(2026, 8, 12))),
    ]
    with pytest.raises(
        AssemblyError, match="2026-08-11 starts at 2026-08-11 00:00:00 but file 2026-08"
    ):
        assemble(parts)


def test_files_with_different_schemas_are_rejected_naming_the_differing_columns():
    good = days(date(2026, 8, 1), date(2026, 8, 2))
    drifted = days(date(2026, 8, 2), date(2026, 8, 3))
    drifted = drifted.set_column(1, "imbalance", drifted["imbalance"].cast(pa.string()))
    with pytest.raises(AssemblyError) as error:
        assemble([Part("2026-08-01", good), Part("2026-08-02", drifted)])
    assert str(error.value) == (
        "file 2026-08-02 has imbalance:string where file 2026-08-01 has imbalance:double;"
        " the files of one month must share one schema"
    )


def test_files_whose_times_differ_only_in_unit_assemble_in_the_finest():
    first = days(date(2026, 8, 1), date(2026, 8, 2))
    second = days(date(2026, 8, 2), date(2026, 8, 3))
    second = second.set_column(0, "time", second["time"].cast(pa.timestamp("ns")))
    table = assemble([Part("2026-08-01", first), Part("2026-08-02", second)])
    assert table.schema.field("time").type == pa.timestamp("ns")
    assert (
        table["time"]
        .cast(pa.timestamp("us"))
        .equals(days(date(2026, 8, 1), date(2026, 8, 3))["time"])
    )


def test_nothing_to_assemble_is_an_error():
    with pytest.raises(AssemblyError):
        assemble([])
