"""The poll loop and deadlines, with an injected clock and sleep."""

from __future__ import annotations

from typing import Any, Callable, List

import pytest
from run_stubs import FakeTime

from deploytrigger.waiting import Deadline, poll


def results(*values: Any) -> Callable[[], Any]:
    """A fetch that returns each value in turn, then repeats the last; counts calls."""
    queue = list(values)

    def fetch() -> Any:
        fetch.count += 1  # type: ignore[attr-defined]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    fetch.count = 0  # type: ignore[attr-defined]
    return fetch


def is_done(value: str) -> bool:
    return value == "done"


# -- Deadline -----------------------------------------------------------------------------


def test_deadline_without_timeout_never_passes_and_has_no_remaining_time() -> None:
    time = FakeTime()
    deadline = Deadline(None, time.clock)
    time.now += 10**9

    assert deadline.at is None
    assert deadline.remaining() is None
    assert deadline.passed() is False


def test_deadline_counts_down_on_its_clock_and_never_goes_negative() -> None:
    time = FakeTime()
    deadline = Deadline(10.0, time.clock)

    assert deadline.remaining() == 10.0
    time.now += 4
    assert deadline.remaining() == 6.0
    assert deadline.passed() is False
    time.now += 6
    assert deadline.passed() is True
    time.now += 5
    assert deadline.remaining() == 0.0


def test_zero_timeout_deadline_has_already_passed() -> None:
    time = FakeTime()

    assert Deadline(0, time.clock).passed() is True


# -- poll -----------------------------------------------------------------------------------


def test_poll_returns_the_first_done_result_after_one_interval_per_miss() -> None:
    time = FakeTime()
    fetch = results("a", "b", "done", "never-reached")

    result = poll(fetch, is_done, deadline=Deadline(None, time.clock), interval=5, sleep=time.sleep)

    assert result == "done"
    assert fetch.count == 3  # type: ignore[attr-defined]
    assert time.sleeps == [5, 5]


def test_poll_fetches_at_once_and_does_not_sleep_when_first_result_is_done() -> None:
    time = FakeTime()
    fetch = results("done")

    assert poll(fetch, is_done, deadline=Deadline(30, time.clock), interval=5, sleep=time.sleep)
    assert fetch.count == 1  # type: ignore[attr-defined]
    assert time.sleeps == []


def test_poll_with_deadline_returns_last_result_and_cuts_last_pause_at_the_deadline() -> None:
    time = FakeTime()
    fetch = results("t0", "t5", "t10", "t12", "too-late")

    result = poll(fetch, is_done, deadline=Deadline(12, time.clock), interval=5, sleep=time.sleep)

    assert result == "t12"
    assert time.sleeps == [5, 5, 2]
    assert fetch.count == 4  # type: ignore[attr-defined]
    assert time.now == 1012.0


def test_poll_with_zero_timeout_fetches_once_and_returns_without_sleeping() -> None:
    time = FakeTime()
    fetch = results("pending")

    result = poll(fetch, is_done, deadline=Deadline(0, time.clock), interval=5, sleep=time.sleep)

    assert result == "pending"
    assert fetch.count == 1  # type: ignore[attr-defined]
    assert time.sleeps == []


def test_poll_interval_longer_than_timeout_sleeps_only_until_the_deadline() -> None:
    time = FakeTime()
    fetch = results("t0", "t3")

    result = poll(fetch, is_done, deadline=Deadline(3, time.clock), interval=60, sleep=time.sleep)

    assert result == "t3"
    assert time.sleeps == [3]


def test_poll_interval_zero_never_sleeps_for_any_time() -> None:
    time = FakeTime()
    fetch = results("a", "b", "c", "done")

    result = poll(fetch, is_done, deadline=Deadline(None, time.clock), interval=0, sleep=time.sleep)

    assert result == "done"
    assert fetch.count == 4  # type: ignore[attr-defined]
    assert not any(time.sleeps)
    assert time.now == 1000.0


def test_poll_lets_the_fetch_exception_propagate_unchanged() -> None:
    time = FakeTime()
    calls: List[int] = []

    class Boom(Exception):
        pass

    def fetch() -> str:
        calls.append(1)
        if len(calls) == 2:
            raise Boom("server went away")
        return "pending"

    with pytest.raises(Boom, match="server went away") as info:
        poll(fetch, is_done, deadline=Deadline(60, time.clock), interval=5, sleep=time.sleep)

    assert type(info.value) is Boom
    assert time.sleeps == [5]
