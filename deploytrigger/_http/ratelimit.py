"""A request-rate budget: at most N requests a minute to one API, shared by the whole process.

``Client(max_requests_per_minute=N)`` (or ``DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE``)
makes every request of every client of this process that talks to the same
API URL take a slot from one :class:`RateBudget` first: polls, retries and
token fetches included. A thread that finds no free slot sleeps until its own
slot comes; slots are handed out first come, first served.

The budget is a token bucket (written as its equivalent, the generic cell rate
algorithm): requests are spaced ``60 / rate`` seconds apart on average, with a
burst of up to one second's worth (at least one request) after a quiet spell.

It adapts like TCP's congestion control (additive increase, multiplicative
decrease): a 429 answer halves the current rate (never below 1 % of the budget,
nor below one request a minute); each successful answer (status below 400)
gives back 1 % of the budget, up to the budget; other errors change nothing. A
server that limits below the budget is thus probed gently instead of hammered,
and a passing 429 costs little.

When clients ask for different budgets for the same URL, the lowest applies.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Callable, Dict, Optional

DECREASE_FACTOR = 0.5
"""A 429 multiplies the current rate by this."""

INCREASE_SHARE = 0.01
"""Each success adds this share of the budget back to the current rate."""

FLOOR_SHARE = 0.01
"""The current rate never falls below this share of the budget."""


class RateBudget:
    """At most ``per_minute`` requests a minute, adapting to 429s; safe to share between threads.

    Args:
        per_minute: the budget, requests per minute (> 0).
        clock: a monotonic clock in seconds (tests inject a fake).
        sleep: how to wait for a slot (tests inject a fake).
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not per_minute > 0:
            raise ValueError(f"per_minute must be > 0, not {per_minute!r}")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.per_minute = float(per_minute)
        self.rate = self.per_minute  # the current rate, requests per minute
        self._next = -math.inf  # when the next request is due (-inf: a full burst now)

    def __repr__(self) -> str:
        return f"RateBudget(per_minute={self.per_minute:g}, rate={self.rate:g})"

    def _burst(self) -> float:
        """How many requests may go at once after a quiet spell: one second's worth."""
        return max(1.0, self.rate / 60.0)

    def reserve(self) -> float:
        """Take the next slot; return the seconds to wait before sending (0: now)."""
        with self._lock:
            now = self._clock()
            interval = 60.0 / self.rate
            due = max(self._next, now - (self._burst() - 1.0) * interval)
            self._next = due + interval
            return max(0.0, due - now)

    def acquire(self, max_wait: Optional[float] = None) -> float:
        """Wait for the next slot; return the seconds it was away.

        With ``max_wait``, wait no longer than that: a return value above
        ``max_wait`` means the slot was not reached (the caller should not send).
        """
        wait = self.reserve()
        pause = wait if max_wait is None else min(wait, max_wait)
        if pause > 0:
            self._sleep(pause)
        return wait

    def limited(self) -> None:
        """The server answered 429: halve the current rate (down to the floor)."""
        with self._lock:
            floor = max(1.0, self.per_minute * FLOOR_SHARE)
            self.rate = max(min(floor, self.per_minute), self.rate * DECREASE_FACTOR)

    def succeeded(self) -> None:
        """The server answered without 429: give back some of the rate (up to the budget)."""
        if self.rate >= self.per_minute:
            return
        with self._lock:
            self.rate = min(self.per_minute, self.rate + self.per_minute * INCREASE_SHARE)

    def lower_to(self, per_minute: float) -> None:
        """Make the budget ``per_minute`` if that is lower than it is."""
        with self._lock:
            if per_minute < self.per_minute:
                self.per_minute = float(per_minute)
                self.rate = min(self.rate, self.per_minute)


_budgets: Dict[str, RateBudget] = {}
_budgets_lock = threading.Lock()


def shared_budget(api_url: str, per_minute: float) -> RateBudget:
    """The process's budget for ``api_url``, made on first use; the lowest ``per_minute`` wins."""
    with _budgets_lock:
        budget = _budgets.get(api_url)
        if budget is None:
            budget = _budgets[api_url] = RateBudget(per_minute)
        else:
            budget.lower_to(per_minute)
        return budget


def _forget_after_fork() -> None:
    """A forked child starts with fresh budgets and locks (its parent's may be held)."""
    global _budgets_lock
    _budgets.clear()
    _budgets_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
