"""A realistic network between the sandbox and its clients: round trips and bandwidth.

Why: on loopback a request is answered in microseconds, which flatters a client that makes its
requests one after another; a benchmark must measure on a network where every exchange costs a
round trip and bytes take time to arrive, as they do against the real HTTPS service.

Owns :class:`Network` (a round-trip time and a bandwidth, both off by default) and what it costs
a reply: :meth:`Network.wait` before a response (one round trip per request/response exchange,
two more, TCP and TLS 1.3 handshakes, before a new connection's first response) and
:meth:`Network.send` (the body in pieces, paced to the bandwidth). Both sleep on the caller's
thread holding no lock, so concurrent requests wait side by side, and both wake on shutdown.
Never imports dagster.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: Round trips a new connection pays before its first response: the TCP handshake and a TLS 1.3
#: handshake (an HTTPS client cannot send its request before both are done).
HANDSHAKE_RTTS = 2
#: Bytes written between two pacing checks.
PIECE_BYTES = 16 * 1024


def valid_latency_ms(value: object) -> float:
    """A round-trip time in milliseconds: a finite number >= 0 (``ValueError`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"latency_ms must be a number of milliseconds >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"latency_ms must be a finite number of milliseconds >= 0, got {value}")
    return float(value)


def valid_mbps(value: object) -> float | None:
    """A bandwidth in megabits per second: a finite number > 0, or ``None`` for unpaced."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"mbps must be a number of megabits per second > 0 or null, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"mbps must be a finite number of megabits per second > 0, got {value}")
    return float(value)


@dataclass(frozen=True)
class Network:
    """What the network costs each reply; the default costs nothing (loopback)."""

    #: Round-trip time, milliseconds.
    latency_ms: float = 0.0
    #: Bandwidth of each response body, megabits per second; ``None``: unpaced.
    mbps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "latency_ms", valid_latency_ms(self.latency_ms))
        object.__setattr__(self, "mbps", valid_mbps(self.mbps))

    def as_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "mbps": self.mbps}

    def wait(self, new_connection: bool, stopping: threading.Event) -> bool:
        """Sleep the round trips before a response; ``False`` if ``stopping`` cut it short."""
        rtts = 1 + (HANDSHAKE_RTTS if new_connection else 0)
        return _sleep_until(time.monotonic() + rtts * self.latency_ms / 1000, stopping)

    def send(
        self, write: Callable[[bytes], Any], chunks: Iterable[bytes], stopping: threading.Event
    ) -> bool:
        """Write ``chunks`` so that ``n`` bytes take at least ``n * 8 / (mbps * 1e6)`` seconds.

        Each piece goes out once the bandwidth would have carried it, so the last byte arrives
        no earlier than the whole body would over this link. ``False`` if ``stopping`` cut it short.
        """
        if self.mbps is None:
            for chunk in chunks:
                write(chunk)
            return True
        seconds_per_byte = 8 / (self.mbps * 1e6)
        start, sent = time.monotonic(), 0
        for chunk in chunks:
            for offset in range(0, len(chunk), PIECE_BYTES):
                piece = chunk[offset : offset + PIECE_BYTES]
                sent += len(piece)
                if not _sleep_until(start + sent * seconds_per_byte, stopping):
                    return False
                write(piece)
        return True


def _sleep_until(deadline: float, stopping: threading.Event) -> bool:
    """Sleep until ``deadline`` (``time.monotonic``), never less; ``False`` when stopping."""
    while (left := deadline - time.monotonic()) > 0:
        if stopping.wait(left):
            return False
    return True
