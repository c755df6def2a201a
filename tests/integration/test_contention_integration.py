"""Patience under contention: 100 threads link children to one parent on the default SQLite server.

SQLite answers bursts of concurrent writes with 503 ("database is busy") and
resets connections; with its default retry budget a client must get every call
through, and every child must be linked to its own placeholder task run.
Children are scheduled far in the future so that nothing executes them.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Dict, List

import pytest
from helpers.server_http import raw, task_runs_of

import deploytrigger
from deploytrigger import Client

pytestmark = pytest.mark.integration

THREADS = 100
FAR_FUTURE = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


def flow_runs(api_url: str, ids: List[str]) -> List[Dict[str, Any]]:
    response = raw.post(
        f"{api_url}/flow_runs/filter",
        json={"flow_runs": {"id": {"any_": ids}}, "limit": 200},
        timeout=60,
    )
    response.raise_for_status()
    result: List[Dict[str, Any]] = response.json()
    return result


def test_100_threads_under_one_parent_all_get_through_with_their_own_placeholder(
    api_url: str,
) -> None:
    start = threading.Barrier(THREADS)

    with Client(api_url, pool_size=THREADS) as client:  # default retry settings

        def trigger(i: int) -> deploytrigger.FlowRun:
            start.wait(60)
            return client.run_deployment(
                "add/add-dep", parameters={"x": i}, scheduled_time=FAR_FUTURE, timeout=0
            )

        pool = deploytrigger.ParentAwareThreadPoolExecutor(max_workers=THREADS)
        with pool, client.flow_run("deploytrigger-contention", name="100-threads") as parent:
            children = list(pool.map(trigger, range(THREADS)))  # re-raises any error

    placeholders = {run["id"]: run for run in task_runs_of(api_url, parent.id)}
    links = [str(child.parent_task_run_id) for child in children]
    assert len(placeholders) == THREADS
    assert len(set(links)) == THREADS and set(links) == set(placeholders)
    stored = flow_runs(api_url, [str(child.id) for child in children])
    assert len(stored) == THREADS
    assert {run["parent_task_run_id"] for run in stored} == set(placeholders)
    assert sorted(run["parameters"]["x"] for run in stored) == list(range(THREADS))
