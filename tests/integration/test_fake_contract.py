"""The fake Prefect API answers as the real session server does, scenario by scenario.

The session server is the Prefect that ``harness/requirements/server.txt`` pins,
and the fake claims that version too.

Every test body runs twice, through the ``target`` fixture: against the real
local server of the session (``prefect`` in conftest.py, serving
``examples/flows.py``) and against :class:`~deploytrigger.testing.fake.FakePrefect`
set up to mirror it. Both runs assert the same literal results: run fields,
states, parameter and tag merges, idempotency, errors and their status codes
and details, placeholder task runs, and ``set_state`` cancellations. So a
behaviour the fake loses, or one the server changes, fails here.

The last test runs Prefect's own ``run_deployment`` against the fake.
"""

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import requests
from helpers.server_http import server_session

import deploytrigger
from deploytrigger import Client, StateType
from deploytrigger.testing import FakePrefect
from harness.processes import Service
from harness.server_venv import pinned_prefect_version

pytestmark = pytest.mark.integration

FAIL_MESSAGE = "Flow run encountered an exception: RuntimeError: boom"
ADD_KEY = "prefect.deployments.flow_runs.run_deployment.add-add-dep"
SCHEMA: Dict[str, Any] = {
    "title": "Parameters",
    "type": "object",
    "properties": {
        "x": {"title": "x", "type": "integer", "position": 0},
        "y": {"title": "y", "default": 2, "type": "integer", "position": 1},
    },
    "required": ["x"],
    "definitions": {},
}


@dataclass
class Target:
    """One server under test, real or fake, and how to set up what a scenario needs."""

    kind: str
    api_url: str
    http: requests.Session
    #: ``(name, parameters, tags, schema, enforce)`` -> (``"flow/deployment"``, deployment id):
    #: a new deployment whose runs nothing executes (they stay Scheduled).
    add_idle_deployment: Callable[..., "tuple[str, str]"]
    fake: Optional[FakePrefect] = None
    cleanup: List[Callable[[], None]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.api_url + path

    def post(self, path: str, body: Any) -> requests.Response:
        return self.http.post(self.url(path), json=body, timeout=30)

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url(path), timeout=30)

    def client(self) -> Client:
        return Client(api_url=self.api_url)


def _real_target(api_url: str) -> Target:
    http = server_session()

    def add_idle_deployment(
        parameters: Optional[Dict[str, Any]] = None,
        tags: Optional[List[str]] = None,
        schema: Optional[Dict[str, Any]] = None,
        enforce: bool = False,
    ) -> "tuple[str, str]":
        flow_name, name = f"contract-{uuid.uuid4().hex[:8]}", "idle"
        flow = http.post(f"{api_url}/flows/", json={"name": flow_name}, timeout=30).json()
        body = {
            "name": name,
            "flow_id": flow["id"],
            "parameters": parameters or {},
            "tags": tags or [],
            "parameter_openapi_schema": schema if schema is not None else {},
            "enforce_parameter_schema": enforce,
        }
        answer = http.post(f"{api_url}/deployments/", json=body, timeout=30)
        assert answer.status_code == 201, answer.text
        return f"{flow_name}/{name}", answer.json()["id"]

    return Target("real", api_url, http, add_idle_deployment)


def _fake_target(fake: FakePrefect) -> Target:
    """The fake, with the served deployments of examples/flows.py that the scenarios use."""
    fake.add_deployment("add/add-dep", parameters={"y": 10}, tags=["examples"], version="1.0")
    fake.add_deployment("fail/fail-dep")
    fake.set_outcome("fail/fail-dep", "FAILED", after=0.5, message=FAIL_MESSAGE)
    fake.add_deployment("sleepy/sleepy-dep")
    fake.set_outcome("sleepy/sleepy-dep", "RUNNING", after=0.5)
    fake.add_deployment("json-fail/json-fail-dep")
    fake.set_outcome(
        "json-fail/json-fail-dep", "FAILED", message=FAIL_MESSAGE, result=ValueError("bad")
    )

    def add_idle_deployment(
        parameters: Optional[Dict[str, Any]] = None,
        tags: Optional[List[str]] = None,
        schema: Optional[Dict[str, Any]] = None,
        enforce: bool = False,
    ) -> "tuple[str, str]":
        name = f"contract-{uuid.uuid4().hex[:8]}/idle"
        deployment = fake.add_deployment(
            name,
            parameters=parameters,
            tags=tags,
            parameter_schema=schema,
            enforce_parameter_schema=enforce,
        )
        fake.set_outcome(name, "SCHEDULED")
        return name, str(deployment.id)

    return Target("fake", fake.api_url, requests.Session(), add_idle_deployment, fake)


