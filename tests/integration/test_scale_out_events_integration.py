"""Scale-out events: two API servers behind nginx, sharing events through Prefect's Redis messaging.

The stack (:class:`~harness.prod_stack.ProdStack` with ``api_servers=2``) runs
two ``prefect server start --no-services`` processes on one PostgreSQL, the
services once, nginx in front (:mod:`harness.nginx`) and, in the ``redis``
variant, a Redis server that every Prefect process uses as its message broker
(``prefect-redis``). The ``no-redis`` variant is the same stack without it:
each API server then keeps its events to itself.

What the tests prove, on Prefect's own events websocket (``/api/events/out``,
opened with ``websocket-client``, no deploytrigger involved):

* a socket on API server 0 hears of a run cancelled through API server 1 with
  Redis, and hears nothing of it without (the control that shows the first
  proof needs the broker);
* a socket through nginx stays open past the server's 20 s ping (nginx's
  ``proxy_read_timeout`` is longer, and the client answers the pings) and
  then still delivers an event.

And on deploytrigger's public API: ``Client(server 0, events="on")
.run_deployment(...)`` returns the run cancelled through server 1 with Redis
while polling at an interval longer than its timeout (so only the event can
have woken it: no speed is asserted), and returns the same CANCELLED run
without Redis, polling at 30 s (where only a poll can see it).

No worker runs here: the runs are scheduled in 2099 and stay SCHEDULED until
the test cancels them (``set_state`` CANCELLED, forced), which makes the state
change's time the test's own.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests
from conftest import FLOWS_SCRIPT

from deploytrigger import Client, StateType
from harness.prod_stack import DEPLOYMENTS, ProdStack

websocket = pytest.importorskip("websocket", reason="websocket-client (the events extra)")

pytestmark = pytest.mark.integration

SLEEPY = "sleepy/sleepy-dep"
EVENT_DEADLINE = 60.0  # seconds for an event to arrive with Redis: measured well under 1 s
SILENCE = 15.0  # seconds a socket without Redis must stay silent about the other server's change
SETTLE = 2.0  # seconds after the filter before changing state: the server does not ack a filter
PAST_PING = 27.0  # seconds an idle socket through nginx is kept open: the server pings every 20 s
SAFETY_NET = 600.0  # the poll interval with Redis: longer than its timeout, only an event ends it
EVENT_WAIT = 480.0  # run_deployment's timeout with Redis
POLL = 30.0  # the poll interval without Redis
WAIT_TIMEOUT = (
    180.0  # run_deployment's timeout without Redis: polling at 30 s needs one or two polls
)
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=timezone.utc)  # no worker, no Late: only the test moves it


@pytest.fixture(scope="module", params=["redis", "no-redis"])
def stack(request: pytest.FixtureRequest) -> Iterator[ProdStack]:
    """Two API servers behind nginx, with or without Redis messaging; stopped by pid at the end."""
    with ProdStack(
        FLOWS_SCRIPT,
        api_servers=2,
        workers=0,
        redis=request.param == "redis",
        deployments={SLEEPY: DEPLOYMENTS[SLEEPY]},
        startup_timeout=300,
    ) as started:
        yield started


@pytest.fixture(scope="module")
def deployment_id(stack: ProdStack) -> str:
    flow, name = SLEEPY.split("/")
    found: str = http("GET", f"{stack.api_url}/deployments/name/{flow}/{name}")["id"]
    return found


def http(method: str, url: str, body: Any = None) -> Any:
    response = requests.request(method, url, json=body, timeout=30)
    assert response.status_code < 300, (method, url, response.status_code, response.text)
    return response.json() if response.content else None


def create_run(api_url: str, deployment_id: str, tag: str) -> str:
    """A run of the deployment scheduled in 2099 (never Late), made through ``api_url``; its id."""
    scheduled: Dict[str, Any] = {"type": "SCHEDULED", "name": "Scheduled"}
    scheduled["state_details"] = {"scheduled_time": FAR_FUTURE.isoformat()}
    body = {"tags": [tag], "parameters": {"seconds": 1.0}, "state": scheduled}
    run_id: str = http("POST", f"{api_url}/deployments/{deployment_id}/create_flow_run", body)["id"]
    return run_id


def cancel(api_url: str, run_id: str) -> None:
    """Force run ``run_id`` to CANCELLED through ``api_url``."""
    state = {"type": "CANCELLED", "name": "Cancelled", "message": "cancelled by the test"}
    answer = http(
        "POST", f"{api_url}/flow_runs/{run_id}/set_state", {"state": state, "force": True}
    )
    assert answer["status"] == "ACCEPT", answer


def subscribe(api_url: str, run_ids: List[str]) -> Any:
    """Prefect's events websocket at ``api_url``, on ``run_ids``' flow-run events, live only."""
    url = "ws" + api_url[len("http") :] + "/events/out"
    ws = websocket.create_connection(url, subprotocols=["prefect"], timeout=30)
    ws.send(json.dumps({"type": "auth", "token": None}))
    assert json.loads(ws.recv()) == {"type": "auth_success"}
    now = datetime.now(timezone.utc)
    event_filter = {
        "occurred": {
            "since": (now - timedelta(minutes=1)).isoformat(),
            "until": (now + timedelta(days=365)).isoformat(),
        },
        "event": {"prefix": ["prefect.flow-run."]},
        "resource": {"id": [f"prefect.flow-run.{run_id}" for run_id in run_ids]},
    }
    ws.send(json.dumps({"type": "filter", "filter": event_filter, "backfill": False}))
    ws.settimeout(1.0)  # short reads: websocket-client answers pings only inside recv()
    return ws


def read_events(ws: Any, seconds: float, until_final: bool = True) -> List[Dict[str, Any]]:
    """The events the socket delivers within ``seconds`` (until a final state, by default)."""
    events: List[Dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = ws.recv()
        except websocket.WebSocketTimeoutException:
            continue
        message = json.loads(frame)
        if message.get("type") != "event":
            continue
        events.append(message["event"])
        if until_final and final(message["event"]):
            break
    return events


def final(event: Dict[str, Any]) -> bool:
    return event["resource"].get("prefect.state-type") in {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "CRASHED",
    }


def cancelled_events(events: List[Dict[str, Any]], run_id: str) -> List[Dict[str, Any]]:
    return [
        event
        for event in events
        if event["event"] == "prefect.flow-run.Cancelled"
        and event["resource"]["prefect.resource.id"] == f"prefect.flow-run.{run_id}"
        and event["resource"]["prefect.state-type"] == "CANCELLED"
    ]


def test_a_socket_on_server_0_hears_of_a_change_through_server_1_only_through_redis(
    stack: ProdStack, deployment_id: str
) -> None:
    server_0, server_1 = stack.backend_urls
    run_id = create_run(server_1, deployment_id, f"events-{uuid.uuid4().hex[:8]}")
    ws = subscribe(server_0, [run_id])
    try:
        time.sleep(SETTLE)
        changed = time.monotonic()
        cancel(server_1, run_id)
        events = read_events(ws, EVENT_DEADLINE if stack.use_redis else SILENCE)
        took = time.monotonic() - changed
    finally:
        ws.close()
    heard = cancelled_events(events, run_id)
    assert http("GET", f"{server_0}/flow_runs/{run_id}")["state_type"] == "CANCELLED"
    if stack.use_redis:
        print(f"\nCancelled event on server 0 {took:.3f} s after set_state on server 1")
        assert len(heard) == 1, events
        assert heard[0]["payload"]["validated_state"]["type"] == "CANCELLED"
    else:
        # the control: without a shared broker each API server keeps its events to itself
        assert heard == [] and events == [], events


def test_a_socket_through_nginx_outlives_the_ping_and_still_delivers(
    stack: ProdStack, deployment_id: str
) -> None:
    if not stack.use_redis:
        pytest.skip("through nginx the socket may sit on either server: needs Redis messaging")
    assert stack.nginx is not None
    run_id = create_run(stack.api_url, deployment_id, f"nginx-{uuid.uuid4().hex[:8]}")
    ws = subscribe(stack.api_url, [run_id])
    try:
        opened = time.monotonic()
        idle = read_events(ws, PAST_PING, until_final=False)  # answering the pings meanwhile
        assert not any(final(event) for event in idle) and ws.connected, idle
        changed = time.monotonic()
        cancel(stack.backend_urls[1], run_id)
        events = read_events(ws, EVENT_DEADLINE)
        took = time.monotonic() - changed
    finally:
        ws.close()
    print(f"\nsocket open {changed - opened:.1f} s through nginx; event after {took:.3f} s")
    assert changed - opened >= PAST_PING
    assert len(cancelled_events(events, run_id)) == 1, events
    time.sleep(1)  # nginx logs a websocket when it closes
    upgrades = [a for a in stack.nginx.access_log() if a.uri.startswith("/api/events/out")]
    assert upgrades and upgrades[-1].status == 101, upgrades


def cancel_when_created(api_url: str, tag: str, cancelled_at: List[float]) -> threading.Thread:
    """A thread that finds the run tagged ``tag`` through ``api_url`` and cancels it there."""

    def find_and_cancel() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            body = {"flow_runs": {"tags": {"all_": [tag]}}, "limit": 1}
            found = http("POST", f"{api_url}/flow_runs/filter", body)
            if found:
                time.sleep(SETTLE)  # let the wait subscribe and read the run first
                cancel(api_url, found[0]["id"])
                cancelled_at.append(time.monotonic())
                return
            time.sleep(0.2)

    thread = threading.Thread(target=find_and_cancel, name="canceller", daemon=True)
    thread.start()
    return thread


def test_run_deployment_with_events_is_woken_by_the_event_or_sees_it_at_a_poll(
    stack: ProdStack,
) -> None:
    """The wait's websocket is on server 0, the change goes through server 1."""
    tag = f"public-{uuid.uuid4().hex[:8]}"
    cancelled_at: List[float] = []
    options: Dict[str, Any] = {"events": "on"}
    canceller: Optional[threading.Thread] = None
    with Client(stack.backend_urls[0], **options) as client:
        started = time.monotonic()
        canceller = cancel_when_created(stack.backend_urls[1], tag, cancelled_at)
        run = client.run_deployment(
            SLEEPY,
            tags=[tag],
            scheduled_time=FAR_FUTURE,
            poll_interval=SAFETY_NET if stack.use_redis else POLL,
            timeout=EVENT_WAIT if stack.use_redis else WAIT_TIMEOUT,
        )
        returned = time.monotonic()
    canceller.join(10)
    assert cancelled_at, "the canceller never found the run"
    after = returned - cancelled_at[0]
    print(f"\nrun_deployment returned {after:.2f} s after the cancel ({returned - started:.1f} s)")
    # always the server's record, whether the event or a poll woke the wait
    assert run.state is not None and run.state.type == StateType.CANCELLED
    assert tag in run.tags
    if stack.use_redis:
        # the next poll would come after the timeout, and the wait ended before it: the
        # event woke it (a wait not woken would return the run SCHEDULED, at the timeout)
        assert returned - started < EVENT_WAIT
    else:
        assert after >= 0  # only a poll can see it: correct, not prompt
