"""Deterministic fault injection: which requests misbehave, how, and how often.

Owns the fault catalogue (:data:`FAULTS`), the thread-safe :class:`FaultBook` that hands a
fault to the next matching request and counts it down, the parser for the CLI/env syntax
``NAME[:COUNT][:key=value...]``, and the byte-level mechanics the server uses (connection reset,
corrupt, gzip-encoded and oversize bodies, ``Retry-After`` values). The server decides *where* a
fault acts; this module decides *whether* and *what*. Never imports dagster.

Faults are counted, not random, so a test that injects "two 503s" sees exactly two.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import struct
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from ..core.months import Month

LIST = "list"
DOWNLOAD = "download"
ANY = "any"
TARGETS = (LIST, DOWNLOAD, ANY)
#: Faults that act on one month of a listing (each listed month that matches uses one count),
#: not on the whole request.
PER_MONTH = ("withdraw",)
#: Faults that say how an object is stored rather than what goes wrong with one request: taken
#: apart from the others, so they stack with a redirect before the object and with the faults
#: that mangle it on the wire.
STORED = ("gzip",)
#: The faults a stored-object fault stacks with (every other fault replaces the object).
STACKS_WITH_STORED = ("truncate", "stall")
#: The error of the ``plan`` fault, and of the intervals only higher tiers get.
PLAN_ERROR = "Your plan does not include this interval"
PLAN_CODE = "interval_not_in_plan"


@dataclass(frozen=True)
class FaultSpec:
    """A fault's default target, the targets it may be moved to, and its parameter defaults."""

    target: str
    targets: tuple[str, ...]
    params: dict[str, Any]
    doc: str


FAULTS: dict[str, FaultSpec] = {
    "status": FaultSpec(
        LIST, (LIST,), {"status": 503}, "list request answers `status` (5xx) with a JSON error"
    ),
    "status_download": FaultSpec(
        DOWNLOAD, (DOWNLOAD,), {"status": 503}, "download answers `status` with a JSON error"
    ),
    "rate_limit": FaultSpec(
        LIST,
        TARGETS,
        {"seconds": 1, "http_date": False},
        "429 with Retry-After: `seconds` (an HTTP-date instead when `http_date` is true)",
    ),
    "reset": FaultSpec(ANY, TARGETS, {}, "the connection is reset without a response"),
    "truncate": FaultSpec(
        DOWNLOAD, (DOWNLOAD,), {}, "full Content-Length, half the body, then close"
    ),
    "stall": FaultSpec(
        DOWNLOAD, TARGETS, {"seconds": 30.0}, "headers, then `seconds` of silence, then the body"
    ),
    "expire_urls": FaultSpec(LIST, (LIST,), {}, "the list hands out already-expired URLs"),
    "foreign_host": FaultSpec(
        LIST,
        (LIST,),
        {"base": "https://files.example.com"},
        "list entries point at `base` instead of the sandbox",
    ),
    "corrupt_parquet": FaultSpec(
        DOWNLOAD, (DOWNLOAD,), {}, "body of the right length that is not Parquet"
    ),
    "oversize": FaultSpec(
        DOWNLOAD,
        (DOWNLOAD,),
        {"bytes": 64 * 1024 * 1024},
        "a streamed body of `bytes` bytes (default 64 MiB)",
    ),
    "redirect": FaultSpec(
        DOWNLOAD,
        (DOWNLOAD,),
        {"base": None, "hops": 1},
        "302 to a freshly signed URL of the same object on `base` (default: the host asked),"
        " `hops` redirects in a row before the object is served",
    ),
    "plan": FaultSpec(
        LIST,
        (LIST,),
        {"code": PLAN_CODE, "error": PLAN_ERROR, "detail": None},
        "403 with the API's error body: `error`, [`detail`] (default: the interval's plan), `code`",
    ),
    "gzip": FaultSpec(
        DOWNLOAD,
        (DOWNLOAD,),
        {},
        "the object as stored with Content-Encoding: gzip (ETag, length and ranges of the"
        " encoded bytes); use count -1 so probes and downloads see the same object; stacks with"
        " redirect, truncate and stall",
    ),
    "withdraw": FaultSpec(
        LIST,
        (LIST,),
        {},
        "listings omit the matching month's files (count 1: a one-off glitch, -1: withdrawn);"
        " URLs already handed out keep working",
    ),
}


@dataclass
class Fault:
    """One injected fault: what, how many more times (-1 = forever), for which requests."""

    name: str
    remaining: int = 1
    exchange: str | None = None
    symbol: str | None = None
    month: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return str(self.params.get("target", FAULTS[self.name].target))

    def applies(self, kind: str, exchange: str, symbol: str, month: str) -> bool:
        if self.target not in (kind, ANY):
            return False
        return (
            (self.exchange is None or self.exchange == exchange)
            and (self.symbol is None or self.symbol == symbol)
            and (self.month is None or self.month == month)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "remaining": self.remaining,
            "exchange": self.exchange,
            "symbol": self.symbol,
            "month": self.month,
            "params": dict(self.params),
        }


