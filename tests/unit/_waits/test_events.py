"""The events listener against a scripted websocket: no network, and no sleeping but for
the few milliseconds a background thread takes to read a scripted frame.

A :class:`Dialer` stands in for websocket-client (the listener's ``connect``),
handing out :class:`ScriptedSocket` objects whose frames a test pushes. Polls go
through the real :class:`~deploytrigger._waits.engine.Poller` with a fake
``sleep``: a pause that a test expects an event to cut short is taken on the
watch, so the fake sleep must stay unused; a pause of plain polling is taken on
the fake, which records it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import pytest
from helpers.events_probe import listener_of
from helpers.fake_time import FakeTime
from helpers.server_json import RUN_ID, flow_run_json

from deploytrigger import Client
from deploytrigger._waits import events
from deploytrigger._waits import stream as events_stream
from deploytrigger._waits.engine import RECHECK_INTERVAL, Poller
from deploytrigger._waits.events import (
    EventsListener,
    StreamClosed,
    StreamRefused,
    events_url,
    final_run_of,
    ssl_options,
    stream_filter,
)
from deploytrigger.exceptions import ConfigurationError
from deploytrigger.models import FlowRun

API = "http://events.test:4200/api"
"""Nothing listens there: every socket of these tests is scripted."""
OTHER_RUN = uuid.UUID("0d1e2f30-4152-4637-8899-aabbccddeeff")
NOW = datetime(2026, 12, 1, 20, 0, tzinfo=timezone.utc)
SETTLE = 5.0
"""Real seconds a test gives the listener's thread to do what it was scripted to do."""


pytestmark = pytest.mark.isolated_environment(events=None)


class Close:
    """A scripted close frame (``code`` None: the connection just drops)."""

    def __init__(self, code: Optional[int] = None) -> None:
        self.code = code


class ScriptedSocket:
    """A :class:`~deploytrigger._waits.events.Connection` whose frames the test pushes."""

    def __init__(self, auth_answer: Optional[Union[str, Close]] = '{"type": "auth_success"}'):
        self.inbox: queue.Queue[Union[str, Close]] = queue.Queue()
        self.sent: List[Dict[str, Any]] = []
        self.closed = threading.Event()
        if auth_answer is not None:
            self.inbox.put(auth_answer)

    def push(self, *items: Union[str, Close]) -> None:
        for item in items:
            self.inbox.put(item)

    def send(self, text: str) -> None:
        if self.closed.is_set():
            raise StreamClosed("closed")
        self.sent.append(json.loads(text))

    def receive(self) -> Optional[str]:
        if self.closed.is_set():
            raise StreamClosed("closed")
        try:
            item = self.inbox.get(timeout=0.01)
        except queue.Empty:
            return None
        if isinstance(item, Close):
            raise StreamClosed("closed by the script", item.code)
        return item

    def close(self) -> None:
        self.closed.set()


class Dialer:
    """The listener's ``connect``: hands out the scripted outcomes in order, then refuses."""

    def __init__(self, *outcomes: Union[ScriptedSocket, BaseException]) -> None:
        self.outcomes = list(outcomes)
        self.calls: List[Mapping[str, Any]] = []

    def __call__(self, url: str, options: Mapping[str, Any]) -> ScriptedSocket:
        self.calls.append({"url": url, **options})
        if not self.outcomes:
            raise ConnectionRefusedError("nothing more scripted")
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def event(
    run_id: uuid.UUID = RUN_ID,
    state_type: Optional[str] = "COMPLETED",
    state_name: str = "Completed",
    event_id: Optional[str] = None,
) -> str:
    """A ``prefect.flow-run.<state>`` event frame, as the server sends it."""
    resource = {"prefect.resource.id": f"prefect.flow-run.{run_id}"}
    if state_type is not None:
        resource.update({"prefect.state-type": state_type, "prefect.state-name": state_name})
    body = {
        "id": event_id or str(uuid.uuid4()),
        "event": f"prefect.flow-run.{state_name}",
        "occurred": "2026-12-01T20:00:01.000000Z",
        "resource": resource,
        "payload": {"validated_state": {"type": state_type, "name": state_name}},
    }
    return json.dumps({"type": "event", "event": body})


