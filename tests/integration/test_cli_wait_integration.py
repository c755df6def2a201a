"""``deploytrigger wait`` and ``run --watch``, as a subprocess, against the real Prefect server.

Real runs of ``examples/flows.py`` end COMPLETED, FAILED or still going; the
command's lines, JSON objects and one exit code must say so. ``run --watch``
must print the flow's last log line and exit a few seconds after the run ends,
whatever its poll interval.
"""

from __future__ import annotations

import json
import time
from typing import Dict, Iterator, List

import pytest
from helpers.cli_process import cli_environment, deploytrigger

from deploytrigger import Client, FlowRun

pytestmark = pytest.mark.integration

WATCH_POLL = 30.0
"""``run --watch``'s poll interval: far longer than it takes to exit once the run ends."""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    return cli_environment(tmp_path_factory.mktemp("prefect-home"))


@pytest.fixture()
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url) as opened:
        yield opened


def start(client: Client, name: str, **parameters: object) -> FlowRun:
    return client.run_deployment(name, parameters=parameters, timeout=0)


def test_wait_reports_each_run_and_exits_1_when_one_failed(
    api_url: str, env: Dict[str, str], client: Client
) -> None:
    runs = [
        start(client, "add/add-dep", x=1, y=2),
        start(client, "fail/fail-dep"),
        start(client, "sleepy/sleepy-dep", seconds=1.0),
    ]
    ids = [str(run.id) for run in runs]
    result = deploytrigger(env, api_url, "wait", *ids, "--poll-interval", "0.5")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    by_id = {run_id: next(line for line in lines if run_id in line) for run_id in ids}
    assert ": COMPLETED, ran " in by_id[ids[0]]
    assert ": FAILED, ran " in by_id[ids[1]] and "RuntimeError: boom" in by_id[ids[1]]
    assert ": COMPLETED, ran " in by_id[ids[2]]
    assert "3 flow runs  2 Completed, 1 Failed" in result.stderr

    again = deploytrigger(env, api_url, "wait", *ids, "--json")  # all final: at once
    assert again.returncode == 1
    objects: List[Dict[str, object]] = [json.loads(line) for line in again.stdout.splitlines()]
    assert sorted((str(o["state"]), o["exit_code"]) for o in objects) == [
        ("COMPLETED", 0),
        ("COMPLETED", 0),
        ("FAILED", 1),
    ]
    assert again.stderr == ""


def test_wait_exits_3_at_the_timeout_and_the_run_keeps_going(
    api_url: str, env: Dict[str, str], client: Client
) -> None:
    done = start(client, "add/add-dep", x=2, y=2)
    client.wait_for_flow_run(done.id, timeout=120, poll_interval=0.5)
    slow = start(client, "sleepy/sleepy-dep", seconds=60.0)
    try:
        result = deploytrigger(
            env, api_url, "wait", str(done.id), str(slow.id), "--timeout", "2", "--json"
        )
        assert result.returncode == 3, result.stderr
        objects = {o["id"]: o for o in map(json.loads, result.stdout.splitlines())}
        assert objects[str(done.id)]["state"] == "COMPLETED"
        assert objects[str(slow.id)]["final"] is False
        assert not client.read_flow_run(slow.id).is_final()
    finally:
        client.cancel_flow_run(slow.id)


def test_run_watch_exits_a_few_seconds_after_the_run_ends_with_its_last_line(
    api_url: str, env: Dict[str, str], client: Client
) -> None:
    result = deploytrigger(
        env, api_url, "run", "add/add-dep", "-p", "x=3", "--watch", "--json",
        "--poll-interval", str(WATCH_POLL),
    )  # fmt: skip
    exited = time.time()
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    ended = client.read_flow_run(run["id"]).end_time
    assert ended is not None
    # The run's final event wakes the watch and its lines drain for 3 s of quiet: the
    # command exits before another poll would come (the old stream waited two whole
    # polls after the final state). No speed is asserted: a poll is 30 s away.
    assert exited - ended.timestamp() < WATCH_POLL
    watched = result.stderr.splitlines()  # with --json the stream goes to stderr
    assert sum("Finished in state Completed()" in line for line in watched) == 1
    assert any("STATE    Completed" in line for line in watched)
