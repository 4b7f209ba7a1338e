"""AperiodicClient: the HTTP client for the Aperiodic data API.

Owns listing a month's files, downloading them through presigned URLs, and every way that can
go wrong: retries with backoff and ``Retry-After`` (tenacity), an overall time budget, expired
URLs (re-listed once), truncated or oversize bodies, undecodable Parquet and foreign hosts.
It never imports dagster, and never lets the API key or a URL's query string (the presigned
signature) into a log line or an exception message.
"""

from __future__ import annotations

import email.utils
import fnmatch
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from .months import Month
from .schema import METRIC
from .universe import Instrument

DEFAULT_API_URL = "https://aperiodic.io/api/v1"
DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = ("*.aperiodic.io", "aperiodic.io")
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_CHUNK = 1 << 16

log = logging.getLogger(__name__)
_QUERY = re.compile(r"\?[^\s\"']*")


class _RedactQueryStrings(logging.Filter):
    """urllib3 logs request lines with the full URL at DEBUG: drop query strings (signatures)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = _QUERY.sub("?<redacted>", message), ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactQueryStrings())


# --------------------------------------------------------------------------------------- errors
class AperiodicError(Exception):
    """Base of every error this client raises; messages are safe to log (no secrets)."""

    #: Whether trying the same call again later can help (drives Dagster's retry policy).
    transient = False


class ApiError(AperiodicError):
    """The API answered with an error that retrying will not fix (4xx)."""

    hint = "check the request parameters"

    def __init__(
        self, status: int, error: str, details: list[str], code: str | None, where: str
    ) -> None:
        self.status, self.error, self.details, self.code = status, error, details, code
        detail = f" ({'; '.join(details)})" if details else ""
        code_part = f" [{code}]" if code else ""
        super().__init__(f"{where}: HTTP {status}{code_part}: {error}{detail}. {self.hint}")


class AuthError(ApiError):
    hint = "Check APERIODIC_API_KEY: it is missing, wrong or not entitled to this dataset."


class BadRequestError(ApiError):
    hint = "Check the instrument in universe.yaml (interval, exchange, timestamp mode) and dates."


class NotFoundError(ApiError):
    hint = "Check the symbol (Atlas symbology, e.g. perpetual-BTC-USDT:USDT) and the exchange."


class TransientError(AperiodicError):
    """Rate limits, 5xx, resets, timeouts and short bodies that outlasted every retry."""

    transient = True


class UrlExpiredError(AperiodicError):
    """A presigned URL was refused (403) even after the file list was requested again."""

    transient = True


class DisallowedHostError(AperiodicError):
    """The file list pointed at a host outside the allow-list; no request was made to it."""


class DownloadRejectedError(AperiodicError):
    """A file is larger than allowed or is not decodable Parquet after a second try."""


class _ShortBody(Exception):
    """A body ended before its Content-Length: retried, and reported as transient at the end."""


class _CorruptParquet(Exception):
    """A body of the announced length that Parquet cannot decode: retried once."""


class _Expired(Exception):
    """403 on a presigned URL: the caller must list the files again."""


# ------------------------------------------------------------------------------------ data types
def redact(url: str) -> str:
    """``host/path`` of a URL, without scheme credentials or the query string (the signature)."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{(':' + str(parts.port)) if parts.port else ''}{parts.path}"


@dataclass(frozen=True)
class FileInfo:
    """One entry of the file list; ``day`` is set for daily files."""

    year: int
    month: int
    day: int | None
    url: str = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}" + (f"-{self.day:02d}" if self.day else "")

    @property
    def location(self) -> str:
        return redact(self.url)

    @property
    def sort_key(self) -> tuple[int, int, int]:
        """Monthly file first, then the month's daily files, as Aperiodic serves them."""
        return (self.year, self.month, self.day or 0)


@dataclass(frozen=True)
class SourceFile:
    """A downloaded, length-checked, decodable source file."""

    info: FileInfo
    data: bytes = field(repr=False)
    table: pa.Table = field(repr=False)
    etag: str | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class FileStamp:
    """What identifies a published file without downloading it: a republished file differs."""

    label: str
    etag: str
    size: int
    last_modified: str


