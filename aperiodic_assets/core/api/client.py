"""AperiodicClient: lists, probes and downloads l1_imbalance files from the Aperiodic data API.

Owns the requests: the file list, one-byte probes and streamed downloads through presigned URLs,
the download host allow-list (redirects included), size and length checks, Parquet decoding,
HTTP statuses mapped to typed errors, one fresh listing when URLs have expired, and deadlines
for callers with a time budget (``bounded``). How often a call is tried again is retrying.py's
job. Never imports dagster, and never lets the API key or a URL's query string
(the presigned signature) into a log line or an exception message.
"""

from __future__ import annotations

import copy
import fnmatch
import io
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import IO, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import requests
from requests.adapters import HTTPAdapter

from ..months import Month
from ..schema import METRIC
from ..universe import Instrument
from .errors import (
    AperiodicError,
    ApiError,
    DisallowedHostError,
    DownloadRejectedError,
    TransientError,
    UrlExpiredError,
    _CorruptParquet,
    _OutOfTime,
    _Retryable,
    _ShortBody,
    _Transport,
)
from .files import FileInfo, FileStamp, SourceFile, redact
from .retrying import RETRYABLE_STATUS, RetryConfig, RetryPolicy, _parse_retry_after

DEFAULT_API_URL = "https://aperiodic.io/api/v1"
#: Aperiodic's hosts and Cloudflare R2's presigned endpoint, ``<account>.r2.cloudflarestorage.com``.
DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = (
    "*.aperiodic.io",
    "aperiodic.io",
    "*.r2.cloudflarestorage.com",
)
#: Redirects followed on downloads and probes (each hop a GET), and how many in a row.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 3
_CHUNK = 1 << 16
#: The object's total size in the answer to a ranged GET: ``bytes 0-0/12345``.
_CONTENT_RANGE_TOTAL = re.compile(r"bytes\s+\d+-\d+/(\d+)")
_T = TypeVar("_T")

