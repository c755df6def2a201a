"""When one HTTP request is retried, and how long each retry waits."""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import Any, Callable, Iterable, List, Optional

import pytest
import requests
from helpers.fake_time import FakeTime
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
)

from deploytrigger._helpers.deadline import Deadline
from deploytrigger._http.retries import (
    MAX_RETRY_AFTER,
    RETRY_STATUSES,
    parse_retry_after,
    retrying,
    sent_nothing,
)

NOW = dt.datetime(2026, 11, 23, 20, 0, 0, tzinfo=dt.timezone.utc)


def status(code: int, retry_after: Optional[float] = None) -> requests.Response:
    """An answer with ``code`` (and a ``Retry-After`` header in seconds)."""
    response = requests.Response()
    response.status_code = code
    if retry_after is not None:
        response.headers["Retry-After"] = f"{retry_after:g}"
    return response


OK = status(200)


def refused() -> requests.ConnectionError:
    """What requests raises when nothing listens on the port."""
    reason = NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"
    )
    return requests.ConnectionError(MaxRetryError(None, "/api/health", reason=reason))


def unresolvable() -> requests.ConnectionError:
    """What requests raises for a host name that does not resolve, on urllib3 2 and 1.26."""
    try:
        from urllib3.exceptions import NameResolutionError
    except ImportError:  # urllib3 1.26 (requests 2.25): a NewConnectionError
        message = "Failed to establish a new connection: [Errno -2] Name or service not known"
        reason: Exception = NewConnectionError(None, message)
    else:
        reason = NameResolutionError("prefect.invalid", None, OSError("Name or service not known"))
    return requests.ConnectionError(MaxRetryError(None, "/api/health", reason=reason))


# -- parse_retry_after ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), ("120", 120.0)],
)
def test_retry_after_in_seconds_is_read_and_never_negative(header: str, expected: float) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_retry_after_http_date_is_seconds_from_now() -> None:
    header = email.utils.format_datetime(NOW + dt.timedelta(seconds=30), usegmt=True)

    assert parse_retry_after(header, now=NOW) == 30.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    header = email.utils.format_datetime(NOW - dt.timedelta(minutes=5), usegmt=True)

    assert parse_retry_after(header, now=NOW) == 0.0


@pytest.mark.parametrize("header", [None, "", "soon", "nan", "inf", "Mon, 99 Foo 2026"])
def test_unreadable_retry_after_is_none(header: Optional[str]) -> None:
    assert parse_retry_after(header, now=NOW) is None


# -- what is retried ----------------------------------------------------------------------


def is_retried(outcome: Any, idempotent: bool) -> bool:
    """Whether the policy sends a request again after ``outcome`` (an answer or an error)."""
    call = scripted([outcome, OK])
    policy = retrying(
        max_retries=1, idempotent=idempotent, sleep=FakeTime(0.0).sleep, backoff=lambda s: 0.0
    )
    try:
        policy(call)
    except Exception as exc:
        assert exc is outcome  # not retried: the error itself, not a tenacity RetryError
    return bool(call.count == 2)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("make_error", "if_idempotent", "if_not_idempotent"),
    [
        (lambda: status(429), True, True),
        (lambda: status(429, retry_after=MAX_RETRY_AFTER), True, True),
        (lambda: status(429, retry_after=MAX_RETRY_AFTER + 1), False, False),
        (lambda: status(503, retry_after=MAX_RETRY_AFTER + 1), False, False),
        (lambda: status(502), True, False),
        (lambda: status(503), True, False),
        (refused, True, True),
        (unresolvable, True, True),
        (lambda: requests.ConnectTimeout("connect timed out"), True, True),
        (lambda: requests.ConnectionError("Connection reset by peer"), True, False),
        (lambda: requests.ReadTimeout("read timed out"), True, False),
        (lambda: requests.exceptions.SSLError("certificate verify failed"), False, False),
        (lambda: ValueError("not a transport error"), False, False),
    ],
    ids=[
        "429",
        "429-retry-after-at-max",
        "429-retry-after-above-max",
        "503-retry-after-above-max",
        "502",
        "503",
        "connection-refused",
        "name-not-resolved",
        "connect-timeout",
        "reset-after-sending",
        "read-timeout",
        "ssl-error",
        "other-exception",
    ],
)
def test_retryable_matrix(
    make_error: Callable[[], Any], if_idempotent: bool, if_not_idempotent: bool
) -> None:
    assert is_retried(make_error(), idempotent=True) is if_idempotent
    assert is_retried(make_error(), idempotent=False) is if_not_idempotent


