"""Batch waiting (wait_all, as_completed), run_many and thread safety (HTTP stubbed)."""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List, Optional

import pytest
import responses
from helpers.fake_prefect import (  # noqa: F401 - the fixtures
    API,
    DEPLOYMENT_ID,
    FakePrefect,
    FakeTime,
    client,
    fake,
    make_client,
    states,
    time,
)

import deploytrigger
from deploytrigger import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    Client,
    DeploymentNotFoundError,
    FlowRunHandle,
    FlowRunNotFoundError,
    FlowRunTimeoutError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
)
from deploytrigger._services.parents import Link
from deploytrigger.models import FlowRun


def handles(client: Client, fake: FakePrefect, ids: List[str]) -> List[FlowRunHandle]:
    """Handles as submit makes them: the first state already seen."""
    result = []
    for run_id in ids:
        fake.reads[run_id] = 1
        result.append(client.handle(FlowRun.from_json(fake.run_json(run_id, 0))))
    return result


def test_one_poll_of_450_runs_is_three_filter_requests(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    ids = fake.add_runs(450, "SCHEDULED", "RUNNING", "COMPLETED")
    done, not_done = client.wait_all(handles(client, fake, ids), poll_interval=5)
    assert len(done) == 450 and not_done == []
    sizes = [len(chunk) for chunk in fake.filter_ids()]
    assert sizes == [200, 200, 50] * 2  # two polls: RUNNING, then COMPLETED
    assert all(body["limit"] == 200 for body in fake.filter_bodies)
    assert sorted(i for chunk in fake.filter_ids()[:3] for i in chunk) == sorted(ids)
    assert time.sleeps == [5]


def test_a_poll_asks_only_for_the_runs_still_pending(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    quick = fake.add_runs(3, "RUNNING", "COMPLETED")
    slow = fake.add_runs(2, "RUNNING", "RUNNING", "RUNNING", "COMPLETED")
    client.wait_all(handles(client, fake, quick + slow), poll_interval=1)
    assert [len(chunk) for chunk in fake.filter_ids()] == [5, 2, 2]


def test_read_flow_runs_keeps_the_order_given_drops_duplicates_and_unknown_ids(
    client: Client, fake: FakePrefect
) -> None:
    ids = fake.add_runs(3, "RUNNING")
    unknown = str(uuid.uuid4())
    runs = client.read_flow_runs([ids[2], unknown, ids[0], uuid.UUID(ids[2]), ids[1]])
    assert [str(run.id) for run in runs] == [ids[2], ids[0], ids[1]]
    with pytest.raises(InvalidArgumentError):
        client.read_flow_runs(["not-an-id"])


# -- wait_all ------------------------------------------------------------------------------


def test_wait_all_returns_done_and_not_done_in_the_order_given_at_the_timeout(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    ids = [
        fake.add_run("RUNNING", "COMPLETED"),
        fake.add_run("RUNNING"),
        fake.add_run("RUNNING", "RUNNING", "FAILED"),
        fake.add_run("RUNNING"),
    ]
    given = handles(client, fake, ids)
    done, not_done = client.wait_all(given, timeout=12, poll_interval=5)
    assert done == [given[0], given[2]] and not_done == [given[1], given[3]]
    assert time.sleeps == [5, 5, 2]  # no exception at the deadline
    assert isinstance(client.wait_all([], timeout=1), deploytrigger.DoneAndNotDone)


def test_first_completed_returns_after_the_first_final_run(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    slow = fake.add_run("RUNNING", "RUNNING", "RUNNING", "COMPLETED")
    fast = fake.add_run("RUNNING", "RUNNING", "CRASHED")
    given = handles(client, fake, [slow, fast])
    done, not_done = client.wait_all(given, poll_interval=3, return_when=FIRST_COMPLETED)
    assert done == [given[1]] and not_done == [given[0]]
    assert time.sleeps == [3]
    assert states([given[1].flow_run]) == ["CRASHED"]


def test_first_completed_with_a_run_already_done_sends_nothing(
    client: Client, fake: FakePrefect
) -> None:
    given = handles(client, fake, [fake.add_run("COMPLETED"), fake.add_run("RUNNING")])
    done, _ = client.wait_all(given, return_when=FIRST_COMPLETED)
    assert done == [given[0]] and fake.filter_bodies == []
    done, _ = client.wait_all(given[:1], return_when=ALL_COMPLETED)
    assert fake.filter_bodies == []


def test_wait_all_accepts_ids_and_makes_their_handles_from_the_first_poll(
    client: Client, fake: FakePrefect
) -> None:
    ids = fake.add_runs(3, "RUNNING", "COMPLETED")
    done, not_done = client.wait_all([ids[0], uuid.UUID(ids[1]), ids[2], ids[0]], poll_interval=1)
    assert [str(handle.id) for handle in done] == ids and not_done == []
    assert all(isinstance(handle, FlowRunHandle) for handle in done)
    assert len(fake.filter_bodies) == 2  # no extra request to resolve the ids


def test_wait_all_on_an_unknown_id_raises_not_found(client: Client, fake: FakePrefect) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(FlowRunNotFoundError) as caught:
        client.wait_all([fake.add_run("RUNNING"), missing])
    assert caught.value.flow_run_id == missing


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": -1}, {"poll_interval": -1}, {"return_when": "FIRST_EXCEPTION"}],
)
def test_wait_all_refuses_bad_arguments_before_any_request(
    client: Client, fake: FakePrefect, kwargs: Any
) -> None:
    with pytest.raises(InvalidArgumentError):
        client.wait_all([fake.add_run("RUNNING")], **kwargs)
    with pytest.raises(InvalidArgumentTypeError):
        client.wait_all([42])  # type: ignore[list-item]
    assert fake.filter_bodies == []


def test_callbacks_fire_from_the_batch_poller(client: Client, fake: FakePrefect) -> None:
    given = handles(client, fake, fake.add_runs(3, "RUNNING", "COMPLETED"))
    fired: List[Any] = []
    for handle in given:
        handle.add_done_callback(lambda h: fired.append((h, threading.current_thread())))
    client.wait_all(given, poll_interval=1)
    assert [h for h, _ in fired] == given
    assert {thread for _, thread in fired} == {threading.current_thread()}


def test_a_server_unreachable_at_the_deadline_leaves_runs_as_last_seen(
    time: FakeTime, fake: FakePrefect
) -> None:
    run_id = fake.add_run("RUNNING")
    with make_client(time, max_retries=10, backoff=lambda _: 1.0) as client:
        [handle] = handles(client, fake, [run_id])
        fake.mock.replace(responses.POST, f"{API}/flow_runs/filter", status=503)
        # Retried until the deadline, then the run is returned as last seen.
        done, not_done = client.wait_all([handle], timeout=2, poll_interval=1)
        assert done == [] and not_done == [handle]
        assert time.now == 2
        with pytest.raises(deploytrigger.ServerError):  # without a deadline: raised
            make_client(time, max_retries=0).wait_all([handle])


# -- as_completed -----------------------------------------------------------------------


def test_as_completed_yields_runs_in_the_order_they_end(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    third = fake.add_run("RUNNING", "RUNNING", "RUNNING", "COMPLETED")
    first = fake.add_run("RUNNING", "COMPLETED")
    # Seen final by the same poll: ordered by end_time, not by the order given.
    second_b = fake.add_run("RUNNING", "RUNNING", "FAILED", end_offset=2.5)
    second_a = fake.add_run("RUNNING", "RUNNING", "COMPLETED", end_offset=2.0)
    already = fake.add_run("COMPLETED")
    given = handles(client, fake, [third, first, second_b, second_a, already])
    order = [str(run.id) for run in client.as_completed(given, poll_interval=5)]
    assert order == [already, first, second_a, second_b, third]
    assert time.sleeps == [5, 5]
    # One request per poll: the already-final run never asked for.
    assert [len(chunk) for chunk in fake.filter_ids()] == [4, 3, 1]


def test_as_completed_yields_lazily(client: Client, fake: FakePrefect) -> None:
    given = handles(client, fake, fake.add_runs(2, "RUNNING", "COMPLETED"))
    iterator = client.as_completed(given, poll_interval=1)
    assert fake.filter_bodies == []
    next(iterator)
    assert len(fake.filter_bodies) == 1


def test_as_completed_raises_a_timeout_error_after_yielding_the_finished_runs(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    done_id = fake.add_run("RUNNING", "COMPLETED")
    stuck = fake.add_run("RUNNING")
    seen = []
    with pytest.raises(FlowRunTimeoutError) as caught:
        for run in client.as_completed([done_id, stuck], timeout=7, poll_interval=5):
            seen.append(str(run.id))
    assert seen == [done_id]
    error = caught.value
    assert str(error.flow_run_id) == stuck and [str(r.id) for r in error.not_done] == [stuck]
    assert error.state is not None and error.state.type == "RUNNING"
    assert time.now == 7


# -- run_many ----------------------------------------------------------------------------


def test_run_many_keeps_the_order_of_the_calls_whatever_the_trigger_order(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    fake.script_for_new_runs("SCHEDULED", "COMPLETED")
    calls: List[Any] = [{"name": "add/add-dep", "parameters": {"x": i}} for i in range(30)]
    calls += [("add/add-dep", {"parameters": {"x": 30}}), "add/add-dep", uuid.UUID(DEPLOYMENT_ID)]
    runs = client.run_many(calls, max_workers=8, poll_interval=2)
    assert [run.parameters.get("x") for run in runs] == [*range(31), None, None]
    assert states(runs) == ["COMPLETED"] * 33
    assert len(fake.filter_bodies) == 1 and time.sleeps == []


def test_run_many_with_timeout_zero_returns_the_created_runs(
    client: Client, fake: FakePrefect
) -> None:
    runs = client.run_many(["add/add-dep"] * 3, timeout=0)
    assert states(runs) == ["SCHEDULED"] * 3 and fake.filter_bodies == []


@pytest.mark.parametrize(
    "calls, error",
    [
        ([{"parameters": {}}], InvalidArgumentError),
        ([{"name": "add/add-dep", "timeout": 3}], InvalidArgumentError),
        ([42], InvalidArgumentTypeError),
        (["add/add-dep", ("a", "b", "c")], InvalidArgumentTypeError),
    ],
)
def test_run_many_refuses_malformed_calls_before_any_request(
    client: Client, fake: FakePrefect, calls: Any, error: type
) -> None:
    with pytest.raises(error):
        client.run_many(calls)
    assert fake.created == []
    with pytest.raises(InvalidArgumentError):
        client.run_many(["add/add-dep"], max_workers=0)


def test_run_many_raises_the_first_failed_call_after_trying_them_all(
    client: Client, fake: FakePrefect
) -> None:
    calls: List[Any] = [
        "add/add-dep",
        {"name": "add/add-dep", "parameters": {"x": object()}},
        "add/add-dep",
    ]
    with pytest.raises(InvalidArgumentTypeError, match=r"parameters\['x'\]"):
        client.run_many(calls, timeout=0)
    assert len(fake.created) == 2


def test_run_many_resolves_each_deployment_once_and_an_unknown_one_before_any_run(
    client: Client, fake: FakePrefect
) -> None:
    client.run_many(["add/add-dep"] * 20, max_workers=8, timeout=0)
    lookups = [c for c in fake.mock.calls if c.request.method == "GET"]
    assert len(lookups) == 1

    fake.mock.add(
        responses.GET,
        f"{API}/deployments/name/nope/nope",
        status=404,
        json={"detail": "Deployment not found"},
    )
    created = len(fake.created)
    with pytest.raises(DeploymentNotFoundError, match="nope/nope"):
        client.run_many(["add/add-dep", "nope/nope", "add/add-dep"], timeout=0)
    assert len(fake.created) == created


def test_run_many_workers_run_under_the_callers_parent(
    client: Client, fake: FakePrefect, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: List[Optional[deploytrigger.ParentRun]] = []
    real_submit = client.submit

    def recording_submit(name: Any, **options: Any) -> FlowRunHandle:
        seen.append(deploytrigger.current_parent())
        return real_submit(name, **options)

    monkeypatch.setattr(client, "submit", recording_submit)
    parent_id = uuid.uuid4()
    with deploytrigger.parent_run(parent_id):
        # The parent must not be created on the fake server: only check what workers see.
        unlinked = Link(uuid.uuid4(), {})  # a placeholder the fake does not hold
        monkeypatch.setattr(client._parents, "link", lambda *a, **k: unlinked)
        client.run_many(["add/add-dep"] * 4, max_workers=4, timeout=0)
    assert len(seen) == 4
    assert all(parent is not None and parent.flow_run_id == parent_id for parent in seen)


# -- thread safety -------------------------------------------------------------------------


def test_64_threads_sharing_one_client_each_get_their_own_runs(fake: FakePrefect) -> None:
    time = FakeTime()
    fake.script_for_new_runs("SCHEDULED", "PENDING", "RUNNING", "COMPLETED")
    with make_client(time, pool_size=64) as client:

        def work(index: int) -> List[str]:
            rng = random.Random(index)
            mine = [client.submit("add/add-dep", parameters={"x": index}) for _ in range(3)]
            fired: List[FlowRunHandle] = []
            for handle in mine:
                handle.add_done_callback(fired.append)
            how = rng.choice(["wait_all", "as_completed", "result", "refresh"])
            if how == "wait_all":
                client.wait_all(mine, poll_interval=0)
            elif how == "as_completed":
                assert len(list(client.as_completed([h.id for h in mine], poll_interval=0))) == 3
                client.wait_all(mine, poll_interval=0)
            elif how == "result":
                for handle in mine:
                    handle.result(poll_interval=0)
            else:
                while not all(handle.done() for handle in mine):
                    for handle in mine:
                        handle.refresh()
            assert sorted(map(id, fired)) == sorted(map(id, mine))
            for handle in mine:
                assert handle.flow_run.parameters["x"] == index
            return [str(handle.id) for handle in mine]

        with ThreadPoolExecutor(max_workers=64) as pool:
            results = list(pool.map(work, range(64)))
            many = pool.submit(client.run_many, ["add/add-dep"] * 40, 16, None, 0).result()
    ids = [run_id for result in results for run_id in result]
    assert len(set(ids)) == 64 * 3
    assert states(many) == ["COMPLETED"] * 40


def test_wait_all_takes_the_flow_runs_run_many_returns(
    client: Client, fake: FakePrefect, time: FakeTime
) -> None:
    fake.script_for_new_runs("SCHEDULED", "COMPLETED")
    runs = client.run_many(["add/add-dep"] * 3, timeout=0)
    done, not_done = client.wait_all(runs, poll_interval=2)
    assert [handle.id for handle in done] == [run.id for run in runs] and not_done == []
    assert states([handle.flow_run for handle in done]) == ["COMPLETED"] * 3