log = logging.getLogger(__name__)


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
        self._retries = RetryPolicy(self.retry, self.log, sleep)
        #: A ``time.monotonic()`` value every call must finish by; set on views by :meth:`bounded`.
        self._deadline: float | None = None
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

    def bounded(self, deadline: float) -> AperiodicClient:
        """This client with a hard ``deadline`` (a ``time.monotonic()`` value) on every call.

        For callers with a time budget, such as a sensor tick. Each call's retry budget is the
        time left; no wait (backoff or Retry-After) starts that would end after the deadline,
        so the call fails at once with TransientError (``retry_after_s`` set when the server
        asked for the wait); connect and read timeouts, each read of a body included, are cut
        to the time left. The view shares this client's connections and may serve several
        threads; close the client, not the view. A view of a view keeps the earlier deadline.
        """
        view = copy.copy(self)
        view._deadline = deadline if self._deadline is None else min(deadline, self._deadline)
        return view

    # ---------------------------------------------------------------------------------- listing
    def list_files(self, instrument: Instrument, start: date, end: date) -> list[FileInfo]:
        """Files overlapping ``[start, end]`` (inclusive), in chronological order."""
        params = {
            **instrument.query,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
        }
        url = f"{self.api_url}/data/{METRIC}"
        where = f"list {instrument.key} {start}..{end}"
        requested = f"{METRIC} at interval {instrument.interval} on {instrument.exchange}"

        def attempt() -> list[FileInfo]:
            response = self._get(
                url, params=params, headers={"X-API-KEY": self._api_key}, stream=True
            )
            with response:
                self._raise_for_status(response, where, requested)
                text = io.BytesIO()
                self._stream(response, text, where)
                try:
                    body = json.loads(text.getvalue())
                    files = [
                        FileInfo(int(f["year"]), int(f["month"]), f.get("day"), str(f["url"]))
                        for f in body["files"]
                    ]
                except (ValueError, KeyError, TypeError) as exc:
                    raise TransientError(
                        f"{where}: the API answered 200 with an unreadable file list ({exc})"
                    ) from None
            return sorted(files, key=lambda f: f.sort_key)

        return self._retries.run(where, attempt, self._deadline)

    def list_symbols(self, exchange: str) -> list[str]:
        """Every symbol Aperiodic lists on ``exchange`` (``GET /metadata/symbols``)."""
        where = f"list symbols of {exchange}"

        def attempt() -> list[str]:
            response = self._get(
                f"{self.api_url}/metadata/symbols",
                params={"exchange": exchange},
                headers={"X-API-KEY": self._api_key},
            )
            with response:
                self._raise_for_status(response, where, f"the symbols of {exchange}")
                try:
                    return [str(s) for s in response.json()["symbols"]]
                except (ValueError, KeyError, TypeError) as exc:
                    raise AperiodicError(f"{where}: an unreadable symbol list ({exc})") from None

        return self._retries.run(where, attempt, self._deadline)

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
        self._check_host(info, info.url)
        where = f"probe {info.label} at {info.location}"

        def attempt() -> FileStamp:
            response = self._get_file(info, where, headers={"Range": "bytes=0-0"})
            with response:
                self._raise_for_file_status(response, where)
                headers = response.headers
                if response.status_code == 206:
                    size = _range_total(headers.get("Content-Range", ""), where)
                    # the one byte: a fully read response returns its connection to the pool
                    self._read(response, 1)
                else:  # the server ignored Range: the whole file follows, so leave it unread
                    size = int(headers.get("Content-Length") or 0)
                return FileStamp(
                    label=info.label,
                    etag=headers.get("ETag", "").strip('"'),
                    size=size,
                    last_modified=headers.get("Last-Modified", ""),
                )

        return self._retries.run(where, attempt, self._deadline)

    # -------------------------------------------------------------------------------- downloads
    def fetch_month(self, instrument: Instrument, month: Month) -> list[SourceFile]:
        """Download every file of ``month``, in list order; an expired URL triggers one listing."""
        return self._each_file(instrument, month, self.download)

    def download(self, info: FileInfo) -> SourceFile:
        """Stream one file to a temporary file, check its length and that it decodes.

        A 403 raises UrlExpiredError at once; :meth:`fetch_month` lists the files again.
        """
        self._check_host(info, info.url)
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

        return self._retries.run(where, attempt, self._deadline)

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
            self._check_host(f, f.url)
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

    def _check_host(self, info: FileInfo, url: str) -> None:
        """Refuse ``url`` (``info``'s own or a redirect's) unless its host is allowed."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not any(
            fnmatch.fnmatch(host, pattern) for pattern in self.allowed_hosts
        ):
            source = "the file list" if url == info.url else "a redirect"
            raise DisallowedHostError(
                f"file {info.label}: {source} points at {parts.scheme}://{host}, which is not"
                f" an allowed download host ({', '.join(self.allowed_hosts)}); nothing was"
                " requested from it. If this host is legitimate, add it to allowed_hosts."
            )

    def _get_file(self, info: FileInfo, where: str, **kwargs: Any) -> requests.Response:
        """GET a file's URL (streamed), following up to ``_MAX_REDIRECTS`` redirects.

        Each hop's host is checked before it is requested, and no hop carries credentials.
        """
        url = info.url
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_host(info, url)
            response = self._get(url, stream=True, auth=_no_credentials, **kwargs)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            response.close()
            url = urljoin(url, location)
        raise AperiodicError(
            f"{where}: more than {_MAX_REDIRECTS} redirects in a row (the last to"
            f" {redact(url)}); the file host is misconfigured, report it to Aperiodic."
        )

    def _download_once(self, info: FileInfo, where: str) -> SourceFile:
        response = self._get_file(info, where)
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
        etag = response.headers.get("ETag")
        return SourceFile(info=info, data=data, table=table, etag=etag, size=received)

    def _stream(self, response: requests.Response, sink: IO[bytes], where: str) -> int:
        """Write the decoded body to ``sink``; returns the bytes read from the wire.

        Content-Length counts wire bytes, fewer than the decoded ones under a Content-Encoding
        (gzip), so the length check uses ``raw.tell()``; the size limit holds against the
        decoded bytes, since a small compressed body can expand enormously.
        """
        size = 0
        while chunk := self._read(response, _CHUNK):
            size += len(chunk)
            if size > self.max_file_bytes:
                raise DownloadRejectedError(
                    f"{where}: the body exceeded the limit of {self.max_file_bytes} bytes;"
                    " raise max_file_bytes if this size is expected."
                )
            sink.write(chunk)
        return response.raw.tell()

    def _read(self, response: requests.Response, amount: int) -> bytes:
        """Up to ``amount`` decoded bytes of the body, as soon as any arrive; b"" at its end.

        Under a deadline the socket's timeout is cut to the time left before every read, so
        neither a stalled nor a trickling body outlives the deadline.
        """
        left = self._time_left()
        connection = response.raw.connection
        if left is not None and connection is not None and connection.sock is not None:
            connection.sock.settimeout(min(self.retry.read_timeout_s, left))
        try:
            return response.raw.read1(amount, decode_content=True)
        except Exception as exc:  # urllib3 ProtocolError, DecodeError, ReadTimeoutError, resets
            problem = f"body interrupted after {response.raw.tell()} bytes ({type(exc).__name__})"
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise _OutOfTime(f"{problem} at the caller's deadline") from None
            raise _ShortBody(problem) from None

    # ----------------------------------------------------------------------------- HTTP basics
    def _get(self, url: str, **kwargs: Any) -> requests.Response:
        """One GET; transport errors are re-raised without the URL (it may hold a signature).

        Under a deadline the connect and read timeouts are cut to the time left.
        """
        connect, read = self.retry.connect_timeout_s, self.retry.read_timeout_s
        left = self._time_left()
        timeout = (connect, read) if left is None else (min(connect, left), min(read, left))
        try:
            return self._session.get(url, timeout=timeout, allow_redirects=False, **kwargs)
        except requests.Timeout:
            raise _Transport("timed out") from None
        except requests.RequestException as exc:
            raise _Transport(type(exc).__name__) from None

    def _time_left(self) -> float | None:
        """Seconds until the deadline (None without one); _OutOfTime once it has passed."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _OutOfTime("the caller's deadline has passed")
        return left

    def _raise_for_file_status(self, response: requests.Response, where: str) -> None:
        """As :meth:`_raise_for_status`; a 403 from a file host means the URL has expired."""
        if response.status_code == 403:
            raise UrlExpiredError(
                f"{where}: the presigned URL was refused (HTTP 403): it has expired. List the"
                " files again for a fresh URL."
            )
        self._raise_for_status(response, where)

    def _raise_for_status(
        self, response: requests.Response, where: str, requested: str = "this request"
    ) -> None:
        """Errors for an API answer; ``requested`` names what a 403 (plan error) refused."""
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in RETRYABLE_STATUS or status >= 500:
            raise _Retryable(status, _parse_retry_after(response.headers.get("Retry-After")))
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        error = str(body.get("error") or response.reason or "error")
        details = [str(d) for d in body.get("details") or []]
        code = body.get("code")
        raise ApiError.for_status(status, error, details, code, where, requested)


def _no_credentials(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Auth hook of file requests: no Authorization (netrc, URL user info) and no API key."""
    request.headers.pop("Authorization", None)
    request.headers.pop("X-API-KEY", None)
    return request


def _range_total(content_range: str, where: str) -> int:
    """The file's size from a 206's ``Content-Range: bytes 0-0/TOTAL``."""
    match = _CONTENT_RANGE_TOTAL.fullmatch(content_range.strip())
    if match is None:
        raise AperiodicError(
            f"{where}: HTTP 206 with Content-Range {content_range!r}, which does not give the"
            " file's size."
        )
    return int(match[1])
