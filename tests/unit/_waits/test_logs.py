"""Reading and following a run's logs, cancelling, listing deployments (HTTP stubbed).

A fake ``/logs/filter`` applies the server's semantics (``after_`` inclusive,
oldest first, ``limit``/``offset``) to lines the test adds as "time" passes;
time is injected, so nothing sleeps.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import responses
from helpers.fake_time import FakeTime
from helpers.run_stubs import (
    API,
    BY_NAME,
    CREATE,
    LOGS,
    RUN,
    RUN_ID,
    SET_STATE,
    log_json,
    sent_json,
)
from helpers.server_json import deployment_json, flow_run_json

import deploytrigger
from deploytrigger import Client, FlowRunNotFoundError, InvalidArgumentError, StateType
from deploytrigger._waits.logs import LogCursor, LogRecord

pytestmark = pytest.mark.isolated_environment


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime(1000.0)


@pytest.fixture
def client(fake_time: FakeTime) -> Iterator[Client]:
    with Client(API, sleep=fake_time.sleep, clock=fake_time.clock, max_retries=0) as shared:
        yield shared


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def ts(seconds: float) -> str:
    moment = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.timezone.utc) + dt.timedelta(
        seconds=seconds
    )
    return moment.isoformat().replace("+00:00", "Z")


class FakeLogServer:
    """``POST /logs/filter`` over an in-memory list, with the real server's semantics."""

    def __init__(self) -> None:
        self.lines: List[Dict[str, Any]] = []
        self.bodies: List[Dict[str, Any]] = []

    def add(self, number: int, seconds: float, message: str = "") -> None:
        self.lines.append(log_json(number, ts(seconds), message))

    def __call__(self, request: Any) -> Tuple[int, Dict[str, str], str]:
        body = json.loads(request.body)
        self.bodies.append(body)
        after = body["logs"].get("timestamp", {}).get("after_")
        chosen = [
            line
            for line in self.lines
            if after is None
            or dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
            >= dt.datetime.fromisoformat(after)
        ]
        chosen.sort(key=lambda line: line["timestamp"])
        offset = body.get("offset", 0)
        return 200, {}, json.dumps(chosen[offset : offset + body["limit"]])


@pytest.fixture
def logs(http: responses.RequestsMock) -> FakeLogServer:
    server = FakeLogServer()
    http.add_callback(responses.POST, LOGS, callback=server)
    return server


def run_states(http: responses.RequestsMock, *states: str) -> None:
    """GET the run answers these states in turn, then the last one forever."""
    answers = list(states)

    def answer(request: Any) -> Tuple[int, Dict[str, str], str]:
        state = answers.pop(0) if len(answers) > 1 else answers[0]
        return 200, {}, json.dumps(flow_run_json(state, state_timestamp=ts(0.5)))

    http.add_callback(responses.GET, RUN, callback=answer)


# -- read_logs ----------------------------------------------------------------------------


def test_read_logs_sends_the_filter_the_server_understands_and_parses_lines(
    client: Client, logs: FakeLogServer
) -> None:
    logs.add(1, 1, "hello")
    logs.lines.append(log_json(2, ts(2), "uh oh", level=40))
    after = dt.datetime(2026, 11, 23, 20, 0, 1)  # naive: UTC
    records = client.read_logs(str(RUN_ID), after=after, limit=50)
    assert logs.bodies == [
        {
            "logs": {
                "flow_run_id": {"any_": [str(RUN_ID)]},
                "timestamp": {"after_": "2026-11-23T20:00:01+00:00"},
            },
            "sort": "TIMESTAMP_ASC",
            "limit": 50,
        }
    ]
    assert [(r.message, r.level, r.level_name) for r in records] == [
        ("hello", 20, "INFO"),
        ("uh oh", 40, "ERROR"),
    ]
    assert records[0].timestamp.tzinfo is not None
    assert records[0].id == uuid.UUID(int=1) and records[0].flow_run_id == RUN_ID


def test_an_unknown_level_number_is_shown_as_the_number() -> None:
    assert LogRecord.from_json(log_json(1, ts(0), level=25)).level_name == "25"


