"""Subflow linking on a real Prefect server, checked on the server's own records.

Children that would otherwise start are scheduled far in the future, so that
fanning out hundreds of them does not make the served flows process start
hundreds of flow runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from helpers.server_http import raw, task_runs_of

import deploytrigger
from deploytrigger import Client, StateType, parent_run
from harness.processes import Service

pytestmark = pytest.mark.integration

ADD_KEY = "prefect.deployments.flow_runs.run_deployment.add-add-dep"
FAR_FUTURE = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT = 240


@pytest.fixture(scope="module")
def client(api_url: str) -> Iterator[Client]:
    # SQLite answers bursts of concurrent writes with 503s: allow more retries.
    with Client(api_url, request_timeout=30, max_retries=10, pool_size=32) as shared:
        yield shared


def post(api_url: str, path: str, body: Dict[str, Any]) -> Any:
    response = raw.post(f"{api_url}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def get(api_url: str, path: str) -> Any:
    response = raw.get(f"{api_url}{path}", timeout=30)
    response.raise_for_status()
    return response.json()


def children_of(api_url: str, placeholder_ids: List[str]) -> List[Dict[str, Any]]:
    """The flow runs whose parent_task_run_id is one of ``placeholder_ids``."""
    children: List[Dict[str, Any]] = []
    for start in range(0, len(placeholder_ids), 100):
        children += post(
            api_url,
            "/flow_runs/filter",
            {
                "flow_runs": {"parent_task_run_id": {"any_": placeholder_ids[start : start + 100]}},
                "limit": 200,
            },
        )
    return children


def prefect_env(api_url: str, home: Path, **extra: str) -> Dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def run_script(source: str, env: Dict[str, str], tmp_path: Path) -> Any:
    """Run ``source`` in a fresh interpreter; return the JSON it prints last."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- tracked runs and fan-out from threads ---------------------------------------------------


def test_200_children_from_16_threads_each_get_their_own_placeholder(
    client: Client, api_url: str
) -> None:
    def trigger(i: int) -> deploytrigger.FlowRun:
        return client.run_deployment(
            "add/add-dep", parameters={"x": i}, scheduled_time=FAR_FUTURE, timeout=0
        )

    pool = deploytrigger.ParentAwareThreadPoolExecutor(max_workers=16)
    with pool, client.flow_run("deploytrigger-fanout", name="fan-out-200") as parent:
        children = list(pool.map(trigger, range(200)))

    assert get(api_url, f"/flow_runs/{parent.id}")["state_type"] == "COMPLETED"
    placeholders = {run["id"]: run for run in task_runs_of(api_url, parent.id)}
    assert len(placeholders) == 200
    assert sorted(int(run["dynamic_key"]) for run in placeholders.values()) == list(range(200))
    assert {run["task_key"] for run in placeholders.values()} == {ADD_KEY}
    assert {run["name"] for run in placeholders.values()} == {"add/add-dep"}

    links = [str(child.parent_task_run_id) for child in children]
    assert len(set(links)) == 200 and set(links) == set(placeholders)
    stored = {run["id"]: run for run in children_of(api_url, list(placeholders))}
    assert set(stored) == {str(child.id) for child in children}
    for child in children:  # the server's record links each child to its own placeholder
        placeholder = placeholders[stored[str(child.id)]["parent_task_run_id"]]
        assert placeholder["task_inputs"] == {"x": []}
        assert str(child.parent_task_run_id) == placeholder["id"]


def test_parent_set_in_one_thread_is_invisible_in_another(client: Client, api_url: str) -> None:
    results: Dict[str, Any] = {}
    parent_ready, other_done = threading.Event(), threading.Event()

    def without_parent() -> None:
        parent_ready.wait(30)
        results["other"] = client.run_deployment(
            "add/add-dep", scheduled_time=FAR_FUTURE, timeout=0
        )
        other_done.set()

    thread = threading.Thread(target=without_parent)
    thread.start()
    with client.flow_run("deploytrigger-isolation") as parent:
        parent_ready.set()
        other_done.wait(60)
        results["mine"] = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
    thread.join(60)

    assert get(api_url, f"/flow_runs/{results['other'].id}")["parent_task_run_id"] is None
    mine = get(api_url, f"/flow_runs/{results['mine'].id}")
    placeholder = get(api_url, f"/task_runs/{mine['parent_task_run_id']}")
    assert placeholder["flow_run_id"] == str(parent.id)
    assert [run["id"] for run in task_runs_of(api_url, parent.id)] == [placeholder["id"]]


