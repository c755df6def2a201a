"""Server JSON shared by the unit tests (the fake clock is helpers.fake_time; the isolated
environment is the ``isolated_environment`` fixture of tests/conftest.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict, Optional

API = "http://prefect.test:4200/api"
DEPLOYMENT_ID = uuid.UUID("3c9a7f3e-5b1d-4e2a-9f6c-0d8e7b6a5c41")
FLOW_ID = uuid.UUID("9b2d3c4e-5f60-4172-8394-a5b6c7d8e9f0")
RUN_ID = uuid.UUID("5f2b8c1e-7d4a-4b3e-9a6f-1c2d3e4f5a6b")

BY_NAME = f"{API}/deployments/name/add/add-dep"
CREATE = f"{API}/deployments/{DEPLOYMENT_ID}/create_flow_run"
RUN = f"{API}/flow_runs/{RUN_ID}"
SET_STATE = f"{RUN}/set_state"
LOGS = f"{API}/logs/filter"


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
