"""Parsing the server's JSON into frozen dataclasses, with the shapes Prefect 3.8 sends."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import inspect
import sys
import typing
import uuid
from typing import Any, ClassVar, Dict, Tuple

import pytest
from helpers.server_json import deployment_json, flow_run_json, state_json

from deploytrigger import (
    FINAL_STATES,
    Deployment,
    Flow,
    FlowRun,
    InvalidResponseError,
    LogRecord,
    State,
    StateType,
)

RUN_ID = "5f2b8c1e-7d4a-4b3e-9a6f-1c2d3e4f5a6b"
FLOW_ID = "9b2d3c4e-5f60-4172-8394-a5b6c7d8e9f0"
DEPLOYMENT_ID = "3c9a7f3e-5b1d-4e2a-9f6c-0d8e7b6a5c41"
UTC = dt.timezone.utc


# -- FlowRun ---------------------------------------------------------------------------


def test_flow_run_from_server_json_has_uuid_ids_and_aware_datetimes() -> None:
    run = FlowRun.from_json(flow_run_json(shape="full"))

    assert run.id == uuid.UUID(RUN_ID)
    assert run.flow_id == uuid.UUID(FLOW_ID)
    assert run.deployment_id == uuid.UUID(DEPLOYMENT_ID)
    assert run.name == "mottled-crab"
    assert run.parameters == {"x": 5, "y": [1, 2]}
    assert run.tags == ("from-test", "nightly")
    assert run.idempotency_key == "key-1"
    assert run.work_queue_name == "default"
    assert run.job_variables == {"env": {"A": "1"}}
    assert run.parent_task_run_id is None
    assert run.expected_start_time == dt.datetime(2026, 11, 23, 20, 0, 0, 100000, tzinfo=UTC)
    assert run.start_time is not None and run.start_time.utcoffset() == dt.timedelta(hours=1)
    assert run.start_time == dt.datetime(2026, 11, 23, 20, 0, 1, 500000, tzinfo=UTC)
    assert run.end_time == dt.datetime(2026, 11, 23, 20, 0, 5, 123456, tzinfo=UTC)


def test_flow_run_state_type_compares_equal_to_its_name() -> None:
    run = FlowRun.from_json(flow_run_json("COMPLETED", shape="full"))

    assert run.state is not None
    assert run.state.type == "COMPLETED"
    assert run.state.type is StateType.COMPLETED
    assert isinstance(run.state.type, str)
    assert str(run.state.type) == "COMPLETED"
    assert f"{run.state.type}" == "COMPLETED"


def test_flow_run_keeps_the_raw_json_but_not_in_repr_or_equality() -> None:
    data = flow_run_json(shape="full")
    data["context"] = {"marker": "RAW-ONLY-VALUE"}

    run = FlowRun.from_json(data)
    other = FlowRun.from_json(flow_run_json(shape="full"))

    assert run.raw == data
    assert "RAW-ONLY-VALUE" not in repr(run)
    assert run == other


def test_flow_run_raw_is_a_copy_of_what_the_server_sent() -> None:
    data = flow_run_json(shape="full")
    run = FlowRun.from_json(data)

    data["name"] = "changed-later"

    assert run.raw["name"] == "mottled-crab"


def test_flow_run_is_frozen() -> None:
    run = FlowRun.from_json(flow_run_json(shape="full"))

    with pytest.raises(dataclasses.FrozenInstanceError):
        run.name = "other"  # type: ignore[misc]


def test_flow_run_without_state_is_not_final() -> None:
    run = FlowRun.from_json(flow_run_json(shape="full", state=None))

    assert run.state is None
    assert run.is_final() is False


@pytest.mark.parametrize("missing", ["id", "flow_id"])
def test_flow_run_without_required_field_is_an_invalid_response(missing: str) -> None:
    data = flow_run_json(shape="full")
    del data[missing]

    with pytest.raises(InvalidResponseError, match=missing):
        FlowRun.from_json(data)


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": "not-a-uuid"},
        {"expected_start_time": "yesterday-ish"},
        {"start_time": 12},
        {"parameters": ["x"]},
        {"state": "COMPLETED"},
        {"state": state_json("EXPLODED")},
        {"tags": 5},
    ],
    ids=[
        "bad-id",
        "bad-datetime",
        "number-datetime",
        "list-params",
        "string-state",
        "unknown-state",
        "tags-not-a-list",
    ],
)
def test_malformed_flow_run_field_is_an_invalid_response(overrides: Dict[str, Any]) -> None:
    with pytest.raises(InvalidResponseError):
        FlowRun.from_json(flow_run_json(shape="full", **overrides))


@pytest.mark.parametrize("data", [None, [], "flow run", 42])
def test_flow_run_that_is_not_an_object_is_an_invalid_response(data: Any) -> None:
    with pytest.raises(InvalidResponseError):
        FlowRun.from_json(data)


# -- State -----------------------------------------------------------------------------


def test_state_from_json_reads_type_name_message_and_aware_timestamp() -> None:
    state = State.from_json(
        state_json("FAILED", name="Failed", message="Flow run encountered an exception")
    )

    assert state.type is StateType.FAILED
    assert state.name == "Failed"
    assert state.message == "Flow run encountered an exception"
    assert state.timestamp == dt.datetime(2026, 11, 23, 20, 0, 5, 123456, tzinfo=UTC)
    assert str(state) == "Failed: Flow run encountered an exception"


def test_state_timestamp_with_offset_is_aware_and_naive_is_utc() -> None:
    with_offset = State.from_json(state_json(timestamp="2026-11-23T15:00:00-05:00"))
    naive = State.from_json(state_json(timestamp="2026-11-23T20:00:00"))

    assert with_offset.timestamp == dt.datetime(2026, 11, 23, 20, tzinfo=UTC)
    assert naive.timestamp is not None and naive.timestamp.tzinfo is not None
    assert naive.timestamp == dt.datetime(2026, 11, 23, 20, tzinfo=UTC)


def test_late_scheduled_state_keeps_its_display_name() -> None:
    state = State.from_json(state_json("SCHEDULED", name="Late"))

    assert state.type == "SCHEDULED"
    assert state.name == "Late"


def test_state_without_name_is_named_after_its_type() -> None:
    assert State.from_json(state_json("RUNNING", name=None)).name == "Running"


def test_unknown_state_type_is_an_invalid_response_naming_it() -> None:
    with pytest.raises(InvalidResponseError, match="EXPLODED"):
        State.from_json(state_json("EXPLODED"))


def test_state_without_type_is_an_invalid_response() -> None:
    data = state_json()
    del data["type"]

    with pytest.raises(InvalidResponseError, match="type"):
        State.from_json(data)


def test_state_raw_is_kept_but_not_in_repr() -> None:
    state = State.from_json(state_json(state_details={"marker": "RAW-ONLY-VALUE"}))

    assert state.raw["state_details"] == {"marker": "RAW-ONLY-VALUE"}
    assert "RAW-ONLY-VALUE" not in repr(state)


FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
PREDICATES = {
    "SCHEDULED": "is_scheduled",
    "PENDING": "is_pending",
    "RUNNING": "is_running",
    "PAUSED": "is_paused",
    "CANCELLING": "is_cancelling",
    "COMPLETED": "is_completed",
    "FAILED": "is_failed",
    "CANCELLED": "is_cancelled",
    "CRASHED": "is_crashed",
}


@pytest.mark.parametrize("state_type", sorted(PREDICATES))
def test_each_state_type_is_final_only_when_prefect_says_so_and_matches_one_predicate(
    state_type: str,
) -> None:
    state = State.from_json(state_json(state_type))
    run = FlowRun.from_json(flow_run_json(state_type, shape="full"))

    assert state.is_final() is (state_type in FINAL)
    assert run.is_final() is (state_type in FINAL)
    true_predicates = [name for name in PREDICATES.values() if getattr(state, name)()]
    assert true_predicates == [PREDICATES[state_type]]


def test_final_states_constant_is_exactly_the_four_final_types() -> None:
    assert frozenset(StateType(name) for name in FINAL) == FINAL_STATES


# -- Deployment and Flow ----------------------------------------------------------------


def test_deployment_from_server_json() -> None:
    data = deployment_json(shape="full")
    deployment = Deployment.from_json(data)

    assert deployment.id == uuid.UUID(DEPLOYMENT_ID)
    assert deployment.flow_id == uuid.UUID(FLOW_ID)
    assert deployment.name == "add-dep"
    assert deployment.version == "1a2b3c4d"
    assert deployment.parameters == {"y": 1}
    assert deployment.tags == ("demo",)
    assert deployment.work_pool_name == "test-pool"
    assert deployment.work_queue_name == "default"
    assert deployment.enforce_parameter_schema is True
    assert set(deployment.parameter_openapi_schema["properties"]) == {"x", "y"}
    assert deployment.raw == data
    assert "Adds two numbers" not in repr(deployment)


@pytest.mark.parametrize("missing", ["id", "name", "flow_id"])
def test_deployment_without_required_field_is_an_invalid_response(missing: str) -> None:
    data = deployment_json(shape="full")
    del data[missing]

    with pytest.raises(InvalidResponseError, match=missing):
        Deployment.from_json(data)


def test_deployment_with_null_optional_fields_gets_empty_defaults() -> None:
    data = deployment_json(
        shape="full",
        parameters=None,
        tags=None,
        parameter_openapi_schema=None,
        enforce_parameter_schema=None,
    )

    deployment = Deployment.from_json(data)

    assert deployment.parameters == {}
    assert deployment.tags == ()
    assert deployment.parameter_openapi_schema == {}
    assert deployment.enforce_parameter_schema is False


def test_flow_from_server_json() -> None:
    data = {
        "id": FLOW_ID,
        "created": "2026-11-23T19:00:00Z",
        "updated": "2026-11-23T19:00:00Z",
        "name": "add",
        "tags": [],
        "labels": {},
    }

    flow = Flow.from_json(copy.deepcopy(data))

    assert flow.id == uuid.UUID(FLOW_ID)
    assert flow.name == "add"
    assert flow.raw == data


def test_flow_without_name_is_an_invalid_response() -> None:
    with pytest.raises(InvalidResponseError, match="name"):
        Flow.from_json({"id": FLOW_ID})


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T21:04:05.123456Z",  # what the server sends
        "2026-11-23T21:04:05Z",
        "2026-11-23T21:04:05.123+02:00",
        "2026-11-23T21:04:05.123456-05:30",
        "2026-11-23T21:04:05",  # naive: taken as UTC
        "2026-11-23T24:00:00Z",  # not for fromisoformat: dateutil reads the next midnight
        "2026-11-23",
        "20261123T210405Z",
        "2026-11-23T21:04:05.1234567Z",
    ],
)
def test_datetimes_parse_as_dateutil_parses_them_whichever_parser_reads_them(text: str) -> None:
    from dateutil import parser as date_parser

    from deploytrigger.models import parse_datetime

    expected = date_parser.isoparse(text)
    if expected.tzinfo is None:
        expected = expected.replace(tzinfo=dt.timezone.utc)
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("text", ["2026-13-01T00:00:00Z", "2026-11-23T21:04:05+25:00", "soon"])
def test_an_invalid_datetime_from_the_server_is_an_invalid_response(text: str) -> None:
    from deploytrigger.models import parse_datetime

    with pytest.raises(InvalidResponseError):
        parse_datetime(text)


# -- what users reach for after a run ----------------------------------------------------------


def test_flow_run_reads_counts_run_times_pool_labels_and_versions() -> None:
    run = FlowRun.from_json(flow_run_json(shape="full", work_pool_name="test-pool"))
    assert run.run_count == 1
    assert run.total_run_time == dt.timedelta(seconds=3.623456)
    assert run.estimated_run_time == dt.timedelta(seconds=3.623456)
    assert run.work_pool_name == "test-pool"
    assert run.labels == {"prefect.flow.id": FLOW_ID, "prefect.deployment.id": DEPLOYMENT_ID}
    assert (run.flow_version, run.deployment_version) == ("f00d", "1a2b3c4d")
    assert run.infrastructure_pid == "1234"
    assert run.created == dt.datetime(2026, 11, 23, 20, 0, 0, 100000, tzinfo=UTC)
    assert run.next_scheduled_start_time is None


def test_scheduled_run_tells_when_it_is_due() -> None:
    details = dict(state_json("SCHEDULED")["state_details"], scheduled_time="2099-01-01T12:00:00Z")
    run = FlowRun.from_json(
        flow_run_json(
            "SCHEDULED",
            shape="full",
            state=state_json("SCHEDULED", state_details=details),
            next_scheduled_start_time="2099-01-01T12:00:00Z",
        )
    )
    due = dt.datetime(2099, 1, 1, 12, tzinfo=UTC)
    assert run.scheduled_time == due == run.next_scheduled_start_time
    assert (
        run.state is not None
        and run.state.state_details["scheduled_time"] == details["scheduled_time"]
    )


def test_paused_state_tells_when_it_times_out() -> None:
    details = dict(state_json("PAUSED")["state_details"], pause_timeout="2026-11-23T21:00:00+00:00")
    state = State.from_json(state_json("PAUSED", state_details=details))
    assert state.pause_timeout == dt.datetime(2026, 11, 23, 21, tzinfo=UTC)
    assert state.scheduled_time is None


def test_a_prefect_2_run_without_labels_gets_the_defaults() -> None:
    data = flow_run_json(shape="full")
    for key in ("labels", "run_count", "total_run_time", "estimated_run_time", "created"):
        del data[key]
    run = FlowRun.from_json(data)
    assert (run.labels, run.run_count, run.total_run_time, run.created) == ({}, 0, None, None)


@pytest.mark.parametrize(
    "overrides",
    [
        {"run_count": "1"},
        {"run_count": True},
        {"total_run_time": "3.6"},
        {"estimated_run_time": [1]},
        {"labels": ["a"]},
        {"created": "yesterday"},
        {"state": state_json(state_details={"scheduled_time": "soon"})},
        {"state": state_json(state_details=["x"])},
    ],
)
def test_malformed_run_details_are_an_invalid_response(overrides: Dict[str, Any]) -> None:
    with pytest.raises(InvalidResponseError):
        FlowRun.from_json(flow_run_json(shape="full", **overrides))


# -- the models are frozen dataclasses ---------------------------------------------------

# One model of each kind, and a field to change in it: (model, field, new value).
MODELS: Tuple[Tuple[Any, str, Any], ...] = (
    (State(StateType.RUNNING, "Running"), "message", "started"),
    (FlowRun.from_json(flow_run_json(shape="full")), "name", "other-crab"),
    (Deployment.from_json(deployment_json()), "version", "2"),
    (Flow(uuid.UUID(FLOW_ID), "add", raw={"id": FLOW_ID}), "name", "sub"),
    (LogRecord(uuid.UUID(int=1), dt.datetime(2026, 11, 23, tzinfo=UTC), 20, "hi"), "level", 40),
)
MODEL_IDS = [type(model).__name__ for model, _, _ in MODELS]


@pytest.mark.parametrize(("model", "name", "value"), MODELS, ids=MODEL_IDS)
def test_dataclasses_fields_replace_and_asdict_work_on_each_model(
    model: Any, name: str, value: Any
) -> None:
    cls = type(model)
    names = [f.name for f in dataclasses.fields(cls)]
    assert dataclasses.is_dataclass(model) and cls.__dataclass_params__.frozen
    assert names == list(cls.__annotations__) == list(inspect.signature(cls).parameters)
    changed = dataclasses.replace(model, **{name: value})
    assert getattr(changed, name) == value and changed != model
    assert dataclasses.replace(changed, **{name: getattr(model, name)}) == model
    as_dict = dataclasses.asdict(model)
    assert list(as_dict) == names and as_dict[name] == getattr(model, name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(model, name, value)


@pytest.mark.skipif(sys.version_info < (3, 13), reason="copy.replace is new in Python 3.13")
@pytest.mark.parametrize(("model", "name", "value"), MODELS, ids=MODEL_IDS)
def test_copy_replace_makes_a_changed_copy_of_each_model(model: Any, name: str, value: Any) -> None:
    changed = copy.replace(model, **{name: value})
    assert type(changed) is type(model) and getattr(changed, name) == value
    assert dataclasses.replace(changed, **{name: getattr(model, name)}) == model


@pytest.mark.parametrize("cls", [type(model) for model, _, _ in MODELS], ids=MODEL_IDS)
def test_type_hints_of_each_model_resolve_to_the_types_of_its_fields(cls: Any) -> None:
    hints = typing.get_type_hints(cls)
    assert list(hints) == [f.name for f in dataclasses.fields(cls)]
    assert typing.get_type_hints(cls.__init__) == {**hints, "return": type(None)}
    assert hints["raw"] == typing.Mapping[str, Any]


def test_a_class_var_on_a_model_subclass_is_not_a_field() -> None:
    @dataclasses.dataclass(frozen=True)
    class TaggedRun(FlowRun):
        source: ClassVar[str] = "deploytrigger"
        note: str = ""

    run = FlowRun.from_json(flow_run_json(shape="full"))
    tagged = TaggedRun(**{f.name: getattr(run, f.name) for f in dataclasses.fields(run)}, note="x")
    assert [f.name for f in dataclasses.fields(TaggedRun)] == [
        *(f.name for f in dataclasses.fields(FlowRun)),
        "note",
    ]
    assert (tagged.source, tagged.note, tagged.name) == ("deploytrigger", "x", run.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tagged.note = "y"  # type: ignore[misc]
