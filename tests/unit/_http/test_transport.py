"""The transport's retry budget, first-contact failures, maintenance, 408 and the rate budget."""

from __future__ import annotations

import io
import logging
from typing import Any, Dict, List, Optional

import pytest
import requests
import responses
from helpers.fake_time import FakeTime
from helpers.run_stubs import API
from urllib3.exceptions import MaxRetryError, NewConnectionError

from deploytrigger import APIError, Client, ConnectionFailedError, RateLimitedError, ServerError
from deploytrigger._helpers.deadline import Deadline
from deploytrigger._http.ratelimit import RateBudget
from deploytrigger._http.transport import FIRST_CONTACT_RETRIES, Transport
from deploytrigger.settings import resolve_settings

pytestmark = pytest.mark.isolated_environment

HEALTH = f"{API}/health"
FLOWS = f"{API}/flows/"


@pytest.fixture
def http() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime(1000.0)


def make_client(fake_time: FakeTime, **kwargs: Any) -> Client:
    options: Dict[str, Any] = {"sleep": fake_time.sleep, "clock": fake_time.clock}
    options.update(kwargs)
    return Client(API, **options)


def refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")
    return requests.ConnectionError(MaxRetryError(None, "/api/health", reason=reason))


def test_by_default_a_busy_server_is_retried_for_the_whole_retry_budget(
    http: Any, fake_time: FakeTime
) -> None:
    http.get(HEALTH, json={"detail": "database is busy"}, status=503)
    with make_client(fake_time) as client, pytest.raises(ServerError) as info:
        client._transport.request("GET", "/health")

    assert sum(fake_time.sleeps) == pytest.approx(90.0)
    assert info.value.attempts == len(http.calls) > 6  # more than Prefect's 5 retries


def test_retry_budget_is_configurable_and_zero_turns_retrying_off(
    http: Any, fake_time: FakeTime
) -> None:
    http.get(HEALTH, status=503)
    with make_client(fake_time, retry_budget=0) as client, pytest.raises(ServerError):
        client._transport.request("GET", "/health")

    assert len(http.calls) == 1 and fake_time.sleeps == []


def test_prefect_client_max_retries_still_caps_the_count(
    http: Any, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_CLIENT_MAX_RETRIES", "2")
    http.get(HEALTH, status=503)
    with make_client(fake_time) as client, pytest.raises(ServerError):
        client._transport.request("GET", "/health")

    assert len(http.calls) == 3


def test_a_server_never_reached_fails_after_a_few_retries_not_the_whole_budget(
    http: Any, fake_time: FakeTime
) -> None:
    http.get(HEALTH, body=refused())
    with make_client(fake_time) as client, pytest.raises(ConnectionFailedError):
        client._transport.request("GET", "/health")

    assert len(http.calls) == FIRST_CONTACT_RETRIES + 1


def test_a_server_that_answered_before_is_retried_through_a_restart_for_the_budget(
    http: Any, fake_time: FakeTime
) -> None:
    http.get(HEALTH, json=True)
    with make_client(fake_time) as client:
        client._transport.request("GET", "/health")
        http.replace(responses.GET, HEALTH, body=refused())
        with pytest.raises(ConnectionFailedError):
            client._transport.request("GET", "/health")

    assert sum(fake_time.sleeps) == pytest.approx(90.0)


def unreachable_warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "unreachable" in r.getMessage()
    ]


def test_a_server_that_stops_answering_is_warned_about_once_per_outage(
    http: Any, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="deploytrigger")
    http.get(HEALTH, json=True)
    with make_client(fake_time) as client:
        client._transport.request("GET", "/health")
        http.replace(responses.GET, HEALTH, body=refused())
        for _ in range(2):  # two requests, one outage: one warning, at its first refusal
            with pytest.raises(ConnectionFailedError):
                client._transport.request("GET", "/health")
        assert unreachable_warnings(caplog) == [f"{API} is unreachable; retrying for up to 90 s"]
        http.replace(responses.GET, HEALTH, json=True)
        client._transport.request("GET", "/health")  # it answers: the outage is over
        http.replace(responses.GET, HEALTH, body=refused())
        with pytest.raises(ConnectionFailedError):
            client._transport.request("GET", "/health")

    assert len(unreachable_warnings(caplog)) == 2  # a new outage, a new warning