def make_listener(dialer: Dialer, **kwargs: Any) -> EventsListener:
    options: Dict[str, Any] = {"connect": dialer, "now": lambda: NOW, "backoff": lambda n: 0.01}
    options.update(kwargs)
    return EventsListener(API, **options)


@pytest.fixture
def closing() -> Iterator[List[EventsListener]]:
    """Listeners to close after the test, so that no thread outlives it."""
    made: List[EventsListener] = []
    yield made
    for listener in made:
        listener.close()


class Runs:
    """A run's states as successive GETs return them (the last one repeats)."""

    def __init__(self, *states: str, on_read: Optional[Callable[[int], None]] = None) -> None:
        self.states = list(states)
        self.reads = 0
        self.on_read = on_read

    def fetch(self) -> FlowRun:
        state = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += 1
        if self.on_read is not None:
            self.on_read(self.reads)
        return FlowRun.from_json(flow_run_json(state))


def wait_for(
    runs: Runs,
    listener: Optional[EventsListener],
    time_: FakeTime,
    *,
    interval: float = 30.0,
    run_ids: Sequence[uuid.UUID] = (RUN_ID,),
) -> FlowRun:
    """One wait through the real poll engine, as ``Runs.wait`` makes it."""
    poller = Poller(sleep=time_.sleep, clock=time_.clock, wakeups=listener)
    latest: List[FlowRun] = []

    def fetch() -> FlowRun:
        latest[:] = [runs.fetch()]
        return latest[0]

    return poller.poll(
        fetch,
        FlowRun.is_final,
        deadline=poller.deadline(None),
        interval=interval,
        runs=lambda: () if latest and latest[0].is_final() else run_ids,
    )


def eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


# -- waking --------------------------------------------------------------------------


def test_a_final_event_wakes_a_wait_long_before_its_poll_interval(closing: List[Any]) -> None:
    socket = ScriptedSocket()
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    runs = Runs("RUNNING", "COMPLETED", on_read=lambda n: n == 1 and socket.push(event()))
    time_ = FakeTime(1000.0)
    started = time.monotonic()

    run = wait_for(runs, listener, time_, interval=30.0)

    assert run.state is not None and run.state.type == "COMPLETED"
    assert runs.reads == 2  # the first read, then one after the event: the server's record
    assert time_.sleeps == []  # the pause was the watch's, cut short
    assert time.monotonic() - started < SETTLE


def test_the_handshake_authenticates_then_subscribes_to_final_flow_run_events(
    closing: List[Any],
) -> None:
    socket = ScriptedSocket()
    dialer = Dialer(socket)
    listener = make_listener(dialer, token="user:pass")
    closing.append(listener)

    watch = listener.watch([RUN_ID])

    assert watch is not None
    assert eventually(lambda: len(socket.sent) == 2)
    auth, subscribe = socket.sent
    assert auth == {"type": "auth", "token": "user:pass"}
    assert subscribe["type"] == "filter"
    assert subscribe["filter"] == stream_filter(NOW)
    window = subscribe["filter"]["occurred"]
    assert datetime.fromisoformat(window["since"]) < NOW
    assert datetime.fromisoformat(window["until"]) >= NOW + timedelta(days=364)
    assert dialer.calls[0]["url"] == "ws://events.test:4200/api/events/out"
    assert listener.connections == 1


def test_a_wait_registered_after_its_runs_event_is_woken_at_once(closing: List[Any]) -> None:
    socket = ScriptedSocket()
    socket.push(event(OTHER_RUN))
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    first = listener.watch([RUN_ID])
    assert first is not None
    assert eventually(lambda: OTHER_RUN in listener._finished)  # delivered to nobody

    late = listener.watch([OTHER_RUN])

    assert late is not None
    assert late.wait(0) is True
    assert late.finals() == {OTHER_RUN}


def test_duplicate_events_are_dropped_by_event_id(closing: List[Any]) -> None:
    socket = ScriptedSocket()
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    watch = listener.watch([RUN_ID])
    sentinel = listener.watch([OTHER_RUN])
    assert watch is not None and sentinel is not None
    socket.push(event(event_id="state-1"))
    assert watch.wait(SETTLE) is True

    socket.push(event(event_id="state-1"), event(OTHER_RUN))
    assert sentinel.wait(SETTLE) is True  # frames are read in order: the duplicate came first

    assert watch.wait(0) is False


