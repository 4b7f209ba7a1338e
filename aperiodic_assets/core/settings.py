"""Settings read from the environment, checked where they are read, with the variable's name in
every error.

A deployment's mistakes (``APERIODIC_SENSOR_INTERVAL_S=1h``, ``WAREHOUSE_URL=s3:/bucket``)
should stop the code location at start-up with a message naming the variable, its value and what
is expected, not surface later as a bare ``invalid literal for int()`` or as a warehouse written
to a local folder called ``s3:``. Pure: reads ``os.environ`` only when asked; never imports
dagster.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

_N = TypeVar("_N", int, float)

#: Units named by a variable's suffix, for the error message (``..._S`` counts seconds).
_UNITS = {"_S": "seconds", "_MONTHS": "months", "_BYTES": "bytes"}
#: ``scheme:`` at the start of a value: a URL, or an attempt at one.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
#: S3 bucket naming rules (3-63 characters: lowercase letters, digits, dots, hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: One cron field: numbers, names, ranges, steps and lists (``*/15``, ``1-5``, ``MON``).
_CRON_FIELD = re.compile(r"[0-9A-Za-z*?/,\-#LW]+")
_TEAM = re.compile(r"team:[A-Za-z0-9_-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
#: Where the warehouse may live: the two storages it is tested on (local folders and S3).
WAREHOUSE_SCHEMES = ("file", "s3")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """The whole number in variable ``name`` (``default`` when unset or empty)."""
    return _env_number(name, default, int, "a whole number", minimum, environ)


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> float:
    """The number in variable ``name`` (``default`` when unset or empty)."""
    return _env_number(name, default, float, "a number", minimum, environ)


def _env_number(
    name: str,
    default: _N,
    parse: Callable[[str], _N],
    kind: str,
    minimum: _N | None,
    environ: Mapping[str, str] | None,
) -> _N:
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    of_unit = next((f" of {u}" for suffix, u in _UNITS.items() if name.endswith(suffix)), "")
    try:
        value = parse(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
    except ValueError:
        raise ValueError(
            f"{name}={raw!r} is not {kind}{of_unit}"
            f" (e.g. {name}={default}, the default); set it to a plain number or unset it"
        ) from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum}")
    return value


def env_cron(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    """The cron expression in variable ``name``: five fields (minute hour day month weekday)."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    return check_cron(raw, f"{name}={raw!r}", f"{name}={default!r}") if raw else default


def check_cron(raw: str, where: str, example: str) -> str:
    """``raw`` if it is a cron expression of five fields, else ValueError naming ``where``."""
    fields = raw.split()
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        raise ValueError(
            f"{where} is not a cron expression of five fields (minute hour day month weekday),"
            f" e.g. {example}, the default"
        )
    return raw


def env_owners(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> list[str]:
    """Comma-separated owners in variable ``name``: ``team:name`` or email addresses."""
    raw = (os.environ if environ is None else environ).get(name, "").strip() or default
    owners = [o.strip() for o in raw.split(",") if o.strip()]
    return check_owners(owners, f"{name}={raw!r}", f"{name}=team:data-platform,ops@example.com")


def check_owners(owners: list[str], where: str, example: str) -> list[str]:
    """``owners`` if each is ``team:name`` or an email address, else ValueError naming
    ``where``."""
    wrong = [o for o in owners if not (_TEAM.fullmatch(o) or _EMAIL.fullmatch(o))]
    if wrong or not owners:
        raise ValueError(
            f"{where}: {', '.join(repr(o) for o in wrong) or 'nothing'} is not an owner;"
            f" give team:name or email addresses, e.g. {example}"
        )
    return owners


def check_warehouse_url(url: str, name: str = "WAREHOUSE_URL") -> str:
    """``url`` if it names a warehouse this package can use, else ValueError saying what is wrong.

    Accepted: a local folder (relative or absolute), ``file:///absolute/path`` and
    ``s3://bucket[/prefix]``. Refused, because each looks like a typo that would otherwise
    quietly become a local folder or fail at the first write: a scheme with one slash or none
    (``s3:/bucket``, ``s3:bucket``), an uppercase scheme (``S3://``), an S3 bucket name S3 would
    refuse, surrounding spaces, and every other scheme (``gs://``, ``memory://``...: the
    warehouse is built and tested on local folders and S3 only; ``memory://`` would also vanish
    with each run's process).
    """
    where = f"{name}={url!r}"
    if not url.strip():
        raise ValueError(
            f"{where} is empty; unset it for ./warehouse or give a folder or s3:// URL"
        )
    if url != url.strip():
        raise ValueError(f"{where} has leading or trailing spaces; remove them")
    match = _SCHEME.match(url)
    if match is None:
        return url  # a local path
    scheme, rest = match[1], url[match.end() :]
    lowered = scheme.lower()
    if not rest.startswith("//"):
        raise ValueError(
            f"{where} starts like a URL but {scheme}: is not followed by //; did you mean"
            f" {lowered}://{rest.lstrip('/')}? (For a local folder whose name contains ':',"
            f" write ./{url}.)"
        )
    if scheme != lowered and lowered in WAREHOUSE_SCHEMES:
        raise ValueError(f"{where}: URL schemes are lowercase here; write {lowered}://{rest[2:]}")
    if scheme not in WAREHOUSE_SCHEMES:
        raise ValueError(
            f"{where}: {scheme}:// is not a supported warehouse; use a local folder, file:///path"
            " or s3://bucket/prefix (S3-compatible stores through AWS_ENDPOINT_URL)"
        )
    location = rest[2:]
    if scheme == "file" and not location.startswith("/"):
        raise ValueError(
            f"{where}: a file URL takes an absolute path after file:// (file:///data/warehouse);"
            " or give the folder itself"
        )
    if scheme == "s3":
        bucket = location.split("/", 1)[0]
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValueError(
                f"{where}: {bucket!r} is not a valid S3 bucket name (3-63 characters: lowercase"
                " letters, digits, dots and hyphens); expected s3://bucket/prefix"
            )
    return url
