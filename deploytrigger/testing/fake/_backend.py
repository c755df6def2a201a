"""The fake Prefect API's records and its one table of routes, without HTTP.

:class:`Backend` keeps flows, deployments, flow runs, task runs and logs in
memory behind one lock, and answers ``handle(method, path, body)`` with a
status code and a JSON value, as a Prefect 3.8.8 server answers the same
request. ``server.py`` puts it behind HTTP. The shapes of the answers are
built by ``records.py``; parameter checks and merges are ``schema.py``'s. The
endpoints of flows and deployments are ``deployments.py``'s, those of task
runs and logs ``logs.py``'s; request bodies are read by ``bodies.py``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from . import _bodies as bodies
from . import _records as records
from ._bodies import PAGE_LIMIT, Answer
from ._deployments import Deployment, DeploymentEndpoints
from ._events import EventLog
from ._logs import TaskRunAndLogEndpoints
from ._outcomes import Step, plan, result_record
from ._records import FINAL_TYPES, STATE_NAMES, new_id
from ._schema import merge_parameters, merge_tags, schema_error

PREFECT_VERSION = "3.8.8"
"""The server version the fake answers to ``GET /admin/version``: the one it mirrors."""


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake received.

    Attributes:
        method: ``"GET"``, ``"POST"`` ...
        path: the path under the API URL, e.g. ``"/deployments/name/etl/nightly"``
            (percent-escapes decoded, no query).
        json: the body, parsed; None without one (or when it is not JSON).
        query: the query string's parameters (each name's last value).
    """

    method: str
    path: str
    json: Any = None
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Run:
    base: Dict[str, Any]
    history: List[Dict[str, Any]]
    steps: List[Step]
    result_path: Optional[Path] = None


_NOT_AFTER_FINAL = ("CANCELLING", "PAUSED", "CRASHED")
"""States the server refuses (ABORT) to a run that is already final, unless forced."""

_UUID = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
_SEGMENT = r"[^/]+"


