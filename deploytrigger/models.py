"""Plain, frozen dataclasses of what the Prefect API returns: runs, states, deployments.

Each ``from_json`` parses one API object. Datetimes are timezone-aware
(the server's own format is read with ``datetime.fromisoformat``, any other
ISO 8601 form with dateutil); ids are :class:`uuid.UUID`. The object as the server
sent it stays available as ``raw`` (left out of ``repr`` and comparisons).
A server answer missing a required field raises
:class:`~deploytrigger.exceptions.InvalidResponseError`.
"""

from __future__ import annotations

import enum
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, TypeVar

from ._helpers import display
from ._helpers.urls import ui_url, without_credentials
from .exceptions import FlowRunFailedError, InvalidResponseError

__all__ = [
    "FINAL_STATES",
    "Deployment",
    "Flow",
    "FlowRun",
    "LogRecord",
    "State",
    "StateType",
    "parse_datetime",
    "parse_uuid",
]

T = TypeVar("T")


class StateType(str, enum.Enum):
    """The type of a run's state; compares equal to its name as a string."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"

    def __str__(self) -> str:
        return self.value


FINAL_STATES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)
"""State types after which a run never changes again."""


_SERVER_DATETIME = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6}|\.\d{3})?(?:[+-]\d\d:\d\d)?", re.ASCII
)
"""What the Prefect server sends (after a trailing ``Z`` became ``+00:00``): a form
that ``datetime.fromisoformat`` reads the same on every Python from 3.8 on."""


def parse_datetime(value: Any) -> Optional[datetime]:
    """Parse an ISO 8601 string into an aware datetime (naive input is taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = _fromisoformat(value) or _isoparse(value)
    else:
        raise InvalidResponseError(f"the server sent {value!r} where a datetime was expected")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _fromisoformat(value: str) -> Optional[datetime]:
    """``value`` read by the stdlib when it has the server's form, else None (~10x faster)."""
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    if not _SERVER_DATETIME.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None  # e.g. 24:00:00, which dateutil reads as the next midnight


def _isoparse(value: str) -> datetime:
    from dateutil import parser as date_parser  # only for forms the server does not send

    try:
        return date_parser.isoparse(value)
    except (ValueError, OverflowError) as exc:
        raise InvalidResponseError(f"the server sent an invalid datetime {value!r}") from exc


def parse_uuid(value: Any) -> uuid.UUID:
    """Parse a UUID the server sent."""
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError) as exc:
        raise InvalidResponseError(f"the server sent {value!r} where an id was expected") from exc


def _optional(parse: Callable[[Any], T], value: Any) -> Optional[T]:
    return None if value is None else parse(value)


