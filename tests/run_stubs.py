"""Server JSON, fake time and an isolated environment shared by the unit tests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

API = "http://prefect.test:4200/api"
DEPLOYMENT_ID = uuid.UUID("3c9a7f3e-5b1d-4e2a-9f6c-0d8e7b6a5c41")
FLOW_ID = uuid.UUID("9b2d3c4e-5f60-4172-8394-a5b6c7d8e9f0")
RUN_ID = uuid.UUID("5f2b8c1e-7d4a-4b3e-9a6f-1c2d3e4f5a6b")

BY_NAME = f"{API}/deployments/name/add/add-dep"
CREATE = f"{API}/deployments/{DEPLOYMENT_ID}/create_flow_run"
RUN = f"{API}/flow_runs/{RUN_ID}"
SET_STATE = f"{RUN}/set_state"
LOGS = f"{API}/logs/filter"

PREFECT_ENV = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_API_SSL_CERT_FILE",
    "PREFECT_API_TLS_INSECURE_SKIP_VERIFY",
    "PREFECT_API_REQUEST_TIMEOUT",
    "PREFECT_PROFILE",
    "PREFECT_PROFILES_PATH",
    "PREFECT__FLOW_RUN_ID",
    "PREFECT_CLIENT_MAX_RETRIES",
    "PREFECT_UI_URL",
    "DEPLOYTRIGGER_RETRY_BUDGET",
    "DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE",
    "DEPLOYTRIGGER_EVENTS",
)


def isolate_prefect_env(monkeypatch: Any, home: Path) -> None:
    """Hide the machine's Prefect settings, profile and parent run; ``home`` becomes HOME."""
    for name in PREFECT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PREFECT_HOME", str(home / ".prefect"))


class FakeTime:
    """A monotonic clock that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def deployment_json(**overrides: Any) -> Dict[str, Any]:
    data: Dict[str, Any] = {
        "id": str(DEPLOYMENT_ID),
        "name": "add-dep",
        "version": "1",
        "flow_id": str(FLOW_ID),
        "parameters": {"y": 10},
        "tags": ["demo"],
        "work_queue_name": None,
        "work_pool_name": None,
        "enforce_parameter_schema": False,
        "parameter_openapi_schema": {},
    }
    data.update(overrides)
    return data


def flow_run_json(
    state_type: str = "SCHEDULED",
    message: Optional[str] = None,
    state_timestamp: str = "2026-11-23T20:00:00.100000+00:00",
    **overrides: Any,
) -> Dict[str, Any]:
    name = state_type.title()
    data: Dict[str, Any] = {
        "id": str(RUN_ID),
        "name": "mottled-crab",
        "flow_id": str(FLOW_ID),
        "deployment_id": str(DEPLOYMENT_ID),
        "parameters": {"x": 5, "y": 10},
        "tags": ["demo"],
        "state_type": state_type,
        "expected_start_time": "2026-11-23T20:00:00.100000Z",
        "start_time": None,
        "end_time": None,
        "state": {
            "type": state_type,
            "name": name,
            "timestamp": state_timestamp,
            "message": message,
        },
    }
    data.update(overrides)
    return data


def log_json(number: int, timestamp: str, message: str = "", level: int = 20) -> Dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=number)),
        "name": "prefect.flow_runs",
        "level": level,
        "message": message or f"line {number}",
        "timestamp": timestamp,
        "flow_run_id": str(RUN_ID),
        "task_run_id": None,
    }


def sent_json(call: Any) -> Dict[str, Any]:
    body = call.request.body
    parsed: Dict[str, Any] = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
    return parsed
