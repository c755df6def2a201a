"""Waits that listen, against a real Prefect server (the session's ``prefect`` fixture).

No test asserts a speed: each waits with a poll interval longer than its own
timeout, so a wait that was not woken by an event would end at the timeout with
the run not final, and fail.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator, List, Mapping

import pytest
from helpers.events_probe import listener_of
from helpers.relay import Relay

from deploytrigger import Client
from deploytrigger._waits import events

pytestmark = pytest.mark.integration

SAFETY_NET = 600.0
"""Every wait's poll interval: longer than its timeout, so only an event can end it early."""
TIMEOUT = 480.0


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """Every websocket the listeners of this test opened (their URLs)."""
    opened: List[str] = []
    original = events.connect_websocket

    def counting(url: str, options: Mapping[str, Any]) -> events.Connection:
        opened.append(url)
        return original(url, options)

    monkeypatch.setattr(events, "connect_websocket", counting)
    return opened


def test_a_wait_returns_when_the_run_ends_not_at_its_next_poll(
    api_url: str, connects: List[str]
) -> None:
    with Client(api_url, events="on") as client:
        run = client.run_deployment(
            "sleepy/sleepy-dep",
            parameters={"seconds": 2},
            poll_interval=SAFETY_NET,
            timeout=TIMEOUT,
        )
        fresh = client.read_flow_run(run.id)

    assert run.state is not None and run.state.type == "COMPLETED"
    assert fresh.state is not None and run.state.timestamp == fresh.state.timestamp  # its record
    assert connects == [events.events_url(api_url)]


def test_events_off_opens_no_socket(api_url: str, connects: List[str]) -> None:
    with Client(api_url, events="off") as client:
        run = client.run_deployment(
            "add/add-dep", parameters={"x": 1}, poll_interval=1, timeout=120
        )

    assert run.is_final()
    assert connects == []


def test_many_runs_wait_on_one_socket(api_url: str, connects: List[str]) -> None:
    with Client(api_url, events="on") as client:
        handles = [client.submit("add/add-dep", parameters={"x": i}) for i in range(12)]
        done = list(client.as_completed(handles, poll_interval=SAFETY_NET, timeout=TIMEOUT))
        more = client.wait_all(
            [client.submit("add/add-dep", parameters={"x": 100})],
            poll_interval=SAFETY_NET,
            timeout=TIMEOUT,
        )

    assert sorted(run.parameters["x"] for run in done) == list(range(12))
    assert all(run.state is not None and run.state.type == "COMPLETED" for run in done)
    assert len(more.done) == 1 and not more.not_done
    assert len(connects) == 1


@pytest.fixture
def relay(api_url: str) -> Iterator[Relay]:
    relay = Relay(api_url)
    yield relay
    relay.close()


def test_a_stream_dropped_mid_wait_is_reopened_and_the_wait_still_returns(
    relay: Relay, connects: List[str]
) -> None:
    with Client(relay.api_url, events="on") as client:
        handle = client.submit("sleepy/sleepy-dep", parameters={"seconds": 6})
        listener = listener_of(client)

        def cut_once_listening() -> None:
            deadline = time.monotonic() + 60
            while listener.connections < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
            relay.cut()

        cutter = threading.Thread(target=cut_once_listening, daemon=True)
        cutter.start()
        run = handle.wait(timeout=TIMEOUT, poll_interval=SAFETY_NET)
        cutter.join(5)

    assert run.state is not None and run.state.type == "COMPLETED"
    assert relay.cuts == 1
    assert listener.connections >= 2 and len(connects) >= 2
