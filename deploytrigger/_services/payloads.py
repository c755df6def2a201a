"""The bodies of the services' requests, checked before anything is sent: pure, no I/O.

A run to create is checked once, into a :class:`RunRequest`, and passed down
whole. Bad input fails fast with an :class:`~deploytrigger.InvalidArgumentError`
that names the argument (and the key, for parameters) and shows what is expected.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import re
import uuid
from pathlib import PurePath
from typing import Any, Dict, Iterable, List, Mapping, Optional

from .._helpers.arguments import (
    PAGE_LIMIT,
    DeploymentRef,
    RunOptions,
    parse_deployment_ref,
    unexpected_keywords,
)
from ..exceptions import InvalidArgumentError, InvalidArgumentTypeError, ParameterRejectedError
from ..models import Deployment


def to_json_value(value: Any, where: str) -> Any:
    """Convert ``value`` into plain JSON data, as Prefect's own client would send it.

    Besides JSON's own types this accepts datetimes, dates and times (ISO 8601),
    UUIDs, decimals and paths (strings), enums (their value), tuples and sets
    (lists), dataclasses and pydantic models (objects).

    Args:
        value: the value to convert.
        where: how to name the value in an error, e.g. ``"parameters['x']"``.

    Raises:
        InvalidArgumentError: a float is NaN or infinite.
        InvalidArgumentTypeError: a value (or dict key) cannot be sent as JSON.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(f"{where} is {value!r}, which JSON cannot carry")
        return value
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentTypeError(
                    f"{where} has the key {key!r} ({type(key).__name__}); keys must be strings"
                )
            result[key] = to_json_value(item, f"{where}[{key!r}]")
        return result
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_json_value(item, f"{where}[{i}]") for i, item in enumerate(items)]
    if isinstance(value, enum.Enum):
        return to_json_value(value.value, where)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, PurePath)):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_value(dataclasses.asdict(value), where)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return to_json_value(dump(mode="json"), where)
    raise InvalidArgumentTypeError(
        f"{where} is a {type(value).__name__}, which cannot be sent as JSON"
    )


