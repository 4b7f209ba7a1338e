"""Each discovered instrument's life: from its first published file to the day its data stopped.

The symbol list says what trades now; the files say since when and until when. A discovered
instrument starts at its first file (earlier months are never requested), and is *closed* when
it leaves the symbol list or its files stop for :data:`STALE_DAYS`: its last month is expected
whole (the missing days are a completeness warning naming the last day) and no later month is
requested. One whose files come back is reopened. The record (:class:`Lives`) is a small JSON
document kept in the warehouse beside the tables, so the universe sensor, the new-month sensor,
the runs and the doctor read the same facts and a new Dagster instance keeps them. Never imports
dagster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta

from .api import FileInfo
from .months import Month
from .universe import EARLIEST_LISTING, Instrument
from .warehouse import Warehouse

#: An instrument still listed whose newest file is this many days behind yesterday is closed.
STALE_DAYS = 7
#: How often an open instrument's files are listed again to notice that they stopped.
RECHECK_S = 24 * 3600
LEFT_LIST = "left the symbol list"
NOT_SELECTED = "no discover rule selects it any more"
FILES_STOPPED = f"no file for {STALE_DAYS} days"
ONE_DAY = timedelta(days=1)
#: The document's name in the warehouse (``_state/l1_imbalance/instruments.json``).
LIVES_FILE = "instruments.json"


@dataclass(frozen=True)
class Life:
    """What the files said of one instrument when last asked."""

    #: First and last day with a published file (a monthly file counts to its month's end,
    #: or to yesterday in the current month). None: no file since the universe's start month.
    first_day: date | None = None
    last_day: date | None = None
    #: The first day without data, once the instrument is closed; ``reason`` says why.
    closed_since: date | None = None
    reason: str = ""
    #: When the API was last asked (epoch seconds), for :data:`RECHECK_S`.
    checked: float = 0.0

    @property
    def open(self) -> bool:
        return self.first_day is not None and self.closed_since is None

    @property
    def first_month(self) -> Month | None:
        return None if self.first_day is None else Month.of(self.first_day)

    @property
    def last_month(self) -> Month | None:
        """The month of the last day with data of a closed instrument; None while open."""
        return None if self.closed_since is None else Month.of(self.closed_since - ONE_DAY)

    def covers(self, month: Month) -> bool:
        """Whether ``month`` is in the instrument's life (worth requesting or watching)."""
        first, last = self.first_month, self.last_month
        return first is not None and first <= month and (last is None or month <= last)

    def describe(self) -> str:
        if self.first_day is None:
            return "no file since the start month"
        if self.closed_since is None:
            return f"open since {self.first_day}, files through {self.last_day}"
        return (
            f"closed since {self.closed_since} ({self.reason}); last data"
            f" {self.closed_since - ONE_DAY}"
        )


def span_of(files: Sequence[FileInfo], today: date) -> tuple[date | None, date | None]:
    """First and last day the ``files`` cover, a monthly file to its month's end (at most
    yesterday)."""
    if not files:
        return None, None
    ordered = sorted(files, key=lambda f: f.sort_key)
    first, last = ordered[0], ordered[-1]
    first_day = date(first.year, first.month, first.day or 1)
    if last.day:
        last_day = date(last.year, last.month, last.day)
    else:
        last_day = min(Month(last.year, last.month).last_day, today - ONE_DAY)
    return first_day, last_day


def probed(
    life: Life | None,
    files: Sequence[FileInfo],
    since: date,
    today: date,
    now: float,
    listed: bool,
    selected: bool,
) -> Life:
    """The life after listing an instrument's files from ``since`` to today.

    The listing is the truth from ``since`` on (files can vanish: a delisting may be dated back),
    the earlier record before it. ``listed``: the symbol is on its exchange's list;
    ``selected``: a rule still picks it. Closed when it is not, or when its newest file is
    :data:`STALE_DAYS` behind; reopened when it is and its files go on past the day it was
    closed.
    """
    seen_first, seen_last = span_of(files, today)
    old = life or Life()
    # What the record knew before ``since`` stands; the listing says the rest.
    earlier = old.first_day is not None and old.first_day < since
    first = old.first_day if earlier else seen_first
    last = seen_last or (min(old.last_day, since - ONE_DAY) if earlier and old.last_day else None)
    life = replace(old, first_day=first, last_day=last, checked=now)
    if first is None or last is None:
        # Nothing published from the start month on: not (or no longer) an instrument's life.
        closed = old.first_day is not None and old.closed_since is None
        return replace(life, closed_since=old.first_day, reason=FILES_STOPPED) if closed else life
    reason = (
        LEFT_LIST
        if not listed
        else NOT_SELECTED
        if not selected
        else FILES_STOPPED
        if last < today - ONE_DAY - timedelta(days=STALE_DAYS)
        else ""
    )
    if reason:
        # Closed on the first day without a file; an earlier closing day stands.
        kept = old.closed_since if old.closed_since and old.closed_since <= last + ONE_DAY else None
        return replace(
            life, closed_since=kept or last + ONE_DAY, reason=old.reason if kept else reason
        )
    if old.closed_since is not None and last < old.closed_since:
        # Listed again, but no file since it was closed: stays closed (earlier, if files went).
        return replace(life, closed_since=min(old.closed_since, last + ONE_DAY))
    return replace(life, closed_since=None, reason="")


