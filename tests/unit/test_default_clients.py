"""The default client: one per configuration, thread-safe, fork-safe, closed at exit."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import responses
from helpers.bad_options import OUT_OF_RANGE, WRONG_TYPES
from helpers.run_stubs import API, BY_NAME, CREATE
from helpers.server_json import deployment_json, flow_run_json

import deploytrigger
from deploytrigger import Client, ConfigurationError
from deploytrigger import _default_clients as defaults_module
from deploytrigger._default_clients import (
    MAX_DEFAULT_CLIENTS,
    configure,
    default_client,
    reset_default_client,
)
from deploytrigger._http.transport import DEFAULT_POOL_SIZE

OTHER = "http://other.test:4200/api"


pytestmark = pytest.mark.isolated_environment(api_url=API)


@pytest.fixture(autouse=True)
def no_default_client_of_another_test(isolated_environment: None) -> Iterator[None]:
    reset_default_client()
    yield
    reset_default_client()


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(BY_NAME, json=deployment_json())
        mock.post(CREATE, status=201, json=flow_run_json())
        yield mock


# -- one client per configuration ------------------------------------------------------------


def test_the_package_exports_configure_default_client_and_reset() -> None:
    assert deploytrigger.configure is configure
    assert deploytrigger.default_client is default_client
    assert deploytrigger.reset_default_client is reset_default_client


def test_the_same_configuration_gets_the_same_client() -> None:
    assert default_client() is default_client()


def test_module_level_triggers_share_one_connection_pool_and_deployment_cache(
    http: responses.RequestsMock,
) -> None:
    for _ in range(4):
        deploytrigger.run_deployment("add/add-dep", timeout=0)
    assert [call.request.url for call in http.calls] == [BY_NAME] + [CREATE] * 4


def test_a_changed_api_url_in_the_environment_gets_its_own_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = default_client()
    monkeypatch.setenv("PREFECT_API_URL", OTHER)
    second = default_client()
    monkeypatch.setenv("PREFECT_API_URL", API)
    assert second is not first
    assert second.settings.api_url == OTHER
    assert default_client() is first


def test_changed_credentials_get_their_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    anonymous = default_client()
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_first")
    first_key = default_client()
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_second")
    second_key = default_client()
    assert len({id(anonymous), id(first_key), id(second_key)}) == 3
    assert second_key.settings.authorization == "Bearer pnu_second"


def test_changed_tls_settings_get_their_own_client(monkeypatch: pytest.MonkeyPatch) -> None:
    verified = default_client()
    monkeypatch.setenv("PREFECT_API_TLS_INSECURE_SKIP_VERIFY", "true")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unverified = default_client()
    assert unverified is not verified
    assert unverified.settings.verify is False


def test_the_environment_of_each_call_is_used(
    monkeypatch: pytest.MonkeyPatch, http: responses.RequestsMock
) -> None:
    other_by_name = BY_NAME.replace(API, OTHER)
    http.get(other_by_name, json=deployment_json())
    http.post(CREATE.replace(API, OTHER), status=201, json=flow_run_json())
    deploytrigger.run_deployment("add/add-dep", timeout=0)
    monkeypatch.setenv("PREFECT_API_URL", OTHER)
    deploytrigger.run_deployment("add/add-dep", timeout=0)
    assert [call.request.url for call in http.calls] == [
        BY_NAME,
        CREATE,
        other_by_name,
        CREATE.replace(API, OTHER),
    ]


def test_without_an_api_url_the_call_raises_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_API_URL")
    with pytest.raises(ConfigurationError, match="PREFECT_API_URL"):
        default_client()


def test_the_oldest_configuration_is_closed_beyond_the_limit(
    monkeypatch: pytest.MonkeyPatch, closed_clients: List[Client]
) -> None:
    made = []
    for index in range(MAX_DEFAULT_CLIENTS + 1):
        monkeypatch.setenv("PREFECT_API_URL", f"http://host{index}.test/api")
        made.append(default_client())
    assert closed_clients == [made[0]]
    monkeypatch.setenv("PREFECT_API_URL", "http://host1.test/api")
    assert default_client() is made[1]


def test_the_default_pool_has_room_for_a_thread_pool() -> None:
    adapter = default_client()._transport._session.get_adapter(API)
    assert adapter._pool_maxsize == DEFAULT_POOL_SIZE >= 16  # type: ignore[attr-defined]


# -- thread safety ---------------------------------------------------------------------------


def test_threads_asking_at_once_get_one_client_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: List[Client] = []

    class SlowClient(Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.05)  # a window for the other threads to ask meanwhile
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(defaults_module, "Client", SlowClient)
    reset_default_client()
    start = threading.Barrier(16)

    def ask(_: int) -> Client:
        start.wait()
        return default_client()

    with ThreadPoolExecutor(16) as pool:
        clients = list(pool.map(ask, range(16)))
    assert len(made) == 1
    assert all(client is made[0] for client in clients)


def test_sixteen_threads_trigger_with_one_resolve_in_steady_state(
    http: responses.RequestsMock,
) -> None:
    deploytrigger.run_deployment("add/add-dep", timeout=0)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: deploytrigger.run_deployment("add/add-dep", timeout=0), range(48)))
    urls = [call.request.url for call in http.calls]
    assert urls.count(BY_NAME) == 1
    assert urls.count(CREATE) == 49


# -- configure and reset ---------------------------------------------------------------------


def test_configure_has_exactly_the_keywords_of_client() -> None:
    ours = inspect.signature(configure).parameters
    theirs = dict(inspect.signature(Client).parameters)
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


def test_configure_passes_every_keyword_straight_to_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: List[Dict[str, Any]] = []

    class RecordingClient(Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            received.append(dict(zip(["api_url"], args), **kwargs))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(defaults_module, "Client", RecordingClient)
    options: Dict[str, Any] = {
        "api_url": OTHER,
        "api_key": "pnu_configured",
        "auth_string": "user:secret",
        "request_timeout": 7.0,
        "verify": True,
        "max_retries": 2,
        "pool_size": 3,
        "sleep": lambda seconds: None,
        "clock": lambda: 0.0,
        "backoff": lambda state: 0.0,
        "deployment_cache_ttl": 9.0,
        "outage_tolerance": 11.0,
        "result_reader": lambda block, key: b"",
        "retry_budget": 12.0,
        "max_requests_per_minute": 6000.0,
    }
    configure(**options)
    client = default_client()
    assert received == [options]
    assert client.settings.api_url == OTHER
    assert client.settings.request_timeout == 7.0


def test_configured_options_win_and_the_rest_still_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(request_timeout=3)
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_env")
    client = default_client()
    assert client.settings.api_url == API
    assert client.settings.request_timeout == 3
    assert client.settings.authorization == "Bearer pnu_env"


def test_configure_closes_the_clients_made_before_and_replaces_the_options(
    closed_clients: List[Client],
) -> None:
    configure(request_timeout=3)
    before = default_client()
    configure(max_retries=1)
    after = default_client()
    assert closed_clients == [before]
    assert after.settings.max_retries == 1
    assert after.settings.request_timeout != 3


def test_a_bad_configured_setting_raises_configuration_error_on_use() -> None:
    configure(api_url="ftp://nowhere")
    with pytest.raises(ConfigurationError, match="http"):
        deploytrigger.run_deployment("add/add-dep", timeout=0)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [(option, *WRONG_TYPES[option]) for option in sorted(WRONG_TYPES)]
    + [(option, *OUT_OF_RANGE[option]) for option in sorted(OUT_OF_RANGE)],
)
def test_a_bad_configured_option_is_refused_on_use_as_the_client_refuses_it(
    http: responses.RequestsMock, option: str, value: Any, message: str
) -> None:
    configure(**{option: value})

    with pytest.raises(ConfigurationError) as caught:
        deploytrigger.run_deployment("add/add-dep", timeout=0)

    assert str(caught.value) == message


def test_reset_closes_the_clients_and_forgets_the_configured_options(
    closed_clients: List[Client],
) -> None:
    configure(api_url=OTHER)
    configured = default_client()
    reset_default_client()
    assert closed_clients == [configured]
    fresh = default_client()
    assert fresh is not configured
    assert fresh.settings.api_url == API


# -- fork safety -----------------------------------------------------------------------------

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def in_forked_child(check: Any) -> Any:
    """Run ``check()`` in a forked child (killed after 10 s); what it returned (as JSON)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            signal.alarm(10)  # a deadlocked child dies instead of hanging the test
            os.close(read_end)
            os.write(write_end, json.dumps(check()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        text = answer.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    return json.loads(text)


@fork_only
def test_a_forked_child_makes_its_own_client_and_leaves_the_parents_open(
    closed_clients: List[Client],
) -> None:
    parent = default_client()

    def child() -> Dict[str, Any]:
        mine = default_client()
        return {
            "new": mine is not parent,
            "reused": mine is default_client(),
            "parent_closed": parent in closed_clients,
        }

    assert in_forked_child(child) == {"new": True, "reused": True, "parent_closed": False}
    assert default_client() is parent
    assert closed_clients == []


@fork_only
def test_a_forked_child_keeps_the_configured_options() -> None:
    configure(request_timeout=4)
    default_client()
    assert in_forked_child(lambda: default_client().settings.request_timeout) == 4


@fork_only
def test_a_child_forked_while_another_thread_makes_a_client_does_not_deadlock() -> None:
    holding, release = threading.Event(), threading.Event()

    def make_a_client_slowly() -> None:
        with defaults_module._registry._lock:  # as a thread inside default_client() holds it
            holding.set()
            release.wait(10)

    other = threading.Thread(target=make_a_client_slowly)
    other.start()
    try:
        holding.wait(10)
        answer = in_forked_child(lambda: default_client().settings.api_url)
    finally:
        release.set()
        other.join()
    assert answer == API


def test_without_the_at_fork_hook_a_changed_pid_still_gives_a_new_client(
    monkeypatch: pytest.MonkeyPatch, closed_clients: List[Client]
) -> None:
    parent = default_client()
    real_pid = os.getpid()
    monkeypatch.setattr(defaults_module.os, "getpid", lambda: real_pid + 1)
    child = default_client()
    assert child is not parent
    assert default_client() is child
    assert closed_clients == []


# -- exit --------------------------------------------------------------------------------------


def test_the_default_clients_are_closed_when_the_interpreter_exits(tmp_path: Path) -> None:
    script = (
        "import deploytrigger\n"
        "client = deploytrigger.default_client()\n"
        "close = client.close\n"
        "def recording_close():\n"
        "    print('closed', client.settings.api_url)\n"
        "    close()\n"
        "client.close = recording_close\n"
    )
    env = {**os.environ, "PREFECT_API_URL": API, "PREFECT_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["closed", API]
