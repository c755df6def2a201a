"""deploytrigger against each Prefect server version of the matrix (``--prefect-versions``).

Each version's server runs from its own environment (``.venv-servers``) and
serves ``tests/servers/matrix_flows.py``, whose ``parent`` flow calls that
version's own ``run_deployment``: the placeholder it writes is the reference
ours must equal. A plain ``pytest`` runs these against Prefect 2.20.25 (the
rest of the suite covers the session server's pinned version);
``make test-matrix`` against every version.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, Iterator, List

import helpers.server_http as server_http
import pytest
from helpers.events_probe import eventually, listener_of
from helpers.server_http import raw

from deploytrigger import Client, FlowRun, FlowRunFailedError, StateType, parent_run
from harness.local_server import LocalPrefect
from harness.server_venv import version_key

pytestmark = [pytest.mark.integration, pytest.mark.matrix]

FAR_FUTURE = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
WAIT = 180.0


def key_prefix(version: str) -> str:
    """Where that version's run_deployment lives: the placeholder's task key starts with it."""
    module = "deployments" if version.startswith("2.") else "flow_runs"
    return f"prefect.deployments.{module}.run_deployment."


@pytest.fixture
def client(matrix_prefect: LocalPrefect) -> Iterator[Client]:
    with Client(matrix_prefect.api_url, request_timeout=30, max_retries=10) as shared:
        yield shared


def get(api_url: str, path: str) -> Any:
    response = raw.get(f"{api_url}{path}", timeout=30)
    response.raise_for_status()
    return response.json()


def task_runs_of(api_url: str, flow_run_id: Any) -> List[Dict[str, Any]]:
    """The task runs of a flow run, placeholders in dynamic-key order."""
    runs = server_http.task_runs_of(api_url, flow_run_id)
    return sorted(runs, key=lambda run: numeric_key(run["dynamic_key"]))


def numeric_key(dynamic_key: str) -> int:
    """Placeholders count "0", "1", ...; a Prefect 3 task's own key is a UUID (sorted last)."""
    return int(dynamic_key) if dynamic_key.isdigit() else sys.maxsize


def wait_for_state(client: Client, run_id: uuid.UUID, state: StateType) -> FlowRun:
    deadline = time.monotonic() + WAIT
    while True:
        run = client.read_flow_run(run_id)
        if run.state is not None and (run.state.type == state or run.is_final()):
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"flow run {run_id} is still {run.state} after {WAIT} s")
        time.sleep(1)


def logged(client: Client, run_id: uuid.UUID, text: str) -> List[str]:
    """The run's log lines containing ``text``, once there are some: the flow process
    sends its logs in the background, Prefect 3 sometimes after the run is final."""
    deadline = time.monotonic() + 30
    while True:
        lines = [line.message for line in client.read_all_logs(run_id) if text in line.message]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def test_server_is_the_version_asked_for(
    matrix_prefect: LocalPrefect, prefect_version: str
) -> None:
    assert get(matrix_prefect.api_url, "/admin/version") == prefect_version


#: Server versions whose flow runs carry no ``labels`` (3.4 and later have them).
UNLABELLED = ("2.20.25", "3.0.0")


def test_trigger_and_wait_with_parameters_tags_and_job_variables(
    client: Client, prefect_version: str
) -> None:
    run = client.run_deployment(
        "add/add-dep",
        parameters={"a": 2, "b": 5},
        tags=["from-test"],
        job_variables={"env": {"MATRIX": "1"}},
        timeout=WAIT,
        poll_interval=1,
    )
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.parameters == {"a": 2, "b": 5}
    assert {"from-test", "matrix"} <= set(run.tags)
    assert run.job_variables == {"env": {"MATRIX": "1"}}
    assert run.run_count == 1
    assert run.total_run_time is not None and run.total_run_time > dt.timedelta(0)
    assert run.start_time is not None and run.end_time is not None
    assert run.flow_version is not None and run.created is not None
    if prefect_version in UNLABELLED:
        assert run.labels == {} and "labels" not in run.raw
    else:
        assert run.labels["prefect.deployment.id"] == str(run.deployment_id)
    assert logged(client, run.id, "adding") == ["adding 2 and 5"]


