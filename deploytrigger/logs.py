"""A flow run's log lines: reading them, and following a run while it goes.

The server keeps each line the run's processes sent (``POST /logs/filter``).
Following is polling: every ``poll_interval`` seconds read what is new since
the last read, page by page, and yield it in timestamp order. Lines are
deduplicated by their id, because several can share a timestamp and because
each read looks back a little (``lookback`` seconds) to catch lines that
reached the server late (Prefect sends them in batches, from more than one
process). Once the run is final, reading goes on until no new line has come
for ``drain`` seconds, so the run's last lines are not cut off.

Nothing here sleeps for real in tests: ``sleep`` and ``clock`` are injected.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)

from .models import FlowRun, _optional, _require, parse_datetime, parse_uuid
from .payloads import SERVER_PAGE_LIMIT, as_uuid
from .waiting import Deadline

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "LOGS_PAGE",
    "LogCursor",
    "LogRecord",
    "follow",
    "logs_filter_body",
    "watch",
]

LOGS_PAGE = SERVER_PAGE_LIMIT
"""The most log lines the server returns per request (its default limit)."""

DEFAULT_LOOKBACK = 5.0
"""Seconds each read looks back for lines that reached the server late."""

DEFAULT_DRAIN = 4.0
"""Seconds to keep reading after a run is final (Prefect sends logs every 2 s)."""


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


def logs_filter_body(
    flow_run_id: uuid.UUID,
    after: Optional[datetime] = None,
    limit: int = LOGS_PAGE,
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


ReadPage = Callable[[Optional[datetime], int, int], List[LogRecord]]
"""Reads one page: ``(after, limit, offset) -> lines``, oldest first."""


class LogCursor:
    """Where a reader is in a run's log: which lines it has already returned.

    Args:
        after: return only lines at or after this time (None: from the start).
        lookback: seconds each read reaches back before the newest line seen,
            for lines that reached the server late.
        limit: lines per page (the server returns at most 200).
    """

    def __init__(
        self,
        after: Optional[datetime] = None,
        *,
        lookback: float = DEFAULT_LOOKBACK,
        limit: int = LOGS_PAGE,
    ) -> None:
        self._start = after
        self._newest: Optional[datetime] = None
        self._lookback = timedelta(seconds=lookback)
        self._limit = limit
        self._seen: Dict[uuid.UUID, datetime] = {}

    def read_new(self, read_page: ReadPage) -> List[LogRecord]:
        """Every line not returned before, oldest first, reading as many pages as it takes."""
        after = self._query_start()
        offset = 0
        new: List[LogRecord] = []
        while True:
            page = read_page(after, self._limit, offset)
            for record in page:
                if record.id in self._seen:
                    continue
                if self._start is not None and record.timestamp < self._start:
                    continue
                self._seen[record.id] = record.timestamp
                new.append(record)
                if self._newest is None or record.timestamp > self._newest:
                    self._newest = record.timestamp
            if len(page) < self._limit:
                break
            last = page[-1].timestamp
            if after is None or last > after:
                after, offset = last, 0  # the lines at `last` come again: deduplicated
            else:
                offset += len(page)  # a whole page shares one timestamp: skip past it
        self._forget_old()
        new.sort(key=lambda record: record.timestamp)
        return new

    def _query_start(self) -> Optional[datetime]:
        if self._newest is None:
            return self._start
        start = self._newest - self._lookback
        return start if self._start is None else max(start, self._start)

    def _forget_old(self) -> None:
        """Drop ids older than any future read can return, so memory stays bounded."""
        horizon = self._query_start()
        if horizon is not None:
            self._seen = {key: ts for key, ts in self._seen.items() if ts >= horizon}


Event = Union[FlowRun, LogRecord]


def watch(
    client: Client,
    flow_run_id: Union[uuid.UUID, str],
    *,
    poll_interval: float = 1.0,
    timeout: Optional[float] = None,
    logs: bool = True,
    drain: float = DEFAULT_DRAIN,
    lookback: float = DEFAULT_LOOKBACK,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Event]:
    """Follow a run: yield the run at each poll and each new log line, in order.

    Every poll yields the run as read (compare states to see changes) and, with
    ``logs``, the lines that are new since the last poll. Lines and a changed
    state are yielded in timestamp order. A final state is yielded last, after
    the run's logs have drained (no new line for ``drain`` seconds).

    Args:
        client: the client to read with.
        flow_run_id: the run to follow.
        poll_interval: seconds between polls.
        timeout: seconds after which to stop even if the run is not final
            (None: until it is final).
        logs: also read the run's log lines.
        drain: seconds to keep reading lines once the run is final.
        lookback: see :class:`LogCursor`.
        sleep: how to wait between polls.
        clock: a monotonic clock in seconds.

    Yields:
        :class:`~deploytrigger.models.FlowRun` and :class:`LogRecord` objects.

    Raises:
        FlowRunNotFoundError: no flow run has that id.
        DeployTriggerError: a read failed.
    """
    run_id = as_uuid(flow_run_id, "flow_run_id")
    deadline = Deadline(timeout, clock)
    cursor = LogCursor(lookback=lookback)
    last_state: Optional[Tuple[Any, ...]] = None
    final_since: Optional[float] = None

    def read_page(after: Optional[datetime], limit: int, offset: int) -> List[LogRecord]:
        return client.read_logs(run_id, after=after, limit=limit, offset=offset)

    while True:
        run = client.read_flow_run(run_id)
        lines = cursor.read_new(read_page) if logs else []
        state_key = None if run.state is None else (run.state.type, run.state.name)
        changed = state_key != last_state
        if run.is_final() and logs:
            # Hold the final state back until the last lines have come in.
            if final_since is None or lines:
                final_since = clock()
            done = clock() - final_since >= drain or deadline.passed()
            yield from lines
            if done:
                yield run
                return
        else:
            yield from _in_order(run, lines, changed)
            if run.is_final() or deadline.passed():
                return
        last_state = state_key
        remaining = deadline.remaining()
        sleep(poll_interval if remaining is None else min(poll_interval, remaining))


def _in_order(run: FlowRun, lines: List[LogRecord], changed: bool) -> Iterator[Event]:
    """The run and the lines; a changed state placed among the lines by its timestamp."""
    stamp = run.state.timestamp if run.state is not None else None
    if not changed or stamp is None:
        yield run
        yield from lines
        return
    before = [line for line in lines if line.timestamp <= stamp]
    yield from before
    yield run
    yield from lines[len(before) :]


def follow(
    client: Client,
    flow_run_id: Union[uuid.UUID, str],
    *,
    poll_interval: float = 1.0,
    timeout: Optional[float] = None,
    drain: float = DEFAULT_DRAIN,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[LogRecord]:
    """Yield a run's log lines as they arrive until it is final and drained (see :func:`watch`)."""
    for event in watch(
        client,
        flow_run_id,
        poll_interval=poll_interval,
        timeout=timeout,
        drain=drain,
        sleep=sleep,
        clock=clock,
    ):
        if isinstance(event, LogRecord):
            yield event
