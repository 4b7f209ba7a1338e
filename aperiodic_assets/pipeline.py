"""One partition end to end, without Dagster: list, download, assemble, validate, write.

The Dagster asset is a thin wrapper over :func:`run_partition`; benchmarks and scripts call it
directly. Nothing reaches the warehouse unless the month passed every hard check; otherwise the
raw bytes and the report go to quarantine. Never imports dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from .api import AperiodicClient, SourceFile, files_identity
from .assemble import AssemblyError, Part, assemble
from .months import Month
from .universe import Instrument
from .validation import ValidationConfig, ValidationReport, validate
from .warehouse import Warehouse, WrittenPartition


class PartitionRejected(Exception):
    """The month's data failed validation; nothing was written, the input is in quarantine."""

    def __init__(self, message: str, quarantine_url: str, report: dict) -> None:
        self.quarantine_url = quarantine_url
        self.report = report
        super().__init__(f"{message} Raw files and report: {quarantine_url}")


@dataclass(frozen=True)
class PartitionOutcome:
    """What happened to one partition; ``written`` is None when no file was published."""

    instrument: Instrument
    month: Month
    sources: list[SourceFile] = field(repr=False)
    written: WrittenPartition | None = None
    table: pa.Table | None = field(default=None, repr=False)
    report: ValidationReport | None = None

    @property
    def published(self) -> bool:
        return bool(self.sources)

    @property
    def source_identity(self) -> str:
        """Identity of the files this partition was built from (see api.files_identity)."""
        return files_identity((s.info.label, s.etag or "", len(s.data)) for s in self.sources)


def run_partition(
    client: AperiodicClient,
    warehouse: Warehouse,
    instrument: Instrument,
    month: Month,
    config: ValidationConfig | None = None,
) -> PartitionOutcome:
    """Fetch, check and store one (instrument, month); raises PartitionRejected on bad data."""
    sources = client.fetch_month(instrument, month)
    if not sources:
        return PartitionOutcome(instrument, month, sources)
    try:
        table = assemble([Part(s.info.label, s.table) for s in sources])
    except AssemblyError as exc:
        _reject(warehouse, instrument, month, sources, f"{instrument.key} {month}: {exc}.", {})
    report = validate(table, instrument, month, config)
    if not report.ok:
        _reject(
            warehouse,
            instrument,
            month,
            sources,
            report.first_error_message() or report.summary(),
            report.to_dict(),
        )
    written = warehouse.write(instrument, month, table)
    return PartitionOutcome(instrument, month, sources, written, table, report)


def _reject(
    warehouse: Warehouse,
    instrument: Instrument,
    month: Month,
    sources: list[SourceFile],
    message: str,
    report: dict,
) -> None:
    report = {"instrument": instrument.key, "month": month.key, "error": message, **report}
    report["source_files"] = [
        {"label": s.info.label, "location": s.info.location, "sha256": s.sha256} for s in sources
    ]
    url = warehouse.quarantine(
        instrument,
        month,
        [(f"{s.info.label}.parquet", s.data) for s in sources],
        report,
    )
    raise PartitionRejected(
        message + " Nothing was written to the warehouse; fix or wait for a corrected source file"
        " and re-run this partition.",
        url,
        report,
    )
