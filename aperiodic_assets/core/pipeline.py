"""One partition end to end, without Dagster: list, download, assemble, validate, write.

The Dagster asset is a thin wrapper over :func:`run_partition`; benchmarks and scripts call it
directly. Nothing reaches the warehouse unless the month passed every hard check; otherwise the
raw bytes and the report go to quarantine. Never imports dagster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TypeVar

import pyarrow as pa

from . import clock
from .api import AperiodicClient, FileInfo, SourceFile, files_identity
from .assemble import AssemblyError, Part, assemble
from .months import Month
from .normalize import Normalization, NormalizationError, normalize
from .universe import Instrument
from .validation import ValidationConfig, ValidationReport, validate
from .warehouse import Warehouse, WrittenPartition

#: Days after a month's end during which its last daily files count as not yet published.
CLOSE_GRACE_DAYS = 3
_K = TypeVar("_K")
_R = TypeVar("_R")


class PartitionRejected(Exception):
    """The month's data failed validation; nothing was written, the input is in quarantine.

    ``validation`` is the report when the month got as far as validation (not when its files
    could not be assembled), so the caller can record each check's result. ``source_stamps``
    identify the rejected files (label -> token), so automation can wait until one changes.
    """

    def __init__(
        self,
        message: str,
        quarantine_url: str,
        report: dict,
        validation: ValidationReport | None = None,
        source_stamps: dict[str, str] | None = None,
    ) -> None:
        self.quarantine_url = quarantine_url
        self.report = report
        self.validation = validation
        self.source_stamps = source_stamps or {}
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
    #: The span the data was expected to cover, [start, end), naive UTC.
    window: tuple[datetime, datetime] | None = None
    #: What it took to bring each source file into the canonical form.
    normalized: Normalization | None = None

    @property
    def published(self) -> bool:
        return bool(self.sources)

    @property
    def through(self) -> date | None:
        """The last day the partition holds: yesterday for the current month."""
        return None if self.window is None else (self.window[1] - timedelta(days=1)).date()

    @property
    def source_stamps(self) -> dict[str, str]:
        """File label -> identity token; the sensor compares its probes with this."""
        return stamps(self.sources)

    @property
    def source_identity(self) -> str:
        """One digest of the files this partition was built from (see api.files_identity)."""
        return files_identity(self.source_stamps)


def run_partition(
    client: AperiodicClient,
    warehouse: Warehouse,
    instrument: Instrument,
    month: Month,
    config: ValidationConfig | None = None,
    *,
    today: date | None = None,
) -> PartitionOutcome:
    """Fetch, check and store one (instrument, month); raises PartitionRejected on bad data.

    Each file is normalized (``normalize``) before the month is assembled: one that contradicts
    the partition is rejected as files that cannot be assembled are; validation is told the
    precision the files stored their metrics in and the columns they dropped. ``today``
    (default: the package clock's date, see clock.py) decides whether the month is over; until
    it is, the month is expected to cover only the days published so far.
    """
    sources = client.fetch_month(instrument, month)
    if not sources:
        return PartitionOutcome(instrument, month, sources)
    window = expected_window(
        month,
        [s.info for s in sources],
        today or clock.today(),
        instrument.listed,
        closed_since=instrument.closed_since,
    )
    try:
        checked = check_files(
            [(s.info.label, s.table) for s in sources], instrument, month, window, config
        )
    except (NormalizationError, AssemblyError) as exc:
        _reject(warehouse, instrument, month, sources, f"{instrument.key} {month}: {exc}.", None)
    report = checked.report
    if not report.ok:
        message = report.first_error_message() or report.summary()
        _reject(warehouse, instrument, month, sources, message, report)
    written = warehouse.write(instrument, month, checked.table)
    return PartitionOutcome(
        instrument, month, sources, written, checked.table, report, window, checked.normalized
    )


@dataclass(frozen=True)
class Checked:
    """Source files normalized, assembled into one table and validated, nothing written."""

    table: pa.Table
    normalized: Normalization
    report: ValidationReport


def check_files(
    tables: Sequence[tuple[str, pa.Table]],
    instrument: Instrument,
    month: Month,
    window: tuple[datetime, datetime],
    config: ValidationConfig | None = None,
) -> Checked:
    """What a run decides about (label, table) source files before writing: each normalized,
    then assembled and validated against ``window``, at the precision the files stored and
    naming the columns they dropped. Raises NormalizationError or AssemblyError for files that
    contradict the partition or each other; a failed rule is in the report, not raised."""
    files = [normalize(table, instrument, label) for label, table in tables]
    table = assemble([Part(f.changes.label, f.table) for f in files])
    normalized = Normalization(tuple(f.changes for f in files))
    report = validate(
        table,
        instrument,
        month,
        config,
        window=window,
        precision=normalized.precision,
        dropped=normalized.extra_columns,
    )
    return Checked(table, normalized, report)


def stamps(sources: Sequence[SourceFile]) -> dict[str, str]:
    """File label -> identity token (ETag and wire size) of each source file."""
    return {s.info.label: s.token for s in sources}


def expected_window(
    month: Month,
    files: Sequence[FileInfo],
    today: date,
    listed: date | None = None,
    close_grace_days: int = CLOSE_GRACE_DAYS,
    closed_since: date | None = None,
) -> tuple[datetime, datetime]:
    """The span [start, end) a month's data must cover, naive UTC.

    It starts at the month's first day, or the instrument's listing day if later. A month still
    in progress ends where its published files end: after the newest daily file's day (rows on
    or after the first unpublished day are an error, missing intervals before it are gaps), or
    at ``today`` when only a monthly file is out. A month that is over ends there too for
    ``close_grace_days`` after its end, since its last daily files come out after midnight (and
    a run may list before midnight and validate after): days not published yet are not gaps.
    After the grace period the month must reach its end, and missing days are a warning.
    The month of an instrument closed on ``closed_since`` (its files stopped: it left the symbol
    list or published nothing for days) is expected whole at once: no file will come, and the
    days from ``closed_since`` on are a completeness warning whose gap starts there.
    """
    start = month.start if listed is None else max(month.start, _midnight(listed))
    days = [f.day for f in files if f.day]
    closed = month.end <= _midnight(today)
    stopped = closed_since is not None and _midnight(closed_since) < month.end
    grace_over = month.end + timedelta(days=close_grace_days) <= _midnight(today)
    if stopped or (closed and (not days or grace_over)):
        return start, month.end
    end = _midnight(month.first_day.replace(day=max(days)) + timedelta(days=1)) if days else None
    end = min(month.end, end or _midnight(today))
    return min(start, end), end


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _reject(
    warehouse: Warehouse,
    instrument: Instrument,
    month: Month,
    sources: list[SourceFile],
    message: str,
    validation: ValidationReport | None,
) -> None:
    report = {
        "instrument": instrument.key,
        "month": month.key,
        "error": message,
        **(validation.to_dict() if validation else {}),
    }
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
        validation,
        stamps(sources),
    )


def completed(
    keys: Sequence[_K], work: Callable[[_K], _R], concurrency: int
) -> Iterator[tuple[_K, _R | BaseException]]:
    """``(key, result or exception)`` in completion order, ``concurrency`` keys at a time (the
    doctor's probes; the benchmarks' bare loop, at a ranged run's concurrency)."""
    for batch in completed_batches(keys, work, concurrency):
        yield from batch


def _outcome(future: Future[_R]) -> _R | BaseException:
    error = future.exception()
    return error if error is not None else future.result()


def completed_batches(
    keys: Sequence[_K], work: Callable[[_K], _R], concurrency: int
) -> Iterator[list[tuple[_K, _R | BaseException]]]:
    """Whatever finished since the last batch, as ``(key, result or exception)``, as soon as
    anything did; ``concurrency`` keys at a time.

    How a ranged run works through its partitions: it reports a batch with one query to the
    instance where one per partition would cost a round trip each.
    """
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="l1_partition")
    try:
        futures = {pool.submit(work, key): (n, key) for n, key in enumerate(keys)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            # In key order, so a batch reads the same whatever order its threads ended in.
            yield [(futures[f][1], _outcome(f)) for f in sorted(done, key=futures.__getitem__)]
    finally:
        # A failed or terminated run must not wait for partitions that have not started.
        pool.shutdown(wait=True, cancel_futures=True)