def test_the_unreachable_warning_says_the_retry_count_when_it_is_capped(
    http: Any, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    http.get(HEALTH, json=True)
    with make_client(fake_time, max_retries=2, retry_budget=30) as client:
        client._transport.request("GET", "/health")
        http.replace(responses.GET, HEALTH, body=refused())
        with pytest.raises(ConnectionFailedError):
            client._transport.request("GET", "/health")

    assert unreachable_warnings(caplog) == [
        f"{API} is unreachable; retrying up to 2 times within 30 s"
    ]


def test_a_server_never_reached_or_a_busy_one_is_not_called_unreachable(
    http: Any, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    http.get(HEALTH, body=refused())
    http.get(FLOWS, status=503)
    with make_client(fake_time) as client:
        with pytest.raises(ConnectionFailedError):
            client._transport.request("GET", "/health")  # never answered: a typo, not an outage
        with pytest.raises(ServerError):
            client._transport.request("GET", "/flows/")  # busy: it answers

    assert unreachable_warnings(caplog) == []


def test_maintenance_answers_are_waited_out_without_using_up_max_retries(
    http: Any, fake_time: FakeTime
) -> None:
    for _ in range(4):
        http.post(FLOWS, status=503, headers={"Prefect-Maintenance": "true"})
    http.post(FLOWS, json={"id": "x"}, status=201)
    with make_client(fake_time, max_retries=0, backoff=lambda s: 2.0) as client:
        answer = client._transport.request("POST", "/flows/", body={}, idempotent=False)

    assert answer == {"id": "x"}
    assert fake_time.sleeps == [2.0] * 4


def test_408_is_retried_for_a_read_and_raised_for_a_create(http: Any, fake_time: FakeTime) -> None:
    http.get(HEALTH, status=408)
    http.get(HEALTH, json=True)
    http.post(FLOWS, json={"detail": "Request Timeout"}, status=408)
    with make_client(fake_time, backoff=lambda s: 1.0) as client:
        assert client._transport.request("GET", "/health") is True
        with pytest.raises(APIError) as info:
            client._transport.request("POST", "/flows/", body={}, idempotent=False)

    assert info.value.status_code == 408
    assert [call.request.method for call in http.calls] == ["GET", "GET", "POST"]


# -- the request-rate budget -------------------------------------------------------------


def test_every_attempt_takes_a_slot_and_a_429_lowers_the_rate_a_success_restores_it(
    http: Any, fake_time: FakeTime
) -> None:
    http.get(HEALTH, status=429)
    http.get(HEALTH, json=True)
    budget = RateBudget(600, clock=fake_time.clock, sleep=fake_time.sleep)
    rates: List[float] = []
    acquire = budget.acquire

    def counting_acquire(max_wait: Optional[float] = None) -> float:
        rates.append(budget.rate)
        return acquire(max_wait)

    budget.acquire = counting_acquire  # type: ignore[method-assign]
    transport = Transport(
        resolve_settings(API),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        backoff=lambda s: 0.0,
        rate_budget=budget,
    )
    assert transport.request("GET", "/health") is True

    assert rates == [600.0, 300.0]  # two attempts, each through the budget
    assert budget.rate == pytest.approx(306.0)  # the success gave 1 % of 600 back


def test_clients_of_one_api_url_share_one_budget_the_lowest_wins(fake_time: FakeTime) -> None:
    url = "http://shared-budget.test:4200/api"
    with Client(url, max_requests_per_minute=900) as first, Client(
        "http://user:pw@shared-budget.test:4200/api/", max_requests_per_minute=600
    ) as second, Client("http://other-budget.test/api", max_requests_per_minute=900) as other:
        budget = first._transport.rate_budget
        assert budget is not None and budget is second._transport.rate_budget
        assert budget.per_minute == 600
        assert other._transport.rate_budget is not budget


def test_no_budget_unless_one_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(API) as client:
        assert client._transport.rate_budget is None
    monkeypatch.setenv("DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE", "120")
    with Client(API) as client:
        assert client._transport.rate_budget is not None
        assert client._transport.rate_budget.per_minute == 120


def test_an_error_that_is_not_a_429_leaves_the_rate_as_it_is(
    http: Any, fake_time: FakeTime
) -> None:
    http.get(HEALTH, status=404, json={"detail": "Not Found"})
    budget = RateBudget(600, clock=fake_time.clock, sleep=fake_time.sleep)
    budget.limited()
    transport = Transport(resolve_settings(API), rate_budget=budget)
    with pytest.raises(APIError):
        transport.request("GET", "/health")

    assert budget.rate == 300


def test_a_slot_after_the_deadline_is_not_waited_for_and_the_request_not_sent(
    http: Any, fake_time: FakeTime
) -> None:
    http.get(HEALTH, json=True)
    budget = RateBudget(1, clock=fake_time.clock, sleep=fake_time.sleep)  # one a minute
    transport = Transport(resolve_settings(API), rate_budget=budget)
    assert transport.request("GET", "/health") is True  # the burst's one slot

    with pytest.raises(RateLimitedError, match="after the deadline") as raised:
        transport.request("GET", "/health", deadline=Deadline(5, fake_time.clock))

    assert fake_time.sleeps == [5]  # waited up to the deadline, not the minute
    assert raised.value.retry_after == pytest.approx(60)
    assert raised.value.status_code is None
    assert len(http.calls) == 1


def test_a_slot_before_the_deadline_is_waited_for(http: Any, fake_time: FakeTime) -> None:
    http.get(HEALTH, json=True)
    budget = RateBudget(6, clock=fake_time.clock, sleep=fake_time.sleep)  # one every 10 s
    transport = Transport(resolve_settings(API), rate_budget=budget)
    transport.request("GET", "/health")

    assert transport.request("GET", "/health", deadline=Deadline(30, fake_time.clock)) is True
    assert fake_time.sleeps == [10]
    assert len(http.calls) == 2


class ClosedUnderTheReader(io.BufferedReader):
    """An answer's body whose connection another thread closes while it is read."""

    def __init__(self, message: str = "I/O operation on closed file.") -> None:
        super().__init__(io.BytesIO(b"true"))
        self.message = message

    def read(self, size: Optional[int] = -1) -> bytes:
        raise ValueError(self.message)

    read1 = read


def test_an_answer_closed_under_the_reader_is_a_connection_failure_retried_when_idempotent(
    http: Any, fake_time: FakeTime
) -> None:
    http.get(HEALTH, body=ClosedUnderTheReader())
    http.get(HEALTH, body=ValueError("bad value"))  # raised before any answer: not ours
    with make_client(fake_time) as client:
        with pytest.raises(ValueError, match="bad value"):  # any other ValueError is not ours
            client._transport.request("GET", "/health")
        http.replace(responses.GET, HEALTH, body=ClosedUnderTheReader())
        http.add(responses.GET, HEALTH, json=True)
        assert client._transport.request("GET", "/health") is True  # retried once
        http.post(FLOWS, body=ClosedUnderTheReader())
        with pytest.raises(ConnectionFailedError, match="closed under the answer"):
            client._transport.request("POST", "/flows/", body={}, idempotent=False)


def test_any_value_error_reading_the_answer_is_a_connection_failure_whatever_its_text(
    http: Any, fake_time: FakeTime
) -> None:
    # A buffered reader closed under its reader says "read of closed file".
    http.get(HEALTH, body=ClosedUnderTheReader("read of closed file"))
    http.get(HEALTH, json=True)
    with make_client(fake_time) as client:
        assert client._transport.request("GET", "/health") is True

    assert len(http.calls) == 2