def files_identity(files: Iterable[tuple[str, str, int]]) -> str:
    """A short digest of a month's files as (label, ETag, size): changes when one is republished.

    The sensor computes it from HEAD requests, the asset from what it downloaded, so a partition
    materialized from the same files is recognised without downloading anything.
    """
    text = "\n".join(f"{label} {etag.strip(chr(34))} {size}" for label, etag, size in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RetryConfig:
    """Bounds on how hard the client tries; tests shrink them so nothing sleeps for long."""

    max_attempts: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    jitter_s: float = 1.0
    retry_after_max_s: float = 60.0
    budget_s: float = 300.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0


# ----------------------------------------------------------------------------------- the client
class AperiodicClient:
    """List and download l1_imbalance files for one instrument and month."""

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        api_key: str = "",
        *,
        retry: RetryConfig | None = None,
        allowed_hosts: Iterable[str] = DEFAULT_ALLOWED_HOSTS,
        max_file_bytes: int = 512 * 1024 * 1024,
        max_concurrent_downloads: int = 4,
        client_tag: str | None = None,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self.retry = retry or RetryConfig()
        api_host = urlsplit(self.api_url).hostname or ""
        self.allowed_hosts = tuple(allowed_hosts) + (api_host,)
        self.max_file_bytes = max_file_bytes
        self.max_concurrent_downloads = max(1, max_concurrent_downloads)
        self.log = logger or log
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "aperiodic-assets"
        if client_tag:
            self._session.headers["X-Client-Tag"] = client_tag

    def __repr__(self) -> str:  # never show the key
        return f"AperiodicClient(api_url={self.api_url!r})"

    def close(self) -> None:
        self._session.close()

    # ---------------------------------------------------------------------------------- listing
    def list_files(self, instrument: Instrument, start: date, end: date) -> list[FileInfo]:
        """Files overlapping ``[start, end]`` (inclusive), in chronological order."""
        params = {
            "timestamp": instrument.timestamp,
            "interval": instrument.interval,
            "exchange": instrument.exchange,
            "symbol": instrument.symbol,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
        }
        url = f"{self.api_url}/data/{METRIC}"
        where = f"list {instrument.key} {start}..{end}"

        def attempt() -> list[FileInfo]:
            response = self._get(url, where, params=params, headers={"X-API-KEY": self._api_key})
            with response:
                self._raise_for_status(response, where)
                try:
                    body = response.json()
                    files = [
                        FileInfo(int(f["year"]), int(f["month"]), f.get("day"), str(f["url"]))
                        for f in body["files"]
                    ]
                except (ValueError, KeyError, TypeError) as exc:
                    raise TransientError(
                        f"{where}: the API answered 200 with an unreadable file list ({exc})"
                    ) from None
            return sorted(files, key=lambda f: f.sort_key)

        return self._retrying(where, attempt)

    def list_month(self, instrument: Instrument, month: Month) -> list[FileInfo]:
        """The files that make up ``month``: one monthly file, daily files, or both."""
        files = self.list_files(instrument, month.first_day, month.last_day)
        return [f for f in files if (f.year, f.month) == (month.year, month.month)]

    def probe_month(self, instrument: Instrument, month: Month) -> list[FileStamp]:
        """ETag, size and Last-Modified of each file of ``month`` (one listing, HEAD requests).

        Cheap enough for a sensor: nothing is downloaded. Empty when nothing is published.
        """
        files = self.list_month(instrument, month)
        for f in files:
            self._check_host(f)
        workers = max(1, min(self.max_concurrent_downloads, len(files)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self._stamp, files))

    def _stamp(self, info: FileInfo) -> FileStamp:
        where = f"probe {info.label} at {info.location}"

        def attempt() -> FileStamp:
            response = self._get(info.url, where, method="HEAD")
            with response:
                if response.status_code == 403:
                    raise _Retryable(403, None)  # expired between listing and probe: rare, retry
                self._raise_for_status(response, where)
                headers = response.headers
                return FileStamp(
                    label=info.label,
                    etag=headers.get("ETag", "").strip('"'),
                    size=int(headers.get("Content-Length") or 0),
                    last_modified=headers.get("Last-Modified", ""),
                )

        return self._retrying(where, attempt)

    # -------------------------------------------------------------------------------- downloads
    def fetch_month(self, instrument: Instrument, month: Month) -> list[SourceFile]:
        """Download every file of ``month``; an expired URL triggers one fresh listing."""
        files = self.list_month(instrument, month)
        if not files:
            return []
        done, expired = self._download_all(files)
        if expired:
            self.log.warning(
                "%s %s: %d presigned URL(s) expired or were refused; listing the files again",
                instrument.key,
                month,
                len(expired),
            )
            fresh = {f.label: f for f in self.list_month(instrument, month)}
            retry = [fresh[f.label] for f in expired if f.label in fresh]
            again, still_expired = self._download_all(retry)
            done += again
            missing = [f.label for f in expired if f.label not in fresh]
            if still_expired or missing:
                labels = [f.label for f in still_expired] + missing
                raise UrlExpiredError(
                    f"{instrument.key} {month}: download URL(s) for {labels} were refused"
                    " (HTTP 403) twice, also after listing the files again. The clock of this"
                    " machine may be off, or the API is handing out URLs that are already"
                    " expired; retry later."
                )
        return sorted(done, key=lambda s: s.info.sort_key)

    def _download_all(self, files: list[FileInfo]) -> tuple[list[SourceFile], list[FileInfo]]:
        for f in files:
            self._check_host(f)
        done: list[SourceFile] = []
        expired: list[FileInfo] = []
        workers = min(self.max_concurrent_downloads, len(files))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for info, result in zip(files, pool.map(self._download_or_expired, files), strict=True):
                if result is None:
                    expired.append(info)
                else:
                    done.append(result)
        return done, expired

    def _download_or_expired(self, info: FileInfo) -> SourceFile | None:
        try:
            return self.download(info)
        except _Expired:
            return None

    def _check_host(self, info: FileInfo) -> None:
        parts = urlsplit(info.url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not any(
            fnmatch.fnmatch(host, pattern) for pattern in self.allowed_hosts
        ):
            raise DisallowedHostError(
                f"file {info.label}: the file list points at {parts.scheme}://{host}, which is not"
                f" an allowed download host ({', '.join(self.allowed_hosts)}); nothing was"
                " downloaded. If this host is legitimate, add it to allowed_hosts."
            )

    def download(self, info: FileInfo) -> SourceFile:
        """Stream one file to a temporary file, check its length and that it decodes.

        Raises ``_Expired`` on 403 so that :meth:`fetch_month` can list the files again.
        """
        self._check_host(info)
        where = f"download {info.label} from {info.location}"
        corrupt_seen = 0

        def attempt() -> SourceFile:
            nonlocal corrupt_seen
            try:
                return self._download_once(info, where)
            except _CorruptParquet as exc:
                corrupt_seen += 1
                if corrupt_seen >= 2:
                    raise DownloadRejectedError(
                        f"{where}: the body is not readable Parquet on two downloads ({exc});"
                        " the file on the server is damaged, report it to Aperiodic."
                    ) from None
                raise

        return self._retrying(where, attempt)

    def _download_once(self, info: FileInfo, where: str) -> SourceFile:
        response = self._get(info.url, where, stream=True)
        with response:
            if response.status_code == 403:
                raise _Expired()
            self._raise_for_status(response, where)
            announced = response.headers.get("Content-Length")
            expected = int(announced) if announced and announced.isdigit() else None
            if expected is not None and expected > self.max_file_bytes:
                raise DownloadRejectedError(
                    f"{where}: the file is {expected} bytes, over the limit of"
                    f" {self.max_file_bytes}; raise max_file_bytes if this size is expected."
                )
            with tempfile.TemporaryFile(prefix="aperiodic-") as tmp:
                size = self._stream(response, tmp, where)
                if expected is not None and size != expected:
                    raise _ShortBody(f"received {size} of {expected} bytes")
                tmp.seek(0)
                data = tmp.read()
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise _CorruptParquet(str(exc).splitlines()[0][:200]) from None
        return SourceFile(info=info, data=data, table=table, etag=response.headers.get("ETag"))

    def _stream(self, response: requests.Response, sink, where: str) -> int:
        size = 0
        try:
            for chunk in response.raw.stream(_CHUNK, decode_content=True):
                size += len(chunk)
                if size > self.max_file_bytes:
                    raise DownloadRejectedError(
                        f"{where}: the body exceeded the limit of {self.max_file_bytes} bytes;"
                        " raise max_file_bytes if this size is expected."
                    )
                sink.write(chunk)
        except DownloadRejectedError:
            raise
        except Exception as exc:  # urllib3 ProtocolError, ReadTimeoutError, resets
            raise _ShortBody(
                f"body interrupted after {size} bytes ({type(exc).__name__})"
            ) from None
        return size

    # ----------------------------------------------------------------------------- HTTP basics
    def _get(self, url: str, where: str, method: str = "GET", **kwargs) -> requests.Response:
        """One request; transport errors are re-raised without the URL (it may hold a signature)."""
        timeout = (self.retry.connect_timeout_s, self.retry.read_timeout_s)
        try:
            return self._session.request(
                method, url, timeout=timeout, allow_redirects=False, **kwargs
            )
        except requests.Timeout:
            raise _Transport("timed out") from None
        except requests.RequestException as exc:
            raise _Transport(type(exc).__name__) from None

    def _raise_for_status(self, response: requests.Response, where: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in RETRYABLE_STATUS or status >= 500:
            raise _Retryable(status, response.headers.get("Retry-After"))
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = str(body.get("error") or response.reason or "error")
        details = [str(d) for d in body.get("details") or []]
        code = body.get("code")
        kind = {401: AuthError, 400: BadRequestError, 404: NotFoundError}.get(status, ApiError)
        raise kind(status, error, details, code, where)

    def _retrying(self, where: str, attempt: Callable[[], object]):
        """Run ``attempt`` under the retry policy; a last transient error becomes TransientError."""
        cfg = self.retry
        retryer = Retrying(
            retry=retry_if_exception(
                lambda e: isinstance(e, _Retryable | _Transport | _ShortBody | _CorruptParquet)
            ),
            stop=stop_after_attempt(cfg.max_attempts) | stop_before_delay(cfg.budget_s),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(where, state),
            reraise=True,
        )
        try:
            return retryer(attempt)
        except (_Retryable, _Transport, _ShortBody, _CorruptParquet) as exc:
            raise TransientError(
                f"{where}: gave up after {retryer.statistics.get('attempt_number', '?')} attempt(s)"
                f" in {retryer.statistics.get('delay_since_first_attempt', 0):.1f}s; last problem:"
                f" {_describe(exc)}. The API may be overloaded or unreachable; retry later."
            ) from None

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with jitter, or the server's Retry-After, under caps."""
        cfg = self.retry
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, cfg.retry_after_max_s)
        backoff = cfg.backoff_initial_s * 2 ** (state.attempt_number - 1)
        jitter = int.from_bytes(os.urandom(2), "big") / 65535 * cfg.jitter_s
        return min(backoff + jitter, cfg.backoff_max_s)

    def _log_retry(self, where: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.log.warning(
            "%s: %s; attempt %d of %d, retrying in %.2fs",
            where,
            _describe(exc),
            state.attempt_number,
            self.retry.max_attempts,
            wait,
        )


class _Retryable(Exception):
    def __init__(self, status: int, retry_after: str | None) -> None:
        self.status = status
        self.retry_after = _parse_retry_after(retry_after)
        super().__init__(f"HTTP {status}")


class _Transport(Exception):
    """A connection error or timeout, described without its URL."""


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, _Retryable):
        after = f", Retry-After {exc.retry_after:.0f}s" if exc.retry_after is not None else ""
        return f"HTTP {exc.status}{after}"
    if isinstance(exc, _Transport):
        return f"connection problem: {exc}"
    if isinstance(exc, _ShortBody):
        return f"incomplete body: {exc}"
    if isinstance(exc, _CorruptParquet):
        return f"body is not readable Parquet: {exc}"
    return type(exc).__name__ if exc else "unknown"


def _parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now; both the delta-seconds and the HTTP-date forms."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
