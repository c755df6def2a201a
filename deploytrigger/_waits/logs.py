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

import uuid
from datetime import datetime, timedelta
from typing import (
    Any,
    Callable,
    Dict,
    Generator,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

from .._helpers.arguments import PAGE_LIMIT
from ..models import FlowRun, LogRecord
from .run_reader import RunReader, cancel_if_interrupted, cancel_if_timed_out

DEFAULT_LOOKBACK = 5.0
"""Seconds each read looks back for lines that reached the server late."""

DEFAULT_DRAIN = 4.0
"""Seconds to keep reading after a run is final (Prefect sends logs every 2 s)."""


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
        limit: int = PAGE_LIMIT,
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


def read_all(reader: RunReader, flow_run_id: uuid.UUID) -> List[LogRecord]:
    """Every line the run has logged so far, oldest first, page by page."""
    return LogCursor().read_new(_page_reader(reader, flow_run_id))


def _page_reader(reader: RunReader, flow_run_id: uuid.UUID, deadline: Any = None) -> ReadPage:
    def read_page(after: Optional[datetime], limit: int, offset: int) -> List[LogRecord]:
        return reader.read_logs(flow_run_id, after, limit, offset, deadline=deadline)

    return read_page


class _Round(NamedTuple):
    """What one poll of a followed run saw."""

    run: FlowRun
    lines: List[LogRecord]
    done: bool


def watch(
    reader: RunReader,
    flow_run_id: uuid.UUID,
    *,
    poll_interval: float = 1.0,
    timeout: Optional[float] = None,
    logs: bool = True,
    drain: float = DEFAULT_DRAIN,
    lookback: float = DEFAULT_LOOKBACK,
    known: Optional[FlowRun] = None,
    cancel_on_timeout: bool = False,
    cancel_on_interrupt: bool = False,
) -> Generator[Event, None, None]:
    """Follow a run: yield the run at each poll and each new log line, in order.

    Every poll yields the run as read (compare states to see changes) and, with
    ``logs``, the lines that are new since the last poll. Lines and a changed
    state are yielded in timestamp order. A final state is yielded once the
    run's logs have drained (no new line for ``drain`` seconds), among the
    lines by timestamp: Prefect ships a run's last lines after its final state,
    stamped before it, so they come first. The polls
    are the poll engine's (``waiting.Poller``): a server outage is waited out.

    Args:
        reader: reads the run and its lines.
        flow_run_id: the run to follow.
        poll_interval: seconds between polls.
        timeout: seconds after which to stop even if the run is not final
            (None: until it is final).
        logs: also read the run's log lines.
        drain: seconds to keep reading lines once the run is final.
        lookback: see :class:`LogCursor`.
        known: the run as last seen, if any (what a ``KeyboardInterrupt``
            before the first poll cancels).
        cancel_on_timeout: cancel the run if still not final when ``timeout``
            runs out, and yield it once more as read after the request.
        cancel_on_interrupt: on ``KeyboardInterrupt``, cancel the run before
            the interrupt propagates.

    Yields:
        :class:`~deploytrigger.models.FlowRun` and :class:`LogRecord` objects.

    Raises:
        FlowRunNotFoundError: no flow run has that id.
        DeployTriggerError: a read failed (past the outage tolerance).
    """
    poller = reader.poller
    deadline = poller.deadline(timeout)
    cursor = LogCursor(lookback=lookback)
    read_page = _page_reader(reader, flow_run_id, deadline)
    final_since: List[float] = []  # when the run was first seen final, or last gave lines

    def fetch() -> _Round:
        run = reader.read_flow_run(flow_run_id, deadline=deadline)
        lines = cursor.read_new(read_page) if logs else []
        if not (logs and run.is_final()):
            return _Round(run, lines, run.is_final())
        now = poller.clock()
        if not final_since or lines:
            final_since[:] = [now]
        return _Round(run, lines, now - final_since[0] >= drain)

    last_state: Optional[Tuple[Any, ...]] = None
    seen: Optional[_Round] = None
    held: List[LogRecord] = []  # lines read once the run was final, until they drain
    try:
        for polled in poller.rounds(
            fetch,
            lambda polled: polled.done,
            deadline=deadline,
            interval=poll_interval,
            runs=lambda: () if final_since else (flow_run_id,),
        ):
            if polled is seen:
                continue  # the server did not answer: nothing new to show
            seen = polled
            if logs and polled.run.is_final():
                held.extend(polled.lines)  # shipped after the final state: wait for them all
                continue
            state = polled.run.state
            state_key = None if state is None else (state.type, state.name)
            yield from _in_order(polled.run, polled.lines, state_key != last_state)
            last_state = state_key
    except KeyboardInterrupt:
        cancel_if_interrupted(reader, seen.run if seen is not None else known, cancel_on_interrupt)
        raise
    if seen is not None and logs and seen.run.is_final():
        # In time order: the final state among the lines that came after it was set.
        held.sort(key=lambda line: line.timestamp)
        yield from _in_order(seen.run, held, True)
    elif seen is not None and not seen.run.is_final():
        cancelled = cancel_if_timed_out(reader, seen.run, timeout, cancel_on_timeout)
        if cancelled is not seen.run:
            yield cancelled


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
    reader: RunReader,
    flow_run_id: uuid.UUID,
    *,
    poll_interval: float = 1.0,
    timeout: Optional[float] = None,
    drain: float = DEFAULT_DRAIN,
) -> Iterator[LogRecord]:
    """Yield a run's log lines as they arrive until it is final and drained (see :func:`watch`)."""
    for event in watch(
        reader, flow_run_id, poll_interval=poll_interval, timeout=timeout, drain=drain
    ):
        if isinstance(event, LogRecord):
            yield event


def wait_with_logs(
    reader: RunReader,
    flow_run_id: uuid.UUID,
    on_run: Callable[[FlowRun], None],
    on_line: Callable[[LogRecord], None],
    *,
    poll_interval: float,
    timeout: Optional[float],
    known: Optional[FlowRun] = None,
    cancel_on_timeout: bool = False,
    cancel_on_interrupt: bool = False,
) -> FlowRun:
    """A wait with ``logs=True``: :func:`watch`, handing each read of the run to ``on_run``
    and each new line to ``on_line``; the run as last read.

    It returns once the run is final and its last lines have come (:data:`DEFAULT_DRAIN`),
    or when ``timeout`` runs out; the cancel options are the wait's.
    """
    last = known
    for event in watch(
        reader,
        flow_run_id,
        poll_interval=poll_interval,
        timeout=timeout,
        known=known,
        cancel_on_timeout=cancel_on_timeout,
        cancel_on_interrupt=cancel_on_interrupt,
    ):
        if isinstance(event, LogRecord):
            on_line(event)
        else:
            last = event
            on_run(event)
    assert last is not None, "watch yields the run at least once"
    return last
