"""The sandbox's HTTP server: sockets in, :class:`Reply` bytes out.

Owns the threading server (connection tracking so a stop unblocks idle keep-alive threads),
reading a request into a :class:`Request`, routing it by path to the API (``api.py``), file host
(``files.py``) or admin endpoints (``steering.py``), writing the reply with its wire faults
(reset, truncate, stall) behind the steered network (``network.py``; admin replies stay
instant), protocol-level errors and the request log. Logging never includes
query strings (they carry signatures) or the API key. Never imports dagster.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import faults as fx
from .api import LIST_PATHS, SYMBOLS_PATH, list_files, list_symbols
from .catalog import FILES_PREFIX
from .files import download
from .messages import Reply, Request, error_reply, phrase
from .network import Network
from .state import SandboxState
from .steering import ADMIN_PREFIX, admin

MAX_ADMIN_BODY = 1024 * 1024
#: No network: what admin replies go through, and every reply by default.
LOOPBACK = Network()


def classify(path: str) -> str:
    """The request log's ``kind`` of a path: download, list, symbols, admin or other."""
    if path.startswith(f"{FILES_PREFIX}/"):
        return "download"
    if path in LIST_PATHS:
        return "list"
    if path == SYMBOLS_PATH:
        return "symbols"
    if path.startswith(ADMIN_PREFIX):
        return "admin"
    return "other"


def route(state: SandboxState, request: Request, kind: str) -> Reply:
    """The endpoint's reply to ``request``, whose path is of ``kind``."""
    if kind == "admin":
        return admin(state, request)
    if kind == "download":
        # Every method reaches the signature check, which refuses all but the signed GET.
        return download(state, request)
    if kind in ("list", "symbols") and request.method not in ("GET", "HEAD"):
        return error_reply(
            405,
            "Method Not Allowed",
            [f"{request.method} is not supported here"],
            "method_not_allowed",
            Allow="GET, HEAD",
        )
    if kind == "list":
        return list_files(state, request)
    if kind == "symbols":
        return list_symbols(state, request)
    return error_reply(404, "Not Found", [f"no such endpoint: {request.path}"], "not_found")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    #: Connections waiting to be accepted; at the default 5 a burst of concurrent clients could
    #: have connections refused and retried a second later, which a benchmark would measure.
    request_queue_size = 128

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
    server: Server

    # --- plumbing
    def setup(self) -> None:
        super().setup()
        #: Whether this connection has paid its handshakes (with its first networked response).
        self.handshaken = False
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
        network = self._wait_for_network(classify(urlsplit(getattr(self, "path", "") or "").path))
        if network is None:
            return
        body = json.dumps({"error": phrase(code), "details": [], "code": "http_error"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            network.send(self.wfile.write, [body], self.state.stopping)

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

    def _wait_for_network(self, kind: str) -> Network | None:
        """Sleep the round trips before a reply of ``kind``; the network its body then goes
        through, or ``None`` if the sandbox stopped meanwhile. Admin replies are instant.

        A connection's first reply other than an admin one also pays its handshakes.
        """
        if kind == "admin":
            return LOOPBACK
        network = self.state.current_network
        new_connection, self.handshaken = not self.handshaken, True
        return network if network.wait(new_connection, self.state.stopping) else None

    def _serve(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        kind = classify(path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_ADMIN_BODY:
            reply = error_reply(413, "Request body too large", [], "payload_too_large")
            self.close_connection = True
        else:
            request = Request(
                method=self.command,
                path=path,
                query={k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()},
                headers=self.headers,
                body=self.rfile.read(length) if length > 0 else b"",
                host=self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2]),
            )
            try:
                reply = route(self.state, request, kind)
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
        network = self._wait_for_network(kind)
        if network is None:
            self.close_connection = True
            return
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
                self.close_connection = True
                chunks: Iterable[bytes] = [reply.body[: len(reply.body) // 2]]
            else:
                chunks = reply.chunks if reply.chunks is not None else [reply.body]
            if not network.send(self.wfile.write, chunks, self.state.stopping):
                self.close_connection = True
        except OSError:  # the client went away (as it should, e.g. after a timeout)
            self.close_connection = True
