"""How hard the client tries: the retry settings and the policy that runs each call's attempts.

Owns RetryConfig (attempts, backoff, in-line Retry-After cap, time budget, timeouts), which HTTP
statuses are worth retrying, reading ``Retry-After``, and RetryPolicy: tenacity around one call
(within the caller's deadline, if any), a retry log line per failed attempt, and the final
TransientError once retries run out.
Never imports dagster.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from .errors import TransientError, _Retryable, _Transient

#: Statuses retried besides any other 5xx: rate limits and gateway trouble.
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_T = TypeVar("_T")


def _setting(default: float, description: str) -> Any:
    """A setting with its default and the description the resource shows in Dagster's UI."""
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True)
class RetryConfig:
    """Bounds on how hard the client tries; tests shrink them so nothing sleeps for long."""

    max_attempts: int = _setting(5, "Attempts per call, the first one included.")
    backoff_initial_s: float = _setting(
        1.0, "First wait between attempts; it doubles with each attempt (exponential backoff)."
    )
    backoff_max_s: float = _setting(30.0, "Longest wait between two attempts.")
    jitter_s: float = _setting(
        1.0, "Random extra wait of up to this many seconds, so clients do not retry in step."
    )
    retry_after_max_s: float = _setting(
        60.0,
        "Longest Retry-After waited for within a call; a longer one fails the call at once"
        " and the error carries the wait for a later retry.",
    )
    budget_s: float = _setting(300.0, "Overall time budget per call, retries included.")
    connect_timeout_s: float = _setting(10.0, "Seconds to wait for a connection.")
    read_timeout_s: float = _setting(60.0, "Seconds to wait for the next bytes of an answer.")


class RetryPolicy:
    """Runs a call's attempts under a RetryConfig; one policy may serve several threads."""

    def __init__(
        self, config: RetryConfig, log: logging.Logger, sleep: Callable[[float], None]
    ) -> None:
        self.config = config
        self.log = log
        self._sleep = sleep

    def run(self, where: str, attempt: Callable[[], _T], deadline: float | None = None) -> _T:
        """Run ``attempt`` until it succeeds; a last transient error becomes TransientError.

        Waits as long as the server asks (Retry-After), else backs off exponentially with
        jitter. A Retry-After beyond ``retry_after_max_s`` or the rest of the budget is not
        waited for: the call fails at once, and the error carries the wait for a later retry.
        ``deadline`` (a ``time.monotonic()`` value) shrinks the budget to the time left until it.
        """
        cfg = self.config
        budget = cfg.budget_s
        if deadline is not None:
            budget = min(budget, deadline - time.monotonic())
            if budget <= 0:
                raise TransientError(f"{where}: not started, the caller's deadline has passed.")
        backoff = wait_exponential_jitter(
            multiplier=cfg.backoff_initial_s, max=cfg.backoff_max_s, jitter=cfg.jitter_s
        )

        def wait(state: RetryCallState) -> float:
            asked = _asked_wait(state)
            return backoff(state) if asked is None else asked

        retryer = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(cfg.max_attempts)
            | stop_before_delay(budget)
            | (lambda state: (_asked_wait(state) or 0.0) > cfg.retry_after_max_s),
            wait=wait,
            sleep=self._sleep,
            before_sleep=lambda state: self._log_retry(where, state),
            reraise=True,
        )
        try:
            return retryer(attempt)
        except _Transient as exc:
            bounded = budget < cfg.budget_s
            raise self._gave_up(where, exc, retryer.statistics, budget, bounded) from None

    def _gave_up(
        self,
        where: str,
        exc: _Transient,
        statistics: dict[str, Any],
        budget: float,
        bounded: bool,
    ) -> TransientError:
        """The final error; ``budget``: the call's seconds, ``bounded``: set by a deadline."""
        cfg = self.config
        attempts = statistics.get("attempt_number", 1)
        elapsed = statistics.get("delay_since_first_attempt", 0.0)
        left = max(0.0, budget - elapsed)
        asked = exc.retry_after if isinstance(exc, _Retryable) else None
        if isinstance(exc, _Retryable) and asked is not None and attempts < cfg.max_attempts:
            # Attempts were left, so what stopped the retries is the asked wait itself.
            time_left = (
                f"{left:.0f} s left before the caller's deadline"
                if bounded
                else f"{left:.0f} s left of its {cfg.budget_s:g} s budget"
            )
            return TransientError(
                f"{where}: HTTP {exc.status} on attempt {attempts}: the server asked to retry"
                f" after {asked:.0f} s, longer than this call waits (retry_after_max_s"
                f" {cfg.retry_after_max_s:g} s, {time_left}). Retry after that time.",
                retry_after_s=asked,
            )
        limit = "the caller's deadline" if bounded else "its time budget"
        cut = "" if attempts >= cfg.max_attempts else f" ({limit} left no time for more)"
        return TransientError(
            f"{where}: gave up after {attempts} attempt(s) in {elapsed:.1f}s{cut}; last problem:"
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
            self.config.max_attempts,
            wait,
        )


def _asked_wait(state: RetryCallState) -> float | None:
    """The Retry-After of the attempt that just failed, if the server sent one."""
    exc = state.outcome.exception() if state.outcome else None
    return exc.retry_after if isinstance(exc, _Retryable) else None


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
