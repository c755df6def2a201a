"""Basic auth against a real server started with ``PREFECT_SERVER_API_AUTH_STRING``."""

from __future__ import annotations

import pytest
from conftest import AUTH_DEPLOYMENT, AUTH_FLOW, AUTH_PASSWORD, AUTH_USER

from deploytrigger import AuthenticationError, Client, StateType
from harness.local_server import LocalPrefect

pytestmark = pytest.mark.integration

DEPLOYMENT = f"{AUTH_FLOW}/{AUTH_DEPLOYMENT}"


def test_right_credentials_create_and_read_a_run(auth_prefect: LocalPrefect) -> None:
    with Client(auth_prefect.api_url, auth_string=f"{AUTH_USER}:{AUTH_PASSWORD}") as client:
        run = client.run_deployment(DEPLOYMENT, timeout=0)
        assert client.read_flow_run(run.id).state.type == StateType.SCHEDULED  # type: ignore[union-attr]


def test_right_credentials_from_the_environment_work(
    auth_prefect: LocalPrefect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", auth_prefect.api_url)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", f"{AUTH_USER}:{AUTH_PASSWORD}")
    monkeypatch.setenv("PREFECT_API_KEY", "not-used-when-an-auth-string-is-set")
    with Client() as client:
        assert client.read_deployment_by_name(DEPLOYMENT).name == AUTH_DEPLOYMENT


@pytest.mark.parametrize(
    "auth_string",
    [f"{AUTH_USER}:wrong-password", f"someone-else:{AUTH_PASSWORD}", None],
    ids=["wrong password", "wrong user", "no credentials"],
)
def test_wrong_or_missing_credentials_raise_authentication_error(
    auth_prefect: LocalPrefect, auth_string: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    monkeypatch.delenv("PREFECT_API_KEY", raising=False)
    client = Client(auth_prefect.api_url, auth_string=auth_string, max_retries=0)
    with client, pytest.raises(AuthenticationError) as caught:
        client.run_deployment(DEPLOYMENT, timeout=0)
    error = caught.value
    assert error.status_code == 401 and error.attempts == 1
    assert "401" in str(error) and "PREFECT_API_AUTH_STRING" in str(error)


def test_an_api_key_is_not_basic_auth(auth_prefect: LocalPrefect) -> None:
    client = Client(auth_prefect.api_url, api_key=AUTH_PASSWORD)
    with client, pytest.raises(AuthenticationError):
        client.read_deployment_by_name(DEPLOYMENT)
