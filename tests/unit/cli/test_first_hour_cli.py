"""The command line's first hour (issue 21): hints that say what to type, the run's
times named for what they are, --watch in time order, and what --timeout and
Ctrl-C leave behind."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterator, Tuple

import pytest
import responses
from helpers.fake_time import FakeTime
from helpers.run_stubs import API, BY_NAME, CREATE, RUN, SET_STATE
from helpers.server_json import deployment_json, flow_run_json

import deploytrigger
from deploytrigger import LogRecord, cli
from deploytrigger.testing import FakePrefect

pytestmark = pytest.mark.isolated_environment()


@pytest.fixture
def fake() -> Iterator[FakePrefect]:
    with FakePrefect() as started:
        started.add_deployment("add/add-dep")
        yield started


def run_cli(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_no_url_hint_names_the_option_and_the_variable() -> None:
    status, _out, err = run_cli("run", "add/add-dep")
    assert status == 5
    assert "--api-url" in err and "PREFECT_API_URL" in err and "api_url=" not in err


def test_unknown_deployment_offers_the_closest_names(fake: FakePrefect) -> None:
    fake.add_deployment("echo/echo-dep")
    status, out, err = run_cli("run", "add/add-deq")
    assert status == 5 and out == "" and err.count("\n") == 1
    assert "did you mean 'add/add-dep'?" in err
    assert "`deploytrigger deployments`" in err


def test_unknown_deployment_names_come_from_the_error_with_no_look_up_of_the_clis_own(
    fake: FakePrefect,
) -> None:
    for flow in ("echo", "sleepy"):
        fake.add_deployment(f"{flow}/{flow}-dep")
    status, _out, err = run_cli("run", "add/add-deq")
    assert status == 5
    assert err.rstrip().endswith(
        "did you mean 'add/add-dep'? (`deploytrigger deployments` lists them)"
    )
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", "/deployments/name/add/add-deq"),
        ("POST", "/deployments/filter"),
        ("POST", "/flows/filter"),
    ]


def test_unknown_deployment_with_no_close_name_points_to_the_list(fake: FakePrefect) -> None:
    status, _out, err = run_cli("run", "zzzz/qqqq")
    assert status == 5 and "did you mean" not in err
    assert err.rstrip().endswith("(`deploytrigger deployments` lists the deployments)")


def test_url_without_api_gets_the_api_hint_not_a_name_offer(fake: FakePrefect) -> None:
    bare = fake.api_url[: -len("/api")]
    status, _out, err = run_cli("--api-url", bare, "run", "add/add-dep")
    assert status == 5 and err.count("\n") == 1
    assert err.rstrip().endswith(f"the API URL probably needs to end in /api: {bare}/api")


def test_summary_says_the_run_time_and_the_time_since_triggered() -> None:
    created = datetime(2026, 12, 1, 19, 32, 0, tzinfo=timezone.utc)
    data = flow_run_json("COMPLETED")
    data.update(
        created=created.isoformat(),
        start_time=(created + timedelta(seconds=4.4)).isoformat(),
        end_time=(created + timedelta(seconds=4.5)).isoformat(),
    )
    summary = deploytrigger.FlowRun.from_json(data).summary()
    assert "COMPLETED, ran 0.1 s, 4.4 s after it was triggered" in summary


def test_timeout_says_waiting_stopped_and_how_to_follow_the_run(fake: FakePrefect) -> None:
    fake.set_outcome("add/add-dep", "COMPLETED", after=60)
    status, _out, err = run_cli("run", "add/add-dep", "--timeout", "0.2", "--poll-interval", "0.05")
    run_id = fake.runs[0].id
    assert status == 3
    assert f"stopped waiting after 0.2 s; flow run {run_id}" in err and "goes on" in err
    assert f"deploytrigger logs --follow {run_id}" in err


def test_watch_shows_the_final_state_before_lines_stamped_after_it() -> None:
    with FakePrefect() as fake:
        fake.add_deployment("add/add-dep")
        time = FakeTime(1000.0)
        client = deploytrigger.Client(sleep=time.sleep, clock=time.clock)
        run = client.run_deployment("add/add-dep", timeout=0)
        final = client.read_flow_run(run.id)  # the fake finishes it on this read
        assert final.state is not None and final.state.timestamp is not None
        stamp = final.state.timestamp
        fake.add_log(run.id, "working", timestamp=(stamp - timedelta(seconds=1)).isoformat())
        fake.add_log(run.id, "Finished", timestamp=(stamp + timedelta(seconds=1)).isoformat())
        events = list(client.watch(run, poll_interval=1))
    shown = [e.message if isinstance(e, LogRecord) else e.state.type.value for e in events]  # type: ignore[union-attr]
    assert shown == ["working", "COMPLETED", "Finished"]


# -- Ctrl-C, over a stubbed API --------------------------------------------------------------


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> Iterator[responses.RequestsMock]:
    monkeypatch.setenv("PREFECT_API_URL", API)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(BY_NAME, json=deployment_json())
        mock.post(CREATE, status=201, json=flow_run_json("SCHEDULED"))
        yield mock


def interrupt_then(*states: str) -> Any:
    """A GET of the run: Ctrl-C, then the run in each of ``states``."""
    answers = list(states)

    def answer(request: Any) -> Tuple[int, Dict[str, str], str]:
        if not answers:
            raise KeyboardInterrupt
        return 200, {}, json.dumps(flow_run_json(answers.pop(0)))

    calls = [0]

    def first_interrupts(request: Any) -> Tuple[int, Dict[str, str], str]:
        calls[0] += 1
        if calls[0] == 1:
            raise KeyboardInterrupt
        return answer(request)

    return first_interrupts


def test_ctrl_c_with_json_writes_the_run_as_last_seen(http: responses.RequestsMock) -> None:
    http.add_callback(responses.GET, RUN, callback=interrupt_then())
    status, out, _err = run_cli("run", "add/add-dep", "--json", "--poll-interval", "0")
    assert status == 130
    shown = json.loads(out)
    assert shown["state"] == "SCHEDULED" and shown["interrupted"] is True and shown["id"]


def test_cancel_on_interrupt_confirms_the_cancel_was_accepted(
    http: responses.RequestsMock,
) -> None:
    http.post(SET_STATE, status=201, json={"state": {}, "status": "ACCEPT", "details": {}})
    http.add_callback(responses.GET, RUN, callback=interrupt_then("CANCELLING", "CANCELLING"))
    argv = ("run", "add/add-dep", "--cancel-on-interrupt", "--poll-interval", "0")
    status, _out, err = run_cli(*argv)
    assert status == 130
    assert "cancel accepted" in err and "Cancelling" in err
