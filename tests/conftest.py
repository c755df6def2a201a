"""Shared fixtures: a real Prefect server for the integration tests.

The server starts once per session, and only when a test asks for it, so the
unit tests run without one. It serves ``examples/flows.py``, run by path
(the demo serves the same script).
"""

import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from helpers.server_http import server_session

from deploytrigger import Client
from deploytrigger._helpers import profiles
from harness.local_server import LocalPrefect
from harness.server_venv import pinned_prefect_version, pinned_versions, server_python, version_key

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
    defaults = sys.modules.get("deploytrigger._default_clients")
    if defaults is not None:
        defaults.reset_default_client()


# -- the unit tests' isolated environment ---------------------------------------------------

PREFECT_ENV = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_API_SSL_CERT_FILE",
    "PREFECT_API_TLS_INSECURE_SKIP_VERIFY",
    "PREFECT_API_REQUEST_TIMEOUT",
    "PREFECT_PROFILE",
    "PREFECT_PROFILES_PATH",
    "PREFECT_HOME",
    "PREFECT__FLOW_RUN_ID",
    "PREFECT_CLIENT_MAX_RETRIES",
    "PREFECT_UI_URL",
    "DEPLOYTRIGGER_RETRY_BUDGET",
    "DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE",
    "DEPLOYTRIGGER_EVENTS",
    "DEPLOYTRIGGER_PROGRESS",
)


@pytest.fixture(autouse=True)
def isolated_environment(request: pytest.FixtureRequest) -> None:
    """No Prefect setting, profile or parent run of the machine running the tests leaks in.

    Only for a test or module (``pytestmark``) marked ``isolated_environment``: every
    variable of ``PREFECT_ENV`` is removed, the profiles files read before are forgotten,
    ``HOME`` is ``tmp_path`` and ``PREFECT_HOME`` is ``$HOME/.prefect``. The marker's
    keywords change that: ``api_url=`` sets
    ``PREFECT_API_URL``, ``home="name"`` makes ``HOME`` ``tmp_path / name``, and
    ``prefect_home=False`` leaves ``PREFECT_HOME`` unset. ``DEPLOYTRIGGER_EVENTS`` is
    ``off`` (no events listener dials a stubbed host) unless ``events=`` says otherwise
    (None: unset). It runs before the test's other fixtures, as the autouse fixture
    each module used to define did.
    """
    marker = request.node.get_closest_marker("isolated_environment")
    if marker is None:
        return
    profiles.clear_cache()
    options: Dict[str, Any] = dict(marker.kwargs)
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    tmp_path: Path = request.getfixturevalue("tmp_path")
    for name in PREFECT_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / options["home"] if options.get("home") else tmp_path
    monkeypatch.setenv("HOME", str(home))
    if options.get("prefect_home", True):
        monkeypatch.setenv("PREFECT_HOME", str(home / ".prefect"))
    if options.get("api_url"):
        monkeypatch.setenv("PREFECT_API_URL", options["api_url"])
    if options.get("events", "off") is not None:  # no listener dialling a stubbed host
        monkeypatch.setenv("DEPLOYTRIGGER_EVENTS", options.get("events", "off"))


@pytest.fixture
def spans() -> Iterator[Any]:
    """The in-memory exporter of an OpenTelemetry SDK (``helpers.otel``), cleared around the test.

    Skips the test where ``opentelemetry-sdk`` is not installed.
    """
    pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the unit extra)")
    from helpers.otel import span_exporter

    exporter = span_exporter()
    exporter.clear()
    yield exporter
    exporter.clear()


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


# -- the server version matrix (tests/integration/test_matrix_integration.py) ---------------

ROOT = Path(__file__).resolve().parent.parent
SERVER_PINS = ROOT / "tests" / "servers"
MATRIX_FLOWS_SCRIPT = SERVER_PINS / "matrix_flows.py"
#: The Prefect of this environment and of the session server (harness/requirements/server.txt).
OWN_PREFECT_VERSION = pinned_prefect_version()
#: Every server version the matrix knows, oldest first: one per pins file, and our own.
MATRIX_VERSIONS: Tuple[str, ...] = tuple(
    sorted({*pinned_versions(SERVER_PINS), OWN_PREFECT_VERSION}, key=version_key)
)
#: What a plain ``pytest`` (``make test``) runs the matrix tests against.
DEFAULT_MATRIX_VERSIONS = "2.20.25"
MATRIX_DEPLOYMENTS: Tuple[str, ...] = (
    "add/add-dep",
    "fail/fail-dep",
    "sleepy/sleepy-dep",
    "parent/parent-dep",
    "parent-task/parent-task-dep",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--prefect-versions",
        default=DEFAULT_MATRIX_VERSIONS,
        help=(
            "server versions for the matrix tests: a comma-separated list of "
            f"{', '.join(MATRIX_VERSIONS)}, 'all' or 'none' (default: {DEFAULT_MATRIX_VERSIONS})"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "matrix: runs against each server version of --prefect-versions"
    )
    config.addinivalue_line(
        "markers",
        "isolated_environment(api_url=None, home=None, prefect_home=True, events='off'): "
        "hide the machine's Prefect environment (the isolated_environment fixture)",
    )


def matrix_versions(config: pytest.Config) -> List[str]:
    """The versions ``--prefect-versions`` names, checked."""
    option = str(config.getoption("--prefect-versions")).strip()
    if option == "all":
        return list(MATRIX_VERSIONS)
    if option in ("", "none"):
        return []
    versions = [version.strip() for version in option.split(",") if version.strip()]
    unknown = sorted(set(versions) - set(MATRIX_VERSIONS))
    if unknown:
        raise pytest.UsageError(f"--prefect-versions: unknown {unknown}; known {MATRIX_VERSIONS}")
    return versions


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "prefect_version" in metafunc.fixturenames:
        metafunc.parametrize("prefect_version", matrix_versions(metafunc.config), scope="session")


@pytest.fixture(scope="session")
def matrix_prefect(prefect_version: str) -> Iterator[LocalPrefect]:
    """A server of ``prefect_version`` serving ``tests/servers/matrix_flows.py``.

    Other versions than this environment's own run from ``.venv-servers``,
    created on first use (see ``harness.server_venv``).
    """
    python = None
    if prefect_version != OWN_PREFECT_VERSION:
        python = server_python(prefect_version, ROOT / ".venv-servers", SERVER_PINS)
    with LocalPrefect(MATRIX_FLOWS_SCRIPT, deployments=MATRIX_DEPLOYMENTS, python=python) as server:
        yield server


@pytest.fixture
def closed_clients(monkeypatch: pytest.MonkeyPatch) -> List[Client]:
    """Every Client closed during the test, in order."""
    closed: List[Client] = []
    original = Client.close

    def recording_close(self: Client) -> None:
        closed.append(self)
        original(self)

    monkeypatch.setattr(Client, "close", recording_close)
    return closed