def test_a_proxy_that_cannot_be_connected_to_means_the_request_never_left() -> None:
    timed_out = ConnectTimeoutError(None, "Connection to proxy.test timed out")
    reason = ProxyError("Unable to connect to proxy", timed_out)
    error = requests.exceptions.ProxyError(MaxRetryError(None, "/api/health", reason=reason))

    assert sent_nothing(error)
    assert is_retried(error, idempotent=False)


def test_the_reasons_type_not_the_text_says_a_request_never_left() -> None:
    # A reset after sending, on a URL that happens to contain the name of a connect error.
    reset = ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))
    url = "/api/deployments/name/NewConnectionError/nightly"
    error = requests.ConnectionError(MaxRetryError(None, url, reason=reset))

    assert not sent_nothing(error)
    assert not is_retried(error, idempotent=False)


def test_500_is_never_a_retryable_status() -> None:
    assert frozenset({408, 429, 502, 503}) == RETRY_STATUSES
    assert not is_retried(status(500), idempotent=True)


# -- retrying ------------------------------------------------------------------------------


def scripted(outcomes: Iterable[Any]) -> Callable[[], Any]:
    """A call that raises or returns each outcome in turn; counts its calls."""
    queue = list(outcomes)

    def call() -> Any:
        call.count += 1  # type: ignore[attr-defined]
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    call.count = 0  # type: ignore[attr-defined]
    return call


def test_retrying_sends_max_retries_plus_one_attempts_then_raises_the_last_error() -> None:
    time = FakeTime(1000.0)
    call = scripted([status(503)])
    policy = retrying(max_retries=3, idempotent=True, sleep=time.sleep, backoff=lambda s: 1.0)

    assert policy(call).status_code == 503  # the last answer, for the caller to raise

    assert call.count == 4  # type: ignore[attr-defined]
    assert time.sleeps == [1.0, 1.0, 1.0]


def test_retrying_zero_retries_sends_once() -> None:
    time = FakeTime(1000.0)
    call = scripted([status(503)])

    assert retrying(max_retries=0, idempotent=True, sleep=time.sleep)(call).status_code == 503

    assert call.count == 1  # type: ignore[attr-defined]
    assert time.sleeps == []


def test_retrying_waits_at_least_what_retry_after_asks() -> None:
    time = FakeTime(1000.0)
    call = scripted([status(429, retry_after=7.0), OK])
    policy = retrying(max_retries=3, idempotent=False, sleep=time.sleep, backoff=lambda s: 1.0)

    assert policy(call) is OK
    assert time.sleeps == [7.0]


def test_retrying_uses_backoff_when_it_is_longer_than_retry_after() -> None:
    time = FakeTime(1000.0)
    call = scripted([status(429, retry_after=0.2), OK])
    policy = retrying(max_retries=3, idempotent=True, sleep=time.sleep, backoff=lambda s: 1.0)

    assert policy(call) is OK
    assert time.sleeps == [1.0]


def test_retrying_does_not_retry_a_non_idempotent_read_timeout() -> None:
    time = FakeTime(1000.0)
    call = scripted([requests.ReadTimeout("read timed out"), OK])

    with pytest.raises(requests.ReadTimeout):
        retrying(max_retries=3, idempotent=False, sleep=time.sleep)(call)

    assert call.count == 1  # type: ignore[attr-defined]


def test_retrying_starts_no_retry_whose_retry_after_outlasts_the_deadline() -> None:
    time = FakeTime(1000.0)
    deadline = Deadline(5.0, time.clock)
    call = scripted([status(429, retry_after=7.0), OK])
    policy = retrying(
        max_retries=3, idempotent=True, deadline=deadline, sleep=time.sleep, backoff=lambda s: 1.0
    )

    assert policy(call).status_code in RETRY_STATUSES

    assert call.count == 1  # type: ignore[attr-defined]
    assert time.sleeps == []


