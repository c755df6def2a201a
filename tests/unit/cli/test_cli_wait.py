"""``deploytrigger wait RUN_ID ...`` and ``run --watch``'s exit, over a stubbed API (``responses``).

``cli.main`` runs in-process with captured stdout/stderr; ``--poll-interval 0``
keeps the polls from sleeping. The real server is ``test_cli_wait_integration.py``'s.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
import responses

from deploytrigger import Client, FlowRun, cli
from deploytrigger.cli import _commands, _following, _output

API = "http://prefect.test:4200/api"
FLOW_ID = "9b2d3c4e-5f60-4172-8394-a5b6c7d8e9f0"
DEPLOYMENT_ID = "3c9a7f3e-5b1d-4e2a-9f6c-0d8e7b6a5c41"
FILTER = f"{API}/flow_runs/filter"
LOGS = f"{API}/logs/filter"
PREFECT_ENV = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_PROFILE",
    "PREFECT_API_SSL_CERT_FILE",
    "PREFECT_API_TLS_INSECURE_SKIP_VERIFY",
    "DEPLOYTRIGGER_EVENTS",
)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in PREFECT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setenv("DEPLOYTRIGGER_EVENTS", "off")  # these stubs serve no websocket
    monkeypatch.setenv("PREFECT_API_URL", API)


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_cli(*argv: str, tty: bool = False) -> Tuple[int, str, str]:
    out = io.StringIO()
    err: io.StringIO = TTY() if tty else io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_json(
    run_id: str,
    state_type: str,
    *,
    name: Optional[str] = None,
    message: Optional[str] = None,
    ended: str = "2026-11-23T20:00:05+00:00",
) -> Dict[str, Any]:
    final = state_type in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
    return {
        "id": run_id,
        "name": name or f"run-{run_id[:4]}",
        "flow_id": FLOW_ID,
        "deployment_id": DEPLOYMENT_ID,
        "parameters": {},
        "tags": [],
        "state_type": state_type,
        "expected_start_time": "2026-11-23T20:00:00+00:00",
        "start_time": "2026-11-23T20:00:01+00:00",
        "end_time": ended if final else None,
        "state": {
            "type": state_type,
            "name": state_type.title(),
            "timestamp": ended,
            "message": message,
        },
    }


class Runs:
    """The server's runs: each answers the n-th state of its script on its n-th read."""

    def __init__(self, http: responses.RequestsMock, scripts: Dict[str, Sequence[str]]) -> None:
        self.scripts = {run_id: list(states) for run_id, states in scripts.items()}
        self.reads: Dict[str, int] = {run_id: 0 for run_id in scripts}
        self.filters: List[List[str]] = []
        self.messages: Dict[str, str] = {}
        http.add_callback(responses.POST, FILTER, callback=self._filter)
        http.add_callback(
            responses.GET, re.compile(rf"{re.escape(API)}/flow_runs/[0-9a-f-]+$"), self._read
        )

    def _state(self, run_id: str) -> Dict[str, Any]:
        script = self.scripts[run_id]
        index = min(self.reads[run_id], len(script) - 1)
        self.reads[run_id] += 1
        return run_json(run_id, script[index], message=self.messages.get(run_id))

    def _filter(self, request: Any) -> Tuple[int, Dict[str, str], str]:
        ids = json.loads(request.body)["flow_runs"]["id"]["any_"]
        self.filters.append(ids)
        found = [self._state(run_id) for run_id in ids if run_id in self.scripts]
        return 200, {}, json.dumps(found)

    def _read(self, request: Any) -> Tuple[int, Dict[str, str], str]:
        run_id = request.url.rsplit("/", 1)[1]
        if run_id not in self.scripts:
            return 404, {}, json.dumps({"detail": "Flow run not found"})
        return 200, {}, json.dumps(self._state(run_id))


def ids(count: int) -> List[str]:
    return [str(uuid.UUID(int=index + 1)) for index in range(count)]


