"""What a progress view shows: finished runs by final state, rows of runs, running times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from helpers.server_json import flow_run_json

from deploytrigger import FlowRun, StateType
from deploytrigger._progress.snapshot import Snapshot, running_for

NOW = datetime(2026, 11, 23, 20, 1, tzinfo=timezone.utc)


def run(state: str, name: str = "run", **fields: Any) -> FlowRun:
    return FlowRun.from_json(flow_run_json(state, name=name, **fields))


def snapshot(*states: str) -> Snapshot:
    return Snapshot(tuple(run(state, f"r{i}") for i, state in enumerate(states)), 12.0, NOW)


def test_finished_counts_the_final_runs_by_final_state_in_the_bar_order() -> None:
    shown = snapshot("RUNNING", "FAILED", "COMPLETED", "COMPLETED", "CANCELLED", "SCHEDULED")
    assert shown.finished == 4
    assert shown.final_counts() == [
        (StateType.COMPLETED, 2),
        (StateType.FAILED, 1),
        (StateType.CANCELLED, 1),
    ]


def test_no_final_run_means_no_count() -> None:
    assert snapshot("RUNNING", "PENDING").final_counts() == []
    assert snapshot("RUNNING", "PENDING").finished == 0


def test_rows_put_failures_first_then_unfinished_runs_then_the_rest_and_count_the_hidden() -> None:
    shown = snapshot("COMPLETED", "RUNNING", "CRASHED", "SCHEDULED", "FAILED", "COMPLETED")
    rows, hidden = shown.rows(4)
    assert [row.name for row in rows] == ["r2", "r4", "r1", "r3"]
    assert hidden == 2
    assert shown.rows(10) == (list(shown.runs[i] for i in (2, 4, 1, 3, 0, 5)), 0)


def test_running_for_counts_until_now_while_running_and_until_the_end_once_final() -> None:
    start = NOW - timedelta(seconds=75)
    running = run("RUNNING", start_time=start.isoformat())
    assert running_for(running, NOW) == 75.0
    ended = run(
        "COMPLETED",
        start_time=start.isoformat(),
        end_time=(start + timedelta(seconds=3)).isoformat(),
    )
    assert running_for(ended, NOW) == 3.0


def test_running_for_is_unknown_before_the_start_or_without_an_end() -> None:
    assert running_for(run("SCHEDULED"), NOW) is None
    cancelled_early = run("CANCELLED", start_time=NOW.isoformat())
    assert running_for(cancelled_early, NOW) is None
