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

:func:`retrying` is the whole policy, as one ``tenacity.Retrying``. The
strategies tenacity does not have are below it, named in its style: the budget
and the deadline run on the transport's clock (tests inject a fake one), which
tenacity's ``stop_after_delay`` cannot be given.
"""

from __future__ import annotations

import email.utils
import math
import time
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import requests
import tenacity
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base
from urllib3.exceptions import ConnectTimeoutError, ProxyError

from .._helpers.deadline import Deadline

RETRY_STATUSES = frozenset({408, 429, 502, 503})
"""Statuses retried: request timeout, rate limited, bad gateway, unavailable."""

MAINTENANCE_HEADER = "Prefect-Maintenance"

MAX_RETRY_AFTER = 300.0
"""A ``Retry-After`` longer than this (seconds) is not waited for: the error is raised."""

DEFAULT_BACKOFF = tenacity.wait_exponential(multiplier=0.5, max=10.0) + tenacity.wait_random(0, 1.0)
"""The wait before a retry when the server asks none: 0.5 s doubling to 10 s, plus up to 1 s."""

RETRY_TRANSIENT_ERRORS = tenacity.retry_if_exception_type(
    (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
) & tenacity.retry_if_not_exception_type(requests.exceptions.SSLError)
"""Failures to get an answer that sending again may fix: not TLS failures (ConnectionErrors too)."""


def retrying(
    *,
    max_retries: Optional[int],
    idempotent: bool,
    first_contact_retries: Optional[int] = None,
    deadline: Optional[Deadline] = None,
    budget: Optional[Deadline] = None,
    sleep: Callable[[float], None] = time.sleep,
    backoff: Optional[Callable[[tenacity.RetryCallState], float]] = None,
    before_sleep: Optional[Callable[[tenacity.RetryCallState], None]] = None,
) -> tenacity.Retrying:
    """The retry policy of one request, for a call that returns its answer.

    The call is retried on a transient error or a retryable answer, as above;
    when retries stop, the last answer is returned or the last error raised.

    Args:
        max_retries: retries after the first attempt (answers in maintenance not
            counted); None: as many as ``budget`` and ``deadline`` allow.
        idempotent: whether sending the request twice has the effect of sending it once.
        first_contact_retries: retries of an attempt that never reached the
            server, when the server has never answered (None: no such limit).
        deadline: the caller's: no retry starts after it, nor one whose
            ``Retry-After`` outlasts it.
        budget: the end of the request's retry budget, treated like ``deadline``.
        sleep: how to wait; injected by tests.
        backoff: the wait before each retry when the server asks none
            (:data:`DEFAULT_BACKOFF` by default).
        before_sleep: called before each wait (for logging).
    """
    limits = [limit for limit in (deadline, budget) if limit is not None and limit.at is not None]
    first_limit = min(limits, key=lambda limit: limit.at or 0.0, default=None)
    on_error: retry_base = (
        RETRY_TRANSIENT_ERRORS if idempotent else tenacity.retry_if_exception(sent_nothing)
    )
    stop: stop_base = stop_at_deadline(first_limit)
    if max_retries is not None:
        stop |= stop_after_retries(max_retries)
    if first_contact_retries is not None:
        stop |= stop_after_unreached(first_contact_retries)
    return tenacity.Retrying(
        retry=on_error | tenacity.retry_if_result(lambda answer: may_resend(answer, idempotent)),
        stop=stop,
        wait=wait_retry_after(backoff or DEFAULT_BACKOFF, first_limit),
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=_last_outcome,
    )


def sent_nothing(exc: BaseException) -> bool:
    """Whether the request surely never reached the server: no connection was made.

    Decided by type, as urllib3 decides it (``Retry._is_connection_error``): a
    connect timeout, or a connection error whose reason (urllib3's, behind
    ``MaxRetryError`` and a proxy's ``ProxyError``) is a ``ConnectTimeoutError``,
    which ``NewConnectionError`` (refused) and ``NameResolutionError`` are.
    """
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError) or not exc.args:
        return False
    reason = getattr(exc.args[0], "reason", exc.args[0])
    if isinstance(reason, ProxyError):
        reason = reason.original_error
    return isinstance(reason, ConnectTimeoutError)


def may_resend(response: requests.Response, idempotent: bool) -> bool:
    """Whether an answer asks for the request to be sent again, and that is safe."""
    if response.status_code not in RETRY_STATUSES:
        return False
    asked = retry_after(response)
    if asked is not None and asked > MAX_RETRY_AFTER:
        return False
    return idempotent or in_maintenance(response) or response.status_code == 429


def in_maintenance(response: requests.Response) -> bool:
    """Whether the answer says the server is in maintenance (``Prefect-Maintenance: true``)."""
    return str(response.headers.get(MAINTENANCE_HEADER, "")).strip().lower() == "true"


def retry_after(response: requests.Response) -> Optional[float]:
    """Seconds the answer's ``Retry-After`` asks to wait, or None."""
    return parse_retry_after(response.headers.get("Retry-After"))


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


def _last_outcome(state: tenacity.RetryCallState) -> Any:
    """The last attempt's answer, or its error raised (not wrapped in a ``RetryError``)."""
    assert state.outcome is not None
    return state.outcome.result()


def _answer(state: tenacity.RetryCallState) -> Optional[requests.Response]:
    """The attempt's answer, or None when it raised."""
    outcome = state.outcome
    return None if outcome is None or outcome.failed else outcome.result()


def _asked_wait(state: tenacity.RetryCallState) -> float:
    """Seconds the attempt's answer asks to wait (``Retry-After``), 0 when none."""
    answer = _answer(state)
    return (retry_after(answer) or 0.0) if answer is not None else 0.0


class stop_at_deadline(stop_base):  # named as tenacity names its own
    """Stop once ``deadline`` has passed, or when the answer asks to wait past it."""

    def __init__(self, deadline: Optional[Deadline]) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        left = None if self.deadline is None else self.deadline.remaining()
        return left is not None and (left <= 0.0 or _asked_wait(retry_state) >= left)


class stop_after_retries(stop_base):
    """Stop after ``retries`` retries; answers in maintenance are not counted.

    It counts them as it is asked about each attempt: one instance per request.
    """

    def __init__(self, retries: int) -> None:
        self.retries = retries
        self.in_maintenance = 0

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        answer = _answer(retry_state)
        if answer is not None and in_maintenance(answer):
            self.in_maintenance += 1
        return retry_state.attempt_number - self.in_maintenance > self.retries


class stop_after_unreached(stop_base):
    """Stop after ``retries`` retries when the attempt never reached the server."""

    def __init__(self, retries: int) -> None:
        self.retries = retries

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        assert retry_state.outcome is not None
        failure = retry_state.outcome.exception()
        unreached = failure is not None and sent_nothing(failure)
        return unreached and retry_state.attempt_number > self.retries


class wait_retry_after(wait_base):
    """Wait ``backoff``, or longer if the answer's ``Retry-After`` asks; not past ``deadline``."""

    def __init__(
        self, backoff: Callable[[tenacity.RetryCallState], float], deadline: Optional[Deadline]
    ) -> None:
        self.backoff = backoff
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        seconds = max(self.backoff(retry_state), _asked_wait(retry_state))
        return seconds if self.deadline is None else self.deadline.cap(seconds)
