"""The client's errors: the public ones callers catch, and the internal ones retries act on.

Public errors say what to do next and are safe to log: no API key, no URL query string. The
internal ``_Transient`` family marks a failed attempt that another attempt may fix; the retry
policy (retrying.py) retries exactly those and turns the last one into a TransientError.
Never imports dagster.
"""

from __future__ import annotations


class AperiodicError(Exception):
    """Base of every error this client raises; messages are safe to log (no secrets)."""

    #: Whether trying the same call again later can help (drives Dagster's retry policy).
    transient = False


class ApiError(AperiodicError):
    """The API answered with an error that retrying will not fix (4xx)."""

    hint = "check the request parameters"

    def __init__(
        self,
        status: int,
        error: str,
        details: list[str],
        code: str | None,
        where: str,
        requested: str = "this request",
    ) -> None:
        """``requested``: what the call asked for (dataset, interval, exchange), for hints."""
        self.status, self.error, self.details, self.code = status, error, details, code
        self.requested = requested
        detail = f" ({'; '.join(details)})" if details else ""
        code_part = f" [{code}]" if code else ""
        super().__init__(f"{where}: HTTP {status}{code_part}: {error}{detail}. {self._hint()}")

    def _hint(self) -> str:
        return self.hint

    @classmethod
    def for_status(
        cls,
        status: int,
        error: str,
        details: list[str],
        code: str | None,
        where: str,
        requested: str = "this request",
    ) -> ApiError:
        """The error whose hint fits ``status``: 401, 400, 403 and 404 each point at their cause."""
        kind = {401: AuthError, 400: BadRequestError, 403: PlanError, 404: NotFoundError}.get(
            status, ApiError
        )
        return kind(status, error, details, code, where, requested)


class AuthError(ApiError):
    hint = "Check APERIODIC_API_KEY: it is missing, wrong or not entitled to this dataset."


class BadRequestError(ApiError):
    hint = "Check the instrument in universe.yaml (interval, exchange, timestamp mode) and dates."


class NotFoundError(ApiError):
    hint = "Check the symbol (Atlas symbology, e.g. perpetual-BTC-USDT:USDT) and the exchange."


class PlanError(ApiError):
    """A 403 from the API itself: the key's plan does not cover what was asked (e.g. a 15s
    interval, or a dataset of a higher tier). Not a presigned URL: those raise UrlExpiredError."""

    def _hint(self) -> str:
        return (
            f"The API key's plan does not include {self.requested}; use a key whose plan covers"
            " it, or remove the instrument from universe.yaml."
        )


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

    def __init__(self, status: int, retry_after: float | None) -> None:
        """``retry_after``: the header already read as seconds from now (None when absent)."""
        self.status = status
        self.retry_after = retry_after
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


class _OutOfTime(_Transient):
    """The caller's deadline arrived mid-call (a slow body, no time left for another attempt)."""

    what = "out of time"