def test_nested_parent_blocks_link_to_the_innermost(client: Client, api_url: str) -> None:
    with client.flow_run("deploytrigger-nested", name="outer") as outer:
        first = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
        with client.flow_run("deploytrigger-nested", name="inner") as inner:
            nested = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
            with parent_run(outer.id):
                explicit = client.run_deployment(
                    "add/add-dep", scheduled_time=FAR_FUTURE, timeout=0
                )
        last = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)

    def parent_of(run: deploytrigger.FlowRun) -> str:
        record = get(api_url, f"/flow_runs/{run.id}")
        return str(get(api_url, f"/task_runs/{record['parent_task_run_id']}")["flow_run_id"])

    assert parent_of(first) == str(outer.id)
    assert parent_of(nested) == str(inner.id)
    assert parent_of(explicit) == str(outer.id)
    assert parent_of(last) == str(outer.id)
    outer_keys = sorted(run["dynamic_key"] for run in task_runs_of(api_url, outer.id))
    assert outer_keys == ["0", "1", "2"]  # one counter per parent, across nested blocks
    for run in (outer, inner):
        assert get(api_url, f"/flow_runs/{run.id}")["state_type"] == "COMPLETED"


def test_failing_block_marks_the_tracked_run_failed(client: Client, api_url: str) -> None:
    tracked = client.flow_run("deploytrigger-failing", tags=["cron"])
    with pytest.raises(RuntimeError, match="disk full"), tracked as run:
        raise RuntimeError("disk full")
    record = get(api_url, f"/flow_runs/{run.id}")
    assert record["state_type"] == StateType.FAILED
    assert "disk full" in record["state"]["message"]
    assert record["tags"] == ["cron"]
    assert record["end_time"] is not None
    assert deploytrigger.current_parent() is None


def test_tracked_run_shows_its_children_as_subflows(client: Client, api_url: str) -> None:
    with client.flow_run("deploytrigger-subflows") as parent:
        child = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
    subflows = post(
        api_url,
        "/flow_runs/filter",
        {"flow_runs": {"parent_flow_run_id": {"any_": [str(parent.id)]}}, "limit": 10},
    )
    assert [run["id"] for run in subflows] == [str(child.id)]


# -- a parent known only by id -------------------------------------------------------------------


def test_process_knowing_only_the_parent_id_does_not_reuse_its_keys(
    client: Client, api_url: str, tmp_path: Path
) -> None:
    with client.flow_run("deploytrigger-env-parent") as parent:
        for _ in range(3):
            client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
        child_ids = run_script(
            f"""
            import datetime as dt, json
            import deploytrigger
            later = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
            runs = [
                deploytrigger.run_deployment("add/add-dep", scheduled_time=later, timeout=0)
                for _ in range(2)
            ]
            by_id = deploytrigger.run_deployment(
                "{client.read_deployment_by_name("add/add-dep").id}",
                scheduled_time=later,
                timeout=0,
            )
            print(json.dumps([str(run.id) for run in runs + [by_id]]))
            """,
            prefect_env(api_url, tmp_path / "home", PREFECT__FLOW_RUN_ID=str(parent.id)),
            tmp_path,
        )
    placeholders = task_runs_of(api_url, parent.id)
    assert sorted(int(run["dynamic_key"]) for run in placeholders) == [0, 1, 2, 3, 4, 5]
    assert {run["task_key"] for run in placeholders} == {ADD_KEY}
    linked = {
        run["id"]: run["parent_task_run_id"]
        for run in children_of(api_url, [p["id"] for p in placeholders])
    }
    assert len(set(linked.values())) == 6
    assert set(child_ids) <= set(linked)


