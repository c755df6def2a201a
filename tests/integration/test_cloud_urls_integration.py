"""API URLs with a path in front of the API (Prefect Cloud's shape), against the real server.

A path-rewriting :class:`~harness.proxy.Proxy` serves the local
server's API under ``/api/accounts/<account>/workspaces/<workspace>`` (and under
``/team/prefect/api``): every call must go there, never to ``/api/...`` directly
(the proxy answers those 404).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from typing import Dict, Iterator

import pytest
from helpers.server_http import raw

from deploytrigger import Client, StateType
from harness.proxy import Proxy

pytestmark = pytest.mark.integration

ACCOUNT = "6a3e0c2b-1b7a-4a0e-9c55-0d1f2e3a4b5c"
WORKSPACE = "0f9e8d7c-6b5a-4f3e-8d2c-1b0a9f8e7d6c"
CLOUD_PATH = f"/api/accounts/{ACCOUNT}/workspaces/{WORKSPACE}"
FAR_FUTURE = dt.datetime(2099, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def cloud(api_url: str) -> Iterator[Proxy]:
    with Proxy(api_url, api_path=CLOUD_PATH) as proxy:
        yield proxy


def all_under_the_prefix(proxy: Proxy, prefix: str) -> None:
    assert proxy.total() > 0
    assert "unknown-path" not in proxy.actions(), proxy.by_endpoint()
    assert all(r.path.startswith(prefix + "/") for r in proxy.received)


@pytest.mark.parametrize("api_path", [CLOUD_PATH, "/team/prefect/api"])
def test_trigger_and_wait_under_a_path_prefix(api_url: str, api_path: str) -> None:
    with Proxy(api_url, api_path=api_path) as proxy, Client(proxy.api_url) as client:
        run = client.run_deployment("add/add-dep", parameters={"x": 2}, poll_interval=0.5)

    assert run.state is not None and run.state.type is StateType.COMPLETED
    assert proxy.api_url.endswith(api_path)
    all_under_the_prefix(proxy, api_path)


def test_linking_logs_and_cancel_under_the_cloud_path(cloud: Proxy, api_url: str) -> None:
    with Client(cloud.api_url) as client:
        with client.flow_run("deploytrigger-cloud-path") as parent:
            child = client.run_deployment("add/add-dep", parameters={"x": 3}, poll_interval=0.5)
        placeholder = raw.get(f"{api_url}/task_runs/{child.parent_task_run_id}", timeout=30)
        assert placeholder.json()["flow_run_id"] == str(parent.id)

        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline and not any("sum is 13" in r.message for r in lines):
            lines = client.read_all_logs(child.id)  # logs arrive in batches after the run
            time.sleep(0.5)
        assert any("sum is 13" in record.message for record in lines)

        scheduled = client.run_deployment("add/add-dep", scheduled_time=FAR_FUTURE, timeout=0)
        assert client.cancel_flow_run(scheduled.id) is True
        cancelled = client.wait_for_flow_run(scheduled.id, timeout=30, poll_interval=0.5)
        assert cancelled.state is not None and cancelled.state.type is StateType.CANCELLED

    all_under_the_prefix(cloud, CLOUD_PATH)
    endpoints = cloud.by_endpoint()
    assert any(endpoint.endswith("/logs/filter") for endpoint in endpoints)
    assert any(endpoint.endswith("/task_runs/") for endpoint in endpoints)
    assert any(endpoint.endswith("/set_state") for endpoint in endpoints)


def test_the_cli_under_the_cloud_path(
    cloud: Proxy, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env: Dict[str, str] = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    env["PREFECT_API_URL"] = cloud.api_url
    result = subprocess.run(
        [sys.executable, "-m", "deploytrigger", "run", "add/add-dep", "-p", "x=4", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["state"] == "COMPLETED"
    all_under_the_prefix(cloud, CLOUD_PATH)
