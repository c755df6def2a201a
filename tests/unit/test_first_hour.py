"""The first hour with deploytrigger (issue 21): errors that diagnose, one short
traceback per failure, and a fake Prefect API that no client can get around."""

import http.server
import json
import socket
import threading
import traceback
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

import deploytrigger
from deploytrigger import guard
from deploytrigger.testing import FakePrefect

pytest_plugins = ["pytester"]

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


def chained(exc: BaseException) -> List[BaseException]:
    """``exc`` and every exception a traceback would print behind it."""
    chain = []
    current: Optional[BaseException] = exc
    while current is not None:
        chain.append(current)
        if current.__cause__ is not None:
            current = current.__cause__
        elif current.__suppress_context__:
            current = None
        else:
            current = current.__context__
    return chain


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Counting(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._count()

    def do_POST(self) -> None:
        self._count()

    def _count(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
        body = b'{"detail": "this is production"}'
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def production() -> Iterator[Tuple[str, List[str]]]:
    """A "production" API (``http://localhost:<port>/api``) and the requests it received."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/api", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


# -- defect 1: a URL without /api ---------------------------------------------------------


def test_url_without_api_is_reported_as_such_not_as_a_missing_deployment() -> None:
    with FakePrefect() as fake:
        fake.add_deployment("add/add-dep")
        bare = fake.api_url[: -len("/api")]
        client = deploytrigger.Client(api_url=bare)
        with client, pytest.raises(deploytrigger.DeploymentNotFoundError) as caught:
            client.run_deployment("add/add-dep", timeout=0)
    error = caught.value
    assert str(error).endswith(f"the API URL probably needs to end in /api: {bare}/api")
    assert error.hint == f"the API URL probably needs to end in /api: {bare}/api"
    assert (error.status_code, error.method) == (404, "GET")
    assert error.url == f"{bare}/deployments/name/add/add-dep"


def test_a_missing_deployment_on_a_server_configured_right_costs_no_probe() -> None:
    with FakePrefect() as fake:
        client = deploytrigger.Client(api_url=fake.api_url)
        with client, pytest.raises(deploytrigger.DeploymentNotFoundError) as caught:
            client.run_deployment("add/missing", timeout=0)
        paths = [request.path for request in fake.requests]
    assert "api/health" not in str(paths) and not any(p.endswith("/health") for p in paths)
    assert "/api" not in str(caught.value).split("answered 404")[-1]
    assert caught.value.hint is None


# -- defect 2: one failure, one short traceback -------------------------------------------


def test_connection_failure_from_run_deployment_has_one_cause_and_its_fields() -> None:
    url = f"http://127.0.0.1:{closed_port()}/api"
    with pytest.raises(deploytrigger.ConnectionFailedError) as caught:
        deploytrigger.run_deployment(
            "add/add-dep", client=deploytrigger.Client(api_url=url, sleep=lambda s: None)
        )
    chain = chained(caught.value)
    assert len(chain) == 2, [type(e).__name__ for e in chain]
    assert caught.value.__cause__ is chain[1] and chain[1].__traceback__ is None
    assert (caught.value.method, caught.value.url) == ("GET", f"{url}/deployments/name/add/add-dep")
    text = "".join(traceback.format_exception(caught.type, caught.value, caught.tb))
    assert "During handling of the above exception" not in text
    # The user's frames and ours, none from the libraries below (whatever their versions
    # print in a message): Python 3.11+ adds caret lines, so count frames, not lines.
    frames = [line for line in text.splitlines() if line.lstrip().startswith('File "')]
    assert not [f for f in frames if any(lib in f for lib in ("requests", "urllib3", "tenacity"))]
    assert len(frames) <= 12, frames


def test_unknown_deployment_raises_one_exception_without_chained_tracebacks() -> None:
    with FakePrefect() as fake:
        with pytest.raises(deploytrigger.DeploymentNotFoundError) as caught:
            deploytrigger.run_deployment("add/missing", timeout=0)
        assert caught.value.url == f"{fake.api_url}/deployments/name/add/missing"
    assert len(chained(caught.value)) == 1
    assert (caught.value.status_code, caught.value.method) == (404, "GET")


def test_a_dns_failure_keeps_the_reasons_closing_parenthesis() -> None:
    client = deploytrigger.Client(api_url="http://name.invalid/api", sleep=lambda s: None)
    with pytest.raises(deploytrigger.ConnectionFailedError) as caught:
        client.run_deployment("add/add-dep")
    message = str(caught.value)
    assert message.count("(") == message.count(")"), message


# -- defect 3: the fake fences the process in ---------------------------------------------


def test_a_client_made_before_the_fake_sends_nothing_to_its_url(
    production: Tuple[str, List[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = production
    monkeypatch.setenv("PREFECT_API_URL", url)
    module_level_client = deploytrigger.Client()  # as an app module makes it at import
    with FakePrefect() as fake:
        fake.add_deployment("etl/nightly")
        with pytest.raises(deploytrigger.ConfigurationError) as caught:
            module_level_client.run_deployment("etl/nightly", timeout=0)
        run = deploytrigger.Client().run_deployment("etl/nightly", timeout=0)  # made in the test
        assert [r.id for r in fake.runs] == [run.id]
    assert seen == []
    assert url in str(caught.value) and "PREFECT_API_URL" in str(caught.value)
    assert "not sent" in str(caught.value)


def test_configure_at_import_sends_nothing_to_its_url_while_the_fake_runs(
    production: Tuple[str, List[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = production
    deploytrigger.configure(api_url=url)
    try:
        with FakePrefect() as fake:
            fake.add_deployment("etl/nightly")
            with pytest.raises(deploytrigger.ConfigurationError, match="not sent"):
                deploytrigger.run_deployment("etl/nightly", timeout=0)
    finally:
        deploytrigger.configure()
    assert seen == []


def test_the_fence_comes_down_with_the_fake(production: Tuple[str, List[str]]) -> None:
    url, seen = production
    client = deploytrigger.Client(api_url=url, max_retries=0)
    with FakePrefect():
        pass
    with pytest.raises(deploytrigger.ServerError):
        client.read_deployments()
    assert len(seen) == 1


def test_no_fence_when_no_fake_runs() -> None:
    assert guard._fences == ()
    guard.check_request("https://api.prefect.cloud/api/x", "GET")  # no error


USER_APP = """
import deploytrigger

client = deploytrigger.Client()  # at import, with PREFECT_API_URL set to "production"
deploytrigger.configure(request_timeout=5)
"""

USER_TESTS = """
import pytest

import deploytrigger
import app


def test_module_level_client_is_refused(fake_prefect):
    fake_prefect.add_deployment("etl/nightly")
    with pytest.raises(deploytrigger.ConfigurationError, match="not sent"):
        app.client.run_deployment("etl/nightly", timeout=0)


def test_module_level_functions_use_the_fake(fake_prefect):
    fake_prefect.add_deployment("etl/nightly")
    run = deploytrigger.run_deployment("etl/nightly", timeout=10, poll_interval=0.05)
    assert run.state.is_completed()
"""


def test_fixture_fences_in_a_users_suite(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    production: Tuple[str, List[str]],
) -> None:
    url, seen = production
    monkeypatch.setenv("PREFECT_API_URL", url)
    pytester.makepyfile(app=USER_APP, test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
    assert seen == []


# -- defect 4: the notebook is committed with its outputs ----------------------------------


def test_the_committed_notebook_shows_its_outputs() -> None:
    notebook = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell["outputs"] for cell in code[:-1]), "run the notebook and commit its outputs"
    logs_cell = next(cell for cell in code if "logs=True" in "".join(cell["source"]))
    assert " INFO     sum is 42\n" in "".join(
        "".join(o.get("text", "")) for o in logs_cell["outputs"]
    )
