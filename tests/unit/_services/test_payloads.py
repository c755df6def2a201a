"""Argument checks and request bodies, before anything is sent."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from pathlib import PurePosixPath
from typing import Any, Dict

import pytest

from deploytrigger import (
    Deployment,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    ParameterRejectedError,
)
from deploytrigger._helpers.arguments import check_wait_arguments, parse_deployment_ref
from deploytrigger._services.payloads import (
    check_parameter_names,
    flow_run_payload,
    rejected_parameter,
    to_json_value,
    utc_iso,
)

DEPLOYMENT_ID = uuid.UUID("3c9a7f3e-5b1d-4e2a-9f6c-0d8e7b6a5c41")
NOW = dt.datetime(2026, 11, 23, 20, 0, 0, tzinfo=dt.timezone.utc)


def assert_exact(error: BaseException, expected: type) -> None:
    assert type(error) is expected, f"{type(error).__name__} is not {expected.__name__}"


# -- parse_deployment_ref ------------------------------------------------------------


def test_uuid_object_is_read_as_a_deployment_id() -> None:
    assert parse_deployment_ref(DEPLOYMENT_ID) == DEPLOYMENT_ID


@pytest.mark.parametrize(
    "text", [str(DEPLOYMENT_ID), str(DEPLOYMENT_ID).upper(), DEPLOYMENT_ID.hex]
)
def test_uuid_string_is_read_as_a_deployment_id(text: str) -> None:
    ref = parse_deployment_ref(text)

    assert isinstance(ref, uuid.UUID)
    assert ref == DEPLOYMENT_ID


@pytest.mark.parametrize(
    ("text", "expected"),
    [("etl/nightly", ("etl", "nightly")), ("my flow/my dep", ("my flow", "my dep"))],
)
def test_flow_slash_deployment_is_read_as_a_name_pair(text: str, expected: tuple) -> None:
    assert parse_deployment_ref(text) == expected


@pytest.mark.parametrize(
    "text",
    ["nope", "a/b/c", "/x", "x/", "", " / ", "1234abcd-zzzz-1234-1234-1234567890ab"],
)
def test_malformed_deployment_name_is_refused_showing_the_expected_form(text: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        parse_deployment_ref(text)

    assert_exact(info.value, InvalidArgumentError)
    message = str(info.value)
    assert "'flow name/deployment name'" in message
    assert "UUID" in message
    assert repr(text) in message


@pytest.mark.parametrize("value", [123, None, b"etl/nightly", ["etl", "nightly"]])
def test_deployment_name_of_wrong_type_is_a_type_error(value: Any) -> None:
    with pytest.raises(InvalidArgumentTypeError) as info:
        parse_deployment_ref(value)

    assert isinstance(info.value, TypeError)
    assert "'flow name/deployment name'" in str(info.value)
    assert type(value).__name__ in str(info.value)


# -- flow_run_payload -----------------------------------------------------------------


def test_payload_sends_only_parameters_and_scheduled_state_when_nothing_else_given() -> None:
    body = flow_run_payload(now=NOW)

    assert body == {
        "parameters": {},
        "state": {
            "type": "SCHEDULED",
            "name": "Scheduled",
            "state_details": {"scheduled_time": "2026-11-23T20:00:00Z"},
        },
    }


def test_payload_omits_work_queue_name_when_none_and_sends_it_when_given() -> None:
    assert "work_queue_name" not in flow_run_payload(work_queue_name=None, now=NOW)
    assert flow_run_payload(work_queue_name="wq", now=NOW)["work_queue_name"] == "wq"


def test_payload_sends_every_given_field() -> None:
    parent = uuid.UUID("0f0e0d0c-0b0a-4909-8807-060504030201")

    body = flow_run_payload(
        parameters={"x": 1},
        flow_run_name="nightly-1",
        tags=("a", "b"),
        idempotency_key="key-1",
        work_queue_name="wq",
        job_variables={"env": {"A": "1"}},
        parent_task_run_id=parent,
        now=NOW,
    )

    assert body["parameters"] == {"x": 1}
    assert body["name"] == "nightly-1"
    assert body["tags"] == ["a", "b"]
    assert body["idempotency_key"] == "key-1"
    assert body["work_queue_name"] == "wq"
    assert body["job_variables"] == {"env": {"A": "1"}}
    assert body["parent_task_run_id"] == str(parent)
    json.dumps(body, allow_nan=False)


def test_aware_non_utc_scheduled_time_is_sent_in_utc_with_z() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    moment = dt.datetime(2026, 11, 23, 21, 30, 0, 123456, tzinfo=paris)

    body = flow_run_payload(scheduled_time=moment, now=NOW)

    assert body["state"]["state_details"]["scheduled_time"] == "2026-11-23T20:30:00.123456Z"


def test_naive_scheduled_time_is_taken_as_utc() -> None:
    body = flow_run_payload(scheduled_time=dt.datetime(2026, 11, 23, 20, 30), now=NOW)

    assert body["state"]["state_details"]["scheduled_time"] == "2026-11-23T20:30:00Z"


def test_scheduled_time_defaults_to_now_in_utc() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    body = flow_run_payload()
    after = dt.datetime.now(dt.timezone.utc)

    sent = body["state"]["state_details"]["scheduled_time"]
    assert sent.endswith("Z")
    parsed = dt.datetime.fromisoformat(sent.replace("Z", "+00:00"))
    assert before <= parsed <= after


def test_utc_iso_converts_offsets_and_marks_utc_with_z() -> None:
    eastern = dt.timezone(dt.timedelta(hours=-5))

    assert utc_iso(dt.datetime(2026, 1, 1, 7, 0, tzinfo=eastern)) == "2026-01-01T12:00:00Z"


def test_scheduled_time_that_is_not_a_datetime_is_a_type_error() -> None:
    with pytest.raises(InvalidArgumentTypeError, match="scheduled_time"):
        flow_run_payload(scheduled_time="2026-11-23T20:00:00Z")


def test_tags_given_as_a_string_are_refused() -> None:
    with pytest.raises(InvalidArgumentTypeError, match="tags must be a list of strings"):
        flow_run_payload(tags="nightly")


def test_non_string_tag_is_refused_naming_its_index() -> None:
    with pytest.raises(InvalidArgumentTypeError) as info:
        flow_run_payload(tags=["ok", 7])

    assert "tags[1]" in str(info.value)
    assert "int" in str(info.value)


@pytest.mark.parametrize("argument", ["flow_run_name", "idempotency_key", "work_queue_name"])
def test_optional_text_arguments_must_be_non_empty_strings(argument: str) -> None:
    with pytest.raises(InvalidArgumentTypeError, match=argument):
        flow_run_payload(**{argument: 5})
    with pytest.raises(InvalidArgumentError, match=argument):
        flow_run_payload(**{argument: "  "})


@pytest.mark.parametrize("argument", ["parameters", "job_variables"])
def test_parameters_and_job_variables_must_be_dicts(argument: str) -> None:
    with pytest.raises(InvalidArgumentTypeError, match=argument):
        flow_run_payload(**{argument: [("x", 1)]})


# -- to_json_value --------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Window:
    start: dt.date
    labels: tuple


class PydanticLike:
    def model_dump(self, mode: str) -> Dict[str, Any]:
        assert mode == "json"
        return {"a": 1}


def test_to_json_value_converts_what_prefect_would_send() -> None:
    run_id = uuid.UUID("11111111-2222-4333-8444-555555555555")
    value = {
        "when": dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.timezone.utc),
        "day": dt.date(2026, 11, 23),
        "at": dt.time(7, 30),
        "id": run_id,
        "price": decimal.Decimal("1.10"),
        "path": PurePosixPath("/data/in.csv"),
        "colour": Colour.RED,
        "level": Level.HIGH,
        "set": {3, 1, 2},
        "tuple": (1, "two"),
        "window": Window(dt.date(2026, 1, 1), ("x",)),
        "model": PydanticLike(),
        "nested": {"list": [None, True, 1.5]},
    }

    converted = to_json_value(value, "parameters")

    assert converted == {
        "when": "2026-11-23T20:00:00+00:00",
        "day": "2026-11-23",
        "at": "07:30:00",
        "id": str(run_id),
        "price": "1.10",
        "path": "/data/in.csv",
        "colour": "red",
        "level": 3,
        "set": [1, 2, 3],
        "tuple": [1, "two"],
        "window": {"start": "2026-01-01", "labels": ["x"]},
        "model": {"a": 1},
        "nested": {"list": [None, True, 1.5]},
    }
    assert json.loads(json.dumps(converted, allow_nan=False)) == converted


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_float_is_refused_naming_its_key_path(bad: float) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        to_json_value({"a": [1.0, bad]}, "parameters")

    assert_exact(info.value, InvalidArgumentError)
    assert "parameters['a'][1]" in str(info.value)


def test_unserialisable_object_is_a_type_error_naming_its_key_path() -> None:
    with pytest.raises(InvalidArgumentTypeError) as info:
        to_json_value({"cfg": {"x": object()}}, "parameters")

    assert "parameters['cfg']['x']" in str(info.value)
    assert "object" in str(info.value)


def test_non_string_dict_key_is_a_type_error_naming_where_it_is() -> None:
    with pytest.raises(InvalidArgumentTypeError) as info:
        to_json_value({"outer": {1: "x"}}, "parameters")

    message = str(info.value)
    assert "parameters['outer']" in message
    assert "1" in message
    assert "keys must be strings" in message


def test_payload_refuses_nan_parameter_before_sending() -> None:
    with pytest.raises(InvalidArgumentError, match=r"parameters\['x'\]"):
        flow_run_payload(parameters={"x": math.nan}, now=NOW)


# -- check_wait_arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "poll_interval", "expected"),
    [
        (None, 5, None),
        (0, 5, 0.0),
        (0, 0, 0.0),
        (10, 0, 10.0),
        (12.5, 2.5, 12.5),
        (math.inf, 5, None),
    ],
)
def test_valid_wait_arguments_give_the_timeout_in_seconds(
    timeout: Any, poll_interval: Any, expected: Any
) -> None:
    assert check_wait_arguments(timeout, poll_interval) == expected


def test_negative_timeout_is_refused_as_negative() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_wait_arguments(-1, 5)

    assert_exact(info.value, InvalidArgumentError)
    assert "timeout" in str(info.value)
    assert "cannot be negative" in str(info.value)


def test_negative_poll_interval_is_refused_as_negative() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        check_wait_arguments(10, -0.5)

    assert_exact(info.value, InvalidArgumentError)
    assert "poll_interval" in str(info.value)
    assert "cannot be negative" in str(info.value)


@pytest.mark.parametrize(("timeout", "poll_interval"), [(math.nan, 5), (10, math.nan)])
def test_nan_wait_argument_is_refused(timeout: float, poll_interval: float) -> None:
    with pytest.raises(InvalidArgumentError, match="NaN") as info:
        check_wait_arguments(timeout, poll_interval)

    assert_exact(info.value, InvalidArgumentError)


@pytest.mark.parametrize(
    ("timeout", "poll_interval", "argument"),
    [
        (True, 5, "timeout"),
        ("10", 5, "timeout"),
        (10, "5", "poll_interval"),
        (10, None, "poll_interval"),
        (10, False, "poll_interval"),
    ],
)
def test_wait_argument_of_wrong_type_is_a_type_error(
    timeout: Any, poll_interval: Any, argument: str
) -> None:
    with pytest.raises(InvalidArgumentTypeError, match=argument) as info:
        check_wait_arguments(timeout, poll_interval)

    assert isinstance(info.value, TypeError)


def test_infinite_poll_interval_is_refused_before_anything_is_sent() -> None:
    # With timeout=None the wait would call sleep(inf): OverflowError, not a DeployTriggerError.
    with pytest.raises(InvalidArgumentError, match="poll_interval"):
        check_wait_arguments(None, math.inf)


# -- check_parameter_names ------------------------------------------------------------


def deployment(enforce: bool, properties: Any) -> Deployment:
    schema = {"title": "Parameters", "type": "object"}
    if properties is not None:
        schema["properties"] = properties
    return Deployment.from_json(
        {
            "id": str(DEPLOYMENT_ID),
            "name": "add-dep",
            "flow_id": "9b2d3c4e-5f60-4172-8394-a5b6c7d8e9f0",
            "enforce_parameter_schema": enforce,
            "parameter_openapi_schema": schema,
        }
    )


def test_unknown_parameter_name_is_refused_when_schema_is_enforced() -> None:
    schema_deployment = deployment(True, {"x": {"type": "integer"}, "y": {"type": "integer"}})

    with pytest.raises(ParameterRejectedError) as info:
        check_parameter_names(schema_deployment, {"x": 1, "zz": 2}, "add/add-dep")

    assert info.value.parameter == "zz"
    message = str(info.value)
    assert "'zz'" in message
    assert "x, y" in message
    assert "'add/add-dep'" in message


def test_known_parameter_names_pass_the_check() -> None:
    schema_deployment = deployment(True, {"x": {"type": "integer"}})

    check_parameter_names(schema_deployment, {"x": 1}, "add/add-dep")


@pytest.mark.parametrize(("enforce", "properties"), [(False, {"x": {}}), (True, None)])
def test_parameter_names_are_not_checked_without_an_enforced_schema(
    enforce: bool, properties: Any
) -> None:
    check_parameter_names(deployment(enforce, properties), {"anything": 1}, "add/add-dep")


# -- rejected_parameter -----------------------------------------------------------------


def test_rejected_parameter_is_read_from_the_servers_409_detail() -> None:
    detail = (
        "Error creating flow run: Validation failed for field 'x'. "
        "Failure reason: 'abc' is not of type 'integer'"
    )

    assert rejected_parameter(detail) == "x"


@pytest.mark.parametrize("detail", ["Deployment not found", None, {"detail": "conflict"}])
def test_rejected_parameter_is_none_when_the_detail_names_no_field(detail: Any) -> None:
    assert rejected_parameter(detail) is None
