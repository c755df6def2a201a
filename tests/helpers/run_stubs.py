"""URLs, log lines and sent bodies shared by the unit tests (their server JSON is
helpers.server_json; the fake clock is helpers.fake_time; the isolated
environment is the ``isolated_environment`` fixture of tests/conftest.py)."""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict

from helpers.server_json import DEPLOYMENT_ID as DEPLOYMENT_ID
from helpers.server_json import RUN_ID as RUN_ID

API = "http://prefect.test:4200/api"

BY_NAME = f"{API}/deployments/name/add/add-dep"
CREATE = f"{API}/deployments/{DEPLOYMENT_ID}/create_flow_run"
RUN = f"{API}/flow_runs/{RUN_ID}"
SET_STATE = f"{RUN}/set_state"
LOGS = f"{API}/logs/filter"


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
