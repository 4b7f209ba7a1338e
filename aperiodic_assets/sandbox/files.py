"""The S3-like file host: presigned downloads of rendered Parquet files.

Owns the download endpoint (signature check, object lookup, download faults), rendering a file's
bytes (with its corruption, shapes and stored encoding) and keeping its identity (ETag, size,
Last-Modified, edge bytes), S3's answers to ``Range`` and ``If-None-Match``, and redirects to
freshly signed URLs. Any method but the signed GET is refused with 403, as S3/R2 do. Never
imports dagster.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from email.utils import formatdate
from typing import NamedTuple

from . import faults as fx
from .catalog import FileId, FileSpan, parse_object_path
from .corruption import apply_corruption
from .data import encode_parquet, generate
from .messages import Reply, Request, apply_wire_fault, fault_reply, s3_error
from .shapes import apply_shape
from .state import SandboxState

OCTETS = "application/octet-stream"
#: Query parameter of a redirect hop's URL: how many more redirects follow it. Outside the
#: signature (the URL stays a valid presigned GET); a hop never takes the ``redirect`` fault again,
#: so a fault injected forever does not loop.
HOPS_PARAM = "x-sandbox-hops"
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
#: Bytes kept from each end of a file with its identity: Parquet's magic and footer length, enough
#: to answer a one-byte probe (``bytes=0-0``) or a footer read (``bytes=-8``) without rendering.
EDGE_BYTES = 8
#: Identities kept (about 0.5 KB each with their keys, so at most ~32 MB): enough for a sensor that
#: probes every file of a large universe each tick.
IDENTITY_CACHE_SIZE = 65536


class FileVersion(NamedTuple):
    """Everything a file's bytes depend on: the key both caches below share."""

    exchange: str
    symbol: str
    interval: str
    timestamp: str
    first: date
    end: date
    revision: int
    corruption: str | None
    #: Shape modes applied after the corruption, in order.
    shapes: tuple[str, ...] = ()
    #: The file's label (``2026-07`` or ``2026-08-05``), which seeds its shapes.
    label: str = ""
    #: ``gzip``: stored with ``Content-Encoding: gzip``, so its bytes, ETag and size are encoded.
    encoding: str | None = None


@dataclass(frozen=True)
class RenderedFile:
    body: bytes
    etag: str
    last_modified: str


