"""When and how long to retry one HTTP request; separate from polling a run.

Retried: connection failures, 408, 429, 502 and 503. A request that could
have taken effect on the server (a read timeout, a reset after sending, a
408/502/503 from a proxy) is retried only when it is idempotent, so a retry can
never duplicate what it creates. Waits grow exponentially with jitter and are
never shorter than what a ``Retry-After`` header asks.

Retries stop at the first of: the request's **retry budget** (seconds since its
first attempt; no retry starts after it), the caller's deadline, and
``max_retries`` when one is set. An answer marked ``Prefect-Maintenance: true``
(the server is in maintenance and did not act) is retried whatever the method
and does not count against ``max_retries``; only the budget and the deadline
bound it, as in Prefect's own client.
"""

from __future__ import annotations

import email.utils
import math
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional

import requests

from .._helpers.deadline import Deadline

if TYPE_CHECKING:
    import tenacity


RETRY_STATUSES = frozenset({408, 429, 502, 503})
"""Statuses retried: request timeout, rate limited, bad gateway, unavailable."""

MAINTENANCE_HEADER = "Prefect-Maintenance"

MAX_RETRY_AFTER = 300.0
"""A ``Retry-After`` longer than this (seconds) is not waited for: the error is raised."""


class RetryableStatus(Exception):
    """Internal: an answer with a retryable status, raised so tenacity can retry it."""

    def __init__(self, response: requests.Response, retry_after: Optional[float]) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.retry_after = retry_after
        self.maintenance = in_maintenance(response)


def in_maintenance(response: requests.Response) -> bool:
    """Whether the answer says the server is in maintenance (``Prefect-Maintenance: true``)."""
    return str(response.headers.get(MAINTENANCE_HEADER, "")).strip().lower() == "true"


def parse_retry_after(value: Optional[str], now: Optional[datetime] = None) -> Optional[float]:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date).

    Returns None when the header is absent or unreadable; never negative.
    """
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def sent_nothing(exc: BaseException) -> bool:
    """True when the request surely never reached the server (connect phase)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc.args[0]) if exc.args else ""
        return "NewConnectionError" in text or "NameResolutionError" in text
    return False


def is_retryable(exc: BaseException, idempotent: bool) -> bool:
    """Whether a failed attempt may be sent again."""
    if isinstance(exc, RetryableStatus):
        if exc.retry_after is not None and exc.retry_after > MAX_RETRY_AFTER:
            return False
        return idempotent or exc.maintenance or exc.response.status_code == 429
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
        return idempotent or sent_nothing(exc)
    return False


def _retry_after(state: tenacity.RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
        return exc.retry_after
    return 0.0


def retrying(
    *,
    max_retries: Optional[int],
    idempotent: bool,
    deadline: Optional[Deadline] = None,
    budget: Optional[Deadline] = None,
    sleep: Callable[[float], None] = time.sleep,
    backoff: Optional[Callable[[tenacity.RetryCallState], float]] = None,
    before_sleep: Optional[Callable[[tenacity.RetryCallState], None]] = None,
) -> tenacity.Retrying:
    """The tenacity configuration for one request.

    Args:
        max_retries: retries after the first attempt (answers in maintenance not
            counted); None: as many as ``budget`` and ``deadline`` allow.
        idempotent: whether sending the request twice has the effect of sending it once.
        deadline: the caller's: no retry starts after it, nor one whose
            ``Retry-After`` outlasts it.
        budget: the end of the request's retry budget, treated like ``deadline``.
        sleep: how to wait; injected by tests.
        backoff: the wait before each retry when the server asks none;
            exponential from 0.5 s to 10 s with up to 1 s of jitter by default.
        before_sleep: called before each wait (for logging).
    """
    import tenacity  # only here: a request that succeeds at once never needs it (nor asyncio)

    base_wait = backoff or (
        tenacity.wait_exponential(multiplier=0.5, max=10.0) + tenacity.wait_random(0, 1.0)
    )
    limits = [limit for limit in (deadline, budget) if limit is not None and limit.at is not None]
    uncounted = [0]  # attempts answered "in maintenance", which max_retries does not count

    def remaining() -> Optional[float]:
        left = [limit.remaining() or 0.0 for limit in limits]
        return min(left) if left else None

    def wait(state: tenacity.RetryCallState) -> float:
        return max(base_wait(state), _retry_after(state))

    def stop(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableStatus) and exc.maintenance:
            uncounted[0] += 1
        if max_retries is not None and state.attempt_number - uncounted[0] > max_retries:
            return True
        left = remaining()
        return left is not None and (left <= 0.0 or _retry_after(state) >= left)

    def wait_within_limits(state: tenacity.RetryCallState) -> float:
        seconds = wait(state)
        left = remaining()
        return seconds if left is None else max(min(seconds, left), _retry_after(state))

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: is_retryable(exc, idempotent)),
        stop=stop,
        wait=wait_within_limits,
        sleep=sleep,
        reraise=True,
        before_sleep=before_sleep,
    )
