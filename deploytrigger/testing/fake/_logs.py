"""The fake's task runs and logs: their endpoints, and storing a log line.

A part of the backend (``Backend``, ``backend.py``), which holds
the records and the lock; each endpoint answers under that lock.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping

from . import _bodies as bodies
from . import _records as records
from ._bodies import Answer
from ._records import new_id


class TaskRunAndLogEndpoints:
    """Task runs (the placeholders of subflows) and log lines (the backend's records)."""

    _lock: threading.RLock
    _clock: Callable[[], float]
    runs: Dict[str, Any]
    task_runs: Dict[str, Dict[str, Any]]
    logs: List[Dict[str, Any]]

    if TYPE_CHECKING:

        def _advance(self, run: Any, now: float) -> None: ...

    def add_log(self, body: Mapping[str, Any]) -> None:
        """Store one log line (a ``POST /logs/`` item)."""
        with self._lock:
            self.logs.append(records.log_json(new_id(), self._clock(), body))

    def _create_task_run(self, *, body: Any, **_: Any) -> Answer:
        flow_run_id = bodies.canonical(bodies.field(body, "flow_run_id", str))
        task_key = bodies.field(body, "task_key", str)
        dynamic_key = bodies.field(body, "dynamic_key", str)
        run = self.runs.get(flow_run_id)
        if run is None:
            return 409, {
                "detail": "Data integrity conflict. This usually means a unique or foreign "
                "key constraint was violated. See server logs for details."
            }
        for task_run in self.task_runs.values():
            if (task_run["flow_run_id"], task_run["task_key"], task_run["dynamic_key"]) == (
                flow_run_id,
                task_key,
                dynamic_key,
            ):
                return 200, task_run
        task_run_id = bodies.chosen_id(body)
        if task_run_id in self.task_runs:  # the primary key is taken by another task run
            return 409, {
                "detail": "Data integrity conflict. This usually means a unique or foreign "
                "key constraint was violated. See server logs for details."
            }
        now = self._clock()
        given = bodies.mapping(body.get("state"))
        state = records.state_json(
            str(given.get("type") or "PENDING"),
            timestamp=now,
            state_id=new_id(),
            name=given.get("name"),
            message=given.get("message"),
            flow_run_id=flow_run_id,
            task_run_id=task_run_id,
        )
        task_run = records.task_run_json(
            task_run_id=task_run_id,
            created=now,
            body={**body, "flow_run_id": flow_run_id},
            flow_run_labels=run.base["labels"],
            state=state,
        )
        self.task_runs[task_run_id] = task_run
        return 201, task_run

    def _filter_task_runs(self, *, body: Any, **_: Any) -> Answer:
        limit, offset = bodies.page(body)
        now = self._clock()
        for run in self.runs.values():  # placeholders follow their subflows' states
            self._advance(run, now)
        flow_run_ids = bodies.any_of(body, "task_runs", "flow_run_id", uuids=True)
        found = [
            task_run
            for task_run in sorted(self.task_runs.values(), key=lambda t: t["id"], reverse=True)
            if flow_run_ids is None or task_run["flow_run_id"] in flow_run_ids
        ]
        return 200, found[offset : offset + limit]

    def _create_logs(self, *, body: Any, **_: Any) -> Answer:
        if not isinstance(body, list):
            raise bodies.Invalid([], "Input should be a valid list", body, "list_type")
        for item in body:
            self.add_log(item if isinstance(item, dict) else {})
        return 201, None

    def _filter_logs(self, *, body: Any, **_: Any) -> Answer:
        limit, offset = bodies.page(body)
        run_ids = bodies.any_of(body, "logs", "flow_run_id", uuids=True)
        logs = body.get("logs") if isinstance(body, dict) else None
        window = logs.get("timestamp") if isinstance(logs, dict) else None
        after = records.parse_time(window.get("after_")) if isinstance(window, dict) else None
        found = [
            log
            for log in sorted(self.logs, key=lambda log: records.parse_time(log["timestamp"]) or 0)
            if (run_ids is None or log["flow_run_id"] in run_ids)
            and (after is None or (records.parse_time(log["timestamp"]) or 0) >= after)
        ]
        return 200, found[offset : offset + limit]
