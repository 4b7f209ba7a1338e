"""The sandbox HTTP server: Aperiodic's API surface and an S3-like file host in one process.

Owns request routing, validation and error bodies, presigned file downloads (ETag,
Last-Modified, Range, conditional GET; any method but the signed GET is refused with 403, as
S3/R2 do), the admin endpoints under ``/_sandbox/`` that steer a running sandbox, the request
log, and :class:`Sandbox` (in-process, context manager) and :class:`RemoteSandbox` (steers a
sandbox in another process over HTTP). Pure standard-library HTTP plus numpy/pyarrow through
:mod:`.data`; never imports dagster.

Logging never includes query strings (they carry signatures) or the API key.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import re
import secrets
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from datetime import time as dtime
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from ..months import Month
from ..schema import EXCHANGES, INTERVALS, METRIC, TIMESTAMP_MODES
from . import faults as fx
from .catalog import (
    Calendar,
    FileSpan,
    Listings,
    build_listings,
    object_path,
    parse_object_path,
    symbols,
)
from .corruption import MODES, apply_corruption
from .data import encode_parquet, generate
from .signing import Signer

API_PREFIX = "/api/v1"
ADMIN_PREFIX = "/_sandbox/"
#: The official client's shared demo key; accepted on the preview endpoint only.
DEMO_API_KEY = "DEMO-KEY"
#: Corruption modes (see corruption.py), each caught by one validation check.
CORRUPTION_MODES: tuple[str, ...] = tuple(MODES)
LIST_PARAMS = ("timestamp", "interval", "exchange", "symbol", "start_date", "end_date")
MAX_ADMIN_BODY = 1024 * 1024
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
#: Bytes kept from each end of a file with its identity: Parquet's magic and footer length, enough
#: to answer a one-byte probe (``bytes=0-0``) or a footer read (``bytes=-8``) without rendering.
EDGE_BYTES = 8
#: Identities kept (about 0.5 KB each with their keys, so at most ~32 MB): enough for a sensor that
#: probes every file of a large universe each tick.
IDENTITY_CACHE_SIZE = 65536


@dataclass
class SandboxConfig:
    """Everything a sandbox is started with; every field is also a CLI flag."""

    api_key: str = "sandbox"
    #: The sandbox clock: files exist for days before it. ``None`` = the real UTC date, always.
    today: date | None = None
    #: Aperiodic serves monthly files up to 2026-08-10 and one file per day from 2026-08-11 on.
    daily_from: date = date(2026, 8, 11)
    url_ttl_s: int = 300
    host: str = "127.0.0.1"
    port: int = 0
    #: Print one line per request (method, path, status; never the query string) to stderr.
    verbose: bool = False
    #: URL-signing secret; random per instance when ``None`` (URLs die with the process).
    secret: str | None = None
    #: Extra symbols per exchange (``catalog.synthetic_symbol``), for scale tests.
    synthetic_symbols: int = 0


@dataclass(frozen=True)
class CorruptionRule:
    mode: str
    exchange: str | None = None
    symbol: str | None = None
    month: str | None = None

    def matches(self, exchange: str, symbol: str, month: str) -> bool:
        return (
            (self.exchange is None or self.exchange == exchange)
            and (self.symbol is None or self.symbol == symbol)
            and (self.month is None or self.month == month)
        )


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value)
    if not _DATE_RE.fullmatch(text):
        raise ValueError(f"not a date: {text!r}; expected YYYY-MM-DD")
    return date.fromisoformat(text)


def _month_key(month: str | Month | None) -> str | None:
    if month is None:
        return None
    return month.key if isinstance(month, Month) else Month.parse(str(month)).key


class SandboxState:
    """The mutable state of one sandbox; every method is thread-safe."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        #: This sandbox's exchange -> symbol -> listing day; never changes after start.
        self.listings: Listings = build_listings(config.synthetic_symbols)
        self._lock = threading.RLock()
        self._today = config.today
        self._daily_from = config.daily_from
        self._revisions: dict[tuple[str, str, str], int] = {}
        self._corruptions: list[CorruptionRule] = []
        self._log: list[dict[str, Any]] = []
        self.faults = fx.FaultBook()
        secret = config.secret.encode() if config.secret else secrets.token_bytes(32)
        self.signer = Signer(secret)
        #: Set on shutdown so stalled responses stop sleeping.
        self.stopping = threading.Event()

    # --- clock and publication rules
    @property
    def today(self) -> date:
        with self._lock:
            return self._today or datetime.now(UTC).date()

    def calendar(self) -> Calendar:
        with self._lock:
            return Calendar(self.today, self._daily_from)

    def set_today(self, today: date | str | None) -> None:
        """Move the sandbox clock (``None``: follow the real UTC date again)."""
        with self._lock:
            self._today = None if today is None else _as_date(today)

    def set_daily_from(self, daily_from: date | str) -> None:
        with self._lock:
            self._daily_from = _as_date(daily_from)

    # --- content changes
    def republish(self, exchange: str, symbol: str, month: str | Month, revision: int) -> None:
        """Serve ``month``'s files (monthly and daily, every interval and mode) at ``revision``."""
        _require_instrument(self.listings, exchange, symbol)
        key = (exchange, symbol, _month_key(month) or "")
        with self._lock:
            if int(revision) == 0:
                self._revisions.pop(key, None)
            else:
                self._revisions[key] = int(revision)

    def revision(self, exchange: str, symbol: str, month: str) -> int:
        with self._lock:
            return self._revisions.get((exchange, symbol, month), 0)

    def corrupt(
        self,
        mode: str,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
    ) -> None:
        """Serve matching files through ``apply_corruption(table, mode, interval)``.

        Rules accumulate; for a file, the most recent matching rule wins.
        """
        if mode not in CORRUPTION_MODES:
            raise ValueError(
                f"unknown corruption mode {mode!r}; expected one of {CORRUPTION_MODES}"
            )
        if exchange is not None and exchange not in self.listings:
            raise ValueError(f"unknown exchange {exchange!r}")
        rule = CorruptionRule(mode, exchange, symbol, _month_key(month))
        with self._lock:
            self._corruptions.append(rule)

    def clear_corruption(self) -> None:
        with self._lock:
            self._corruptions.clear()

    def corruption(self, exchange: str, symbol: str, month: str) -> str | None:
        with self._lock:
            for rule in reversed(self._corruptions):
                if rule.matches(exchange, symbol, month):
                    return rule.mode
        return None

    # --- faults
    def inject(
        self,
        fault: str,
        count: int = 1,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
        **params: Any,
    ) -> None:
        self.faults.add(fx.make_fault(fault, count, exchange, symbol, _month_key(month), **params))

    def clear_faults(self) -> None:
        self.faults.clear()

    # --- request log
    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._log.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._log]

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "today": self.today.isoformat(),
                "clock": "fixed" if self._today else "real",
                "daily_from": self._daily_from.isoformat(),
                "url_ttl_s": self.config.url_ttl_s,
                "revisions": [
                    {"exchange": e, "symbol": s, "month": m, "revision": r}
                    for (e, s, m), r in sorted(self._revisions.items())
                ],
                "corruptions": [asdict(rule) for rule in self._corruptions],
                "faults": self.faults.active(),
            }


