"""Client over a stubbed Prefect API (``responses``): requests sent, retries, errors, waiting.

Time is injected: ``sleep`` records each pause and moves a fake monotonic clock,
so no test sleeps and every wait is asserted exactly.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Type

import pytest
import requests
import responses
import tenacity
from helpers.fake_time import FakeTime

from deploytrigger import (
    AuthenticationError,
    BadRequestError,
    Client,
    ConnectionFailedError,
    DeploymentNotFoundError,
    DeployTriggerError,
    FlowRunNotFoundError,
    InvalidArgumentError,
    InvalidResponseError,
    ParameterRejectedError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    StateType,
    TLSError,
)

pytestmark = pytest.mark.isolated_environment

API = "http://prefect.test:4200/api"
KEY = "pnu_S3CRET-api-key-0123456789"
DEPLOYMENT_ID = uuid.UUID("3c9a7f3e-5b1d-4e2a-9f6c-0d8e7b6a5c41")
FLOW_ID = uuid.UUID("9b2d3c4e-5f60-4172-8394-a5b6c7d8e9f0")
RUN_ID = uuid.UUID("5f2b8c1e-7d4a-4b3e-9a6f-1c2d3e4f5a6b")

BY_NAME = f"{API}/deployments/name/add/add-dep"
BY_ID = f"{API}/deployments/{DEPLOYMENT_ID}"
CREATE = f"{API}/deployments/{DEPLOYMENT_ID}/create_flow_run"
RUN = f"{API}/flow_runs/{RUN_ID}"

MAX_RETRIES = 3
VALIDATION_DETAIL = (
    "Error creating flow run: Validation failed for field 'x'. "
    "Failure reason: 'abc' is not of type 'integer'"
)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime(1000.0)


def make_client(fake_time: FakeTime, **kwargs: Any) -> Client:
    options: Dict[str, Any] = {
        "api_key": KEY,
        "max_retries": MAX_RETRIES,
        "sleep": fake_time.sleep,
        "clock": fake_time.clock,
        "backoff": lambda state: 1.0,
    }
    options.update(kwargs)
    return Client(API, **options)


@pytest.fixture
def client(fake_time: FakeTime) -> Iterator[Client]:
    with make_client(fake_time) as shared:
        yield shared


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    """Stubbed HTTP: an unregistered URL raises ConnectionError, nothing reaches a network."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# -- server JSON --------------------------------------------------------------------------


def deployment_json(**overrides: Any) -> Dict[str, Any]:
    data: Dict[str, Any] = {
        "id": str(DEPLOYMENT_ID),
        "created": "2026-11-23T19:00:00.000000Z",
        "updated": "2026-11-23T19:00:00.000000Z",
        "name": "add-dep",
        "version": "1a2b3c4d",
        "description": None,
        "flow_id": str(FLOW_ID),
        "paused": False,
        "schedules": [],
        "job_variables": {},
        "parameters": {"y": 1},
        "tags": ["demo"],
        "labels": {},
        "work_queue_name": None,
        "parameter_openapi_schema": {
            "title": "Parameters",
            "type": "object",
            "properties": {
                "x": {"title": "x", "position": 0, "type": "integer"},
                "y": {"title": "y", "position": 1, "type": "integer", "default": 1},
            },
            "required": ["x"],
        },
        "entrypoint": "flows.py:add",
        "enforce_parameter_schema": True,
        "work_pool_name": None,
        "status": "READY",
    }
    data.update(overrides)
    return data


def flow_run_json(
    state_type: str = "SCHEDULED", message: Optional[str] = None, **overrides: Any
) -> Dict[str, Any]:
    name = "Scheduled" if state_type == "SCHEDULED" else state_type.title()
    data: Dict[str, Any] = {
        "id": str(RUN_ID),
        "created": "2026-11-23T20:00:00.100000Z",
        "updated": "2026-11-23T20:00:00.200000Z",
        "name": "mottled-crab",
        "flow_id": str(FLOW_ID),
        "deployment_id": str(DEPLOYMENT_ID),
        "work_queue_name": None,
        "parameters": {"x": 5, "y": 1},
        "idempotency_key": "key-1",
        "context": {},
        "tags": ["demo"],
        "parent_task_run_id": None,
        "state_type": state_type,
        "state_name": name,
        "expected_start_time": "2026-11-23T20:00:00.100000Z",
        "start_time": None,
        "end_time": None,
        "job_variables": {},
        "state": {
            "id": "0d9a1b2c-3d4e-4f50-8162-738495a6b7c8",
            "type": state_type,
            "name": name,
            "timestamp": "2026-11-23T20:00:00.100000+00:00",
            "message": message,
            "data": None,
            "state_details": {"flow_run_id": str(RUN_ID)},
        },
    }
    data.update(overrides)
    return data