# -- against Prefect itself ----------------------------------------------------------------------

COMPARISON_FLOW = """
import datetime as dt, json
from prefect import flow, task
from prefect.deployments import run_deployment as prefect_run_deployment
import deploytrigger

later = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)

def both(parameters):
    theirs = prefect_run_deployment(
        "add/add-dep", parameters=parameters, scheduled_time=later, timeout=0
    )
    ours = deploytrigger.run_deployment(
        "add/add-dep", parameters=parameters, scheduled_time=later, timeout=0
    )
    return [str(theirs.parent_task_run_id), str(ours.parent_task_run_id)]

@task
def in_task():
    return both({"x": 3})

@flow(name="deploytrigger-comparison")
def parent():
    from prefect.context import FlowRunContext
    pairs = [both({"x": 1, "y": 2}), both({}), in_task()]
    return {"flow_run_id": str(FlowRunContext.get().flow_run.id), "pairs": pairs}

print(json.dumps(parent()))
"""

# Fields that differ between any two task runs, or follow from the dynamic key.
PER_RUN_FIELDS = {
    "id",
    "name",
    "created",
    "updated",
    "dynamic_key",
    "state_id",
    "expected_start_time",
    "estimated_start_time_delta",
    "estimated_run_time",
}


def comparable(record: Dict[str, Any]) -> Dict[str, Any]:
    result = {key: value for key, value in record.items() if key not in PER_RUN_FIELDS}
    state = dict(result.pop("state"))
    details = dict(state.pop("state_details"))
    for key in ("id", "timestamp"):
        state.pop(key)
    details.pop("task_run_id")  # its own id
    details.pop("transition_id", None)
    details["child_flow_run_id"] = details.get("child_flow_run_id") is not None
    result["state"] = {**state, "state_details": details}
    return result


def test_placeholders_match_prefects_own_run_deployment_field_for_field(
    api_url: str, tmp_path: Path
) -> None:
    result = run_script(COMPARISON_FLOW, prefect_env(api_url, tmp_path / "home"), tmp_path)
    flow_run_id = result["flow_run_id"]
    keys: List[str] = []
    for theirs_id, ours_id in result["pairs"]:
        theirs = get(api_url, f"/task_runs/{theirs_id}")
        ours = get(api_url, f"/task_runs/{ours_id}")
        assert theirs["flow_run_id"] == ours["flow_run_id"] == flow_run_id
        assert comparable(ours) == comparable(theirs)
        assert ours["name"] == "add/add-dep"
        keys += [theirs["dynamic_key"], ours["dynamic_key"]]
    assert keys == [str(i) for i in range(6)]  # Prefect's counters and ours are one sequence
    in_task_placeholder = get(api_url, f"/task_runs/{result['pairs'][2][1]}")
    assert in_task_placeholder["task_inputs"]["__parents__"][0]["input_type"] == "task_run"


# -- a served Prefect parent flow ----------------------------------------------------------------


