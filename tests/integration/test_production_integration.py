"""deploytrigger on a production-shaped stack: PostgreSQL, a work pool, real workers.

The stack (:class:`~harness.prod_stack.ProdStack`, with the
flows of ``examples/flows.py``) starts once for this module and is stopped at
its end, also when a test fails. Requests are counted by a reverse proxy in
front of the server (:class:`~harness.proxy.Proxy`): what the
server receives, whichever client code sends it.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any, Iterator

import pytest
import requests
from conftest import FLOWS_SCRIPT

from deploytrigger import Client, StateType
from harness.prod_stack import DEPLOYMENTS, ProdStack
from harness.proxy import Proxy

pytestmark = pytest.mark.integration

ADD = "add/add-dep"
LATER = dt.timedelta(hours=1)  # runs nobody should execute during the test


@pytest.fixture(scope="module")
def stack() -> Iterator[ProdStack]:
    with ProdStack(FLOWS_SCRIPT, workers=2, startup_timeout=300) as started:
        yield started


@pytest.fixture()
def proxy(stack: ProdStack) -> Iterator[Proxy]:
    with Proxy(stack.api_url) as counting:
        yield counting


def http(stack: ProdStack, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{stack.api_url}{path}", json=body, timeout=30)
    assert response.status_code < 300, (method, path, response.status_code, response.text)
    return response.json() if response.content else None


def wait_for_log(stack: ProdStack, flow_run_id: uuid.UUID, text: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    body = {"logs": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 200}
    while time.monotonic() < deadline:
        if any(text in log["message"] for log in http(stack, "POST", "/logs/filter", body)):
            return True
        time.sleep(1)
    return False


def later() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + LATER


def test_runs_execute_end_to_end_through_the_pool_workers(stack: ProdStack) -> None:
    with Client(stack.api_url) as client:
        runs = client.run_many(
            [(ADD, {"parameters": {"x": x}}) for x in range(4)], timeout=180, poll_interval=1
        )
    assert [run.state.type if run.state else None for run in runs] == [StateType.COMPLETED] * 4
    assert [run.parameters for run in runs] == [{"x": x, "y": 10} for x in range(4)]
    records = [http(stack, "GET", f"/flow_runs/{run.id}") for run in runs]
    assert {record["work_pool_name"] for record in records} == {stack.pool}
    assert all(record["infrastructure_pid"] for record in records)  # a worker started it
    # the flow printed its sum in the worker's subprocess; logs arrive in batches
    assert wait_for_log(stack, runs[3].id, "sum is 13", seconds=30)


def test_steady_state_triggering_costs_one_request_per_trigger(
    stack: ProdStack, proxy: Proxy
) -> None:
    with Client(proxy.api_url) as client:
        client.run_deployment(ADD, timeout=0, scheduled_time=later())
        assert proxy.by_endpoint() == {
            "GET /api/deployments/name/add/add-dep": 1,
            "POST /api/deployments/{id}/create_flow_run": 1,
        }
        proxy.clear_received()
        for x in range(20):
            client.run_deployment(ADD, parameters={"x": x}, timeout=0, scheduled_time=later())
        assert proxy.by_endpoint() == {"POST /api/deployments/{id}/create_flow_run": 20}


def test_a_deployment_deleted_and_recreated_under_its_name_still_triggers(
    stack: ProdStack, proxy: Proxy
) -> None:
    flow = http(stack, "POST", "/flows/", {"name": "add"})
    body = stack.deployment_body(flow["id"], "recreated-dep", DEPLOYMENTS[ADD])
    first = http(stack, "POST", "/deployments/", body)
    with Client(proxy.api_url) as client:
        before = client.run_deployment("add/recreated-dep", timeout=0, scheduled_time=later())
        assert before.deployment_id == uuid.UUID(first["id"])
        http(stack, "DELETE", f"/deployments/{first['id']}")
        second = http(stack, "POST", "/deployments/", body)
        assert second["id"] != first["id"]
        proxy.clear_received()
        after = client.run_deployment(
            "add/recreated-dep", parameters={"x": 5}, timeout=120, poll_interval=1
        )
        creates = proxy.by_endpoint()
    assert after.deployment_id == uuid.UUID(second["id"])
    assert after.state is not None and after.state.type is StateType.COMPLETED
    assert after.parameters == {"x": 5, "y": 10}
    # the 404 on the stale id, one re-resolve, the create that worked, then the polls
    assert creates["POST /api/deployments/{id}/create_flow_run"] == 2
    assert creates["GET /api/deployments/name/add/recreated-dep"] == 1


def test_run_many_creates_two_hundred_runs_exactly_once_and_waits_in_one_request_per_poll(
    stack: ProdStack, proxy: Proxy
) -> None:
    tag = f"batch-{uuid.uuid4().hex[:8]}"
    when = later()
    calls = [
        (ADD, {"parameters": {"x": x}, "tags": [tag], "scheduled_time": when}) for x in range(200)
    ]
    # The polling path's cost is counted: no events socket (it would be one more GET).
    with Client(proxy.api_url, pool_size=16, events="off") as client:
        runs = client.run_many(calls, max_workers=16, timeout=0)
        created = proxy.by_endpoint()
        proxy.clear_received()
        done, not_done = client.wait_all([run.id for run in runs], timeout=2, poll_interval=1)
        polls = proxy.by_endpoint()
    assert created == {
        "GET /api/deployments/name/add/add-dep": created["GET /api/deployments/name/add/add-dep"],
        "POST /api/deployments/{id}/create_flow_run": 200,
    }
    assert created["GET /api/deployments/name/add/add-dep"] <= 16  # racing first calls only
    assert [run.parameters["x"] for run in runs] == list(range(200))
    assert len({run.id for run in runs}) == 200
    on_server = http(stack, "POST", "/flow_runs/count", {"flow_runs": {"tags": {"all_": [tag]}}})
    assert on_server == 200
    assert done == [] and len(not_done) == 200  # scheduled an hour ahead: none final
    assert set(polls) == {"POST /api/flow_runs/filter"}
    assert polls["POST /api/flow_runs/filter"] <= 4  # 1 per poll at 0, 1, 2 s (+1 slack)


def test_the_stack_reports_both_workers_online(stack: ProdStack) -> None:
    assert set(stack.online_workers()) >= {"prod-worker-0", "prod-worker-1"}
