"""The fake serves Prefect's events websocket, ``/api/events/out``, as a 3.8.8 server does.

The client side is ``websocket-client`` (the ``events`` extra). The fake's
clock is a :class:`ManualClock`, so state changes fall due when a test moves
it; the fake's ticker then publishes them within a few milliseconds, and
every ``recv`` has a timeout so that a missing event fails instead of hanging.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import struct
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests
import websocket

import deploytrigger
from deploytrigger.testing import FakePrefect
from deploytrigger.testing.fake._websocket import accept_key, frame

RECV_TIMEOUT = 5.0


class ManualClock:
    """The fake's clock: moves only when told. It starts a second ahead of the real time,
    because the client schedules each run for "now" on its own clock."""

    def __init__(self) -> None:
        self.now = time.time() + 1
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture()
def fake(clock: ManualClock) -> Iterator[FakePrefect]:
    with FakePrefect(clock=clock) as server:
        server.add_deployment("etl/nightly", tags=["nightly"])
        yield server


def iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).isoformat()


def events_url(fake: FakePrefect) -> str:
    return fake.api_url.replace("http://", "ws://") + "/events/out"


def connect(fake: FakePrefect, **options: Any) -> websocket.WebSocket:
    options.setdefault("subprotocols", ["prefect"])
    return websocket.create_connection(events_url(fake), timeout=RECV_TIMEOUT, **options)


def window(clock: ManualClock, back: float = 60.0, ahead: float = 365 * 86400.0) -> Dict[str, str]:
    return {"since": iso(clock() - back), "until": iso(clock() + ahead)}


def subscribe(
    fake: FakePrefect,
    clock: ManualClock,
    event_filter: Optional[Dict[str, Any]] = None,
    **extra: Any,
) -> websocket.WebSocket:
    """A socket past ``auth`` and ``filter`` (default: the flow-run events of the last minute)."""
    ws = connect(fake)
    ws.send(json.dumps({"type": "auth", "token": None}))
    assert json.loads(ws.recv()) == {"type": "auth_success"}
    chosen = (
        event_filter
        if event_filter is not None
        else {"occurred": window(clock), "event": {"prefix": ["prefect.flow-run."]}}
    )
    ws.send(json.dumps({"type": "filter", "filter": chosen, **extra}))
    return ws


def receive_events(ws: websocket.WebSocket, count: int) -> List[Dict[str, Any]]:
    found = []
    for _ in range(count):
        message = json.loads(ws.recv())
        assert message["type"] == "event"
        found.append(message["event"])
    return found


def nothing_more(ws: websocket.WebSocket, seconds: float = 0.3) -> bool:
    ws.settimeout(seconds)
    try:
        ws.recv()
    except websocket.WebSocketTimeoutException:
        return True
    finally:
        ws.settimeout(RECV_TIMEOUT)
    return False


def until_filtered(fake: FakePrefect, count: int = 1) -> None:
    """Return once the fake has received ``count`` filters (its socket threads run on their own)."""
    deadline = time.monotonic() + RECV_TIMEOUT
    while len(fake.event_filters) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(fake.event_filters) >= count


def close_code(ws: websocket.WebSocket) -> int:
    """The code of the close frame the server sent next."""
    opcode, data = ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    code: int = struct.unpack("!H", data[:2])[0]
    return code


def trigger(fake: FakePrefect, name: str = "etl/nightly") -> str:
    run = deploytrigger.run_deployment(name, timeout=0)
    return str(run.id)


def names(events: List[Dict[str, Any]]) -> List[str]:
    return [event["event"] for event in events]


# -- the handshake --------------------------------------------------------------------------


def test_handshake_answers_the_key_and_chooses_the_prefect_subprotocol(fake: FakePrefect) -> None:
    ws = connect(fake)  # websocket-client checks Sec-WebSocket-Accept itself
    assert ws.getsubprotocol() == "prefect"
    assert ws.getstatus() == 101
    ws.close()


def test_accept_key_is_the_rfc_6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_socket_without_the_prefect_subprotocol_is_closed_with_1002(fake: FakePrefect) -> None:
    ws = websocket.create_connection(events_url(fake), timeout=RECV_TIMEOUT)
    assert close_code(ws) == 1002


def test_auth_is_answered_with_auth_success_whatever_the_token(fake: FakePrefect) -> None:
    ws = connect(fake)
    ws.send(json.dumps({"type": "auth", "token": "anything"}))
    assert json.loads(ws.recv()) == {"type": "auth_success"}


def test_a_first_message_that_is_not_auth_closes_with_1008(fake: FakePrefect) -> None:
    ws = connect(fake)
    ws.send(json.dumps({"type": "filter", "filter": {}}))
    assert close_code(ws) == 1008


def test_a_second_message_that_is_not_a_filter_closes_with_1002(fake: FakePrefect) -> None:
    ws = connect(fake)
    ws.send(json.dumps({"type": "auth", "token": None}))
    ws.recv()
    ws.send("not json")
    assert close_code(ws) == 1002


def test_a_filter_with_an_unknown_key_cuts_the_connection_as_the_server_does(
    fake: FakePrefect, clock: ManualClock
) -> None:
    ws = subscribe(fake, clock, {"occurred": window(clock), "flow_run": {"id": []}})
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        ws.recv()


def test_the_filters_sent_are_recorded_for_tests_to_check(
    fake: FakePrefect, clock: ManualClock
) -> None:
    assert fake.event_filters == []
    event_filter = {"occurred": window(clock), "resource": {"id": ["prefect.flow-run.x"]}}
    subscribe(fake, clock, event_filter)
    until_filtered(fake)
    assert fake.event_filters == [event_filter]
    assert [r.path for r in fake.requests if "events" in r.path] == []


def test_other_http_paths_still_answer_json(fake: FakePrefect) -> None:
    response = requests.get(fake.api_url + "/events/out", timeout=5)  # no Upgrade: not a route
    assert response.status_code == 404


# -- what is sent --------------------------------------------------------------------------


def test_a_listener_that_never_polls_sees_every_state_up_to_the_final_one(
    fake: FakePrefect, clock: ManualClock
) -> None:
    fake.set_outcome("etl/nightly", "FAILED", after=10, message="disk full")
    ws = subscribe(fake, clock)
    run_id = trigger(fake)
    first = receive_events(ws, 3)
    assert names(first) == [
        "prefect.flow-run.Scheduled",
        "prefect.flow-run.Pending",
        "prefect.flow-run.Submitting",
    ]
    assert nothing_more(ws)  # Running is due 5 s later on the fake's clock
    clock.advance(10)
    rest = receive_events(ws, 2)
    assert names(rest) == ["prefect.flow-run.Running", "prefect.flow-run.Failed"]
    final = rest[-1]
    assert final["resource"]["prefect.resource.id"] == f"prefect.flow-run.{run_id}"
    assert final["resource"]["prefect.state-type"] == "FAILED"
    assert final["resource"]["prefect.state-name"] == "Failed"
    assert final["resource"]["prefect.state-message"] == "disk full"
    assert final["payload"]["validated_state"] == {
        "type": "FAILED",
        "name": "Failed",
        "message": "disk full",
    }
    assert final["payload"]["intended"] == {"from": "RUNNING", "to": "FAILED"}


def test_events_carry_the_state_ids_chained_by_follows_and_the_run_record_agrees(
    fake: FakePrefect, clock: ManualClock
) -> None:
    ws = subscribe(fake, clock)
    run_id = trigger(fake)
    events = receive_events(ws, 5)
    assert events[0]["follows"] is None
    for before, after in zip(events, events[1:]):
        assert after["follows"] == before["id"]
    run = requests.get(f"{fake.api_url}/flow_runs/{run_id}", timeout=5).json()
    assert events[-1]["id"] == run["state_id"]
    assert events[-1]["occurred"] == run["state"]["timestamp"]
    stamp = events[-1]["resource"]["prefect.state-timestamp"]
    assert stamp == run["state"]["timestamp"].replace("Z", "+00:00")  # as the server writes it


def test_related_resources_name_the_flow_deployment_and_tags(
    fake: FakePrefect, clock: ManualClock
) -> None:
    ws = subscribe(fake, clock)
    run = deploytrigger.run_deployment("etl/nightly", timeout=0, tags=["adhoc"])
    event = receive_events(ws, 1)[0]
    assert event["related"] == [
        {
            "prefect.resource.id": f"prefect.flow.{run.flow_id}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": "etl",
        },
        {
            "prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
            "prefect.resource.role": "deployment",
            "prefect.resource.name": "nightly",
        },
        {"prefect.resource.id": "prefect.tag.adhoc", "prefect.resource.role": "tag"},
        {"prefect.resource.id": "prefect.tag.nightly", "prefect.resource.role": "tag"},
    ]
    assert event["resource"]["prefect.resource.name"] == run.name
    assert event["resource"]["prefect.run-count"] == "0"


def test_past_events_come_first_oldest_first_then_live_ones(
    fake: FakePrefect, clock: ManualClock
) -> None:
    fake.set_outcome("etl/nightly", "COMPLETED", after=10)
    trigger(fake)
    clock.advance(3)
    ws = subscribe(fake, clock)
    past = receive_events(ws, 3)
    assert names(past) == [
        "prefect.flow-run.Scheduled",
        "prefect.flow-run.Pending",
        "prefect.flow-run.Submitting",
    ]
    clock.advance(10)
    assert names(receive_events(ws, 2)) == [
        "prefect.flow-run.Running",
        "prefect.flow-run.Completed",
    ]


def test_backfill_false_sends_only_live_events(fake: FakePrefect, clock: ManualClock) -> None:
    trigger(fake)
    assert fake.runs[0].is_final()  # every event of that run is out before the socket opens
    ws = subscribe(
        fake,
        clock,
        {"occurred": window(clock), "event": {"prefix": ["prefect.flow-run."]}},
        backfill=False,
    )
    assert nothing_more(ws)
    trigger(fake)
    assert names(receive_events(ws, 1)) == ["prefect.flow-run.Scheduled"]


def test_backfill_reaches_back_at_most_15_minutes(fake: FakePrefect, clock: ManualClock) -> None:
    trigger(fake)
    clock.advance(16 * 60)
    ws = subscribe(fake, clock, {"occurred": window(clock, back=3600)})
    assert nothing_more(ws)


def test_resource_ids_pick_the_runs_listened_to(fake: FakePrefect, clock: ManualClock) -> None:
    fake.set_outcome("etl/nightly", "COMPLETED", after=2)
    wanted = trigger(fake)
    trigger(fake)
    ws = subscribe(
        fake,
        clock,
        {
            "occurred": window(clock),
            "resource": {"id": [f"prefect.flow-run.{wanted}"]},
            "related": [],  # a key the server knows: accepted, not applied
        },
    )
    clock.advance(2)
    events = receive_events(ws, 5)
    assert {e["resource"]["prefect.resource.id"] for e in events} == {f"prefect.flow-run.{wanted}"}
    assert names(events)[-1] == "prefect.flow-run.Completed"
    assert nothing_more(ws)


def test_event_names_filter_by_prefix_and_exact_name(fake: FakePrefect, clock: ManualClock) -> None:
    ws = subscribe(
        fake,
        clock,
        {
            "occurred": window(clock),
            "event": {"name": ["prefect.flow-run.Completed", "prefect.flow-run.Pending"]},
        },
    )
    trigger(fake)
    assert names(receive_events(ws, 2)) == [
        "prefect.flow-run.Pending",
        "prefect.flow-run.Completed",
    ]
    other = subscribe(
        fake, clock, {"occurred": window(clock), "event": {"prefix": ["prefect.task-run."]}}
    )
    assert nothing_more(other)


def test_a_filter_without_until_gets_no_live_events_as_on_the_server(
    fake: FakePrefect, clock: ManualClock
) -> None:
    ws = subscribe(fake, clock, {"occurred": {"since": iso(clock() - 60)}})
    until_filtered(fake)
    assert nothing_more(ws, 0.2)  # the filter is read (``until`` fixed) before time moves on
    clock.advance(1)
    trigger(fake)
    assert nothing_more(ws)


def test_cancelling_a_run_publishes_cancelling_then_cancelled(
    fake: FakePrefect, clock: ManualClock
) -> None:
    fake.set_outcome("etl/nightly", "RUNNING")
    ws = subscribe(fake, clock)
    run_id = trigger(fake)
    receive_events(ws, 4)  # Scheduled, Pending, Submitting, Running
    assert deploytrigger.Client(fake.api_url).cancel_flow_run(run_id)
    cancel = receive_events(ws, 2)
    assert names(cancel) == ["prefect.flow-run.Cancelling", "prefect.flow-run.Cancelled"]
    assert cancel[-1]["resource"]["prefect.state-type"] == "CANCELLED"


def test_a_listener_on_the_real_clock_sees_the_final_event_of_a_run_nobody_reads() -> None:
    """With the real clock: the ticker moves the run on although nothing reads it."""
    with FakePrefect() as live:
        live.add_deployment("etl/nightly")
        live.set_outcome("etl/nightly", "COMPLETED", after=0.3)
        ws = websocket.create_connection(
            live.api_url.replace("http://", "ws://") + "/events/out",
            subprotocols=["prefect"],
            timeout=RECV_TIMEOUT,
        )
        ws.send(json.dumps({"type": "auth", "token": None}))
        ws.recv()
        now = time.time()
        ws.send(
            json.dumps(
                {
                    "type": "filter",
                    "filter": {"occurred": {"since": iso(now - 60), "until": iso(now + 3600)}},
                }
            )
        )
        deploytrigger.run_deployment("etl/nightly", timeout=0)
        deadline = time.monotonic() + RECV_TIMEOUT
        seen: List[str] = []
        while "prefect.flow-run.Completed" not in seen and time.monotonic() < deadline:
            seen.append(json.loads(ws.recv())["event"]["event"])
        assert seen[-1] == "prefect.flow-run.Completed"


# -- frames --------------------------------------------------------------------------------


def test_pings_are_answered_with_pongs(fake: FakePrefect, clock: ManualClock) -> None:
    ws = subscribe(fake, clock)
    ws.ping("hello")
    opcode, data = ws.recv_data(control_frame=True)
    assert (opcode, data) == (websocket.ABNF.OPCODE_PONG, b"hello")


def test_a_close_from_the_client_is_answered_with_its_code(
    fake: FakePrefect, clock: ManualClock
) -> None:
    ws = subscribe(fake, clock)
    ws.send_close(status=1000)
    assert close_code(ws) == 1000


def test_a_fragmented_auth_message_is_put_back_together(fake: FakePrefect) -> None:
    ws = connect(fake)
    text = json.dumps({"type": "auth", "token": None}).encode()
    ws.send_frame(websocket.ABNF.create_frame(text[:5], websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame(text[5:], websocket.ABNF.OPCODE_CONT, fin=1))
    assert json.loads(ws.recv()) == {"type": "auth_success"}


def test_an_unmasked_client_frame_is_a_protocol_error(fake: FakePrefect) -> None:
    ws = connect(fake)
    ws.sock.sendall(frame(0x1, b'{"type": "auth"}'))  # no mask: servers must refuse it
    assert close_code(ws) == 1002


def test_frame_lengths_use_the_extended_forms() -> None:
    assert frame(0x1, b"x" * 125)[1] == 125
    assert frame(0x1, b"x" * 126)[1:4] == bytes([126, 0, 126])
    assert frame(0x1, b"x" * 70000)[1] == 127
    masked = frame(0x1, b"abc", mask=b"\x01\x02\x03\x04")
    assert masked[1] == 0x80 | 3 and masked[2:6] == b"\x01\x02\x03\x04"
    assert bytes(b ^ m for b, m in zip(masked[6:], b"\x01\x02\x03")) == b"abc"


def test_stopping_the_fake_closes_its_sockets(clock: ManualClock) -> None:
    with FakePrefect(clock=clock) as server:
        ws = subscribe(server, clock)
    with pytest.raises((websocket.WebSocketException, ConnectionError, socket.timeout)):
        if not ws.recv():
            raise websocket.WebSocketConnectionClosedException("closed")
