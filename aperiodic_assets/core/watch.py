"""Which partitions to re-materialize: published files compared with what the warehouse holds.

The new-month sensor's decisions, without Dagster. Each tick lists every instrument's recent
files (one listing per instrument covers all the months it watches); a partition is requested
when its listing names files its latest materialization was not built from (a new month, a new
day of the current month). A file can also be republished under the same name: to notice that
without fetching every file every tick, each tick checks the identity (ETag and size, from a
one-byte ranged GET) of the newest file of every partition, then of older files in rotation, as
far as the tick's time budget goes, and requests the partition when a file changed.

What was requested and did not land heals by itself. A request is settled by what happened to
it, not by a timer: its partition materialized (done), a run recorded that it failed (an
observation, with the wait the API asked for, if any), or the backfill that carried it finished
without either (the run died). A failed partition is requested again on the first tick after
its wait, then with a doubling backoff while it keeps failing (up to a day); a month rejected by
validation is not requested again until its files change. A month that was materialized and is
no longer listed is withdrawn only when a later listing, at least one sensor interval after the
first, is empty too.

The cursor holds rotation positions, requests in flight, backoffs and first empty listings; the
materializations and observations are the record of what was built from which files.
Never imports dagster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

from .api import FileInfo, FileStamp

_T = TypeVar("_T")

#: A request whose fate is still unknown after this long is settled as failed (lost).
REQUEST_EXPIRY_S = 6 * 3600.0
#: Longest wait before a partition that keeps failing is requested again.
MAX_BACKOFF_S = 24 * 3600.0
#: A second empty listing confirms a withdrawal when it comes this share of a sensor interval
#: or more after the first (ticks are at least an interval apart; evaluation start jitters).
CONFIRM_SHARE = 0.95
WITHDRAW_TOKEN = "withdraw"


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:12]


@dataclass
class InFlight:
    """A request made for a partition: for which state of its files, when, and in which
    request (the tag its backfill carries)."""

    token: str
    at: float
    request: str = ""


@dataclass
class Backoff:
    """A partition whose last request failed: how often in a row, and when to ask again."""

    failures: int
    not_before: float
    reason: str
    #: Not sooner than this, whatever else happens: the wait the API asked for (Retry-After).
    retry_at: float = 0.0
    #: The sensor itself has since seen the API fail for this partition (its listing or a
    #: probe): once a probe succeeds again, the cause has cleared and the backoff ends early.
    saw_trouble: bool = False


@dataclass
class WatchCursor:
    """Rotation positions, in-flight requests, backoffs and first empty listings; pruned every
    tick to the watched partitions."""

    next_instrument: int = 0
    #: Where the next tick's newest-file probes start: when a tick's budget ends before every
    #: partition's newest file was probed, the next tick goes on from there.
    next_newest: int = 0
    next_file: int = 0
    requested: dict[str, InFlight] = field(default_factory=dict)
    backoff: dict[str, Backoff] = field(default_factory=dict)
    empty_since: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, raw: str | None) -> WatchCursor:
        data = json.loads(raw) if raw else {}
        return cls(
            next_instrument=int(data.get("next_instrument", 0)),
            next_newest=int(data.get("next_newest", 0)),
            next_file=int(data.get("next_file", 0)),
            requested={
                k: InFlight(v[0], float(v[1]), str(v[2]) if len(v) > 2 else "")
                for k, v in data.get("requested", {}).items()
            },
            backoff={k: Backoff(**v) for k, v in data.get("backoff", {}).items()},
            empty_since={k: float(v) for k, v in data.get("empty_since", {}).items()},
        )

    def dump(self) -> str:
        requested = {
            k: [v.token, round(v.at, 1), v.request] for k, v in sorted(self.requested.items())
        }
        return json.dumps(
            {
                "next_instrument": self.next_instrument,
                "next_newest": self.next_newest,
                "next_file": self.next_file,
                "requested": requested,
                "backoff": {k: asdict(v) for k, v in sorted(self.backoff.items())},
                "empty_since": {k: round(v, 1) for k, v in sorted(self.empty_since.items())},
            },
            separators=(",", ":"),
        )

    def request_ids(self) -> set[str]:
        """The requests still in flight, to ask the instance which of them finished."""
        return {f.request for f in self.requested.values() if f.request}


@dataclass(frozen=True)
class Materialized:
    """What a partition's latest materialization was built from: file label -> token."""

    files: Mapping[str, str]
    at: float
    #: The closing day it was built with (``closed_since`` metadata), if any.
    closed_since: str | None = None


