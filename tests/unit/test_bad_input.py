"""Bad input gets a clear deploytrigger error, never a bare requests/tenacity/KeyError/JSON one.

Argument checks need no server: they run against a client pointed at a closed
port, so an error other than the expected one would show a request was sent.
Server-side cases (unknown deployments, schema rejections, odd answers) use
the session's real server, through a :class:`~harness.proxy.Proxy` where
the server has to misbehave.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Callable, Dict, Iterator, Type

import pytest
import requests
import responses
import tenacity
from helpers.fake_prefect import FakePrefect, make_client
from helpers.fake_time import FakeTime
from helpers.server_http import raw
from helpers.server_json import flow_run_json

import deploytrigger
from deploytrigger import (
    Client,
    ConfigurationError,
    ConnectionFailedError,
    DeploymentNotFoundError,
    DeployTriggerError,
    FlowRun,
    FlowRunNotFoundError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidResponseError,
    ParameterRejectedError,
    PermissionDeniedError,
    ServerError,
)
from harness.processes import free_port
from harness.proxy import Proxy, Rule

LEAKY = (requests.RequestException, tenacity.RetryError, KeyError, json.JSONDecodeError)


def no_retry_wait(state: tenacity.RetryCallState) -> float:
    return 0.01


def raises_clearly(
    call: Callable[[], Any], error_type: Type[DeployTriggerError], *fragments: str
) -> DeployTriggerError:
    """Run ``call``; it must raise ``error_type`` whose message holds every fragment."""
    with pytest.raises(DeployTriggerError) as caught:
        call()
    error = caught.value
    assert isinstance(error, error_type), f"{type(error).__name__}: {error}"
    assert not isinstance(error, LEAKY), f"leaked {type(error).__mro__}"
    message = str(error)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return error


@pytest.fixture(scope="module")
def offline() -> Iterator[Client]:
    """A client whose every request would fail: argument errors must come first."""
    with Client(f"http://127.0.0.1:{free_port()}/api", max_retries=0) as client:
        yield client


NAN = float("nan")
INF = float("inf")

# (kwargs for run_deployment, expected type, fragments of the message)
ARGUMENT_CASES: Dict[str, Any] = {
    "empty name": ({"name": ""}, InvalidArgumentError, ("flow name/deployment name", "''")),
    "blank name": ({"name": "   "}, InvalidArgumentError, ("etl/nightly",)),
    "name without slash": ({"name": "add"}, InvalidArgumentError, ("'add'", "etl/nightly")),
    "name with two slashes": ({"name": "a/b/c"}, InvalidArgumentError, ("'a/b/c'",)),
    "name with empty flow": ({"name": "/add-dep"}, InvalidArgumentError, ("'/add-dep'",)),
    "name with empty deployment": ({"name": "add/ "}, InvalidArgumentError, ("'add/ '",)),
    "uuid-looking non-uuid": (
        {"name": "3fa85f64-5717-4562-b3fc-2c963f66zzzz"},
        InvalidArgumentError,
        ("deployment id (UUID)", "3fa85f64-5717-4562-b3fc-2c963f66zzzz"),
    ),
    "uuid one digit short": (
        {"name": "3fa85f64-5717-4562-b3fc-2c963f66afa"},
        InvalidArgumentError,
        ("UUID",),
    ),
    "name is an int": ({"name": 42}, InvalidArgumentTypeError, ("name must be", "int")),
    "name is None": ({"name": None}, InvalidArgumentTypeError, ("NoneType",)),
    "parameters is a list": (
        {"parameters": [1, 2]},
        InvalidArgumentTypeError,
        ("parameters must be a dict", "list"),
    ),
    "NaN parameter": ({"parameters": {"x": NAN}}, InvalidArgumentError, ("parameters['x']", "nan")),
    "inf parameter": ({"parameters": {"x": INF}}, InvalidArgumentError, ("parameters['x']", "inf")),
    "nested -inf parameter": (
        {"parameters": {"x": {"y": [1, -INF]}}},
        InvalidArgumentError,
        ("parameters['x']['y'][1]",),
    ),
    "non-string parameter key": (
        {"parameters": {1: "a"}},
        InvalidArgumentTypeError,
        ("keys must be strings",),
    ),
    "unserialisable parameter": (
        {"parameters": {"x": object()}},
        InvalidArgumentTypeError,
        ("parameters['x']", "object", "JSON"),
    ),
    "scheduled_time as string": (
        {"scheduled_time": "2026-01-01T00:00:00Z"},
        InvalidArgumentTypeError,
        ("scheduled_time must be a datetime", "str"),
    ),
    "scheduled_time as date": (
        {"scheduled_time": dt.date(2026, 1, 1)},
        InvalidArgumentTypeError,
        ("scheduled_time must be a datetime",),
    ),
    "flow_run_name as int": (
        {"flow_run_name": 5},
        InvalidArgumentTypeError,
        ("flow_run_name must be a string",),
    ),
    "empty flow_run_name": ({"flow_run_name": ""}, InvalidArgumentError, ("flow_run_name",)),
    "timeout as string": ({"timeout": "10"}, InvalidArgumentTypeError, ("`timeout`", "str")),
    "timeout as bool": ({"timeout": True}, InvalidArgumentTypeError, ("`timeout`",)),
    "negative timeout": ({"timeout": -1}, InvalidArgumentError, ("cannot be negative",)),
    "NaN timeout": ({"timeout": NAN}, InvalidArgumentError, ("`timeout`", "NaN")),
    "negative poll_interval": (
        {"poll_interval": -0.5},
        InvalidArgumentError,
        ("`poll_interval` cannot be negative",),
    ),
    "poll_interval None": (
        {"poll_interval": None},
        InvalidArgumentTypeError,
        ("`poll_interval` must be a number",),
    ),
    "tags as one string": (
        {"tags": "nightly"},
        InvalidArgumentTypeError,
        ("tags must be a list of strings",),
    ),
    "non-string tag": ({"tags": ["ok", 7]}, InvalidArgumentTypeError, ("tags[1]", "int")),
    "None tag": ({"tags": [None]}, InvalidArgumentTypeError, ("tags[0]",)),
    "idempotency_key as int": (
        {"idempotency_key": 1},
        InvalidArgumentTypeError,
        ("idempotency_key must be a string",),
    ),
    "empty idempotency_key": ({"idempotency_key": " "}, InvalidArgumentError, ("idempotency_key",)),
    "work_queue_name as int": (
        {"work_queue_name": 3},
        InvalidArgumentTypeError,
        ("work_queue_name must be a string",),
    ),
    "as_subflow as string": (
        {"as_subflow": "yes"},
        InvalidArgumentTypeError,
        ("as_subflow must be True or False",),
    ),
    "job_variables as list": (
        {"job_variables": ["env"]},
        InvalidArgumentTypeError,
        ("job_variables must be a dict",),
    ),
    "NaN in job_variables": (
        {"job_variables": {"cpu": NAN}},
        InvalidArgumentError,
        ("job_variables['cpu']",),
    ),
}


@pytest.mark.parametrize("case", sorted(ARGUMENT_CASES))
def test_bad_argument_is_refused_before_any_request(offline: Client, case: str) -> None:
    kwargs, error_type, fragments = ARGUMENT_CASES[case]
    arguments = {"name": "add/add-dep", "timeout": 0, **kwargs}
    raises_clearly(lambda: offline.run_deployment(**arguments), error_type, *fragments)


def test_module_level_run_deployment_refuses_a_client_that_is_not_a_client() -> None:
    raises_clearly(
        lambda: deploytrigger.run_deployment("add/add-dep", client="http://x/api", timeout=0),
        InvalidArgumentTypeError,
        "client",
    )


def test_invalid_flow_run_id_is_refused(offline: Client) -> None:
    raises_clearly(
        lambda: offline.read_flow_run("run-123"), InvalidArgumentError, "flow_run_id", "run-123"
    )
    raises_clearly(
        lambda: offline.wait_for_flow_run(123), InvalidArgumentTypeError, "flow_run_id", "int"
    )


# -- the wait arguments, checked once by each public entry point that takes them -------

RUN_ID = "5f2b8c1e-7d4a-4b3e-9a6f-1c2d3e4f5a6b"
WAITS: Dict[str, Callable[..., Any]] = {
    "Client.run_deployment": lambda c, run, **kw: c.run_deployment("add/add-dep", **kw),
    "run_deployment": lambda c, run, **kw: deploytrigger.run_deployment(
        "add/add-dep", client=c, **kw
    ),
    "Client.wait_for_flow_run": lambda c, run, **kw: c.wait_for_flow_run(run, **kw),
    "Client.follow_logs": lambda c, run, **kw: list(c.follow_logs(run, **kw)),
    "Client.watch": lambda c, run, **kw: list(c.watch(run, **kw)),
    "Client.wait_all": lambda c, run, **kw: c.wait_all([run], **kw),
    "Client.as_completed": lambda c, run, **kw: list(c.as_completed([run], **kw)),
    "Client.run_many": lambda c, run, **kw: c.run_many(["add/add-dep"], **kw),
    "FlowRunHandle.wait": lambda c, run, **kw: c.handle(run).wait(**kw),
    "FlowRunHandle.result": lambda c, run, **kw: c.handle(run).result(**kw),
}
"""Public calls that take ``timeout`` and ``poll_interval``: ``(client, flow run, **those)``."""
POLL_INTERVAL_ONLY: Dict[str, Callable[..., Any]] = {
    "Client.handle": lambda c, run, **kw: c.handle(run, **kw),
    "Client.submit": lambda c, run, **kw: c.submit("add/add-dep", **kw),
}
"""Public calls that take ``poll_interval`` alone (a handle's default)."""
NEGATIVE = sorted(
    [(name, "timeout") for name in WAITS]
    + [(name, "poll_interval") for name in [*WAITS, *POLL_INTERVAL_ONLY]]
)


@pytest.mark.parametrize(("entry_point", "argument"), NEGATIVE)
def test_every_public_wait_refuses_a_negative_timeout_or_poll_interval_before_any_request(
    offline: Client, entry_point: str, argument: str
) -> None:
    call = {**WAITS, **POLL_INTERVAL_ONLY}[entry_point]
    running = FlowRun.from_json(flow_run_json("RUNNING"))  # a handle of it sends nothing
    run = running if entry_point.startswith("FlowRunHandle") else RUN_ID
    raises_clearly(
        lambda: call(offline, run, **{argument: -1}),
        InvalidArgumentError,
        f"`{argument}` cannot be negative",
    )


def test_as_completed_refuses_a_negative_timeout_when_called_not_when_iterated(
    offline: Client,
) -> None:
    raises_clearly(
        lambda: offline.as_completed([RUN_ID], timeout=-1),
        InvalidArgumentError,
        "`timeout` cannot be negative",
    )


@pytest.mark.parametrize("entry_point", sorted([*WAITS, *POLL_INTERVAL_ONLY]))
def test_every_public_wait_accepts_a_zero_poll_interval(entry_point: str) -> None:
    call = {**WAITS, **POLL_INTERVAL_ONLY}[entry_point]
    waits = {"timeout": 0} if entry_point in WAITS else {}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakePrefect(mock)
        fake.script_for_new_runs("COMPLETED")
        with make_client(FakeTime()) as client:
            call(client, fake.add_run("COMPLETED"), poll_interval=0, **waits)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("127.0.0.1:4200/api", "must start with http:// or https://"),
        ("ftp://127.0.0.1/api", "must start with http:// or https://"),
        ("http://127.0.0.1:99999/api", "invalid port"),
        ("http:///api", "name a host"),
    ],
)
def test_malformed_api_url_is_a_configuration_error(url: str, fragment: str) -> None:
    raises_clearly(lambda: Client(url), ConfigurationError, fragment)


