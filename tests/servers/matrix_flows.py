"""Flows served by every server of the version matrix (Prefect 2.20 and 3.x alike).

Run by path with a server environment's interpreter (``LocalPrefect(...,
python=...)``); it uses only what Prefect 2.20 and 3.x share. ``parent``
calls Prefect's own ``run_deployment`` so that tests can compare the
placeholder task run it writes with deploytrigger's.
"""

import time
from typing import Any, Dict, Optional

from prefect import flow, get_run_logger, serve, task
from prefect.deployments import run_deployment


@flow
def add(a: int, b: int = 1) -> int:
    get_run_logger().info("adding %s and %s", a, b)
    return a + b


@flow
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@flow
def sleepy(seconds: float = 30.0) -> float:
    get_run_logger().info("sleeping %s s", seconds)
    time.sleep(seconds)
    return seconds


@flow
def parent(child: str = "add/add-dep", parameters: Optional[Dict[str, Any]] = None) -> str:
    """Start ``child`` with Prefect's own run_deployment (no wait); return the child run's id."""
    run = run_deployment(child, parameters=parameters or {"a": 1, "b": 2}, timeout=0)
    return str(run.id)


@task
def trigger_in_task(child: str) -> str:
    return str(run_deployment(child, parameters={"a": 1, "b": 2}, timeout=0).id)


@flow(name="parent-task")
def parent_task(child: str = "add/add-dep") -> str:
    """The same from inside a task: Prefect 3.6+ records that task in ``__parents__``."""
    return trigger_in_task(child)


if __name__ == "__main__":
    serve(
        add.to_deployment(name="add-dep", tags=["matrix"]),
        fail.to_deployment(name="fail-dep"),
        sleepy.to_deployment(name="sleepy-dep"),
        parent.to_deployment(name="parent-dep"),
        parent_task.to_deployment(name="parent-task-dep"),
    )
