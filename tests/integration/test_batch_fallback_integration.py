"""Batch reads of a run the server cannot filter, against the real session server.

Prefect 3.8.8 answers ``POST /flow_runs/filter`` with 500 when one of the runs
has an integer parameter beyond 64 bits, while ``GET /flow_runs/{id}`` reads it.
The batch waits then read those runs one by one, and say so once in the log.
"""

from __future__ import annotations

import logging
from typing import Iterator, List

import pytest
from helpers.server_http import raw

from deploytrigger import Client, FlowRun, StateType

pytestmark = pytest.mark.integration

HUGE = 2**70
"""Beyond 64 bits: the server stores it, but its filter query cannot encode it."""
WAIT = 240.0
QUIRKY_SERVERS = ("3.8.",)
"""The server versions known to answer 500 (3.9 fixed the server)."""


@pytest.fixture(scope="module")
def quirky(api_url: str) -> bool:
    """Whether the session server is one that cannot filter such runs."""
    version = raw.get(f"{api_url}/admin/version", timeout=30).json()
    return str(version).startswith(QUIRKY_SERVERS)


@pytest.fixture
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url, request_timeout=30, max_retries=10) as fresh:  # its own warning
        yield fresh


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "deploytrigger"
        and record.levelno == logging.WARNING
        and "one by one" in record.getMessage()
    ]


def completed_with_huge_parameter(run: FlowRun) -> bool:
    return (
        run.state is not None
        and run.state.type is StateType.COMPLETED
        and run.parameters["x"] == HUGE
    )


def test_the_server_cannot_filter_a_run_with_a_huge_integer_parameter(
    client: Client, api_url: str, quirky: bool
) -> None:
    """The quirk the fallback exists for: if a 3.8 server ever filters the run, this fails."""
    if not quirky:
        pytest.skip("this server version filters such runs (3.9 fixed it)")
    run = client.run_deployment("add/add-dep", parameters={"x": HUGE}, timeout=0)
    assert raw.get(f"{api_url}/flow_runs/{run.id}", timeout=30).status_code == 200
    body = {"flow_runs": {"id": {"any_": [str(run.id)]}}, "limit": 1}
    answer = raw.post(f"{api_url}/flow_runs/filter", json=body, timeout=30)
    assert answer.status_code == 500, (answer.status_code, answer.text)


def test_wait_all_reads_the_run_one_by_one_and_warns_once(
    client: Client, caplog: pytest.LogCaptureFixture, quirky: bool
) -> None:
    caplog.set_level(logging.INFO, logger="deploytrigger")
    huge = client.submit("add/add-dep", parameters={"x": HUGE})
    plain = client.submit("add/add-dep", parameters={"x": 1})
    done, not_done = client.wait_all([huge, plain], timeout=WAIT, poll_interval=1)
    assert not_done == [] and set(done) == {huge, plain}
    assert completed_with_huge_parameter(huge.flow_run)
    assert client.read_flow_runs([plain.id, huge.id]) == [plain.flow_run, huge.flow_run]
    assert len(fallback_warnings(caplog)) == (1 if quirky else 0)


def test_as_completed_yields_the_run(client: Client) -> None:
    handle = client.submit("add/add-dep", parameters={"x": HUGE})
    (run,) = client.as_completed([handle], timeout=WAIT, poll_interval=1)
    assert completed_with_huge_parameter(run)


def test_run_many_returns_the_run_finished(client: Client) -> None:
    calls = [("add/add-dep", {"parameters": {"x": HUGE}}), ("add/add-dep", {"parameters": {}})]
    huge, plain = client.run_many(calls, max_workers=2, timeout=WAIT, poll_interval=1)
    assert completed_with_huge_parameter(huge)
    assert plain.state is not None and plain.state.is_completed()
