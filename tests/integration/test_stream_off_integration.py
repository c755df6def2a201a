"""A 3.8.8 server whose stream delivers no live event: waits still finish, by polling.

With ``PREFECT_SERVER_EVENTS_STREAM_OUT_ENABLED=false`` the server accepts the
websocket, answers the auth message and backfills, but never sends a live
event, so the listener keeps its socket and nothing ever wakes a wait. The
server (module-scoped, stopped by pid) serves no flows: the test ends its run
over REST once the listener is subscribed, and the wait's next poll sees it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Dict, Iterator, List

import pytest
from helpers.events_probe import eventually, listener_of, record_connects
from helpers.server_http import raw

from deploytrigger import Client, StateType
from deploytrigger._waits import events
from harness.local_server import LocalPrefect

pytestmark = pytest.mark.integration

STREAM_OFF = {"PREFECT_SERVER_EVENTS_STREAM_OUT_ENABLED": "false"}
FLOW, DEPLOYMENT = "stream-off", "stream-off-dep"
POLL_INTERVAL = 2.0
"""Short: with no event ever coming, each wait ends at one of its polls."""
FINISH_AFTER = 3.0
"""Seconds after the listener subscribed that the run is set COMPLETED (a few polls later)."""


@pytest.fixture(scope="module")
def stream_off_prefect() -> Iterator[LocalPrefect]:
    """A server whose events stream never delivers live events; one deployment, not executed."""
    with LocalPrefect(env=STREAM_OFF) as server:

        def post(path: str, body: Dict[str, Any]) -> Dict[str, Any]:
            response = raw.post(f"{server.api_url}{path}", json=body, timeout=60)
            response.raise_for_status()
            result: Dict[str, Any] = response.json()
            return result

        flow = post("/flows/", {"name": FLOW})
        post("/deployments/", {"name": DEPLOYMENT, "flow_id": flow["id"], "parameters": {}})
        yield server


def set_completed(api_url: str, run_id: uuid.UUID) -> None:
    response = raw.post(
        f"{api_url}/flow_runs/{run_id}/set_state",
        json={"state": {"type": "COMPLETED", "name": "Completed"}, "force": True},
        timeout=60,
    )
    response.raise_for_status()


def test_a_wait_completes_by_polling_when_the_stream_sends_nothing(
    stream_off_prefect: LocalPrefect, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames: List[str] = []
    connects = record_connects(monkeypatch, frames)
    api_url = stream_off_prefect.api_url
    with Client(api_url, events="on") as client:
        run = client.run_deployment(f"{FLOW}/{DEPLOYMENT}", timeout=0)
        listener = listener_of(client)

        def finish() -> None:
            eventually(lambda: listener.connections >= 1)
            time.sleep(FINISH_AFTER)
            set_completed(api_url, run.id)

        finisher = threading.Thread(target=finish, daemon=True)
        finisher.start()
        final = client.wait_for_flow_run(run.id, poll_interval=POLL_INTERVAL, timeout=240)
        finisher.join(60)
        still_listening = listener.listening()

    assert final.state is not None and final.state.type == StateType.COMPLETED
    # The server took the socket and kept it: the wait ended at a poll, not an event.
    assert connects == [events.events_url(api_url)] and still_listening
    delivered = [json.loads(frame) for frame in frames]
    assert [m for m in delivered if m.get("type") == "event"] == []
    assert {m.get("type") for m in delivered} <= {"auth_success"}