def _require_instrument(listings: Listings, exchange: str, symbol: str) -> None:
    if exchange not in listings:
        raise ValueError(f"unknown exchange {exchange!r}; expected one of {sorted(listings)}")
    if symbol not in listings[exchange]:
        raise ValueError(f"unknown symbol {symbol!r} on {exchange}")


# --- file rendering ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedFile:
    body: bytes
    etag: str
    last_modified: str


def _etag(body: bytes) -> str:
    return f'"{hashlib.md5(body).hexdigest()}"'


@functools.lru_cache(maxsize=32)
def render_file(
    exchange: str,
    symbol: str,
    interval: str,
    timestamp: str,
    first: date,
    end: date,
    revision: int,
    corruption: str | None,
) -> RenderedFile:
    """Encoded bytes of one file, cached by identity, coverage, revision and corruption.

    ``Last-Modified`` is derived from the content's identity (not the wall clock) so it is as
    stable as the ETag: shortly after the covered period ends, an hour later per revision.
    """
    table = generate(exchange, symbol, interval, timestamp, first, end, revision)
    if corruption is not None:
        table = apply_corruption(table, corruption, interval)
    body = encode_parquet(table)
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


@functools.lru_cache(maxsize=IDENTITY_CACHE_SIZE)
def file_identity(
    exchange: str,
    symbol: str,
    interval: str,
    timestamp: str,
    first: date,
    end: date,
    revision: int,
    corruption: str | None,
) -> FileIdentity:
    """:func:`render_file`'s identity, kept far longer than its bytes.

    A sensor probes thousands of files with one-byte GETs every tick; rendering each again
    (``render_file`` keeps only a few bodies) would make every probe cost a file generation.
    """
    rendered = render_file(exchange, symbol, interval, timestamp, first, end, revision, corruption)
    return _identity_of(rendered.body, rendered.etag, rendered.last_modified)


