"""The poll engine, its outage policy and deadlines, with an injected clock and sleep."""

from __future__ import annotations

import logging
import uuid
from typing import AbstractSet, Any, Callable, Collection, List, Set

import pytest
from helpers.fake_time import FakeTime

from deploytrigger._helpers.deadline import Deadline
from deploytrigger._waits.engine import NOTHING, RECHECK_INTERVAL, Poller, is_transient
from deploytrigger.exceptions import (
    ConnectionFailedError,
    FlowRunNotFoundError,
    RateLimitedError,
    ServerError,
)


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


def poll(
    fetch: Callable[[], Any],
    is_done: Callable[[Any], bool],
    *,
    deadline: Deadline,
    interval: float,
    sleep: Callable[[float], None],
) -> Any:
    """``Poller.poll`` with a fake clock's sleep (the deadline carries the clock)."""
    poller = Poller(sleep=sleep, clock=deadline._clock)
    return poller.poll(fetch, is_done, deadline=deadline, interval=interval)


# -- Deadline -----------------------------------------------------------------------------


def test_deadline_without_timeout_never_passes_and_has_no_remaining_time() -> None:
    time = FakeTime(1000.0)
    deadline = Deadline(None, time.clock)
    time.now += 10**9

    assert deadline.at is None
    assert deadline.remaining() is None
    assert deadline.passed() is False


def test_deadline_counts_down_on_its_clock_and_never_goes_negative() -> None:
    time = FakeTime(1000.0)
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
    time = FakeTime(1000.0)

    assert Deadline(0, time.clock).passed() is True


# -- poll -----------------------------------------------------------------------------------


def test_poll_returns_the_first_done_result_after_one_interval_per_miss() -> None:
    time = FakeTime(1000.0)
    fetch = results("a", "b", "done", "never-reached")

    result = poll(fetch, is_done, deadline=Deadline(None, time.clock), interval=5, sleep=time.sleep)

    assert result == "done"
    assert fetch.count == 3  # type: ignore[attr-defined]
    assert time.sleeps == [5, 5]


def test_poll_fetches_at_once_and_does_not_sleep_when_first_result_is_done() -> None:
    time = FakeTime(1000.0)
    fetch = results("done")

    assert poll(fetch, is_done, deadline=Deadline(30, time.clock), interval=5, sleep=time.sleep)
    assert fetch.count == 1  # type: ignore[attr-defined]
    assert time.sleeps == []


def test_poll_with_deadline_returns_last_result_and_cuts_last_pause_at_the_deadline() -> None:
    time = FakeTime(1000.0)
    fetch = results("t0", "t5", "t10", "t12", "too-late")

    result = poll(fetch, is_done, deadline=Deadline(12, time.clock), interval=5, sleep=time.sleep)

    assert result == "t12"
    assert time.sleeps == [5, 5, 2]
    assert fetch.count == 4  # type: ignore[attr-defined]
    assert time.now == 1012.0


def test_poll_with_zero_timeout_fetches_once_and_returns_without_sleeping() -> None:
    time = FakeTime(1000.0)
    fetch = results("pending")

    result = poll(fetch, is_done, deadline=Deadline(0, time.clock), interval=5, sleep=time.sleep)

    assert result == "pending"
    assert fetch.count == 1  # type: ignore[attr-defined]
    assert time.sleeps == []


def test_poll_interval_longer_than_timeout_sleeps_only_until_the_deadline() -> None:
    time = FakeTime(1000.0)
    fetch = results("t0", "t3")

    result = poll(fetch, is_done, deadline=Deadline(3, time.clock), interval=60, sleep=time.sleep)

    assert result == "t3"
    assert time.sleeps == [3]


def test_poll_interval_zero_never_sleeps_for_any_time() -> None:
    time = FakeTime(1000.0)
    fetch = results("a", "b", "c", "done")

    result = poll(fetch, is_done, deadline=Deadline(None, time.clock), interval=0, sleep=time.sleep)

    assert result == "done"
    assert fetch.count == 4  # type: ignore[attr-defined]
    assert not any(time.sleeps)
    assert time.now == 1000.0


def test_poll_lets_the_fetch_exception_propagate_unchanged() -> None:
    time = FakeTime(1000.0)
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


# -- the outage policy ------------------------------------------------------------------------

DOWN = ConnectionFailedError("connection refused", method="GET", url="http://x/api/r")


def script(*steps: Any) -> Callable[[], Any]:
    """A fetch that plays ``steps`` in turn (an exception is raised), then repeats the last."""
    queue = list(steps)

    def fetch() -> Any:
        step = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(step, BaseException):
            raise step
        return step

    return fetch


