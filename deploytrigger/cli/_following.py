"""Following runs for ``wait`` and ``run --watch``: many runs at once, one run's lines.

Over the public API only: ``Client.as_completed`` (from a worker thread when a
live line must keep ticking), ``Client.watch`` without its logs, so that the
final state shows the moment the library sees it, and ``Client.read_logs``
for the lines, read after each poll and drained fast once the run is final.
"""

from __future__ import annotations

import argparse
import queue
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Set, Tuple, Union

from .. import Client, FlowRun, FlowRunHandle, LogRecord
from ._output import Output, log_line, state_line

DRAIN_QUIET = 3.0
"""Seconds without a new log line after which ``run --watch`` takes a final run's logs as
drained and exits (Prefect's processes send their lines every 2 s)."""

DRAIN_EVERY = 0.5
"""Seconds between two reads of a final run's log lines while they drain."""

DRAIN_LIMIT = 30.0
"""Seconds ``run --watch`` drains a final run's logs at most, for a run that logs on and on."""

LOG_LOOKBACK = 5.0
"""Seconds each read of new log lines reaches back before the newest seen, for lines that
reached the server late (they are printed once: lines are told apart by id)."""

LIVE_REFRESH = 1.0
"""Seconds between two redraws of ``wait``'s live line on a terminal (the elapsed time ticks)."""


def handles_for(
    client: Client, run_ids: List[uuid.UUID], poll_interval: float
) -> List[FlowRunHandle]:
    """One handle per run, read in batches of 200; a run the server does not know is an error."""
    known: Dict[uuid.UUID, Any] = {run.id: run for run in client.read_flow_runs(run_ids)}
    return [
        client.handle(known.get(run_id, run_id), poll_interval=poll_interval)
        for run_id in run_ids  # an unknown id is read alone, to raise FlowRunNotFoundError
    ]


def as_completed_ticking(
    client: Client,
    handles: List[FlowRunHandle],
    args: argparse.Namespace,
    tick: Optional[Callable[[], None]],
) -> Iterator[FlowRun]:
    """``client.as_completed``; with ``tick``, from a worker thread, calling ``tick`` every
    :data:`LIVE_REFRESH` seconds in this thread while no run ends (the live line's clock)."""
    completed = client.as_completed(handles, timeout=args.timeout, poll_interval=args.poll_interval)
    if tick is None:
        yield from completed
        return
    results: queue.Queue[Tuple[str, Any]] = queue.Queue()

    def work() -> None:
        try:
            for run in completed:
                results.put(("run", run))
        except BaseException as exc:  # handed to the main thread, raised there
            results.put(("error", exc))
        else:
            results.put(("end", None))

    threading.Thread(target=work, name="deploytrigger-cli-wait", daemon=True).start()
    while True:
        try:
            kind, value = results.get(timeout=LIVE_REFRESH)
        except queue.Empty:
            tick()
            continue
        if kind == "run":
            yield value
        elif kind == "error":
            raise value
        else:
            return


def watch_run(
    client: Client,
    run: FlowRun,
    args: argparse.Namespace,
    out: Output,
    state: Optional[Dict[str, Any]] = None,
) -> FlowRun:
    """``run --watch``: state changes and log lines as they come; the run as last read
    (also kept as ``state["run"]``, for a Ctrl-C).

    The states come from ``client.watch`` without its logs, so the final state
    is known the moment the library sees it; the lines are read after each of
    its polls, and once the run is final every :data:`DRAIN_EVERY` seconds
    until none has come for :data:`DRAIN_QUIET` seconds. So the command exits
    a few seconds after the run ends whatever ``--poll-interval`` is. The final
    state is printed last, after the drained lines: Prefect sends a run's
    lines in batches, so its last ones reach the server after its final state.
    """
    out.stream(state_line(run))
    shown: Optional[Tuple[Any, ...]] = state_key(run)
    lines = NewLogLines(client, run.id)
    latest = run
    states = watch_states(client, run, args)
    try:
        for polled in states:
            if isinstance(polled, LogRecord):  # not with logs=False
                continue
            latest = polled
            if state is not None:
                state["run"] = polled
            new = lines.read()
            if polled.is_final():
                for record in new:
                    out.stream(log_line(record))
                break
            key = state_key(polled)
            stamp = polled.state.timestamp if polled.state is not None else None
            before = (
                new if key == shown or stamp is None else [r for r in new if r.timestamp <= stamp]
            )
            for record in before:
                out.stream(log_line(record))
            if key != shown:
                shown = key
                out.stream(state_line(polled))
            for record in new[len(before) :]:
                out.stream(log_line(record))
        if latest.is_final():
            _drain(lines, out)
            if state_key(latest) != shown:
                out.stream(state_line(latest))
    except KeyboardInterrupt as interrupt:
        # Handed back to the library's loop so that it can cancel the run; raised again.
        states.throw(interrupt)
        raise
    return latest


def watch_states(
    client: Client, run: FlowRun, args: argparse.Namespace
) -> Generator[Union[FlowRun, LogRecord], None, None]:
    """``client.watch`` without its logs, as the command's options say (poll, timeout, cancel)."""
    return client.watch(
        run,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        logs=False,
        cancel_on_timeout=args.cancel_on_timeout,
        cancel_on_interrupt=args.cancel_on_interrupt,
    )


def state_key(run: FlowRun) -> Optional[Tuple[Any, ...]]:
    return None if run.state is None else (run.state.type, run.state.name)


def _drain(lines: NewLogLines, out: Output) -> None:
    """Print a final run's last lines until none has come for :data:`DRAIN_QUIET` seconds."""
    started = quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < DRAIN_QUIET and time.monotonic() - started < DRAIN_LIMIT:
        time.sleep(DRAIN_EVERY)
        new = lines.read()
        for record in new:
            out.stream(log_line(record))
        if new:
            quiet_since = time.monotonic()


class NewLogLines:
    """A run's log lines not printed yet, oldest first, read page by page from a little
    before the newest line seen (:data:`LOG_LOOKBACK`)."""

    PAGE = 200

    def __init__(self, client: Client, run_id: uuid.UUID) -> None:
        self._client = client
        self._run_id = run_id
        self._seen: Set[uuid.UUID] = set()
        self._newest: Optional[datetime] = None

    def read(self) -> List[LogRecord]:
        after = None if self._newest is None else self._newest - timedelta(seconds=LOG_LOOKBACK)
        new: List[LogRecord] = []
        offset = 0
        while True:
            page = self._client.read_logs(self._run_id, after, self.PAGE, offset=offset)
            for record in page:
                if record.id not in self._seen:
                    self._seen.add(record.id)
                    new.append(record)
            if len(page) < self.PAGE:
                break
            offset += len(page)
        new.sort(key=lambda record: record.timestamp)
        if new and (self._newest is None or new[-1].timestamp > self._newest):
            self._newest = new[-1].timestamp
        return new
