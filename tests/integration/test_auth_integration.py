"""Basic auth against a real server started with ``PREFECT_SERVER_API_AUTH_STRING``."""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from typing import List

import pytest
from conftest import AUTH_DEPLOYMENT, AUTH_FLOW, AUTH_PASSWORD, AUTH_USER
from helpers.events_probe import SAFETY_NET, TIMEOUT, eventually, listener_of, record_connects
from helpers.server_http import server_session

from deploytrigger import AuthenticationError, Client, DeployTriggerError, StateType
from deploytrigger._waits import events
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


def finish_once_listening(
    server: LocalPrefect, listener: events.EventsListener, run_id: uuid.UUID
) -> threading.Thread:
    """Set the run COMPLETED over REST once the listener is subscribed (nothing executes it)."""

    def finish() -> None:
        eventually(lambda: listener.connections >= 1)
        with server_session(server.auth) as http:
            response = http.post(
                f"{server.api_url}/flow_runs/{run_id}/set_state",
                json={"state": {"type": "COMPLETED", "name": "Completed"}, "force": True},
                timeout=60,
            )
            response.raise_for_status()

    thread = threading.Thread(target=finish, daemon=True)
    thread.start()
    return thread


def test_a_wait_with_basic_auth_is_woken_by_the_event_and_the_secret_never_shows(
    auth_prefect: LocalPrefect, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth_string = f"{AUTH_USER}:{AUTH_PASSWORD}"
    secrets = [AUTH_PASSWORD, auth_string, base64.b64encode(auth_string.encode()).decode()]
    connects = record_connects(monkeypatch)
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records
    for name in ("deploytrigger", "websocket", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    shown: List[str] = []
    with Client(auth_prefect.api_url, auth_string=auth_string, events="on") as client:
        run = client.run_deployment(DEPLOYMENT, timeout=0)
        listener = listener_of(client)
        finisher = finish_once_listening(auth_prefect, listener, run.id)
        final = client.wait_for_flow_run(run.id, poll_interval=SAFETY_NET, timeout=TIMEOUT)
        finisher.join(60)
        shown += [repr(client), repr(client.settings), repr(listener), str(client.settings)]
        for failing in (
            lambda: client.read_deployment_by_name("no-such-flow/no-such-deployment"),
            lambda: client.read_flow_run(uuid.uuid4()),
            lambda: client.submit(DEPLOYMENT).result(timeout=0.5, poll_interval=0.2),
        ):
            with pytest.raises(DeployTriggerError) as caught:
                failing()
            shown += [repr(caught.value), str(caught.value), repr(caught.value.args)]

    assert final.state is not None and final.state.type == StateType.COMPLETED
    assert connects == [events.events_url(auth_prefect.api_url)] and listener.connections == 1
    assert any(r.name == "deploytrigger" and r.levelno == logging.DEBUG for r in caplog.records)
    shown += [caplog.text] + [record.getMessage() for record in caplog.records]
    shown += [repr(record.args) for record in caplog.records]
    leaks = [text for text in shown for secret in secrets if secret in text]
    assert leaks == []
