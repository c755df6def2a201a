"""A Client on a fake clock over a stubbed Prefect API (``responses``).

Shared by the modules split out of the Client tests (transport, deployments, runs).
Import the fixtures into a test module to use them: ``client``, ``fake_time``, ``http``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, Type

import pytest
import requests
import responses
import tenacity

from deploytrigger import (
    Client,
    DeployTriggerError,
)
from helpers.fake_time import FakeTime
from helpers.server_json import DEPLOYMENT_ID as DEPLOYMENT_ID
from helpers.server_json import RUN_ID as RUN_ID
from helpers.server_json import deployment_json, flow_run_json

API = "http://prefect.test:4200/api"
KEY = "pnu_S3CRET-api-key-0123456789"

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
    http.get(BY_NAME, json=deployment_json(shape="api"))
    http.post(CREATE, json=flow_run_json(run_state, shape="api"), status=201)
