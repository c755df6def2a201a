"""FlowRunHandle: submit, the Future-like interface, cancel and callbacks (HTTP stubbed)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import List

import pytest
from helpers.fake_prefect import API, FakePrefect, FakeTime, client, fake, make_client, time  # noqa: F401 - the fixtures

from deploytrigger import (
    Client,
    FlowRunFailedError,
    FlowRunHandle,
    FlowRunNotFoundError,
    FlowRunTimeoutError,
    InvalidArgumentError,
    StateType,
)
from deploytrigger.models import FlowRun


def handle_for(client: Client, fake: FakePrefect, *script: str, **kwargs: float) -> FlowRunHandle:
    """A handle of a run following ``script``, as submit would make it (read 0 seen)."""
    run_id = fake.add_run(*script)
    fake.reads[run_id] = 1
    return client.handle(FlowRun.from_json(fake.run_json(run_id, 0)), **kwargs)


def test_submit_creates_the_run_and_returns_at_once_without_polling(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    handle = client.submit("add/add-dep", parameters={"x": 1}, tags=["t"])
    assert isinstance(handle, FlowRunHandle)
    assert handle.flow_run.state is not None and handle.state is not None
    assert handle.state.type is StateType.SCHEDULED
    assert not handle.done()
    assert fake.filter_bodies == [] and time.sleeps == []
    [body] = fake.created
    assert body["parameters"] == {"x": 1} and body["tags"] == ["t"]
    assert body["idempotency_key"]  # same create path as run_deployment: exactly-once


def test_submit_passes_the_idempotency_key_and_refuses_a_timeout(
    client: Client, fake: FakePrefect
) -> None:
    client.submit("add/add-dep", idempotency_key="k-1")
    assert fake.created[0]["idempotency_key"] == "k-1"
    with pytest.raises(InvalidArgumentError, match="wait on the handle"):
        client.submit("add/add-dep", timeout=10)
    with pytest.raises(InvalidArgumentError):
        client.submit("add/add-dep", poll_interval=-1)
    assert len(fake.created) == 1


def test_done_answers_from_the_last_seen_state_without_a_request(
    client: Client, fake: FakePrefect
) -> None:
    handle = handle_for(client, fake, "RUNNING", "COMPLETED")
    calls = len(fake.mock.calls)
    assert not handle.done() and handle.running() and not handle.cancelled()
    assert len(fake.mock.calls) == calls
    assert handle.refresh().state is not None
    assert handle.done()


def test_wait_polls_one_filter_request_per_interval_until_final(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    handle = handle_for(client, fake, "SCHEDULED", "PENDING", "RUNNING", "COMPLETED")
    run = handle.wait(poll_interval=2)
    assert run.state is not None and run.state.type is StateType.COMPLETED
    assert time.sleeps == [2, 2]
    assert fake.filter_ids() == [[str(handle.id)]] * 3


def test_wait_uses_the_handles_poll_interval_and_returns_unfinished_at_the_deadline(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    handle = handle_for(client, fake, "SCHEDULED", "RUNNING", poll_interval=4)
    run = handle.wait(timeout=10)
    assert run.state is not None and run.state.type is StateType.RUNNING
    assert time.sleeps == [4, 4, 2]  # the last pause is cut at the deadline


def test_result_returns_the_completed_run(client: Client, fake: FakePrefect) -> None:
    handle = handle_for(client, fake, "RUNNING", "COMPLETED")
    run = handle.result(poll_interval=1)
    assert run.id == handle.id and run.state is not None and run.state.is_completed()


@pytest.mark.parametrize("final", ["FAILED", "CRASHED", "CANCELLED"])
def test_result_raises_run_failed_error_carrying_the_run(
    client: Client, fake: FakePrefect, final: str
) -> None:
    handle = handle_for(client, fake, "RUNNING", final)
    with pytest.raises(FlowRunFailedError) as caught:
        handle.result(poll_interval=1)
    error = caught.value
    assert error.flow_run_id == handle.id and error.flow_run.id == handle.id
    assert error.state is not None and error.state.type == final
    assert str(handle.id) in str(error)
    # raise_on_failure=False hands the failed run back instead.
    assert handle.result(raise_on_failure=False).state == error.state


def test_result_timeout_error_carries_the_run_id_and_last_state(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    handle = handle_for(client, fake, "SCHEDULED", "RUNNING")
    with pytest.raises(FlowRunTimeoutError) as caught:
        handle.result(timeout=3, poll_interval=1)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert error.flow_run_id == handle.id
    assert error.state is not None and error.state.type is StateType.RUNNING
    assert error.timeout == 3 and [run.id for run in error.not_done] == [handle.id]
    assert str(handle.id) in str(error) and "Running" in str(error)
    assert time.now == 3


def test_cancel_sends_a_non_forced_cancelling_state_and_reports_acceptance(
    client: Client, fake: FakePrefect
) -> None:
    handle = handle_for(client, fake, "RUNNING")
    fake.set_state_answer = {"status": "ACCEPT", "then": "CANCELLING"}
    assert handle.cancel() is True
    [(run_id, body)] = fake.set_state_bodies
    assert run_id == str(handle.id)
    assert body["force"] is False
    assert body["state"]["type"] == "CANCELLING" and body["state"]["name"] == "Cancelling"
    assert handle.state is not None and handle.state.is_cancelling()


def test_cancel_of_a_run_that_had_not_started_counts_when_the_server_cancels_it_outright(
    client: Client, fake: FakePrefect
) -> None:
    # Observed on Prefect 3.8.8: REJECT ("no infrastructure to terminate"), state CANCELLED.
    handle = handle_for(client, fake, "SCHEDULED")
    fake.set_state_answer = {"status": "REJECT", "then": "CANCELLED"}
    assert handle.cancel() is True
    assert handle.done() and handle.cancelled()


def test_cancel_of_a_run_final_on_the_server_is_refused(client: Client, fake: FakePrefect) -> None:
    handle = handle_for(client, fake, "RUNNING", "COMPLETED")
    fake.set_state_answer = {"status": "ABORT"}
    assert handle.cancel() is False
    assert handle.done() and not handle.cancelled()


def test_cancel_of_a_handle_already_seen_final_sends_nothing(
    client: Client, fake: FakePrefect
) -> None:
    handle = handle_for(client, fake, "COMPLETED")
    assert handle.cancel() is False
    assert fake.set_state_bodies == []


def test_done_callbacks_fire_once_when_the_run_turns_final(
    client: Client, fake: FakePrefect
) -> None:
    handle = handle_for(client, fake, "RUNNING", "RUNNING", "COMPLETED")
    seen: List[FlowRunHandle] = []
    handle.add_done_callback(seen.append)
    handle.refresh()
    assert seen == []
    handle.wait(poll_interval=1)
    handle.refresh()
    handle.wait()
    assert seen == [handle]


def test_a_callback_added_after_the_end_fires_at_once(client: Client, fake: FakePrefect) -> None:
    handle = handle_for(client, fake, "COMPLETED")
    seen: List[FlowRunHandle] = []
    handle.add_done_callback(seen.append)
    assert seen == [handle]


def test_a_raising_callback_is_logged_and_the_others_still_run(
    client: Client, fake: FakePrefect, caplog: pytest.LogCaptureFixture
) -> None:
    handle = handle_for(client, fake, "RUNNING", "FAILED")
    seen: List[FlowRunHandle] = []

    def broken(_: FlowRunHandle) -> None:
        raise RuntimeError("callback bug")

    handle.add_done_callback(broken)
    handle.add_done_callback(seen.append)
    with caplog.at_level(logging.ERROR, logger="deploytrigger"):
        handle.refresh()
    assert seen == [handle]
    assert "callback" in caplog.text and "callback bug" in caplog.text


def test_an_older_read_never_replaces_a_newer_or_final_one(
    client: Client, fake: FakePrefect
) -> None:
    run_id = fake.add_run("RUNNING", "COMPLETED")
    newer = FlowRun.from_json(fake.run_json(run_id, 1))
    handle = client.handle(newer)
    assert handle._observe(FlowRun.from_json(fake.run_json(run_id, 0))) is False
    assert handle.done()


def test_refresh_of_a_deleted_run_raises_not_found(client: Client, fake: FakePrefect) -> None:
    run = FlowRun.from_json({**fake.run_json(fake.add_run("RUNNING"), 0), "id": str(uuid.uuid4())})
    with pytest.raises(FlowRunNotFoundError):
        client.handle(run).refresh()


def test_repr_shows_the_id_and_state(client: Client, fake: FakePrefect) -> None:
    handle = handle_for(client, fake, "RUNNING")
    assert repr(handle) == f"<FlowRunHandle {handle.id} Running>"


def test_the_filter_body_is_the_one_the_server_expects(client: Client, fake: FakePrefect) -> None:
    handle = handle_for(client, fake, "COMPLETED")
    client.read_flow_runs([handle.id])
    request = fake.mock.calls[-1].request
    assert request.url == f"{API}/flow_runs/filter"
    assert json.loads(request.body) == {
        "flow_runs": {"id": {"any_": [str(handle.id)]}},
        "limit": 200,
    }