@pytest.fixture(params=["real", "fake"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The real session server, then a fresh fake mirroring it."""
    if request.param == "real":
        yield _real_target(request.getfixturevalue("api_url"))
        return
    with FakePrefect(set_environment=False) as fake:
        yield _fake_target(fake)


def _wait_for(read: Callable[[], Any], done: Callable[[Any], bool], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


# -- triggering and waiting ------------------------------------------------------------------


def test_completed_run_merges_parameters_and_tags_over_the_deployments(target: Target) -> None:
    with target.client() as client:
        deployment = client.read_deployment_by_name("add/add-dep")
        run = client.run_deployment(
            "add/add-dep", parameters={"x": 1}, tags=["contract"], timeout=60, poll_interval=0.2
        )
    assert run.state is not None and run.state.type is StateType.COMPLETED
    assert run.parameters == {"x": 1, "y": 10}
    assert sorted(run.tags) == ["contract", "examples"]
    assert run.deployment_id == deployment.id
    assert run.flow_id == deployment.flow_id
    assert run.raw["deployment_version"] == "1.0"
    assert run.start_time is not None and run.end_time is not None
    assert run.start_time <= run.end_time
    assert run.parent_task_run_id is None


def test_failed_run_ends_failed_with_the_flows_message(target: Target) -> None:
    run = deploytrigger.run_deployment(
        "fail/fail-dep", client=target.client(), timeout=60, poll_interval=0.2
    )
    assert run.state is not None
    assert (run.state.type, run.state.message) == (StateType.FAILED, FAIL_MESSAGE)
    with target.client() as client, pytest.raises(deploytrigger.FlowRunFailedError) as failed:
        client.read_result(run)
    assert failed.value.flow_run.id == run.id


def test_created_run_is_scheduled_with_the_given_time_and_name(target: Target) -> None:
    name, deployment_id = target.add_idle_deployment()
    with target.client() as client:
        run = client.run_deployment(
            name,
            flow_run_name="contract-run",
            scheduled_time=deploytrigger_time("2030-01-01T00:00:00+00:00"),
            timeout=0,
        )
    assert run.state is not None and run.state.type is StateType.SCHEDULED
    assert run.name == "contract-run"
    assert run.raw["expected_start_time"] == "2030-01-01T00:00:00Z"
    assert run.raw["next_scheduled_start_time"] == "2030-01-01T00:00:00Z"
    assert run.state.raw["state_details"]["scheduled_time"] == "2030-01-01T00:00:00Z"
    assert run.raw["labels"] == {
        "prefect.flow.id": str(run.flow_id),
        "prefect.deployment.id": deployment_id,
    }


def deploytrigger_time(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


# -- create_flow_run over HTTP ---------------------------------------------------------------


def test_idempotency_key_returns_the_first_run_with_200(target: Target) -> None:
    _, deployment_id = target.add_idle_deployment(parameters={"a": 1}, tags=["d"])
    path = f"/deployments/{deployment_id}/create_flow_run"
    first = target.post(path, {"parameters": {"b": 2}, "tags": ["r"], "idempotency_key": "k1"})
    again = target.post(path, {"parameters": {"b": 3}, "idempotency_key": "k1"})
    other = target.post(path, {"idempotency_key": "k2"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]
    assert again.json()["parameters"] == {"a": 1, "b": 2}
    assert sorted(again.json()["tags"]) == ["d", "r"]
    assert again.json()["idempotency_key"] == "k1"


def test_enforced_schema_answers_409_with_the_servers_detail(target: Target) -> None:
    name, deployment_id = target.add_idle_deployment(
        parameters={"y": 10}, schema=SCHEMA, enforce=True
    )
    path = f"/deployments/{deployment_id}/create_flow_run"
    wrong_type = target.post(path, {"parameters": {"x": "nope"}})
    missing = target.post(path, {"parameters": {}})
    default_wrong = target.post(path, {"parameters": {"x": 1, "y": "ten"}})
    fine = target.post(path, {"parameters": {"x": 1, "extra": True}})
    assert [r.status_code for r in (wrong_type, missing, default_wrong, fine)] == [
        409,
        409,
        409,
        201,
    ]
    assert wrong_type.json() == {
        "detail": "Error creating flow run: Validation failed for field 'x'. "
        "Failure reason: 'nope' is not of type 'integer'"
    }
    assert missing.json() == {
        "detail": "Error creating flow run: Validation failed. "
        "Failure reason: 'x' is a required property"
    }
    assert fine.json()["parameters"] == {"y": 10, "x": 1, "extra": True}
    with target.client() as client, pytest.raises(deploytrigger.ParameterRejectedError) as caught:
        client.run_deployment(name, parameters={"x": "nope"}, timeout=0)
    assert (caught.value.parameter, caught.value.status_code) == ("x", 409)


def test_schema_is_not_checked_when_not_enforced(target: Target) -> None:
    _, deployment_id = target.add_idle_deployment(schema=SCHEMA, enforce=False)
    answer = target.post(f"/deployments/{deployment_id}/create_flow_run", {"parameters": {}})
    assert answer.status_code == 201


def test_malformed_bodies_answer_422_in_the_servers_shape(target: Target) -> None:
    _, deployment_id = target.add_idle_deployment()
    answer = target.post(f"/deployments/{deployment_id}/create_flow_run", {"parameters": "x"})
    assert answer.status_code == 422
    body = answer.json()
    assert body["exception_message"] == "Invalid request received."
    detail = body["exception_detail"][0]
    assert (detail["loc"], detail["msg"], detail["input"]) == (
        ["body", "parameters"],
        "Input should be a valid dictionary",
        "x",
    )
    assert body["request_body"] == {"parameters": "x"}
    work_queue = target.post(
        f"/deployments/{deployment_id}/create_flow_run", {"work_queue_name": "wq"}
    )
    assert work_queue.status_code == 400
    assert "is not associated with a work pool" in work_queue.json()["detail"]


def test_missing_things_answer_404_with_the_servers_detail(target: Target) -> None:
    nobody = str(uuid.uuid4())
    answers = {
        "deployment": target.get(f"/deployments/{nobody}"),
        "by name": target.get("/deployments/name/no-such-flow/no-such-dep"),
        "flow": target.get(f"/flows/{nobody}"),
        "flow run": target.get(f"/flow_runs/{nobody}"),
        "create": target.post(f"/deployments/{nobody}/create_flow_run", {}),
        "not an id": target.get("/deployments/not-a-uuid"),
    }
    assert {what: (a.status_code, a.json()) for what, a in answers.items()} == {
        "deployment": (404, {"detail": "Deployment not found"}),
        "by name": (404, {"detail": "Deployment not found"}),
        "flow": (404, {"detail": "Flow not found"}),
        "flow run": (404, {"detail": "Flow run not found"}),
        "create": (404, {"detail": "Deployment not found"}),
        "not an id": (404, {"detail": "Not Found"}),
    }
    with target.client() as client:
        with pytest.raises(deploytrigger.DeploymentNotFoundError):
            client.run_deployment("no-such-flow/no-such-dep", timeout=0)
        with pytest.raises(deploytrigger.FlowRunNotFoundError):
            client.read_flow_run(nobody)
        with pytest.raises(deploytrigger.FlowRunNotFoundError):
            client.cancel_flow_run(nobody)


def test_an_unknown_name_is_answered_with_the_closest_names(target: Target) -> None:
    with target.client() as client:
        with pytest.raises(deploytrigger.DeploymentNotFoundError) as caught:
            client.run_deployment("add/add-deq", timeout=0)
        add_flow_id = client.read_deployments(flow_name="add")[0].flow_id
    assert caught.value.close_names[0] == "add/add-dep"
    assert "answered 404); did you mean 'add/add-dep'" in str(caught.value)
    flows = target.post("/flows/filter", {"flows": {"id": {"any_": [str(add_flow_id)]}}})
    assert (flows.status_code, [flow["name"] for flow in flows.json()]) == (200, ["add"])


def test_deployments_of_a_flow_are_listed_by_name(target: Target) -> None:
    with target.client() as client:
        listed = client.read_deployments(flow_name="add")
        by_id = client.read_deployment(listed[0].id)
    assert [(d.name, d.tags, d.parameters, d.version) for d in listed] == [
        ("add-dep", ("examples",), {"y": 10}, "1.0")
    ]
    assert by_id == listed[0]


def test_server_endpoints_health_version_and_csrf(target: Target) -> None:
    assert target.get("/health").json() is True
    assert target.get("/admin/version").json() == pinned_prefect_version()
    csrf = target.get(f"/csrf-token?client={uuid.uuid4()}")
    assert (csrf.status_code, csrf.json()) == (422, {"detail": "CSRF protection is disabled."})
    assert target.get("/flow_runs/filter").status_code == 405


def test_filter_reads_runs_by_id_and_caps_the_limit(target: Target) -> None:
    name, _ = target.add_idle_deployment()
    with target.client() as client:
        runs = [client.run_deployment(name, timeout=0) for _ in range(3)]
        read = client.read_flow_runs([run.id for run in runs[:2]])
    assert sorted(str(run.id) for run in read) == sorted(str(run.id) for run in runs[:2])
    too_many = target.post("/flow_runs/filter", {"limit": 201})
    assert (too_many.status_code, too_many.json()) == (
        422,
        {"detail": "Invalid limit: must be less than or equal to 200."},
    )
    bad_id = target.post("/flow_runs/filter", {"flow_runs": {"id": {"any_": ["x"]}}})
    assert bad_id.status_code == 422
    assert bad_id.json()["exception_detail"][0]["loc"] == ["body", "flow_runs", "id", "any_", 0]


def test_state_history_lists_every_state_of_a_run_oldest_first(target: Target) -> None:
    with target.client() as client:
        run = client.run_deployment(
            "add/add-dep", parameters={"x": 1}, timeout=60, poll_interval=0.2
        )
        states = client.read_flow_run_states(run.id)
    answer = target.get(f"/flow_run_states/?flow_run_id={run.id}")
    assert answer.status_code == 200
    history = answer.json()
    assert [(s["type"], s["name"]) for s in history] == [
        ("SCHEDULED", "Scheduled"),
        ("PENDING", "Pending"),
        ("PENDING", "Submitting"),
        ("RUNNING", "Running"),
        ("COMPLETED", "Completed"),
    ]
    assert all(
        set(s) == {"id", "type", "name", "timestamp", "message", "data", "state_details"}
        and s["state_details"]["flow_run_id"] == str(run.id)
        for s in history
    )
    stamps = [s.timestamp for s in states]
    assert None not in stamps and stamps == sorted(stamps)  # type: ignore[type-var]
    assert run.state is not None and history[-1] == dict(run.state.raw)  # the run's own state
    assert [(s.type.value, s.name, s.raw["id"]) for s in states] == [
        (s["type"], s["name"], s["id"]) for s in history
    ]
    unknown = target.get(f"/flow_run_states/?flow_run_id={uuid.uuid4()}")
    assert (unknown.status_code, unknown.json()) == (200, [])
    missing, bad = target.get("/flow_run_states/"), target.get("/flow_run_states/?flow_run_id=x")
    assert (missing.status_code, missing.json()) == (
        422,
        {
            "exception_message": "Invalid request received.",
            "exception_detail": [
                {
                    "type": "missing",
                    "loc": ["query", "flow_run_id"],
                    "msg": "Field required",
                    "input": None,
                }
            ],
            "request_body": None,
        },
    )
    assert bad.status_code == 422
    assert [(d["type"], d["loc"], d["input"]) for d in bad.json()["exception_detail"]] == [
        ("uuid_parsing", ["query", "flow_run_id"], "x")
    ]


# -- cancelling ------------------------------------------------------------------------------


def test_cancelling_a_scheduled_run_is_rejected_into_cancelled_then_aborted(
    target: Target,
) -> None:
    name, _ = target.add_idle_deployment()
    with target.client() as client:
        run = client.run_deployment(name, timeout=0)
    path = f"/flow_runs/{run.id}/set_state"
    cancel = {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": False}
    first = target.post(path, cancel)
    again = target.post(path, cancel)
    assert first.status_code == 201
    assert (first.json()["status"], first.json()["state"]["type"]) == ("REJECT", "CANCELLED")
    assert first.json()["details"] == {
        "type": "reject_details",
        "reason": "Scheduled flow run has no infrastructure to terminate.",
    }
    assert again.status_code == 200
    assert again.json()["status"] == "ABORT"
    assert again.json()["details"]["reason"] == "Run is already in terminal state CANCELLED."
    with target.client() as client:
        assert client.read_flow_run(run.id).state.type is StateType.CANCELLED  # type: ignore
        # ABORTed, but the run is cancelled: deploytrigger counts that as cancelled.
        assert client.cancel_flow_run(run.id) is True


def test_cancelling_a_running_run_accepts_cancelling_then_it_ends_cancelled(
    target: Target,
) -> None:
    with target.client() as client:
        run = client.run_deployment("sleepy/sleepy-dep", parameters={"seconds": 60}, timeout=0)
        running = _wait_for(
            lambda: client.read_flow_run(run.id), lambda r: r.state.type is StateType.RUNNING
        )
        assert running.state.type is StateType.RUNNING
        answer = target.post(
            f"/flow_runs/{run.id}/set_state",
            {"state": {"type": "CANCELLING", "name": "Cancelling", "message": "stop"}},
        )
        assert answer.status_code == 201
        assert answer.json()["status"] == "ACCEPT"
        assert (answer.json()["state"]["type"], answer.json()["state"]["message"]) == (
            "CANCELLING",
            "stop",
        )
        final = client.wait_for_flow_run(run.id, timeout=60, poll_interval=0.2)
    assert final.state is not None and final.state.type is StateType.CANCELLED


# -- linking ---------------------------------------------------------------------------------


def test_children_of_a_tracked_parent_get_placeholders_with_counted_keys(target: Target) -> None:
    with target.client() as client:
        with client.flow_run("contract-parent") as parent:
            children = [
                client.run_deployment("add/add-dep", parameters={"x": i}, timeout=0)
                for i in range(2)
            ]
        parent_now = client.read_flow_run(parent.id)
        finished = [client.wait_for_flow_run(c.id, timeout=60, poll_interval=0.2) for c in children]
    assert parent.state is not None and parent.state.type is StateType.RUNNING
    assert parent_now.state is not None and parent_now.state.type is StateType.COMPLETED
    task_runs = target.post(
        "/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [str(parent.id)]}}}
    ).json()
    by_id = {task_run["id"]: task_run for task_run in task_runs}
    placeholders = [by_id[str(child.parent_task_run_id)] for child in children]
    assert [(p["task_key"], p["dynamic_key"]) for p in placeholders] == [
        (ADD_KEY, "0"),
        (ADD_KEY, "1"),
    ]
    assert all(p["flow_run_id"] == str(parent.id) for p in placeholders)
    # A placeholder follows its subflow's state, and the subflow's states name the placeholder.
    assert [(p["state_type"], p["task_inputs"]) for p in placeholders] == [
        ("COMPLETED", {"x": []}),
        ("COMPLETED", {"x": []}),
    ]
    assert [p["state"]["state_details"]["child_flow_run_id"] for p in placeholders] == [
        str(child.id) for child in children
    ]
    assert [c.state.raw["state_details"]["task_run_id"] for c in finished] == [  # type: ignore
        p["id"] for p in placeholders
    ]
    assert placeholders[0]["task_version"] == "1.0"
    again = target.post(
        "/task_runs/",
        {"flow_run_id": str(parent.id), "task_key": ADD_KEY, "dynamic_key": "0"},
    )
    assert (again.status_code, again.json()["id"]) == (200, placeholders[0]["id"])
    orphan = target.post(
        "/task_runs/", {"flow_run_id": str(uuid.uuid4()), "task_key": "k", "dynamic_key": "0"}
    )
    assert orphan.status_code == 409
    # The id a placeholder's creator chose is kept; another task run's id is refused.
    chosen = str(uuid.uuid4())
    created = target.post(
        "/task_runs/",
        {"id": chosen, "flow_run_id": str(parent.id), "task_key": "k", "dynamic_key": "0"},
    )
    assert (created.status_code, created.json()["id"]) == (201, chosen)
    taken = target.post(
        "/task_runs/",
        {"id": chosen, "flow_run_id": str(parent.id), "task_key": "k", "dynamic_key": "1"},
    )
    assert taken.status_code == 409


def test_logs_posted_to_a_run_are_read_back_in_order(target: Target) -> None:
    name, _ = target.add_idle_deployment()
    with target.client() as client:
        run = client.run_deployment(name, timeout=0)
        lines = [
            {"name": "contract", "level": level, "message": message, "timestamp": stamp,
             "flow_run_id": str(run.id)}
            for level, message, stamp in (
                (40, "second", "2026-01-01T00:00:02Z"),
                (20, "first", "2026-01-01T00:00:01Z"),
            )
        ]  # fmt: skip
        assert target.post("/logs/", lines).status_code == 201
        read = client.read_logs(run.id)
    assert [(line.message, line.level, line.name) for line in read] == [
        ("first", 20, "contract"),
        ("second", 40, "contract"),
    ]


# -- Prefect's own client --------------------------------------------------------------------

PREFECT_CHILD = """
import sys
from prefect.deployments import run_deployment

run = run_deployment(sys.argv[1], parameters={"x": 1}, timeout=30, poll_interval=0.2)
print("RESULT " + run.state.type.value + " " + str(sorted(run.parameters.items())))
"""


@pytest.mark.parametrize("outcome", ["COMPLETED", "FAILED"])
def test_prefects_own_run_deployment_triggers_and_waits_on_the_fake(
    outcome: str, tmp_path: Path
) -> None:
    with FakePrefect(set_environment=False) as fake:
        fake.add_deployment("etl/nightly", parameters={"y": 2})
        fake.set_outcome("etl/nightly", outcome, after=0.5)
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        env.update(
            PREFECT_API_URL=fake.api_url,
            PREFECT_HOME=str(tmp_path),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        script = tmp_path / "trigger.py"
        script.write_text(PREFECT_CHILD)
        child = Service("prefect run_deployment", [sys.executable, str(script), "etl/nightly"],
                        env, tmp_path / "child.log")  # fmt: skip
        with child:
            assert child.process is not None
            code = child.process.wait(timeout=120)
        output = (tmp_path / "child.log").read_text()
        assert code == 0, output
        assert f"RESULT {outcome} [('x', 1), ('y', 2)]" in output
        runs = fake.runs
        assert len(runs) == 1 and runs[0].state.type.value == outcome  # type: ignore[union-attr]
        paths = [(r.method, r.path.split("/")[1]) for r in fake.requests]
        assert paths[:3] == [("GET", "deployments"), ("GET", "csrf-token"), ("POST", "deployments")]
        assert json.dumps(fake.requests[2].json["parameters"]) == '{"x": 1}'
