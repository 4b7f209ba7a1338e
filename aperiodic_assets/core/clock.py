"""The one place the package reads the date: what "today" and "now" are, in UTC.

Which month is current, whether a month is over, how far a month is expected to reach: all of it
follows this clock. It is the real UTC clock unless ``APERIODIC_NOW`` says otherwise, so a
process can be run as of another instant (a replay, a demo on a chosen date, a test that moves
days forward while a daemon runs):

- ``APERIODIC_NOW=2027-01-01T00:20:00`` fixes the instant (UTC when no zone is given);
- ``APERIODIC_NOW=@/path/to/file`` reads the instant from that file at every call, so another
  process can move the clock of a running daemon, its code servers and its run workers at once.

Never imports dagster.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

ENV = "APERIODIC_NOW"


def now() -> datetime:
    """The current instant, timezone-aware UTC."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return datetime.now(UTC)
    source = f"{ENV}={raw}"
    if raw.startswith("@"):
        path = Path(raw[1:])
        try:
            raw = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"{source}: cannot read the clock file ({exc.strerror})") from None
        source = f"{source} (file content {raw!r})"
    try:
        instant = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"{source} is not an ISO instant such as 2027-01-01T00:20:00; unset it to use the"
            " real clock"
        ) from None
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def today() -> date:
    """The current UTC date."""
    return now().date()