@pytest.mark.parametrize("limit", [0, 201, -1, 2.5, True])
def test_read_logs_refuses_a_limit_the_server_would_not_honour(client: Client, limit: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        client.read_logs(RUN_ID, limit=limit)


# -- the cursor: no duplicates, none missed, in order ------------------------------------------


def read_with(client: Client) -> Any:
    return lambda after, limit, offset: client.read_logs(
        RUN_ID, after=after, limit=limit, offset=offset
    )


def test_lines_sharing_a_timestamp_are_each_returned_once_across_reads(
    client: Client, logs: FakeLogServer
) -> None:
    cursor = LogCursor()
    logs.add(1, 1)
    logs.add(2, 1)
    assert [r.message for r in cursor.read_new(read_with(client))] == ["line 1", "line 2"]
    logs.add(3, 1)  # same timestamp as the lines already read
    assert [r.message for r in cursor.read_new(read_with(client))] == ["line 3"]
    assert cursor.read_new(read_with(client)) == []


def test_more_than_a_page_of_new_lines_is_read_page_by_page_without_gaps(
    client: Client, logs: FakeLogServer
) -> None:
    for number in range(450):
        logs.add(number, number / 100)
    records = LogCursor().read_new(read_with(client))
    assert [r.id for r in records] == [uuid.UUID(int=n) for n in range(450)]
    assert len(logs.bodies) >= 3


def test_a_full_page_sharing_one_timestamp_is_paged_by_offset(
    client: Client, logs: FakeLogServer
) -> None:
    for number in range(230):
        logs.add(number, 5)
    records = LogCursor().read_new(read_with(client))
    assert sorted(r.id.int for r in records) == list(range(230))
    assert logs.bodies[-1].get("offset") == 200


def test_a_line_that_reaches_the_server_late_is_still_returned(
    client: Client, logs: FakeLogServer
) -> None:
    cursor = LogCursor(lookback=5)
    logs.add(1, 10)
    cursor.read_new(read_with(client))
    logs.add(2, 8)  # logged earlier, sent later (another process's batch)
    assert [r.message for r in cursor.read_new(read_with(client))] == ["line 2"]


# -- following -----------------------------------------------------------------------------


def test_follow_logs_yields_each_line_once_in_order_and_stops_when_final_and_drained(
    client: Client, http: responses.RequestsMock, logs: FakeLogServer, fake_time: FakeTime
) -> None:
    run_states(http, "RUNNING", "RUNNING", "COMPLETED")
    logs.add(1, 1, "starting")
    seen: List[str] = []
    for record in client.follow_logs(RUN_ID, poll_interval=1):
        seen.append(record.message)
        if record.message == "starting":
            logs.add(2, 2, "sum is 13")
            logs.add(3, 2, "same time")
        if record.message == "same time":
            logs.add(4, 3, "after the run ended")  # arrives after COMPLETED was seen
    assert seen == ["starting", "sum is 13", "same time", "after the run ended"]
    # Polls every second; once final, reads on until 4 s pass with nothing new.
    assert fake_time.sleeps == [1, 1, 1, 1, 1, 1]


def test_follow_logs_stops_at_the_timeout_when_the_run_is_not_final(
    client: Client, http: responses.RequestsMock, logs: FakeLogServer, fake_time: FakeTime
) -> None:
    run_states(http, "RUNNING")
    assert list(client.follow_logs(RUN_ID, poll_interval=2, timeout=5)) == []
    assert fake_time.sleeps == [2, 2, 1]


def test_watch_yields_the_final_state_after_the_last_lines(
    client: Client, http: responses.RequestsMock, logs: FakeLogServer, fake_time: FakeTime
) -> None:
    run_states(http, "RUNNING", "COMPLETED")
    logs.add(1, 1, "working")
    events = list(client.watch(RUN_ID, poll_interval=1))
    shown = [e.message if isinstance(e, LogRecord) else e.state.type for e in events]  # type: ignore[union-attr]
    assert shown == [StateType.RUNNING, "working", StateType.COMPLETED]


def test_follow_logs_of_an_unknown_run_raises_flow_run_not_found(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(RUN, status=404, json={"detail": "Flow run not found"})
    with pytest.raises(FlowRunNotFoundError):
        list(client.follow_logs(RUN_ID))


# -- cancelling ------------------------------------------------------------------------------


def test_cancel_flow_run_asks_for_cancelling_unforced_and_reports_acceptance(
    client: Client, http: responses.RequestsMock
) -> None:
    http.post(
        SET_STATE,
        status=201,
        json={"state": {"type": "CANCELLING"}, "status": "ACCEPT", "details": {}},
    )
    assert client.cancel_flow_run(str(RUN_ID), "enough") is True
    assert sent_json(http.calls[0]) == {
        "state": {"type": "CANCELLING", "name": "Cancelling", "message": "enough"},
        "force": False,
    }


def test_cancel_flow_run_of_a_final_run_is_refused(
    client: Client, http: responses.RequestsMock
) -> None:
    http.post(
        SET_STATE,
        json={
            "state": {"type": "COMPLETED"},
            "status": "ABORT",
            "details": {"reason": "Run is already in terminal state COMPLETED."},
        },
    )
    assert client.cancel_flow_run(RUN_ID) is False


def test_cancel_flow_run_of_an_unknown_run_raises_flow_run_not_found(
    client: Client, http: responses.RequestsMock
) -> None:
    http.post(SET_STATE, status=404, json={"detail": "Flow run not found"})
    with pytest.raises(FlowRunNotFoundError) as caught:
        client.cancel_flow_run(RUN_ID)
    assert caught.value.flow_run_id == str(RUN_ID)


def accepted(http: responses.RequestsMock) -> None:
    http.post(SET_STATE, status=201, json={"state": {}, "status": "ACCEPT", "details": {}})


def test_run_deployment_cancels_the_run_when_the_timeout_runs_out_if_asked(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, status=201, json=flow_run_json("SCHEDULED"))
    run_states(http, "RUNNING", "RUNNING", "RUNNING", "CANCELLING")
    accepted(http)
    run = client.run_deployment("add/add-dep", timeout=2, poll_interval=1, cancel_on_timeout=True)
    assert run.state is not None and run.state.type is StateType.CANCELLING
    (cancel,) = [c for c in http.calls if c.request.url == SET_STATE]
    assert sent_json(cancel)["state"]["type"] == "CANCELLING"


def test_run_deployment_leaves_the_run_going_at_the_timeout_by_default(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, status=201, json=flow_run_json("SCHEDULED"))
    run_states(http, "RUNNING")
    run = deploytrigger.run_deployment("add/add-dep", client=client, timeout=2, poll_interval=1)
    assert run.state is not None and run.state.type is StateType.RUNNING
    assert not [c for c in http.calls if c.request.url == SET_STATE]


@pytest.mark.parametrize("cancel_on_interrupt", [True, False])
def test_ctrl_c_while_waiting_propagates_and_cancels_the_run_only_if_asked(
    http: responses.RequestsMock, cancel_on_interrupt: bool
) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, status=201, json=flow_run_json("SCHEDULED"))
    run_states(http, "RUNNING")
    accepted(http)
    with Client(API, sleep=interrupted, max_retries=0) as client, pytest.raises(KeyboardInterrupt):
        deploytrigger.run_deployment(
            "add/add-dep", client=client, cancel_on_interrupt=cancel_on_interrupt
        )
    cancels = [c for c in http.calls if c.request.url == SET_STATE]
    assert len(cancels) == (1 if cancel_on_interrupt else 0)


# -- deployments -------------------------------------------------------------------------------


def test_read_deployments_filters_by_flow_name_and_sorts_by_name(
    client: Client, http: responses.RequestsMock
) -> None:
    http.post(f"{API}/deployments/filter", json=[deployment_json()])
    (deployment,) = client.read_deployments(flow_name="add")
    assert deployment.name == "add-dep" and deployment.parameters == {"y": 10}
    assert sent_json(http.calls[0]) == {
        "sort": "NAME_ASC",
        "limit": 200,
        "flows": {"name": {"any_": ["add"]}},
    }
    client.read_deployments()
    assert "flows" not in sent_json(http.calls[1])


# -- logging ---------------------------------------------------------------------------------


def test_no_secret_reaches_the_deploytrigger_log(
    http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    url = "http://admin:pw-S3CRET@prefect.test:4200/api"
    http.get(f"{url}/flow_runs/{RUN_ID}", json=flow_run_json("RUNNING"))
    caplog.set_level(logging.DEBUG, logger="deploytrigger")
    with Client(
        url, api_key="pnu_KEY-S3CRET", auth_string="u:auth-S3CRET", max_retries=0
    ) as client:
        client.read_flow_run(RUN_ID)
    assert caplog.records, "the request was logged"
    assert "S3CRET" not in caplog.text