class Backend(DeploymentEndpoints, TaskRunAndLogEndpoints):
    """In-memory flows, deployments and runs answering Prefect's REST API (see the module).

    Args:
        results_dir: where result files go (the fake's temporary directory).
        clock: the current POSIX time in seconds; tests of the fake inject one.
    """

    def __init__(self, results_dir: Path, clock: Callable[[], float]) -> None:
        self._results_dir = results_dir
        self._clock = clock
        self._lock = threading.RLock()
        self.flows: Dict[str, Dict[str, Any]] = {}
        self.deployments: Dict[str, Deployment] = {}
        self.runs: Dict[str, _Run] = {}
        self.task_runs: Dict[str, Dict[str, Any]] = {}
        self.logs: List[Dict[str, Any]] = []
        self.requests: List[RecordedRequest] = []
        self.events = EventLog(self._lock, clock)
        self._planned: Dict[str, _Run] = {}
        self._names = 0
        routes: List[Tuple[str, str, Callable[..., Answer]]] = [
            ("GET", r"/health", self._health),
            ("GET", r"/admin/version", self._version),
            ("GET", r"/csrf-token", self._csrf_token),
            ("POST", r"/flows/", self._create_flow),
            ("GET", rf"/flows/({_UUID})", self._read_flow),
            ("POST", r"/deployments/filter", self._filter_deployments),
            ("GET", rf"/deployments/name/({_SEGMENT})/({_SEGMENT})", self._read_deployment_by_name),
            ("GET", rf"/deployments/({_UUID})", self._read_deployment),
            ("POST", rf"/deployments/({_UUID})/create_flow_run", self._create_run_of_deployment),
            ("POST", r"/flow_runs/", self._create_flow_run),
            ("POST", r"/flow_runs/filter", self._filter_flow_runs),
            ("GET", rf"/flow_runs/({_UUID})", self._read_flow_run),
            ("POST", rf"/flow_runs/({_UUID})/set_state", self._set_state),
            ("GET", r"/flow_run_states/", self._read_flow_run_states),
            ("POST", r"/task_runs/", self._create_task_run),
            ("POST", r"/task_runs/filter", self._filter_task_runs),
            ("POST", r"/logs/", self._create_logs),
            ("POST", r"/logs/filter", self._filter_logs),
        ]
        self._routes = [(method, re.compile(pattern), fn) for method, pattern, fn in routes]

    # -- the entry point -----------------------------------------------------------------

    def handle(self, method: str, target: str, raw_body: bytes) -> Answer:
        """Answer one request: ``target`` is the path under ``/api`` with its query."""
        parts = urlsplit(target)
        path = parts.path
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        body, body_error = bodies.parse_body(raw_body)
        with self._lock:
            self.requests.append(RecordedRequest(method, unquote(path), body, query))
            allowed = False
            for route_method, pattern, handler in self._routes:
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                allowed = True
                if route_method != method:
                    continue
                if body_error is not None:
                    return 422, body_error
                args = [unquote(group) for group in match.groups()]
                try:
                    return handler(*args, body=body, query=query)
                except bodies.Invalid as exc:
                    return 422, records.unprocessable(
                        ["body", *exc.loc], exc.msg, exc.given, exc.error_type, body
                    )
            if allowed:
                return 405, {"detail": "Method Not Allowed"}
            return 404, records.not_found()

    # -- setting up (FakePrefect's methods) -----------------------------------------------

    def flow_run_records(self) -> List[Dict[str, Any]]:
        """Every flow run as the API shows it now, in the order they were created."""
        with self._lock:
            return [self._run_json(run) for run in self.runs.values()]

    def now(self) -> float:
        """The fake's clock: POSIX seconds."""
        return self._clock()

    def advance_due(self) -> None:
        """Apply every planned state change that is due: what the fake's ticker calls, so
        that the events of a run come when its states change, read or not."""
        with self._lock:
            now = self._clock()
            for run in list(self._planned.values()):
                self._advance(run, now)

    # -- small endpoints -------------------------------------------------------------------

    def _health(self, **_: Any) -> Answer:
        return 200, True

    def _version(self, **_: Any) -> Answer:
        return 200, PREFECT_VERSION

    def _csrf_token(self, **_: Any) -> Answer:
        return 422, {"detail": "CSRF protection is disabled."}

    # -- flow runs -------------------------------------------------------------------------

    def _create_run_of_deployment(self, deployment_id: str, *, body: Any, **_: Any) -> Answer:
        body = {} if body is None else body
        parameters = bodies.optional_field(
            body, "parameters", dict, "dict_type", "a valid dictionary"
        )
        tags = bodies.string_list(body, "tags")
        deployment = self.deployments.get(bodies.canonical(deployment_id))
        if deployment is None:
            return 404, records.not_found("Deployment not found")
        record = deployment.record
        merged = merge_parameters(record["parameters"], parameters)
        schema = record["parameter_openapi_schema"]
        enforce = body.get("enforce_parameter_schema")
        if enforce if isinstance(enforce, bool) else record["enforce_parameter_schema"]:
            if not isinstance(schema, dict):
                return 409, {
                    "detail": "Error updating deployment: Cannot update parameters because "
                    "parameter schema enforcement is enabled and the deployment does not "
                    "have a valid parameter schema."
                }
            problem = schema_error(merged, schema)
            if problem is not None:
                return 409, {"detail": f"Error creating flow run: {problem}"}
        if body.get("work_queue_name"):
            return 400, {
                "detail": f"Cannot create flow run in work queue {body['work_queue_name']} "
                f"because deployment {record['id']} is not associated with a work pool. "
                "Please remove work_pool_name and try again."
            }
        labels = {"prefect.flow.id": record["flow_id"], "prefect.deployment.id": record["id"]}
        return self._new_run(
            body,
            flow_id=record["flow_id"],
            deployment=deployment,
            parameters=merged,
            tags=merge_tags(record["tags"], tags or []),
            labels=labels,
        )

    def _create_flow_run(self, *, body: Any, **_: Any) -> Answer:
        flow_id = bodies.canonical(bodies.field(body, "flow_id", str))
        if flow_id not in self.flows:
            return 409, {
                "detail": "Data integrity conflict. This usually means a unique or foreign "
                "key constraint was violated. See server logs for details."
            }
        parameters = bodies.optional_field(
            body, "parameters", dict, "dict_type", "a valid dictionary"
        )
        return self._new_run(
            body,
            flow_id=flow_id,
            deployment=None,
            parameters=dict(parameters or {}),
            tags=merge_tags([], bodies.string_list(body, "tags") or []),
            labels={"prefect.flow.id": flow_id},
        )

    def _new_run(
        self,
        body: Mapping[str, Any],
        *,
        flow_id: str,
        deployment: Optional[Deployment],
        parameters: Dict[str, Any],
        tags: List[str],
        labels: Dict[str, str],
    ) -> Answer:
        """A new run from a create body; the existing one for a known idempotency key.

        ``labels`` are the server's own; the body's ``labels`` go over them.
        """
        key = body.get("idempotency_key")
        if key is not None:
            for run in self.runs.values():
                if run.base["flow_id"] == flow_id and run.base["idempotency_key"] == key:
                    return 200, self._run_json(run)
        now = self._clock()
        run_id = new_id()
        state = bodies.mapping(body.get("state"))
        state_type = str(state.get("type") or "SCHEDULED")
        details = bodies.mapping(state.get("state_details"))
        scheduled = records.parse_time(details.get("scheduled_time"))
        if state_type == "SCHEDULED" and scheduled is None:
            scheduled = now
        expected = scheduled if scheduled is not None else now
        base = {
            "id": run_id,
            "created": now,
            "name": body.get("name") or self._run_name(),
            "flow_id": flow_id,
            "deployment_id": deployment.record["id"] if deployment else None,
            "deployment_version": deployment.record["version"] if deployment else None,
            "parameters": parameters,
            "tags": tags,
            "labels": {**labels, **bodies.mapping(body.get("labels"))},
            "idempotency_key": key,
            "parent_task_run_id": body.get("parent_task_run_id"),
            "work_queue_name": None,
            "job_variables": dict(body.get("job_variables") or {}) if deployment else None,
            "expected_start_time": expected,
        }
        first = self._state(
            state_type,
            run_id,
            now,
            name=state.get("name"),
            message=state.get("message"),
            scheduled_time=records.iso(scheduled) if scheduled is not None else None,
        )
        run = _Run(base, [], [])
        self._enter(run, first)
        if deployment is not None and state_type == "SCHEDULED":
            outcome = deployment.outcome
            self._plan(run, plan(outcome, max(now, expected)))
            if outcome.result is not None:
                run.result_path = self._results_dir / run_id
                run.result_path.write_bytes(outcome.result)
        self.runs[run_id] = run
        if run.steps:
            self._planned[run_id] = run
        return 201, self._run_json(run, advance=False)

    def _run_json(self, run: _Run, advance: bool = True) -> Dict[str, Any]:
        now = self._clock()
        if advance:
            self._advance(run, now)
        return records.flow_run_json(run.base, run.history, now)

    def _plan(self, run: _Run, steps: List[Step]) -> None:
        """Give the run the states it will go through (``(when, type, message)``)."""
        run.steps = steps
        if steps and run.base["id"] in self.runs:
            self._planned[run.base["id"]] = run
        else:
            self._planned.pop(run.base["id"], None)

    def _advance(self, run: _Run, now: float) -> None:
        """Apply the run's planned states that are due."""
        if not run.steps:
            self._planned.pop(run.base["id"], None)
            return
        while run.steps and run.steps[0][0] <= now:
            when, state_type, name, message = run.steps.pop(0)
            data = None
            if state_type in FINAL_TYPES and run.result_path is not None:
                data = result_record(run.result_path)
            state = self._state(
                state_type, run.base["id"], when, name=name, message=message, data=data
            )
            self._enter(run, state)
        if not run.steps:
            self._planned.pop(run.base["id"], None)

    def _enter(self, run: _Run, state: Dict[str, Any]) -> None:
        """Give a run a new state, and publish its event; a subflow's placeholder task run
        takes a copy, as on a server."""
        parent_task_run_id = run.base["parent_task_run_id"]
        placeholder = self.task_runs.get(str(parent_task_run_id))
        if parent_task_run_id is not None:
            state["state_details"]["task_run_id"] = parent_task_run_id
        previous = run.history[-1] if run.history else None
        run.history.append(state)
        self._publish(run, state, previous, placeholder)
        if placeholder is None:
            return
        copy = json.loads(json.dumps(state))
        copy["id"] = new_id()
        copy["state_details"].update(
            flow_run_id=placeholder["flow_run_id"],
            task_run_id=placeholder["id"],
            child_flow_run_id=run.base["id"],
        )
        placeholder.update(
            state=copy,
            state_id=copy["id"],
            state_type=copy["type"],
            state_name=copy["name"],
            updated=copy["timestamp"],
        )

    def _publish(
        self,
        run: _Run,
        state: Dict[str, Any],
        previous: Optional[Dict[str, Any]],
        placeholder: Optional[Dict[str, Any]],
    ) -> None:
        deployment = self.deployments.get(str(run.base["deployment_id"]))
        related = records.related_resources(
            flow=self.flows[run.base["flow_id"]],
            deployment=deployment.record if deployment is not None else None,
            task_run=placeholder,
            run_tags=run.base["tags"],
        )
        run_count = 1 if any(s["type"] == "RUNNING" for s in run.history) else 0
        event = records.flow_run_event(
            run.base, state, previous, run_count=run_count, related=related
        )
        self.events.publish(event)

    def _state(
        self,
        state_type: str,
        run_id: str,
        when: float,
        *,
        name: Optional[str] = None,
        message: Optional[str] = None,
        data: Any = None,
        scheduled_time: Optional[str] = None,
    ) -> Dict[str, Any]:
        return records.state_json(
            state_type,
            timestamp=when,
            state_id=new_id(),
            name=name,
            message=message,
            data=data,
            flow_run_id=run_id,
            scheduled_time=scheduled_time,
        )

    def _run_name(self) -> str:
        self._names += 1
        adjective = _ADJECTIVES[self._names % len(_ADJECTIVES)]
        animal = _ANIMALS[(self._names // len(_ADJECTIVES)) % len(_ANIMALS)]
        return f"{adjective}-{animal}-{self._names}"

    def _read_flow_run(self, flow_run_id: str, **_: Any) -> Answer:
        run = self.runs.get(bodies.canonical(flow_run_id))
        if run is None:
            return 404, records.not_found("Flow run not found")
        return 200, self._run_json(run)

    def _read_flow_run_states(self, *, query: Mapping[str, str], **_: Any) -> Answer:
        """A run's states, oldest first; none for an unknown run; 422 without a valid id."""
        given = query.get("flow_run_id")
        if given is None:
            return 422, records.invalid_query("flow_run_id", None, "missing", "Field required")
        run_id = bodies.canonical(given)
        if run_id == given and not re.fullmatch(_UUID, given):
            msg = "Input should be a valid UUID"
            return 422, records.invalid_query("flow_run_id", given, "uuid_parsing", msg)
        run = self.runs.get(run_id)
        if run is None:
            return 200, []
        self._advance(run, self._clock())
        return 200, [json.loads(json.dumps(state)) for state in run.history]

    def _filter_flow_runs(self, *, body: Any, **_: Any) -> Answer:
        limit, offset = bodies.page(body)
        if limit > PAGE_LIMIT:
            return 422, {"detail": f"Invalid limit: must be less than or equal to {PAGE_LIMIT}."}
        ids = bodies.any_of(body, "flow_runs", "id", uuids=True)
        deployment_ids = bodies.any_of(body, "deployments", "id", uuids=True)
        found = [
            self._run_json(run)
            for run_id, run in self.runs.items()
            if (ids is None or run_id in ids)
            and (deployment_ids is None or run.base["deployment_id"] in deployment_ids)
        ]
        return 200, found[offset : offset + limit]

    def _set_state(self, flow_run_id: str, *, body: Any, **_: Any) -> Answer:
        run = self.runs.get(bodies.canonical(flow_run_id))
        if run is None:
            return 404, {"exception_message": f"Flow run with id {flow_run_id} not found"}
        proposed = bodies.field(body, "state", dict)
        state_type = bodies.field(proposed, "type", str, loc=["state", "type"])
        if state_type not in STATE_NAMES:
            raise bodies.Invalid(
                ["state", "type"], "Input should be a state type", state_type, "enum"
            )
        now = self._clock()
        self._advance(run, now)
        current = run.history[-1]
        force = body.get("force") is True
        if not force and current["type"] in FINAL_TYPES and state_type in _NOT_AFTER_FINAL:
            reason = f"Run is already in terminal state {current['type']}."
            return 200, records.orchestration_result("ABORT", current, reason)
        self._plan(run, [])
        if not force and state_type == "CANCELLING" and current["type"] == "SCHEDULED":
            cancelled = self._state("CANCELLED", run.base["id"], now)
            self._enter(run, cancelled)
            reason = "Scheduled flow run has no infrastructure to terminate."
            return 201, records.orchestration_result("REJECT", cancelled, reason)
        new = self._state(
            state_type,
            run.base["id"],
            now,
            name=proposed.get("name"),
            message=proposed.get("message"),
            data=proposed.get("data"),
        )
        self._enter(run, new)
        if state_type == "CANCELLING" and run.base["deployment_id"] is not None:
            # The process running it stops it at once, as a runner does on its next poll.
            self._plan(run, [(now, "CANCELLED", None, proposed.get("message"))])
        return 201, records.orchestration_result("ACCEPT", new)


_ADJECTIVES = ("amber", "brisk", "calm", "dapper", "eager", "fuzzy", "golden", "hot")
_ANIMALS = ("mayfly", "kraken", "otter", "heron", "lynx", "crab", "dalmatian", "newt")
