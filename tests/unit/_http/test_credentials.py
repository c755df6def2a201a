"""Credentials over a stubbed Prefect API: how the key is sent, and that it never leaks."""

from __future__ import annotations

import logging
from typing import Any, Optional

import pytest
import requests
import responses
from helpers.client_stubs import (  # noqa: F401 - the fixtures: client, fake_time, http
    BY_ID,
    BY_NAME,
    CREATE,
    DEPLOYMENT_ID,
    KEY,
    RUN,
    VALIDATION_DETAIL,
    client,
    fake_time,
    http,
    make_client,
    stub_deployment_and_create,
)
from helpers.fake_time import FakeTime
from helpers.server_json import deployment_json

from deploytrigger import (
    Client,
    DeployTriggerError,
)

pytestmark = pytest.mark.isolated_environment


def test_api_key_is_sent_as_a_bearer_authorization_header(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    client.run_deployment("add/add-dep", timeout=0)

    assert all(c.request.headers["Authorization"] == f"Bearer {KEY}" for c in http.calls)


def test_auth_string_is_sent_as_basic_auth_instead_of_the_key(
    http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(BY_ID, json=deployment_json(shape="api"))

    with make_client(fake_time, auth_string="user:pass") as client:
        client.read_deployment(DEPLOYMENT_ID)

    assert http.calls[0].request.headers["Authorization"] == "Basic dXNlcjpwYXNz"


def failing_401(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, json={"detail": "Unauthorized"}, status=401)


def failing_503(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, json={"detail": "busy"}, status=503, headers={"Retry-After": "1"})


def failing_connection(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, body=requests.ConnectionError("Connection refused"))


def failing_create(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, json=deployment_json(shape="api"))
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
    http.get(BY_ID, json=deployment_json(shape="api"))

    with make_client(fake_time, api_key=KEY + "\n", max_retries=0) as client:
        try:
            client.read_deployment(DEPLOYMENT_ID)
        except DeployTriggerError as error:
            assert KEY not in str(error)
            assert KEY not in repr(error)
