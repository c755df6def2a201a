"""One outage policy at every wait: each entry point polls on through a server that
cannot answer, up to ``outage_tolerance``, then raises (HTTP stubbed, time faked).

The same scripted outage (reads answering 503, or refused connections, with
no retries inside a request) hits every entry point that waits.
"""

from __future__ import annotations

import io
import logging
from typing import Any, Callable, Dict, List

import pytest
from helpers.fake_prefect import API, FakePrefect, FakeTime, fake, make_client, time  # noqa: F401 - the fixtures

from deploytrigger import Client, ConnectionFailedError, FlowRun, ServerError, StateType, cli
from deploytrigger.cli._output import WarningLines

TOLERANCE = 60.0
INTERVAL = 5.0


def last_run(events: Any) -> FlowRun:
    runs = [event for event in events if isinstance(event, FlowRun)]
    return runs[-1]


def new_run(fake: FakePrefect, client: Client) -> FlowRun:
    """A run whose first state the caller has seen (as after a create)."""
    run_id = fake.add_run("SCHEDULED", "RUNNING", "COMPLETED")
    fake.reads[run_id] = 1
    return FlowRun.from_json(fake.run_json(run_id, 0), api_url=API)


# Each entry point waits for runs following SCHEDULED -> RUNNING -> COMPLETED and
# returns the runs it ended with.
ENTRY_POINTS: Dict[str, Callable[[Client, FakePrefect], List[FlowRun]]] = {
    "run_deployment": lambda c, f: [c.run_deployment("add/add-dep", poll_interval=INTERVAL)],
    "wait_for_flow_run": lambda c, f: [
        c.wait_for_flow_run(new_run(f, c).id, poll_interval=INTERVAL)
    ],
    "handle.wait": lambda c, f: [c.submit("add/add-dep", poll_interval=INTERVAL).wait()],
    "handle.result": lambda c, f: [c.submit("add/add-dep", poll_interval=INTERVAL).result()],
    "wait_all": lambda c, f: [
        h.flow_run
        for h in c.wait_all(
            [c.submit("add/add-dep") for _ in range(3)], poll_interval=INTERVAL
        ).done
    ],
    "as_completed": lambda c, f: list(
        c.as_completed([c.submit("add/add-dep") for _ in range(3)], poll_interval=INTERVAL)
    ),
    "run_many": lambda c, f: c.run_many(["add/add-dep"] * 3, poll_interval=INTERVAL),
    "follow_logs": lambda c, f: [
        _drained(c, c.follow_logs(run.id, poll_interval=INTERVAL), run) for run in [new_run(f, c)]
    ],
    "watch": lambda c, f: [last_run(c.watch(new_run(f, c).id, poll_interval=INTERVAL))],
}


READS_PER_POLL = {"follow_logs": 2, "watch": 2}  # the run, then its log lines


def _drained(client: Client, lines: Any, run: FlowRun) -> FlowRun:
    assert list(lines) == []  # the scripted run logs nothing; the follow must end
    return client.read_flow_run(run.id)


@pytest.mark.parametrize("status", [503, 0], ids=["503", "refused"])
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_wait_polls_on_through_an_outage_shorter_than_the_tolerance(
    fake: FakePrefect, time: FakeTime, entry: str, status: int
) -> None:
    # After the first poll, 8 reads fail: up to 40 s of outage at 5 s, under the 60 s.
    fake.fail_next(8, status=status, after=READS_PER_POLL.get(entry, 1))
    with make_client(time, max_retries=0, outage_tolerance=TOLERANCE) as client:
        runs = ENTRY_POINTS[entry](client, fake)
    assert fake.outage_answers == 8, "the outage was not crossed"
    assert runs and all(run.state is not None for run in runs)
    assert {run.state.type for run in runs if run.state} == {StateType.COMPLETED}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_wait_raises_once_the_outage_outlasts_the_tolerance(
    fake: FakePrefect, time: FakeTime, entry: str
) -> None:
    fake.fail_next(1000, after=READS_PER_POLL.get(entry, 1))
    with make_client(time, max_retries=0, outage_tolerance=TOLERANCE) as client:
        started = time.now
        with pytest.raises(ServerError, match="503"):
            ENTRY_POINTS[entry](client, fake)
    waited = time.now - started
    assert TOLERANCE <= waited <= TOLERANCE + 2 * INTERVAL


def test_a_wait_with_a_timeout_ends_at_its_deadline_during_an_outage(
    fake: FakePrefect, time: FakeTime
) -> None:
    fake.fail_next(1000, status=0)
    with make_client(time, max_retries=0, outage_tolerance=TOLERANCE) as client:
        run = client.run_deployment("add/add-dep", timeout=20, poll_interval=INTERVAL)
    assert run.state is not None and run.state.type is StateType.SCHEDULED  # as created
    assert time.now == 20


def test_the_first_read_of_a_run_known_only_by_id_is_not_waited_out(
    fake: FakePrefect, time: FakeTime
) -> None:
    fake.fail_next(1, status=0)
    with make_client(time, max_retries=0) as client:
        run_id = new_run(fake, client).id
        with pytest.raises(ConnectionFailedError):
            client.wait_for_flow_run(run_id)
    assert time.sleeps == []


@pytest.mark.isolated_environment(api_url=API)
def test_the_cli_polls_on_through_an_outage(
    fake: FakePrefect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_CLIENT_MAX_RETRIES", "0")  # each failed poll fails at once
    fake.fail_next(3, after=1)
    out, err = io.StringIO(), io.StringIO()
    # Without --watch, so that no real time passes draining logs: --watch follows
    # through the same Client.watch (the "watch" entry point above), logs included.
    code = cli.main(["run", "add/add-dep", "--poll-interval", "0"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert fake.outage_answers == 3
    assert "COMPLETED" in out.getvalue() or "Completed" in out.getvalue()
    # The library's warning reaches the terminal, once (the outage is shorter than a minute).
    warnings = [line for line in err.getvalue().splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("deploytrigger: warning: the server cannot answer (")
    assert warnings[0].endswith("the wait keeps trying for up to about 5 min more")
    handlers = logging.getLogger("deploytrigger").handlers
    assert not any(isinstance(h, WarningLines) for h in handlers)  # removed once it ends


def test_runs_given_as_flow_runs_are_waited_through_an_outage_from_the_first_poll(
    fake: FakePrefect, time: FakeTime
) -> None:
    fake.fail_next(3, status=0)
    with make_client(time, max_retries=0, outage_tolerance=TOLERANCE) as client:
        runs = [new_run(fake, client) for _ in range(2)]
        done, not_done = client.wait_all(runs, poll_interval=INTERVAL)
    assert fake.outage_answers == 3 and not_done == []
    assert [handle.id for handle in done] == [run.id for run in runs]
