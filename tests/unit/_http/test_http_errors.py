"""The transport over a stubbed Prefect API: retries, and HTTP answers mapped to exceptions.

Time is injected (``helpers.fake_time``), so no test sleeps and every wait is asserted exactly.
"""

from __future__ import annotations

import re
from typing import Any, Type

import pytest
import requests
import responses
from helpers.client_stubs import (  # noqa: F401 - the fixtures: client, fake_time, http
    API,
    BY_ID,
    BY_NAME,
    CREATE,
    DEPLOYMENT_ID,
    MAX_RETRIES,
    RUN,
    RUN_ID,
    assert_deploytrigger_error,
    calls_to,
    client,
    fake_time,
    http,
    sent_json,
)
from helpers.fake_time import FakeTime
from helpers.server_json import deployment_json, flow_run_json

from deploytrigger import (
    AuthenticationError,
    BadRequestError,
    Client,
    ConnectionFailedError,
    DeployTriggerError,
    InvalidResponseError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TLSError,
)

pytestmark = pytest.mark.isolated_environment


def test_create_retried_after_503_makes_one_run_with_the_same_idempotency_key(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(BY_NAME, json=deployment_json(shape="api"))
    http.post(CREATE, json={"detail": "database is busy"}, status=503)
    http.post(CREATE, json=flow_run_json(shape="api"), status=201)

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
    http.get(BY_NAME, json=deployment_json(shape="api"))

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


@pytest.mark.parametrize(
    "openssl_reason",
    [
        "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
        "[SSL: RECORD_LAYER_FAILURE] record layer failure (_ssl.c:1000)",  # OpenSSL 3.2+
    ],
)
def test_https_to_a_plain_http_server_suggests_the_http_url_with_credentials_hidden(
    fake_time: FakeTime, http: responses.RequestsMock, openssl_reason: str
) -> None:
    http.get(re.compile(r"https://.*"), body=requests.exceptions.SSLError(openssl_reason))
    secure = "https://admin:URLPASSWORD@prefect.test:4200/api"
    client = Client(secure, sleep=fake_time.sleep, clock=fake_time.clock)

    with client, pytest.raises(TLSError) as info:
        client.read_deployment(DEPLOYMENT_ID)

    message = str(info.value)
    assert message.endswith(
        "; the server seems to speak plain HTTP, not HTTPS: use http://***@prefect.test:4200/api"
    )
    assert "URLPASSWORD" not in message and "PREFECT_API_SSL_CERT_FILE" not in message
    assert len(http.calls) == 1


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
    http.get(BY_NAME, json=deployment_json(shape="api"))
    http.post(CREATE, json={"detail": [{"loc": ["body", "state"], "msg": "bad"}]}, status=422)

    with pytest.raises(BadRequestError) as info:
        client.run_deployment("add/add-dep", timeout=0)

    assert_deploytrigger_error(info.value, BadRequestError)
    assert len(calls_to(http, "POST", CREATE)) == 1


def test_409_that_is_not_about_a_parameter_stays_a_bad_request(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json(shape="api"))
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
