"""A scripted stand-in for the Prefect API, on ``responses``, for handle and batch tests.

Each run follows a script of state types: the n-th time the server is asked
for a run (by ``GET /flow_runs/{id}`` or ``POST /flow_runs/filter``) it answers
with the n-th state of its script, the last one forever after. Time is a
:class:`FakeTime`: ``sleep`` only advances the clock, so nothing sleeps.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
import requests
import responses

from deploytrigger import Client
from helpers.fake_time import FakeTime

API = "http://prefect.test/api"
DEPLOYMENT_ID = "2c7d3f0e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
FLOW_ID = "9e8d7c6b-5a49-4837-a261-5f4e3d2c1b0a"
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


class FakePrefect:
    """Scripted runs behind the flow-run endpoints of ``API``."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.scripts: Dict[str, List[str]] = {}
        self.reads: Dict[str, int] = {}
        self.end_offsets: Dict[str, float] = {}
        self.parameters: Dict[str, Dict[str, Any]] = {}
        self.filter_bodies: List[Dict[str, Any]] = []
        self.set_state_bodies: List[Tuple[str, Dict[str, Any]]] = []
        self.set_state_answer: Dict[str, Any] = {"status": "ACCEPT"}
        self.created: List[Dict[str, Any]] = []
        self._new_script = ["SCHEDULED", "RUNNING", "COMPLETED"]
        self.outage: List[Optional[int]] = []  # what the next reads do (see fail_next)
        self.outage_answers = 0
        self.log_lines: List[Tuple[int, Dict[str, Any]]] = []  # (reads before it shows, line)
        self.new_run_logs: List[Tuple[str, float, int]] = []  # add_log's, for each run added
        self._lock = threading.Lock()
        mock.add_callback(
            responses.POST, f"{API}/flow_runs/filter", callback=self._filter, content_type=None
        )
        mock.add_callback(
            responses.GET,
            re.compile(rf"{re.escape(API)}/flow_runs/[0-9a-f-]+$"),
            callback=self._read,
        )
        mock.add_callback(
            responses.POST,
            re.compile(rf"{re.escape(API)}/flow_runs/[0-9a-f-]+/set_state$"),
            callback=self._set_state,
        )
        mock.add_callback(responses.POST, f"{API}/logs/filter", callback=self._logs)
        deployment = {
            "id": DEPLOYMENT_ID,
            "name": "add-dep",
            "flow_id": FLOW_ID,
            "parameters": {"y": 10},
        }
        mock.add(responses.GET, f"{API}/deployments/name/add/add-dep", json=deployment)
        mock.add(responses.GET, f"{API}/deployments/{DEPLOYMENT_ID}", json=deployment)
        mock.add_callback(
            responses.POST,
            f"{API}/deployments/{DEPLOYMENT_ID}/create_flow_run",
            callback=self._create,
        )

    # -- scripting ---------------------------------------------------------------------

    def add_run(self, *script: str, end_offset: Optional[float] = None) -> str:
        """A new run following ``script`` (state types); its id."""
        run_id = str(uuid.uuid4())
        with self._lock:
            self.scripts[run_id] = list(script) or ["SCHEDULED"]
            self.reads[run_id] = 0
            if end_offset is not None:
                self.end_offsets[run_id] = end_offset
        for message, at, shown_after in self.new_run_logs:
            self.add_log(run_id, message, at, shown_after=shown_after)
        return run_id

    def add_runs(self, count: int, *script: str) -> List[str]:
        return [self.add_run(*script) for _ in range(count)]

    def add_log(self, run_id: str, message: str, at: float, *, shown_after: int = 0) -> None:
        """A log line of ``run_id`` stamped ``at`` seconds after the epoch, which
        ``POST /logs/filter`` answers once the run has been read ``shown_after`` times."""
        line = {
            "id": str(uuid.uuid4()),
            "flow_run_id": run_id,
            "timestamp": (EPOCH + timedelta(seconds=at)).isoformat(),
            "level": 20,
            "message": message,
            "name": "prefect.flow_runs",
        }
        with self._lock:
            self.log_lines.append((shown_after, line))

    def script_for_new_runs(self, *script: str) -> None:
        """The script that runs created through ``create_flow_run`` follow."""
        self._new_script = list(script)

    def run_json(self, run_id: str, read: int) -> Dict[str, Any]:
        script = self.scripts[run_id]
        index = min(read, len(script) - 1)
        state_type = script[index]
        final = state_type in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
        end = EPOCH + timedelta(seconds=self.end_offsets.get(run_id, index))
        return {
            "id": run_id,
            "name": f"run-{run_id[:8]}",
            "flow_id": FLOW_ID,
            "deployment_id": DEPLOYMENT_ID,
            "parameters": self.parameters.get(run_id, {}),
            "state": {
                "type": state_type,
                "name": state_type.title(),
                "message": "boom" if state_type == "FAILED" else None,
                "timestamp": (EPOCH + timedelta(seconds=index)).isoformat(),
            },
            "end_time": end.isoformat() if final else None,
        }

    def _next(self, run_id: str) -> Dict[str, Any]:
        with self._lock:
            read = self.reads[run_id]
            self.reads[run_id] = read + 1
        return self.run_json(run_id, read)

    def fail_next(self, count: int, status: int = 503, after: int = 0) -> None:
        """Make ``count`` reads (runs, filters, logs) fail after ``after`` more succeed.

        A failed read answers ``status``, or has its connection refused when it is 0.
        """
        with self._lock:
            self.outage.extend([None] * after + [status] * count)

    def _down(self) -> Optional[Tuple[int, Dict[str, str], str]]:
        """The answer of a read during an outage, or None when the server answers."""
        with self._lock:
            status = self.outage.pop(0) if self.outage else None
            if status is None:
                return None
            self.outage_answers += 1
        if status == 0:
            raise requests.exceptions.ConnectionError("connection refused (scripted outage)")
        return status, {}, json.dumps({"detail": "scripted outage"})

    # -- endpoints ---------------------------------------------------------------------

    def _logs(self, request: Any) -> Tuple[int, Dict[str, str], str]:
        down = self._down()
        if down:
            return down
        body = json.loads(request.body)
        ids = body["logs"]["flow_run_id"]["any_"]
        after = body["logs"].get("timestamp", {}).get("after_")
        with self._lock:
            shown = [
                line
                for reads, line in self.log_lines
                if line["flow_run_id"] in ids and self.reads.get(line["flow_run_id"], 0) >= reads
            ]
        if after is not None:
            since = datetime.fromisoformat(after)
            shown = [line for line in shown if datetime.fromisoformat(line["timestamp"]) >= since]
        shown.sort(key=lambda line: line["timestamp"])
        offset = body.get("offset", 0)
        return 200, {}, json.dumps(shown[offset : offset + body["limit"]])

    def _filter(self, request: Any) -> Tuple[int, Dict[str, str], str]:
        down = self._down()
        if down:
            return down
        body = json.loads(request.body)
        with self._lock:
            self.filter_bodies.append(body)
        ids = body["flow_runs"]["id"]["any_"]
        assert body["limit"] <= 200, "the server refuses a limit over 200"
        assert len(ids) <= body["limit"]
        runs = [self._next(run_id) for run_id in ids if run_id in self.scripts]
        return 200, {"Content-Type": "application/json"}, json.dumps(runs)

    def _read(self, request: Any) -> Tuple[int, Dict[str, str], str]:
        down = self._down()
        if down:
            return down
        run_id = request.url.rsplit("/", 1)[-1]
        if run_id not in self.scripts:
            return 404, {}, json.dumps({"detail": "Flow run not found"})
        return 200, {}, json.dumps(self._next(run_id))

    def _set_state(self, request: Any) -> Tuple[int, Dict[str, str], str]:
        run_id = request.url.rsplit("/", 2)[-2]
        body = json.loads(request.body)
        with self._lock:
            self.set_state_bodies.append((run_id, body))
            then = self.set_state_answer.get("then")
            if then:
                self.scripts[run_id] = [then]
                self.reads[run_id] = 0
        answer = {k: v for k, v in self.set_state_answer.items() if k != "then"}
        return 201, {}, json.dumps(answer)

    def _create(self, request: Any) -> Tuple[int, Dict[str, str], str]:
        body = json.loads(request.body)
        run_id = self.add_run(*self._new_script)
        with self._lock:
            self.created.append(body)
            self.reads[run_id] = 1  # the create answer is read 0
            self.parameters[run_id] = {"y": 10, **body.get("parameters", {})}
        return 201, {}, json.dumps(self.run_json(run_id, 0))

    # -- inspecting ------------------------------------------------------------------

    def filter_ids(self) -> List[List[str]]:
        """The ids of each ``POST /flow_runs/filter``, in order."""
        return [body["flow_runs"]["id"]["any_"] for body in self.filter_bodies]


def make_client(time: FakeTime, **kwargs: Any) -> Client:
    return Client(API, sleep=time.sleep, clock=time.clock, **kwargs)


def states(runs: Sequence[Any]) -> List[str]:
    return [run.state.type.value for run in runs]


# -- fixtures: import them into a test module to use them ---------------------------------


@pytest.fixture
def fake() -> Iterator[FakePrefect]:
    """The scripted server; nothing reaches a network."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakePrefect(mock)


@pytest.fixture
def time() -> FakeTime:
    """The fake clock the client sleeps on."""
    return FakeTime()


@pytest.fixture
def client(time: FakeTime) -> Iterator[Client]:
    """A client on the fake clock."""
    with make_client(time) as shared:
        yield shared
