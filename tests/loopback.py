"""A tiny HTTP server on 127.0.0.1 that plays an API or file host the sandbox cannot: each path
answers as a test says (redirects, gzip bodies, stalls, plan errors), and every request is
recorded with its headers, so a test can tell what reached the host and what did not."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

#: How one path answers: called with the request's handler, it sends the whole reply.
Reply = Callable[["Handler"], None]


@dataclass(frozen=True)
class Seen:
    """One request the host received; header names in lower case."""

    path: str
    headers: dict[str, str]


class Host(ThreadingHTTPServer):
    """Answers each path with its :data:`Reply` (404 for other paths) and records requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: dict[str, Reply] = {}
        self.seen: list[Seen] = []
        #: Lets held-back replies go (see :meth:`Handler.send`'s ``hold``).
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hang up: the client drops connections it no longer needs."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def paths(self) -> list[str]:
        """The paths requested so far, query strings left out."""
        return [urlsplit(s.path).path for s in self.seen]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Host

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows failures, not access logs."""

    def do_GET(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.seen.append(Seen(self.path, headers))
        reply = self.server.routes.get(urlsplit(self.path).path)
        if reply is None:
            self.send(404, b"")
        else:
            reply(self)

    def send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        *,
        cut: int | None = None,
        hold: bool = False,
        trickle_s: float | None = None,
    ) -> None:
        """One reply. ``cut``: send only that many bytes of the body, then close; ``hold``:
        headers, then the body only once the host's ``release`` is set (or after 10 s);
        ``trickle_s``: the body one byte at a time, that many seconds apart."""
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if hold:
            self.server.release.wait(10)
        with contextlib.suppress(OSError):  # the client may have gone, as it should at times
            if trickle_s is None:
                self.wfile.write(body[:cut])
            else:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    if self.server.release.wait(trickle_s):
                        break
        self.close_connection = cut is not None or hold or trickle_s is not None


@contextlib.contextmanager
def serving() -> Iterator[Host]:
    """A running host; stopped (held replies released) when the block ends."""
    host = Host()
    threading.Thread(target=host.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield host
    finally:
        host.release.set()
        host.shutdown()
        host.server_close()


# ------------------------------------------------------------------------------------ replies
def stored(body: bytes, etag: str, headers: dict[str, str] | None = None) -> Reply:
    """A stored object as S3 serves it: ``Range: bytes=0-0`` gets a 206 with the total size."""

    def reply(handler: Handler) -> None:
        extra = {"ETag": etag, **(headers or {})}
        if handler.headers.get("Range") == "bytes=0-0":
            extra["Content-Range"] = f"bytes 0-0/{len(body)}"
            handler.send(206, body[:1], extra)
        else:
            handler.send(200, body, extra)

    return reply


def redirect(status: int, location: str) -> Reply:
    return lambda handler: handler.send(status, b"", {"Location": location})


def error(status: int, body: dict, headers: dict[str, str] | None = None) -> Reply:
    """An API error with a JSON body such as ``{"error": ..., "details": [...], "code": ...}``."""
    data = json.dumps(body).encode()
    return lambda handler: handler.send(
        status, data, {"Content-Type": "application/json", **(headers or {})}
    )


def stalled_headers(handler: Handler) -> None:
    """Accepts the request and answers nothing until released."""
    handler.server.release.wait(10)
    with contextlib.suppress(OSError):
        handler.send(503, b"")
