"""The request-rate budget: a token bucket on an injected clock, adapting to 429s."""

from __future__ import annotations

import threading
from typing import List

import pytest
from helpers.fake_time import FakeTime

from deploytrigger._http.ratelimit import RateBudget, shared_budget


def slots(budget: RateBudget, count: int) -> List[float]:
    """The wait before each of ``count`` requests made at the same instant."""
    return [budget.reserve() for _ in range(count)]


def test_a_quiet_budget_lets_one_seconds_worth_through_at_once_then_spaces_requests() -> None:
    time = FakeTime(1000.0)
    budget = RateBudget(600, clock=time.clock, sleep=time.sleep)  # 10 a second

    waits = slots(budget, 13)

    assert waits[:10] == pytest.approx([0.0] * 10)
    assert waits[10:] == pytest.approx([0.1, 0.2, 0.3])


def test_a_low_budget_still_lets_one_request_through_at_once() -> None:
    time = FakeTime(1000.0)
    budget = RateBudget(30, clock=time.clock, sleep=time.sleep)  # one every 2 s

    assert slots(budget, 3) == pytest.approx([0.0, 2.0, 4.0])


def test_requests_over_a_minute_never_exceed_the_budget_plus_the_burst() -> None:
    time = FakeTime(1000.0)
    budget = RateBudget(120, clock=time.clock, sleep=time.sleep)
    sent: List[float] = []
    while time.now < 1000.0 + 60.0:
        budget.acquire()
        sent.append(time.now)

    in_first_minute = [t for t in sent if t < 1000.0 + 60.0]
    assert len(in_first_minute) <= 120 + 2


def test_acquire_sleeps_until_the_slot() -> None:
    time = FakeTime(1000.0)
    budget = RateBudget(60, clock=time.clock, sleep=time.sleep)

    assert budget.acquire() == 0.0
    assert budget.acquire() == pytest.approx(1.0)
    assert time.sleeps == pytest.approx([1.0])


def test_a_quiet_spell_refills_the_burst_but_no_more() -> None:
    time = FakeTime(1000.0)
    budget = RateBudget(600, clock=time.clock, sleep=time.sleep)
    slots(budget, 10)
    time.sleep(60.0)

    assert slots(budget, 11)[-1] == pytest.approx(0.1)


def test_a_429_halves_the_rate_and_successes_give_it_back_step_by_step() -> None:
    time = FakeTime(1000.0)
    budget = RateBudget(1000, clock=time.clock, sleep=time.sleep)

    budget.limited()
    assert budget.rate == 500
    budget.limited()
    assert budget.rate == 250
    for _ in range(10):
        budget.succeeded()
    assert budget.rate == pytest.approx(350)
    for _ in range(100):
        budget.succeeded()
    assert budget.rate == 1000


def test_the_rate_never_falls_below_its_floor() -> None:
    budget = RateBudget(1000)
    for _ in range(50):
        budget.limited()
    assert budget.rate == 10  # 1 % of the budget

    small = RateBudget(30)
    for _ in range(50):
        small.limited()
    assert small.rate == 1  # one request a minute at least


def test_a_lowered_rate_spaces_requests_further_apart() -> None:
    time = FakeTime(1000.0)
    budget = RateBudget(60, clock=time.clock, sleep=time.sleep)
    budget.reserve()
    budget.limited()  # 30 a minute: 2 s apart

    assert budget.reserve() == pytest.approx(1.0)  # the slot booked at the old rate
    assert budget.reserve() == pytest.approx(3.0)


def test_threads_get_distinct_slots() -> None:
    time = FakeTime(1000.0)
    budget = RateBudget(60, clock=time.clock, sleep=lambda s: None)
    waits: List[float] = []
    lock = threading.Lock()

    def take() -> None:
        wait = budget.reserve()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(waits) == pytest.approx([float(n) for n in range(20)])


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateBudget(0)


def test_shared_budget_is_one_per_url_and_takes_the_lowest_budget() -> None:
    first = shared_budget("http://ratelimit-unit.test/api", 300)
    again = shared_budget("http://ratelimit-unit.test/api", 600)
    lower = shared_budget("http://ratelimit-unit.test/api", 100)

    assert first is again is lower
    assert first.per_minute == 100 and first.rate == 100
    assert shared_budget("http://ratelimit-unit-2.test/api", 600) is not first