def _require(data: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(data, Mapping):
        raise InvalidResponseError(
            f"the server sent {type(data).__name__} where a {what} was expected"
        )
    try:
        return data[key]
    except KeyError:
        raise InvalidResponseError(f"the server sent a {what} without {key!r}") from None


def _mapping(value: Any, key: str, what: str) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidResponseError(f"the server sent a {what} whose {key!r} is not an object")
    return dict(value)


def _strings(value: Any, key: str, what: str) -> Tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise InvalidResponseError(f"the server sent a {what} whose {key!r} is not a list")
    return tuple(str(v) for v in value)


def _seconds(value: Any, key: str, what: str) -> Optional[timedelta]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidResponseError(f"the server sent a {what} whose {key!r} is not a number")
    return timedelta(seconds=value)


def _count(value: Any, key: str, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidResponseError(f"the server sent a {what} whose {key!r} is not a whole number")
    return value


def _text(value: Any) -> Optional[str]:
    return None if value is None else str(value)


@dataclass(frozen=True)
class State:
    """A run's state: its type, display name, message and when it was entered.

    Attributes:
        scheduled_time: when a Scheduled (or Late, or AwaitingRetry) run is due
            to start, from ``state_details``; None for other states.
        pause_timeout: when a Paused run gives up waiting, from ``state_details``.
        state_details: the server's ``state_details`` object as sent (empty when none).
    """

    type: StateType
    name: str
    message: Optional[str] = None
    timestamp: Optional[datetime] = None
    scheduled_time: Optional[datetime] = None
    pause_timeout: Optional[datetime] = None
    state_details: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        """Parse a state object from the API."""
        raw_type = _require(data, "type", "state")
        try:
            state_type = StateType(raw_type)
        except ValueError:
            raise InvalidResponseError(
                f"the server sent an unknown state type {raw_type!r}"
            ) from None
        details = _mapping(data.get("state_details"), "state_details", "state")
        return cls(
            type=state_type,
            name=str(data.get("name") or state_type.value.title()),
            message=data.get("message"),
            timestamp=parse_datetime(data.get("timestamp")),
            scheduled_time=parse_datetime(details.get("scheduled_time")),
            pause_timeout=parse_datetime(details.get("pause_timeout")),
            state_details=details,
            raw=dict(data),
        )

    def is_final(self) -> bool:
        """True for COMPLETED, FAILED, CANCELLED and CRASHED: the run will not change again."""
        return self.type in FINAL_STATES

    def is_completed(self) -> bool:
        """True when the run finished successfully."""
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        """True when the run failed (its code raised, or a retry budget ran out)."""
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        """True when the run's infrastructure failed before the run could finish."""
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        """True when the run was cancelled."""
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        """True while a cancellation is under way."""
        return self.type is StateType.CANCELLING

    def is_scheduled(self) -> bool:
        """True while the run waits for its scheduled time."""
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        """True while the run's infrastructure is being prepared."""
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        """True while the run executes."""
        return self.type is StateType.RUNNING

    def is_paused(self) -> bool:
        """True while the run is paused."""
        return self.type is StateType.PAUSED

    def __str__(self) -> str:
        return self.name if not self.message else f"{self.name}: {self.message}"


@dataclass(frozen=True)
class FlowRun:
    """A flow run as the API last described it.

    Fields the server did not send keep their defaults (a Prefect 2 server
    sends no ``labels``); everything else it sent stays in ``raw``.

    Attributes:
        run_count: how many times the run has started (retries count again).
        total_run_time: how long it has run in all, over every start.
        estimated_run_time: ``total_run_time`` plus the current run so far.
        work_pool_name: the work pool its deployment sends it to, if any.
        labels: the server's labels (Prefect 3), e.g. ``prefect.flow.id``.
        flow_version: the version of the flow's code that ran.
        deployment_version: the deployment's version when the run was created.
        infrastructure_pid: what the worker or runner reports as the process.
        created: when the server created the run.
        next_scheduled_start_time: when a Scheduled run is due.
    """

    id: uuid.UUID
    name: str
    flow_id: uuid.UUID
    deployment_id: Optional[uuid.UUID]
    state: Optional[State]
    parameters: Dict[str, Any] = field(default_factory=dict)
    tags: Tuple[str, ...] = ()
    idempotency_key: Optional[str] = None
    parent_task_run_id: Optional[uuid.UUID] = None
    work_queue_name: Optional[str] = None
    job_variables: Dict[str, Any] = field(default_factory=dict)
    expected_start_time: Optional[datetime] = None
    start_time: Optional[datetime] = None
    end_time: Optional[datetime] = None
    run_count: int = 0
    total_run_time: Optional[timedelta] = None
    estimated_run_time: Optional[timedelta] = None
    work_pool_name: Optional[str] = None
    labels: Dict[str, Any] = field(default_factory=dict)
    flow_version: Optional[str] = None
    deployment_version: Optional[str] = None
    infrastructure_pid: Optional[str] = None
    created: Optional[datetime] = None
    next_scheduled_start_time: Optional[datetime] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    api_url: Optional[str] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], api_url: Optional[str] = None) -> FlowRun:
        """Parse a flow run object from the API.

        Args:
            data: the run as the server sent it.
            api_url: the API it came from (credentials are dropped); it gives
                :attr:`ui_url`. The client passes its own.
        """
        state_data = data.get("state") if isinstance(data, Mapping) else None
        return cls(
            id=parse_uuid(_require(data, "id", "flow run")),
            name=str(data.get("name") or ""),
            flow_id=parse_uuid(_require(data, "flow_id", "flow run")),
            deployment_id=_optional(parse_uuid, data.get("deployment_id")),
            state=None if state_data is None else State.from_json(state_data),
            parameters=_mapping(data.get("parameters"), "parameters", "flow run"),
            tags=_strings(data.get("tags"), "tags", "flow run"),
            idempotency_key=data.get("idempotency_key"),
            parent_task_run_id=_optional(parse_uuid, data.get("parent_task_run_id")),
            work_queue_name=data.get("work_queue_name"),
            job_variables=_mapping(data.get("job_variables"), "job_variables", "flow run"),
            expected_start_time=parse_datetime(data.get("expected_start_time")),
            start_time=parse_datetime(data.get("start_time")),
            end_time=parse_datetime(data.get("end_time")),
            run_count=_count(data.get("run_count"), "run_count", "flow run"),
            total_run_time=_seconds(data.get("total_run_time"), "total_run_time", "flow run"),
            estimated_run_time=_seconds(
                data.get("estimated_run_time"), "estimated_run_time", "flow run"
            ),
            work_pool_name=_text(data.get("work_pool_name")),
            labels=_mapping(data.get("labels"), "labels", "flow run"),
            flow_version=_text(data.get("flow_version")),
            deployment_version=_text(data.get("deployment_version")),
            infrastructure_pid=_text(data.get("infrastructure_pid")),
            created=parse_datetime(data.get("created")),
            next_scheduled_start_time=parse_datetime(data.get("next_scheduled_start_time")),
            raw=dict(data),
            api_url=None if api_url is None else without_credentials(api_url),
        )

    def is_final(self) -> bool:
        """True when the run has a final state."""
        return self.state is not None and self.state.is_final()

    def raise_for_state(self) -> FlowRun:
        """Raise if the run ended badly, like ``requests.Response.raise_for_status()``.

        Returns:
            The run itself when it is COMPLETED or not final yet (a run still
            going after a timeout is not a failure: check :meth:`is_final`), so
            calls chain: ``run = client.run_deployment(...).raise_for_state()``.

        Raises:
            FlowRunFailedError: the run is FAILED, CRASHED or CANCELLED; it
                carries the run (``.flow_run``) and its state with the server's message.
        """
        state = self.state
        if state is not None and state.is_final() and not state.is_completed():
            raise FlowRunFailedError(
                f"flow run {self.name!r} ({self.id}) ended {state.type.value}"
                + (f": {state.message}" if state.message else ""),
                flow_run=self,
            )
        return self

    @property
    def ui_url(self) -> Optional[str]:
        """The run's page in the Prefect UI, when known from the API URL it was read from.

        ``http://host:port/api`` gives ``http://host:port/runs/flow-run/<id>``;
        Prefect Cloud's ``https://api.prefect.cloud/api/accounts/A/workspaces/W``
        gives ``https://app.prefect.cloud/account/A/workspace/W/runs/flow-run/<id>``.
        None for a run parsed without an API URL or one the UI cannot be derived from.
        """
        return ui_url(self.api_url, self.id)

    @property
    def scheduled_time(self) -> Optional[datetime]:
        """When the run is due to start while it is Scheduled (its state's ``scheduled_time``)."""
        return None if self.state is None else self.state.scheduled_time

    @property
    def duration(self) -> Optional[timedelta]:
        """How long the run ran (start to end), once both are known."""
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time

    def summary(self) -> str:
        """A few lines for a person: name, id, state, duration, the state's message, UI link."""
        return display.flow_run_summary(self)

    def __repr__(self) -> str:
        return display.flow_run_repr(self)

    def _repr_html_(self) -> str:
        """A small HTML table for Jupyter: state in colour, times, parameters, UI link."""
        return display.flow_run_html(self)


