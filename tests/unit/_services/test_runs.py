"""Runs over a stubbed Prefect API: the requests that create a run, and waiting for it.

Time is injected (``helpers.fake_time``), so no test sleeps and every wait is asserted exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from typing import Any, List

import pytest
import requests
import responses
from helpers.client_stubs import (  # noqa: F401 - the fixtures: client, fake_time, http
    BY_NAME,
    CREATE,
    MAX_RETRIES,
    RUN,
    RUN_ID,
    assert_deploytrigger_error,
    calls_to,
    client,
    fake_time,
    http,
    make_client,
    sent_json,
    stub_deployment_and_create,
)
from helpers.fake_time import FakeTime
from helpers.server_json import flow_run_json

from deploytrigger import (
    APIError,
    Client,
    ConnectionFailedError,
    FlowRunNotFoundError,
    InvalidArgumentError,
    ServerError,
    StateType,
)

pytestmark = pytest.mark.isolated_environment


def test_run_by_name_reads_the_deployment_then_creates_the_run_with_the_given_body(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    when = dt.datetime(2026, 11, 23, 21, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))

    run = client.run_deployment(
        "add/add-dep",
        parameters={"x": 5},
        scheduled_time=when,
        flow_run_name="nightly-1",
        tags=["from-test"],
        idempotency_key="caller-key",
        job_variables={"env": {"A": "1"}},
        timeout=0,
    )

    assert [(c.request.method, c.request.url) for c in http.calls] == [
        ("GET", BY_NAME),
        ("POST", CREATE),
    ]
    assert sent_json(http.calls[1]) == {
        "parameters": {"x": 5},
        "state": {
            "type": "SCHEDULED",
            "name": "Scheduled",
            "state_details": {"scheduled_time": "2026-11-23T20:30:00Z"},
        },
        "name": "nightly-1",
        "tags": ["from-test"],
        "idempotency_key": "caller-key",
        "job_variables": {"env": {"A": "1"}},
    }
    assert run.id == RUN_ID
    assert run.state is not None and run.state.type == "SCHEDULED"


def test_run_sends_work_queue_name_only_when_given(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    client.run_deployment("add/add-dep", timeout=0)
    client.run_deployment("add/add-dep", timeout=0, work_queue_name="wq")

    first, second = (sent_json(c) for c in calls_to(http, "POST", CREATE))
    assert "work_queue_name" not in first
    assert second["work_queue_name"] == "wq"


def test_a_fresh_uuid4_idempotency_key_is_sent_when_none_is_given(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    client.run_deployment("add/add-dep", timeout=0)
    client.run_deployment("add/add-dep", timeout=0)

    keys = [sent_json(c)["idempotency_key"] for c in calls_to(http, "POST", CREATE)]
    assert len(keys) == 2
    assert all(uuid.UUID(key).version == 4 for key in keys)
    assert keys[0] != keys[1]


def test_timeout_zero_returns_the_created_run_without_polling(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, json=flow_run_json("COMPLETED", shape="api"))

    run = client.run_deployment("add/add-dep", timeout=0)

    assert len(http.calls) == 2
    assert calls_to(http, "GET", RUN) == []
    assert fake_time.sleeps == []
    assert run.state is not None and run.state.type == "SCHEDULED"


def test_timeout_none_polls_the_run_until_it_is_final(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    for state in ("PENDING", "RUNNING", "RUNNING", "COMPLETED"):
        http.get(RUN, json=flow_run_json(state, shape="api"))

    run = client.run_deployment("add/add-dep", poll_interval=2, timeout=None)

    assert run.state is not None and run.state.type == "COMPLETED"
    assert run.is_final()
    assert len(calls_to(http, "GET", RUN)) == 4
    assert fake_time.sleeps == [2, 2, 2]


def test_positive_timeout_returns_the_unfinished_run_in_its_last_state(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    for message in ("t0", "t5", "t10", "t12"):
        http.get(RUN, json=flow_run_json("RUNNING", shape="api", message=message))

    run = client.run_deployment("add/add-dep", poll_interval=5, timeout=12)

    assert not run.is_final()
    assert run.state is not None
    assert run.state.type is StateType.RUNNING
    assert run.state.message == "t12"
    assert fake_time.sleeps == [5, 5, 2]
    assert len(calls_to(http, "GET", RUN)) == 4


def test_wait_for_flow_run_polls_by_id_until_final(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    http.get(RUN, json=flow_run_json("RUNNING", shape="api"))
    http.get(RUN, json=flow_run_json("FAILED", shape="api", message="boom"))

    run = client.wait_for_flow_run(str(RUN_ID), poll_interval=3)

    assert run.state is not None and run.state.type == "FAILED"
    assert fake_time.sleeps == [3]


def test_404_on_a_flow_run_raises_flow_run_not_found(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(RUN, json={"detail": "Flow run not found"}, status=404)

    with pytest.raises(FlowRunNotFoundError) as info:
        client.read_flow_run(RUN_ID)

    assert_deploytrigger_error(info.value, FlowRunNotFoundError)
    assert info.value.flow_run_id == str(RUN_ID)
    assert str(RUN_ID) in str(info.value)


def test_run_deleted_while_waiting_raises_flow_run_not_found(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, json={"detail": "Flow run not found"}, status=404)

    with pytest.raises(FlowRunNotFoundError):
        client.run_deployment("add/add-dep", timeout=30)


@pytest.mark.parametrize(
    ("backoff", "max_retries", "expected_sleeps"),
    [
        (1.0, 100, [5, 1, 1, 1, 1, 1]),
        (3.0, 100, [5, 3, 2]),
        (1.0, 5, [5, 1, 1, 1, 1, 1]),
    ],
)
def test_server_unreachable_past_the_deadline_returns_the_last_known_run(
    http: responses.RequestsMock,
    fake_time: FakeTime,
    backoff: float,
    max_retries: int,
    expected_sleeps: List[float],
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, json=flow_run_json("RUNNING", shape="api", message="last seen"))
    http.get(RUN, body=requests.ConnectionError("Connection refused"))

    with make_client(fake_time, max_retries=max_retries, backoff=lambda s: backoff) as client:
        run = client.run_deployment("add/add-dep", poll_interval=5, timeout=10)

    assert run.id == RUN_ID
    assert run.state is not None and run.state.message == "last seen"
    assert fake_time.sleeps == expected_sleeps
    assert sum(fake_time.sleeps) <= 10


def test_server_unreachable_with_retries_left_but_no_time_never_sleeps_past_the_deadline(
    http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, body=requests.ConnectionError("Connection refused"))

    with make_client(fake_time, max_retries=1000, backoff=lambda s: 4.0) as client:
        run = client.run_deployment("add/add-dep", poll_interval=5, timeout=10)

    assert run.id == RUN_ID
    assert run.state is not None and run.state.type == "SCHEDULED"
    assert sum(fake_time.sleeps) <= 10


def test_rate_limit_outlasting_the_deadline_returns_the_last_known_run(
    client: Client, http: responses.RequestsMock, fake_time: FakeTime
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, json=flow_run_json("RUNNING", shape="api", message="last seen"))
    http.get(RUN, json={"detail": "slow down"}, status=429, headers={"Retry-After": "7"})

    run = client.run_deployment("add/add-dep", poll_interval=5, timeout=10)

    assert run.state is not None and run.state.message == "last seen"
    assert sum(fake_time.sleeps) <= 10


def test_server_unreachable_without_a_deadline_raises_connection_failed(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    http.get(RUN, body=requests.ConnectionError("Connection refused"))

    with pytest.raises(ConnectionFailedError) as info:
        client.run_deployment("add/add-dep", poll_interval=5, timeout=None)

    assert_deploytrigger_error(info.value, ConnectionFailedError)


def flaky_run_endpoint(http: responses.RequestsMock, failures: int, final: str) -> List[int]:
    """GET /flow_runs/{id}: a refused connection ``failures`` times, then ``final`` state."""
    seen = [0]

    def answer(request: Any) -> Any:
        seen[0] += 1
        if seen[0] <= failures:
            raise requests.ConnectionError("Connection refused")
        return (200, {}, json.dumps(flow_run_json(final, shape="api")))

    http.add_callback(responses.GET, RUN, callback=answer)
    return seen


def test_wait_without_timeout_polls_on_through_an_outage_shorter_than_the_tolerance(
    fake_time: FakeTime, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    # Two whole polls fail (each is 1 + MAX_RETRIES attempts), the third answers.
    flaky_run_endpoint(http, failures=2 * (MAX_RETRIES + 1), final="COMPLETED")
    with make_client(fake_time, outage_tolerance=60) as client:
        run = client.run_deployment("add/add-dep", poll_interval=5)
    assert run.state is not None and run.state.type is StateType.COMPLETED


def test_wait_raises_once_an_outage_outlasts_the_tolerance(
    fake_time: FakeTime, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    flaky_run_endpoint(http, failures=10_000, final="COMPLETED")
    with make_client(fake_time, outage_tolerance=30) as client:
        started = fake_time.now
        with pytest.raises(ConnectionFailedError):
            client.run_deployment("add/add-dep", poll_interval=5)
    # Polls go on for the tolerance (30 s), not forever, not less.
    assert 30 <= fake_time.now - started < 30 + 5 + (MAX_RETRIES + 1) * 1.0 + 1


# -- the state history ---------------------------------------------------------------------------


def history_state(state_type: str, name: str, second: int) -> Any:
    return {
        "id": str(uuid.UUID(int=second)),
        "type": state_type,
        "name": name,
        "timestamp": f"2026-11-23T20:00:{second:02d}.000000Z",
        "message": None,
        "data": None,
        "state_details": {"flow_run_id": str(RUN_ID)},
    }


def test_read_flow_run_states_gets_the_history_oldest_first(
    client: Client, http: responses.RequestsMock
) -> None:
    states_url = f"{RUN.rsplit('/flow_runs/', 1)[0]}/flow_run_states/"
    answer = [
        history_state("SCHEDULED", "Scheduled", 1),
        history_state("RUNNING", "Running", 3),  # out of order: sorted by time
        history_state("PENDING", "Pending", 2),
        history_state("COMPLETED", "Completed", 4),
    ]
    http.get(states_url, json=answer)

    states = client.read_flow_run_states(str(RUN_ID))

    assert [(s.type, s.name) for s in states] == [
        (StateType.SCHEDULED, "Scheduled"),
        (StateType.PENDING, "Pending"),
        (StateType.RUNNING, "Running"),
        (StateType.COMPLETED, "Completed"),
    ]
    assert states[1].raw["id"] == str(uuid.UUID(int=2))
    assert states[0].timestamp == dt.datetime(2026, 11, 23, 20, 0, 1, tzinfo=dt.timezone.utc)
    assert len(calls_to(http, "GET", f"{states_url}?flow_run_id={RUN_ID}")) == 1


def test_read_flow_run_states_of_an_unknown_run_is_empty_and_a_bad_id_is_refused(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(f"{RUN.rsplit('/flow_runs/', 1)[0]}/flow_run_states/", json=[])
    assert client.read_flow_run_states(uuid.UUID(int=7)) == []
    with pytest.raises(InvalidArgumentError):
        client.read_flow_run_states("not-a-uuid")
    assert len(http.calls) == 1


# -- a batch read the server cannot answer ------------------------------------------------

FILTER = f"{RUN.rsplit('/flow_runs/', 1)[0]}/flow_runs/filter"
OTHER_ID = uuid.UUID(int=11)
OTHER_RUN = RUN.replace(str(RUN_ID), str(OTHER_ID))
UNFILTERABLE = {"exception_message": "Internal Server Error"}  # Prefect 3.8.8's 500 body


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "one by one" in record.getMessage()
    ]


def stub_unfilterable_runs(http: responses.RequestsMock, state: str = "COMPLETED") -> None:
    http.post(FILTER, json=UNFILTERABLE, status=500)
    http.get(RUN, json=flow_run_json(state, shape="api"))
    http.get(OTHER_RUN, json=flow_run_json(state, shape="api", run_id=OTHER_ID))


def test_a_batch_read_answered_500_reads_the_runs_one_by_one_and_warns(
    client: Client, http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    stub_unfilterable_runs(http)

    runs = client.read_flow_runs([OTHER_ID, RUN_ID, OTHER_ID])

    assert [run.id for run in runs] == [OTHER_ID, RUN_ID]
    assert [(c.request.method, c.request.url) for c in http.calls] == [
        ("POST", FILTER),
        ("GET", OTHER_RUN),
        ("GET", RUN),
    ]
    (warning,) = fallback_warnings(caplog)
    assert "POST /flow_runs/filter" in warning or FILTER in warning
    assert "500" in warning and "GET /flow_runs/{id}" in warning


def test_the_fallback_warning_is_logged_once_per_client(
    client: Client,
    http: responses.RequestsMock,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub_unfilterable_runs(http)

    for _ in range(3):
        assert [run.id for run in client.read_flow_runs([RUN_ID])] == [RUN_ID]
    assert len(fallback_warnings(caplog)) == 1
    assert len(calls_to(http, "POST", FILTER)) == 3  # each read tries the batch first
    with make_client(fake_time) as another:
        another.read_flow_runs([RUN_ID])
    assert len(fallback_warnings(caplog)) == 2


def test_a_run_the_server_does_not_know_is_left_out_of_the_one_by_one_reads(
    client: Client, http: responses.RequestsMock
) -> None:
    http.post(FILTER, json=UNFILTERABLE, status=500)
    http.get(RUN, json=flow_run_json("RUNNING", shape="api"))
    http.get(OTHER_RUN, json={"detail": "Flow run not found"}, status=404)

    assert [run.id for run in client.read_flow_runs([OTHER_ID, RUN_ID])] == [RUN_ID]


def test_a_run_unreadable_by_id_too_raises_the_batch_reads_error(
    client: Client, http: responses.RequestsMock
) -> None:
    http.post(FILTER, json=UNFILTERABLE, status=500)
    http.get(RUN, json={"detail": "broken"}, status=500)

    with pytest.raises(ServerError) as info:
        client.read_flow_runs([RUN_ID])

    assert_deploytrigger_error(info.value, ServerError)
    assert (info.value.method, info.value.url, info.value.status_code) == ("POST", FILTER, 500)
    cause = info.value.__cause__
    assert isinstance(cause, ServerError) and (cause.method, cause.url) == ("GET", RUN)
    assert len(http.calls) == 2


@pytest.mark.parametrize("status", [400, 422, 502, 503, 504])
def test_a_batch_read_failing_otherwise_than_500_reads_nothing_one_by_one(
    client: Client, http: responses.RequestsMock, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    http.post(FILTER, json={"detail": "no"}, status=status)
    http.get(RUN, json=flow_run_json("COMPLETED", shape="api"))

    with pytest.raises(APIError) as info:
        client.read_flow_runs([RUN_ID])

    assert info.value.status_code == status
    assert calls_to(http, "GET", RUN) == [] and fallback_warnings(caplog) == []


def test_wait_all_and_as_completed_finish_runs_the_server_cannot_batch_read(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_unfilterable_runs(http)

    done, not_done = client.wait_all([RUN_ID, OTHER_ID], timeout=60, poll_interval=1)
    finished = list(client.as_completed([RUN_ID], timeout=60, poll_interval=1))

    assert not_done == [] and sorted(handle.id for handle in done) == sorted([RUN_ID, OTHER_ID])
    assert all(handle.state is not None and handle.state.is_completed() for handle in done)
    assert [run.id for run in finished] == [RUN_ID]