def test_no_api_url_anywhere_says_how_to_set_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    raises_clearly(Client, ConfigurationError, "PREFECT_API_URL")


def test_server_unreachable_is_a_connection_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    with Client(url, max_retries=2, backoff=no_retry_wait) as client:
        error = raises_clearly(
            lambda: client.run_deployment("add/add-dep", timeout=0),
            ConnectionFailedError,
            "cannot reach the Prefect API at " + url,
            "3 attempts",
        )
    assert isinstance(error, ConnectionError)


# -- against the real server ------------------------------------------------------------


@pytest.fixture(scope="module")
def client(api_url: str) -> Iterator[Client]:
    with Client(api_url, request_timeout=30) as shared:
        yield shared


@pytest.fixture
def proxy(api_url: str) -> Iterator[Proxy]:
    with Proxy(api_url, seed=1) as started:
        yield started


@pytest.mark.integration
def test_trailing_slash_on_the_api_url_is_ignored(api_url: str) -> None:
    with Client(api_url + "/") as client:
        assert client.settings.api_url == api_url
        assert client.read_deployment_by_name("add/add-dep").name == "add-dep"


@pytest.mark.integration
@pytest.mark.parametrize("name", ["add/no-such-dep", "no-such-flow/add-dep"])
def test_unknown_deployment_name_is_named_in_the_error(client: Client, name: str) -> None:
    error = raises_clearly(
        lambda: client.run_deployment(name, timeout=0),
        DeploymentNotFoundError,
        f"deployment {name!r} was not found",
        "404",
    )
    assert isinstance(error, LookupError)


