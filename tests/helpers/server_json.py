"""The server's JSON for flow runs, their states and deployments: the one set of builders.

Each builder takes a ``shape``, the amount of the record the server sends that a test needs:

``"minimal"`` (the default)
    The fields the client reads, no more.
``"api"``
    What the API answers for the requests the client sends: a few more fields, a state
    with its id, data and details.
``"full"``
    Every field of a Prefect 3.8.8 record, in the server's order (the models' parsing).
``"bare"``
    Only ids, name and state (the parent-linking tests, with their own ids).

Keyword overrides replace or add top-level fields, after the shape is built.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, Literal, Optional, Union

DEPLOYMENT_ID = uuid.UUID("3c9a7f3e-5b1d-4e2a-9f6c-0d8e7b6a5c41")
FLOW_ID = uuid.UUID("9b2d3c4e-5f60-4172-8394-a5b6c7d8e9f0")
RUN_ID = uuid.UUID("5f2b8c1e-7d4a-4b3e-9a6f-1c2d3e4f5a6b")
STATE_ID = "0d9a1b2c-3d4e-4f50-8162-738495a6b7c8"

Shape = Literal["minimal", "api", "full", "bare"]
AnId = Union[uuid.UUID, str]

_ABSENT: Any = object()
_MINIMAL_TIMESTAMP = "2026-11-23T20:00:00.100000+00:00"


def state_json(
    state_type: str = "COMPLETED", *, run_id: AnId = RUN_ID, **overrides: Any
) -> Dict[str, Any]:
    """A state as Prefect 3.8.8 sends it, every field of its details included."""
    data: Dict[str, Any] = {
        "id": STATE_ID,
        "type": state_type,
        "name": state_type.title(),
        "timestamp": "2026-11-23T20:00:05.123456Z",
        "message": None,
        "data": None,
        "state_details": {
            "flow_run_id": str(run_id),
            "task_run_id": None,
            "child_flow_run_id": None,
            "scheduled_time": None,
            "cache_key": None,
            "cache_expiration": None,
            "deferred": False,
            "untrackable_result": False,
            "pause_timeout": None,
            "pause_reschedule": False,
            "pause_key": None,
            "run_input_keyset": None,
            "refresh_cache": None,
            "retriable": None,
            "transition_id": "8a7b6c5d-4e3f-4a1b-9c8d-7e6f5a4b3c2d",
            "task_parameters_id": None,
            "traceparent": None,
        },
    }
    data.update(overrides)
    return data


def flow_run_json(
    state_type: Optional[str] = None,
    message: Optional[str] = None,
    *,
    shape: Shape = "minimal",
    run_id: AnId = RUN_ID,
    flow_id: AnId = FLOW_ID,
    deployment_id: AnId = DEPLOYMENT_ID,
    state_timestamp: Optional[str] = None,
    state_data: Any = _ABSENT,
    **overrides: Any,
) -> Dict[str, Any]:
    """A flow run in ``state_type`` (SCHEDULED; COMPLETED for ``"full"``).

    ``message`` and ``state_timestamp`` go into the state (``"minimal"`` and ``"api"``);
    ``state_data``, when given, is set as the state's ``data``.
    """
    if shape == "full":
        _refuse(shape, message=message, state_timestamp=state_timestamp)
        data = _full_flow_run(state_type or "COMPLETED", run_id, flow_id, deployment_id)
    elif shape == "api":
        data = _api_flow_run(state_type or "SCHEDULED", message, run_id, flow_id, deployment_id)
        if state_timestamp is not None:
            data["state"]["timestamp"] = state_timestamp
    elif shape == "minimal":
        state_type = state_type or "SCHEDULED"
        data = {
            "id": str(run_id),
            "name": "mottled-crab",
            "flow_id": str(flow_id),
            "deployment_id": str(deployment_id),
            "parameters": {"x": 5, "y": 10},
            "tags": ["demo"],
            "state_type": state_type,
            "expected_start_time": "2026-11-23T20:00:00.100000Z",
            "start_time": None,
            "end_time": None,
            "state": {
                "type": state_type,
                "name": state_type.title(),
                "timestamp": _MINIMAL_TIMESTAMP if state_timestamp is None else state_timestamp,
                "message": message,
            },
        }
    elif shape == "bare":
        _refuse(shape, message=message, state_timestamp=state_timestamp)
        state_type = state_type or "SCHEDULED"
        data = {
            "id": str(run_id),
            "name": "run",
            "flow_id": str(flow_id),
            "state": {"type": state_type, "name": state_type.title()},
        }
    else:
        raise ValueError(f"no flow run shape {shape!r}")
    if state_data is not _ABSENT:
        data["state"]["data"] = state_data
    data.update(overrides)
    return data


def deployment_json(
    *,
    shape: Shape = "minimal",
    deployment_id: AnId = DEPLOYMENT_ID,
    flow_id: AnId = FLOW_ID,
    **overrides: Any,
) -> Dict[str, Any]:
    """A deployment ``add/add-dep``, of flow ``flow_id``."""
    data: Dict[str, Any]
    if shape == "full":
        data = _full_deployment(deployment_id, flow_id)
    elif shape == "api":
        data = {
            "id": str(deployment_id),
            "created": "2026-11-23T19:00:00.000000Z",
            "updated": "2026-11-23T19:00:00.000000Z",
            "name": "add-dep",
            "version": "1a2b3c4d",
            "description": None,
            "flow_id": str(flow_id),
            "paused": False,
            "schedules": [],
            "job_variables": {},
            "parameters": {"y": 1},
            "tags": ["demo"],
            "labels": {},
            "work_queue_name": None,
            "parameter_openapi_schema": _add_schema(),
            "entrypoint": "flows.py:add",
            "enforce_parameter_schema": True,
            "work_pool_name": None,
            "status": "READY",
        }
    elif shape == "minimal":
        data = {
            "id": str(deployment_id),
            "name": "add-dep",
            "version": "1",
            "flow_id": str(flow_id),
            "parameters": {"y": 10},
            "tags": ["demo"],
            "work_queue_name": None,
            "work_pool_name": None,
            "enforce_parameter_schema": False,
            "parameter_openapi_schema": {},
        }
    elif shape == "bare":
        data = {
            "id": str(deployment_id),
            "name": "add-dep",
            "flow_id": str(flow_id),
            "version": "1.0",
        }
    else:
        raise ValueError(f"no deployment shape {shape!r}")
    data.update(overrides)
    return data


def _refuse(shape: str, **arguments: Any) -> None:
    given = sorted(name for name, value in arguments.items() if value is not None)
    if given:
        raise TypeError(f"the {shape!r} shape takes no {', '.join(given)}")


def _add_schema() -> Dict[str, Any]:
    """The parameter schema of ``add(x: int, y: int = 1)``."""
    return {
        "title": "Parameters",
        "type": "object",
        "properties": {
            "x": {"title": "x", "position": 0, "type": "integer"},
            "y": {"title": "y", "position": 1, "type": "integer", "default": 1},
        },
        "required": ["x"],
    }


def _api_flow_run(
    state_type: str, message: Optional[str], run_id: AnId, flow_id: AnId, deployment_id: AnId
) -> Dict[str, Any]:
    name = state_type.title()
    return {
        "id": str(run_id),
        "created": "2026-11-23T20:00:00.100000Z",
        "updated": "2026-11-23T20:00:00.200000Z",
        "name": "mottled-crab",
        "flow_id": str(flow_id),
        "deployment_id": str(deployment_id),
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
            "id": STATE_ID,
            "type": state_type,
            "name": name,
            "timestamp": "2026-11-23T20:00:00.100000+00:00",
            "message": message,
            "data": None,
            "state_details": {"flow_run_id": str(run_id)},
        },
    }


def _full_flow_run(
    state_type: str, run_id: AnId, flow_id: AnId, deployment_id: AnId
) -> Dict[str, Any]:
    return {
        "id": str(run_id),
        "created": "2026-11-23T20:00:00.100000Z",
        "updated": "2026-11-23T20:00:05.200000Z",
        "name": "mottled-crab",
        "flow_id": str(flow_id),
        "state_id": STATE_ID,
        "deployment_id": str(deployment_id),
        "deployment_version": "1a2b3c4d",
        "work_queue_id": None,
        "work_queue_name": "default",
        "flow_version": "f00d",
        "parameters": {"x": 5, "y": [1, 2]},
        "idempotency_key": "key-1",
        "context": {},
        "empirical_policy": {
            "max_retries": 0,
            "retry_delay_seconds": 0.0,
            "retries": 0,
            "retry_delay": 0,
            "pause_keys": [],
            "resuming": False,
            "retry_type": None,
        },
        "tags": ["from-test", "nightly"],
        "labels": {"prefect.flow.id": str(flow_id), "prefect.deployment.id": str(deployment_id)},
        "parent_task_run_id": None,
        "state_type": state_type,
        "state_name": state_type.title(),
        "run_count": 1,
        "expected_start_time": "2026-11-23T20:00:00.100000Z",
        "next_scheduled_start_time": None,
        "start_time": "2026-11-23T21:00:01.5+01:00",
        "end_time": "2026-11-23T20:00:05.123456Z",
        "total_run_time": 3.623456,
        "estimated_run_time": 3.623456,
        "estimated_start_time_delta": 1.4,
        "auto_scheduled": False,
        "infrastructure_document_id": None,
        "infrastructure_pid": "1234",
        "created_by": None,
        "work_pool_id": None,
        "work_pool_name": None,
        "state": state_json(state_type, run_id=run_id),
        "job_variables": {"env": {"A": "1"}},
    }


def _full_deployment(deployment_id: AnId, flow_id: AnId) -> Dict[str, Any]:
    return {
        "id": str(deployment_id),
        "created": "2026-11-23T19:00:00.000000Z",
        "updated": "2026-11-23T19:00:00.000000Z",
        "name": "add-dep",
        "version": "1a2b3c4d",
        "description": "Adds two numbers.",
        "flow_id": str(flow_id),
        "concurrency_limit": None,
        "global_concurrency_limit": None,
        "concurrency_options": None,
        "paused": False,
        "schedules": [],
        "job_variables": {},
        "parameters": {"y": 1},
        "pull_steps": None,
        "tags": ["demo"],
        "labels": {"prefect.flow.id": str(flow_id)},
        "work_queue_name": "default",
        "last_polled": None,
        "parameter_openapi_schema": dict(_add_schema(), definitions={}),
        "path": ".",
        "entrypoint": "flows.py:add",
        "storage_document_id": None,
        "infrastructure_document_id": None,
        "created_by": None,
        "updated_by": None,
        "work_queue_id": None,
        "enforce_parameter_schema": True,
        "work_pool_name": "test-pool",
        "status": "READY",
    }
