"""Warehouse: where validated partitions live, on a local folder or ``s3://bucket/prefix``.

One code path for both through fsspec/UPath (s3fs for S3). Tables share one hive layout,
``<table>/exchange=…/symbol=…/interval=…/timestamp=…/year=YYYY/month=MM/data.parquet`` (the
instrument part is left out for tables partitioned by month only), so pyarrow, DuckDB, Spark and
Athena read each table as one dataset. Writes are atomic and idempotent (same table → same bytes
→ same hash); rejected inputs go to a quarantine; a withdrawn partition's file is moved aside,
never deleted. A table with a known schema (``KNOWN_SCHEMAS``: l1_imbalance) is strict: every
file holds exactly that schema, sorted by time, whatever the writer passed, and reads return it
even from files an older version wrote in another shape. Never imports dagster.

S3 is configured like any AWS client: endpoint, region and credentials come from the standard
AWS configuration (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``/``AWS_DEFAULT_REGION``, profiles), which botocore reads itself; ``storage_options``
(s3fs arguments such as ``endpoint_url``) override it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from upath import UPath

from .months import Month
from .schema import IDENTITY_COLUMNS, METRIC, METRIC_COLUMNS, SCHEMA, TIME
from .universe import Instrument

DATA_FILE = "data.parquet"
QUARANTINE = "_quarantine"
WITHDRAWN = "_withdrawn"
#: Small documents about a table that are not data (the instruments' lives), beside the tables.
STATE = "_state"
#: Hive partition columns of every table, in path order (month-only tables use the last two).
HIVE_SCHEMA = pa.schema(
    [
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("interval", pa.string()),
        ("timestamp", pa.string()),
        ("year", pa.int32()),
        ("month", pa.int32()),
    ]
)
PARTITION_COLUMNS: tuple[str, ...] = tuple(HIVE_SCHEMA.names)
#: Columns of tables whose files may all be absent, so an empty read still has them.
KNOWN_SCHEMAS: dict[str, pa.Schema] = {METRIC: SCHEMA}


@dataclass(frozen=True)
class WrittenPartition:
    path: str
    bytes: int
    sha256: str
    rows: int


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` as exactly ``schema``: its columns by name and in order, each cast exactly,
    nothing else, rows sorted by ``time`` when the schema has it, one chunk per column.

    The warehouse's last line of defence: the pipeline writes normalized tables, which this
    leaves as they are. A zone on a timestamp goes (its values are UTC instants already).
    Raises ValueError for a column that is missing or repeated, of a kind the schema does not
    hold (a time that is not a timestamp, a metric that is not a number), or not castable
    exactly (nanoseconds that are not whole microseconds, integers float64 cannot hold).
    """
    names = table.column_names
    arrays = []
    for target in schema:
        count = names.count(target.name)
        if count != 1:
            raise ValueError(
                f"column {target.name} is {'missing' if not count else f'there {count} times'};"
                f" the table must hold exactly {_describe(schema)}"
            )
        column = table.column(target.name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not _storable(column.type, target.type):
            raise ValueError(f"column {target.name} of type {column.type} is not {target.type}")
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp(column.type.unit))
        try:
            arrays.append(column.cast(target.type))
        except pa.ArrowInvalid as exc:
            raise ValueError(
                f"column {target.name} cannot be stored exactly as {target.type}: {exc}"
            ) from None
    out = pa.Table.from_arrays(arrays, schema=schema)
    if TIME in schema.names:
        out = out.take(pc.sort_indices(out[TIME]))
    return out.combine_chunks()


def _storable(source: pa.DataType, target: pa.DataType) -> bool:
    if pa.types.is_timestamp(target):
        return pa.types.is_timestamp(source)
    if pa.types.is_floating(target):
        return pa.types.is_floating(source) or pa.types.is_integer(source)
    return source == target


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}:{f.type}" for f in schema)


