"""One measurement with one client library, in a fresh process; prints one JSON line.

Run by ``benchmarks/run.py``, never by hand::

    python -m benchmarks.worker LIB TASK API_URL [ARGS...]

LIB is ``deploytrigger`` (a reused ``Client``), ``module`` (the module-level
``deploytrigger.run_deployment`` over the default client), ``prefect``
(Prefect's own sync ``run_deployment`` and sync client) or ``raw`` (a minimal
``requests`` loop). Every library does
the same work per trigger: resolve ``flow/deployment`` by name, create the run.
Triggered runs are scheduled far in the future so nothing executes them.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List

DEPLOYMENT = "add/add-dep"
FAR_FUTURE = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


# -- one trigger, per library --------------------------------------------------------------


def deploytrigger_trigger(api_url: str, threads: int) -> Callable[[], Any]:
    from deploytrigger import Client

    client = Client(api_url, pool_size=max(32, threads))
    return lambda: client.run_deployment(DEPLOYMENT, timeout=0, scheduled_time=FAR_FUTURE)


def module_trigger(api_url: str, threads: int) -> Callable[[], Any]:
    """The module-level function: the default client comes from PREFECT_API_URL (= api_url)."""
    import deploytrigger

    return lambda: deploytrigger.run_deployment(DEPLOYMENT, timeout=0, scheduled_time=FAR_FUTURE)


def prefect_trigger(api_url: str, threads: int) -> Callable[[], Any]:
    from prefect.deployments import run_deployment

    return lambda: run_deployment(DEPLOYMENT, timeout=0, scheduled_time=FAR_FUTURE)


def raw_session(threads: int) -> Any:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    # SQLite answers concurrent writers 503 "database is busy": any client must retry.
    retry = Retry(total=8, status_forcelist=[503], allowed_methods=None, backoff_factor=0.05)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=max(32, threads), max_retries=retry))
    return session


def raw_trigger(api_url: str, threads: int) -> Callable[[], Any]:
    session = raw_session(threads)
    flow, name = DEPLOYMENT.split("/")
    body = {
        "state": {
            "type": "SCHEDULED",
            "name": "Scheduled",
            "state_details": {"scheduled_time": FAR_FUTURE.isoformat()},
        }
    }

    def trigger() -> Any:
        response = session.get(f"{api_url}/deployments/name/{flow}/{name}", timeout=30)
        response.raise_for_status()
        deployment_id = response.json()["id"]
        response = session.post(
            f"{api_url}/deployments/{deployment_id}/create_flow_run",
            json={**body, "idempotency_key": str(uuid.uuid4())},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()

    return trigger


TRIGGERS = {
    "deploytrigger": deploytrigger_trigger,
    "module": module_trigger,
    "prefect": prefect_trigger,
    "raw": raw_trigger,
}


def raw_steady_trigger(api_url: str, threads: int) -> Callable[[], Any]:
    """The bare floor of steady-state triggering (issue 7): the deployment id is known,
    so one ``POST create_flow_run`` with a prebuilt body and a fresh idempotency key."""
    session = raw_session(threads)
    flow, name = DEPLOYMENT.split("/")
    deployment_id = session.get(f"{api_url}/deployments/name/{flow}/{name}", timeout=30).json()[
        "id"
    ]
    url = f"{api_url}/deployments/{deployment_id}/create_flow_run"
    body = {
        "state": {
            "type": "SCHEDULED",
            "name": "Scheduled",
            "state_details": {"scheduled_time": FAR_FUTURE.isoformat()},
        }
    }

    def trigger() -> Any:
        response = session.post(
            url, json={**body, "idempotency_key": str(uuid.uuid4())}, timeout=30
        )
        response.raise_for_status()
        return response.json()

    return trigger


CPU_TRIGGERS = {**TRIGGERS, "raw": raw_steady_trigger}


# -- tasks ------------------------------------------------------------------------------------


def latency(lib: str, api_url: str, count: str) -> Dict[str, Any]:
    """Sequential triggers with timeout=0: seconds each (after one warm-up)."""
    trigger = TRIGGERS[lib](api_url, 1)
    trigger()
    seconds = []
    for _ in range(int(count)):
        started = time.perf_counter()
        trigger()
        seconds.append(time.perf_counter() - started)
    return {"seconds": seconds}


def fanout(lib: str, api_url: str, count: str, threads: str) -> Dict[str, Any]:
    """``count`` triggers from ``threads`` threads: triggers per second."""
    workers = int(threads)
    trigger = TRIGGERS[lib](api_url, workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _: trigger(), range(workers)))  # warm-up: imports, connections
        started = time.perf_counter()
        list(pool.map(lambda _: trigger(), range(int(count))))
        elapsed = time.perf_counter() - started
    return {"per_second": int(count) / elapsed, "seconds": elapsed}


def cpu(lib: str, api_url: str, count: str) -> Dict[str, Any]:
    """CPU seconds of this process per sequential trigger (timeout=0), in steady state.

    Ten warm-up triggers first (imports, connection, deploytrigger's deployment
    cache), then ``count`` triggers timed with ``time.process_time`` (user +
    system CPU of this process, all threads), so the server's CPU is not counted.
    """
    trigger = CPU_TRIGGERS[lib](api_url, 1)
    for _ in range(10):
        trigger()
    wall, started = time.perf_counter(), time.process_time()
    for _ in range(int(count)):
        trigger()
    cpu_seconds = time.process_time() - started
    return {
        "cpu_per_trigger": cpu_seconds / int(count),
        "wall_per_trigger": (time.perf_counter() - wall) / int(count),
    }


def count(lib: str, api_url: str, triggers: str, threads: str) -> Dict[str, Any]:
    """``triggers`` steady-state triggers from ``threads`` threads, for the caller to count.

    Warms up first (one trigger per thread: imports, connections, caches),
    then prints ``READY`` and waits for a line on stdin, so that the caller's
    proxy counts only the steady-state requests.
    """
    workers = int(threads)
    trigger = TRIGGERS[lib](api_url, workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _: trigger(), range(workers)))
        print("READY", flush=True)
        sys.stdin.readline()
        started = time.perf_counter()
        list(pool.map(lambda _: trigger(), range(int(triggers))))
        elapsed = time.perf_counter() - started
    return {"triggers": int(triggers), "seconds": elapsed}


def poll(lib: str, api_url: str, ids_file: str, interval: str, rounds: str) -> Dict[str, Any]:
    """Wait on the runs in ``ids_file`` for ``rounds`` poll intervals (none of them ends).

    Prints ``READY`` and waits for a line on stdin before polling, so that the
    caller counts only the polling requests.
    """
    with open(ids_file) as ids_in:
        ids: List[str] = json.load(ids_in)
    every, count = float(interval), int(rounds)
    if lib == "deploytrigger":
        from deploytrigger import Client

        client = Client(api_url)

        def wait() -> None:
            # ``count`` polls: at 0, every, ... and the last one at the deadline.
            client.wait_all(ids, timeout=every * (count - 1), poll_interval=every)

    else:
        if lib == "prefect":
            from prefect.client.orchestration import get_client

            prefect_client = get_client(sync_client=True)
            prefect_client.__enter__()
            read: Callable[[str], Any] = prefect_client.read_flow_run
        else:
            session = raw_session(1)

            def read(run_id: str) -> Any:
                return session.get(f"{api_url}/flow_runs/{run_id}", timeout=30).json()

        def wait() -> None:
            # What N run_deployment(timeout=...) calls cost: one GET per run per interval.
            for index in range(count):
                started = time.monotonic()
                for run_id in ids:
                    read(run_id)
                if index < count - 1:
                    time.sleep(max(0.0, every - (time.monotonic() - started)))

    print("READY", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    wait()
    return {"polls": count, "seconds": time.monotonic() - started}


def complete(lib: str, api_url: str, reps: str, interval: str) -> Dict[str, Any]:
    """Run add/add-dep to the end, polling every ``interval`` s: seconds from the run's
    end_time (set by the server) to the waiter returning."""
    from deploytrigger.models import parse_datetime

    every = float(interval)
    delays = []
    for _ in range(int(reps)):
        if lib == "deploytrigger":
            from deploytrigger import Client

            with Client(api_url) as client:
                run = client.run_deployment(DEPLOYMENT, poll_interval=every, timeout=300)
            returned = time.time()
            end = run.end_time
        elif lib == "prefect":
            from prefect.deployments import run_deployment

            prefect_run = run_deployment(DEPLOYMENT, poll_interval=every, timeout=300)
            returned = time.time()
            end = parse_datetime(prefect_run.end_time.isoformat()) if prefect_run.end_time else None
        else:
            session = raw_session(1)
            deployment = session.get(f"{api_url}/deployments/name/add/add-dep", timeout=30).json()
            record = session.post(
                f"{api_url}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=30
            ).json()
            while record["state_type"] not in FINAL:
                time.sleep(every)
                record = session.get(f"{api_url}/flow_runs/{record['id']}", timeout=30).json()
            returned = time.time()
            end = parse_datetime(record["end_time"])
        assert end is not None, "the run has no end_time"
        delays.append(returned - end.timestamp())
    return {"seconds": delays}


TASKS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "latency": latency,
    "cpu": cpu,
    "fanout": fanout,
    "count": count,
    "poll": poll,
    "complete": complete,
}


def main() -> None:
    lib, task, api_url, *args = sys.argv[1:]
    result = TASKS[task](lib, api_url, *args)
    print("RESULT " + json.dumps(result), flush=True)
    threading.Event().wait(0)


if __name__ == "__main__":
    main()