@pytest.mark.parametrize(
    "error, transient",
    [
        (DOWN, True),
        (ServerError("503", status_code=503, method="GET", url="u", attempts=6), True),
        (RateLimitedError("429", retry_after=None, status_code=429), True),
        (FlowRunNotFoundError("gone", flow_run_id="x", status_code=404), False),
        (ValueError("bug"), False),
    ],
)
def test_only_failures_to_answer_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_wait_polls_on_through_an_outage_with_the_last_result() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=60)
    fetch = script("pending", DOWN, DOWN, DOWN, "done")

    seen = list(poller.rounds(fetch, is_done, deadline=Deadline(None, time.clock), interval=5))

    assert seen == ["pending", "pending", "pending", "pending", "done"]
    assert time.sleeps == [5, 5, 5, 5]


def test_an_outage_longer_than_the_tolerance_raises_the_last_error() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=12)
    fetch = script("pending", DOWN)

    with pytest.raises(ConnectionFailedError):
        poller.poll(fetch, is_done, deadline=Deadline(None, time.clock), interval=5)

    assert time.now - 1000 == 20  # failed at 5, 10, 15 (10 s into the outage), 20 (15 s): raised


def test_an_answer_ends_the_outage_and_restarts_its_clock() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=12)
    fetch = script("pending", DOWN, DOWN, "pending", DOWN, DOWN, "done")

    result = poller.poll(fetch, is_done, deadline=Deadline(None, time.clock), interval=5)

    assert result == "done"


def test_a_failure_without_an_earlier_result_is_raised_at_once() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock)

    with pytest.raises(ConnectionFailedError):
        poller.poll(script(DOWN), is_done, deadline=Deadline(None, time.clock), interval=5)
    assert time.sleeps == []


def test_a_known_result_given_up_front_carries_the_first_poll_through_an_outage() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock)
    fetch = script(DOWN, "done")

    result = poller.poll(
        fetch, is_done, deadline=Deadline(None, time.clock), interval=5, known="created"
    )

    assert result == "done"
    assert NOTHING is not None and repr(NOTHING) == "NOTHING"


def test_a_refusal_is_raised_at_once_even_with_a_known_result() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock)
    missing = FlowRunNotFoundError("gone", flow_run_id="x", status_code=404)

    with pytest.raises(FlowRunNotFoundError):
        poller.poll(
            script("pending", missing), is_done, deadline=Deadline(None, time.clock), interval=5
        )
    assert time.sleeps == [5]


def test_a_deadline_passing_during_an_outage_ends_the_wait_with_the_last_result() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=1000)

    result = poller.poll(
        script("pending", DOWN), is_done, deadline=Deadline(12, time.clock), interval=5
    )

    assert result == "pending"
    assert time.sleeps == [5, 5, 2]


def test_a_retry_after_longer_than_what_is_left_is_slept_out_and_the_wait_ends() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock)
    limited = RateLimitedError("429", retry_after=30, status_code=429)

    result = poller.poll(
        script("pending", limited), is_done, deadline=Deadline(8, time.clock), interval=5
    )

    assert result == "pending"
    assert time.sleeps == [5, 3]  # one poll at 5 s, then the rest of the 8 s


# -- re-reads after final events ----------------------------------------------------------


class StubWatch:
    """A watch whose events named ``finals``; it never cuts a pause short, and records each."""

    active = True

    def __init__(self, finals: Set[uuid.UUID]) -> None:
        self._finals = frozenset(finals)
        self.waits: List[float] = []

    def update(self, run_ids: Collection[uuid.UUID]) -> None:
        pass

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return False

    def finals(self) -> AbstractSet[uuid.UUID]:
        return self._finals

    def close(self) -> None:
        pass


class StubWakeups:
    def __init__(self, watch: StubWatch) -> None:
        self._watch = watch
        self.all_final: List[bool] = []

    def watch(self, run_ids: Collection[uuid.UUID], *, all_final: bool = False) -> StubWatch:
        self.all_final.append(all_final)
        return self._watch


A, B = uuid.uuid4(), uuid.uuid4()


