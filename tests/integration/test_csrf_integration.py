"""A real Prefect server with CSRF protection on: everything works, and CSRF costs nothing later.

A second server (module-scoped, stopped by pid) runs with
``PREFECT_SERVER_CSRF_PROTECTION_ENABLED=true`` and serves ``examples/flows.py``.
The counting proxy shows the cost: after the first token fetch, a trigger is one
request, with CSRF protection on as with it off (where no token is ever asked for).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections import Counter
from typing import Any, Dict, Iterator, List

import pytest
from conftest import FLOWS_SCRIPT
from helpers.events_probe import SAFETY_NET, TIMEOUT, listener_of, record_connects
from helpers.server_http import raw

from deploytrigger import Client, CSRFError, StateType
from deploytrigger._waits import events
from harness.local_server import LocalPrefect
from harness.proxy import Proxy, Rule

pytestmark = pytest.mark.integration

CSRF_ON = {"PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true"}
FAR_FUTURE = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
TRIGGERS = 10


@pytest.fixture(scope="module")
def csrf_prefect() -> Iterator[LocalPrefect]:
    """A server that refuses mutating requests without a CSRF token; it serves the example flows."""
    with LocalPrefect(
        FLOWS_SCRIPT, deployments=["add/add-dep", "sleepy/sleepy-dep"], env=CSRF_ON
    ) as server:
        yield server


@pytest.fixture
def client(csrf_prefect: LocalPrefect) -> Iterator[Client]:
    with Client(csrf_prefect.api_url) as fresh:
        yield fresh


def test_the_server_really_refuses_a_mutation_without_a_token(csrf_prefect: LocalPrefect) -> None:
    response = raw.post(f"{csrf_prefect.api_url}/flows/", json={"name": "no-token"}, timeout=30)
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_trigger_and_wait_for_completion(client: Client) -> None:
    run = client.run_deployment("add/add-dep", parameters={"x": 5}, poll_interval=0.5, timeout=120)

    assert run.state is not None and run.state.type is StateType.COMPLETED
    assert run.parameters == {"x": 5, "y": 10}


def test_the_events_stream_wakes_a_wait_with_csrf_protection_on(
    csrf_prefect: LocalPrefect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream is exempt from CSRF: the listener sends no token and still wakes the wait."""
    connects = record_connects(monkeypatch)
    with Client(csrf_prefect.api_url, events="on") as client:
        run = client.run_deployment(
            "sleepy/sleepy-dep",
            parameters={"seconds": 2},
            poll_interval=SAFETY_NET,
            timeout=TIMEOUT,
        )
        listener = listener_of(client)

    assert run.state is not None and run.state.type is StateType.COMPLETED
    assert connects == [events.events_url(csrf_prefect.api_url)] and listener.connections == 1


def test_tracked_parent_and_linked_child(client: Client, csrf_prefect: LocalPrefect) -> None:
    with client.flow_run("deploytrigger-csrf", name="csrf-parent") as parent:
        child = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)

    api = csrf_prefect.api_url
    assert raw.get(f"{api}/flow_runs/{parent.id}", timeout=30).json()["state_type"] == "COMPLETED"
    placeholder = raw.get(f"{api}/task_runs/{child.parent_task_run_id}", timeout=30).json()
    assert placeholder["flow_run_id"] == str(parent.id)


def test_cancel_a_running_run(client: Client) -> None:
    run = client.run_deployment(
        "sleepy/sleepy-dep", parameters={"seconds": 60}, timeout=0, poll_interval=0.5
    )
    deadline = dt.datetime.now() + dt.timedelta(seconds=60)
    while dt.datetime.now() < deadline:  # wait until the runner has started it
        run = client.read_flow_run(run.id)
        if run.state is not None and run.state.type is StateType.RUNNING:
            break
        time.sleep(0.5)
    assert client.cancel_flow_run(run.id) is True

    final = client.wait_for_flow_run(run.id, timeout=90, poll_interval=0.5)
    assert final.state is not None and final.state.type is StateType.CANCELLED


def test_run_many(client: Client) -> None:
    calls: List[Any] = [
        {"name": "add/add-dep", "parameters": {"x": i}, "scheduled_time": FAR_FUTURE}
        for i in range(20)
    ]
    runs = client.run_many(calls, max_workers=8, timeout=0)

    assert len({run.id for run in runs}) == 20
    assert sorted(run.parameters["x"] for run in runs) == list(range(20))


BUSY = (429, 502, 503)  # a busy SQLite server's answers, retried with or without CSRF


def endpoint(path: str) -> str:
    return re.sub(r"[0-9a-f-]{36}", "{id}", path.split("?")[0])


def requests_per_trigger(api_url: str) -> Dict[str, Any]:
    """Trigger through a counting proxy: the first trigger's requests, then the steady state.

    Requests the server answered "busy" (and that were retried) are left out:
    they measure the server's load, not what a trigger costs.
    """
    with Proxy(api_url) as proxy, Client(proxy.api_url) as client:
        client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
        first = [r for r in proxy.received if r.status not in BUSY]
        proxy.clear_received()
        for _ in range(TRIGGERS):
            client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
        later = [r for r in proxy.received if r.status not in BUSY]
    return {
        "first": Counter(f"{r.method} {endpoint(r.path)} {r.status}" for r in first),
        "steady": len(later) / TRIGGERS,
        "later": Counter(f"{r.method} {r.status}" for r in later),
    }


def test_steady_state_is_one_request_per_trigger_with_csrf_on_and_off(
    csrf_prefect: LocalPrefect, api_url: str
) -> None:
    on = requests_per_trigger(csrf_prefect.api_url)
    off = requests_per_trigger(api_url)

    assert on["steady"] == 1.0 and off["steady"] == 1.0
    assert on["later"] == off["later"] == {"POST 201": TRIGGERS}  # creates only, none refused
    read = "GET /api/deployments/name/add/add-dep 200"
    assert set(on["first"]) == {
        read,
        "POST /api/deployments/{id}/create_flow_run 403",  # refused for want of a token ...
        "GET /api/csrf-token 200",  # ... which is fetched once ...
        "POST /api/deployments/{id}/create_flow_run 201",  # ... and the create sent again
    }
    assert set(off["first"]) == {read, "POST /api/deployments/{id}/create_flow_run 201"}
    assert sum(on["first"].values()) == 4 and sum(off["first"].values()) == 2


def test_a_proxy_that_drops_the_token_headers_gives_a_plain_csrf_error(
    csrf_prefect: LocalPrefect,
) -> None:
    with Proxy(csrf_prefect.api_url) as proxy, Client(proxy.api_url) as client:
        # The proxy answers every create as the server would a token it does not know.
        proxy.add_rule(
            Rule(
                action="status",
                status=403,
                method="POST",
                path=r"/flows/$",
                body=b'{"detail":"Invalid CSRF token or client identifier."}',
            )
        )
        with pytest.raises(CSRFError) as info:
            client._transport.request("POST", "/flows/", body={"name": f"f-{uuid.uuid4()}"})

    assert "fresh CSRF token" in str(info.value)
    assert proxy.by_endpoint().get("GET /api/csrf-token") == 1
