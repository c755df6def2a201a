"""Secrets never leak: no repr, log record (DEBUG, every logger), exception or CLI output.

One test drives everything a user could see (successful calls with retries,
wrong credentials, an unreachable server with credentials in its URL, the
CLI) with an API key and an auth string set, then scans all of it.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import List

import pytest
from conftest import AUTH_DEPLOYMENT, AUTH_FLOW, AUTH_PASSWORD, AUTH_USER

from deploytrigger import Client, DeployTriggerError
from deploytrigger.settings import resolve_settings
from harness.local_server import LocalPrefect
from harness.processes import free_port
from harness.proxy import Proxy, Rule

pytestmark = pytest.mark.integration

API_KEY = "pnu_FAKE-s3cret-key-0123456789abcdef"
WRONG_PASSWORD = "wr0ng-S3CRET-guess"
URL_PASSWORD = "url-embedded-S3CRET"
REPO = Path(__file__).resolve().parents[2]


def secrets() -> List[str]:
    good = f"{AUTH_USER}:{AUTH_PASSWORD}"
    wrong = f"{AUTH_USER}:{WRONG_PASSWORD}"
    return [
        API_KEY,
        AUTH_PASSWORD,
        WRONG_PASSWORD,
        URL_PASSWORD,
        base64.b64encode(good.encode()).decode(),
        base64.b64encode(wrong.encode()).decode(),
    ]


def describe(exc: BaseException) -> str:
    """Everything an exception shows: str, repr, attributes and the chained traceback."""
    parts = [str(exc), repr(exc), *(repr(v) for v in vars(exc).values())]
    parts.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return "\n".join(parts)


def test_no_secret_appears_in_reprs_logs_errors_or_cli_output(
    auth_prefect: LocalPrefect,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PREFECT_API_KEY", API_KEY)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", f"{AUTH_USER}:{AUTH_PASSWORD}")
    caplog.set_level(logging.DEBUG)  # the root logger: deploytrigger, urllib3, everything
    for name in ("deploytrigger", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    seen: List[str] = []

    with Proxy(auth_prefect.api_url) as proxy:
        proxy.add_rule(Rule(action="status", status=503, nth={1}, headers={"Retry-After": "0"}))
        proxy.add_rule(Rule(action="drop", method="POST", nth={1}))
        monkeypatch.setenv("PREFECT_API_URL", proxy.api_url)
        with Client() as client:  # everything from the environment
            seen += [repr(client), str(client), repr(client.settings), str(vars(client))]
            run = client.run_deployment(
                f"{AUTH_FLOW}/{AUTH_DEPLOYMENT}", timeout=1, poll_interval=0.2
            )
            seen += [repr(run), str(run), repr(run.raw)]
        assert proxy.actions().get("status") == 1 and proxy.actions().get("drop") == 1

    # Wrong credentials: the server says 401.
    with Client(auth_prefect.api_url, auth_string=f"{AUTH_USER}:{WRONG_PASSWORD}") as wrong:
        seen.append(repr(wrong))
        with pytest.raises(DeployTriggerError) as caught:
            wrong.read_flow_run(run.id)
        seen.append(describe(caught.value))

    # Credentials inside the URL of a server that is not there.
    url = f"http://{AUTH_USER}:{URL_PASSWORD}@127.0.0.1:{free_port()}/api"
    with Client(url, max_retries=1) as unreachable:
        seen += [repr(unreachable), repr(unreachable.settings)]
        with pytest.raises(DeployTriggerError) as caught:
            unreachable.read_flow_run(run.id)
        seen.append(describe(caught.value))
    bad_url = f"ftp://{AUTH_USER}:{URL_PASSWORD}@127.0.0.1/api"
    with pytest.raises(DeployTriggerError) as caught:
        resolve_settings(bad_url)
    seen.append(describe(caught.value))

    # The command line, with the same environment, in the modes that print the most.
    env = {**os.environ, "PREFECT_API_URL": auth_prefect.api_url}
    for args, auth in (
        (["status", str(run.id)], f"{AUTH_USER}:{AUTH_PASSWORD}"),
        (["status", str(run.id), "--debug"], f"{AUTH_USER}:{AUTH_PASSWORD}"),
        (["status", str(run.id), "--json"], f"{AUTH_USER}:{AUTH_PASSWORD}"),
        (["status", str(run.id), "--debug"], f"{AUTH_USER}:{WRONG_PASSWORD}"),
        (["status", str(run.id), "--debug", "--api-url", bad_url], f"{AUTH_USER}:{AUTH_PASSWORD}"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "deploytrigger", *args],
            env={**env, "PREFECT_API_AUTH_STRING": auth},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        seen += [done.stdout, done.stderr]
    assert str(run.id) in seen[-10], "the CLI did not show the run"  # the first `status`

    seen += [record.getMessage() for record in caplog.records]
    seen += [repr(record.args) for record in caplog.records]
    seen.append(caplog.text)
    assert any("/flow_runs/" in text for text in seen), "nothing was logged at DEBUG"
    everything = "\n".join(seen)
    for secret in secrets():
        assert secret not in everything, f"a secret leaked: ...{secret[-6:]}"
