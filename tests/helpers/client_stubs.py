"""A Client on a fake clock over a stubbed Prefect API (``responses``), and its server JSON.

Shared by the modules split out of the Client tests (transport, deployments, runs).
Import the fixtures into a test module to use them: ``client``, ``fake_time``, ``http``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict, Iterator, List, Optional, Type

import pytest
import requests
import responses
import tenacity

from deploytrigger import (
    Client,
    DeployTriggerError,
)
from helpers.fake_time import FakeTime

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
