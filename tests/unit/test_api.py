"""deploytrigger.run_deployment: a thin function over a Client."""

from __future__ import annotations

import inspect
import uuid
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import responses

import deploytrigger
from deploytrigger import Client, ConfigurationError, DeploymentNotFoundError
from deploytrigger.api import run_deployment

pytestmark = pytest.mark.isolated_environment

API = "http://prefect.test:4200/api"
DEPLOYMENT_ID = "3c9a7f3e-5b1d-4e2a-9f6c-0d8e7b6a5c41"
FLOW_ID = "9b2d3c4e-5f60-4172-8394-a5b6c7d8e9f0"
RUN_ID = "5f2b8c1e-7d4a-4b3e-9a6f-1c2d3e4f5a6b"
BY_NAME = f"{API}/deployments/name/add/add-dep"
CREATE = f"{API}/deployments/{DEPLOYMENT_ID}/create_flow_run"


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


class RecordingClient(Client):
    """Stands in for a Client: records the call and returns a marker."""

    def __init__(self) -> None:  # no settings, no session: nothing is sent
        self.calls: List[Tuple[Any, Dict[str, Any]]] = []
        self.result = object()

    def run_deployment(self, name: Any, **options: Any) -> Any:  # type: ignore[override]
        self.calls.append((name, options))
        return self.result


def test_package_exports_the_function() -> None:
    assert deploytrigger.run_deployment is run_deployment


def test_with_a_client_every_option_is_handed_to_it_and_its_result_returned() -> None:
    stub = RecordingClient()
    options = {
        name: object()
        for name in inspect.signature(run_deployment).parameters
        if name not in ("name", "client")
    }

    result = run_deployment("add/add-dep", client=stub, **options)  # type: ignore[arg-type]

    assert result is stub.result
    assert stub.calls == [("add/add-dep", options)]


def test_with_a_client_it_is_not_closed(
    monkeypatch: pytest.MonkeyPatch, closed_clients: List[Client]
) -> None:
    with Client(API) as client:
        monkeypatch.setattr(client, "run_deployment", lambda name, **options: "run")
        assert run_deployment("add/add-dep", client=client) == "run"
        assert closed_clients == []


def server_answers(http: responses.RequestsMock) -> None:
    http.get(
        BY_NAME,
        json={"id": DEPLOYMENT_ID, "name": "add-dep", "flow_id": FLOW_ID, "parameters": {}},
    )
    http.post(
        CREATE,
        status=201,
        json={
            "id": RUN_ID,
            "name": "mottled-crab",
            "flow_id": FLOW_ID,
            "deployment_id": DEPLOYMENT_ID,
            "state": {"type": "SCHEDULED", "name": "Scheduled"},
        },
    )


def test_without_a_client_the_default_client_from_prefect_api_url_is_used_and_kept_open(
    monkeypatch: pytest.MonkeyPatch,
    http: responses.RequestsMock,
    closed_clients: List[Client],
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", API)
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_env_key")
    server_answers(http)

    run = run_deployment("add/add-dep", parameters={"x": 1}, timeout=0)

    assert run.id == uuid.UUID(RUN_ID)
    assert [c.request.url for c in http.calls] == [BY_NAME, CREATE]
    assert http.calls[1].request.headers["Authorization"] == "Bearer pnu_env_key"
    assert closed_clients == []
    assert deploytrigger.default_client().settings.api_url == API


def test_without_a_client_steady_state_triggers_cost_one_request_each(
    monkeypatch: pytest.MonkeyPatch, http: responses.RequestsMock
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", API)
    server_answers(http)

    for x in range(3):
        run_deployment("add/add-dep", parameters={"x": x}, timeout=0)

    assert [c.request.url for c in http.calls] == [BY_NAME, CREATE, CREATE, CREATE]


def test_without_a_client_a_failed_call_leaves_the_default_client_usable(
    monkeypatch: pytest.MonkeyPatch,
    http: responses.RequestsMock,
    closed_clients: List[Client],
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", API)
    http.get(BY_NAME, json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError):
        run_deployment("add/add-dep", timeout=0)

    assert closed_clients == []
    http.replace(
        responses.GET,
        BY_NAME,
        json={"id": DEPLOYMENT_ID, "name": "add-dep", "flow_id": FLOW_ID, "parameters": {}},
    )
    server_answers(http)
    assert run_deployment("add/add-dep", timeout=0).id == uuid.UUID(RUN_ID)


def test_a_given_client_wins_over_the_configured_default(
    monkeypatch: pytest.MonkeyPatch, http: responses.RequestsMock
) -> None:
    deploytrigger.configure(api_url="http://elsewhere.test/api")
    server_answers(http)
    with Client(API) as client:
        run_deployment("add/add-dep", client=client, timeout=0)
    assert [c.request.url for c in http.calls] == [BY_NAME, CREATE]


def test_without_a_client_or_url_it_raises_configuration_error_before_any_request(
    http: responses.RequestsMock,
) -> None:
    with pytest.raises(ConfigurationError, match="PREFECT_API_URL"):
        run_deployment("add/add-dep", timeout=0)

    assert len(http.calls) == 0