@pytest.mark.integration
def test_unknown_deployment_id_is_named_in_the_error(client: Client) -> None:
    missing = uuid.uuid4()
    raises_clearly(
        lambda: client.run_deployment(str(missing), timeout=0),
        DeploymentNotFoundError,
        str(missing),
    )


@pytest.mark.integration
def test_unknown_flow_run_is_named_in_the_error(client: Client) -> None:
    missing = uuid.uuid4()
    raises_clearly(
        lambda: client.wait_for_flow_run(missing, timeout=0),
        FlowRunNotFoundError,
        f"flow run '{missing}' was not found",
    )


@pytest.mark.integration
def test_parameter_refused_by_the_deployment_schema_names_it(client: Client) -> None:
    error = raises_clearly(
        lambda: client.run_deployment(
            "echo/echo-dep", parameters={"value": "not a dict"}, timeout=0
        ),
        ParameterRejectedError,
        "echo/echo-dep",
        "value",
    )
    assert isinstance(error, ParameterRejectedError) and error.parameter == "value"
    assert error.status_code == 409


@pytest.mark.integration
def test_parameter_the_flow_does_not_have_is_refused_before_creating(client: Client) -> None:
    error = raises_clearly(
        lambda: client.run_deployment("echo/echo-dep", parameters={"valu": {}}, timeout=0),
        ParameterRejectedError,
        "'valu'",
        "it accepts: items, value",
    )
    assert isinstance(error, ParameterRejectedError) and error.parameter == "valu"