@pytest.mark.parametrize(
    ("finals", "all_final", "quick"),
    [
        ({A}, False, True),  # a wait for any run: A's state is being committed
        ({A}, True, False),  # a wait for all: B is not final yet, no point re-reading
        ({A, B}, True, True),  # every run pending had its event: commits under way
        (set(), False, False),
    ],
)
def test_a_quick_re_read_follows_final_events_that_the_record_does_not_show_yet(
    finals: Set[uuid.UUID], all_final: bool, quick: bool
) -> None:
    watch = StubWatch(finals)
    wakeups = StubWakeups(watch)
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock, wakeups=wakeups)
    fetch = results("pending", "pending", "done")  # the record: A and B not final, twice

    seen = list(
        poller.rounds(
            fetch,
            is_done,
            deadline=Deadline(None, time.clock),
            interval=30.0,
            runs=lambda: (A, B),
            all_final=all_final,
        )
    )

    assert seen == ["pending", "pending", "done"]
    assert wakeups.all_final == [all_final]
    assert watch.waits == [RECHECK_INTERVAL if quick else 30.0] * 2
    assert time.sleeps == []  # paused on the watch, never on sleep


# -- what an outage logs ----------------------------------------------------------------------

BUSY = ServerError("GET u answered 503", status_code=503, method="GET", url="u", attempts=6)


def slow(time: FakeTime, seconds: float, *steps: Any) -> Callable[[], Any]:
    """``script(*steps)``, each failed step taking ``seconds`` (a request's own retries)."""
    play = script(*steps)

    def fetch() -> Any:
        try:
            return play()
        except Exception:
            time.advance(seconds)
            raise

    return fetch


def outage_log(caplog: pytest.LogCaptureFixture) -> List[Any]:
    """(level, message) of each record logged to ``deploytrigger``."""
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "deploytrigger"]


def test_the_first_failed_poll_warns_at_once_with_a_rounded_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="deploytrigger")
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=300)
    fetch = slow(time, 90, "pending", DOWN, "done")  # 90 s: the transport's retries

    poller.poll(fetch, is_done, deadline=Deadline(None, time.clock), interval=5)

    assert outage_log(caplog) == [
        (
            "WARNING",
            "the server is unreachable (connection refused); "
            "the wait keeps trying for up to about 5 min more",
        ),
        ("INFO", "the server answers again after about 95 s; the wait goes on"),
    ]


def test_outage_warnings_repeat_at_most_once_a_minute_with_the_time_so_far() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=300)
    warned: List[float] = []
    messages: List[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno == logging.WARNING:
                warned.append(time.now - 1000)
                messages.append(record.getMessage())

    handler = Recorder()
    logging.getLogger("deploytrigger").addHandler(handler)
    try:
        with pytest.raises(ServerError):
            poller.poll(
                script("pending", BUSY), is_done, deadline=Deadline(None, time.clock), interval=5
            )
    finally:
        logging.getLogger("deploytrigger").removeHandler(handler)

    assert warned == [5, 65, 125, 185, 245]  # polls failed every 5 s from 5 s; raised at 305
    assert messages[0] == (
        "the server cannot answer (GET u answered 503); "
        "the wait keeps trying for up to about 5 min more"
    )
    assert messages[1] == (
        "the server still cannot answer after about 60 s; "
        "the wait keeps trying for up to about 4 min more"
    )
    assert messages[4].startswith("the server still cannot answer after about 4 min;")


def test_an_outage_counts_from_the_start_of_the_first_failed_poll() -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=300)
    fetch = slow(time, 90, "pending", DOWN)

    with pytest.raises(ConnectionFailedError):
        poller.poll(fetch, is_done, deadline=Deadline(None, time.clock), interval=5)

    # Polls begin at 5, 100, 195, 290 and each fails 90 s later; the one that ends at 380
    # (375 s after the outage began at 5) raises: at most tolerance + one poll's retries.
    assert time.now - 1000 == 380


def test_the_warning_says_the_deadline_when_it_comes_first_and_no_end_without_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=300)
    poller.poll(script("pending", DOWN), is_done, deadline=Deadline(50, time.clock), interval=5)
    patient = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=float("inf"))
    patient.poll(script("pending", DOWN), is_done, deadline=Deadline(20, time.clock), interval=5)

    warnings = [m for level, m in outage_log(caplog) if level == "WARNING"]
    assert warnings[0].endswith("the wait keeps trying for up to about 45 s more")
    assert warnings[-1].endswith("the wait keeps trying for up to about 15 s more")
    unbounded = Poller(sleep=time.sleep, clock=time.clock, outage_tolerance=float("inf"))
    caplog.clear()
    unbounded.poll(
        script("pending", DOWN, "done"), is_done, deadline=Deadline(None, time.clock), interval=5
    )
    assert outage_log(caplog)[0][1].endswith("the wait keeps trying until it answers")


def test_a_wait_without_an_outage_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="deploytrigger")
    time = FakeTime(1000.0)
    poller = Poller(sleep=time.sleep, clock=time.clock)

    poller.poll(script("pending", "done"), is_done, deadline=Deadline(None, time.clock), interval=5)

    assert outage_log(caplog) == []
