"""Which partitions to re-materialize: published files compared with what the warehouse holds.

The new-month sensor's decisions, without Dagster. Each tick lists every instrument's recent
files (one listing per instrument covers all the months it watches); a partition is requested
when its listing names files its latest materialization was not built from (a new month, a new
day of the current month). A file can also be republished under the same name: to notice that
without fetching every file every tick, each tick checks the identity (ETag and size, from a
one-byte ranged GET) of the newest file of every partition, then of older files in rotation, as
far as the tick's time budget goes, and requests the partition when a file changed.

The cursor holds only the rotation positions and the requests still in flight (so a backfill
that has not landed yet is not requested again); the materializations are the record of what
was built from which files. Never imports dagster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .api import FileInfo, FileStamp

#: A request that has not landed after this long is made again (its run failed or was lost).
REQUEST_EXPIRY_S = 6 * 3600.0


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:12]


@dataclass
class InFlight:
    """A request made for a partition: for which state of its files, and when."""

    token: str
    at: float


@dataclass
class WatchCursor:
    """Rotation positions and in-flight requests; small (pruned every tick)."""

    next_instrument: int = 0
    next_file: int = 0
    requested: dict[str, InFlight] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> WatchCursor:
        data = json.loads(raw) if raw else {}
        return cls(
            next_instrument=int(data.get("next_instrument", 0)),
            next_file=int(data.get("next_file", 0)),
            requested={
                k: InFlight(t, float(at)) for k, (t, at) in data.get("requested", {}).items()
            },
        )

    def dump(self) -> str:
        requested = {k: [v.token, round(v.at, 1)] for k, v in sorted(self.requested.items())}
        return json.dumps(
            {
                "next_instrument": self.next_instrument,
                "next_file": self.next_file,
                "requested": requested,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Materialized:
    """What a partition's latest materialization was built from: file label -> token."""

    files: Mapping[str, str]
    at: float


@dataclass(frozen=True)
class Watched:
    """One partition this tick: its listed files and its latest materialization, if any."""

    key: str
    files: Sequence[FileInfo]
    materialized: Materialized | None


@dataclass(frozen=True)
class Request:
    key: str
    token: str
    reason: str


@dataclass
class Plan:
    """The outcome of comparing listings with materializations, before any identity probe."""

    requests: list[Request]
    #: Files of partitions whose listing matches their materialization: identity candidates,
    #: the newest file of each partition first, then the others from the rotation position.
    probes: list[tuple[Watched, FileInfo]]
    unpublished: int
    up_to_date: int
    in_flight: int
    older_files: int


def _in_flight(cursor: WatchCursor, key: str, token: str, now: float) -> bool:
    previous = cursor.requested.get(key)
    return previous is not None and previous.token == token and now - previous.at < REQUEST_EXPIRY_S


def plan(watched: Sequence[Watched], cursor: WatchCursor, now: float) -> Plan:
    """Requests for partitions whose file names changed, and the identity probes to make."""
    requests: list[Request] = []
    newest: list[tuple[Watched, FileInfo]] = []
    older: list[tuple[Watched, FileInfo]] = []
    unpublished = up_to_date = in_flight = 0
    for w in watched:
        if not w.files:
            unpublished += 1
            continue
        labels = [f.label for f in w.files]
        built_from = set(w.materialized.files) if w.materialized else set()
        if set(labels) != built_from:
            token = "files:" + _digest(labels)
            if _in_flight(cursor, w.key, token, now):
                in_flight += 1
                continue
            new = sorted(set(labels) - built_from)
            reason = (
                "first materialization"
                if w.materialized is None
                else f"{len(new)} new file(s), newest {new[-1]}"
                if new
                else "files withdrawn"
            )
            requests.append(Request(w.key, token, reason))
            continue
        up_to_date += 1
        ordered = sorted(w.files, key=lambda f: f.sort_key)
        newest.append((w, ordered[-1]))
        older += [(w, f) for f in ordered[:-1]]
    start = cursor.next_file % len(older) if older else 0
    rotation = older[start:] + older[:start]
    return Plan(requests, newest + rotation, unpublished, up_to_date, in_flight, len(older))


def republished(
    probed: Iterable[tuple[Watched, FileStamp]], cursor: WatchCursor, now: float
) -> list[Request]:
    """Requests for partitions where a probed file's identity differs from what was built."""
    changed: dict[str, list[str]] = {}
    for w, stamp in probed:
        assert w.materialized is not None
        if w.materialized.files.get(stamp.label) != stamp.token:
            changed.setdefault(w.key, []).append(f"{stamp.label}={stamp.token}")
    requests = []
    for key, files in sorted(changed.items()):
        token = "republished:" + _digest(files)
        if not _in_flight(cursor, key, token, now):
            labels = ", ".join(f.split("=")[0] for f in sorted(files))
            requests.append(Request(key, token, f"republished: {labels}"))
    return requests


def settle(
    cursor: WatchCursor,
    watched: Sequence[Watched],
    requests: Sequence[Request],
    watched_keys: set[str],
    now: float,
) -> None:
    """Record this tick's requests; forget requests that landed, expired or left the look-back."""
    landed_at = {w.key: w.materialized.at for w in watched if w.materialized is not None}
    for key, flight in list(cursor.requested.items()):
        if (
            key not in watched_keys
            or landed_at.get(key, 0.0) > flight.at
            or now - flight.at >= REQUEST_EXPIRY_S
        ):
            del cursor.requested[key]
    for r in requests:
        cursor.requested[r.key] = InFlight(r.token, now)