@pytest.mark.integration
def test_naive_scheduled_time_is_taken_as_utc_and_aware_is_converted(
    client: Client, api_url: str
) -> None:
    naive = client.run_deployment(
        "add/add-dep", scheduled_time=dt.datetime(2099, 1, 1, 12, 0), timeout=0
    )
    plus_two = dt.timezone(dt.timedelta(hours=2))
    aware = client.run_deployment(
        "add/add-dep", scheduled_time=dt.datetime(2099, 1, 1, 12, 0, tzinfo=plus_two), timeout=0
    )
    utc = dt.timezone.utc
    assert naive.expected_start_time == dt.datetime(2099, 1, 1, 12, 0, tzinfo=utc)
    assert aware.expected_start_time == dt.datetime(2099, 1, 1, 10, 0, tzinfo=utc)
    record = raw.get(f"{api_url}/flow_runs/{naive.id}", timeout=30).json()
    assert record["expected_start_time"].startswith("2099-01-01T12:00:00")


@pytest.mark.integration
def test_non_json_answer_is_an_invalid_response_error(proxy: Proxy) -> None:
    proxy.add_rule(Rule(action="garbage", method="GET"))
    with Client(proxy.api_url) as client:
        raises_clearly(
            lambda: client.run_deployment("add/add-dep", timeout=0),
            InvalidResponseError,
            "not JSON",
            "<html>",
            "/deployments/name/add/add-dep",
        )


@pytest.mark.integration
def test_500_with_an_html_body_is_a_server_error_showing_the_body(proxy: Proxy) -> None:
    proxy.add_rule(Rule(action="status", status=500, body=b"<h1>Internal oops</h1>"))
    with Client(proxy.api_url) as client:
        raises_clearly(
            lambda: client.run_deployment("add/add-dep", timeout=0),
            ServerError,
            "500",
            "Internal oops",
        )


@pytest.mark.integration
def test_403_is_a_permission_error(proxy: Proxy) -> None:
    proxy.add_rule(Rule(action="status", status=403, body=b'{"detail":"Forbidden"}'))
    with Client(proxy.api_url) as client:
        raises_clearly(
            lambda: client.run_deployment("add/add-dep", timeout=0),
            PermissionDeniedError,
            "403",
            "Forbidden",
        )


@pytest.mark.integration
def test_created_run_answer_missing_fields_is_an_invalid_response_error(
    proxy: Proxy,
) -> None:
    proxy.add_rule(Rule(action="status", status=201, path=r"/create_flow_run$", body=b"{}"))
    with Client(proxy.api_url) as client:
        raises_clearly(
            lambda: client.run_deployment("add/add-dep", timeout=0), InvalidResponseError
        )
