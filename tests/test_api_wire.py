"""The client against file hosts that behave in ways the sandbox does not: bodies sent with
``Content-Encoding: gzip``, and a host that ignores ``Range``. A small HTTP server on 127.0.0.1
plays the host."""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aperiodic_assets.api import (
    AperiodicClient,
    AperiodicError,
    DownloadRejectedError,
    FileInfo,
    FileStamp,
    TransientError,
)

from .conftest import FAST_RETRY

TABLE = pa.table({"x": pa.array(range(50_000), pa.int64())})


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="none", use_dictionary=False)
    return sink.getvalue().to_pybytes()


PARQUET = _parquet(TABLE)
GZIPPED = gzip.compress(PARQUET)
ETAG = '"v1"'


class FileHost(ThreadingHTTPServer):
    """Serves the files below; records (path, Range header) of every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str | None]] = []
        #: Lets a held-back body go (see ``/ignores-range``).
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def file(self, name: str) -> FileInfo:
        return FileInfo(2026, 7, None, f"{self.url}/{name}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileHost

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows failures, not access logs."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Range")))
        gz = {"Content-Encoding": "gzip"}
        if self.path == "/gzip":
            self._send(200, GZIPPED, gz)
        elif self.path == "/truncated-gzip":
            self._send(200, GZIPPED, gz, cut=len(GZIPPED) // 2)
        elif self.path == "/ignores-range":  # the body comes only once the test lets it
            self._send(200, PARQUET, {}, hold=self.server.release)
        elif self.path == "/unknown-total":
            self._send(206, PARQUET[:1], {"Content-Range": "bytes 0-0/*"})
        else:
            self._send(404, b"", {})

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str],
        cut: int | None = None,
        hold: threading.Event | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), "ETag": ETAG, **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if hold is not None:
            hold.wait(10)
        with contextlib.suppress(OSError):  # the client has gone, as it should after a probe
            self.wfile.write(body[:cut])
        self.close_connection = cut is not None or hold is not None


@pytest.fixture
def host() -> Iterator[FileHost]:
    server = FileHost()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def client_for(host: FileHost, **kwargs) -> AperiodicClient:
    """A client whose API is the host, so that the host is an allowed download host."""
    return AperiodicClient(host.url, "key", retry=FAST_RETRY, **kwargs)


def test_a_gzip_encoded_body_is_checked_against_content_length_in_wire_bytes(host: FileHost):
    assert len(GZIPPED) < len(PARQUET) // 2
    source = client_for(host).download(host.file("gzip"))
    assert source.data == PARQUET and source.table.equals(TABLE)
    assert host.seen == [("/gzip", None)], "complete at the first download"


def test_the_size_limit_holds_against_the_decoded_body(host: FileHost):
    client = client_for(host, max_file_bytes=(len(GZIPPED) + len(PARQUET)) // 2)
    with pytest.raises(DownloadRejectedError, match="the body exceeded the limit"):
        client.download(host.file("gzip"))
    assert len(host.seen) == 1


def test_a_truncated_gzip_body_is_incomplete(host: FileHost):
    with pytest.raises(TransientError, match="incomplete body"):
        client_for(host).download(host.file("truncated-gzip"))
    assert len(host.seen) == FAST_RETRY.max_attempts


def test_a_probe_of_a_host_that_ignores_range_stamps_without_reading_the_body(host: FileHost):
    started = time.monotonic()
    stamp = client_for(host).stamp(host.file("ignores-range"))
    elapsed = time.monotonic() - started
    assert stamp == FileStamp("2026-07", ETAG.strip('"'), len(PARQUET), "")
    assert host.seen == [("/ignores-range", "bytes=0-0")]
    assert elapsed < FAST_RETRY.read_timeout_s / 2, "the held-back body was waited for"


def test_a_partial_answer_without_the_total_size_is_an_error(host: FileHost):
    with pytest.raises(AperiodicError, match="does not give the file's size"):
        client_for(host).stamp(host.file("unknown-total"))
    assert len(host.seen) == 1