@dataclass(frozen=True)
class Failed:
    """A partition's latest failed attempt, as its run recorded it."""

    at: float
    #: Rejected by validation (wrong data): only changed files can help.
    rejected: bool
    #: For a rejection, the files it was built from (label -> token).
    files: Mapping[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Watched:
    """One partition this tick: its listed files, latest materialization and failure, if any."""

    key: str
    files: Sequence[FileInfo]
    materialized: Materialized | None
    failed: Failed | None = None
    #: The instrument's recorded closing day when this is its last month: the month must be
    #: built with it (the universe sensor may record a delisting after the month was rebuilt
    #: from the shortened listing).
    closing: str | None = None

    @property
    def unmarked_close(self) -> bool:
        """Built without the closing its instrument has since been recorded with."""
        m = self.materialized
        return self.closing is not None and m is not None and m.closed_since != self.closing

    @property
    def rejected(self) -> Failed | None:
        """The rejection that is the partition's latest word, if any."""
        f = self.failed
        if f is None or not f.rejected:
            return None
        return f if self.materialized is None or f.at > self.materialized.at else None

    @property
    def reference(self) -> Mapping[str, str] | None:
        """What the listing is compared with: the files of the latest rejection or
        materialization; None when neither exists."""
        if self.rejected is not None:
            return self.rejected.files
        return None if self.materialized is None else self.materialized.files


@dataclass(frozen=True)
class Request:
    key: str
    token: str
    reason: str


@dataclass
class Plan:
    """The outcome of comparing listings with materializations, before any identity probe."""

    requests: list[Request]
    #: Months confirmed withdrawn: requested apart, so their run may move the file away.
    withdrawals: list[Request]
    #: Files of partitions whose listing matches their materialization: identity candidates,
    #: the newest file of each partition first, then the others from the rotation position.
    probes: list[tuple[Watched, FileInfo]]
    unpublished: int
    up_to_date: int
    in_flight: int
    older_files: int
    #: Partitions that need work but wait (backoff or the API's Retry-After): key -> reason.
    waiting: dict[str, str] = field(default_factory=dict)
    #: Of those, the ones to probe first: a probe that succeeds where the sensor saw the API
    #: fail before ends their wait (see :func:`cleared`). Each with the request it would make.
    rechecks: list[tuple[Watched, FileInfo, Request]] = field(default_factory=list)
    #: Partitions rejected by validation whose listed files are the rejected ones.
    rejected: int = 0
    #: Materialized partitions listed empty for the first time (not withdrawn yet).
    empty_once: int = 0


def settle_in_flight(
    cursor: WatchCursor,
    watched: Sequence[Watched],
    finished: Collection[str],
    now: float,
    interval_s: float,
) -> list[str]:
    """End the requests whose fate is known: landed, failed (recorded), or lost (their backfill
    finished without a word, or nothing was heard for REQUEST_EXPIRY_S). Failures get a backoff.
    Returns one line per failed request, for the tick's log."""
    lines = []
    for w in watched:
        flight = cursor.requested.get(w.key)
        if flight is None:
            continue
        if w.materialized is not None and w.materialized.at > flight.at:
            del cursor.requested[w.key]
            cursor.backoff.pop(w.key, None)
            continue
        failed = w.failed if w.failed is not None and w.failed.at > flight.at else None
        lost = flight.request in finished or now - flight.at >= REQUEST_EXPIRY_S
        if failed is None and not lost:
            continue
        del cursor.requested[w.key]
        backoff = _next_backoff(cursor.backoff.get(w.key), failed, now, interval_s)
        cursor.backoff[w.key] = backoff
        lines.append(f"{w.key}: {backoff.reason}")
    return lines


def _next_backoff(
    previous: Backoff | None, failed: Failed | None, now: float, interval_s: float
) -> Backoff:
    failures = (previous.failures if previous else 0) + 1
    if failed is not None and failed.rejected:
        # Only new files help, and the listing comparison waits for them: no timer needed.
        return Backoff(failures, failed.at, "rejected by validation; waiting for changed files")
    at = failed.at if failed is not None else now
    delay = 0.0 if failures == 1 else min(interval_s * 2 ** (failures - 2), MAX_BACKOFF_S)
    asked = (failed.retry_after_s or 0.0) if failed is not None else 0.0
    not_before = at + max(delay, asked)
    cause = "failed" if failed is not None else "its run ended without materializing it"
    wait = f"the API asked to wait {asked:.0f}s; " if asked > delay else ""
    return Backoff(
        failures,
        not_before,
        f"{cause} ({failures} in a row); {wait}next request not before"
        f" {not_before - at:.0f}s after the failure, or once the API answers again",
        retry_at=at + asked,
    )


def _gate(cursor: WatchCursor, key: str, now: float) -> str | None:
    """Why a partition that needs work waits, or None when it may be requested now."""
    backoff = cursor.backoff.get(key)
    if backoff is None or now >= backoff.not_before:
        return None
    return f"{backoff.reason} ({backoff.not_before - now:.0f}s left)"


def _in_flight(cursor: WatchCursor, key: str) -> bool:
    """A request for the partition is still out. Whatever changed since (a new day, a file
    republished or found changed by a later probe) waits for it: the run lists the files when
    it starts, and once it lands the next tick compares again, so asking twice could only
    build the same files twice."""
    return key in cursor.requested


def plan(
    watched: Sequence[Watched], cursor: WatchCursor, now: float, interval_s: float = 3600.0
) -> Plan:
    """Requests for partitions whose file names changed, and the identity probes to make."""
    out = Plan([], [], [], 0, 0, 0, 0)
    newest: list[tuple[Watched, FileInfo]] = []
    older: list[tuple[Watched, FileInfo]] = []
    for w in watched:
        if not w.files:
            _unlisted(w, cursor, now, interval_s, out)
            continue
        cursor.empty_since.pop(w.key, None)
        labels = [f.label for f in w.files]
        reference = w.reference
        changed = reference is None or set(labels) != set(reference)
        unmarked = w.unmarked_close and w.rejected is None
        if changed or unmarked:
            token = "files:" + _digest(labels) + (f":closed:{w.closing}" if unmarked else "")
            if _in_flight(cursor, w.key):
                out.in_flight += 1
                continue
            reason = (
                _reason(w, labels)
                if changed
                else f"instrument closed since {w.closing}, recorded after this month was built"
            )
            request = Request(w.key, token, reason)
            waits = _gate(cursor, w.key, now) if w.rejected is None else None
            if waits is not None:
                out.waiting[w.key] = waits
                out.rechecks.append((w, max(w.files, key=lambda f: f.sort_key), request))
                continue
            out.requests.append(request)
            continue
        if w.rejected is not None:
            out.rejected += 1
        else:
            out.up_to_date += 1
        ordered = sorted(w.files, key=lambda f: f.sort_key)
        newest.append((w, ordered[-1]))
        older += [(w, f) for f in ordered[:-1]]
    out.probes = rotated(newest, cursor.next_newest) + rotated(older, cursor.next_file)
    out.older_files = len(older)
    return out


def probed(cursor: WatchCursor, plan: Plan, started: int) -> None:
    """Move both probe rotations past the ``started`` probes of ``plan``: the next tick starts
    with the newest files this one did not reach, then the older files after the last one it
    did."""
    newest = plan.up_to_date + plan.rejected
    cursor.next_newest += min(started, newest)
    cursor.next_file += max(0, started - newest)


def rotated(items: Sequence[_T], start: int) -> list[_T]:
    """``items`` from position ``start`` (modulo their number) round to the one before it."""
    start = start % len(items) if items else 0
    return list(items[start:]) + list(items[:start])


def _reason(w: Watched, labels: Sequence[str]) -> str:
    built_from = set(w.reference or ())
    new = sorted(set(labels) - built_from)
    if w.reference is None:
        return "first materialization" if w.failed is None else "again after a failed attempt"
    prefix = "rejected month, " if w.rejected is not None else ""
    if new:
        return f"{prefix}{len(new)} new file(s), newest {new[-1]}"
    return f"{prefix}files withdrawn"


def _unlisted(w: Watched, cursor: WatchCursor, now: float, interval_s: float, out: Plan) -> None:
    """A partition with no listed file: unpublished, or a withdrawal to confirm."""
    if w.materialized is None or not w.materialized.files:
        out.unpublished += 1  # never published, or already recorded as withdrawn
        cursor.empty_since.pop(w.key, None)
        return
    first = cursor.empty_since.setdefault(w.key, now)
    if now - first < CONFIRM_SHARE * interval_s:
        out.empty_once += 1
        return
    if _in_flight(cursor, w.key):
        out.in_flight += 1
        return
    out.withdrawals.append(
        Request(
            w.key,
            WITHDRAW_TOKEN,
            f"withdrawn: no file listed since {now - first:.0f}s ago (two listings)",
        )
    )


def republished(
    probed: Iterable[tuple[Watched, FileStamp]], cursor: WatchCursor, now: float
) -> tuple[list[Request], dict[str, str]]:
    """Requests for partitions where a probed file's identity differs from what was built (or
    rejected), and the partitions among them that wait for a backoff (key -> reason)."""
    changed: dict[str, list[str]] = {}
    rejected: set[str] = set()
    for w, stamp in probed:
        reference = w.reference or {}
        if reference.get(stamp.label) != stamp.token:
            changed.setdefault(w.key, []).append(f"{stamp.label}={stamp.token}")
            if w.rejected is not None:
                rejected.add(w.key)
    requests, waiting = [], {}
    for key, files in sorted(changed.items()):
        token = "republished:" + _digest(files)
        if _in_flight(cursor, key):
            continue
        waits = _gate(cursor, key, now) if key not in rejected else None
        if waits is not None:
            waiting[key] = waits
            continue
        labels = ", ".join(f.split("=")[0] for f in sorted(files))
        requests.append(Request(key, token, f"republished: {labels}"))
    return requests, waiting


def cleared(
    rechecked: Iterable[tuple[tuple[Watched, FileInfo, Request], FileStamp | Exception]],
    cursor: WatchCursor,
    now: float,
) -> list[Request]:
    """Partitions waiting after a failure whose cause has cleared: the sensor saw the API fail
    for them since (a failed probe or listing, see :func:`saw_trouble`) and its probe of their
    newest file succeeds now. They are requested at once (never before a Retry-After), so an
    outage ends with the first tick after it; a partition that fails while the API answers the
    sensor keeps its backoff."""
    requests = []
    for (w, _, request), result in rechecked:
        backoff = cursor.backoff.get(w.key)
        if backoff is None:
            continue
        if isinstance(result, Exception):
            backoff.saw_trouble = True
        elif backoff.saw_trouble and now >= backoff.retry_at:
            requests.append(
                Request(w.key, request.token, f"the API answers again; {request.reason}")
            )
    return requests


def saw_trouble(cursor: WatchCursor, keys: Iterable[str]) -> None:
    """The sensor could not list these partitions (the API failed): their failures are the
    API's, so a later successful probe ends their backoff."""
    for key in keys:
        if key in cursor.backoff:
            cursor.backoff[key].saw_trouble = True


def settle(
    cursor: WatchCursor,
    watched: Sequence[Watched],
    requests: Sequence[Request],
    watched_keys: set[str],
    now: float,
    request_id: str = "",
) -> None:
    """Record this tick's requests; forget what left the look-back or landed."""
    landed_at = {w.key: w.materialized.at for w in watched if w.materialized is not None}
    for key, flight in list(cursor.requested.items()):
        if key not in watched_keys or landed_at.get(key, 0.0) > flight.at:
            del cursor.requested[key]
    for table in (cursor.backoff, cursor.empty_since):
        for key in [k for k in table if k not in watched_keys]:
            del table[key]
    for r in requests:
        cursor.requested[r.key] = InFlight(r.token, now, request_id)