class Lives:
    """Instrument key -> :class:`Life`, as stored in the warehouse (JSON, keys sorted)."""

    def __init__(self, lives: Mapping[str, Life] | None = None) -> None:
        self.by_key: dict[str, Life] = dict(lives or {})

    def __len__(self) -> int:
        return len(self.by_key)

    def get(self, key: str) -> Life | None:
        return self.by_key.get(key)

    def instrument(self, instrument: Instrument) -> Instrument:
        """``instrument`` with its first day and closing day from its life, when known."""
        life = self.by_key.get(instrument.key)
        if life is None:
            return instrument
        return replace(
            instrument,
            listed=instrument.listed or life.first_day,
            closed_since=life.closed_since,
        )

    def months(self, instrument: Instrument, months: Iterable[Month]) -> list[Month]:
        """The ``months`` in ``instrument``'s life (all of them while its life is unknown)."""
        life = self.by_key.get(instrument.key)
        return [m for m in months if life is None or life.covers(m)]

    def covering(self, instruments: Iterable[Instrument], month: Month) -> list[Instrument]:
        """The instruments whose life includes ``month`` (an unknown life: all of them)."""
        out = []
        for instrument in instruments:
            life = self.by_key.get(instrument.key)
            if life is None or life.covers(month):
                out.append(self.instrument(instrument))
        return out

    def dumps(self) -> bytes:
        rows = {
            key: {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(life).items()}
            for key, life in sorted(self.by_key.items())
        }
        return json.dumps(
            {"version": 1, "instruments": rows}, indent=1, ensure_ascii=False
        ).encode()

    @classmethod
    def loads(cls, data: bytes | None) -> Lives:
        if not data:
            return cls()
        rows = json.loads(data)["instruments"]
        dates = ("first_day", "last_day", "closed_since")
        return cls(
            {
                key: Life(
                    **{
                        k: (date.fromisoformat(v) if k in dates and v else v)
                        for k, v in row.items()
                    }
                )
                for key, row in rows.items()
            }
        )


def read_lives(warehouse: Warehouse) -> Lives:
    """The lives the universe sensor recorded in ``warehouse`` (none yet: empty)."""
    return Lives.loads(warehouse.read_state(LIVES_FILE))


def write_lives(warehouse: Warehouse, lives: Lives) -> str:
    """Store ``lives`` atomically; the document's URL."""
    return warehouse.write_state(LIVES_FILE, lives.dumps())


@dataclass(frozen=True)
class Probe:
    """One instrument whose files a universe tick lists, and what the symbol list said of it."""

    instrument: Instrument
    since: date
    listed: bool
    selected: bool


def probes(
    known: Iterable[str],
    candidates: Mapping[str, bool],
    lives: Lives,
    symbols: Mapping[str, Sequence[str]],
    start: date,
    now: float,
) -> list[Probe]:
    """What a universe tick should list, most urgent first.

    ``known``: the dimension's instrument keys; ``candidates``: what the rules select now (key
    -> the rule's ``delisted``); ``symbols``: the lists of the exchanges that answered (an
    instrument of an exchange that did not answer is left alone). First the new candidates and
    those still without a file, then known instruments the rules no longer select (to close),
    closed ones selected again (to reopen), and open ones not listed for :data:`RECHECK_S`.
    """
    lists = {exchange: set(names) for exchange, names in symbols.items()}
    first: list[Probe] = []
    later: list[Probe] = []
    for key in sorted(set(known) | set(candidates)):
        instrument = Instrument.from_key(key)
        if instrument.exchange not in lists:
            continue
        life = lives.get(key)
        selected = key in candidates
        listed = instrument.symbol in lists[instrument.exchange]
        keep = candidates.get(key, False)
        if life is None or life.first_day is None:
            if selected:
                since = EARLIEST_LISTING if keep else start
                first.append(Probe(instrument, since, listed, selected))
            continue
        closing = life.open and not (listed and selected)
        since = life.first_day if closing else max(life.first_day, _recent(life))
        probe = Probe(instrument, since, listed, selected)
        reopen = not life.open and selected and (life.reason != FILES_STOPPED or stale(life, now))
        if life.open and not selected:
            first.append(probe)
        elif reopen or (life.open and stale(life, now)):
            later.append(probe)
    return first + later


def _recent(life: Life) -> date:
    """Where a routine re-listing starts: a month before the newest file, so a withdrawal or a
    delisting dated back that far is seen."""
    return (life.last_day or life.first_day or EARLIEST_LISTING) - timedelta(days=31)


def stale(life: Life, now: float) -> bool:
    return now - life.checked >= RECHECK_S
