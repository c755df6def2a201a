"""Batch waits woken by the events stream: the fake's ``/api/events/out``, a real listener.

The fake's clock is a :class:`FakeTime` that the test moves, so that runs end
one after another, each with its event, while a wait with a long poll interval
is under way; the client's REST requests are counted at the fake.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator, List

import pytest
from helpers.fake_time import FakeTime

from deploytrigger import Client, FlowRun
from deploytrigger.testing import FakePrefect

pytest.importorskip("websocket", reason="the events extra (websocket-client)")
pytestmark = pytest.mark.isolated_environment(events=None)

RUNS = 8
STEP = 0.25
"""Fake seconds between two runs' ends."""


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime(time.time() + 1)  # ahead of the real clock the client schedules with


@pytest.fixture
def fake(clock: FakeTime) -> Iterator[FakePrefect]:
    with FakePrefect(set_environment=False, clock=clock.clock) as server:
        server.add_deployment("etl/nightly")
        server.set_outcome("etl/nightly", "COMPLETED", after=1.0)
        yield server


def staggered_runs(client: Client, clock: FakeTime) -> List[FlowRun]:
    """Runs created ``STEP`` fake seconds apart, so that they end that far apart too."""
    runs = []
    for _ in range(RUNS):
        runs.append(client.run_deployment("etl/nightly", timeout=0))
        clock.advance(STEP)
    return runs


def end_one_by_one(clock: FakeTime, listening: threading.Event) -> threading.Thread:
    """Move the fake's clock so that the runs end one at a time, 50 ms of real time apart."""

    def move() -> None:
        listening.wait(10)
        for _ in range(int((1.0 + RUNS * STEP) / STEP) + 2):
            time.sleep(0.05)
            clock.advance(STEP)

    mover = threading.Thread(target=move, daemon=True)
    mover.start()
    return mover


def filters_sent(fake: FakePrefect) -> int:
    return len(fake.requests_to("POST", "/flow_runs/filter"))


def test_wait_all_is_woken_once_when_the_last_of_its_runs_ends(
    fake: FakePrefect, clock: FakeTime
) -> None:
    with Client(fake.api_url, events="on") as client:
        runs = staggered_runs(client, clock)
        before = filters_sent(fake)
        listening = threading.Event()
        threading.Timer(0.5, listening.set).start()  # the socket is subscribed by then
        mover = end_one_by_one(clock, listening)

        result = client.wait_all(runs, poll_interval=60, timeout=60)
        mover.join(10)

    assert len(result.done) == RUNS and not result.not_done
    # The first poll, then one when the last event came (a re-read if a commit lagged):
    # one per event would be RUNS + 1.
    assert filters_sent(fake) - before <= 3


def test_as_completed_is_woken_by_each_run_that_ends(fake: FakePrefect, clock: FakeTime) -> None:
    with Client(fake.api_url, events="on") as client:
        runs = staggered_runs(client, clock)
        listening = threading.Event()
        threading.Timer(0.5, listening.set).start()
        mover = end_one_by_one(clock, listening)

        ended = [run.id for run in client.as_completed(runs, poll_interval=60, timeout=60)]
        mover.join(10)

    assert ended == [run.id for run in runs]  # in the order they ended, each as it ended
