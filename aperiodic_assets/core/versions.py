"""Which upstream data a downstream partition was built from, and whether that is still current.

Dagster's own staleness stops following partitioned upstreams past 100 partitions (it skips the
data-version comparison above ``SKIP_PARTITION_DATA_VERSION_DEPENDENCY_THRESHOLD``), and an asset
over every instrument of a month has one upstream partition per instrument. So such an asset
records the data version of every upstream partition it read, and comparing that record with the
upstream's latest versions says at any universe size whether it is current, and what changed.
Never imports dagster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

#: Characters of each data version (a SHA-256 in hex) kept in the record: enough to tell two
#: builds of one partition apart, small enough for 1,500 instruments in one metadata entry.
SHOWN = 16


def recorded(versions: Mapping[str, str]) -> dict[str, str]:
    """The record of ``versions`` (partition key -> data version), keys sorted, versions cut."""
    return {key: versions[key][:SHOWN] for key in sorted(versions)}


def fingerprint(versions: Mapping[str, str]) -> str:
    """One digest of a record: equal records, equal fingerprints."""
    text = "\n".join(f"{key}={version[:SHOWN]}" for key, version in sorted(versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Drift:
    """How the upstream moved since a record: partitions changed, new and gone."""

    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def current(self) -> bool:
        return not (self.changed or self.added or self.removed)

    def describe(self, shown: int = 5) -> str:
        if self.current:
            return "built from the latest data of every upstream partition"
        parts = []
        for what, keys in (("changed", self.changed), ("new", self.added), ("gone", self.removed)):
            if keys:
                more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
                parts.append(f"{len(keys)} {what} ({', '.join(keys[:shown])}{more})")
        return "upstream moved since it was built: " + "; ".join(parts)


def drift(record: Mapping[str, str], latest: Mapping[str, str]) -> Drift:
    """What differs between a record and the upstream's latest data versions."""
    now = recorded(latest)
    return Drift(
        changed=tuple(k for k in sorted(record) if k in now and now[k] != record[k]),
        added=tuple(k for k in sorted(now) if k not in record),
        removed=tuple(k for k in sorted(record) if k not in now),
    )