def test_retrying_cuts_its_backoff_at_the_deadline_and_stops_there() -> None:
    time = FakeTime(1000.0)
    deadline = Deadline(2.5, time.clock)
    call = scripted([refused()])
    policy = retrying(
        max_retries=50, idempotent=True, deadline=deadline, sleep=time.sleep, backoff=lambda s: 10
    )

    with pytest.raises(requests.ConnectionError):
        policy(call)

    assert time.sleeps == [2.5]
    assert call.count == 2  # type: ignore[attr-defined]


def test_default_backoff_starts_near_half_a_second_and_is_capped() -> None:
    time = FakeTime(1000.0)
    call = scripted([status(503)])

    retrying(max_retries=8, idempotent=True, sleep=time.sleep)(call)

    assert len(time.sleeps) == 8
    assert 0.5 <= time.sleeps[0] <= 1.5
    assert all(0.5 <= seconds <= 11.0 for seconds in time.sleeps)
    assert 10.0 <= time.sleeps[-1] <= 11.0


def test_retrying_calls_before_sleep_once_per_retry() -> None:
    time = FakeTime(1000.0)
    seen: List[int] = []
    call = scripted([status(503), status(503), OK])
    policy = retrying(
        max_retries=5,
        idempotent=True,
        sleep=time.sleep,
        backoff=lambda s: 1.0,
        before_sleep=lambda state: seen.append(state.attempt_number),
    )

    assert policy(call) is OK
    assert seen == [1, 2]


# -- 408, maintenance, the retry budget ---------------------------------------------------


def maintenance(code: int = 503) -> requests.Response:
    response = status(code)
    response.headers["Prefect-Maintenance"] = "true"
    return response


def test_408_is_retried_only_for_idempotent_requests() -> None:
    assert is_retried(status(408), idempotent=True)
    assert not is_retried(status(408), idempotent=False)


def test_an_answer_in_maintenance_is_retried_even_when_not_idempotent() -> None:
    assert is_retried(maintenance(), idempotent=False)
    assert not is_retried(status(503), idempotent=False)


def test_answers_in_maintenance_do_not_count_against_max_retries() -> None:
    time = FakeTime(1000.0)
    call = scripted([maintenance(), maintenance(), maintenance(), status(503), status(503)])
    policy = retrying(max_retries=1, idempotent=True, sleep=time.sleep, backoff=lambda s: 1.0)

    last = policy(call)

    assert "Prefect-Maintenance" not in last.headers  # the counted retry was used up by 503s
    assert call.count == 5  # type: ignore[attr-defined]


def test_maintenance_is_bounded_by_the_retry_budget() -> None:
    time = FakeTime(1000.0)
    call = scripted([maintenance()])
    budget = Deadline(10.0, time.clock)
    policy = retrying(
        max_retries=0, idempotent=True, budget=budget, sleep=time.sleep, backoff=lambda s: 3.0
    )

    assert policy(call).status_code in RETRY_STATUSES

    assert time.sleeps == [3.0, 3.0, 3.0, 1.0]
    assert call.count == 5  # type: ignore[attr-defined]


def test_without_max_retries_the_budget_alone_stops_retrying() -> None:
    time = FakeTime(1000.0)
    call = scripted([status(503)])
    budget = Deadline(60.0, time.clock)
    policy = retrying(max_retries=None, idempotent=True, budget=budget, sleep=time.sleep)

    assert policy(call).status_code in RETRY_STATUSES

    assert sum(time.sleeps) == pytest.approx(60.0)
    assert len(time.sleeps) >= 8  # exponential backoff, capped: many retries fit in a minute


def test_the_earlier_of_budget_and_deadline_wins() -> None:
    time = FakeTime(1000.0)
    call = scripted([refused()])
    policy = retrying(
        max_retries=None,
        idempotent=True,
        deadline=Deadline(4.0, time.clock),
        budget=Deadline(60.0, time.clock),
        sleep=time.sleep,
        backoff=lambda s: 3.0,
    )

    with pytest.raises(requests.ConnectionError):
        policy(call)

    assert time.sleeps == [3.0, 1.0]


def test_a_retry_after_beyond_the_budget_is_not_waited_for() -> None:
    time = FakeTime(1000.0)
    call = scripted([status(429, retry_after=30.0), OK])
    policy = retrying(
        max_retries=None, idempotent=True, budget=Deadline(20.0, time.clock), sleep=time.sleep
    )

    assert policy(call).status_code in RETRY_STATUSES

    assert time.sleeps == []
