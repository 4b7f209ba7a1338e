"""Assemble one month from its source files: a monthly file, daily files, or both.

Aperiodic serves a month as one file, as daily files, or (in a transition month) as a monthly
file for the first days plus daily files for the rest. This module concatenates them in
chronological order and rejects files that overlap or disagree on the schema, naming the files;
row-level checks (duplicates, grid, identities) are validation's job. The files come normalized
(``normalize``), so a schema difference here is a real one: a metric column missing from one
file, or of a type no normalization makes a number. Never imports dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .schema import TIME

_UNITS = ("s", "ms", "us", "ns")


class AssemblyError(ValueError):
    """The files of a month cannot be combined into one table."""


@dataclass(frozen=True)
class Part:
    """One source file's table, labelled ``YYYY-MM`` (monthly) or ``YYYY-MM-DD`` (daily)."""

    label: str
    table: pa.Table


def assemble(parts: Sequence[Part]) -> pa.Table:
    """Concatenate in the given (chronological) order; overlapping files are an error."""
    if not parts:
        raise AssemblyError("no source files to assemble")
    parts = _finest_time_unit(parts)
    first = parts[0]
    for part in parts[1:]:
        if part.table.schema != first.table.schema:
            own, other = _difference(part.table.schema, first.table.schema)
            raise AssemblyError(
                f"file {part.label} has {own} where file {first.label} has {other}; the files of"
                " one month must share one schema"
            )
    previous_end, previous_label = None, None
    for part in parts:
        if TIME not in part.table.column_names or part.table.num_rows == 0:
            continue
        start, end = (v.as_py() for v in pc.min_max(part.table[TIME]).values())
        if start is None:
            continue
        if previous_end is not None and start <= previous_end:
            raise AssemblyError(
                f"file {part.label} starts at {start} but file {previous_label} runs until"
                f" {previous_end}: the files overlap"
            )
        previous_end, previous_label = end, part.label
    return pa.concat_tables([p.table for p in parts])


def _finest_time_unit(parts: Sequence[Part]) -> Sequence[Part]:
    """Parts whose ``time`` columns differ only in unit, all in the finest (an exact cast).

    Normalization leaves a file's ``time`` in ns when its values are not whole microseconds
    (they are off the grid, for validation to reject): the month still assembles.
    """
    found = [_time_type(p.table) for p in parts]
    kinds = [k for k in found if k is not None]
    if len(kinds) < len(found) or len(set(kinds)) < 2 or len({k.tz for k in kinds}) > 1:
        return parts
    finest = max(kinds, key=lambda k: _UNITS.index(k.unit))
    promoted = []
    for part, kind in zip(parts, kinds, strict=True):
        table = part.table
        if kind != finest:
            i = table.schema.get_field_index(TIME)
            try:
                table = table.set_column(i, TIME, table.column(i).cast(finest))
            except pa.ArrowInvalid as exc:
                message = f"file {part.label}: time does not fit {finest}: {exc}"
                raise AssemblyError(message) from None
        promoted.append(Part(part.label, table))
    return promoted


def _time_type(table: pa.Table) -> pa.TimestampType | None:
    i = table.schema.get_field_index(TIME)  # -1 when missing or repeated
    kind = table.schema.field(i).type if i >= 0 else None
    return kind if kind is not None and pa.types.is_timestamp(kind) else None


def _difference(schema: pa.Schema, other: pa.Schema) -> tuple[str, str]:
    """The columns each schema has and the other lacks or types differently, in words; every
    column of both when they differ only in order or repetition."""

    def only_in(a: pa.Schema, b: pa.Schema) -> list[pa.Field]:
        return [f for f in a if (f.name, f.type) not in {(g.name, g.type) for g in b}]

    mine, theirs = only_in(schema, other), only_in(other, schema)
    if not mine and not theirs:
        mine, theirs = list(schema), list(other)
    return _words(mine), _words(theirs)


def _words(fields: list[pa.Field]) -> str:
    return ", ".join(f"{f.name}:{f.type}" for f in fields) or "no such column"
