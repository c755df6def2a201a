"""Run handles: a flow run that was started, to be watched like a ``concurrent.futures.Future``.

:meth:`Client.submit <deploytrigger.Client.submit>` creates a run and returns a
:class:`FlowRunHandle` at once. The handle remembers the run as last seen;
:meth:`~FlowRunHandle.done` answers from that without a request, while
:meth:`~FlowRunHandle.refresh`, :meth:`~FlowRunHandle.wait` and
:meth:`~FlowRunHandle.result` ask the server. Waiting for many handles at once
costs one request per 200 runs per poll: see
:meth:`Client.wait_all <deploytrigger.Client.wait_all>`.

A handle is safe to share between threads. Done-callbacks run in whichever
thread first sees the run final: the batch poller of a ``wait``/``wait_all``/
``as_completed``, a ``refresh``, or the caller of :meth:`~FlowRunHandle.add_done_callback`
when the run is already final.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence

from .._helpers.arguments import check_logs, check_progress, check_wait_arguments
from .._helpers.deadline import Deadline
from .._waits.run_reader import RunReader
from ..exceptions import FlowRunFailedError, FlowRunNotFoundError, FlowRunTimeoutError
from ..models import FlowRun, State, StateType

logger = logging.getLogger("deploytrigger")

FAILED_STATES = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
"""Final states that :meth:`FlowRunHandle.result` raises for."""

_CANCEL_STATES = frozenset({StateType.CANCELLING, StateType.CANCELLED})

DoneCallback = Callable[["FlowRunHandle"], object]


class FlowRunHandle:
    """A started flow run, watched like a ``concurrent.futures.Future``.

    Made by :meth:`Client.submit <deploytrigger.Client.submit>` and
    :meth:`Client.handle <deploytrigger.Client.handle>` (for a run that exists
    already), or by :meth:`Client.wait_all <deploytrigger.Client.wait_all>`
    for runs given by id.

    Args:
        reader: what reads and cancels the run: the client's reader, or any
            object of the :class:`~deploytrigger._waits.run_reader.RunReader` shape.
        flow_run: the run as last seen.
        poll_interval: default seconds between polls for :meth:`wait` and :meth:`result`.
    """

    def __init__(self, reader: RunReader, flow_run: FlowRun, *, poll_interval: float = 5) -> None:
        self._reader = reader
        self._run = flow_run
        self._id = flow_run.id
        self.poll_interval = float(poll_interval)
        self._lock = threading.Lock()
        self._callbacks: List[DoneCallback] = []

    # -- what was last seen (no request) -------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """The flow run's id."""
        return self._id

    @property
    def flow_run(self) -> FlowRun:
        """The run as last seen; call :meth:`refresh` to read it again."""
        with self._lock:
            return self._run

    @property
    def state(self) -> Optional[State]:
        """The last seen state."""
        return self.flow_run.state

    def done(self) -> bool:
        """True when the last seen state is final (COMPLETED, FAILED, CANCELLED, CRASHED).

        Sends no request: a run seen running stays "not done" until a
        ``refresh``, ``wait`` or batch wait sees it again.
        """
        return self.flow_run.is_final()

    def cancelled(self) -> bool:
        """True when the last seen state is CANCELLED."""
        state = self.state
        return state is not None and state.is_cancelled()

    def running(self) -> bool:
        """True when the last seen state is RUNNING."""
        state = self.state
        return state is not None and state.is_running()

    def __repr__(self) -> str:
        state = self.state
        return f"<FlowRunHandle {self._id} {state.name if state else 'no state'}>"

    def __str__(self) -> str:
        """The run's id: store it, and ``client.handle(that)`` re-attaches later."""
        return str(self._id)

    # -- asking the server -----------------------------------------------------------------

    def refresh(self) -> FlowRun:
        """Read the run again (one request) and return it.

        Raises:
            FlowRunNotFoundError: the run was deleted.
            DeployTriggerError: the run could not be read.
        """
        run = self._reader.read_flow_run(self._id)
        self._observe(run)
        return self.flow_run

    def wait(
        self,
        timeout: Optional[float] = None,
        poll_interval: Optional[float] = None,
        *,
        progress: Optional[bool] = None,
        logs: bool = False,
    ) -> FlowRun:
        """Poll until the run is final or ``timeout`` seconds pass, like ``run_deployment``.

        A server outage is waited out as every wait does (``outage_tolerance``).

        Args:
            timeout: seconds to wait; None waits until the run is final; 0 reads once.
            poll_interval: seconds between polls; the handle's default when None.
            progress: show the wait's progress (True), or not (False); None: the
                client's ``progress`` setting (a live view in a Jupyter kernel).
            logs: also show the run's log lines as they arrive, as
                ``run_deployment(logs=True)`` does (a run seen final already
                returns at once: :meth:`Client.read_all_logs
                <deploytrigger.Client.read_all_logs>` reads its lines).

        Returns:
            The run once final, or as last seen when the timeout ran out (no exception).

        Raises:
            InvalidArgumentError: a negative timeout or poll interval.
            DeployTriggerError: the run could not be read.
        """
        interval = self.poll_interval if poll_interval is None else poll_interval
        wait_timeout = check_wait_arguments(timeout, interval)
        check_progress(progress)
        check_logs(logs)
        if self.done():
            return self.flow_run
        from .._progress.view import open_progress

        poller = self._reader.poller
        deadline = poller.deadline(wait_timeout)

        def seen(run: FlowRun) -> None:
            self._observe(run)
            shown.show((self.flow_run,))

        def fetch() -> FlowRun:
            seen(read_existing(self._reader, [self._id], deadline)[self._id])
            return self.flow_run

        with open_progress(progress, poller) as shown:
            if logs:
                from .._waits.logs import wait_with_logs

                shown.show((self.flow_run,))  # the view first, the run's lines below it
                wait_with_logs(
                    self._reader,
                    self._id,
                    seen,
                    shown.log,
                    poll_interval=float(interval),
                    timeout=wait_timeout,
                    known=self.flow_run,
                )
                return self.flow_run
            return poller.poll(
                fetch,
                FlowRun.is_final,
                deadline=deadline,
                interval=float(interval),
                known=self.flow_run,
                runs=lambda: () if self.done() else (self._id,),
            )

    def result(
        self,
        timeout: Optional[float] = None,
        *,
        poll_interval: Optional[float] = None,
        raise_on_failure: bool = True,
        progress: Optional[bool] = None,
        logs: bool = False,
    ) -> FlowRun:
        """Wait for the final run; raise if it did not finish in time or did not succeed.

        This returns the finished run record; :meth:`read_result` returns the
        flow's return value (when the flow persists it).

        Args:
            timeout: seconds to wait; None waits until the run is final.
            poll_interval: seconds between polls; the handle's default when None.
            raise_on_failure: raise for FAILED, CRASHED and CANCELLED runs.
            progress, logs: as for :meth:`wait`.

        Returns:
            The run in its final state.

        Raises:
            FlowRunTimeoutError: the run was not final after ``timeout`` seconds;
                it carries the run id and its last state.
            FlowRunFailedError: the run ended FAILED, CRASHED or CANCELLED
                (with ``raise_on_failure``).
            DeployTriggerError: the run could not be read.
        """
        run = self.wait(timeout, poll_interval, progress=progress, logs=logs)
        if not run.is_final():
            raise FlowRunTimeoutError(
                f"flow run {run.id} ({run.name}) is still {_state_name(run)} "
                f"after {timeout or 0:g}s",
                not_done=[run],
                timeout=timeout,
            )
        if raise_on_failure and run.state is not None and run.state.type in FAILED_STATES:
            raise FlowRunFailedError(
                f"flow run {run.id} ({run.name}) ended {run.state}", flow_run=run
            )
        return run

    def read_result(
        self,
        timeout: Optional[float] = None,
        *,
        poll_interval: Optional[float] = None,
        allow_pickle: bool = False,
    ) -> Any:
        """Wait for the run to be final, then return the flow's persisted return value.

        See :meth:`Client.read_result <deploytrigger.Client.read_result>` for
        what can be read and how.

        Args:
            timeout: seconds to wait; None waits until the run is final.
            poll_interval: seconds between polls; the handle's default when None.
            allow_pickle: load a pickled result (unpickling runs code: only
                from storage you trust).

        Raises:
            FlowRunTimeoutError: the run was not final after ``timeout`` seconds.
            FlowRunFailedError: the run ended FAILED, CRASHED or CANCELLED.
            ResultError: the value cannot be read (not persisted, expired, not
                reachable from here, pickled, undecodable); the message says why.
        """
        run = self.result(timeout, poll_interval=poll_interval, raise_on_failure=False)
        return self._reader.read_result(run, allow_pickle=allow_pickle)

    def cancel(self, message: Optional[str] = None) -> bool:
        """Ask the server to cancel the run.

        A running run goes CANCELLING, then CANCELLED once its worker or runner
        stops it; a run that has not started yet goes CANCELLED at once.

        Args:
            message: a reason to record on the run's state.

        Returns:
            True when the server took the cancellation; False when the run was
            already final (seen here or on the server).

        Raises:
            FlowRunNotFoundError: the run was deleted.
            DeployTriggerError: the request failed.
        """
        if self.done():
            return False
        accepted = self._reader.cancel_flow_run(self._id, message=message)
        state = self.refresh().state
        # The server REJECTs cancelling a run that has not started ("no
        # infrastructure to terminate") and moves it straight to CANCELLED.
        return accepted or (state is not None and state.type in _CANCEL_STATES)

    def add_done_callback(self, fn: DoneCallback) -> None:
        """Call ``fn(handle)`` once the run is seen final; at once if it already is.

        Exceptions from ``fn`` are logged and ignored, as ``concurrent.futures`` does.
        """
        with self._lock:
            if not self._run.is_final():
                self._callbacks.append(fn)
                return
        _invoke(fn, self)

    # -- used by the pollers -------------------------------------------------------------

    def _observe(self, run: FlowRun) -> bool:
        """Record a newer read of the run; fire the callbacks when it turns final.

        A read older than what is known (two threads polling) is ignored, and a
        final run is never replaced: final states do not change.

        Returns:
            True when this read made the run final here.
        """
        with self._lock:
            current = self._run
            if current.is_final() or _older(run, current):
                return False
            if run.state != current.state:
                logger.info("flow run %s (%s) is %s", run.id, run.name, run.state)
            self._run = run
            if not run.is_final():
                return False
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            _invoke(fn, self)
        return True


def read_existing(
    reader: RunReader, flow_run_ids: Sequence[uuid.UUID], deadline: Optional[Deadline] = None
) -> Dict[uuid.UUID, FlowRun]:
    """The runs by id, read in batches of 200.

    Raises:
        FlowRunNotFoundError: some of them do not exist (named in the message).
    """
    runs = {run.id: run for run in reader.read_flow_runs(flow_run_ids, deadline=deadline)}
    missing = [run_id for run_id in flow_run_ids if run_id not in runs]
    if missing:
        raise FlowRunNotFoundError(
            f"flow run {missing[0]} was not found"
            + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""),
            flow_run_id=str(missing[0]),
        )
    return runs


def _older(new: FlowRun, current: FlowRun) -> bool:
    new_at = new.state.timestamp if new.state else None
    current_at = current.state.timestamp if current.state else None
    return new_at is not None and current_at is not None and new_at < current_at


def _state_name(run: FlowRun) -> str:
    return run.state.name if run.state else "without a state"


def _invoke(fn: DoneCallback, handle: FlowRunHandle) -> None:
    try:
        fn(handle)
    except Exception:
        logger.exception("done-callback %r of flow run %s raised", fn, handle.id)