def test_scheduled_run_tells_when_it_is_due(client: Client) -> None:
    run = client.run_deployment(
        "add/add-dep", parameters={"a": 1}, scheduled_time=FAR_FUTURE, timeout=0
    )
    assert run.state is not None and run.state.type == StateType.SCHEDULED
    assert run.scheduled_time == FAR_FUTURE == run.expected_start_time
    assert client.cancel_flow_run(run.id)  # nothing left waiting on the server


def test_failed_run_raises_with_the_servers_message(client: Client) -> None:
    run = client.run_deployment(
        "fail/fail-dep", parameters={"message": "matrix boom"}, timeout=WAIT, poll_interval=1
    )
    assert run.state is not None and run.state.type == StateType.FAILED
    with pytest.raises(FlowRunFailedError):
        run.raise_for_state()


def test_cancel_a_running_run(client: Client) -> None:
    run = client.run_deployment("sleepy/sleepy-dep", parameters={"seconds": 300}, timeout=0)
    assert wait_for_state(client, run.id, StateType.RUNNING).state.type == StateType.RUNNING
    assert client.cancel_flow_run(run.id)
    final = client.wait_for_flow_run(run.id, timeout=WAIT, poll_interval=1)
    assert final.state is not None and final.state.type == StateType.CANCELLED, final.state


def test_cli_runs_a_deployment(matrix_prefect: LocalPrefect) -> None:
    argv = ["run", "add/add-dep", "-p", "a=4", "-p", "b=4", "--json", "--poll-interval", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "deploytrigger", *argv, "--api-url", matrix_prefect.api_url],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)
    assert (printed["state"], printed["parameters"]) == ("COMPLETED", {"a": 4, "b": 4})


def test_children_of_a_tracked_run_get_their_own_placeholders(
    client: Client, matrix_prefect: LocalPrefect, prefect_version: str
) -> None:
    with client.flow_run("matrix-tracked") as parent:
        children = [
            client.run_deployment(
                "add/add-dep", parameters={"a": i}, scheduled_time=FAR_FUTURE, timeout=0
            )
            for i in range(3)
        ]
    placeholders = task_runs_of(matrix_prefect.api_url, parent.id)
    assert [run["dynamic_key"] for run in placeholders] == ["0", "1", "2"]
    expected_key = key_prefix(prefect_version) + "add-add-dep"
    assert {run["task_key"] for run in placeholders} == {expected_key}
    assert [str(child.parent_task_run_id) for child in children] == [
        run["id"] for run in placeholders
    ]
    assert get(matrix_prefect.api_url, f"/flow_runs/{parent.id}")["state_type"] == "COMPLETED"


# What a placeholder is given when created (the rest follows from its state and run).
CREATED_FIELDS = (
    "flow_run_id",
    "task_key",
    "cache_key",
    "cache_expiration",
    "task_version",
    "empirical_policy",
    "tags",
    "labels",
    "task_inputs",
)


def test_placeholder_equals_the_one_prefects_own_run_deployment_writes(
    client: Client, matrix_prefect: LocalPrefect, prefect_version: str
) -> None:
    """Both placeholders in one parent run: Prefect's (inside its flow) and ours, after it."""
    parent = client.run_deployment("parent/parent-dep", timeout=WAIT, poll_interval=1)
    assert parent.state is not None and parent.state.is_completed(), parent.state
    with parent_run(parent.id):
        ours_child = client.run_deployment(
            "add/add-dep", parameters={"a": 1, "b": 2}, timeout=WAIT, poll_interval=1
        )
    theirs, ours = task_runs_of(matrix_prefect.api_url, parent.id)
    assert (theirs["dynamic_key"], ours["dynamic_key"]) == ("0", "1")
    assert str(ours_child.parent_task_run_id) == ours["id"]
    assert {key: ours.get(key) for key in CREATED_FIELDS} == {
        key: theirs.get(key) for key in CREATED_FIELDS
    }
    assert ours["task_key"] == key_prefix(prefect_version) + "add-add-dep"
    assert ours["name"] == "add/add-dep"


