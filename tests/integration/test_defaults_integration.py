"""The module-level functions over the default client, against a real server, counted by a proxy.

Steady state costs one request per trigger, sequentially, from 16 threads and
in a gunicorn app with 4 forked workers (``examples/gunicorn_app``); a forked
child never sends on its parent's connection. The runs are of
``pooled/pooled-dep``, which nothing executes, so the server only records them.

A SQLite-backed server answers concurrent writers with 503 now and then, and
the client retries (up to ``RETRIES`` times here: the machine is shared and
small): a retried create carries the idempotency key of its first attempt, so
requests per trigger are counted without those retries (and the retries are
checked to be nothing else).
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

import pytest
import requests
from helpers.server_http import raw

import deploytrigger
from harness.processes import Service, free_port
from harness.proxy import Proxy, Received

pytestmark = pytest.mark.integration

EXAMPLE_APP = Path(__file__).resolve().parents[2] / "examples" / "gunicorn_app"
CREATE = "POST /api/deployments/{id}/create_flow_run"
RETRIES = "10"


@pytest.fixture
def proxy(api_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Proxy]:
    """A counting proxy in front of the server; the environment points the default client at it."""
    with Proxy(api_url) as counting:
        monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
        monkeypatch.setenv("PREFECT_API_URL", counting.api_url)
        monkeypatch.setenv("PREFECT_CLIENT_MAX_RETRIES", RETRIES)
        for name in ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        deploytrigger.reset_default_client()
        yield counting
        deploytrigger.reset_default_client()


def resolves(name: str) -> str:
    return f"GET /api/deployments/name/{name}"


def first_attempts(received: List[Received]) -> List[Received]:
    """The requests received, less the retries of a create (same idempotency key)."""
    seen: Set[str] = set()
    firsts = []
    for request in received:
        if request.path.endswith("/create_flow_run"):
            key = json.loads(request.body)["idempotency_key"]
            if key in seen:
                continue
            seen.add(key)
        firsts.append(request)
    return firsts


def by_endpoint(received: List[Received]) -> Dict[str, int]:
    counts: Counter[str] = Counter()
    for request in received:
        path = request.path.split("?", 1)[0]
        parts = ["{id}" if len(p) == 36 and p.count("-") == 4 else p for p in path.split("/")]
        counts[f"{request.method} {'/'.join(parts)}"] += 1
    return dict(counts)


def test_sequential_module_level_triggers_cost_one_request_each_on_one_connection(
    proxy: Proxy, pooled_deployment: str
) -> None:
    deploytrigger.run_deployment(pooled_deployment, timeout=0)
    assert proxy.by_endpoint() == {resolves(pooled_deployment): 1, CREATE: 1}
    proxy.clear_received()

    runs = [deploytrigger.run_deployment(pooled_deployment, timeout=0) for _ in range(20)]

    firsts = first_attempts(proxy.received)
    assert by_endpoint(firsts) == {CREATE: 20}
    assert len({run.id for run in runs}) == 20
    assert len({request.client_port for request in proxy.received}) == 1


def test_sixteen_threads_share_the_default_client_at_one_request_per_trigger(
    proxy: Proxy, pooled_deployment: str
) -> None:
    deploytrigger.run_deployment(pooled_deployment, timeout=0)
    proxy.clear_received()

    def trigger(_: int) -> deploytrigger.FlowRun:
        return deploytrigger.run_deployment(pooled_deployment, timeout=0)

    with ThreadPoolExecutor(16) as pool:
        runs = list(pool.map(trigger, range(64)))

    firsts = first_attempts(proxy.received)
    assert by_endpoint(firsts) == {CREATE: 64}
    assert len({run.id for run in runs}) == 64
    assert all(request.path.endswith("/create_flow_run") for request in proxy.received)
    # one pool of kept-alive connections, at most one per thread: a connection is replaced only
    # after an attempt that failed (a 503, a timeout or a reset under load) and was retried
    retries = len(proxy.received) - len(firsts)
    assert len({request.client_port for request in proxy.received}) <= 16 + retries


def _trigger_in_child(name: str, answers: Any) -> None:
    run = deploytrigger.run_deployment(name, timeout=0)
    answers.put(str(run.id))


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX only")
def test_a_forked_child_never_sends_on_its_parents_connection(
    proxy: Proxy, pooled_deployment: str
) -> None:
    before = deploytrigger.run_deployment(pooled_deployment, timeout=0)
    parent_ports = {request.client_port for request in proxy.received}
    assert len(parent_ports) == 1
    proxy.clear_received()

    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    child = context.Process(target=_trigger_in_child, args=(pooled_deployment, answers))
    child.start()
    try:
        child_run_id = answers.get(timeout=60)
        child.join(30)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0
    child_requests = list(proxy.received)
    proxy.clear_received()
    after = deploytrigger.run_deployment(pooled_deployment, timeout=0)

    # the child made its own client: its own connection and its own resolve
    assert by_endpoint(first_attempts(child_requests)) == {
        resolves(pooled_deployment): 1,
        CREATE: 1,
    }
    assert {request.client_port for request in child_requests}.isdisjoint(parent_ports)
    # the parent's connection survived the child and is still the one it uses
    assert by_endpoint(first_attempts(proxy.received)) == {CREATE: 1}
    assert {request.client_port for request in proxy.received} == parent_ports
    assert len({str(before.id), child_run_id, str(after.id)}) == 3


# -- a gunicorn app with 4 preforked workers (examples/gunicorn_app) ---------------------------

TRIGGERS = 200
WORKERS = 4
SENDERS = 2  # requests in flight to the app: more only queue on the SQLite server


def test_a_gunicorn_app_with_four_workers_costs_one_request_per_trigger_plus_one_resolve_each(
    proxy: Proxy, pooled_deployment: str, tmp_path: Path, api_url: str
) -> None:
    port = free_port()
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(tmp_path),  # gunicorn's control socket goes under it
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_API_URL": proxy.api_url,
        "PREFECT_CLIENT_MAX_RETRIES": RETRIES,
        "APP_DEPLOYMENTS": pooled_deployment,
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--preload",
        "--workers",
        str(WORKERS),
        "--worker-class",
        "sync",
        "--timeout",
        "120",
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(EXAMPLE_APP),
        "app:app",
    ]
    app_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(f"{app_url}/health", timeout=5).text == "ok"
        except requests.RequestException:
            return False

    gunicorn = Service("gunicorn", command, env, tmp_path / "gunicorn.log", ready=healthy)
    with gunicorn:
        # the boot check at import, in the master only (--preload)
        assert proxy.by_endpoint() == {resolves(pooled_deployment): 1}
        master_ports = {request.client_port for request in proxy.received}
        proxy.clear_received()

        tag = f"gunicorn-{uuid.uuid4().hex[:8]}"
        url = f"{app_url}/deployments/{pooled_deployment}/runs"

        def trigger(index: int) -> Dict[str, Any]:
            body = {"parameters": {}, "tags": [tag]}
            response = requests.post(url, json=body, timeout=120)
            assert response.status_code == 201, (response.text, gunicorn.log_tail())
            answer: Dict[str, Any] = response.json()
            return answer

        started = time.monotonic()
        with ThreadPoolExecutor(SENDERS) as pool:
            answers = list(pool.map(trigger, range(TRIGGERS)))
        elapsed = time.monotonic() - started

    received = list(proxy.received)
    firsts = first_attempts(received)
    pids = {answer["worker_pid"] for answer in answers}
    counts = by_endpoint(firsts)
    # every trigger created its own run, exactly once
    assert len({answer["flow_run_id"] for answer in answers}) == TRIGGERS
    count = raw.post(
        f"{api_url}/flow_runs/count", json={"flow_runs": {"tags": {"all_": [tag]}}}, timeout=30
    )
    assert count.json() == TRIGGERS
    # one resolve per worker process, then one request per trigger
    assert 1 <= len(pids) <= WORKERS
    assert counts == {resolves(pooled_deployment): len(pids), CREATE: TRIGGERS}
    per_trigger = len(firsts) / TRIGGERS
    assert per_trigger <= (TRIGGERS + WORKERS) / TRIGGERS  # 1.02
    assert all(r.path.endswith("/create_flow_run") for r in received if r not in firsts)
    # no worker ever sent on the master's connection
    assert {request.client_port for request in received}.isdisjoint(master_ports)
    print(
        f"gunicorn: {TRIGGERS} triggers from {len(pids)} workers in {elapsed:.1f} s, "
        f"{per_trigger:.3f} requests per trigger ({len(received)} with "
        f"{len(received) - len(firsts)} retried creates)"
    )