@dataclass(frozen=True)
class Deployment:
    """A deployment: what a flow run is created from."""

    id: uuid.UUID
    name: str
    flow_id: uuid.UUID
    version: Optional[str] = None
    parameters: Dict[str, Any] = field(default_factory=dict)
    tags: Tuple[str, ...] = ()
    work_pool_name: Optional[str] = None
    work_queue_name: Optional[str] = None
    enforce_parameter_schema: bool = False
    parameter_openapi_schema: Dict[str, Any] = field(default_factory=dict, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deployment:
        """Parse a deployment object from the API."""
        return cls(
            id=parse_uuid(_require(data, "id", "deployment")),
            name=str(_require(data, "name", "deployment")),
            flow_id=parse_uuid(_require(data, "flow_id", "deployment")),
            version=data.get("version"),
            parameters=_mapping(data.get("parameters"), "parameters", "deployment"),
            tags=_strings(data.get("tags"), "tags", "deployment"),
            work_pool_name=data.get("work_pool_name"),
            work_queue_name=data.get("work_queue_name"),
            enforce_parameter_schema=bool(data.get("enforce_parameter_schema")),
            parameter_openapi_schema=_mapping(
                data.get("parameter_openapi_schema"), "parameter_openapi_schema", "deployment"
            ),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Flow:
    """A flow: the code that deployments run."""

    id: uuid.UUID
    name: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Flow:
        """Parse a flow object from the API."""
        return cls(
            id=parse_uuid(_require(data, "id", "flow")),
            name=str(_require(data, "name", "flow")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class LogRecord:
    """One log line of a run, as the server stores it.

    Attributes:
        id: the line's id (unique; lines can share a timestamp).
        timestamp: when it was logged (timezone-aware).
        level: the numeric level (20 is INFO).
        message: the text.
        name: the logger's name, e.g. ``prefect.flow_runs``.
        flow_run_id: the run it belongs to.
        task_run_id: the task run that logged it, if any.
    """

    id: uuid.UUID
    timestamp: datetime
    level: int
    message: str
    name: str = ""
    flow_run_id: Optional[uuid.UUID] = None
    task_run_id: Optional[uuid.UUID] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogRecord:
        """Parse one log object from the API."""
        timestamp = parse_datetime(_require(data, "timestamp", "log"))
        assert timestamp is not None
        level = data.get("level")
        return cls(
            id=parse_uuid(_require(data, "id", "log")),
            timestamp=timestamp,
            level=level if isinstance(level, int) else logging.INFO,
            message=str(data.get("message") or ""),
            name=str(data.get("name") or ""),
            flow_run_id=_optional(parse_uuid, data.get("flow_run_id")),
            task_run_id=_optional(parse_uuid, data.get("task_run_id")),
            raw=dict(data),
        )

    @property
    def level_name(self) -> str:
        """The level by name: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``, ``CRITICAL``."""
        name = logging.getLevelName(self.level)
        return name if isinstance(name, str) and not name.startswith("Level ") else str(self.level)

    def __str__(self) -> str:
        when = self.timestamp.isoformat(timespec="milliseconds")
        return f"{when} {self.level_name:<8} {self.message}"