def sent_json(call: Any) -> Dict[str, Any]:
    body = call.request.body
    parsed: Dict[str, Any] = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    return parsed


def calls_to(http: responses.RequestsMock, method: str, url: str) -> List[Any]:
    return [c for c in http.calls if c.request.method == method and c.request.url == url]


def assert_deploytrigger_error(error: BaseException, expected: Type[BaseException]) -> None:
    """Exactly ``expected``; nothing from requests, tenacity or json; no KeyError."""
    assert type(error) is expected, f"{type(error).__name__} is not {expected.__name__}"
    assert isinstance(error, DeployTriggerError)
    assert not isinstance(error, requests.RequestException)
    assert not isinstance(error, tenacity.RetryError)
    assert not isinstance(error, json.JSONDecodeError)
    assert not isinstance(error, KeyError)


def stub_deployment_and_create(http: responses.RequestsMock, run_state: str = "SCHEDULED") -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, json=flow_run_json(run_state), status=201)


# -- run_deployment: the requests sent ------------------------------------------------------


def test_run_by_name_reads_the_deployment_then_creates_the_run_with_the_given_body(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    when = dt.datetime(2026, 11, 23, 21, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))

    run = client.run_deployment(
        "add/add-dep",
        parameters={"x": 5},
        scheduled_time=when,
        flow_run_name="nightly-1",
        tags=["from-test"],
        idempotency_key="caller-key",
        job_variables={"env": {"A": "1"}},
        timeout=0,
    )

    assert [(c.request.method, c.request.url) for c in http.calls] == [
        ("GET", BY_NAME),
        ("POST", CREATE),
    ]
    assert sent_json(http.calls[1]) == {
        "parameters": {"x": 5},
        "state": {
            "type": "SCHEDULED",
            "name": "Scheduled",
            "state_details": {"scheduled_time": "2026-11-23T20:30:00Z"},
        },
        "name": "nightly-1",
        "tags": ["from-test"],
        "idempotency_key": "caller-key",
        "job_variables": {"env": {"A": "1"}},
    }
    assert run.id == RUN_ID
    assert run.state is not None and run.state.type == "SCHEDULED"


def test_run_sends_work_queue_name_only_when_given(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    client.run_deployment("add/add-dep", timeout=0)
    client.run_deployment("add/add-dep", timeout=0, work_queue_name="wq")

    first, second = (sent_json(c) for c in calls_to(http, "POST", CREATE))
    assert "work_queue_name" not in first
    assert second["work_queue_name"] == "wq"


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("my flow/my dep", "my%20flow/my%20dep"),
        ("données/dép", "donn%C3%A9es/d%C3%A9p"),
        ("etl?x/a#b", "etl%3Fx/a%23b"),
    ],
)
def test_deployment_name_parts_are_url_quoted(
    client: Client, http: responses.RequestsMock, name: str, path: str
) -> None:
    url = f"{API}/deployments/name/{path}"
    http.get(url, json=deployment_json())
    http.post(CREATE, json=flow_run_json(), status=201)

    client.run_deployment(name, timeout=0)

    assert http.calls[0].request.method == "GET"
    assert http.calls[0].request.url == url


