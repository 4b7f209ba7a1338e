"""Assemble one month from its source files: a monthly file, daily files, or both.

Aperiodic serves a month as one file, as daily files, or (in a transition month) as a monthly
file for the first days plus daily files for the rest. This module concatenates them in
chronological order and rejects files that overlap or disagree on the schema, naming the files;
row-level checks (duplicates, grid, identities) are validation's job. Never imports dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .schema import TIME


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
    first = parts[0]
    for part in parts[1:]:
        if part.table.schema != first.table.schema:
            raise AssemblyError(
                f"file {part.label} has columns {_describe(part.table.schema)} but file"
                f" {first.label} has {_describe(first.table.schema)}; the files of one month must"
                " share one schema"
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


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}:{f.type}" for f in schema)