def test_reused_idempotency_key_finishes_the_idle_placeholder(
    client: Client, matrix_prefect: LocalPrefect
) -> None:
    key = f"matrix-{uuid.uuid4()}"
    with client.flow_run("matrix-idempotent") as parent:
        first = client.run_deployment(
            "add/add-dep", parameters={"a": 7}, idempotency_key=key, timeout=WAIT, poll_interval=1
        )
        again = client.run_deployment("add/add-dep", parameters={"a": 7}, idempotency_key=key)
    assert again.id == first.id and first.state is not None and first.state.is_completed()
    linked, idle = task_runs_of(matrix_prefect.api_url, parent.id)
    assert str(first.parent_task_run_id) == linked["id"]
    assert idle["name"] == first.name
    assert (idle["state_type"], idle["state_name"]) == ("COMPLETED", "Completed")
    assert idle["state"]["state_details"]["child_flow_run_id"] == str(first.id)


def test_placeholder_under_a_task_run_parent_equals_prefects_own(
    client: Client, matrix_prefect: LocalPrefect, prefect_version: str
) -> None:
    """Prefect 3.6+ names the calling task run in ``__parents__``; older versions do not."""
    parent = client.run_deployment("parent-task/parent-task-dep", timeout=WAIT, poll_interval=1)
    assert parent.state is not None and parent.state.is_completed(), parent.state
    prefix = key_prefix(prefect_version)
    (caller,) = [
        run for run in task_runs_of(matrix_prefect.api_url, parent.id)
        if not run["task_key"].startswith(prefix)
    ]  # fmt: skip
    with parent_run(parent.id, task_run_id=caller["id"]):
        client.run_deployment(
            "add/add-dep", parameters={"a": 1, "b": 2}, scheduled_time=FAR_FUTURE, timeout=0
        )
    theirs, ours = [
        run for run in task_runs_of(matrix_prefect.api_url, parent.id)
        if run["task_key"].startswith(prefix)
    ]  # fmt: skip
    assert (theirs["dynamic_key"], ours["dynamic_key"]) == ("0", "1")
    assert {key: ours.get(key) for key in CREATED_FIELDS} == {
        key: theirs.get(key) for key in CREATED_FIELDS
    }
    assert ("__parents__" in ours["task_inputs"]) == (version_key(prefect_version) >= (3, 6))


def events_unavailable_lines(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    """The listener's "no stream here, waits poll" records (its debug lines left out)."""
    return [
        record
        for record in caplog.records
        if record.name == "deploytrigger"
        and record.levelno >= logging.INFO
        and record.getMessage().startswith("events:")
    ]


@pytest.mark.parametrize("mode, level", [("auto", logging.INFO), ("on", logging.WARNING)])
def test_a_server_without_the_stream_is_waited_on_by_polling_with_one_log_line(
    matrix_prefect: LocalPrefect,
    prefect_version: str,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    level: int,
) -> None:
    """Prefect 2.20 answers the events handshake with HTTP 500: the waits poll, no error escapes."""
    if not prefect_version.startswith("2."):
        pytest.skip("3.x servers offer the events stream")
    caplog.set_level(logging.DEBUG, logger="deploytrigger")
    with Client(matrix_prefect.api_url, events=mode, request_timeout=30, max_retries=10) as client:
        runs = [
            client.run_deployment("add/add-dep", parameters={"a": i}, timeout=WAIT, poll_interval=1)
            for i in range(2)
        ]
        handles = [client.submit("add/add-dep", parameters={"a": 10 + i}) for i in range(3)]
        done = list(client.as_completed(handles, timeout=WAIT, poll_interval=1))
        listener = listener_of(client)
        gave_up = eventually(lambda: not listener.listening(), 60)

    assert all(run.state is not None and run.state.is_completed() for run in runs + done)
    assert sorted(run.parameters["a"] for run in done) == [10, 11, 12]
    assert gave_up and listener.connections == 0
    (line,) = events_unavailable_lines(caplog)
    assert line.levelno == level
    assert "refused the stream" in line.getMessage() and "poll" in line.getMessage()
