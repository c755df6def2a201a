"""Handles, batch waiting and run_many against a real Prefect server."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any, Dict, Iterator, List

import pytest
from helpers.server_http import raw

from deploytrigger import FIRST_COMPLETED, Client, FlowRunHandle, StateType
from harness.proxy import Proxy

pytestmark = pytest.mark.integration

FAR_FUTURE = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url, request_timeout=30) as shared:
        yield shared


def server_record(api_url: str, flow_run_id: Any) -> Dict[str, Any]:
    response = raw.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=30)
    response.raise_for_status()
    record: Dict[str, Any] = response.json()
    return record


def test_thirty_submitted_runs_are_waited_for_together(client: Client, api_url: str) -> None:
    handles = [client.submit("add/add-dep", parameters={"x": i}) for i in range(30)]
    assert all(handle.state is not None for handle in handles)
    done, not_done = client.wait_all(handles, timeout=300, poll_interval=1)
    assert not_done == [] and done == handles
    for index, handle in enumerate(handles):
        assert handle.flow_run.state is not None
        assert handle.flow_run.state.type is StateType.COMPLETED
        assert handle.flow_run.parameters == {"x": index, "y": 10}
    assert server_record(api_url, handles[-1].id)["state_type"] == "COMPLETED"


def test_as_completed_yields_each_run_once_in_the_order_they_ended(client: Client) -> None:
    handles = [
        client.submit("sleepy/sleepy-dep", parameters={"seconds": seconds}) for seconds in (6, 0)
    ]
    handles.append(client.submit("fail/fail-dep"))
    runs = list(client.as_completed(handles, timeout=240, poll_interval=0.5))
    assert sorted(run.id for run in runs) == sorted(handle.id for handle in handles)
    assert all(run.is_final() for run in runs)
    assert runs[-1].id == handles[0].id  # the 6-second sleeper ends last
    failed = next(run for run in runs if run.id == handles[2].id)
    assert failed.state is not None and failed.state.type is StateType.FAILED


def test_first_completed_returns_while_a_long_run_keeps_going(client: Client) -> None:
    long = client.submit("sleepy/sleepy-dep", parameters={"seconds": 120})
    short = client.submit("add/add-dep", parameters={"x": 1})
    done, not_done = client.wait_all(
        [long, short], timeout=180, poll_interval=0.5, return_when=FIRST_COMPLETED
    )
    assert done == [short] and not_done == [long]
    assert long.cancel() is True


def test_cancelling_a_running_sleepy_run_ends_cancelled(client: Client, api_url: str) -> None:
    handle = client.submit("sleepy/sleepy-dep", parameters={"seconds": 120})
    deadline = time.monotonic() + 120
    while not handle.running():
        assert time.monotonic() < deadline, f"never started: {handle}"
        assert not handle.done(), handle
        time.sleep(0.5)
        handle.refresh()
    fired = threading.Event()
    handle.add_done_callback(lambda _: fired.set())
    assert handle.cancel("enough sleeping") is True
    run = handle.wait(timeout=90, poll_interval=0.5)
    assert run.state is not None and run.state.type is StateType.CANCELLED
    assert handle.cancelled() and fired.is_set()
    assert server_record(api_url, handle.id)["state_type"] == "CANCELLED"
    assert handle.cancel() is False  # already final


def test_cancelling_a_scheduled_run_cancels_it_at_once(client: Client) -> None:
    handle = client.submit("add/add-dep", scheduled_time=FAR_FUTURE)
    assert handle.cancel() is True
    assert handle.done() and handle.cancelled()


def test_run_many_of_fifty_calls_keeps_their_order(client: Client, api_url: str) -> None:
    calls = [
        {"name": "add/add-dep", "parameters": {"x": i}, "scheduled_time": FAR_FUTURE}
        for i in range(50)
    ]
    runs = client.run_many(calls, max_workers=16, timeout=0)
    assert [run.parameters["x"] for run in runs] == list(range(50))
    assert len({run.id for run in runs}) == 50
    assert server_record(api_url, runs[17].id)["parameters"] == {"x": 17, "y": 10}


@pytest.fixture(scope="module")
def five_hundred_waiting(client: Client) -> List[FlowRunHandle]:
    """500 runs scheduled far in the future: they wait and never run.

    Created one after the other (one request each): concurrent writers only make
    the SQLite-backed test server answer 503 "database is busy".
    """
    deployment = client.read_deployment_by_name("echo/echo-dep")
    return [
        client.handle(
            client.create_flow_run_from_deployment(deployment.id, scheduled_time=FAR_FUTURE),
        )
        for _ in range(500)
    ]


def test_waiting_on_500_runs_costs_three_requests_per_poll(
    api_url: str, five_hundred_waiting: List[FlowRunHandle]
) -> None:
    # The polling path's cost (the safety net) is counted: no events socket.
    counting = Proxy(api_url)
    with counting as proxy, Client(proxy.api_url, request_timeout=30, events="off") as counted:
        handles = [counted.handle(handle.flow_run) for handle in five_hundred_waiting]
        done, not_done = counted.wait_all(handles, timeout=1.5, poll_interval=0.5)
    assert done == [] and len(not_done) == 500
    sent = proxy.received
    assert all(r.method == "POST" and r.path == "/api/flow_runs/filter" for r in sent)
    sizes = [len(json.loads(r.body)["flow_runs"]["id"]["any_"]) for r in sent]
    polls = len(sizes) // 3
    assert polls >= 2 and sizes == [200, 200, 100] * polls
