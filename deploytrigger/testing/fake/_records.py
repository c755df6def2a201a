"""The JSON a Prefect 3.x server sends, built from plain values: pure functions, no I/O.

Every shape here was read off a real Prefect 3.8.8 server (``prefect server
start``): the fields, their order and their defaults. The fake's handlers
keep their own records small and turn them into these shapes when answering.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence

FINAL_TYPES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
"""State types a run does not leave."""

STATE_NAMES: Mapping[str, str] = {
    "SCHEDULED": "Scheduled",
    "PENDING": "Pending",
    "RUNNING": "Running",
    "PAUSED": "Paused",
    "CANCELLING": "Cancelling",
    "COMPLETED": "Completed",
    "FAILED": "Failed",
    "CANCELLED": "Cancelled",
    "CRASHED": "Crashed",
}
"""Each state type and the name the server gives it when the client sends none."""

_STATE_DETAILS: Mapping[str, Any] = {
    "flow_run_id": None,
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
    "transition_id": None,
    "task_parameters_id": None,
    "traceparent": None,
    "deployment_concurrency_lease_id": None,
}


def iso(moment: float) -> str:
    """A POSIX time (seconds) as the server writes datetimes: UTC, ``Z``, microseconds unless 0."""
    when = dt.datetime.fromtimestamp(moment, dt.timezone.utc)
    return when.isoformat().replace("+00:00", "Z")


def parse_time(text: Any) -> Optional[float]:
    """An ISO 8601 datetime from a request as a POSIX time; None when absent or unreadable.

    A naive datetime is taken as UTC, as the server does.
    """
    if not isinstance(text, str):
        return None
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def state_json(
    state_type: str,
    *,
    timestamp: float,
    state_id: str,
    name: Optional[str] = None,
    message: Optional[str] = None,
    data: Any = None,
    flow_run_id: Optional[str] = None,
    task_run_id: Optional[str] = None,
    scheduled_time: Optional[str] = None,
) -> Dict[str, Any]:
    """A state object (``state`` of a run, or of an orchestration result)."""
    details = dict(_STATE_DETAILS)
    details.update(flow_run_id=flow_run_id, task_run_id=task_run_id, scheduled_time=scheduled_time)
    return {
        "id": state_id,
        "type": state_type,
        "name": name or STATE_NAMES.get(state_type, state_type.title()),
        "timestamp": iso(timestamp),
        "message": message,
        "data": data,
        "state_details": details,
    }


def flow_json(flow_id: str, name: str, created: float) -> Dict[str, Any]:
    """A flow."""
    return {
        "id": flow_id,
        "created": iso(created),
        "updated": iso(created),
        "name": name,
        "tags": [],
        "labels": {},
    }


def deployment_json(
    *,
    deployment_id: str,
    flow_id: str,
    name: str,
    created: float,
    parameters: Mapping[str, Any],
    tags: Sequence[str],
    parameter_schema: Optional[Mapping[str, Any]],
    enforce_parameter_schema: bool,
    version: Optional[str] = None,
) -> Dict[str, Any]:
    """A deployment that a process serves (no work pool)."""
    return {
        "id": deployment_id,
        "created": iso(created),
        "updated": iso(created),
        "name": name,
        "version": version,
        "description": None,
        "flow_id": flow_id,
        "paused": False,
        "schedules": [],
        "concurrency_limit": None,
        "global_concurrency_limit": None,
        "concurrency_options": None,
        "job_variables": {},
        "parameters": dict(parameters),
        "tags": list(tags),
        "labels": {"prefect.flow.id": flow_id},
        "work_queue_name": None,
        "work_queue_id": None,
        "last_polled": None,
        "parameter_openapi_schema": None if parameter_schema is None else dict(parameter_schema),
        "path": None,
        "pull_steps": [],
        "entrypoint": None,
        "storage_document_id": None,
        "infrastructure_document_id": None,
        "created_by": None,
        "updated_by": None,
        "work_pool_name": None,
        "status": "READY",
        "enforce_parameter_schema": enforce_parameter_schema,
    }


def task_run_json(
    *,
    task_run_id: str,
    created: float,
    body: Mapping[str, Any],
    flow_run_labels: Mapping[str, Any],
    state: Dict[str, Any],
) -> Dict[str, Any]:
    """A task run created from a ``POST /task_runs/`` body (a placeholder, in practice).

    Its labels are its flow run's, its flow run's id, then the body's own, as
    the server merges them.
    """
    policy = {
        "max_retries": 0,
        "retry_delay_seconds": 0.0,
        "retries": 0,
        "retry_delay": 0,
        "retry_jitter_factor": None,
    }
    given_policy = body.get("empirical_policy")
    if isinstance(given_policy, Mapping):
        policy.update({key: value for key, value in given_policy.items() if key in policy})
    labels = dict(flow_run_labels)
    labels["prefect.flow-run.id"] = str(body["flow_run_id"])
    given = body.get("labels")
    if isinstance(given, Mapping):
        labels.update(given)
    return {
        "id": task_run_id,
        "created": iso(created),
        "updated": iso(created),
        "name": body.get("name") or "placeholder",
        "flow_run_id": str(body["flow_run_id"]),
        "task_key": body["task_key"],
        "dynamic_key": body["dynamic_key"],
        "cache_key": body.get("cache_key"),
        "cache_expiration": body.get("cache_expiration"),
        "task_version": body.get("task_version"),
        "empirical_policy": policy,
        "tags": list(body.get("tags") or []),
        "labels": labels,
        "state_id": state["id"],
        "task_inputs": dict(body.get("task_inputs") or {}),
        "state_type": state["type"],
        "state_name": state["name"],
        "run_count": 0,
        "flow_run_run_count": 0,
        "expected_start_time": iso(created),
        "next_scheduled_start_time": None,
        "start_time": None,
        "end_time": None,
        "total_run_time": 0.0,
        "estimated_run_time": 0.0,
        "estimated_start_time_delta": 0.0,
        "state": state,
    }


def log_json(log_id: str, created: float, body: Mapping[str, Any]) -> Dict[str, Any]:
    """A log line as ``POST /logs/filter`` returns it."""
    return {
        "id": log_id,
        "created": iso(created),
        "updated": iso(created),
        "name": body.get("name") or "prefect.flow_runs",
        "level": body.get("level", 20),
        "message": body.get("message", ""),
        "timestamp": body.get("timestamp") or iso(created),
        "flow_run_id": body.get("flow_run_id"),
        "task_run_id": body.get("task_run_id"),
    }


def orchestration_result(
    status: str, state: Optional[Dict[str, Any]], reason: Optional[str] = None
) -> Dict[str, Any]:
    """The answer to ``set_state``: ``ACCEPT``, ``REJECT`` or ``ABORT``, with the state now."""
    details: Dict[str, Any] = {"type": f"{status.lower()}_details"}
    if reason is not None:
        details["reason"] = reason
    return {"state": state, "status": status, "details": details}


def not_found(what: str = "Not Found") -> Dict[str, Any]:
    """The body of a 404 (``"Flow run not found"``; a path no route matches: ``"Not Found"``)."""
    return {"detail": what}


def unprocessable(
    loc: List[Any], msg: str, given: Any, error_type: str, body: Any
) -> Dict[str, Any]:
    """The body of a 422 for a request body that does not parse (the server's own shape)."""
    return {
        "exception_message": "Invalid request received.",
        "exception_detail": [{"type": error_type, "loc": loc, "msg": msg, "input": given}],
        "request_body": body,
    }


def invalid_query(name: str, given: Any, error_type: str, msg: str) -> Dict[str, Any]:
    """The body of a 422 for a query parameter missing or not of its type."""
    detail = {"type": error_type, "loc": ["query", name], "msg": msg, "input": given}
    return {
        "exception_message": "Invalid request received.",
        "exception_detail": [detail],
        "request_body": None,
    }


def new_id() -> str:
    """A fresh id, as the server writes ids."""
    return str(uuid.uuid4())


def flow_run_json(
    base: Mapping[str, Any], history: Sequence[Mapping[str, Any]], now: float
) -> Dict[str, Any]:
    """A flow run: its fixed fields (``base``) and its states so far, oldest first.

    ``base`` holds ``id``, ``created`` (POSIX time), ``name``, ``flow_id``,
    ``deployment_id``, ``deployment_version``, ``parameters``, ``tags``,
    ``labels``, ``idempotency_key``, ``parent_task_run_id``,
    ``work_queue_name``, ``job_variables`` and ``expected_start_time`` (POSIX time).
    """
    state = history[-1]
    started = next((s for s in history if s["type"] == "RUNNING"), None)
    start_time = started["timestamp"] if started is not None else None
    if start_time is None and state["type"] in FINAL_TYPES:
        start_time = state["timestamp"]  # cancelled before it ran: the server sets both
    end_time = state["timestamp"] if state["type"] in FINAL_TYPES else None
    run_time = 0.0
    if started is not None:
        until = parse_time(end_time) if end_time is not None else now
        run_time = max(0.0, (until or now) - (parse_time(started["timestamp"]) or now))
    expected = base["expected_start_time"]
    scheduled = state["type"] == "SCHEDULED"
    return {
        "id": base["id"],
        "created": iso(base["created"]),
        "updated": state["timestamp"],
        "name": base["name"],
        "flow_id": base["flow_id"],
        "state_id": state["id"],
        "deployment_id": base["deployment_id"],
        "deployment_version": base["deployment_version"],
        "work_queue_id": None,
        "work_queue_name": base["work_queue_name"],
        "flow_version": None,
        "parameters": dict(base["parameters"]),
        "idempotency_key": base["idempotency_key"],
        "context": {},
        "empirical_policy": {
            "max_retries": 0,
            "retry_delay_seconds": 0.0,
            "retries": None,
            "retry_delay": None,
            "pause_keys": [],
            "resuming": False,
            "retry_type": None,
        },
        "tags": list(base["tags"]),
        "labels": dict(base["labels"]),
        "parent_task_run_id": base["parent_task_run_id"],
        "state_type": state["type"],
        "state_name": state["name"],
        "run_count": 1 if started is not None else 0,
        "expected_start_time": iso(expected),
        "next_scheduled_start_time": iso(expected) if scheduled else None,
        "start_time": start_time,
        "end_time": end_time,
        "total_run_time": run_time,
        "estimated_run_time": run_time,
        "estimated_start_time_delta": max(0.0, now - expected) if scheduled else 0.0,
        "auto_scheduled": False,
        "infrastructure_document_id": None,
        "infrastructure_pid": None,
        "created_by": None,
        "work_pool_id": None,
        "work_pool_name": None,
        "state": dict(state),
        "job_variables": base["job_variables"],
    }


def flow_run_event(
    base: Mapping[str, Any],
    state: Mapping[str, Any],
    previous: Optional[Mapping[str, Any]],
    *,
    run_count: int,
    related: List[Dict[str, str]],
) -> Dict[str, Any]:
    """The event a 3.8.8 server publishes when a flow run enters ``state``.

    Named ``prefect.flow-run.<state name>``; its id is the state's id and
    ``follows`` the previous state's (when that came less than 5 minutes
    before, as on the server). ``related`` comes from :func:`related_resources`.
    """
    occurred = parse_time(state["timestamp"]) or 0.0
    tight = (
        previous is not None and abs(occurred - (parse_time(previous["timestamp"]) or 0.0)) < 300
    )
    return {
        "occurred": state["timestamp"],
        "event": f"prefect.flow-run.{state['name']}",
        "resource": {
            "prefect.resource.id": f"prefect.flow-run.{base['id']}",
            "prefect.resource.name": base["name"],
            "prefect.run-count": str(run_count),
            "prefect.state-message": state.get("message") or "",
            "prefect.state-name": state["name"],
            "prefect.state-timestamp": state["timestamp"].replace("Z", "+00:00"),
            "prefect.state-type": state["type"],
        },
        "related": related,
        "payload": {
            "intended": {
                "from": previous["type"] if previous is not None else None,
                "to": state["type"],
            },
            "initial_state": _state_payload(previous),
            "validated_state": _state_payload(state),
        },
        "id": state["id"],
        "follows": previous["id"] if tight and previous is not None else None,
    }


def _state_payload(state: Optional[Mapping[str, Any]]) -> Optional[Dict[str, str]]:
    if state is None:
        return None
    payload = {"type": state["type"], "name": state["name"]}
    if state.get("message"):
        payload["message"] = state["message"]
    return payload


def related_resources(
    *,
    flow: Mapping[str, Any],
    deployment: Optional[Mapping[str, Any]],
    task_run: Optional[Mapping[str, Any]],
    run_tags: Sequence[str],
) -> List[Dict[str, str]]:
    """A flow run event's ``related``: its flow, deployment and parent task run, then its tags."""
    related: List[Dict[str, str]] = []
    tags = set(run_tags)
    for kind, record in (("flow", flow), ("deployment", deployment), ("task-run", task_run)):
        if record is None:
            continue
        tags |= set(record.get("tags") or [])
        related.append(
            {
                "prefect.resource.id": f"prefect.{kind}.{record['id']}",
                "prefect.resource.role": kind,
                "prefect.resource.name": record.get("name") or "",
            }
        )
    related += [
        {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
        for tag in sorted(tags)
    ]
    return related