def _etag(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


@functools.lru_cache(maxsize=32)
def render_file(version: FileVersion) -> RenderedFile:
    """Stored bytes of one file, cached by everything they depend on (a :class:`FileVersion`).

    ``Last-Modified`` is derived from the content's identity (not the wall clock) so it is as
    stable as the ETag: shortly after the covered period ends, an hour later per revision.
    """
    exchange, symbol, interval, timestamp, first, end, revision = version[:7]
    table = generate(exchange, symbol, interval, timestamp, first, end, revision)
    if version.corruption is not None:
        table = apply_corruption(table, version.corruption, interval)
    for shape in version.shapes:
        table = apply_shape(
            table,
            shape,
            exchange=exchange,
            symbol=symbol,
            interval=interval,
            timestamp=timestamp,
            label=version.label,
        )
    body = encode_parquet(table)
    if version.encoding == "gzip":
        body = fx.gzip_body(body)
    published = datetime.combine(end, dtime(0, 15), tzinfo=UTC).timestamp() + 3600 * revision
    return RenderedFile(body, _etag(body), formatdate(published, usegmt=True))


@dataclass(frozen=True)
class FileIdentity:
    """A rendered file without its body: what conditional and edge-ranged GETs need."""

    etag: str
    size: int
    last_modified: str
    head: bytes
    tail: bytes

    def edge(self, first: int, last: int) -> bytes | None:
        """Bytes ``first..last`` (inclusive) if they lie within a kept edge, else ``None``."""
        if last < len(self.head):
            return self.head[first : last + 1]
        tail_start = self.size - len(self.tail)
        if first >= tail_start:
            return self.tail[first - tail_start : last - tail_start + 1]
        return None


def stored_object(state: SandboxState, path: str) -> tuple[FileId, FileSpan] | None:
    """The object a ``/files/...`` path names and the days it holds; None when no such object
    exists (not a possible path, not listed then, not published yet)."""
    fid = parse_object_path(path)
    tenure = state.tenure(fid.exchange, fid.symbol) if fid else None
    if fid is None or tenure is None:
        return None
    span = state.calendar().find(tenure, fid.year, fid.month, fid.day)
    return None if span is None else (fid, span)


def stored_version(
    state: SandboxState, fid: FileId, span: FileSpan, encoding: str | None
) -> FileVersion:
    """What the stored object is now (its revision, corruption and shapes), which its bytes
    and identity follow."""
    corruption, shapes = state.treatment(fid.exchange, fid.symbol, fid.month_key, span.day)
    return FileVersion(
        fid.exchange,
        fid.symbol,
        fid.interval,
        fid.timestamp,
        span.first,
        span.end,
        state.revision(fid.exchange, fid.symbol, fid.month_key),
        corruption,
        shapes,
        span.label,
        encoding,
    )


@functools.lru_cache(maxsize=IDENTITY_CACHE_SIZE)
def file_identity(version: FileVersion) -> FileIdentity:
    """:func:`render_file`'s identity, kept far longer than its bytes.

    A sensor probes thousands of files with one-byte GETs every tick; rendering each again
    (``render_file`` keeps only a few bodies) would make every probe cost a file generation.
    """
    rendered = render_file(version)
    return _identity_of(rendered.body, rendered.etag, rendered.last_modified)


def _identity_of(body: bytes, etag: str, last_modified: str) -> FileIdentity:
    return FileIdentity(etag, len(body), last_modified, body[:EDGE_BYTES], body[-EDGE_BYTES:])


def download(state: SandboxState, request: Request) -> Reply:
    """Answer a request for ``/files/...``: the object, a refusal, or an injected fault."""
    path = request.path
    refusal = state.signer.verify(request.method, path, request.query)
    if refusal is not None:
        return s3_error(403, refusal.code, refusal.message, path)
    found = stored_object(state, path)
    if found is None:
        return s3_error(404, "NoSuchKey", "The specified key does not exist.", path)
    fid, span = found
    hops = request.query.get(HOPS_PARAM)
    if hops is not None and hops.isdecimal() and int(hops) > 0:
        return _redirect(state, path, f"http://{request.host}", int(hops) - 1)
    instrument_month = (fid.exchange, fid.symbol, fid.month_key)
    hopped = ("redirect",) if hops is not None else ()
    fault = state.faults.take(fx.DOWNLOAD, *instrument_month, exclude=fx.STORED + hopped)
    if fault is not None and fault.name == "redirect":
        base = fault.params["base"] or f"http://{request.host}"
        return _redirect(state, path, str(base).rstrip("/"), int(fault.params["hops"]) - 1)
    early = fault_reply(fault)
    if early is not None:
        return early
    gzipped = (fault is None or fault.name in fx.STACKS_WITH_STORED) and (
        state.faults.take(fx.DOWNLOAD, *instrument_month, only=fx.STORED) is not None
    )
    version = stored_version(state, fid, span, "gzip" if gzipped else None)
    identity = file_identity(version)
    headers = {"Accept-Ranges": "bytes", "Last-Modified": identity.last_modified}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    if fault is not None and fault.name == "oversize":
        size = int(fault.params["bytes"])
        headers["ETag"] = f'"{hashlib.md5(f"oversize-{size}".encode()).hexdigest()}-1"'
        return Reply(
            200,
            content_type=OCTETS,
            headers=headers,
            chunks=fx.oversize_chunks(size),
            length=size,
            fault=fault.name,
        )
    corrupted: bytes | None = None
    if fault is not None and fault.name == "corrupt_parquet":
        corrupted = fx.corrupt_body(render_file(version).body)
        identity = _identity_of(corrupted, _etag(corrupted), identity.last_modified)

    def body() -> bytes:
        return corrupted if corrupted is not None else render_file(version).body

    headers["ETag"] = identity.etag
    none_match = (request.headers.get("If-None-Match") or "").split(",")
    if identity.etag in [tag.strip() for tag in none_match]:
        reply = Reply(304, content_type=OCTETS, headers=headers)
    else:
        reply = _object_reply(identity, body, request.headers.get("Range"), headers, path)
    apply_wire_fault(reply, fault)
    if gzipped and reply.fault is None:
        reply.fault = "gzip"
    return reply


def _redirect(state: SandboxState, path: str, base: str, hops_after: int) -> Reply:
    """302 to a freshly signed URL of ``path`` on ``base``; ``hops_after`` more redirects follow."""
    query = f"{state.signer.sign(path, state.config.url_ttl_s)}&{HOPS_PARAM}={hops_after}"
    reply = Reply(302, content_type=OCTETS, headers={"Location": f"{base}{path}?{query}"})
    reply.fault = "redirect"
    return reply


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` asked for by a single ``Range: bytes=a-b`` over ``size`` bytes.

    ``None`` means the whole object (no Range, several ranges or a malformed one, as S3 does);
    ``first >= size`` means the range is not satisfiable.
    """
    match = _RANGE_RE.fullmatch(header.strip()) if header else None
    if match is None or not (match[1] or match[2]):
        return None
    if match[1]:
        first = int(match[1])
        if match[2] and int(match[2]) < first:
            return None
        return first, min(int(match[2]), size - 1) if match[2] else size - 1
    suffix = int(match[2])
    return (max(size - suffix, 0) if suffix else size), size - 1


def _object_reply(
    identity: FileIdentity,
    body: Callable[[], bytes],
    range_header: str | None,
    headers: dict[str, str],
    resource: str,
) -> Reply:
    """200 with the whole body, or S3's answer to a single ``Range: bytes=a-b`` request.

    A range within the identity's kept edges (a one-byte probe) is answered without ``body()``.
    """
    wanted = _byte_range(range_header, identity.size)
    if wanted is None:
        return Reply(200, body(), OCTETS, headers)
    first, last = wanted
    if first >= identity.size:
        reply = s3_error(416, "InvalidRange", "The requested range is not satisfiable", resource)
        reply.headers["Content-Range"] = f"bytes */{identity.size}"
        return reply
    part = identity.edge(first, last)
    if part is None:
        part = body()[first : last + 1]
    ranged = {**headers, "Content-Range": f"bytes {first}-{last}/{identity.size}"}
    return Reply(206, part, OCTETS, ranged)