# -- outcomes and exit codes ---------------------------------------------------------------


def test_all_completed_exits_0_with_one_line_per_run(http: responses.RequestsMock) -> None:
    a, b = ids(2)
    Runs(http, {a: ["RUNNING", "COMPLETED"], b: ["COMPLETED"]})
    code, out, err = run_cli("wait", a, b, "--poll-interval", "0")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert b in lines[0] and "COMPLETED" in lines[0]  # already final: first
    assert a in lines[1] and "COMPLETED" in lines[1]
    assert err.strip().splitlines()[-1].startswith("2 flow runs  2 Completed  00:0")
    assert "\r" not in err  # no live line in a pipe


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["COMPLETED", "FAILED", "CANCELLED"], 1),
        (["COMPLETED", "CRASHED"], 1),
        (["COMPLETED", "CANCELLED"], 4),
        (["CANCELLED", "CANCELLED"], 4),
        (["COMPLETED", "COMPLETED"], 0),
    ],
)
def test_the_exit_code_is_the_worst_outcome(
    http: responses.RequestsMock, states: List[str], expected: int
) -> None:
    run_ids = ids(len(states))
    Runs(http, {run_id: [state] for run_id, state in zip(run_ids, states)})
    code, _, _ = run_cli("wait", *run_ids, "--poll-interval", "0")
    assert code == expected


def test_a_timeout_exits_3_and_lists_the_runs_still_going(http: responses.RequestsMock) -> None:
    a, b = ids(2)
    Runs(http, {a: ["COMPLETED"], b: ["RUNNING"]})
    code, out, err = run_cli("wait", a, b, "--timeout", "0.2", "--poll-interval", "0.05")
    assert code == 3
    assert [line.split("(")[1].split(")")[0] for line in out.splitlines()] == [a, b]
    assert "RUNNING" in out.splitlines()[1]
    assert "1 of 2 flow runs still not final after 0.2s" in err


def test_a_failure_outranks_a_timeout(http: responses.RequestsMock) -> None:
    a, b = ids(2)
    Runs(http, {a: ["FAILED"], b: ["RUNNING"]})
    code, _, _ = run_cli("wait", a, b, "--timeout", "0.1", "--poll-interval", "0.05")
    assert code == 1


def test_a_cancellation_does_not_outrank_a_timeout(http: responses.RequestsMock) -> None:
    a, b = ids(2)
    Runs(http, {a: ["CANCELLED"], b: ["RUNNING"]})
    code, _, _ = run_cli("wait", a, b, "--timeout", "0.1", "--poll-interval", "0.05")
    assert code == 3


def test_timeout_0_reports_the_states_now(http: responses.RequestsMock) -> None:
    a, b = ids(2)
    runs = Runs(http, {a: ["COMPLETED"], b: ["SCHEDULED"]})
    code, out, _ = run_cli("wait", a, b, "--timeout", "0")
    assert code == 3
    assert len(out.splitlines()) == 2
    assert len(runs.filters) <= 2  # the first read, and at most one poll: no waiting


def test_the_failed_runs_message_is_on_its_line(http: responses.RequestsMock) -> None:
    (a,) = ids(1)
    runs = Runs(http, {a: ["FAILED"]})
    runs.messages[a] = "Flow run encountered an exception:\nRuntimeError: boom"
    code, out, _ = run_cli("wait", a, "--poll-interval", "0")
    assert code == 1
    assert out.strip().endswith(
        "FAILED, ran 4.0 s: Flow run encountered an exception: RuntimeError: boom"
    )


# -- json ------------------------------------------------------------------------------------