def _identity_of(body: bytes, etag: str, last_modified: str) -> FileIdentity:
    return FileIdentity(etag, len(body), last_modified, body[:EDGE_BYTES], body[-EDGE_BYTES:])


# --- HTTP --------------------------------------------------------------------------------------


@dataclass
class Reply:
    """A response to write, plus how a fault wants it mangled on the wire."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterator[bytes] | None = None
    length: int | None = None
    action: str | None = None  # "reset" | "truncate" | "stall"
    stall_s: float = 0.0
    fault: str | None = None


def json_reply(status: int, payload: Any, **headers: str) -> Reply:
    return Reply(status, json.dumps(payload).encode(), headers=dict(headers))


def error_reply(status: int, error: str, details: list[str], code: str, **headers: str) -> Reply:
    """Aperiodic's error body: ``{"error": ..., "details": [...], "code": ...}``."""
    return json_reply(status, {"error": error, "details": details, "code": code}, **headers)


def s3_error(status: int, code: str, message: str, resource: str) -> Reply:
    """An S3-style XML error for the file host (refused, expired or missing objects)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return Reply(status, body.encode(), content_type="application/xml")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _classify(path: str) -> str:
    if path.startswith("/files/"):
        return "download"
    if path in (f"{API_PREFIX}/data/{METRIC}", f"{API_PREFIX}/data/preview/{METRIC}"):
        return "list"
    if path == f"{API_PREFIX}/metadata/symbols":
        return "symbols"
    if path.startswith(ADMIN_PREFIX):
        return "admin"
    return "other"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SandboxState) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); a sandbox needs none.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, sock: socket.socket, alive: bool) -> None:
        with self._conn_lock:
            (self._connections.add if alive else self._connections.discard)(sock)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._conn_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.state.config.verbose:
            traceback.print_exc(file=sys.stderr)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AperiodicSandbox/1.0"
    sys_version = ""
    #: Idle keep-alive connections give their thread back after this long.
    timeout = 120
    #: Headers and body go out in separate writes; with Nagle's algorithm the body would wait
    #: for the client's delayed ACK (about 40 ms on Linux), on every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    # --- plumbing
    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the base class would print request lines, which carry query strings."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.state.config.verbose:
            path = urlsplit(getattr(self, "path", "") or "").path
            sys.stderr.write(f"sandbox: {self.command} {path} {code}\n")

    def log_error(self, format: str, *args: Any) -> None:
        """Silenced: messages can quote the raw request line."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, unsupported method) as JSON, without echo."""
        self.close_connection = True
        phrase = _phrase(code)
        body = json.dumps({"error": phrase, "details": [], "code": "http_error"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    @property
    def state(self) -> SandboxState:
        return self.server.state

    def _serve(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        kind = _classify(path)
        body = b""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_ADMIN_BODY:
            reply = error_reply(413, "Request body too large", [], "payload_too_large")
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length > 0 else b""
            try:
                reply = self._route(path, query, kind, body)
            except Exception as exc:  # a bug or a failing corruption must not kill the thread
                if self.state.config.verbose:
                    traceback.print_exc(file=sys.stderr)
                reply = error_reply(
                    500, "Internal sandbox error", [f"{type(exc).__name__}: {exc}"], "internal"
                )
        self._write(path, kind, reply)

    def _write(self, path: str, kind: str, reply: Reply) -> None:
        self.state.record(
            {
                "t": time.time(),
                "method": self.command,
                "path": path,
                "status": 0 if reply.action == "reset" else reply.status,
                "kind": kind,
                "client": self.headers.get("X-Client-Tag"),
                "fault": reply.fault,
            }
        )
        if reply.action == "reset":
            self.close_connection = True
            fx.reset_connection(self.connection)
            return
        self.send_response(reply.status)
        headers = {"Content-Type": reply.content_type, **reply.headers}
        if reply.status != 304:
            size = reply.length if reply.chunks is not None else len(reply.body)
            headers["Content-Length"] = str(size)
        if reply.action == "truncate":
            headers["Connection"] = "close"
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD" or reply.status in (204, 304):
            return
        try:
            if reply.action == "stall":
                self.wfile.flush()
                if self.state.stopping.wait(reply.stall_s):
                    self.close_connection = True
                    return
            if reply.action == "truncate":
                self.wfile.write(reply.body[: len(reply.body) // 2])
                self.close_connection = True
                return
            if reply.chunks is not None:
                for chunk in reply.chunks:
                    self.wfile.write(chunk)
            else:
                self.wfile.write(reply.body)
        except OSError:  # the client went away (as it should, e.g. after a timeout)
            self.close_connection = True

    # --- routing
    def _route(self, path: str, query: dict[str, str], kind: str, body: bytes) -> Reply:
        method = self.command
        if kind == "admin":
            return self._admin(path[len(ADMIN_PREFIX) :], body)
        if kind == "download":
            # Every method reaches the signature check, which refuses all but the signed GET.
            return self._download(path, query)
        if kind in ("list", "symbols") and method not in ("GET", "HEAD"):
            return error_reply(
                405,
                "Method Not Allowed",
                [f"{method} is not supported here"],
                "method_not_allowed",
                Allow="GET, HEAD",
            )
        if kind == "list":
            return self._list(query, preview="/preview/" in path)
        if kind == "symbols":
            return self._symbols(query)
        return error_reply(404, "Not Found", [f"no such endpoint: {path}"], "not_found")

    def _authorize(self, preview: bool = False) -> Reply | None:
        key = self.headers.get("X-API-KEY")
        if not key:
            return error_reply(
                401,
                "Authorization Required",
                ["send your API key in the X-API-KEY header"],
                "missing_api_key",
            )
        accepted = [self.state.config.api_key] + ([DEMO_API_KEY] if preview else [])
        if not any(hmac.compare_digest(key.encode(), k.encode()) for k in accepted):
            return error_reply(
                401, "Authorization Required", ["invalid API key"], "invalid_api_key"
            )
        return None

    def _files_base(self, fault: fx.Fault | None) -> str:
        if fault is not None and fault.name == "foreign_host":
            return str(fault.params["base"]).rstrip("/")
        host = self.headers.get("Host")
        if not host:
            address, port = self.server.server_address[:2]
            host = f"{address}:{port}"
        return f"http://{host}"

    def _list(self, query: dict[str, str], preview: bool) -> Reply:
        denied = self._authorize(preview)
        if denied:
            return denied
        missing = [p for p in LIST_PARAMS if not query.get(p)]
        if missing:
            return error_reply(
                400,
                "Missing required parameter(s)",
                [f"missing query parameter: {p}" for p in missing],
                "missing_parameter",
            )
        problems: list[tuple[str, str]] = []
        choices = {"interval": INTERVALS, "timestamp": TIMESTAMP_MODES, "exchange": EXCHANGES}
        for name, allowed in choices.items():
            if query[name] not in allowed:
                problems.append(
                    (f"invalid_{name}", f"{name} {query[name]!r} is not one of {list(allowed)}")
                )
        dates: dict[str, date] = {}
        for name in ("start_date", "end_date"):
            try:
                dates[name] = _as_date(query[name])
            except ValueError:
                problems.append(
                    ("invalid_date", f"{name} {query[name]!r} is not a YYYY-MM-DD date")
                )
        if not problems and dates["end_date"] < dates["start_date"]:
            problems.append(("invalid_date_range", "end_date is before start_date"))
        if problems:
            return error_reply(400, "Invalid request", [p[1] for p in problems], problems[0][0])
        exchange, symbol = query["exchange"], query["symbol"]
        listed = self.state.listings[exchange]
        if symbol not in listed:
            return error_reply(
                404,
                "Not Found",
                [f"symbol {symbol!r} is not available on {exchange}"],
                "symbol_not_found",
            )
        start, end = dates["start_date"], dates["end_date"]
        fault = self.state.faults.take(fx.LIST, exchange, symbol, Month.of(start).key)
        early = _fault_reply(fault)
        if early is not None:
            return early
        spans = self.state.calendar().files(listed[symbol], start, end)
        ttl = self.state.config.url_ttl_s
        now = time.time()
        if fault is not None and fault.name == "expire_urls":
            now -= ttl + 3600
        base = self._files_base(fault)
        interval, timestamp = query["interval"], query["timestamp"]
        files = []
        for span in spans:
            obj = object_path(exchange, symbol, interval, timestamp, span)
            url = f"{base}{obj}?{self.state.signer.sign(obj, ttl, now)}"
            files.append({**span.entry(), "url": url})
        reply = json_reply(200, {"files": files})
        _apply_wire_fault(reply, fault)
        return reply

    def _symbols(self, query: dict[str, str]) -> Reply:
        denied = self._authorize()
        if denied:
            return denied
        exchange = query.get("exchange")
        if not exchange:
            return error_reply(
                400,
                "Missing required parameter(s)",
                ["missing query parameter: exchange"],
                "missing_parameter",
            )
        listings = self.state.listings
        if exchange not in listings:
            return error_reply(
                400,
                "Invalid request",
                [f"exchange {exchange!r} is not one of {sorted(listings)}"],
                "invalid_exchange",
            )
        return json_reply(
            200, {"symbols": symbols(exchange, listings), "exchange": exchange, "bucket": METRIC}
        )

    def _download(self, path: str, query: dict[str, str]) -> Reply:
        refusal = self.state.signer.verify(self.command, path, query)
        if refusal is not None:
            return s3_error(403, refusal.code, refusal.message, path)
        fid = parse_object_path(path)
        listing = self.state.listings.get(fid.exchange, {}).get(fid.symbol) if fid else None
        span: FileSpan | None = None
        if fid is not None and listing is not None:
            span = self.state.calendar().find(listing, fid.year, fid.month, fid.day)
        if fid is None or span is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.", path)
        fault = self.state.faults.take(fx.DOWNLOAD, fid.exchange, fid.symbol, fid.month_key)
        early = _fault_reply(fault)
        if early is not None:
            return early
        key = (
            fid.exchange,
            fid.symbol,
            fid.interval,
            fid.timestamp,
            span.first,
            span.end,
            self.state.revision(fid.exchange, fid.symbol, fid.month_key),
            self.state.corruption(fid.exchange, fid.symbol, fid.month_key),
        )
        identity = file_identity(*key)
        headers = {"Accept-Ranges": "bytes", "Last-Modified": identity.last_modified}
        octets = "application/octet-stream"
        if fault is not None and fault.name == "oversize":
            size = int(fault.params["bytes"])
            headers["ETag"] = f'"{hashlib.md5(f"oversize-{size}".encode()).hexdigest()}-1"'
            return Reply(
                200,
                content_type=octets,
                headers=headers,
                chunks=fx.oversize_chunks(size),
                length=size,
                fault=fault.name,
            )
        corrupted: bytes | None = None
        if fault is not None and fault.name == "corrupt_parquet":
            corrupted = fx.corrupt_body(render_file(*key).body)
            identity = _identity_of(corrupted, _etag(corrupted), identity.last_modified)

        def body() -> bytes:
            return corrupted if corrupted is not None else render_file(*key).body

        headers["ETag"] = identity.etag
        none_match = (self.headers.get("If-None-Match") or "").split(",")
        if identity.etag in [tag.strip() for tag in none_match]:
            reply = Reply(304, content_type=octets, headers=headers)
        else:
            reply = _object_reply(identity, body, self.headers.get("Range"), headers, path)
        _apply_wire_fault(reply, fault)
        return reply

    # --- admin
    def _admin(self, name: str, body: bytes) -> Reply:
        state = self.state
        if self.command == "GET" and name == "requests":
            return json_reply(200, state.requests())
        if self.command == "GET" and name == "state":
            return json_reply(200, state.snapshot())
        if self.command != "POST":
            return error_reply(
                405,
                "Method Not Allowed",
                [f"use POST {ADMIN_PREFIX}{name}"],
                "method_not_allowed",
                Allow="POST",
            )
        try:
            args = json.loads(body or b"{}")
            if not isinstance(args, dict):
                raise ValueError("the body must be a JSON object")
            actions = {
                "set_today": lambda: state.set_today(args.get("today")),
                "set_daily_from": lambda: state.set_daily_from(args["daily_from"]),
                "republish": lambda: state.republish(
                    args["exchange"], args["symbol"], args["month"], int(args.get("revision", 1))
                ),
                "corrupt": lambda: state.corrupt(
                    args["mode"], args.get("exchange"), args.get("symbol"), args.get("month")
                ),
                "clear_corruption": state.clear_corruption,
                "inject": lambda: _inject_from_json(state, args),
                "clear_faults": state.clear_faults,
                "reset_log": state.reset_log,
            }
            if name not in actions:
                return error_reply(
                    404,
                    "Not Found",
                    [f"no admin action {name!r}; expected one of {sorted(actions)}"],
                    "not_found",
                )
            actions[name]()
        except (ValueError, KeyError, TypeError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            return error_reply(400, "Invalid admin request", [detail], "invalid_admin_request")
        return json_reply(200, {"ok": True, "state": state.snapshot()})


def _inject_from_json(state: SandboxState, args: dict[str, Any]) -> None:
    args = dict(args)
    params = dict(args.pop("params", None) or {})
    fault = args.pop("fault")
    count = int(args.pop("count", 1))
    filters = {k: args.pop(k, None) for k in ("exchange", "symbol", "month")}
    state.inject(fault, count, **filters, **params, **args)


def _fault_reply(fault: fx.Fault | None) -> Reply | None:
    """The whole response for faults that replace it (error statuses, 429, reset)."""
    if fault is None:
        return None
    if fault.name in ("status", "status_download"):
        status = int(fault.params["status"])
        phrase = _phrase(status)
        reply = error_reply(status, phrase, ["injected by the sandbox"], "injected_fault")
    elif fault.name == "rate_limit":
        reply = error_reply(
            429,
            "Too Many Requests",
            ["rate limit exceeded; retry later"],
            "rate_limited",
            **{"Retry-After": fx.retry_after(fault.params, time.time())},
        )
    elif fault.name == "reset":
        reply = Reply(0, action="reset")
    else:
        return None
    reply.fault = fault.name
    return reply


def _apply_wire_fault(reply: Reply, fault: fx.Fault | None) -> None:
    """Mark a normal reply with the fault that mangles it in transit (truncate, stall)."""
    if fault is None:
        return
    reply.fault = fault.name
    if fault.name == "truncate":
        reply.action = "truncate"
    elif fault.name == "stall":
        reply.action, reply.stall_s = "stall", float(fault.params["seconds"])


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
    octets = "application/octet-stream"
    wanted = _byte_range(range_header, identity.size)
    if wanted is None:
        return Reply(200, body(), octets, headers)
    first, last = wanted
    if first >= identity.size:
        reply = s3_error(416, "InvalidRange", "The requested range is not satisfiable", resource)
        reply.headers["Content-Range"] = f"bytes */{identity.size}"
        return reply
    part = identity.edge(first, last)
    if part is None:
        part = body()[first : last + 1]
    ranged = {**headers, "Content-Range": f"bytes {first}-{last}/{identity.size}"}
    return Reply(206, part, octets, ranged)


# --- in-process and remote handles -------------------------------------------------------------


class Sandbox:
    """A sandbox server in a daemon thread of this process.

    ``with Sandbox(SandboxConfig(today=date(2026, 9, 15))) as sb: get(sb.base_url + ...)``.
    The steering methods are thread-safe and take effect on the next request.
    """

    def __init__(self, config: SandboxConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or SandboxConfig(), **overrides)
        self.state = SandboxState(self.config)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        if self._server is None:
            self._server = _Server((self.config.host, self.config.port), self.state)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"aperiodic-sandbox-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled responses are woken and idle connections closed."""
        server, self._server = self._server, None
        if server is None:
            return
        self.state.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT`` (admin endpoints live under ``/_sandbox/``)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as the official client's ``base_url``: ``http://HOST:PORT/api/v1``."""
        return self.root_url + API_PREFIX

    # --- steering (see SandboxState for semantics)
    def set_today(self, today: date | str | None) -> None:
        self.state.set_today(today)

    def set_daily_from(self, daily_from: date | str) -> None:
        self.state.set_daily_from(daily_from)

    def republish(self, exchange: str, symbol: str, month: str | Month, revision: int) -> None:
        self.state.republish(exchange, symbol, month, revision)

    def corrupt(
        self,
        mode: str,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
    ) -> None:
        self.state.corrupt(mode, exchange, symbol, month)

    def clear_corruption(self) -> None:
        self.state.clear_corruption()

    def inject(
        self,
        fault: str,
        count: int = 1,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
        **params: Any,
    ) -> None:
        self.state.inject(fault, count, exchange, symbol, month, **params)

    def clear_faults(self) -> None:
        self.state.clear_faults()

    def faults(self) -> list[dict[str, Any]]:
        return self.state.faults.active()

    def requests(self) -> list[dict[str, Any]]:
        return self.state.requests()

    def reset_log(self) -> None:
        self.state.reset_log()

    def snapshot(self) -> dict[str, Any]:
        return self.state.snapshot()


class RemoteSandbox:
    """Steers a sandbox running in another process through its admin endpoints.

    Same method names as :class:`Sandbox`; accepts the root URL or the ``/api/v1`` base URL.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        url = url.rstrip("/")
        self.root_url = url[: -len(API_PREFIX)] if url.endswith(API_PREFIX) else url
        self.base_url = self.root_url + API_PREFIX
        self.timeout = timeout

    def _call(self, name: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload, default=str).encode()
        request = urllib.request.Request(
            f"{self.root_url}{ADMIN_PREFIX}{name}",
            data=data,
            method="GET" if payload is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ValueError(f"sandbox admin {name} failed: HTTP {exc.code} {detail}") from None

    def set_today(self, today: date | str | None) -> None:
        self._call("set_today", {"today": None if today is None else str(today)})

    def set_daily_from(self, daily_from: date | str) -> None:
        self._call("set_daily_from", {"daily_from": str(daily_from)})

    def republish(self, exchange: str, symbol: str, month: str | Month, revision: int) -> None:
        payload = {
            "exchange": exchange,
            "symbol": symbol,
            "month": str(month),
            "revision": revision,
        }
        self._call("republish", payload)

    def corrupt(
        self,
        mode: str,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
    ) -> None:
        month_text = None if month is None else str(month)
        payload = {"mode": mode, "exchange": exchange, "symbol": symbol, "month": month_text}
        self._call("corrupt", payload)

    def clear_corruption(self) -> None:
        self._call("clear_corruption", {})

    def inject(
        self,
        fault: str,
        count: int = 1,
        exchange: str | None = None,
        symbol: str | None = None,
        month: str | Month | None = None,
        **params: Any,
    ) -> None:
        payload = {
            "fault": fault,
            "count": count,
            "exchange": exchange,
            "symbol": symbol,
            "month": None if month is None else str(month),
            "params": params,
        }
        self._call("inject", payload)

    def clear_faults(self) -> None:
        self._call("clear_faults", {})

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("state")["faults"])

    def requests(self) -> list[dict[str, Any]]:
        return list(self._call("requests"))

    def reset_log(self) -> None:
        self._call("reset_log", {})

    def snapshot(self) -> dict[str, Any]:
        return dict(self._call("state"))