def _stamp() -> str:
    """Now, UTC, sortable and unique enough to name one attempt: 20261125T101112123456Z."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def encode_parquet(table: pa.Table, drop: Collection[str] = IDENTITY_COLUMNS) -> bytes:
    """Deterministic Parquet bytes: ``drop`` columns removed, time and metrics first, no schema
    metadata, fixed options; the same table always gives the same bytes."""
    names = table.column_names
    first = [c for c in (TIME, *METRIC_COLUMNS) if c in names]
    rest = [c for c in names if c not in first and c not in drop]
    table = table.select(first + rest).replace_schema_metadata(None)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True, store_schema=False)
    return sink.getvalue()


class Warehouse:
    """The warehouse bucket or folder named by ``WAREHOUSE_URL``.

    ``table_name`` arguments select the table (top-level folder); the default is
    ``l1_imbalance``, downstream assets keep their own tables beside it.
    """

    def __init__(self, url: str | os.PathLike[str], storage_options: Mapping | None = None):
        url = str(url)
        if "://" not in url:
            url = str(Path(url).expanduser().resolve())
        self.url = url.rstrip("/")
        options = dict(storage_options or {})
        if "://" in url and not url.startswith("file://"):
            # Other processes (run workers, other code servers) write too: a cached listing
            # would show stale sizes and miss their partitions.
            options.setdefault("use_listings_cache", False)
        self.root = UPath(self.url, **options)
        self.fs = self.root.fs

    def __repr__(self) -> str:
        return f"Warehouse({self.url!r})"

    @property
    def is_local(self) -> bool:
        return self.root.protocol in ("", "file", "local")

    # ------------------------------------------------------------------------------------ paths
    @staticmethod
    def relative_dir(instrument: Instrument | None, month: Month, table_name: str = METRIC) -> str:
        """A partition's folder inside the warehouse; ``instrument`` None for month-only tables."""
        instrument_dirs = (
            ""
            if instrument is None
            else f"/exchange={instrument.exchange}/symbol={instrument.symbol}"
            f"/interval={instrument.interval}/timestamp={instrument.timestamp}"
        )
        return f"{table_name}{instrument_dirs}/year={month.year:04d}/month={month.month:02d}"

    def _fs_path(self, relative: str) -> str:
        return (self.root / relative).path

    def _relative_file(
        self, instrument: Instrument | None, month: Month, table_name: str, name: str
    ) -> str:
        return f"{self.relative_dir(instrument, month, table_name)}/{name}"

    def uri(
        self,
        instrument: Instrument | None,
        month: Month,
        table_name: str = METRIC,
        name: str = DATA_FILE,
    ) -> str:
        """Full URL of a partition's file, as users and other engines address it."""
        return f"{self.url}/{self._relative_file(instrument, month, table_name, name)}"

    # ----------------------------------------------------------------------------------- writes
    def write(
        self,
        instrument: Instrument | None,
        month: Month,
        table: pa.Table,
        table_name: str = METRIC,
    ) -> WrittenPartition:
        """Write one partition atomically; the previous version stays intact until the swap.

        A table with a known schema is written as exactly that schema (``conform``; raises
        ValueError when ``table`` cannot be); in others, identity columns are dropped where the
        path carries the instrument.
        """
        if table_name in KNOWN_SCHEMAS:
            table = conform(table, KNOWN_SCHEMAS[table_name])
        data = encode_parquet(table, IDENTITY_COLUMNS if instrument is not None else ())
        path = self.write_file(instrument, month, DATA_FILE, data, table_name)
        return WrittenPartition(
            path=path,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            rows=table.num_rows,
        )

    def write_file(
        self,
        instrument: Instrument | None,
        month: Month,
        name: str,
        data: bytes,
        table_name: str = METRIC,
    ) -> str:
        """Store a file in a partition's folder atomically (e.g. a chart); returns its URL."""
        relative = self._relative_file(instrument, month, table_name, name)
        self._put_atomic(self._fs_path(relative), data)
        return f"{self.url}/{relative}"

    def _put_atomic(self, target: str, data: bytes) -> None:
        """Readers see the old file or the new one, never a part, even if the writer dies.

        Local: a hidden temporary file in the same folder, fsync'ed, then renamed over the
        target (a writer killed before the rename leaves only its ``.data.parquet.*.tmp``, which
        no reader picks up). S3: s3fs sends one PUT below 100 MiB and a multipart upload above;
        either way the key changes only when the request or the upload's completion succeeds, so
        an interrupted upload leaves the previous object (an aborted multipart upload leaves
        orphaned parts: a bucket lifecycle rule ``AbortIncompleteMultipartUpload`` removes them).
        """
        parent = target.rsplit("/", 1)[0]
        if self.is_local:
            self.fs.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/.{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            self.fs.pipe_file(target, data)

    def quarantine(
        self,
        instrument: Instrument,
        month: Month,
        files: Iterable[tuple[str, bytes]],
        report: Mapping,
    ) -> str:
        """Keep rejected raw bytes plus the report, one folder per attempt; returns its URL."""
        relative = f"{QUARANTINE}/{self.relative_dir(instrument, month)}/{_stamp()}"
        for name, data in files:
            self._put_atomic(self._fs_path(f"{relative}/{name}"), data)
        payload = json.dumps(report, indent=2, sort_keys=True, default=str).encode()
        self._put_atomic(self._fs_path(f"{relative}/report.json"), payload)
        return f"{self.url}/{relative}"

    def withdraw(
        self, instrument: Instrument | None, month: Month, table_name: str = METRIC
    ) -> str | None:
        """Move a partition's file out of the table; returns its new URL, None if there was none.

        It goes to ``{url}/_withdrawn/<the partition's folder>/<UTC time>-data.parquet``, where
        no reader of the table finds it. Nothing is deleted without a copy, and the file is
        never in neither place: locally one rename; on S3 a server-side copy, then the delete,
        only if the file is still the one copied (same ETag). A write landing in the moment
        between that comparison and the delete would be lost: do not withdraw a partition while
        it is being materialized.
        """
        relative = self._relative_file(instrument, month, table_name, DATA_FILE)
        moved = (
            f"{WITHDRAWN}/{self.relative_dir(instrument, month, table_name)}/{_stamp()}-{DATA_FILE}"
        )
        source, target = self._fs_path(relative), self._fs_path(moved)
        if self.is_local:
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            try:
                os.replace(source, target)
            except FileNotFoundError:
                return None
        else:
            try:
                etag = self.fs.info(source)["ETag"]
            except FileNotFoundError:
                return None
            self.fs.copy(source, target)
            if self.fs.info(source)["ETag"] != etag:
                raise RuntimeError(
                    f"{self.url}/{relative} was rewritten while it was withdrawn; it stays, and"
                    f" {self.url}/{moved} holds the version before"
                )
            self.fs.rm_file(source)
        return f"{self.url}/{moved}"

    def withdrawn(
        self, instrument: Instrument | None, month: Month, table_name: str = METRIC
    ) -> list[str]:
        """URLs of a partition's withdrawn files, oldest first."""
        relative = f"{WITHDRAWN}/{self.relative_dir(instrument, month, table_name)}"
        found = sorted(self.fs.find(self._fs_path(relative)))
        return [f"{self.url}/{relative}/{path.rsplit('/', 1)[1]}" for path in found]

    def write_state(self, name: str, data: bytes, table_name: str = METRIC) -> str:
        """Store a document about a table (``_state/<table>/<name>``) atomically; its URL."""
        relative = f"{STATE}/{table_name}/{name}"
        self._put_atomic(self._fs_path(relative), data)
        return f"{self.url}/{relative}"

    # ------------------------------------------------------------------------------------ reads
    def read_state(self, name: str, table_name: str = METRIC) -> bytes | None:
        """A document :meth:`write_state` stored, or None if there is none yet."""
        try:
            return self.fs.cat_file(self._fs_path(f"{STATE}/{table_name}/{name}"))
        except FileNotFoundError:
            return None

    def exists(
        self,
        instrument: Instrument | None,
        month: Month,
        table_name: str = METRIC,
        name: str = DATA_FILE,
    ) -> bool:
        return self.fs.exists(
            self._fs_path(self._relative_file(instrument, month, table_name, name))
        )

    def read_bytes(
        self,
        instrument: Instrument | None,
        month: Month,
        table_name: str = METRIC,
        name: str = DATA_FILE,
    ) -> bytes:
        return self.fs.cat_file(
            self._fs_path(self._relative_file(instrument, month, table_name, name))
        )

    def _stored(self, table_name: str) -> list[tuple[str, Instrument | None, Month]]:
        """(filesystem path, instrument, month) of every data file of a table, sorted by path."""
        base = self._fs_path(table_name)
        found = []
        for path in sorted(self.fs.find(base)):
            segments = path[len(base) + 1 :].split("/")
            if segments[-1] != DATA_FILE or not all("=" in s for s in segments[:-1]):
                continue
            parts = dict(seg.split("=", 1) for seg in segments[:-1])
            instrument = (
                Instrument(
                    parts["exchange"], parts["symbol"], parts["interval"], parts["timestamp"]
                )
                if "exchange" in parts
                else None
            )
            found.append((path, instrument, Month(int(parts["year"]), int(parts["month"]))))
        return found

    def dataset(
        self,
        instruments: Iterable[Instrument] | None = None,
        months: Iterable[Month] | None = None,
        table_name: str = METRIC,
    ) -> ds.Dataset:
        """The selected partitions of a table (default: all) as one hive-partitioned dataset.

        Partitions are chosen from one listing of the table, so only their files are opened.
        """
        wanted_instruments = None if instruments is None else set(instruments)
        wanted_months = None if months is None else set(months)
        stored = self._stored(table_name)
        files = [
            path
            for path, instrument, month in stored
            if (wanted_instruments is None or instrument in wanted_instruments)
            and (wanted_months is None or month in wanted_months)
        ]
        by_month_only = bool(stored) and stored[0][1] is None
        hive = pa.schema(list(HIVE_SCHEMA)[4:]) if by_month_only else HIVE_SCHEMA
        known = KNOWN_SCHEMAS.get(table_name)
        # A known table reads as its schema, also from files an older version wrote in another
        # shape (a time zone, another time unit, float32); other tables as their files say.
        schema = None if known is None else pa.unify_schemas([known, hive])
        if not files:
            return ds.dataset([], schema=hive if schema is None else schema, format="parquet")
        return ds.dataset(
            files,
            schema=schema,
            filesystem=self.fs,
            format="parquet",
            partitioning=ds.partitioning(hive, flavor="hive"),
            partition_base_dir=self._fs_path(table_name),
        )

    def read(
        self,
        instruments: Iterable[Instrument] | None = None,
        months: Iterable[Month] | None = None,
        columns: list[str] | None = None,
        table_name: str = METRIC,
    ) -> pa.Table:
        """One table of the selected partitions; the hive partition columns are always kept."""
        dataset = self.dataset(instruments, months, table_name)
        if columns is not None:
            keys = [c for c in PARTITION_COLUMNS if c in dataset.schema.names]
            columns = [c for c in columns if c not in keys] + keys
        return dataset.to_table(columns=columns)

    def partitions(self, table_name: str = METRIC) -> list[tuple[Instrument, Month]]:
        """Every (instrument, month) of an instrument × month table that has a file, sorted."""
        found = [(i, m) for _, i, m in self._stored(table_name) if i is not None]
        return sorted(found, key=lambda p: (p[0].key, p[1]))