def test_json_prints_one_object_per_run_as_run_json_does(http: responses.RequestsMock) -> None:
    a, b = ids(2)
    Runs(http, {a: ["RUNNING", "FAILED"], b: ["RUNNING"]})
    code, out, err = run_cli("wait", a, b, "--json", "--timeout", "0.2", "--poll-interval", "0.05")
    assert code == 1
    objects = [json.loads(line) for line in out.splitlines()]
    assert [(o["id"], o["state"], o["final"], o["exit_code"]) for o in objects] == [
        (a, "FAILED", True, 1),
        (b, "RUNNING", False, 3),
    ]
    assert set(objects[0]) == set(_output.run_to_json(FlowRun.from_json(run_json(a, "FAILED"))))
    assert err == ""


# -- bad input -------------------------------------------------------------------------------


def test_a_run_id_that_is_not_a_uuid_is_a_usage_error(http: responses.RequestsMock) -> None:
    code, out, err = run_cli("wait", "not-a-run")
    assert code == 2
    assert "not a flow run id: 'not-a-run'" in err
    assert out == ""


def test_an_unknown_run_exits_5_before_waiting(http: responses.RequestsMock) -> None:
    a, unknown = ids(2)
    Runs(http, {a: ["RUNNING"]})
    code, _, err = run_cli("wait", a, unknown, "--poll-interval", "0")
    assert code == 5
    assert unknown in err


def test_repeated_ids_are_waited_for_once(http: responses.RequestsMock) -> None:
    (a,) = ids(1)
    runs = Runs(http, {a: ["COMPLETED"]})
    code, out, _ = run_cli("wait", a, a.upper(), a, "--poll-interval", "0")
    assert code == 0
    assert len(out.splitlines()) == 1
    assert runs.filters == [[a]]


def test_a_server_error_exits_5(http: responses.RequestsMock) -> None:
    (a,) = ids(1)
    http.add(responses.POST, FILTER, status=404, json={"detail": "Not Found"})
    code, _, err = run_cli("wait", a)
    assert code == 5
    assert "deploytrigger: error:" in err


def test_many_runs_are_read_200_per_request(http: responses.RequestsMock) -> None:
    run_ids = ids(450)
    runs = Runs(http, {run_id: ["COMPLETED"] for run_id in run_ids})
    code, out, _ = run_cli("wait", *run_ids, "--poll-interval", "0")
    assert code == 0
    assert len(out.splitlines()) == 450
    assert [len(batch) for batch in runs.filters] == [200, 200, 50]


def test_interrupt_exits_130_and_says_the_runs_keep_going(
    http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a,) = ids(1)
    Runs(http, {a: ["RUNNING"]})

    def interrupted(*args: Any, **kwargs: Any) -> Iterator[FlowRun]:
        raise KeyboardInterrupt
        yield  # a generator, like the real one

    monkeypatch.setattr(_commands, "as_completed_ticking", interrupted)
    code, _, err = run_cli("wait", a)
    assert code == 130
    assert "interrupted; 1 of 1 flow runs keep going" in err


# -- the live line -----------------------------------------------------------------------------


def test_on_a_terminal_a_live_line_counts_the_runs_by_state(
    http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_following, "LIVE_REFRESH", 0.02)
    a, b = ids(2)
    Runs(http, {a: ["RUNNING"] * 6 + ["COMPLETED"], b: ["SCHEDULED", "RUNNING"]})
    code, out, err = run_cli("wait", a, b, "--timeout", "1", "--poll-interval", "0.05", tty=True)
    assert code == 3
    assert "\r\x1b[K2 flow runs  2 Running  00:00" in err  # rewritten in place
    assert "\r\x1b[K2 flow runs  1 Completed, 1 Running  00:00" in err
    assert len(out.splitlines()) == 2  # the per-run lines still go to stdout
    assert err.endswith("\n")  # the live line is cleared before the last line


def test_the_live_line_ticks_while_no_run_ends(
    http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_following, "LIVE_REFRESH", 0.01)
    (a,) = ids(1)
    Runs(http, {a: ["RUNNING"]})
    code, _, err = run_cli("wait", a, "--timeout", "0.3", "--poll-interval", "10", tty=True)
    assert code == 3
    assert err.count("1 flow run  1 Running") >= 5


