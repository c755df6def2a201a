"""Shared fixtures: a real Prefect server for the integration tests.

The server starts once per session, and only when a test asks for it, so the
unit tests run without one. It serves ``examples/flows.py``, run by path
(the demo serves the same script).
"""

import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest
from server_http import server_session

from deploytrigger.testing.local_server import LocalPrefect

FLOWS_SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "flows.py"
#: The deployments that ``examples/flows.py`` serves, as ``"<flow>/<deployment>"``.
DEPLOYMENT_NAMES: Tuple[str, ...] = (
    "add/add-dep",
    "fail/fail-dep",
    "sleepy/sleepy-dep",
    "echo/echo-dep",
    "json-result/json-result-dep",
    "compressed-result/compressed-result-dep",
    "pickle-result/pickle-result-dep",
    "json-fail/json-fail-dep",
    "block-result/block-result-dep",
    "remote-result/remote-result-dep",
)
POOL_NAME = "test-pool"
POOL_QUEUE_NAME = "wq"
POOLED_DEPLOYMENT = "pooled/pooled-dep"


@pytest.fixture(autouse=True)
def fresh_default_client() -> Iterator[None]:
    """No test sees the default client (its deployment cache) of another test."""
    yield
    defaults = sys.modules.get("deploytrigger.defaults")
    if defaults is not None:
        defaults.reset_default_client()


@pytest.fixture(scope="session")
def prefect() -> Iterator[LocalPrefect]:
    """A started local Prefect server serving ``examples/flows.py``."""
    with LocalPrefect(FLOWS_SCRIPT, deployments=DEPLOYMENT_NAMES) as server:
        yield server


@pytest.fixture(scope="session")
def api_url(prefect: LocalPrefect) -> str:
    """The local server's API URL, ending in ``/api``."""
    return prefect.api_url


@pytest.fixture(scope="session")
def pooled_deployment(prefect: LocalPrefect) -> str:
    """The name of a deployment in process work pool ``test-pool``, which has a queue ``wq``.

    Nothing executes its runs; it exists so that a test can see
    ``work_queue_name`` reach the run record (a served deployment has no work
    pool and answers 400 to ``work_queue_name``).
    """
    flow_name, deployment_name = POOLED_DEPLOYMENT.split("/")
    with server_session(prefect.auth) as http:

        def post(path: str, body: Dict[str, Any]) -> Dict[str, Any]:
            response = http.post(f"{prefect.api_url}{path}", json=body, timeout=30)
            assert response.status_code in (200, 201), (path, response.status_code, response.text)
            result: Dict[str, Any] = response.json()
            return result

        post("/work_pools/", {"name": POOL_NAME, "type": "process"})
        post(f"/work_pools/{POOL_NAME}/queues", {"name": POOL_QUEUE_NAME})
        flow = post("/flows/", {"name": flow_name})
        post(
            "/deployments/",
            {
                "name": deployment_name,
                "flow_id": flow["id"],
                "work_pool_name": POOL_NAME,
                "parameters": {},
                "tags": ["pooled"],
            },
        )
    return POOLED_DEPLOYMENT


AUTH_USER = "trigger-user"
AUTH_PASSWORD = "auth-s3cret-Pa55word"
AUTH_FLOW, AUTH_DEPLOYMENT = "authflow", "auth-dep"


@pytest.fixture(scope="session")
def auth_prefect() -> Iterator[LocalPrefect]:
    """A second server that requires basic auth ``AUTH_USER:AUTH_PASSWORD``.

    It serves no flows (cheaper to start); it has one deployment,
    ``authflow/auth-dep``, whose runs nothing executes. Started only when a
    test asks for it, shared by the auth and secrets tests.
    """
    env = {"PREFECT_SERVER_API_AUTH_STRING": f"{AUTH_USER}:{AUTH_PASSWORD}"}
    with LocalPrefect(env=env) as server:
        with server_session(server.auth) as http:

            def post(path: str, body: Dict[str, Any]) -> Dict[str, Any]:
                response = http.post(f"{server.api_url}{path}", json=body, timeout=30)
                response.raise_for_status()
                result: Dict[str, Any] = response.json()
                return result

            flow = post("/flows/", {"name": AUTH_FLOW})
            post(
                "/deployments/", {"name": AUTH_DEPLOYMENT, "flow_id": flow["id"], "parameters": {}}
            )
        yield server
