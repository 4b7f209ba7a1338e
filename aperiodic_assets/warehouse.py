"""Warehouse: where validated partitions live, on a local folder or ``s3://bucket/prefix``.

One code path for both through fsspec/UPath (s3fs for S3): hive layout
``l1_imbalance/exchange=…/symbol=…/interval=…/timestamp=…/year=YYYY/month=MM/data.parquet``,
writes that are atomic (local: temporary file + rename in the same folder; S3: a single PUT, so
a key is either absent or whole) and idempotent (same table → same bytes → same hash), and a
quarantine for rejected inputs. Never imports dagster.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from upath import UPath

from .months import Month
from .schema import IDENTITY_COLUMNS, METRIC, METRIC_COLUMNS, TIME
from .universe import Instrument

DATA_FILE = "data.parquet"
QUARANTINE = "_quarantine"
PARTITION_COLUMNS: tuple[str, ...] = (
    "exchange",
    "symbol",
    "interval",
    "timestamp",
    "year",
    "month",
)


@dataclass(frozen=True)
class WrittenPartition:
    path: str
    bytes: int
    sha256: str
    rows: int


def encode_parquet(table: pa.Table) -> bytes:
    """Deterministic Parquet bytes: identity columns dropped, fixed column order and options."""
    keep = [TIME, *METRIC_COLUMNS]
    extra = [c for c in table.column_names if c not in keep and c not in IDENTITY_COLUMNS]
    table = table.select(keep + extra).replace_schema_metadata(None)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True, store_schema=False)
    return sink.getvalue()


class Warehouse:
    """The warehouse bucket or folder named by ``WAREHOUSE_URL``."""

    def __init__(self, url: str | os.PathLike[str], storage_options: Mapping | None = None):
        url = str(url)
        if "://" not in url:
            url = str(Path(url).expanduser().resolve())
        self.url = url.rstrip("/")
        self.root = UPath(self.url, **dict(storage_options or {}))
        self.fs = self.root.fs

    def __repr__(self) -> str:
        return f"Warehouse({self.url!r})"

    @property
    def is_local(self) -> bool:
        return self.root.protocol in ("", "file", "local")

    # ------------------------------------------------------------------------------------ paths
    @staticmethod
    def relative_dir(instrument: Instrument, month: Month) -> str:
        return (
            f"{METRIC}/exchange={instrument.exchange}/symbol={instrument.symbol}"
            f"/interval={instrument.interval}/timestamp={instrument.timestamp}"
            f"/year={month.year:04d}/month={month.month:02d}"
        )

    def _fs_path(self, relative: str) -> str:
        return (self.root / relative).path

    def uri(self, instrument: Instrument, month: Month) -> str:
        """Full URL of a partition's file, as users and other engines address it."""
        return f"{self.url}/{self.relative_dir(instrument, month)}/{DATA_FILE}"

    # ----------------------------------------------------------------------------------- writes
    def write(self, instrument: Instrument, month: Month, table: pa.Table) -> WrittenPartition:
        """Write one partition atomically; the previous version stays intact until the swap."""
        data = encode_parquet(table)
        target = self._fs_path(f"{self.relative_dir(instrument, month)}/{DATA_FILE}")
        self._put_atomic(target, data)
        return WrittenPartition(
            path=self.uri(instrument, month),
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            rows=table.num_rows,
        )

    def _put_atomic(self, target: str, data: bytes) -> None:
        parent = target.rsplit("/", 1)[0]
        if self.is_local:
            self.fs.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/.{DATA_FILE}.{uuid.uuid4().hex}.tmp"
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
            # One request: S3 makes a key visible only once the upload completed.
            self.fs.pipe_file(target, data)

    def quarantine(
        self,
        instrument: Instrument,
        month: Month,
        files: Iterable[tuple[str, bytes]],
        report: Mapping,
    ) -> str:
        """Keep rejected raw bytes plus the report, one folder per attempt; returns its URL."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        relative = f"{QUARANTINE}/{self.relative_dir(instrument, month)}/{stamp}"
        for name, data in files:
            self._put_atomic(self._fs_path(f"{relative}/{name}"), data)
        payload = json.dumps(report, indent=2, sort_keys=True, default=str).encode()
        self._put_atomic(self._fs_path(f"{relative}/report.json"), payload)
        return f"{self.url}/{relative}"

    # ------------------------------------------------------------------------------------ reads
    def exists(self, instrument: Instrument, month: Month) -> bool:
        return self.fs.exists(self._fs_path(f"{self.relative_dir(instrument, month)}/{DATA_FILE}"))

    def read_bytes(self, instrument: Instrument, month: Month) -> bytes:
        return self.fs.cat_file(
            self._fs_path(f"{self.relative_dir(instrument, month)}/{DATA_FILE}")
        )

    def dataset(self) -> ds.Dataset:
        """Every stored partition as one hive-partitioned pyarrow dataset."""
        base = self._fs_path(METRIC)
        files = [p for p in self.fs.find(base) if p.endswith(f"/{DATA_FILE}")]
        return ds.dataset(
            files,
            filesystem=self.fs,
            format="parquet",
            partitioning=ds.partitioning(_hive_schema(), flavor="hive"),
            partition_base_dir=base,
        )

    def read(
        self,
        instruments: Iterable[Instrument] | None = None,
        months: Iterable[Month] | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """One table of the selected partitions, with the hive partition columns."""
        dataset = self.dataset()
        expression = None
        if instruments is not None:
            instruments = list(instruments)
            expression = _any(
                (ds.field("exchange") == i.exchange)
                & (ds.field("symbol") == i.symbol)
                & (ds.field("interval") == i.interval)
                & (ds.field("timestamp") == i.timestamp)
                for i in instruments
            )
        if months is not None:
            month_expr = _any(
                (ds.field("year") == m.year) & (ds.field("month") == m.month) for m in months
            )
            expression = month_expr if expression is None else expression & month_expr
        return dataset.to_table(columns=columns, filter=expression)

    def partitions(self) -> list[tuple[Instrument, Month]]:
        """Every (instrument, month) that has a file, sorted."""
        found = []
        for path in self.fs.find(self._fs_path(METRIC)):
            if not path.endswith(f"/{DATA_FILE}"):
                continue
            parts = dict(
                seg.split("=", 1)
                for seg in path.split("/")
                if "=" in seg and not seg.startswith(".")
            )
            found.append(
                (
                    Instrument(
                        parts["exchange"], parts["symbol"], parts["interval"], parts["timestamp"]
                    ),
                    Month(int(parts["year"]), int(parts["month"])),
                )
            )
        return sorted(found, key=lambda p: (p[0].key, p[1]))


def _hive_schema() -> pa.Schema:
    return pa.schema(
        [
            ("exchange", pa.string()),
            ("symbol", pa.string()),
            ("interval", pa.string()),
            ("timestamp", pa.string()),
            ("year", pa.int32()),
            ("month", pa.int32()),
        ]
    )


def _any(expressions: Iterable[ds.Expression]) -> ds.Expression:
    result = None
    for e in expressions:
        result = e if result is None else result | e
    if result is None:
        return ds.scalar(False)
    return result