def make_fault(
    fault: str,
    count: int = 1,
    exchange: str | None = None,
    symbol: str | None = None,
    month: str | Month | None = None,
    **params: Any,
) -> Fault:
    """A validated :class:`Fault`; ``ValueError`` names what is wrong."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(FAULTS)}")
    spec = FAULTS[fault]
    count = int(count)
    if count == 0 or count < -1:
        raise ValueError(
            f"count must be a positive number of requests or -1 (forever), got {count}"
        )
    unknown = set(params) - set(spec.params) - {"target"}
    if unknown:
        raise ValueError(
            f"fault {fault!r} takes no parameter(s) {sorted(unknown)};"
            f" expected {sorted(spec.params) + ['target']}"
        )
    merged = {**spec.params, **params}
    target = merged.get("target", spec.target)
    if target not in spec.targets:
        raise ValueError(f"fault {fault!r} can target {list(spec.targets)}, not {target!r}")
    if "status" in merged and not 400 <= int(merged["status"]) <= 599:
        raise ValueError(f"status must be an HTTP error status (400-599), got {merged['status']}")
    if "hops" in merged and int(merged["hops"]) < 1:
        raise ValueError(f"hops must be at least 1, got {merged['hops']}")
    month_key = None if month is None else Month.parse(str(month)).key
    return Fault(fault, count, exchange, symbol, month_key, merged)


class FaultBook:
    """The active faults, in injection order; the first one that applies to a request wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self._faults]

    def take(
        self,
        kind: str,
        exchange: str,
        symbol: str,
        month: str,
        *,
        only: Collection[str] | None = None,
        exclude: Collection[str] = (),
    ) -> Fault | None:
        """Use up one occurrence of the first fault that applies to this request, if any.

        ``only``/``exclude`` limit the faults considered by name. The server calls it only for
        requests it would answer: a download refused for its signature (HEAD on a URL presigned
        for GET, say) or a missing object uses up no fault.
        """
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.name in exclude or (only is not None and fault.name not in only):
                    continue
                if fault.applies(kind, exchange, symbol, month):
                    if fault.remaining > 0:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            del self._faults[i]
                    return Fault(
                        fault.name, 1, fault.exchange, fault.symbol, fault.month, dict(fault.params)
                    )
        return None


def _scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(text: str) -> tuple[str, int | None, dict[str, Any]]:
    """Split ``NAME[:COUNT][:key=value...]`` into name, count (``None`` if absent) and options.

    A piece without ``=`` after an option continues that option's value, so values may hold
    ``:`` (``symbol=perpetual-BTC-USDT:USDT``, ``base=http://localhost:8080``).
    """
    name, *rest = text.strip().split(":")
    count = None
    if rest and "=" not in rest[0]:
        count = int(rest.pop(0))
    raw: dict[str, str] = {}
    key = None
    for item in rest:
        name_part, sep, value = item.partition("=")
        if sep:
            key = name_part
            raw[key] = value
        elif key is not None:
            raw[key] += ":" + item
        else:
            raise ValueError(f"option {item!r} in {text!r} is not key=value")
    return name, count, {k: _scalar(v) for k, v in raw.items()}


def parse_fault_spec(text: str) -> Fault:
    """Parse ``NAME[:COUNT][:key=value...]``, e.g. ``status:2:status=502`` or ``stall:1:seconds=5``.

    Filters use the same ``key=value`` form (``exchange=``, ``symbol=``, ``month=YYYY-MM``).
    """
    name, count, options = parse_spec(text)
    filters = {k: options.pop(k) for k in ("exchange", "symbol", "month") if k in options}
    return make_fault(name, 1 if count is None else count, **filters, **options)


def parse_fault_list(text: str) -> list[Fault]:
    """Comma-separated :func:`parse_fault_spec` items (the ``APERIODIC_SANDBOX_FAULTS`` syntax)."""
    return [parse_fault_spec(item) for item in text.split(",") if item.strip()]


# --- mechanics -------------------------------------------------------------------------------


def retry_after(params: dict[str, Any], now: float) -> str:
    """The ``Retry-After`` header value: delta-seconds, or an HTTP-date when asked for."""
    seconds = float(params.get("seconds", 1))
    if params.get("http_date"):
        return formatdate(now + seconds, usegmt=True)
    return str(int(round(seconds)))


def reset_connection(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (zero linger), so the peer sees a reset, not a clean EOF."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def corrupt_body(data: bytes) -> bytes:
    """Bytes of the same length that no Parquet reader accepts (magic and footer overwritten)."""
    junk = bytearray(data)
    n = len(junk)
    if n < 16:
        return b"NOT PARQUET"[:n].ljust(n, b"!") if n else b"NOT PARQUET"
    junk[:4] = b"JUNK"
    junk[-8:] = b"\xff\xff\xff\x7fJUNK"
    return bytes(junk)


def gzip_body(data: bytes) -> bytes:
    """``data`` gzip-encoded with a fixed header (no timestamp), so the same bytes each time."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def oversize_chunks(total: int, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """``total`` bytes in ``chunk``-sized pieces, never all in memory at once."""
    block = (b"PAR1" + bytes(chunk - 4)) if chunk >= 4 else bytes(chunk)
    sent = 0
    while sent < total:
        piece = block[: min(chunk, total - sent)]
        sent += len(piece)
        yield piece
