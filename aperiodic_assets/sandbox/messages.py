"""What an endpoint is given and what it answers, independent of the socket.

Owns :class:`Request` and :class:`Reply`, the error bodies (Aperiodic's JSON error, S3's XML
error) and how an injected fault replaces a reply (5xx, 429, reset) or marks it to be mangled on
the wire (truncate, stall). ``handler.py`` turns a :class:`Reply` into bytes. Never imports
dagster.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any
from xml.sax.saxutils import escape

from . import faults as fx


@dataclass(frozen=True)
class Request:
    """One parsed request: what the endpoints need, without the socket."""

    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes
    #: ``host:port`` the client addressed (the Host header, else the listening address).
    host: str


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


def phrase(status: int) -> str:
    """The reason phrase of ``status``; injected faults may use codes HTTPStatus lacks."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def fault_reply(fault: fx.Fault | None) -> Reply | None:
    """The whole response for faults that replace it (error statuses, 429, reset)."""
    if fault is None:
        return None
    if fault.name in ("status", "status_download"):
        status = int(fault.params["status"])
        reply = error_reply(status, phrase(status), ["injected by the sandbox"], "injected_fault")
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


def apply_wire_fault(reply: Reply, fault: fx.Fault | None) -> None:
    """Mark a normal reply with the fault that mangles it in transit (truncate, stall)."""
    if fault is None:
        return
    reply.fault = fault.name
    if fault.name == "truncate":
        reply.action = "truncate"
    elif fault.name == "stall":
        reply.action, reply.stall_s = "stall", float(fault.params["seconds"])