def test_final_is_decided_by_state_type_not_name(closing: List[Any]) -> None:
    socket = ScriptedSocket()
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    cached = listener.watch([RUN_ID])
    skipped = listener.watch([OTHER_RUN])
    assert cached is not None and skipped is not None

    socket.push(event(state_type="RUNNING", state_name="Completed"))  # a name lies
    socket.push(event(OTHER_RUN, state_type="CANCELLED", state_name="Skipped"))
    assert skipped.wait(SETTLE) is True
    assert cached.wait(0) is False

    socket.push(event(state_type="COMPLETED", state_name="Cached"))
    assert cached.wait(SETTLE) is True


def test_events_out_of_order_still_end_in_the_servers_final_record(closing: List[Any]) -> None:
    socket = ScriptedSocket()
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    frames = (
        event(state_type="COMPLETED", state_name="Completed"),
        event(state_type="RUNNING", state_name="Running"),  # older, delivered late
        event(state_type="PENDING", state_name="Pending"),
    )
    runs = Runs("RUNNING", "COMPLETED", on_read=lambda n: n == 1 and socket.push(*frames))

    run = wait_for(runs, listener, FakeTime(1000.0))

    assert run.state is not None and run.state.type == "COMPLETED"
    assert runs.reads == 2


def test_a_final_event_before_the_commit_is_re_read_shortly_until_final(
    closing: List[Any],
) -> None:
    socket = ScriptedSocket()
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    runs = Runs(
        "RUNNING",
        "RUNNING",
        "RUNNING",
        "COMPLETED",
        on_read=lambda n: n == 1 and socket.push(event()),
    )
    time_ = FakeTime(1000.0)
    started = time.monotonic()

    run = wait_for(runs, listener, time_, interval=30.0)

    assert run.state is not None and run.state.type == "COMPLETED"
    assert runs.reads == 4  # woken, then re-read every RECHECK_INTERVAL until committed
    assert time_.sleeps == []
    assert time.monotonic() - started < SETTLE
    assert RECHECK_INTERVAL <= 0.1


def test_bad_frames_are_logged_at_debug_and_ignored(
    closing: List[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="deploytrigger")
    socket = ScriptedSocket()
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    no_labels = event(state_type=None)
    huge = json.dumps({"type": "event", "event": {"id": "x", "padding": "x" * 1_500_000}})
    frames = ("not json", "[1, 2]", no_labels, huge, '{"type": "event", "event": 7}', event())
    runs = Runs("RUNNING", "COMPLETED", on_read=lambda n: n == 1 and socket.push(*frames))

    run = wait_for(runs, listener, FakeTime(1000.0))

    assert run.state is not None and run.state.type == "COMPLETED"
    assert listener.listening() and listener.connections == 1
    ignored = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert ignored and all(r.levelno == logging.DEBUG for r in ignored)


@pytest.mark.parametrize(
    "frame",
    ["", "{", "null", '{"type": "event"}', '{"type": "event", "event": {"resource": {}}}'],
)
def test_frames_that_are_not_final_flow_run_events_give_nothing(frame: str) -> None:
    assert final_run_of(frame) is None


class FakeWebSocket:
    """websocket-client's ``WebSocket`` as far as ``receive`` uses it: one frame."""

    def __init__(self, opcode: int, data: bytes) -> None:
        self.frame = type("Frame", (), {"data": data})()
        self.opcode = opcode

    def recv_data_frame(self, control: bool) -> Any:
        return self.opcode, self.frame


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b'{"type": "event"}', '{"type": "event"}'),
        ("caf\u00e9 \u2713".encode(), "caf\u00e9 \u2713"),
        (b"\xff\xfe not UTF-8", None),  # websocket-client's own check is skipped: ours
        (b"\xed\xa0\x80", None),  # a lone surrogate is not UTF-8 either
    ],
)
def test_text_frames_are_decoded_strictly_and_bad_ones_ignored(
    data: bytes, text: Optional[str], caplog: pytest.LogCaptureFixture
) -> None:
    websocket = pytest.importorskip("websocket")
    caplog.set_level(logging.DEBUG, logger="deploytrigger")
    connection = events_stream._WebsocketClientConnection(
        FakeWebSocket(websocket.ABNF.OPCODE_TEXT, data)
    )

    assert connection.receive() == text
    if text is None:
        assert [r.levelno for r in caplog.records] == [logging.DEBUG]


