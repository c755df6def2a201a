"""examples/gunicorn_app: the Flask app's handler, on a stubbed server (gunicorn itself:
``test_defaults_integration.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest
import responses
from helpers.run_stubs import API, BY_NAME, CREATE, RUN_ID
from helpers.server_json import deployment_json, flow_run_json

APP = Path(__file__).resolve().parents[2] / "examples" / "gunicorn_app" / "app.py"


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def load_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, deployments: str) -> ModuleType:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    monkeypatch.setenv("PREFECT_API_URL", API)
    monkeypatch.setenv("APP_DEPLOYMENTS", deployments)
    spec = importlib.util.spec_from_file_location("gunicorn_example_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_app_checks_its_deployments_at_import_then_triggers_at_one_request_each(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, status=201, json=flow_run_json())
    app = load_app(monkeypatch, tmp_path, "add/add-dep").app
    assert [call.request.url for call in http.calls] == [BY_NAME]

    with app.test_client() as browser:
        answers = [
            browser.post("/deployments/add/add-dep/runs", json={"parameters": {"x": x}})
            for x in range(3)
        ]

    assert [answer.status_code for answer in answers] == [201] * 3
    assert answers[0].get_json()["flow_run_id"] == str(RUN_ID)
    # the boot check is a plain read: the first trigger resolves the name for the cache
    assert [call.request.url for call in http.calls] == [BY_NAME, BY_NAME] + [CREATE] * 3


def test_the_app_refuses_a_deployment_it_was_not_given_without_asking_the_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http: responses.RequestsMock
) -> None:
    app = load_app(monkeypatch, tmp_path, "").app
    with app.test_client() as browser:
        answer = browser.post("/deployments/add/add-dep/runs")
    assert answer.status_code == 404
    assert "not a deployment this app triggers" in answer.get_json()["detail"]
    assert len(http.calls) == 0


def test_a_server_error_is_a_502_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, status=500, json={"detail": "boom"})
    app = load_app(monkeypatch, tmp_path, "add/add-dep").app
    with app.test_client() as browser:
        answer = browser.post("/deployments/add/add-dep/runs", json={})
    assert answer.status_code == 502
    assert "boom" in answer.get_json()["detail"]
