"""UI links: derived from the API URL (self-hosted, Prefect Cloud), or PREFECT_UI_URL."""

from __future__ import annotations

import uuid

import pytest

from deploytrigger._helpers.urls import ui_base_url, ui_url

pytestmark = pytest.mark.isolated_environment

RUN_ID = uuid.UUID("5f2b8c1e-7d4a-4b3e-9a6f-1c2d3e4f5a6b")
CLOUD = "https://api.prefect.cloud/api/accounts/acc-1/workspaces/ws-2"


def test_cloud_api_urls_give_the_cloud_ui_run_page() -> None:
    assert ui_url(CLOUD, RUN_ID) == (
        f"https://app.prefect.cloud/account/acc-1/workspace/ws-2/runs/flow-run/{RUN_ID}"
    )
    assert ui_url(CLOUD + "/", RUN_ID) == ui_url(CLOUD, RUN_ID)


def test_prefect_ui_url_overrides_the_derived_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_UI_URL", "https://ui.example.com/prefect/")

    assert ui_url(CLOUD, RUN_ID) == f"https://ui.example.com/prefect/runs/flow-run/{RUN_ID}"
    assert ui_base_url("http://127.0.0.1:4200/api") == "https://ui.example.com/prefect"


def test_an_injected_environment_is_read_instead_of_the_process_one() -> None:
    environ = {"PREFECT_UI_URL": "http://ui:8080"}
    assert ui_url("http://127.0.0.1:4200/api", RUN_ID, environ) == (
        f"http://ui:8080/runs/flow-run/{RUN_ID}"
    )
    assert ui_url("http://127.0.0.1:4200/api", RUN_ID, {}) == (
        f"http://127.0.0.1:4200/runs/flow-run/{RUN_ID}"
    )


def test_an_empty_prefect_ui_url_is_ignored_and_credentials_in_it_are_dropped() -> None:
    assert ui_base_url(CLOUD, {"PREFECT_UI_URL": "  "}) == (
        "https://app.prefect.cloud/account/acc-1/workspace/ws-2"
    )
    assert ui_base_url(CLOUD, {"PREFECT_UI_URL": "https://u:pw@ui.test"}) == "https://ui.test"


def test_a_path_prefix_in_front_of_api_is_kept_in_the_ui_url() -> None:
    assert ui_base_url("https://example.com/prefect/api", {}) == "https://example.com/prefect"