def utc_iso(moment: dt.datetime) -> str:
    """``moment`` in UTC as ISO 8601; a naive datetime is taken as UTC, as Prefect does."""
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _optional_text(value: Any, argument: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentTypeError(f"{argument} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidArgumentError(f"{argument} must not be empty")
    return value


def _tags(tags: Any) -> Optional[List[str]]:
    if tags is None:
        return None
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise InvalidArgumentTypeError(
            f"tags must be a list of strings, not {type(tags).__name__} {tags!r}"
        )
    result = []
    for i, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise InvalidArgumentTypeError(
                f"tags[{i}] is {type(tag).__name__} {tag!r}; every tag must be a string"
            )
        result.append(tag)
    return result


def _object(value: Any, argument: str) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgumentTypeError(f"{argument} must be a dict, not {type(value).__name__}")
    converted: Dict[str, Any] = to_json_value(value, argument)
    return converted


def flow_run_payload(
    *,
    parameters: Any = None,
    scheduled_time: Any = None,
    flow_run_name: Any = None,
    tags: Any = None,
    idempotency_key: Any = None,
    work_queue_name: Any = None,
    job_variables: Any = None,
    parent_task_run_id: Optional[uuid.UUID] = None,
    now: Optional[dt.datetime] = None,
) -> Dict[str, Any]:
    """Check the arguments of a run and build the body of ``create_flow_run``.

    Only what was given is sent, except the state: Scheduled at
    ``scheduled_time``, or at ``now`` (UTC) when it is None.

    Raises:
        InvalidArgumentError: an argument has a bad value.
        InvalidArgumentTypeError: an argument has the wrong type.
    """
    if scheduled_time is None:
        scheduled_time = now or dt.datetime.now(dt.timezone.utc)
    elif not isinstance(scheduled_time, dt.datetime):
        raise InvalidArgumentTypeError(
            f"scheduled_time must be a datetime, not {type(scheduled_time).__name__} "
            f"{scheduled_time!r}"
        )
    body: Dict[str, Any] = {
        "parameters": _object(parameters, "parameters") or {},
        "state": {
            "type": "SCHEDULED",
            "name": "Scheduled",
            "state_details": {"scheduled_time": utc_iso(scheduled_time)},
        },
    }
    optional = {
        "name": _optional_text(flow_run_name, "flow_run_name"),
        "tags": _tags(tags),
        "idempotency_key": _optional_text(idempotency_key, "idempotency_key"),
        "work_queue_name": _optional_text(work_queue_name, "work_queue_name"),
        "job_variables": _object(job_variables, "job_variables"),
        "parent_task_run_id": None if parent_task_run_id is None else str(parent_task_run_id),
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity: two requests are two runs
class RunRequest:
    """A run to create, checked: the deployment it names and the ``create_flow_run`` body.

    Attributes:
        ref: the deployment, by id or (flow name, deployment name).
        body: the body of ``create_flow_run`` (parent linking adds to a copy).
        as_subflow: link the run to the current parent run, when there is one.
    """

    ref: DeploymentRef
    body: Mapping[str, Any]
    as_subflow: bool = True

    @classmethod
    def check(cls, name: Any, options: RunOptions, *, where: str = "run_deployment") -> RunRequest:
        """Check the deployment's name and every run option; nothing is sent.

        Raises:
            InvalidArgumentError: a bad value (an ``InvalidArgumentTypeError`` for a
                wrong type or a keyword ``where`` does not take).
        """
        unexpected_keywords(options, RunOptions.__annotations__, where)
        ref = parse_deployment_ref(name)
        as_subflow = options.get("as_subflow", True)
        if not isinstance(as_subflow, bool):
            raise InvalidArgumentTypeError(f"as_subflow must be True or False, not {as_subflow!r}")
        given: Dict[str, Any] = {k: v for k, v in options.items() if k != "as_subflow"}
        return cls(ref=ref, body=flow_run_payload(**given), as_subflow=as_subflow)


def check_parameter_names(deployment: Deployment, parameters: Mapping[str, Any], ref: str) -> None:
    """Refuse parameter names the deployment's flow does not accept.

    The server accepts unknown names and the run then crashes at start; when
    the deployment enforces its parameter schema, refuse them up front.

    Raises:
        ParameterRejectedError: a name is not among the schema's properties.
    """
    properties = deployment.parameter_openapi_schema.get("properties")
    if not deployment.enforce_parameter_schema or not isinstance(properties, Mapping):
        return
    unknown = sorted(set(parameters) - set(properties))
    if unknown:
        accepted = ", ".join(sorted(properties)) or "none"
        raise ParameterRejectedError(
            f"deployment {ref!r} has no parameter {unknown[0]!r} "
            f"(it accepts: {accepted}); the run would crash at start",
            parameter=unknown[0],
            detail=f"unknown parameter(s): {', '.join(unknown)}",
        )


_VALIDATION_FIELD = re.compile(r"[Vv]alidation failed for field '([^']*)'")


def rejected_parameter(detail: Any) -> Optional[str]:
    """The parameter named in a server's parameter-validation error, if any."""
    match = _VALIDATION_FIELD.search(str(detail))
    return match.group(1) if match else None


def logs_filter_body(
    flow_run_id: uuid.UUID,
    after: Optional[dt.datetime] = None,
    limit: int = PAGE_LIMIT,
    offset: int = 0,
) -> Dict[str, Any]:
    """The ``POST /logs/filter`` body for a run's lines at or after ``after``, oldest first."""
    logs: Dict[str, Any] = {"flow_run_id": {"any_": [str(flow_run_id)]}}
    if after is not None:
        logs["timestamp"] = {"after_": after.isoformat()}
    body: Dict[str, Any] = {"logs": logs, "sort": "TIMESTAMP_ASC", "limit": limit}
    if offset:
        body["offset"] = offset
    return body


def flow_runs_filter(flow_run_ids: Iterable[uuid.UUID]) -> Dict[str, Any]:
    """The ``POST /flow_runs/filter`` body that reads these runs (at most :data:`PAGE_LIMIT`)."""
    ids = [str(run_id) for run_id in flow_run_ids]
    return {"flow_runs": {"id": {"any_": ids}}, "limit": PAGE_LIMIT}
