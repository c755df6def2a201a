"""The fake's events websocket tells a run's story as a real Prefect 3.8.8 server does.

One run of the same deployment on the session's real server (``prefect`` in
conftest.py, serving ``examples/flows.py``) and on a :class:`FakePrefect` set
up to mirror it, each watched on ``/api/events/out``: the state-change events
of the run must agree in names, resource ids, state labels, payload,
``related`` roles and order. The runner's ``prefect.flow-run.heartbeat``
events (no state labels) are the real server's alone and are left out.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests
import websocket

from deploytrigger import Client
from deploytrigger.testing import FakePrefect

pytestmark = pytest.mark.integration

FAIL_MESSAGE = "Flow run encountered an exception: RuntimeError: boom"
SCENARIOS = {
    "add/add-dep": ("COMPLETED", None, {"x": 2, "y": 3}),
    "fail/fail-dep": ("FAILED", FAIL_MESSAGE, {}),
}
WAIT = 120.0


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).isoformat()


def _listen(api_url: str, back: float = 5.0) -> websocket.WebSocket:
    """A socket on the flow-run events from ``back`` seconds ago on."""
    ws = websocket.create_connection(
        api_url.replace("http://", "ws://") + "/events/out", subprotocols=["prefect"], timeout=5
    )
    ws.send(json.dumps({"type": "auth", "token": None}))
    assert json.loads(ws.recv()) == {"type": "auth_success"}
    now = time.time()
    event_filter = {
        "occurred": {"since": _iso(now - back), "until": _iso(now + 365 * 86400)},
        "event": {"prefix": ["prefect.flow-run."]},
    }
    ws.send(json.dumps({"type": "filter", "filter": event_filter}))
    return ws


def _state_events(ws: websocket.WebSocket, run_id: str) -> List[Dict[str, Any]]:
    """The run's state-change events, up to its final one, in the order they came."""
    found: List[Dict[str, Any]] = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            message = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            continue
        event = message["event"]
        resource = event["resource"]
        if resource["prefect.resource.id"] != f"prefect.flow-run.{run_id}":
            continue
        if "prefect.state-type" not in resource:
            continue  # a heartbeat
        found.append(event)
        if resource["prefect.state-type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
            return found
    raise AssertionError(f"no final event for {run_id} within {WAIT}s: {found}")


def _story(events: List[Dict[str, Any]]) -> List[Tuple[Any, ...]]:
    """What must agree, event by event, with the run-specific ids taken out."""
    story = []
    for event in sorted(events, key=lambda e: e["occurred"]):
        resource = event["resource"]
        story.append(
            (
                event["event"],
                sorted(resource),
                resource["prefect.state-type"],
                resource["prefect.state-name"],
                resource["prefect.state-message"],
                resource["prefect.run-count"],
                resource["prefect.state-timestamp"].endswith("+00:00"),
                event["occurred"].endswith("Z"),
                event["payload"]["validated_state"],
                event["payload"]["intended"],
                sorted(event["payload"]),
                [
                    (r["prefect.resource.role"], r.get("prefect.resource.name"))
                    if r["prefect.resource.role"] != "tag"
                    else ("tag", r["prefect.resource.id"])
                    for r in event["related"]
                ],
                sorted(event),
            )
        )
    return story


def _checked(events: List[Dict[str, Any]], run_id: str) -> None:
    """What holds on either server: ids, the follows chain, the labels against the record."""
    ordered = sorted(events, key=lambda e: e["occurred"])
    assert {e["resource"]["prefect.resource.id"] for e in ordered} == {f"prefect.flow-run.{run_id}"}
    assert len({e["id"] for e in ordered}) == len(ordered)
    for before, after in zip(ordered, ordered[1:]):
        assert after["follows"] == before["id"]
    for event in ordered:
        assert (
            event["resource"]["prefect.state-timestamp"].replace("+00:00", "Z")
            == (event["occurred"])
        )


@pytest.fixture()
def fake() -> Iterator[FakePrefect]:
    with FakePrefect(set_environment=False) as server:
        yield server


def _trigger(api_url: str, name: str, parameters: Dict[str, Any]) -> str:
    with Client(api_url) as client:
        run = client.run_deployment(name, parameters=parameters, tags=["contract"], timeout=0)
    return str(run.id)


def _real_tags(api_url: str, name: str) -> List[str]:
    response = requests.get(f"{api_url}/deployments/name/{name}", timeout=30)
    response.raise_for_status()
    tags: List[str] = response.json()["tags"]
    return tags


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_runs_state_events_agree_between_the_real_server_and_the_fake(
    api_url: str, fake: FakePrefect, name: str
) -> None:
    state, message, parameters = SCENARIOS[name]
    fake.add_deployment(name, tags=_real_tags(api_url, name))
    fake.set_outcome(name, state, after=1.0, message=message)

    stories: Dict[str, List[Tuple[Any, ...]]] = {}
    for kind, url in (("real", api_url), ("fake", fake.api_url)):
        ws = _listen(url)
        try:
            run_id = _trigger(url, name, parameters)
            events = _state_events(ws, run_id)
        finally:
            ws.close()
        _checked(events, run_id)
        stories[kind] = _story(events)
    assert [step[0] for step in stories["real"]] == [
        "prefect.flow-run.Scheduled",
        "prefect.flow-run.Pending",
        "prefect.flow-run.Submitting",
        "prefect.flow-run.Running",
        f"prefect.flow-run.{state.title()}",
    ]
    assert stories["fake"] == stories["real"]


def test_the_fake_backfills_a_finished_run_as_the_real_server_does(
    api_url: str, fake: FakePrefect
) -> None:
    """A socket opened after the run ended gets its events from the backfill, oldest first."""
    name = "add/add-dep"
    fake.add_deployment(name, tags=_real_tags(api_url, name))
    seen: Dict[str, Optional[List[str]]] = {}
    for kind, url in (("real", api_url), ("fake", fake.api_url)):
        ws = _listen(url)
        run_id = _trigger(url, name, {"x": 1, "y": 1})
        _state_events(ws, run_id)
        ws.close()
        time.sleep(6)  # the real server persists events every 5 s: backfill reads those
        late = _listen(url, back=300)
        try:
            seen[kind] = [e["event"] for e in _state_events(late, run_id)]
        finally:
            late.close()
    assert seen["fake"] == seen["real"]


PREFECT_WAITER = """
import asyncio, sys, time, uuid
from prefect.flow_runs import wait_for_flow_run

started = time.monotonic()
run = asyncio.run(wait_for_flow_run(uuid.UUID(sys.argv[1]), timeout=60))
print("WAITED", run.state.type.value, round(time.monotonic() - started, 2))
"""


def test_prefects_own_wait_for_flow_run_which_only_listens_returns_on_the_fake(
    tmp_path: Path,
) -> None:
    """Prefect 3.8.8's ``wait_for_flow_run`` never polls: only the events can end its wait."""
    with FakePrefect(set_environment=False) as server:
        server.add_deployment("etl/nightly")
        server.set_outcome("etl/nightly", "COMPLETED", after=3.0)
        with Client(server.api_url) as client:
            run = client.run_deployment("etl/nightly", timeout=0)
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        env.update(
            PREFECT_API_URL=server.api_url,
            PREFECT_HOME=str(tmp_path),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        script = tmp_path / "wait.py"
        script.write_text(PREFECT_WAITER)
        result = subprocess.run(
            [sys.executable, str(script), str(run.id)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert "WAITED COMPLETED" in result.stdout, result.stdout + result.stderr
        (sent,) = server.event_filters  # Prefect's whole EventFilter: the fake takes it
        assert sent["resource"]["id"] == [f"prefect.flow-run.{run.id}"]
