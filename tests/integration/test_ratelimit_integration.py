"""The request-rate budget against the real server, behind a proxy that rate limits.

The proxy answers 429 to requests above ``LIMIT`` a minute (a token bucket
holding one second's worth). A client with the same budget must trigger 500
runs from a thread pool with no failure, and the proxy must never see more than
the budget allows in any 5-second window (plus the one-second burst); a 429 now
and then (requests bunching up on the way) is allowed, a flood of them is not.
The test runs in about 30 s: the budget is high enough to be quick and low
enough that the server could go faster (without the budget the proxy refuses
hundreds of requests).

On a loaded machine the SQLite-backed server answers 503 ("database is busy")
to many of 32 concurrent creates, and one create can meet it a dozen times in a
row (the default 90 s retry budget ran out so, after 12 attempts): each request
may retry for ``RETRY_BUDGET`` seconds here, because what is under test is the
rate budget (every retry takes its slot from it too), not how soon a busy
server gets through its writes.
"""

from __future__ import annotations

import datetime as dt
from typing import List

import pytest

from deploytrigger import Client
from harness.proxy import Proxy

pytestmark = pytest.mark.integration

LIMIT = 1200  # requests a minute: 20 a second, well below what the server can take
TRIGGERS = 500
WINDOW = 5.0  # seconds
FAR_FUTURE = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
RETRY_BUDGET = 600  # seconds one create may spend retrying a busy server's 503s


def most_in_any_window(times: List[float], window: float) -> int:
    """The most requests received within ``window`` seconds of each other."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_500_triggers_keep_to_the_budget_with_no_failure(api_url: str) -> None:
    calls = [
        {"name": "add/add-dep", "parameters": {"x": i}, "scheduled_time": FAR_FUTURE}
        for i in range(TRIGGERS)
    ]
    with Proxy(api_url, max_per_minute=LIMIT) as proxy, Client(
        proxy.api_url, max_requests_per_minute=LIMIT, pool_size=32, retry_budget=RETRY_BUDGET
    ) as client:
        runs = client.run_many(calls, max_workers=32, timeout=0)  # raises on any failure

    assert len({run.id for run in runs}) == TRIGGERS
    actions = proxy.actions()
    allowed = LIMIT / 60.0 * WINDOW + LIMIT / 60.0  # the window's share plus the burst: 120
    # 10 % for requests that bunch up between the client's bucket and the proxy; the
    # same fan-out without a budget measured 196 in a window, with 328 answers 429.
    assert most_in_any_window(proxy.times(), WINDOW) <= allowed * 1.1
    assert actions.get("limited", 0) <= TRIGGERS * 0.02
    assert actions["forward"] >= TRIGGERS