def test_help_documents_the_exit_codes() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit), contextlib.redirect_stdout(out):
        cli.main(["wait", "--help"])
    text = " ".join(out.getvalue().split())
    for code, meaning in _output.WAIT_EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in text


# -- run --watch exits once the run is final and its logs are drained --------------------------


def log_json(number: int, timestamp: str, message: str) -> Dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=1000 + number)),
        "name": "prefect.flow_runs",
        "level": 20,
        "message": message,
        "timestamp": timestamp,
        "flow_run_id": None,
    }


def test_watch_exits_soon_after_the_run_is_final_whatever_the_poll_interval(
    http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_following, "DRAIN_QUIET", 0.3)
    monkeypatch.setattr(_following, "DRAIN_EVERY", 0.05)
    (run_id,) = ids(1)
    http.add(
        responses.GET,
        f"{API}/deployments/name/add/add-dep",
        json={"id": DEPLOYMENT_ID, "name": "add-dep", "flow_id": FLOW_ID},
    )
    http.add(
        responses.POST,
        f"{API}/deployments/{DEPLOYMENT_ID}/create_flow_run",
        json=run_json(run_id, "SCHEDULED"),
        status=201,
    )
    http.add(responses.GET, f"{API}/flow_runs/{run_id}", json=run_json(run_id, "COMPLETED"))
    history = [run_json(run_id, kind)["state"] for kind in ("SCHEDULED", "COMPLETED")]
    http.add(responses.GET, f"{API}/flow_run_states/", json=history)
    pages = [
        [log_json(1, "2026-11-23T20:00:04+00:00", "sum is 13")],
        [],
        [log_json(2, "2026-11-23T20:00:06+00:00", "Finished in state Completed()")],
    ]

    def logs(request: Any) -> Tuple[int, Dict[str, str], str]:
        page = pages.pop(0) if pages else []
        return 200, {}, json.dumps(page)

    http.add_callback(responses.POST, LOGS, callback=logs)
    started = time.monotonic()
    code, out, _ = run_cli("run", "add/add-dep", "--watch", "--poll-interval", "30")
    assert time.monotonic() - started < 5  # was two polls after the final state: 60 s
    assert code == 0
    lines = out.splitlines()
    assert "STATE    Scheduled" in lines[0]
    assert "sum is 13" in lines[1]
    # In time order: the final state (20:00:05) before the line drained after it (20:00:06).
    assert "STATE    Completed" in lines[2]
    assert "Finished in state Completed()" in lines[3]  # drained: it reached the server later
    assert "COMPLETED" in lines[4]
    assert sum("Finished in state" in line for line in lines) == 1


def test_watch_reads_every_page_of_new_lines_once(
    http: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_following, "DRAIN_QUIET", 0.1)
    monkeypatch.setattr(_following, "DRAIN_EVERY", 0.02)
    (run_id,) = ids(1)
    full = [log_json(n, f"2026-11-23T20:00:0{n % 5}+00:00", f"line {n}") for n in range(200)]
    bodies: List[Dict[str, Any]] = []
    answers = [full, [log_json(200, "2026-11-23T20:00:05+00:00", "last")], full[-3:]]

    def logs(request: Any) -> Tuple[int, Dict[str, str], str]:
        bodies.append(json.loads(request.body))
        return 200, {}, json.dumps(answers.pop(0) if answers else [])

    http.add_callback(responses.POST, LOGS, callback=logs)
    client = Client(API)
    reader = _following.NewLogLines(client, uuid.UUID(run_id))
    first = reader.read()
    assert len(first) == 201 and first[-1].message == "last"
    assert bodies[1]["offset"] == 200
    assert reader.read() == []  # seen lines come again from the lookback: not repeated
    assert bodies[2]["logs"]["timestamp"]["after_"].startswith("2026-11-23T20:00:00")
