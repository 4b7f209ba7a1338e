"""The client against file hosts that behave in ways the sandbox does not: bodies sent with
``Content-Encoding: gzip``, and a host that ignores ``Range``. A small HTTP server on 127.0.0.1
(tests/loopback.py) plays the host."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aperiodic_assets.core.api import (
    AperiodicClient,
    AperiodicError,
    DownloadRejectedError,
    FileInfo,
    FileStamp,
    TransientError,
)

from .conftest import FAST_RETRY
from .loopback import Host, serving, stored

TABLE = pa.table({"x": pa.array(range(50_000), pa.int64())})


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="none", use_dictionary=False)
    return sink.getvalue().to_pybytes()


PARQUET = _parquet(TABLE)
GZIPPED = gzip.compress(PARQUET)
ETAG = '"v1"'
GZIP = {"Content-Encoding": "gzip"}


@pytest.fixture
def host() -> Iterator[Host]:
    with serving() as server:
        server.routes = {
            # stored gzip-encoded, as S3 keeps an object uploaded with Content-Encoding: gzip
            "/gzip": stored(GZIPPED, ETAG, GZIP),
            "/truncated-gzip": lambda h: h.send(
                200, GZIPPED, {"ETag": ETAG, **GZIP}, cut=len(GZIPPED) // 2
            ),
            # the body comes only once the test lets it
            "/ignores-range": lambda h: h.send(200, PARQUET, {"ETag": ETAG}, hold=True),
            "/unknown-total": lambda h: h.send(
                206, PARQUET[:1], {"ETag": ETAG, "Content-Range": "bytes 0-0/*"}
            ),
        }
        yield server


def file(host: Host, name: str) -> FileInfo:
    return FileInfo(2026, 7, None, f"{host.url}/{name}")


def ranges(host: Host) -> list[tuple[str, str | None]]:
    """(path, Range header) of every request the host received."""
    return [(s.path, s.headers.get("range")) for s in host.seen]


def client_for(host: Host, **kwargs) -> AperiodicClient:
    """A client whose API is the host, so that the host is an allowed download host."""
    return AperiodicClient(host.url, "key", retry=FAST_RETRY, **kwargs)


def test_a_gzip_encoded_body_is_checked_against_content_length_in_wire_bytes(host: Host):
    assert len(GZIPPED) < len(PARQUET) // 2
    source = client_for(host).download(file(host, "gzip"))
    assert source.data == PARQUET and source.table.equals(TABLE)
    assert source.size == len(GZIPPED), "the size is the stored (wire) size"
    assert ranges(host) == [("/gzip", None)], "complete at the first download"


def test_a_gzip_encoded_file_has_the_same_token_downloaded_and_probed(host: Host):
    client = client_for(host)
    source = client.download(file(host, "gzip"))
    stamp = client.stamp(file(host, "gzip"))
    assert stamp.size == len(GZIPPED)
    assert source.token == stamp.token == f"{ETAG.strip(chr(34))}:{len(GZIPPED)}"


def test_the_size_limit_holds_against_the_decoded_body(host: Host):
    client = client_for(host, max_file_bytes=(len(GZIPPED) + len(PARQUET)) // 2)
    with pytest.raises(DownloadRejectedError, match="the body exceeded the limit"):
        client.download(file(host, "gzip"))
    assert len(host.seen) == 1


def test_a_truncated_gzip_body_is_incomplete(host: Host):
    with pytest.raises(TransientError, match="incomplete body"):
        client_for(host).download(file(host, "truncated-gzip"))
    assert len(host.seen) == FAST_RETRY.max_attempts


def test_a_probe_of_a_host_that_ignores_range_stamps_without_reading_the_body(host: Host):
    started = time.monotonic()
    stamp = client_for(host).stamp(file(host, "ignores-range"))
    elapsed = time.monotonic() - started
    assert stamp == FileStamp("2026-07", ETAG.strip('"'), len(PARQUET), "")
    assert ranges(host) == [("/ignores-range", "bytes=0-0")]
    assert elapsed < FAST_RETRY.read_timeout_s / 2, "the held-back body was waited for"


def test_a_partial_answer_without_the_total_size_is_an_error(host: Host):
    with pytest.raises(AperiodicError, match="does not give the file's size"):
        client_for(host).stamp(file(host, "unknown-total"))
    assert len(host.seen) == 1