def wait_for_deployment(api_url: str, name: str, timeout: float = 120) -> None:
    flow, deployment = name.split("/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = raw.get(f"{api_url}/deployments/name/{flow}/{deployment}", timeout=10)
        if response.status_code == 200:
            return
        time.sleep(1)
    pytest.fail(f"the served flows process never registered {name}")


def test_served_parent_flow_links_children_from_a_thread_pool(client: Client, api_url: str) -> None:
    wait_for_deployment(api_url, "parent/parent-dep")
    parent = client.run_deployment(
        "parent/parent-dep",
        parameters={"children": 6, "with_prefect": True},
        timeout=240,
        poll_interval=1,
    )
    assert parent.state is not None and parent.state.type == StateType.COMPLETED, parent.state
    placeholders = task_runs_of(api_url, parent.id)
    assert {run["task_key"] for run in placeholders} == {ADD_KEY}
    # 6 from deploytrigger's pool, 2 from Prefect's own run_deployment: one key sequence.
    assert sorted(int(run["dynamic_key"]) for run in placeholders) == list(range(8))
    children = children_of(api_url, [run["id"] for run in placeholders])
    assert len(children) == 8
    assert len({child["parent_task_run_id"] for child in children}) == 8
    ours = [run for run in placeholders if run["name"] == "add/add-dep"]
    assert len(ours) == 6


def test_run_outside_any_parent_stays_top_level(client: Client, api_url: str) -> None:
    run = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
    assert get(api_url, f"/flow_runs/{run.id}")["parent_task_run_id"] is None


# -- several processes under one parent (issue 13) and reused idempotency keys ---------------

FANOUT_SCRIPT = """
import datetime as dt, json, sys
import deploytrigger

later = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
with deploytrigger.Client(request_timeout=30, max_retries=10) as client:
    runs = [
        client.run_deployment(
            "add/add-dep", parameters={"x": i}, scheduled_time=later, timeout=0
        )
        for i in range(int(sys.argv[1]))
    ]
print(json.dumps([[str(run.id), str(run.parent_task_run_id)] for run in runs]))
"""


def test_4_processes_under_one_parent_get_100_distinct_placeholders(
    client: Client, api_url: str, tmp_path: Path
) -> None:
    """Each process knows only the parent's id, so all four start counting at the same key."""
    script = tmp_path / "fanout.py"
    script.write_text(textwrap.dedent(FANOUT_SCRIPT))
    with client.flow_run("deploytrigger-4-processes") as parent:
        env = prefect_env(api_url, tmp_path / "home", PREFECT__FLOW_RUN_ID=str(parent.id))
        children = [
            Service(
                f"fanout-{i}",
                [sys.executable, str(script), "25"],
                env,
                tmp_path / f"fanout-{i}.log",
                cwd=tmp_path,
            )
            for i in range(4)
        ]
        codes = []
        try:
            deadline = time.monotonic() + SUBPROCESS_TIMEOUT
            for child in children:
                child.start()
            for child in children:
                assert child.process is not None
                codes.append(child.process.wait(timeout=max(1.0, deadline - time.monotonic())))
        finally:
            for child in children:
                child.stop()
    outputs = []
    for child, code in zip(children, codes):
        assert code == 0, child.log_tail()
        outputs += json.loads(child.log_path.read_text().strip().splitlines()[-1])
    placeholders = task_runs_of(api_url, parent.id)
    assert len(placeholders) == 100
    assert sorted(int(run["dynamic_key"]) for run in placeholders) == list(range(100))
    links = {child_id: placeholder_id for child_id, placeholder_id in outputs}
    assert len(links) == 100 and set(links.values()) == {run["id"] for run in placeholders}
    stored = children_of(api_url, [run["id"] for run in placeholders])
    assert {run["id"]: run["parent_task_run_id"] for run in stored} == links


def test_reused_idempotency_key_under_a_parent_finishes_the_idle_placeholder(
    client: Client, api_url: str
) -> None:
    key = f"idempotent-{uuid.uuid4()}"
    with client.flow_run("deploytrigger-idempotent") as parent:
        first = client.run_deployment(
            "add/add-dep", scheduled_time=FAR_FUTURE, idempotency_key=key, timeout=0
        )
        again = client.run_deployment(
            "add/add-dep", scheduled_time=FAR_FUTURE, idempotency_key=key, timeout=0
        )
    assert again.id == first.id and again.parent_task_run_id == first.parent_task_run_id
    placeholders = {run["dynamic_key"]: run for run in task_runs_of(api_url, parent.id)}
    assert placeholders["0"]["id"] == str(first.parent_task_run_id)
    idle = placeholders["1"]
    assert idle["name"] == first.name
    assert (idle["state_type"], idle["state_name"]) == ("COMPLETED", "Duplicate")
    assert idle["state"]["state_details"]["child_flow_run_id"] == str(first.id)
    assert client.cancel_flow_run(first.id)
