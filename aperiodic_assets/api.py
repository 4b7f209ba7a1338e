"""AperiodicClient: the HTTP client for the Aperiodic data API.

Owns listing a month's files, probing and downloading them through presigned URLs, and every
way that can go wrong: retries with backoff and ``Retry-After`` (tenacity), an overall time
budget, expired URLs (re-listed once), truncated or oversize bodies, undecodable Parquet and
foreign hosts.
It never imports dagster, and never lets the API key or a URL's query string (the presigned
signature) into a log line or an exception message.
"""

from __future__ import annotations

import email.utils
import fnmatch
import hashlib
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from .months import Month
from .schema import METRIC
from .universe import Instrument

DEFAULT_API_URL = "https://aperiodic.io/api/v1"
DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = ("*.aperiodic.io", "aperiodic.io")
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_CHUNK = 1 << 16
#: The object's total size in the answer to a ranged GET: ``bytes 0-0/12345``.
_CONTENT_RANGE_TOTAL = re.compile(r"bytes\s+\d+-\d+/(\d+)")
_T = TypeVar("_T")

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
    """Rate limits, 5xx, resets, timeouts and short bodies that outlasted every retry.

    ``retry_after_s`` is the wait the server asked for in its last answer (``Retry-After``), or
    None: a caller that retries later (Dagster's retry policy) should wait at least that long.
    """

    transient = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UrlExpiredError(AperiodicError):
    """A presigned URL was refused (403): it expired, so only a fresh file list can help.

    ``fetch_month`` and ``probe_month`` list the month again once before raising it.
    """

    transient = True


class DisallowedHostError(AperiodicError):
    """The file list pointed at a host outside the allow-list; no request was made to it."""


class DownloadRejectedError(AperiodicError):
    """A file is larger than allowed or is not decodable Parquet after a second try."""


class _Transient(Exception):
    """A failed attempt that another attempt may fix: the retry policy retries exactly these."""

    #: What kind of problem, for :meth:`describe`.
    what = "problem"

    def describe(self) -> str:
        """The problem for a log line or the final error; never holds a URL."""
        return f"{self.what}: {self}"


class _Retryable(_Transient):
    """An HTTP status worth retrying (429, 5xx), with the server's ``Retry-After`` if any."""

    def __init__(self, status: int, retry_after: str | None) -> None:
        self.status = status
        self.retry_after = _parse_retry_after(retry_after)
        super().__init__(f"HTTP {status}")

    def describe(self) -> str:
        after = f", Retry-After {self.retry_after:.0f}s" if self.retry_after is not None else ""
        return f"HTTP {self.status}{after}"


class _Transport(_Transient):
    """A connection error or timeout, described without its URL."""

    what = "connection problem"


class _ShortBody(_Transient):
    """A body ended before its Content-Length: retried, and reported as transient at the end."""

    what = "incomplete body"


