"""Scale-out: two API servers on one PostgreSQL behind nginx, one killed mid-way.

The stack (:class:`~harness.prod_stack.ProdStack` with
``api_servers=2``) runs two ``prefect server start --no-services`` processes,
the background services once (``prefect server services start``), Redis for
Prefect's messaging and nginx in front (:mod:`harness.nginx`). The runs
are executed by ``tests/integration/quick_executor.py`` (Prefect's flow engine in threads
of one process, talking to nginx too), because a process worker spends
about 2 s of CPU per run and 300 runs would take minutes.

What the test proves: ``run_many`` of 300 runs, with one API server killed
(SIGKILL) once 100 runs exist, creates every run exactly once, and every run
then runs to COMPLETED. Requests the dead server refuses go to the other one; a
create that was in flight when it died comes back as 502 (or a reset) and is
resent by deploytrigger with the same idempotency key, which the database
makes unique per flow, so a resend returns the run the first attempt made
(nginx never resends a POST that reached a server). To exercise that resend
deterministically, a fault proxy in front of nginx also throws away every
25th create's answer after the server acted.

How fast the executor gets through the runs is not under test: on two cores
beside a CPU hog 300 runs took longer than the five minutes once allowed, and
the wait then returned runs still RUNNING. The wait goes on as long as runs keep
turning final, and fails once none has for ``STALL`` seconds (a run stuck for
good, which is what must not happen).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests
from conftest import FLOWS_SCRIPT

from deploytrigger import FIRST_COMPLETED, Client, StateType
from deploytrigger.models import FlowRun
from harness.processes import Service
from harness.prod_stack import DEPLOYMENTS, ProdStack
from harness.proxy import Proxy, Rule

pytestmark = pytest.mark.integration

ADD = "add/add-dep"
RUNS = 300
KILL_AFTER = 100  # runs on the server when server-1 is killed
VICTIM = "server-1"
DROP_EVERY = 25  # every 25th create's answer is lost after the server acted
EXECUTOR = Path(__file__).resolve().parent / "quick_executor.py"
CREATE = r"/create_flow_run$"
STALL = 300  # seconds without any run turning final: stuck (several end a second when idle)


@pytest.fixture(scope="module")
def stack() -> Iterator[ProdStack]:
    with ProdStack(
        FLOWS_SCRIPT,
        api_servers=2,
        workers=0,
        deployments={ADD: DEPLOYMENTS[ADD]},
        startup_timeout=300,
    ) as started:
        yield started


@pytest.fixture(scope="module")
def executor(stack: ProdStack) -> Iterator[Service]:
    """The quick executor, polling nginx for the scheduled runs of ``add/add-dep``."""
    assert stack.base_dir is not None
    flow, name = ADD.split("/")
    deployment = http("GET", f"{stack.api_url}/deployments/name/{flow}/{name}")
    args = [sys.executable, str(EXECUTOR), str(FLOWS_SCRIPT), "add", deployment["id"]]
    with Service(
        "quick-executor",
        [*args, "--threads", "8"],
        stack.environment(),
        stack.base_dir / "quick-executor.log",
        cwd=FLOWS_SCRIPT.parent,
    ) as child:
        yield child


def http(method: str, url: str, body: Any = None) -> Any:
    response = requests.request(method, url, json=body, timeout=30)
    assert response.status_code < 300, (method, url, response.status_code, response.text)
    return response.json() if response.content else None


def tagged(tag: str) -> Dict[str, Any]:
    return {"flow_runs": {"tags": {"all_": [tag]}}}


def runs_on_server(api_url: str, tag: str) -> List[Dict[str, Any]]:
    """Every run with ``tag``, read in pages (the server caps a page at 200)."""
    found: List[Dict[str, Any]] = []
    while True:
        page = http(
            "POST",
            f"{api_url}/flow_runs/filter",
            {**tagged(tag), "limit": 200, "offset": len(found)},
        )
        found += page
        if len(page) < 200:
            return found


def count_runs(api_url: str, tag: str) -> Optional[int]:
    """How many runs carry ``tag``; None when the busy server did not answer."""
    try:
        response = requests.post(f"{api_url}/flow_runs/count", json=tagged(tag), timeout=30)
    except requests.RequestException:
        return None
    return int(response.json()) if response.status_code == 200 else None


def kill_when(stack: ProdStack, survivor: str, tag: str, stop: threading.Event) -> List[int]:
    """Kill VICTIM from a thread once KILL_AFTER runs exist; returns the counts it then saw."""
    seen: List[int] = []

    def watch() -> None:
        while not stop.is_set():
            count = count_runs(survivor, tag)  # a 503 must not end the watch
            if count is not None and count >= KILL_AFTER:
                stack.kill(VICTIM)
                seen.append(count)
                seen.append(count_runs(survivor, tag) or count)
                return
            stop.wait(0.05)

    threading.Thread(target=watch, name="killer", daemon=True).start()
    return seen


def wait_while_they_end(client: Client, runs: List[FlowRun], executor: Service) -> List[FlowRun]:
    """The runs once all are final, waited for as long as one turns final every STALL seconds."""
    handles = [client.handle(run, poll_interval=1) for run in runs]
    pending = handles
    while pending:
        done, pending = client.wait_all(
            pending, timeout=STALL, poll_interval=1, return_when=FIRST_COMPLETED
        )
        assert done, (
            f"no run turned final in {STALL} s, {len(pending)} left, such as "
            f"{pending[0].flow_run}; the executor's last lines:\n{executor.log_tail()}"
        )
    return [handle.flow_run for handle in handles]


def test_run_many_creates_300_runs_exactly_once_with_an_api_server_killed_mid_way(
    stack: ProdStack, executor: Service
) -> None:
    survivor = stack.backend_urls[0]
    tag = f"scale-{uuid.uuid4().hex[:8]}"
    calls = [(ADD, {"parameters": {"x": x}, "tags": [tag]}) for x in range(RUNS)]
    stop = threading.Event()
    started = time.monotonic()
    with Proxy(stack.api_url) as front:
        lost = front.add_rule(Rule(action="drop", method="POST", path=CREATE, every=DROP_EVERY))
        killed_at = kill_when(stack, survivor, tag, stop)
        try:
            with Client(front.api_url, pool_size=16) as client:
                created = client.run_many(calls, max_workers=16, timeout=0)
                runs = wait_while_they_end(client, created, executor)
        finally:
            stop.set()
        creates_sent = len(front.matching("POST", CREATE))
    took = time.monotonic() - started
    assert stack.nginx is not None
    victim = stack.backend_urls[1].split("//")[1].split("/")[0]
    log = stack.nginx.access_log()
    refused = [a for a in log if any(addr == victim and s == "502" for addr, s in a.upstreams)]
    passed_on = [a for a in refused if a.upstreams[-1][0] != victim and a.status < 500]
    print(f"\n{RUNS} runs in {took:.1f} s; killed at {killed_at}; {len(log)} requests via nginx,")
    print(f"{len(refused)} refused by the dead server, {len(passed_on)} of them passed on")
    creates = Counter(a.status for a in log if a.method == "POST" and "create_flow_run" in a.uri)
    print(f"creates through nginx by status: {dict(creates)}; sent to the fault proxy: ", end="")
    print(f"{creates_sent}, answers thrown away: {lost.fired}")

    # the kill happened mid-way, and the dead server was routed around afterwards
    assert killed_at and KILL_AFTER <= killed_at[0] < RUNS, killed_at
    assert executor.running() and not stack.children[VICTIM].running()
    assert passed_on  # tried after the kill, then the request went to the survivor
    # every create whose answer was lost was sent again, and returned the same run. The rule
    # fires on every 25th create the proxy sees, resends included: more resends (502s for
    # creates in flight at the kill, timeouts on a busy machine) mean more lost answers.
    assert lost.fired >= RUNS // DROP_EVERY
    assert creates_sent >= RUNS + lost.fired
    # exactly once: 300 runs for the 300 calls, no duplicates on the server
    assert [run.parameters["x"] for run in runs] == list(range(RUNS))
    assert len({run.id for run in runs}) == RUNS
    on_server = runs_on_server(survivor, tag)
    assert len(on_server) == RUNS
    assert sorted(run["parameters"]["x"] for run in on_server) == list(range(RUNS))
    assert {run["id"] for run in on_server} == {str(run.id) for run in runs}
    assert len({run["idempotency_key"] for run in on_server}) == RUNS
    # and all of them waited to a final state: the flow ran
    assert [run.state.type if run.state else None for run in runs] == [StateType.COMPLETED] * RUNS
    assert {run["state_type"] for run in on_server} == {"COMPLETED"}
