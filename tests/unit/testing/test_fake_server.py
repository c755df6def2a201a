"""Unit tests of the fake Prefect API (deploytrigger.testing.fake): fast, no real server.

Its faithfulness to a real server is checked in ``test_fake_contract.py``;
these tests pin what users of the fake rely on: the environment, outcomes,
timelines on an injected clock, results, recorded requests, and bad input.
"""

import datetime as dt
import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

import deploytrigger
from deploytrigger.testing import FakePrefect, fake_prefect
from deploytrigger.testing.fake._outcomes import Outcome, encode_result, plan
from deploytrigger.testing.fake._schema import merge_tags, schema_error


class Clock:
    """A settable POSIX clock for the fake's timelines."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakePrefect]:
    with fake_prefect() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(clock: Clock) -> Iterator[FakePrefect]:
    with fake_prefect(clock=clock) as server:
        yield server


def post(fake: FakePrefect, path: str, body: Any) -> requests.Response:
    return requests.post(fake.api_url + path, json=body, timeout=5)


def get(fake: FakePrefect, path: str) -> requests.Response:
    return requests.get(fake.api_url + path, timeout=5)


# -- the environment -----------------------------------------------------------------------


def test_fake_points_prefect_api_url_at_itself_and_restores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    monkeypatch.setenv("PREFECT_API_KEY", "secret-key")
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    with fake_prefect() as fake:
        assert os.environ["PREFECT_API_URL"] == fake.api_url
        assert "PREFECT_API_KEY" not in os.environ
        assert get(fake, "/health").json() is True
    assert os.environ["PREFECT_API_URL"] == "http://elsewhere:4200/api"
    assert os.environ["PREFECT_API_KEY"] == "secret-key"
    assert "PREFECT_API_AUTH_STRING" not in os.environ


def test_fake_without_set_environment_leaves_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://elsewhere:4200/api")
    with fake_prefect(set_environment=False) as fake:
        assert os.environ["PREFECT_API_URL"] == "http://elsewhere:4200/api"
        client = deploytrigger.Client(api_url=fake.api_url)
        fake.add_deployment("etl/nightly")
        assert client.run_deployment("etl/nightly", timeout=5, poll_interval=0).state.is_completed()
        client.close()


def test_stopped_fake_refuses_connections_and_says_it_is_not_started() -> None:
    fake = fake_prefect()
    with pytest.raises(RuntimeError, match="start the FakePrefect first"):
        fake.api_url  # noqa: B018 - the property raises
    with fake:
        url = fake.api_url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/health", timeout=2)
    with pytest.raises(RuntimeError):
        fake.runs  # noqa: B018


def test_stopping_the_fake_closes_kept_alive_connections() -> None:
    session = requests.Session()
    with fake_prefect() as fake:
        url = fake.api_url
        assert session.get(url + "/health", timeout=5).json() is True
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/health", timeout=5)
    session.close()


def test_the_fake_answers_without_nagles_delay(fake: FakePrefect) -> None:
    # Its answer is two writes (headers, body): with Nagle's algorithm on, the body waits
    # for the client's delayed ACK, 40 ms a request. Checked on the server's own sockets.
    session = requests.Session()
    assert session.get(fake.api_url + "/health", timeout=5).json() is True
    server = fake._server
    assert server is not None
    with server._connections_lock:
        connections = list(server._connections)
    assert connections
    for connection in connections:
        assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    session.close()


def test_many_threads_trigger_at_once_and_each_gets_its_own_run(fake: FakePrefect) -> None:
    fake.add_deployment("etl/nightly")
    with deploytrigger.Client() as client, ThreadPoolExecutor(max_workers=8) as pool:
        runs = list(
            pool.map(
                lambda i: client.run_deployment(
                    "etl/nightly", parameters={"i": i}, timeout=5, poll_interval=0
                ),
                range(32),
            )
        )
    assert all(run.state is not None and run.state.is_completed() for run in runs)
    assert sorted(run.parameters["i"] for run in fake.runs) == list(range(32))
    assert len({run.id for run in runs}) == 32


# -- run_deployment through the module-level functions -------------------------------------


def test_run_deployment_completes_by_default_and_merges_parameters_and_tags(
    fake: FakePrefect,
) -> None:
    fake.add_deployment("etl/nightly", parameters={"day": "mon", "n": 1}, tags=["etl"])
    run = deploytrigger.run_deployment(
        "etl/nightly", parameters={"n": 2}, tags=["adhoc", "etl"], timeout=5, poll_interval=0
    )
    assert run.state is not None and run.state.is_completed()
    assert run.parameters == {"day": "mon", "n": 2}
    assert sorted(run.tags) == ["adhoc", "etl"]
    assert [r.id for r in fake.runs] == [run.id]


def test_set_outcome_failed_with_message_ends_the_next_run_failed(fake: FakePrefect) -> None:
    fake.add_deployment("etl/nightly")
    fake.set_outcome("etl/nightly", "FAILED", message="disk full")
    run = deploytrigger.run_deployment("etl/nightly", timeout=5, poll_interval=0)
    assert run.state is not None
    assert (run.state.type, run.state.message) == (deploytrigger.StateType.FAILED, "disk full")


def test_set_outcome_accepts_a_state_type(fake: FakePrefect) -> None:
    fake.add_deployment("etl/nightly")
    fake.set_outcome("etl/nightly", deploytrigger.StateType.CRASHED)
    run = deploytrigger.run_deployment("etl/nightly", timeout=5, poll_interval=0)
    assert run.state is not None and run.state.is_crashed()


def test_result_is_what_read_result_returns_with_prefects_marked_types(fake: FakePrefect) -> None:
    value = {
        "rows": [1, 2],
        "when": dt.datetime(2026, 11, 23, 18, 30, tzinfo=dt.timezone.utc),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "where": Path("/tmp/report.csv"),
        "tags": {"a"},
    }
    fake.add_deployment("etl/nightly")
    fake.set_outcome("etl/nightly", "COMPLETED", result=value)
    run = deploytrigger.run_deployment("etl/nightly", timeout=5, poll_interval=0)
    assert deploytrigger.read_result(run) == value


def test_completed_run_without_a_result_has_none_persisted(fake: FakePrefect) -> None:
    fake.add_deployment("etl/nightly")
    run = deploytrigger.run_deployment("etl/nightly", timeout=5, poll_interval=0)
    with pytest.raises(deploytrigger.ResultNotPersistedError):
        deploytrigger.read_result(run)


def test_failed_run_with_an_exception_result_names_the_exception(fake: FakePrefect) -> None:
    fake.add_deployment("etl/nightly")
    fake.set_outcome("etl/nightly", "FAILED", result=ValueError("bad day"))
    run = deploytrigger.run_deployment("etl/nightly", timeout=5, poll_interval=0)
    with pytest.raises(deploytrigger.FlowRunFailedError) as caught:
        deploytrigger.read_result(run)
    assert caught.value.exception_type == "builtins.ValueError"


def test_unknown_deployment_is_deployment_not_found(fake: FakePrefect) -> None:
    with pytest.raises(deploytrigger.DeploymentNotFoundError):
        deploytrigger.run_deployment("etl/missing", timeout=0)


def test_unknown_deployment_names_the_closest_ones_as_a_real_server_lets_the_client(
    fake: FakePrefect,
) -> None:
    fake.add_deployment("etl/nightly")
    fake.add_deployment("etl/weekly")
    fake.add_deployment("echo/echo-dep")
    with pytest.raises(deploytrigger.DeploymentNotFoundError) as caught:
        deploytrigger.run_deployment("etl/nigthly", timeout=0)
    assert caught.value.close_names == ("etl/nightly", "etl/weekly")  # closest first
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", "/deployments/name/etl/nigthly"),
        ("POST", "/deployments/filter"),
        ("POST", "/flows/filter"),
    ]


def test_flows_filter_reads_flows_by_id_sorted_by_name(fake: FakePrefect) -> None:
    ids = {name: str(fake.add_deployment(f"{name}/dep").flow_id) for name in ("b", "a", "c")}
    http = requests.Session()
    url = fake.api_url + "/flows/filter"
    chosen = http.post(url, json={"flows": {"id": {"any_": [ids["c"], ids["a"]]}}}, timeout=5)
    assert [flow["name"] for flow in chosen.json()] == ["a", "c"]
    assert [flow["name"] for flow in http.post(url, json={"limit": 2}, timeout=5).json()] == [
        "a",
        "b",
    ]
    bad = http.post(url, json={"flows": {"id": {"any_": ["x"]}}}, timeout=5)
    assert bad.status_code == 422


def test_enforced_schema_rejects_a_bad_parameter_with_409(fake: FakePrefect) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fake.add_deployment("etl/nightly", parameter_schema=schema, enforce_parameter_schema=True)
    with pytest.raises(deploytrigger.ParameterRejectedError) as caught:
        deploytrigger.run_deployment("etl/nightly", parameters={"n": "x"}, timeout=0)
    assert caught.value.parameter == "n"
    assert caught.value.status_code == 409
    assert fake.runs == []


def test_idempotency_key_returns_the_same_run(fake: FakePrefect) -> None:
    fake.add_deployment("etl/nightly")
    first = deploytrigger.run_deployment("etl/nightly", idempotency_key="k", timeout=0)
    again = deploytrigger.run_deployment("etl/nightly", idempotency_key="k", timeout=0)
    assert first.id == again.id
    assert len(fake.runs) == 1


def test_requests_are_recorded_with_method_path_and_body(fake: FakePrefect) -> None:
    deployment = fake.add_deployment("etl/nightly")
    deploytrigger.run_deployment("etl/nightly", parameters={"n": 1}, timeout=0)
    creates = fake.requests_to("POST", f"/deployments/{deployment.id}/create_flow_run")
    assert len(creates) == 1 and creates[0].json["parameters"] == {"n": 1}
    assert fake.requests[0].method == "GET"
    assert fake.requests[0].path == "/deployments/name/etl/nightly"


# -- timelines on an injected clock ----------------------------------------------------------


def test_run_goes_scheduled_pending_running_final_as_time_passes(
    timed: FakePrefect, clock: Clock
) -> None:
    timed.add_deployment("etl/nightly")
    timed.set_outcome("etl/nightly", "COMPLETED", after=10)
    run = deploytrigger.run_deployment("etl/nightly", timeout=0)
    seen = [run.state.type.value if run.state else None]
    for seconds in (0, 4.9, 5, 9.9, 10):
        clock.now = 1_800_000_000.0 + seconds
        seen.append(timed.runs[0].state.type.value)  # type: ignore[union-attr]
    assert seen == ["SCHEDULED", "PENDING", "PENDING", "RUNNING", "RUNNING", "COMPLETED"]
    final = timed.runs[0]
    assert final.start_time is not None and final.end_time is not None
    assert (final.end_time - final.start_time).total_seconds() == 5


def test_run_scheduled_in_the_future_waits_for_its_time(timed: FakePrefect, clock: Clock) -> None:
    timed.add_deployment("etl/nightly")
    later = dt.datetime.fromtimestamp(clock.now + 60, dt.timezone.utc)
    deploytrigger.run_deployment("etl/nightly", scheduled_time=later, timeout=0)
    clock.now += 59
    assert timed.runs[0].state.type.value == "SCHEDULED"  # type: ignore[union-attr]
    clock.now += 1
    assert timed.runs[0].state.type.value == "COMPLETED"  # type: ignore[union-attr]


def test_outcome_running_leaves_the_run_running_until_the_timeout(timed: FakePrefect) -> None:
    timed.add_deployment("etl/nightly")
    timed.set_outcome("etl/nightly", "RUNNING")
    run = deploytrigger.run_deployment("etl/nightly", timeout=0)
    assert timed.runs[0].state.type.value == "RUNNING"  # type: ignore[union-attr]
    assert deploytrigger.Client().cancel_flow_run(run.id)
    assert timed.runs[0].state.type.value == "CANCELLED"  # type: ignore[union-attr]


def test_set_outcome_applies_to_runs_created_after_it(timed: FakePrefect, clock: Clock) -> None:
    timed.add_deployment("etl/nightly")
    timed.set_outcome("etl/nightly", "COMPLETED", after=10)
    deploytrigger.run_deployment("etl/nightly", timeout=0)
    timed.set_outcome("etl/nightly", "FAILED")
    deploytrigger.run_deployment("etl/nightly", timeout=0)
    clock.now += 10
    assert [r.state.type.value for r in timed.runs] == ["COMPLETED", "FAILED"]  # type: ignore


# -- the HTTP answers ------------------------------------------------------------------------


def test_placeholder_task_run_is_201_then_200_for_the_same_keys(fake: FakePrefect) -> None:
    fake.add_deployment("etl/nightly")
    parent = deploytrigger.run_deployment("etl/nightly", timeout=0)
    body = {"flow_run_id": str(parent.id), "task_key": "t", "dynamic_key": "0"}
    first = post(fake, "/task_runs/", body)
    again = post(fake, "/task_runs/", body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    missing = post(fake, "/task_runs/", {**body, "flow_run_id": str(uuid.uuid4())})
    assert missing.status_code == 409


def test_csrf_token_version_and_unknown_paths(fake: FakePrefect) -> None:
    assert get(fake, "/csrf-token?client=abc").status_code == 422
    assert get(fake, "/admin/version").json() == "3.8.8"
    assert get(fake, "/deployments/not-a-uuid").json() == {"detail": "Not Found"}
    assert get(fake, "/flow_runs/filter").status_code == 405
    assert fake.requests[0].query == {"client": "abc"}


def test_malformed_body_is_422_in_the_servers_shape(fake: FakePrefect) -> None:
    deployment = fake.add_deployment("etl/nightly")
    answer = post(fake, f"/deployments/{deployment.id}/create_flow_run", {"parameters": "x"})
    assert answer.status_code == 422
    detail = answer.json()["exception_detail"][0]
    assert detail["loc"] == ["body", "parameters"]
    raw = requests.post(
        fake.api_url + "/flow_runs/filter",
        data=b"{nope",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert raw.status_code == 422
    assert raw.json()["exception_detail"][0]["type"] == "json_invalid"


def test_logs_posted_or_added_are_filtered_by_run_and_time(fake: FakePrefect) -> None:
    fake.add_deployment("etl/nightly")
    run = deploytrigger.run_deployment("etl/nightly", timeout=0)
    fake.add_log(run.id, "first", timestamp="2026-01-01T00:00:00Z")
    post(
        fake,
        "/logs/",
        [{"flow_run_id": str(run.id), "level": 40, "message": "second",
          "timestamp": "2026-01-01T00:00:01Z", "name": "x"}],
    )  # fmt: skip
    with deploytrigger.Client() as client:
        lines = client.read_logs(run.id)
    assert [(line.message, line.level) for line in lines] == [("first", 20), ("second", 40)]


# -- bad input to the fake itself -------------------------------------------------------------


@pytest.mark.parametrize("name", ["nightly", "a/b/c", "/x", 3])
def test_add_deployment_refuses_a_name_without_flow_and_deployment(
    fake: FakePrefect, name: Any
) -> None:
    with pytest.raises(ValueError, match="flow/deployment"):
        fake.add_deployment(name)


def test_set_outcome_refuses_unknown_deployment_state_and_after(fake: FakePrefect) -> None:
    with pytest.raises(KeyError):
        fake.set_outcome("etl/missing", "COMPLETED")
    fake.add_deployment("etl/nightly")
    with pytest.raises(ValueError, match="state must be one of"):
        fake.set_outcome("etl/nightly", "DONE")
    with pytest.raises(ValueError, match="after"):
        fake.set_outcome("etl/nightly", "FAILED", after=-1)
    with pytest.raises(TypeError, match="cannot be written"):
        fake.set_outcome("etl/nightly", "COMPLETED", result=object())


# -- the pure helpers --------------------------------------------------------------------------


def test_plan_spreads_the_states_over_after_seconds() -> None:
    assert plan(Outcome("FAILED", 10.0, "m"), 100.0) == [
        (100.0, "PENDING", None, None),
        (100.0, "PENDING", "Submitting", None),
        (105.0, "RUNNING", None, None),
        (110.0, "FAILED", None, "m"),
    ]
    assert plan(Outcome("SCHEDULED"), 100.0) == []
    assert plan(Outcome("RUNNING", 4.0), 100.0) == [
        (100.0, "PENDING", None, None),
        (100.0, "PENDING", "Submitting", None),
        (104.0, "RUNNING", None, None),
    ]


SCHEMA: Dict[str, Any] = {
    "type": "object",
    "properties": {
        "n": {"type": "integer"},
        "items": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        "mode": {"$ref": "#/definitions/Mode"},
    },
    "required": ["n"],
    "definitions": {"Mode": {"enum": ["a", "b"]}},
}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"n": 1}, None),
        ({"n": 1.0, "items": None, "other": object}, None),
        ({"n": "x"}, "Validation failed for field 'n'. Failure reason: "
         "'x' is not of type 'integer'"),
        ({"n": True}, "Validation failed for field 'n'. Failure reason: "
         "True is not of type 'integer'"),
        ({}, "Validation failed. Failure reason: 'n' is a required property"),
        ({"n": 1, "items": [1]}, "Validation failed for field 'items'. Failure reason: "
         "[1] is not valid under any of the given schemas"),
        ({"n": 1, "mode": "c"}, "Validation failed for field 'mode'. Failure reason: "
         "'c' is not one of ['a', 'b']"),
    ],
)  # fmt: skip
def test_schema_error_words_failures_as_the_server(
    parameters: Dict[str, Any], message: Any
) -> None:
    assert schema_error(parameters, SCHEMA) == message


def test_merge_tags_keeps_each_tag_once() -> None:
    assert merge_tags(["a", "b"], ["b", "c", "c"]) == ["a", "b", "c"]


def test_encode_result_marks_exceptions_as_prefect_does() -> None:
    encoded = encode_result(KeyError("k"))
    assert encoded == b'{"__exc_type__": "builtins.KeyError", "message": "\'k\'"}'


def _names(runs: List[Any]) -> List[str]:
    return [run.name for run in runs]


def test_runs_get_distinct_generated_names(fake: FakePrefect) -> None:
    fake.add_deployment("etl/nightly")
    for _ in range(3):
        deploytrigger.run_deployment("etl/nightly", timeout=0)
    assert len(set(_names(fake.runs))) == 3


@pytest.mark.parametrize(
    "value",
    [
        dt.timedelta(0),
        dt.timedelta(days=400, seconds=3601),
        dt.timedelta(seconds=-5),
        dt.timedelta(days=-9, seconds=46328, microseconds=488225),
        dt.timedelta(microseconds=1),
        dt.timedelta(minutes=90),
    ],
)
def test_timedeltas_are_written_as_prefects_json_serializer_writes_them(
    value: dt.timedelta,
) -> None:
    serializers = pytest.importorskip("prefect.serializers")
    assert encode_result(value) == serializers.JSONSerializer().dumps(value)