def test_a_fresh_uuid4_idempotency_key_is_sent_when_none_is_given(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    client.run_deployment("add/add-dep", timeout=0)
    client.run_deployment("add/add-dep", timeout=0)

    keys = [sent_json(c)["idempotency_key"] for c in calls_to(http, "POST", CREATE)]
    assert len(keys) == 2
    assert all(uuid.UUID(key).version == 4 for key in keys)
    assert keys[0] != keys[1]


def test_timeout_zero_returns_the_created_run_without_polling(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, json=flow_run_json("COMPLETED"))

    run = client.run_deployment("add/add-dep", timeout=0)

    assert len(http.calls) == 2
    assert calls_to(http, "GET", RUN) == []
    assert fake_time.sleeps == []
    assert run.state is not None and run.state.type == "SCHEDULED"


def test_timeout_none_polls_the_run_until_it_is_final(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    for state in ("PENDING", "RUNNING", "RUNNING", "COMPLETED"):
        http.get(RUN, json=flow_run_json(state))

    run = client.run_deployment("add/add-dep", poll_interval=2, timeout=None)

    assert run.state is not None and run.state.type == "COMPLETED"
    assert run.is_final()
    assert len(calls_to(http, "GET", RUN)) == 4
    assert fake_time.sleeps == [2, 2, 2]


def test_positive_timeout_returns_the_unfinished_run_in_its_last_state(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    for message in ("t0", "t5", "t10", "t12"):
        http.get(RUN, json=flow_run_json("RUNNING", message=message))

    run = client.run_deployment("add/add-dep", poll_interval=5, timeout=12)

    assert not run.is_final()
    assert run.state is not None
    assert run.state.type is StateType.RUNNING
    assert run.state.message == "t12"
    assert fake_time.sleeps == [5, 5, 2]
    assert len(calls_to(http, "GET", RUN)) == 4


@pytest.mark.parametrize("name", [DEPLOYMENT_ID, str(DEPLOYMENT_ID)])
def test_run_by_id_reads_the_deployment_by_id(
    client: Client, http: responses.RequestsMock, name: Any
) -> None:
    http.get(BY_ID, json=deployment_json())
    http.post(CREATE, json=flow_run_json(), status=201)

    run = client.run_deployment(name, timeout=0)

    assert [(c.request.method, c.request.url) for c in http.calls] == [
        ("GET", BY_ID),
        ("POST", CREATE),
    ]
    assert run.id == RUN_ID


def test_wait_for_flow_run_polls_by_id_until_final(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(RUN, json=flow_run_json("RUNNING"))
    http.get(RUN, json=flow_run_json("FAILED", message="boom"))

    run = client.wait_for_flow_run(str(RUN_ID), poll_interval=3)

    assert run.state is not None and run.state.type == "FAILED"
    assert fake_time.sleeps == [3]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": -1},
        {"poll_interval": -1},
        {"parameters": {"x": float("nan")}},
        {"tags": "nightly"},
        {"scheduled_time": "tomorrow"},
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    client: Client, http: responses.RequestsMock, kwargs: Dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgumentError):
        client.run_deployment("add/add-dep", **kwargs)

    assert len(http.calls) == 0


def test_bad_deployment_name_is_refused_before_any_request(
    client: Client, http: responses.RequestsMock
) -> None:
    with pytest.raises(InvalidArgumentError, match="flow name/deployment name"):
        client.run_deployment("a/b/c", timeout=0)

    assert len(http.calls) == 0


def test_unknown_parameter_name_is_refused_before_the_run_is_created(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    with pytest.raises(ParameterRejectedError) as info:
        client.run_deployment("add/add-dep", parameters={"zz": 1}, timeout=0)

    assert info.value.parameter == "zz"
    assert calls_to(http, "POST", CREATE) == []


# -- retries --------------------------------------------------------------------------------


def test_create_retried_after_503_makes_one_run_with_the_same_idempotency_key(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, json={"detail": "database is busy"}, status=503)
    http.post(CREATE, json=flow_run_json(), status=201)

    run = client.run_deployment("add/add-dep", timeout=0)

    creates = calls_to(http, "POST", CREATE)
    assert len(creates) == 2
    keys = {sent_json(c)["idempotency_key"] for c in creates}
    assert len(keys) == 1
    assert sent_json(creates[0]) == sent_json(creates[1])
    assert run.id == RUN_ID
    assert fake_time.sleeps == [1.0]


def test_429_with_retry_after_waits_at_least_that_long(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(BY_NAME, json={"detail": "slow down"}, status=429, headers={"Retry-After": "7"})
    http.get(BY_NAME, json=deployment_json())

    deployment = client.read_deployment_by_name("add/add-dep")

    assert deployment.id == DEPLOYMENT_ID
    assert len(fake_time.sleeps) == 1
    assert fake_time.sleeps[0] >= 7


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(429, RateLimitedError), (503, ServerError), (502, ServerError)],
)
def test_retries_stop_after_max_retries_with_an_error_naming_status_method_url_attempts(
    client: Client,
    http: responses.RequestsMock,
    fake_time: FakeTime,
    status: int,
    error_type: Type[Exception],
) -> None:
    http.get(BY_ID, json={"detail": "try later"}, status=status)

    with pytest.raises(error_type) as info:
        client.read_deployment(DEPLOYMENT_ID)

    error = info.value
    assert_deploytrigger_error(error, error_type)
    attempts = MAX_RETRIES + 1
    assert len(http.calls) == attempts
    assert fake_time.sleeps == [1.0] * MAX_RETRIES
    message = str(error)
    assert str(status) in message
    assert "GET" in message
    assert BY_ID in message
    assert f"{attempts} attempts" in message
    assert error.status_code == status  # type: ignore[attr-defined]
    assert error.attempts == attempts  # type: ignore[attr-defined]
    assert error.detail == "try later"  # type: ignore[attr-defined]


def test_retry_after_longer_than_the_maximum_is_not_waited_for(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(
        BY_ID, json={"detail": "come back tomorrow"}, status=429, headers={"Retry-After": "86400"}
    )

    with pytest.raises(RateLimitedError) as info:
        client.read_deployment(DEPLOYMENT_ID)

    assert len(http.calls) == 1
    assert fake_time.sleeps == []
    assert info.value.retry_after == 86400


def test_connection_refused_raises_connection_failed_after_every_attempt(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(BY_ID, body=requests.ConnectionError("Connection refused"))

    with pytest.raises(ConnectionFailedError) as info:
        client.read_deployment(DEPLOYMENT_ID)

    error = info.value
    assert_deploytrigger_error(error, ConnectionFailedError)
    assert isinstance(error, ConnectionError)
    assert isinstance(error.__cause__, requests.ConnectionError)
    assert len(http.calls) == MAX_RETRIES + 1
    assert error.attempts == MAX_RETRIES + 1
    assert fake_time.sleeps == [1.0] * MAX_RETRIES
    assert API in str(error)
    assert "Connection refused" in str(error)


def test_read_timeout_on_a_get_raises_request_timeout_error(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(RUN, body=requests.ReadTimeout("read timed out"))

    with pytest.raises(RequestTimeoutError) as info:
        client.read_flow_run(RUN_ID)

    assert_deploytrigger_error(info.value, RequestTimeoutError)
    assert isinstance(info.value, TimeoutError)
    assert info.value.attempts == MAX_RETRIES + 1
    assert RUN in str(info.value)


def test_tls_failure_raises_tls_error_without_retrying(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_ID, body=requests.exceptions.SSLError("certificate verify failed"))

    with pytest.raises(TLSError) as info:
        client.read_deployment(DEPLOYMENT_ID)

    assert_deploytrigger_error(info.value, TLSError)
    assert len(http.calls) == 1
    assert "PREFECT_API_SSL_CERT_FILE" in str(info.value)


def test_500_is_not_retried_and_raises_server_error(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(BY_ID, json={"detail": "Internal Server Error"}, status=500)

    with pytest.raises(ServerError) as info:
        client.read_deployment(DEPLOYMENT_ID)

    assert_deploytrigger_error(info.value, ServerError)
    assert len(http.calls) == 1
    assert fake_time.sleeps == []
    assert info.value.status_code == 500


# -- error mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (422, BadRequestError),
        (500, ServerError),
    ],
)
def test_error_status_maps_to_its_exception_type(
    client: Client,
    http: responses.RequestsMock,
    status: int,
    error_type: Type[Exception],
) -> None:
    http.get(BY_ID, json={"detail": f"detail for {status}"}, status=status)

    with pytest.raises(DeployTriggerError) as info:
        client.read_deployment(DEPLOYMENT_ID)

    error = info.value
    assert_deploytrigger_error(error, error_type)
    assert error.status_code == status  # type: ignore[attr-defined]
    assert error.detail == f"detail for {status}"  # type: ignore[attr-defined]
    assert error.method == "GET"  # type: ignore[attr-defined]
    assert error.url == BY_ID  # type: ignore[attr-defined]
    assert f"detail for {status}" in str(error)


def test_422_on_create_is_a_bad_request(client: Client, http: responses.RequestsMock) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, json={"detail": [{"loc": ["body", "state"], "msg": "bad"}]}, status=422)

    with pytest.raises(BadRequestError) as info:
        client.run_deployment("add/add-dep", timeout=0)

    assert_deploytrigger_error(info.value, BadRequestError)
    assert len(calls_to(http, "POST", CREATE)) == 1


def test_404_on_a_deployment_name_raises_deployment_not_found_naming_it(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment("add/add-dep", timeout=0)

    error = info.value
    assert_deploytrigger_error(error, DeploymentNotFoundError)
    assert isinstance(error, LookupError)
    assert "'add/add-dep'" in str(error)
    assert error.deployment == "add/add-dep"
    assert len(http.calls) == 1


def test_404_on_a_deployment_id_raises_deployment_not_found_naming_it(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_ID, json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment(DEPLOYMENT_ID, timeout=0)

    assert str(DEPLOYMENT_ID) in str(info.value)
    assert info.value.deployment == str(DEPLOYMENT_ID)


def test_404_on_create_raises_deployment_not_found_with_the_deployment_asked_for(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment("add/add-dep", timeout=0)

    assert_deploytrigger_error(info.value, DeploymentNotFoundError)
    assert "'add/add-dep'" in str(info.value)
    assert info.value.deployment == "add/add-dep"


def test_404_on_a_flow_run_raises_flow_run_not_found(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(RUN, json={"detail": "Flow run not found"}, status=404)

    with pytest.raises(FlowRunNotFoundError) as info:
        client.read_flow_run(RUN_ID)

    assert_deploytrigger_error(info.value, FlowRunNotFoundError)
    assert info.value.flow_run_id == str(RUN_ID)
    assert str(RUN_ID) in str(info.value)


def test_run_deleted_while_waiting_raises_flow_run_not_found(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, json={"detail": "Flow run not found"}, status=404)

    with pytest.raises(FlowRunNotFoundError):
        client.run_deployment("add/add-dep", timeout=30)


def test_409_validation_failure_raises_parameter_rejected_naming_the_parameter(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, json={"detail": VALIDATION_DETAIL}, status=409)

    with pytest.raises(ParameterRejectedError) as info:
        client.run_deployment("add/add-dep", parameters={"x": "abc"}, timeout=0)

    error = info.value
    assert_deploytrigger_error(error, ParameterRejectedError)
    assert isinstance(error, ValueError)
    assert error.parameter == "x"
    assert error.status_code == 409
    assert "is not of type 'integer'" in str(error)
    assert "'add/add-dep'" in str(error)


def test_409_that_is_not_about_a_parameter_stays_a_bad_request(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, json={"detail": "Flow run with this key already exists"}, status=409)

    with pytest.raises(BadRequestError) as info:
        client.run_deployment("add/add-dep", timeout=0)

    assert_deploytrigger_error(info.value, BadRequestError)


def test_200_with_a_body_that_is_not_json_raises_invalid_response(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_ID, body="<html>proxy login</html>", status=200, content_type="text/html")

    with pytest.raises(InvalidResponseError) as info:
        client.read_deployment(DEPLOYMENT_ID)

    error = info.value
    assert_deploytrigger_error(error, InvalidResponseError)
    assert error.status_code == 200
    assert "proxy login" in str(error)


@pytest.mark.parametrize("payload", [{}, [], {"id": "x"}, None])
def test_200_with_json_of_the_wrong_shape_raises_invalid_response(
    client: Client, http: responses.RequestsMock, payload: Any
) -> None:
    if payload is None:
        http.get(BY_ID, body="", status=200)
    else:
        http.get(BY_ID, json=payload)

    with pytest.raises(InvalidResponseError) as info:
        client.read_deployment(DEPLOYMENT_ID)

    assert_deploytrigger_error(info.value, InvalidResponseError)


def test_error_with_a_non_json_body_keeps_a_snippet_as_detail(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_ID, body="Bad Gateway from nginx", status=500, content_type="text/plain")

    with pytest.raises(ServerError) as info:
        client.read_deployment(DEPLOYMENT_ID)

    assert info.value.detail == "Bad Gateway from nginx"


# -- waiting through failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "max_retries", "expected_sleeps"),
    [
        (1.0, 100, [5, 1, 1, 1, 1, 1]),
        (3.0, 100, [5, 3, 2]),
        (1.0, 5, [5, 1, 1, 1, 1, 1]),
    ],
)
def test_server_unreachable_past_the_deadline_returns_the_last_known_run(
    http: responses.RequestsMock,
    fake_time: FakeTime,
    backoff: float,
    max_retries: int,
    expected_sleeps: List[float],
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, json=flow_run_json("RUNNING", message="last seen"))
    http.get(RUN, body=requests.ConnectionError("Connection refused"))

    with make_client(fake_time, max_retries=max_retries, backoff=lambda s: backoff) as client:
        run = client.run_deployment("add/add-dep", poll_interval=5, timeout=10)

    assert run.id == RUN_ID
    assert run.state is not None and run.state.message == "last seen"
    assert fake_time.sleeps == expected_sleeps
    assert sum(fake_time.sleeps) <= 10


def test_server_unreachable_with_retries_left_but_no_time_never_sleeps_past_the_deadline(
    http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, body=requests.ConnectionError("Connection refused"))

    with make_client(fake_time, max_retries=1000, backoff=lambda s: 4.0) as client:
        run = client.run_deployment("add/add-dep", poll_interval=5, timeout=10)

    assert run.id == RUN_ID
    assert run.state is not None and run.state.type == "SCHEDULED"
    assert sum(fake_time.sleeps) <= 10


def test_rate_limit_outlasting_the_deadline_returns_the_last_known_run(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, json=flow_run_json("RUNNING", message="last seen"))
    http.get(RUN, json={"detail": "slow down"}, status=429, headers={"Retry-After": "7"})

    run = client.run_deployment("add/add-dep", poll_interval=5, timeout=10)

    assert run.state is not None and run.state.message == "last seen"
    assert sum(fake_time.sleeps) <= 10


def test_server_unreachable_without_a_deadline_raises_connection_failed(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, body=requests.ConnectionError("Connection refused"))

    with pytest.raises(ConnectionFailedError) as info:
        client.run_deployment("add/add-dep", poll_interval=5, timeout=None)

    assert_deploytrigger_error(info.value, ConnectionFailedError)


# -- credentials ---------------------------------------------------------------------------------


def test_api_key_is_sent_as_a_bearer_authorization_header(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    client.run_deployment("add/add-dep", timeout=0)

    assert all(c.request.headers["Authorization"] == f"Bearer {KEY}" for c in http.calls)


def test_auth_string_is_sent_as_basic_auth_instead_of_the_key(
    http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(BY_ID, json=deployment_json())

    with make_client(fake_time, auth_string="user:pass") as client:
        client.read_deployment(DEPLOYMENT_ID)

    assert http.calls[0].request.headers["Authorization"] == "Basic dXNlcjpwYXNz"


def test_client_reads_url_and_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, http: responses.RequestsMock
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", API + "/")
    monkeypatch.setenv("PREFECT_API_KEY", KEY)
    http.get(BY_ID, json=deployment_json())

    with Client(max_retries=0) as client:
        client.read_deployment(DEPLOYMENT_ID)

    assert http.calls[0].request.url == BY_ID
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


def failing_401(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, json={"detail": "Unauthorized"}, status=401)


def failing_503(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, json={"detail": "busy"}, status=503, headers={"Retry-After": "1"})


def failing_connection(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, body=requests.ConnectionError("Connection refused"))


def failing_create(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, json={"detail": VALIDATION_DETAIL}, status=409)


def failing_wait(http: responses.RequestsMock) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, json={"detail": "nope"}, status=404)


@pytest.mark.parametrize(
    "failure", [failing_401, failing_503, failing_connection, failing_create, failing_wait]
)
def test_api_key_never_appears_in_an_exception_or_a_log_record(
    client: Client,
    http: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    failure: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    failure(http)

    with pytest.raises(DeployTriggerError) as info:
        client.run_deployment("add/add-dep", parameters={"x": 1}, timeout=30)

    texts = [str(info.value), repr(info.value), repr(info.value.args)]
    cause: Optional[BaseException] = info.value.__cause__
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_text:
            texts.append(record.exc_text)
    assert caplog.records, "the failing call should have logged something at DEBUG"
    assert not [text for text in texts if KEY in text]


def test_api_key_with_a_trailing_newline_never_appears_in_an_error(
    http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    # A key read from a file often ends in a newline; requests refuses such a header
    # with an error that quotes the header value.
    http.get(BY_ID, json=deployment_json())

    with make_client(fake_time, api_key=KEY + "\n", max_retries=0) as client:
        try:
            client.read_deployment(DEPLOYMENT_ID)
        except DeployTriggerError as error:
            assert KEY not in str(error)
            assert KEY not in repr(error)


def test_client_repr_hides_the_key_and_url_credentials(fake_time: FakeTime) -> None:
    with Client("http://admin:URLPASSWORD@prefect.test/api", api_key=KEY) as client:
        shown = repr(client)

    assert KEY not in shown
    assert "URLPASSWORD" not in shown
    assert "prefect.test" in shown


# -- the deployment cache: one request per trigger in steady state ---------------------------

OTHER_DEPLOYMENT_ID = uuid.UUID("7e1f0a2b-3c4d-4e5f-8a6b-9c0d1e2f3a4b")
OTHER_CREATE = f"{API}/deployments/{OTHER_DEPLOYMENT_ID}/create_flow_run"


def test_steady_state_trigger_costs_one_request(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    for _ in range(3):
        client.run_deployment("add/add-dep", parameters={"x": 1}, timeout=0)

    assert [c.request.method for c in http.calls] == ["GET", "POST", "POST", "POST"]


def test_threads_missing_the_cache_at_once_share_one_read_of_the_deployment(
    client: Client, http: responses.RequestsMock
) -> None:
    def slow_read(request: Any) -> Any:
        time.sleep(0.3)  # long enough for every thread to miss the cache meanwhile
        return 200, {}, json.dumps(deployment_json())

    http.add_callback(responses.GET, BY_NAME, callback=slow_read)
    http.post(CREATE, json=flow_run_json(), status=201)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        runs = list(pool.map(lambda _: client.run_deployment("add/add-dep", timeout=0), range(16)))

    assert len(runs) == 16
    assert len(calls_to(http, "GET", BY_NAME)) == 1
    assert len(calls_to(http, "POST", CREATE)) == 16


def test_a_failed_shared_read_is_not_reused_by_the_threads_that_waited_for_it(
    client: Client, http: responses.RequestsMock
) -> None:
    answers = iter([(404, {}, json.dumps({"detail": "Deployment not found"}))])

    def read(request: Any) -> Any:
        time.sleep(0.2)
        return next(answers, (200, {}, json.dumps(deployment_json())))

    http.add_callback(responses.GET, BY_NAME, callback=read)
    http.post(CREATE, json=flow_run_json(), status=201)

    def trigger(_: int) -> str:
        try:
            client.run_deployment("add/add-dep", timeout=0)
        except DeploymentNotFoundError:
            return "not found"
        return "created"

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = sorted(pool.map(trigger, range(4)))

    assert outcomes == ["created", "created", "created", "not found"]
    assert len(calls_to(http, "GET", BY_NAME)) == 2


def test_cache_off_reads_the_deployment_for_every_trigger(
    fake_time: FakeTime, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    with make_client(fake_time, deployment_cache_ttl=0) as uncached:
        uncached.run_deployment("add/add-dep", timeout=0)
        uncached.run_deployment("add/add-dep", timeout=0)
    assert [c.request.method for c in http.calls] == ["GET", "POST", "GET", "POST"]


def test_cached_deployment_expires_after_its_ttl(
    fake_time: FakeTime, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    with make_client(fake_time, deployment_cache_ttl=60) as client:
        client.run_deployment("add/add-dep", timeout=0)
        fake_time.now += 61
        client.run_deployment("add/add-dep", timeout=0)
    assert len(calls_to(http, "GET", BY_NAME)) == 2


def test_deployment_recreated_under_the_same_name_is_resolved_again_on_404(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, json=flow_run_json(), status=201)
    client.run_deployment("add/add-dep", timeout=0)

    # Deleted and re-created: the old id answers 404, the name now has a new id.
    http.replace(responses.POST, CREATE, json={"detail": "Deployment not found"}, status=404)
    http.replace(responses.GET, BY_NAME, json=deployment_json(id=str(OTHER_DEPLOYMENT_ID)))
    http.post(OTHER_CREATE, json=flow_run_json(deployment_id=str(OTHER_DEPLOYMENT_ID)), status=201)

    run = client.run_deployment("add/add-dep", idempotency_key="same-key", timeout=0)

    assert run.deployment_id == OTHER_DEPLOYMENT_ID
    assert [(c.request.method, c.request.url) for c in http.calls[2:]] == [
        ("POST", CREATE),
        ("GET", BY_NAME),
        ("POST", OTHER_CREATE),
    ]
    assert sent_json(http.calls[2])["idempotency_key"] == "same-key"
    assert sent_json(http.calls[4])["idempotency_key"] == "same-key"


def test_deployment_deleted_for_good_raises_not_found_after_one_fresh_lookup(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    client.run_deployment("add/add-dep", timeout=0)
    http.replace(responses.POST, CREATE, json={"detail": "Deployment not found"}, status=404)
    http.replace(responses.GET, BY_NAME, json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError, match="'add/add-dep'"):
        client.run_deployment("add/add-dep", timeout=0)
    assert [c.request.method for c in http.calls[2:]] == ["POST", "GET"]


def test_parameter_new_to_a_cached_deployment_is_checked_against_a_fresh_read(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    client.run_deployment("add/add-dep", parameters={"x": 1}, timeout=0)
    schema = deployment_json()["parameter_openapi_schema"]
    schema["properties"]["z"] = {"title": "z", "position": 2, "type": "integer"}
    http.replace(responses.GET, BY_NAME, json=deployment_json(parameter_openapi_schema=schema))

    client.run_deployment("add/add-dep", parameters={"z": 3}, timeout=0)

    assert [c.request.method for c in http.calls] == ["GET", "POST", "GET", "POST"]
    assert sent_json(http.calls[3])["parameters"] == {"z": 3}


# -- waits outlive a server outage -----------------------------------------------------------


def flaky_run_endpoint(http: responses.RequestsMock, failures: int, final: str) -> List[int]:
    """GET /flow_runs/{id}: a refused connection ``failures`` times, then ``final`` state."""
    seen = [0]

    def answer(request: Any) -> Any:
        seen[0] += 1
        if seen[0] <= failures:
            raise requests.ConnectionError("Connection refused")
        return (200, {}, json.dumps(flow_run_json(final)))

    http.add_callback(responses.GET, RUN, callback=answer)
    return seen


def test_wait_without_timeout_polls_on_through_an_outage_shorter_than_the_tolerance(
    fake_time: FakeTime, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    # Two whole polls fail (each is 1 + MAX_RETRIES attempts), the third answers.
    flaky_run_endpoint(http, failures=2 * (MAX_RETRIES + 1), final="COMPLETED")
    with make_client(fake_time, outage_tolerance=60) as client:
        run = client.run_deployment("add/add-dep", poll_interval=5)
    assert run.state is not None and run.state.type is StateType.COMPLETED


def test_wait_raises_once_an_outage_outlasts_the_tolerance(
    fake_time: FakeTime, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    flaky_run_endpoint(http, failures=10_000, final="COMPLETED")
    with make_client(fake_time, outage_tolerance=30) as client:
        started = fake_time.now
        with pytest.raises(ConnectionFailedError):
            client.run_deployment("add/add-dep", poll_interval=5)
    # Polls go on for the tolerance (30 s), not forever, not less.
    assert 30 <= fake_time.now - started < 30 + 5 + (MAX_RETRIES + 1) * 1.0 + 1
