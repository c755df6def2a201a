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

from .. import APIError, Client, FlowRun, FlowRunHandle, LogRecord, State
from .._helpers.display import log_line
from ._output import Output, state_line

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
    """``run --watch``: each state the run goes through and its log lines, in time order;
    the run as last read (also kept as ``state["run"]``, for a Ctrl-C).

    The states come from ``client.watch`` without its logs, so the final state
    is known the moment the library sees it; a poll that shows a new state
    reads the run's state history (:class:`NewStates`), so that a state
    entered and left between two polls is shown too. The lines are read after
    each poll, and once the run is final every :data:`DRAIN_EVERY` seconds
    until none has come for :data:`DRAIN_QUIET` seconds. So the command exits
    a few seconds after the run ends whatever ``--poll-interval`` is. Prefect
    sends a run's lines in batches, so its last ones reach the server after its
    final state: the final state waits for them and takes its place among them
    by its timestamp (a line stamped after it comes after it), so the output
    never goes back in time.
    """
    out.stream(state_line(run))
    states = NewStates(client, run)
    lines = NewLogLines(client, run.id)
    latest = run
    polls = watch_states(client, run, args)
    try:
        for polled in runs_seen(polls, state):
            latest = polled
            new = lines.read()
            states.add(polled)
            _print_in_order(out, new, states, final=polled.is_final())
            if polled.is_final():
                break
        if latest.is_final():
            _drain(lines, out, states)
            for entered in states.take():
                out.stream(state_line(entered))
    except KeyboardInterrupt as interrupt:
        # Handed back to the library's loop so that it can cancel the run; raised again.
        polls.throw(interrupt)
        raise
    return latest


def _print_in_order(out: Output, new: List[LogRecord], states: NewStates, final: bool) -> None:
    """The lines, each after the states entered before it; then, unless the run is final,
    the states left (a final run's wait for its drained lines: some are stamped before it)."""
    for record in new:
        for entered in states.take(before=record.timestamp):
            out.stream(state_line(entered))
        out.stream(log_line(record))
    if not final:
        for entered in states.take():
            out.stream(state_line(entered))


def runs_seen(
    polls: Iterator[Union[FlowRun, LogRecord]], state: Optional[Dict[str, Any]]
) -> Iterator[FlowRun]:
    """The runs ``polls`` yields (no log lines: it is read without them), each kept as
    ``state["run"]`` for a Ctrl-C."""
    for polled in polls:
        if isinstance(polled, LogRecord):
            continue
        if state is not None:
            state["run"] = polled
        yield polled


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


def _drain(lines: NewLogLines, out: Output, states: NewStates) -> None:
    """Print a final run's last lines until none has come for :data:`DRAIN_QUIET` seconds,
    each after the states entered before it (the final state among them)."""
    started = quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < DRAIN_QUIET and time.monotonic() - started < DRAIN_LIMIT:
        time.sleep(DRAIN_EVERY)
        new = lines.read()
        _print_in_order(out, new, states, final=True)
        if new:
            quiet_since = time.monotonic()


class NewStates:
    """A run's states not printed yet, oldest first.

    A poll that shows a state not seen before reads the run's state history
    (``Client.read_flow_run_states``) and queues the states entered since the
    newest one seen, up to the polled one: a state entered and left between
    two polls is shown too. A server that cannot answer the history (an
    ``APIError``) gives the polled state alone.
    """

    def __init__(self, client: Client, run: FlowRun) -> None:
        self._client = client
        self._run_id = run.id
        self._seen: Set[Tuple[Any, ...]] = set()  # _identities of the states queued or shown
        self._newest: Optional[datetime] = None
        self._queued: List[State] = []
        if run.state is not None:  # printed already
            self._see(run.state)

    def add(self, polled: FlowRun) -> None:
        """Queue the states the run went through up to ``polled``'s, if that one is new."""
        current = polled.state
        if current is None or self._known(current):
            return
        try:
            history = self._client.read_flow_run_states(self._run_id)
        except APIError:  # a server without the route: the polled state alone
            history = []
        for entered in history:
            if self._known(entered) or set(_identities(entered)) & set(_identities(current)):
                continue
            if _between(entered.timestamp, self._newest, current.timestamp):
                self._see(entered)
                self._queued.append(entered)
        self._see(current)
        self._queued.append(current)

    def take(self, before: Optional[datetime] = None) -> List[State]:
        """The queued states, taken off the queue; with ``before``, only those entered
        before it (a state with no timestamp waits for the end)."""
        count = len(self._queued)
        if before is not None:
            count = next(
                (
                    index
                    for index, queued in enumerate(self._queued)
                    if queued.timestamp is None or queued.timestamp >= before
                ),
                count,
            )
        taken, self._queued = self._queued[:count], self._queued[count:]
        return taken

    def _known(self, state: State) -> bool:
        return any(key in self._seen for key in _identities(state))

    def _see(self, entered: State) -> None:
        self._seen.update(_identities(entered))
        stamp = entered.timestamp
        if stamp is not None and (self._newest is None or stamp > self._newest):
            self._newest = stamp


def _between(
    stamp: Optional[datetime], since: Optional[datetime], until: Optional[datetime]
) -> bool:
    """Whether a state of the history is not older than the newest seen nor newer than the
    polled one (the next poll shows that one)."""
    if stamp is None:
        return True
    return (since is None or stamp >= since) and (until is None or stamp <= until)


def _identities(state: State) -> List[Tuple[Any, ...]]:
    """What tells a state apart: its id (the run's ``state`` and its history share it)
    and what it shows, for a server that leaves the id out of one of them."""
    keys: List[Tuple[Any, ...]] = [("shown", state.type, state.name, state.timestamp)]
    if state.raw.get("id"):
        keys.append(("id", state.raw["id"]))
    return keys


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