class _CorruptParquet(_Transient):
    """A body of the announced length that Parquet cannot decode: retried once."""

    what = "body is not readable Parquet"


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

    The sensor computes it from probes (one-byte ranged GETs), the asset from what it downloaded,
    so a partition materialized from the same files is recognised without downloading anything.
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
    """List, probe and download l1_imbalance files; one client may serve several threads."""

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        api_key: str = "",
        *,
        retry: RetryConfig | None = None,
        allowed_hosts: Iterable[str] = DEFAULT_ALLOWED_HOSTS,
        max_file_bytes: int = 512 * 1024 * 1024,
        max_concurrent_downloads: int = 4,
        max_connections: int | None = None,
        client_tag: str | None = None,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``max_connections`` is the connection pool per host (default: the download limit).

        Threads sharing this client need together up to ``threads × max_concurrent_downloads``
        connections; a smaller pool makes urllib3 discard and reopen connections ("Connection
        pool is full").
        """
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
        pool = HTTPAdapter(pool_maxsize=max(1, max_connections or self.max_concurrent_downloads))
        for scheme in ("http://", "https://"):
            self._session.mount(scheme, pool)
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
            response = self._get(url, params=params, headers={"X-API-KEY": self._api_key})
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

    # ----------------------------------------------------------------------------------- probes
    def probe_month(self, instrument: Instrument, month: Month) -> list[FileStamp]:
        """The :meth:`stamp` of each file of ``month``, in list order; empty when unpublished.

        Cheap enough for a sensor: one listing and one byte per file. Refused URLs get one
        fresh listing, as in :meth:`fetch_month`.
        """
        return self._each_file(instrument, month, self.stamp)

    def stamp(self, info: FileInfo) -> FileStamp:
        """ETag, size and Last-Modified of one file, from a GET of its first byte.

        Not HEAD: a presigned URL is signed for GET only, and S3/R2 refuse HEAD on it with 403.
        A 403 raises UrlExpiredError at once: only a fresh listing can help.
        """
        self._check_host(info)
        where = f"probe {info.label} at {info.location}"

        def attempt() -> FileStamp:
            response = self._get(info.url, stream=True, headers={"Range": "bytes=0-0"})
            with response:
                self._raise_for_file_status(response, where)
                headers = response.headers
                if response.status_code == 206:
                    size = _range_total(headers.get("Content-Range", ""), where)
                    try:  # the one byte: a fully read response returns its connection to the pool
                        response.raw.read(1)
                    except Exception as exc:  # urllib3 ProtocolError, ReadTimeoutError, resets
                        raise _Transport(type(exc).__name__) from None
                else:  # the server ignored Range: the whole file follows, so leave it unread
                    size = int(headers.get("Content-Length") or 0)
                return FileStamp(
                    label=info.label,
                    etag=headers.get("ETag", "").strip('"'),
                    size=size,
                    last_modified=headers.get("Last-Modified", ""),
                )

        return self._retrying(where, attempt)

    # -------------------------------------------------------------------------------- downloads
    def fetch_month(self, instrument: Instrument, month: Month) -> list[SourceFile]:
        """Download every file of ``month``, in list order; an expired URL triggers one listing."""
        return self._each_file(instrument, month, self.download)

    def download(self, info: FileInfo) -> SourceFile:
        """Stream one file to a temporary file, check its length and that it decodes.

        A 403 raises UrlExpiredError at once; :meth:`fetch_month` lists the files again.
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

    def _each_file(
        self, instrument: Instrument, month: Month, work: Callable[[FileInfo], _T]
    ) -> list[_T]:
        """``work`` on each file of ``month``; files whose URL is refused are listed once more.

        Presigned URLs expire (a long backfill, a slow queue): a fresh listing hands out new
        ones. A second refusal means something else is wrong, so it raises UrlExpiredError.
        """
        files = self.list_month(instrument, month)
        results, refused = self._run_all(files, work)
        if refused:
            self.log.warning(
                "%s %s: %d presigned URL(s) expired or were refused; listing the files again",
                instrument.key,
                month,
                len(refused),
            )
            fresh = {f.label: f for f in self.list_month(instrument, month)}
            again, still_refused = self._run_all(
                [fresh[f.label] for f in refused if f.label in fresh], work
            )
            results.update(again)
            gone = [f.label for f in refused if f.label not in fresh]
            problems = []
            if still_refused:
                problems.append(
                    f"the URL(s) of {[f.label for f in still_refused]} were refused (HTTP 403)"
                    " twice, also after listing the files again"
                )
            if gone:
                problems.append(
                    f"the URL(s) of {gone} were refused (HTTP 403) and the new file list no"
                    " longer holds them"
                )
            if problems:
                raise UrlExpiredError(
                    f"{instrument.key} {month}: {'; '.join(problems)}. The clock of this machine"
                    " may be off, the API may be handing out URLs that are already expired, or"
                    " the files were withdrawn; retry later."
                )
        return [results[f.label] for f in files]

    def _run_all(
        self, files: list[FileInfo], work: Callable[[FileInfo], _T]
    ) -> tuple[dict[str, _T], list[FileInfo]]:
        """``work`` on every file, a few at a time: results by label, and the refused files."""
        for f in files:  # all hosts before any request: one foreign URL stops the whole month
            self._check_host(f)
        if not files:
            return {}, []
        with ThreadPoolExecutor(min(self.max_concurrent_downloads, len(files))) as pool:
            futures = [(f, pool.submit(work, f)) for f in files]
        results: dict[str, _T] = {}
        refused: list[FileInfo] = []
        for info, future in futures:
            try:
                results[info.label] = future.result()
            except UrlExpiredError:
                refused.append(info)
        return results, refused

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

    def _download_once(self, info: FileInfo, where: str) -> SourceFile:
        response = self._get(info.url, stream=True)
        with response:
            self._raise_for_file_status(response, where)
            announced = response.headers.get("Content-Length")
            expected = int(announced) if announced and announced.isdigit() else None
            if expected is not None and expected > self.max_file_bytes:
                raise DownloadRejectedError(
                    f"{where}: the file is {expected} bytes, over the limit of"
                    f" {self.max_file_bytes}; raise max_file_bytes if this size is expected."
                )
            with tempfile.TemporaryFile(prefix="aperiodic-") as tmp:
                received = self._stream(response, tmp, where)
                if expected is not None and received != expected:
                    raise _ShortBody(f"received {received} of {expected} bytes")
                tmp.seek(0)
                data = tmp.read()
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise _CorruptParquet(str(exc).splitlines()[0][:200]) from None
        return SourceFile(info=info, data=data, table=table, etag=response.headers.get("ETag"))

    def _stream(self, response: requests.Response, sink: IO[bytes], where: str) -> int:
        """Write the decoded body to ``sink``; returns the bytes read from the wire.

        Content-Length counts wire bytes, fewer than the decoded ones under a Content-Encoding
        (gzip), so the length check uses ``raw.tell()``; the size limit holds against the
        decoded bytes, since a small compressed body can expand enormously.
        """
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
        except Exception as exc:  # urllib3 ProtocolError, DecodeError, ReadTimeoutError, resets
            raise _ShortBody(
                f"body interrupted after {response.raw.tell()} bytes ({type(exc).__name__})"
            ) from None
        return response.raw.tell()

    # ----------------------------------------------------------------------------- HTTP basics
    def _get(self, url: str, **kwargs: Any) -> requests.Response:
        """One GET; transport errors are re-raised without the URL (it may hold a signature)."""
        timeout = (self.retry.connect_timeout_s, self.retry.read_timeout_s)
        try:
            return self._session.get(url, timeout=timeout, allow_redirects=False, **kwargs)
        except requests.Timeout:
            raise _Transport("timed out") from None
        except requests.RequestException as exc:
            raise _Transport(type(exc).__name__) from None

    def _raise_for_file_status(self, response: requests.Response, where: str) -> None:
        """As :meth:`_raise_for_status`; a 403 from a file host means the URL has expired."""
        if response.status_code == 403:
            raise UrlExpiredError(
                f"{where}: the presigned URL was refused (HTTP 403): it has expired. List the"
                " files again for a fresh URL."
            )
        self._raise_for_status(response, where)

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

    def _retrying(self, where: str, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` under the retry policy; a last transient error becomes TransientError.

        Waits as long as the server asks (Retry-After), else backs off exponentially with
        jitter. A Retry-After beyond ``retry_after_max_s`` or the rest of the budget is not
        waited for: the call fails at once, and the error carries the wait for a later retry.
        """
        cfg = self.retry
        backoff = wait_exponential_jitter(
            multiplier=cfg.backoff_initial_s, max=cfg.backoff_max_s, jitter=cfg.jitter_s
        )

        def wait(state: RetryCallState) -> float:
            asked = _asked_wait(state)
            return backoff(state) if asked is None else asked

        retryer = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(cfg.max_attempts)
            | stop_before_delay(cfg.budget_s)
            | (lambda state: (_asked_wait(state) or 0.0) > cfg.retry_after_max_s),
            wait=wait,
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(where, state),
            reraise=True,
        )
        try:
            return retryer(attempt)
        except _Transient as exc:
            raise self._gave_up(where, exc, retryer.statistics) from None

    def _gave_up(self, where: str, exc: _Transient, statistics: dict[str, Any]) -> TransientError:
        cfg = self.retry
        attempts = statistics.get("attempt_number", 1)
        elapsed = statistics.get("delay_since_first_attempt", 0.0)
        asked = exc.retry_after if isinstance(exc, _Retryable) else None
        if isinstance(exc, _Retryable) and asked is not None and attempts < cfg.max_attempts:
            # Attempts were left, so what stopped the retries is the asked wait itself.
            return TransientError(
                f"{where}: HTTP {exc.status} on attempt {attempts}: the server asked to retry"
                f" after {asked:.0f} s, longer than this call waits (retry_after_max_s"
                f" {cfg.retry_after_max_s:g} s, {max(0.0, cfg.budget_s - elapsed):.0f} s left of"
                f" its {cfg.budget_s:g} s budget). Retry after that time.",
                retry_after_s=asked,
            )
        return TransientError(
            f"{where}: gave up after {attempts} attempt(s) in {elapsed:.1f}s; last problem:"
            f" {exc.describe()}. The API may be overloaded or unreachable; retry later.",
            retry_after_s=asked,
        )

    def _log_retry(self, where: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self.log.warning(
            "%s: %s; attempt %d of %d, retrying in %.2fs",
            where,
            exc.describe() if isinstance(exc, _Transient) else type(exc).__name__,
            state.attempt_number,
            self.retry.max_attempts,
            wait,
        )


def _asked_wait(state: RetryCallState) -> float | None:
    """The Retry-After of the attempt that just failed, if the server sent one."""
    exc = state.outcome.exception() if state.outcome else None
    return exc.retry_after if isinstance(exc, _Retryable) else None


def _range_total(content_range: str, where: str) -> int:
    """The file's size from a 206's ``Content-Range: bytes 0-0/TOTAL``."""
    match = _CONTENT_RANGE_TOTAL.fullmatch(content_range.strip())
    if match is None:
        raise AperiodicError(
            f"{where}: HTTP 206 with Content-Range {content_range!r}, which does not give the"
            " file's size."
        )
    return int(match[1])


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
