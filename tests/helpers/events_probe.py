"""What the events integration tests share: the safety-net constants and probes of the listener.

A wait given ``poll_interval=SAFETY_NET`` and ``timeout=TIMEOUT`` polls once,
then only an event can end it before the timeout: if it returns a final run, an
event woke it. No speed is asserted.
"""

from __future__ import annotations

import time
from typing import Any, Callable, List, Mapping

import pytest

from deploytrigger import Client
from deploytrigger._waits import events

SAFETY_NET = 600.0
"""The poll interval of a wait that only an event can end early."""
TIMEOUT = 480.0
"""Its timeout: well below the safety net, generous for a loaded machine."""


def record_connects(monkeypatch: pytest.MonkeyPatch, frames: Any = None) -> List[str]:
    """Record the URL of every websocket opened (and, into ``frames``, each text frame read)."""
    opened: List[str] = []
    original = events.connect_websocket

    def recording(url: str, options: Mapping[str, Any]) -> events.Connection:
        connection = original(url, options)
        opened.append(url)
        if frames is None:
            return connection
        return _Recording(connection, frames)

    monkeypatch.setattr(events, "connect_websocket", recording)
    return opened


class _Recording:
    def __init__(self, connection: events.Connection, frames: List[str]) -> None:
        self._connection = connection
        self._frames = frames

    def send(self, text: str) -> None:
        self._connection.send(text)

    def receive(self) -> Any:
        frame = self._connection.receive()
        if frame is not None:
            self._frames.append(frame)
        return frame

    def close(self) -> None:
        self._connection.close()


def listener_of(client: Client) -> events.EventsListener:
    """The client's events listener (it opens nothing until a wait watches a run)."""
    listener = client._poller.wakeups
    assert isinstance(listener, events.EventsListener)
    return listener


def eventually(condition: Callable[[], bool], seconds: float = 120.0) -> bool:
    """Whether ``condition()`` came true within ``seconds`` (checked every 0.05 s)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