# -- falling back on polling -----------------------------------------------------------


@pytest.mark.parametrize(
    "dialer_outcomes",
    [
        pytest.param([ScriptedSocket(auth_answer=Close(1008))], id="token-refused-1008"),
        pytest.param([ScriptedSocket(auth_answer=Close(1002))], id="no-subprotocol-1002"),
        pytest.param([StreamRefused("HTTP 404")], id="handshake-404"),
        pytest.param([StreamRefused("HTTP 500")], id="handshake-500"),
        pytest.param([], id="never-connects"),
    ],
)
def test_a_server_without_the_stream_leaves_waits_polling_with_one_log_line(
    dialer_outcomes: List[Any], closing: List[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="deploytrigger")
    listener = make_listener(Dialer(*dialer_outcomes))
    closing.append(listener)
    assert listener.watch([RUN_ID]) is not None  # starts the listener, which gives up
    assert eventually(lambda: not listener.listening())
    time_ = FakeTime(1000.0)

    first = wait_for(Runs("RUNNING", "RUNNING", "COMPLETED"), listener, time_, interval=5.0)
    second = wait_for(Runs("RUNNING", "COMPLETED"), listener, time_, interval=5.0)

    assert first.is_final() and second.is_final()
    assert time_.sleeps == [5.0, 5.0, 5.0]  # plain polling, on the injected sleep
    # Only this listener's: clients of other tests may be giving up in the background.
    lines = [r for r in caplog.records if r.getMessage().startswith(f"events: {listener.url}")]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "poll" in lines[0].getMessage()


def test_a_server_that_drops_every_socket_once_subscribed_is_given_up_on(
    closing: List[Any],
) -> None:
    sockets = [ScriptedSocket() for _ in range(4)]
    for scripted in sockets:
        scripted.push(Close())  # what a server that refuses the filter looks like
    dialer = Dialer(*sockets)
    listener = make_listener(dialer)
    closing.append(listener)
    listener.watch([RUN_ID])

    assert eventually(lambda: not listener.listening())
    assert len(dialer.calls) == 3


def test_events_on_warns_once_when_the_server_refuses_the_stream(
    closing: List[Any], caplog: pytest.LogCaptureFixture
) -> None:
    listener = make_listener(Dialer(StreamRefused("HTTP 403")), mode="on")
    closing.append(listener)
    listener.watch([RUN_ID])
    assert eventually(lambda: not listener.listening())
    assert listener.watch([RUN_ID]) is None

    warnings = [r for r in caplog.records if listener.url in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "refused" in warnings[0].getMessage()


def test_a_give_up_during_a_wait_wakes_it_onto_plain_polling(closing: List[Any]) -> None:
    socket = ScriptedSocket(auth_answer=None)  # the server says nothing yet
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    runs = Runs(
        "RUNNING", "RUNNING", "COMPLETED", on_read=lambda n: n == 1 and socket.push(Close(1008))
    )
    time_ = FakeTime(1000.0)

    started = time.monotonic()
    run = wait_for(runs, listener, time_, interval=30.0)

    assert run.is_final()
    assert not listener.listening()
    # The give-up lands during the first pause, which it cuts short (one sleep of the
    # interval after it), or just before that pause, which then is plain polling (two):
    # the listener's thread decides which. Never is a pause left on a listener that gave
    # up: that one would last the whole interval (30 s) in real time.
    assert time_.sleeps in ([30.0], [30.0, 30.0])
    assert time.monotonic() - started < 25.0


def test_a_drop_mid_wait_reconnects_and_every_pending_wait_re_reads(closing: List[Any]) -> None:
    first, second = ScriptedSocket(), ScriptedSocket()
    dialer = Dialer(first, second)
    listener = make_listener(dialer)
    closing.append(listener)
    # The run ends while the socket is down: its event is on neither socket.
    runs = Runs("RUNNING", "COMPLETED", on_read=lambda n: n == 1 and first.push(Close()))
    time_ = FakeTime(1000.0)

    run = wait_for(runs, listener, time_, interval=30.0)

    assert run.state is not None and run.state.type == "COMPLETED"
    assert len(dialer.calls) == 2 and listener.connections == 2
    assert runs.reads == 2 and time_.sleeps == []
    assert [m["type"] for m in second.sent] == ["auth", "filter"]  # subscribed again


def test_many_waits_share_one_socket_and_each_wakes_for_its_own_run(closing: List[Any]) -> None:
    socket = ScriptedSocket()
    dialer = Dialer(socket)
    listener = make_listener(dialer)
    closing.append(listener)
    ids = [uuid.uuid4() for _ in range(50)]
    watches = [listener.watch([run_id]) for run_id in ids]

    socket.push(*(event(run_id) for run_id in reversed(ids)))

    assert all(w is not None and w.wait(SETTLE) for w in watches)
    assert all(w is not None and w.finals() == {run_id} for w, run_id in zip(watches, ids))
    assert len(dialer.calls) == 1


def test_a_wait_for_all_its_runs_is_woken_once_by_the_last_ones_event(
    closing: List[Any],
) -> None:
    socket = ScriptedSocket()
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    ids = [uuid.uuid4() for _ in range(3)]
    every = listener.watch(ids, all_final=True)
    sentinel = listener.watch([OTHER_RUN])
    assert every is not None and sentinel is not None

    socket.push(event(ids[0]), event(ids[1]), event(OTHER_RUN))
    assert sentinel.wait(SETTLE) is True  # frames are read in order: both came first
    assert every.wait(0) is False
    assert every.finals() == {ids[0], ids[1]}

    socket.push(event(ids[2]))
    assert every.wait(SETTLE) is True
    assert every.finals() == set(ids)


def test_a_wait_for_all_is_woken_when_its_last_pending_run_already_had_its_event(
    closing: List[Any],
) -> None:
    socket = ScriptedSocket()
    listener = make_listener(Dialer(socket))
    closing.append(listener)
    ids = [uuid.uuid4() for _ in range(2)]
    every = listener.watch(ids, all_final=True)
    assert every is not None
    socket.push(event(ids[1]))
    assert eventually(lambda: every.finals() == {ids[1]})
    assert every.wait(0) is False

    every.update([ids[1]])  # a poll saw ids[0] final without its event

    assert every.wait(0) is True


def test_a_reconnect_wakes_a_wait_for_all_its_runs(closing: List[Any]) -> None:
    first, second = ScriptedSocket(), ScriptedSocket()
    dialer = Dialer(first, second)
    listener = make_listener(dialer)
    closing.append(listener)
    every = listener.watch([RUN_ID, OTHER_RUN], all_final=True)
    assert every is not None
    assert eventually(lambda: listener.connections == 1)

    first.push(Close())  # events may be missed while it is down: the wait must re-read

    assert every.wait(SETTLE) is True
    assert every.finals() == set()
    assert listener.connections == 2


def test_an_unused_socket_is_closed_and_the_next_wait_opens_one_without_a_wake(
    closing: List[Any],
) -> None:
    first, second = ScriptedSocket(), ScriptedSocket()
    dialer = Dialer(first, second)
    listener = make_listener(dialer, idle_close=0.05)
    closing.append(listener)
    watch = listener.watch([RUN_ID])
    assert watch is not None
    assert eventually(lambda: listener.connections == 1)
    assert not first.closed.wait(0.2)  # watched: it stays open past idle_close

    watch.close()
    assert first.closed.wait(SETTLE)  # nobody watches: closed
    time.sleep(0.2)
    assert len(dialer.calls) == 1  # and not reopened for nobody

    again = listener.watch([OTHER_RUN])
    assert again is not None
    assert eventually(lambda: listener.connections == 2)
    assert [m["type"] for m in second.sent] == ["auth", "filter"]
    assert again.wait(0) is False  # an idle close misses no event: the filter's backfill
    second.push(event(OTHER_RUN))
    assert again.wait(SETTLE) is True


# -- switches, lifecycle, secrets -------------------------------------------------------


def test_events_off_makes_no_listener_so_no_socket_is_ever_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: List[str] = []
    monkeypatch.setattr(events, "connect_websocket", lambda url, options: opened.append(url))
    with Client(API, events="off") as client:
        assert client._poller.wakeups is None
    monkeypatch.setenv("DEPLOYTRIGGER_EVENTS", "off")
    with Client(API) as client:
        assert client._poller.wakeups is None
    assert opened == []


def test_the_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYTRIGGER_EVENTS", "off")
    with Client(API, events="on") as client:
        assert isinstance(listener_of(client), EventsListener)
        assert client.settings.events == "on"


def test_auto_with_an_injected_sleep_keeps_the_waits_on_fake_time() -> None:
    time_ = FakeTime(1000.0)
    with Client(API, sleep=time_.sleep, clock=time_.clock) as client:
        assert client._poller.wakeups is None
    with Client(API, sleep=time_.sleep, events="on") as client:
        assert client._poller.wakeups is not None


@pytest.mark.parametrize("value", ["yes", "ON", "", 1])
def test_an_unknown_events_mode_is_a_configuration_error(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="events"):
        Client(API, events=value)


def test_an_unknown_events_mode_in_the_environment_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPLOYTRIGGER_EVENTS", "sometimes")
    with pytest.raises(ConfigurationError, match="DEPLOYTRIGGER_EVENTS"):
        Client(API)


def test_the_listener_closes_with_the_client() -> None:
    socket = ScriptedSocket()
    client = Client(API, events="on")
    listener = listener_of(client)
    listener._connect = Dialer(socket)
    watch = listener.watch([RUN_ID])
    assert watch is not None and eventually(lambda: listener.connections == 1)

    client.close()

    assert socket.closed.is_set()
    assert not listener.listening() and listener.watch([RUN_ID]) is None
    assert watch.wait(0) is True  # a wait paused on it polls once more, then on its own
    thread = listener._thread
    assert thread is not None and not thread.is_alive()


def test_no_socket_is_opened_until_a_wait_watches_a_run(closing: List[Any]) -> None:
    dialer = Dialer(ScriptedSocket())
    closing.append(make_listener(dialer))
    time.sleep(0.05)
    assert dialer.calls == []


def test_a_forked_child_starts_its_own_listener_and_leaves_the_parents_socket(
    monkeypatch: pytest.MonkeyPatch, closing: List[Any]
) -> None:
    parent_socket, child_socket = ScriptedSocket(), ScriptedSocket()
    dialer = Dialer(parent_socket, child_socket)
    listener = make_listener(dialer)
    closing.append(listener)
    listener.watch([RUN_ID])
    assert eventually(lambda: listener.connections == 1)
    parent_pid = events.os.getpid()
    monkeypatch.setattr(events.os, "getpid", lambda: parent_pid + 1)

    assert listener.watch([RUN_ID]) is not None

    assert eventually(lambda: len(dialer.calls) == 2)
    assert not parent_socket.closed.is_set()


def test_secrets_stay_out_of_repr_and_logs(
    closing: List[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    listener = make_listener(Dialer(ScriptedSocket(auth_answer=Close(1008))), token="user:s3cret")
    closing.append(listener)
    listener.watch([RUN_ID])
    assert eventually(lambda: not listener.listening())

    assert "s3cret" not in repr(listener)
    assert "s3cret" not in caplog.text
    with Client(API, auth_string="user:s3cret", events="on") as client:
        assert "s3cret" not in repr(client._poller) + repr(client.settings)


def test_the_stream_url_keeps_the_path_prefix_and_uses_wss_for_https() -> None:
    cloud = "https://api.prefect.cloud/api/accounts/A/workspaces/W"
    assert events_url(cloud) == "wss://api.prefect.cloud/api/accounts/A/workspaces/W/events/out"
    assert events_url("http://127.0.0.1:4200/api/") == "ws://127.0.0.1:4200/api/events/out"


def test_tls_options_follow_the_rest_settings(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    assert ssl_options(False) == {"cert_reqs": 0, "check_hostname": False}
    assert ssl_options(str(bundle))["ca_certs"] == str(bundle)
    assert ssl_options(True, {"REQUESTS_CA_BUNDLE": str(bundle)})["ca_certs"] == str(bundle)
    assert ssl_options(True, {})["cert_reqs"] != 0
