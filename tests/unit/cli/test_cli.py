"""The command line: its pure parsing helpers, and exit codes over a stubbed API.

``main()`` is called in-process with captured stdout/stderr; the real entry
point against a real server is covered by ``test_cli_integration.py``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import responses
from helpers.run_stubs import API, BY_NAME, CREATE, RUN, RUN_ID, SET_STATE, sent_json
from helpers.server_json import deployment_json, flow_run_json

from deploytrigger import FlowRun, cli
from deploytrigger.cli import _output, _parsing
from deploytrigger.exceptions import (
    DeploymentNotFoundError,
    InvalidArgumentError,
    ParameterRejectedError,
    ServerError,
)

pytestmark = pytest.mark.isolated_environment(api_url=API)


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def run_cli(*argv: str) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# -- parsing helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("x=5", ("x", 5)),
        ("x=5.5", ("x", 5.5)),
        ("flag=true", ("flag", True)),
        ("none=null", ("none", None)),
        ("items=[1, 2]", ("items", [1, 2])),
        ('obj={"a": 1}', ("obj", {"a": 1})),
        ('quoted="5"', ("quoted", "5")),
        ("word=hello", ("word", "hello")),
        ("empty=", ("empty", "")),
        ("eq=a=b", ("eq", "a=b")),
        ("nan=NaN", ("nan", "NaN")),
        ("inf=Infinity", ("inf", "Infinity")),
        (" spaced =x", ("spaced", "x")),
    ],
)
def test_key_value_is_json_when_it_parses_else_a_string(text: str, expected: Any) -> None:
    assert _parsing.parse_key_value(text) == expected


@pytest.mark.parametrize("text", ["x", "=5", "", " =1"])
def test_key_value_without_a_key_or_equals_sign_is_a_usage_error(text: str) -> None:
    with pytest.raises(_parsing.UsageError, match="--param expects key=value"):
        _parsing.parse_key_value(text)


def test_params_reads_a_json_object_inline_or_from_a_file(tmp_path: Path) -> None:
    assert _parsing.parse_params('{"x": 1}') == {"x": 1}
    path = tmp_path / "p.json"
    path.write_text('{"y": [1]}')
    assert _parsing.parse_params(f"@{path}") == {"y": [1]}


@pytest.mark.parametrize(
    "text, message",
    [("[1]", "must be a JSON object"), ("{x", "not valid JSON"), ("@/no/such.json", "cannot read")],
)
def test_bad_params_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(_parsing.UsageError, match=message):
        _parsing.parse_params(text)


def test_single_params_override_the_params_object() -> None:
    assert _parsing.run_parameters('{"x": 1, "y": 2}', ["x=3", "z=w"]) == {"x": 3, "y": 2, "z": "w"}


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("45", 45),
        ("1.5m", 90),
        ("0s", 0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert _parsing.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "-5m", "10m5", "ten minutes"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(_parsing.UsageError, match="--start-in"):
        _parsing.parse_duration(text)


def test_start_in_is_relative_to_now() -> None:
    now = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
    assert _parsing.scheduled_time("10m", None, now) == now + dt.timedelta(minutes=10)
    assert _parsing.scheduled_time(None, None, now) is None


def test_start_at_keeps_an_offset_and_takes_a_naive_time_as_local() -> None:
    assert _parsing.parse_start_at("2026-11-23T18:00:00+01:00") == dt.datetime(
        2026, 11, 23, 17, 0, tzinfo=dt.timezone.utc
    )
    naive = dt.datetime(2026, 11, 23, 18, 0)
    assert _parsing.parse_start_at("2026-11-23 18:00") == naive.astimezone().astimezone(
        dt.timezone.utc
    )


def test_a_bad_start_at_is_a_usage_error() -> None:
    with pytest.raises(_parsing.UsageError, match="--start-at"):
        _parsing.parse_start_at("next tuesday-ish")


# -- exit codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state_type, code",
    [
        ("COMPLETED", 0),
        ("FAILED", 1),
        ("CRASHED", 1),
        ("CANCELLED", 4),
        ("CANCELLING", 4),
        ("RUNNING", 3),
        ("SCHEDULED", 3),
        ("PENDING", 3),
        ("PAUSED", 3),
    ],
)
def test_exit_code_for_each_state(state_type: str, code: int) -> None:
    assert _output.exit_code_for_run(FlowRun.from_json(flow_run_json(state_type))) == code


def test_exit_code_for_errors() -> None:
    assert _output.exit_code_for_error(_parsing.UsageError("x")) == 2
    assert _output.exit_code_for_error(InvalidArgumentError("x")) == 2
    kwargs: Dict[str, Any] = dict(status_code=409, detail="d", method="POST", url="u")
    assert _output.exit_code_for_error(ParameterRejectedError("x", parameter="p", **kwargs)) == 2
    assert (
        _output.exit_code_for_error(DeploymentNotFoundError("x", deployment="a/b", **kwargs)) == 5
    )
    assert _output.exit_code_for_error(ServerError("x", **kwargs)) == 5


# -- main() over a stubbed API ---------------------------------------------------------------


def stub_run(http: responses.RequestsMock, *states: str, message: str = "") -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, status=201, json=flow_run_json("SCHEDULED"))
    answers: List[str] = list(states)

    def answer(request: Any) -> Tuple[int, Dict[str, str], str]:
        state = answers.pop(0) if len(answers) > 1 else answers[0]
        return 200, {}, json.dumps(flow_run_json(state, message or None))

    http.add_callback(responses.GET, RUN, callback=answer)


@pytest.mark.parametrize(
    "state_type, code", [("COMPLETED", 0), ("FAILED", 1), ("CRASHED", 1), ("CANCELLED", 4)]
)
def test_run_exit_code_follows_the_final_state(
    http: responses.RequestsMock, state_type: str, code: int
) -> None:
    stub_run(http, "RUNNING", state_type)
    status, out, _err = run_cli("run", "add/add-dep", "--poll-interval", "0")
    assert status == code
    assert state_type in out and str(RUN_ID) in out


def test_run_sends_every_option_to_the_server(http: responses.RequestsMock) -> None:
    stub_run(http, "COMPLETED")
    status, out, _err = run_cli(
        "run", "add/add-dep", "-p", "x=5", "--param", "s=hi", "--params", '{"x": 1, "y": 2}',
        "--name", "nightly", "--tag", "a", "--tag", "b", "--idempotency-key", "k1",
        "--job-variable", "env={\"A\": \"1\"}", "--start-at", "2099-01-01T00:00:00Z",
        "--no-wait",
    )  # fmt: skip
    assert status == 0 and out.strip() == str(RUN_ID)
    body = sent_json(next(c for c in http.calls if c.request.url == CREATE))
    assert body["parameters"] == {"x": 5, "y": 2, "s": "hi"}
    assert body["name"] == "nightly" and body["tags"] == ["a", "b"]
    assert body["idempotency_key"] == "k1"
    assert body["job_variables"] == {"env": {"A": "1"}}
    assert body["state"]["state_details"]["scheduled_time"].startswith("2099-01-01T00:00:00")
    assert not [c for c in http.calls if c.request.url == RUN]  # --no-wait: no polling


def test_run_json_prints_one_json_object_with_the_exit_code(http: responses.RequestsMock) -> None:
    stub_run(http, "COMPLETED")
    status, out, _err = run_cli("run", "add/add-dep", "--json", "--poll-interval", "0")
    data = json.loads(out)
    assert status == 0 and data["state"] == "COMPLETED" and data["exit_code"] == 0
    assert data["id"] == str(RUN_ID) and data["ui_url"].endswith(f"/runs/flow-run/{RUN_ID}")


def test_run_not_final_at_the_timeout_exits_3_and_leaves_it_running(
    http: responses.RequestsMock,
) -> None:
    stub_run(http, "RUNNING")
    status, out, _err = run_cli("run", "add/add-dep", "--timeout", "0.2", "--poll-interval", "0.05")
    assert status == 3 and "RUNNING" in out
    assert not [c for c in http.calls if c.request.url == SET_STATE]


def test_run_cancel_on_timeout_cancels_and_exits_4(http: responses.RequestsMock) -> None:
    stub_run(http, "RUNNING", "CANCELLING")
    http.post(SET_STATE, status=201, json={"state": {}, "status": "ACCEPT", "details": {}})
    status, out, _err = run_cli(
        "run", "add/add-dep", "--timeout", "0", "--cancel-on-timeout", "--json"
    )
    assert status == 4 and json.loads(out)["state"] == "CANCELLING"
    assert len([c for c in http.calls if c.request.url == SET_STATE]) == 1


def test_unknown_deployment_exits_5_with_one_line(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, status=404, json={"detail": "Deployment not found"})
    status, out, err = run_cli("run", "add/add-dep")
    assert status == 5 and out == ""
    assert err.count("\n") == 1 and err.startswith("deploytrigger: error: deployment 'add/add-dep'")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "add/add-dep", "-p", "x"], "--param expects key=value"),
        (["run", "add/add-dep", "--start-at", "soon"], "--start-at expects"),
        (["run", "add/add-dep", "--start-in", "10x"], "--start-in expects"),
        (["run", "add/add-dep", "--timeout", "-1"], "--timeout"),
        (["run", "not-a-name"], "flow name/deployment name"),
        (["run", "add/add-dep", "--cancel-on-timeout"], "needs --timeout"),
        (["run", "x/y", "--start-in", "1m", "--start-at", "2026-01-01"], "not allowed with"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
        (["status", "not-a-uuid"], "must be a UUID"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_sends_nothing(
    http: responses.RequestsMock, argv: List[str], message: str
) -> None:
    status, _out, err = run_cli(*argv)
    assert status == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err
    assert not http.calls


def test_debug_adds_the_traceback_and_the_request_log(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, status=404, json={"detail": "Deployment not found"})
    status, _out, err = run_cli("--debug", "run", "add/add-dep")
    assert status == 5
    assert "Traceback" in err and "GET http://prefect.test:4200/api/deployments" in err


def test_json_errors_also_print_a_json_object(http: responses.RequestsMock) -> None:
    http.get(BY_NAME, status=404, json={"detail": "Deployment not found"})
    _status, out, err = run_cli("run", "add/add-dep", "--json")
    assert json.loads(out) == {
        "error": err.strip()[len("deploytrigger: error: ") :],
        "exit_code": 5,
    }


def test_status_exit_code_follows_the_state(http: responses.RequestsMock) -> None:
    http.get(RUN, json=flow_run_json("FAILED", "boom"))
    status, out, _err = run_cli("status", str(RUN_ID))
    assert status == 1 and "FAILED" in out and "boom" in out


def test_cancel_reports_a_refusal_with_exit_1(http: responses.RequestsMock) -> None:
    http.post(SET_STATE, json={"state": {}, "status": "ABORT", "details": {}})
    http.get(RUN, json=flow_run_json("COMPLETED"))
    status, _out, err = run_cli("cancel", str(RUN_ID))
    assert status == 1 and "not cancelled: it is COMPLETED" in err


def test_logs_prints_levels_by_name(http: responses.RequestsMock) -> None:
    http.get(RUN, json=flow_run_json("COMPLETED"))
    http.post(
        f"{API}/logs/filter",
        json=[
            {"id": "00000000-0000-0000-0000-000000000001", "level": 20, "message": "sum is 13",
             "timestamp": "2026-11-23T20:00:01Z", "name": "prefect.flow_runs"},
            {"id": "00000000-0000-0000-0000-000000000002", "level": 40, "message": "oops",
             "timestamp": "2026-11-23T20:00:02Z", "name": "prefect.flow_runs"},
        ],
    )  # fmt: skip
    status, out, _err = run_cli("logs", str(RUN_ID))
    lines = out.splitlines()
    assert status == 0 and len(lines) == 2
    assert "INFO" in lines[0] and lines[0].endswith("sum is 13")
    assert "ERROR" in lines[1] and lines[1].endswith("oops")


def test_deployments_lists_full_names_with_default_parameters(
    http: responses.RequestsMock,
) -> None:
    http.post(f"{API}/deployments/filter", json=[deployment_json()])
    http.get(
        f"{API}/flows/{deployment_json()['flow_id']}",
        json={"id": deployment_json()["flow_id"], "name": "add"},
    )
    status, out, _err = run_cli("deployments", "--flow", "add")
    assert status == 0 and out.split() == ["add/add-dep", '{"y":', "10}"]


def test_exit_codes_are_documented_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--help"])
    assert caught.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for code in cli.EXIT_CODES:
        assert f"{code} " in help_text


@pytest.mark.parametrize("cancel", [True, False])
def test_ctrl_c_while_waiting_exits_130_and_cancels_only_if_asked(
    http: responses.RequestsMock, cancel: bool
) -> None:
    http.get(BY_NAME, json=deployment_json())
    http.post(CREATE, status=201, json=flow_run_json("SCHEDULED"))
    http.post(SET_STATE, status=201, json={"state": {}, "status": "ACCEPT", "details": {}})

    def interrupt(request: Any) -> Tuple[int, Dict[str, str], str]:
        raise KeyboardInterrupt

    http.add_callback(responses.GET, RUN, callback=interrupt)
    argv = ["run", "add/add-dep", "--poll-interval", "0"]
    status, _out, err = run_cli(*argv, *(["--cancel-on-interrupt"] if cancel else []))
    assert status == 130
    cancels = [c for c in http.calls if c.request.url == SET_STATE]
    assert len(cancels) == (1 if cancel else 0)
    assert ("cancelling flow run" in err) is cancel
    assert ("keeps going" in err) is not cancel
