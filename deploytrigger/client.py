"""The blocking client: a facade of short methods over the transport, services and waits.

Thread-safe. The client builds its parts once, in ``__init__``: the settings,
the events listener, the poller it wakes, one transport and the services that
share them. The layers below it are private (``deploytrigger._handles``,
``_services``, ``_waits``, ``_http``...): docs/development.rst draws them.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Any,
    ContextManager,
    Generator,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Union,
)

from ._helpers.arguments import (
    PAGE_LIMIT,
    RunOptions,
    as_uuid,
    check_logs,
    check_progress,
    check_wait_arguments,
    unexpected_keywords,
)
from ._helpers.urls import redact_url
from ._http.transport import DEFAULT_POOL_SIZE, Transport
from ._services.deployments import DEFAULT_DEPLOYMENT_CACHE_TTL, Deployments
from ._services.parents import Parents
from ._services.payloads import RunRequest
from ._services.runs import Runs
from ._waits.engine import ALL_COMPLETED, DEFAULT_OUTAGE_TOLERANCE, Poller
from ._waits.events import EventsListener
from .exceptions import InvalidArgumentError
from .models import Deployment, Flow, FlowRun, LogRecord, State
from .options import ClientOptions, check_client_options
from .settings import Settings, resolve_settings, settings_options, warn_insecure_once

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._handles.batch import Call, DoneAndNotDone, RunRef
    from ._handles.handles import FlowRunHandle
    from ._results.results import Results

__all__ = ["Client"]


class Client:
    """A blocking, thread-safe client for the Prefect API.

    Args:
        api_url: the API's base URL (ending in ``/api``); else ``PREFECT_API_URL``,
            else the active Prefect profile.
        options: the keywords of :class:`~deploytrigger.ClientOptions`
            (credentials, TLS, retries, pool size, caches, time).

    Raises:
        ConfigurationError: no API URL is configured, or an option (from an
            argument or the environment) is unusable.
        InvalidArgumentTypeError: a keyword that is not an option.
    """

    def __init__(self, api_url: Optional[str] = None, **options: Unpack[ClientOptions]) -> None:
        unexpected_keywords(options, ("api_url", *ClientOptions.__annotations__), "Client")
        self.settings: Settings = resolve_settings(api_url, **settings_options(options))
        if self.settings.verify is False:
            warn_insecure_once()
        options = check_client_options(options)
        sleep = options.get("sleep", time.sleep)
        clock = options.get("clock", time.monotonic)
        self._events = _events_listener(self.settings, injected_sleep="sleep" in options)
        self._poller = Poller(
            sleep=sleep,
            clock=clock,
            outage_tolerance=options.get("outage_tolerance", DEFAULT_OUTAGE_TOLERANCE),
            wakeups=self._events,
            progress=self.settings.progress,
        )
        self._transport = Transport(
            self.settings,
            pool_size=options.get("pool_size", DEFAULT_POOL_SIZE),
            sleep=sleep,
            clock=clock,
            backoff=options.get("backoff"),
        )
        self._deployments = Deployments(
            self._transport,
            clock=clock,
            cache_ttl=options.get("deployment_cache_ttl", DEFAULT_DEPLOYMENT_CACHE_TTL),
        )
        self._parents = Parents(self._transport, self._deployments)
        result_reader = options.get("result_reader")

        def results() -> Results:  # on first use: a script that only triggers never loads it
            from ._results.results import Results

            return Results(self._transport, sleep=sleep, reader=result_reader)

        self._runs = Runs(self._transport, self._deployments, self._parents, self._poller, results)

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the connections and the events stream; the client cannot be used afterwards."""
        if self._events is not None:
            self._events.close()
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(api_url={redact_url(self.settings.api_url)!r})"

    # -- reading -----------------------------------------------------------------

    def read_deployment(self, deployment_id: Union[uuid.UUID, str]) -> Deployment:
        """Read a deployment by id (``DeploymentNotFoundError`` when none has it)."""
        return self._deployments.read(deployment_id)

    def read_deployment_by_name(self, name: str) -> Deployment:
        """Read a deployment by its ``"flow name/deployment name"`` (or id).

        Raises ``InvalidArgumentError`` for a name of another form and
        ``DeploymentNotFoundError`` when there is no such deployment.
        """
        return self._deployments.read_by_name(name)

    def read_deployments(
        self, flow_name: Optional[str] = None, limit: int = PAGE_LIMIT
    ) -> List[Deployment]:
        """Deployments sorted by name, of one flow or all, at most ``limit`` (1 to 200)."""
        return self._deployments.read_many(flow_name, limit)

    def read_flow(self, flow_id: Union[uuid.UUID, str]) -> Flow:
        """Read a flow by id (``NotFoundError`` when none has it)."""
        return self._deployments.read_flow(flow_id)

    def read_flow_run(self, flow_run_id: Union[uuid.UUID, str]) -> FlowRun:
        """Read a flow run by id (``FlowRunNotFoundError`` when none has it)."""
        return self._runs.read_flow_run(as_uuid(flow_run_id, "flow_run_id"))

    def read_flow_runs(self, flow_run_ids: Iterable[Union[uuid.UUID, str]]) -> List[FlowRun]:
        """Read many flow runs, one request per 200 ids: in the order given, each once.

        Ids the server does not know are left out of the answer. A server that
        answers such a request with 500 gets one request per run instead (see
        "Many runs" in the guides).
        """
        return self._runs.read_flow_runs([as_uuid(value, "flow_run_ids") for value in flow_run_ids])

    def read_flow_run_states(self, flow_run_id: Union[uuid.UUID, str]) -> List[State]:
        """Every state a run has been in, oldest first; empty for a run the server does not know."""
        return self._runs.read_flow_run_states(as_uuid(flow_run_id, "flow_run_id"))

    def read_result(self, flow_run: RunRef, *, allow_pickle: bool = False) -> Any:
        """The return value of a finished run, read where its flow persisted it.

        ``flow_run`` is a run, a handle or an id (a run not final is read again;
        nothing waits: :meth:`FlowRunHandle.read_result` does). JSON is decoded;
        pickles only with ``allow_pickle=True``, since unpickling runs code.
        Raises ``FlowRunFailedError`` for a run that did not complete and a
        ``ResultError`` naming the run and the fix otherwise (README, "Getting the result").
        """
        from ._handles.handles import FlowRunHandle  # not at import: a trigger never needs it

        if isinstance(flow_run, FlowRunHandle):
            flow_run = flow_run.flow_run
        target = flow_run if isinstance(flow_run, FlowRun) else as_uuid(flow_run, "flow_run")
        return self._runs.read_result(target, allow_pickle=allow_pickle)

    # -- logs ----------------------------------------------------------------------

    def read_logs(
        self,
        flow_run_id: Union[uuid.UUID, str],
        after: Optional[datetime] = None,
        limit: int = PAGE_LIMIT,
        *,
        offset: int = 0,
    ) -> List[LogRecord]:
        """Read one page of a run's log lines, oldest first (``POST /logs/filter``).

        ``after``: only lines logged at or after this time (a naive datetime is
        UTC); ``limit``: 1 to 200, the server's cap; ``offset``: lines to skip.
        :meth:`read_all_logs` reads every page.
        """
        return self._runs.read_logs(as_uuid(flow_run_id, "flow_run_id"), after, limit, offset)

    def read_all_logs(self, flow_run_id: Union[uuid.UUID, str]) -> List[LogRecord]:
        """Every line a run has logged so far, oldest first, each once (page by page)."""
        run = self.read_flow_run(flow_run_id)  # a clear error for an unknown run
        from ._waits import logs as _logs

        return _logs.read_all(self._runs, run.id)

    def follow_logs(
        self,
        flow_run_id: Union[uuid.UUID, str],
        poll_interval: float = 1,
        timeout: Optional[float] = None,
    ) -> Iterator[LogRecord]:
        """Yield a run's log lines as they arrive, until the run is final and its logs drained.

        Every line once, in timestamp order, none skipped. After the run is
        final, reading continues until no new line has come for a few seconds
        (Prefect sends logs in batches). See :meth:`watch` to follow state
        changes too. ``timeout``: seconds after which to stop even if the run
        is not final (None: until it is).
        """
        run_id = as_uuid(flow_run_id, "flow_run_id")
        wait_timeout = check_wait_arguments(timeout, poll_interval)
        from ._waits import logs as _logs

        return _logs.follow(
            self._runs, run_id, poll_interval=float(poll_interval), timeout=wait_timeout
        )

    def watch(
        self,
        flow_run: Union[FlowRun, uuid.UUID, str],
        *,
        poll_interval: float = 1,
        timeout: Optional[float] = None,
        logs: bool = True,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool = False,
    ) -> Generator[Union[FlowRun, LogRecord], None, None]:
        """Follow a run: yield the run at every poll and, with ``logs``, each new log line.

        Lines and state changes come in timestamp order; the final state comes
        once the run's lines have drained, among them by its timestamp. The
        cancel options are :meth:`run_deployment`'s: a run cancelled on timeout
        is yielded once more, and an interrupt the consuming loop hands back
        with ``.throw`` counts too.

        ``flow_run`` is a run or its id; ``timeout`` in seconds (None: until the
        run is final); ``poll_interval`` in seconds.
        """
        known = flow_run if isinstance(flow_run, FlowRun) else None
        run_id = known.id if known is not None else as_uuid(flow_run, "flow_run")
        wait_timeout = check_wait_arguments(timeout, poll_interval)
        from ._waits import logs as _logs

        return _logs.watch(
            self._runs,
            run_id,
            poll_interval=float(poll_interval),
            timeout=wait_timeout,
            logs=logs,
            known=known,
            cancel_on_timeout=cancel_on_timeout,
            cancel_on_interrupt=cancel_on_interrupt,
        )

    # -- creating, cancelling, waiting ------------------------------------------------

    def create_flow_run_from_deployment(
        self,
        deployment_id: Union[uuid.UUID, str],
        *,
        parent_task_run_id: Optional[Union[uuid.UUID, str]] = None,
        **options: Unpack[RunOptions],
    ) -> FlowRun:
        """Create a flow run of a deployment, scheduled now or at ``scheduled_time``.

        ``options`` are :meth:`run_deployment`'s (but ``as_subflow``). Parameters
        merge over the deployment's defaults and tags over its tags, on the
        server. Without an ``idempotency_key`` a fresh one is sent, so a retried
        request returns the run the first attempt created. No parent linking:
        pass ``parent_task_run_id`` to link explicitly.
        """
        if "as_subflow" in options:
            raise InvalidArgumentError(
                "create_flow_run_from_deployment links no parent: pass parent_task_run_id"
            )
        request = RunRequest.check(
            as_uuid(deployment_id, "deployment_id"),
            options,
            where="create_flow_run_from_deployment",
        )
        return self._runs.create_from_deployment(request, parent_task_run_id)

    def cancel_flow_run(
        self, flow_run_id: Union[uuid.UUID, str], message: Optional[str] = None
    ) -> bool:
        """Ask the server to cancel a run: it goes CANCELLING, then CANCELLED.

        A scheduled run becomes CANCELLED at once; a running one once its
        runner or worker has stopped it (a few seconds). The request is not
        forced, so the server refuses it for a run that is already final.

        Returns True when the server accepted the cancellation, False when it
        refused it. ``message`` is the state's ("Cancelled by deploytrigger" by default).
        """
        return self._runs.cancel_flow_run(as_uuid(flow_run_id, "flow_run_id"), message)

    def run_deployment(
        self,
        name: Union[str, uuid.UUID],
        parameters: Optional[Mapping[str, Any]] = None,
        scheduled_time: Optional[datetime] = None,
        flow_run_name: Optional[str] = None,
        timeout: Optional[float] = None,
        poll_interval: float = 5,
        tags: Optional[Iterable[str]] = None,
        idempotency_key: Optional[str] = None,
        work_queue_name: Optional[str] = None,
        as_subflow: bool = True,
        job_variables: Optional[Mapping[str, Any]] = None,
        *,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool = False,
        progress: Optional[bool] = None,
        logs: bool = False,
    ) -> FlowRun:
        """Create a flow run of a deployment and return it once final or when time runs out.

        Args:
            name: the deployment's id, or ``"flow name/deployment name"``.
            parameters: overrides merged over the deployment's default parameters.
            scheduled_time: when the run should start (naive: UTC); now by default.
            flow_run_name: a name for the run (the server invents one otherwise).
            timeout: seconds to wait for a final state. 0 returns the new run at
                once; None waits until the run is final. When time runs out the run
                is returned in whatever state it has (no exception).
            poll_interval: seconds between polls; 0 polls without pausing.
            tags: tags for the run, merged with the deployment's.
            idempotency_key: a key that makes repeated calls return the same run.
            work_queue_name: a work queue of the deployment's work pool.
            as_subflow: link the run to the current parent run, when there is one.
            job_variables: infrastructure overrides for this run.
            cancel_on_timeout: when a positive ``timeout`` runs out before the run
                is final, cancel it (see :meth:`cancel_flow_run`) and return it as
                read after the request (usually CANCELLING or CANCELLED). Off by
                default, as in Prefect: the run keeps going.
            cancel_on_interrupt: on ``KeyboardInterrupt`` (Ctrl-C) while waiting,
                cancel the run before the interrupt propagates.
            progress: show the run while waiting: True, False, or None for the
                client's ``progress`` setting, which by default shows a live view
                in a Jupyter kernel and nothing elsewhere (guide "Notebooks and
                progress"). It reads nothing more from the server.
            logs: also show the run's log lines as they arrive while waiting
                (in a notebook the cell's output, below the view; else stderr,
                above the progress line when there is one). The wait
                then reads the run's new lines at each poll, and returns once
                the run is final and its last lines have come (a few seconds).

        Returns the flow run as last read. Raises ``InvalidArgumentError`` for a
        malformed argument such as a negative timeout (nothing sent),
        ``DeploymentNotFoundError``, ``ParameterRejectedError``, or another
        ``DeployTriggerError`` for any other failure to create or read the run.
        """
        wait_timeout = check_wait_arguments(timeout, poll_interval)
        check_progress(progress)
        check_logs(logs)
        options = RunOptions(
            parameters=parameters,
            scheduled_time=scheduled_time,
            flow_run_name=flow_run_name,
            tags=tags,
            idempotency_key=idempotency_key,
            work_queue_name=work_queue_name,
            as_subflow=as_subflow,
            job_variables=job_variables,
        )
        run = self._runs.trigger(RunRequest.check(name, options))
        if wait_timeout == 0:
            return run
        return self._runs.wait(
            run,
            wait_timeout,
            poll_interval,
            cancel_on_timeout=cancel_on_timeout,
            cancel_on_interrupt=cancel_on_interrupt,
            progress=progress,
            logs=logs,
        )

    def wait_for_flow_run(
        self,
        flow_run_id: Union[uuid.UUID, str],
        timeout: Optional[float] = None,
        poll_interval: float = 5,
        *,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool = False,
        progress: Optional[bool] = None,
        logs: bool = False,
    ) -> FlowRun:
        """Poll a flow run until it is final or ``timeout`` seconds pass.

        Returns the run once final, or as last read when the timeout ran out.
        The cancel options, ``progress`` and ``logs`` are those of :meth:`run_deployment`.
        """
        wait_timeout = check_wait_arguments(timeout, poll_interval)
        return self._runs.wait(
            as_uuid(flow_run_id, "flow_run_id"),
            wait_timeout,
            poll_interval,
            cancel_on_timeout=cancel_on_timeout,
            cancel_on_interrupt=cancel_on_interrupt,
            progress=check_progress(progress),
            logs=check_logs(logs),
        )

    def flow_run(
        self,
        flow_name: str,
        *,
        name: Optional[str] = None,
        parameters: Optional[Mapping[str, Any]] = None,
        tags: Optional[Iterable[str]] = None,
    ) -> ContextManager[FlowRun]:
        """Track a block of code as a Running flow run, the parent of the runs it triggers.

        Gets or creates the flow ``flow_name``, creates a run of it in the Running
        state and makes it this thread's parent for the block (see
        :func:`~deploytrigger.parent_run`). When the block ends the run becomes
        Completed; Failed with the exception's message when the block raises
        (the exception propagates); Cancelled on ``KeyboardInterrupt``.

        ``flow_name`` is created when missing; ``name``, ``parameters`` and
        ``tags`` are recorded on the run. The ``with`` gives the run as created.
        Raises ``DeployTriggerError`` when the run cannot be created, or (after a
        block that succeeded) its final state cannot be set.
        """
        return self._parents.track(flow_name, name=name, parameters=parameters, tags=tags)

    # -- many runs -------------------------------------------------------------------

    def handle(
        self, flow_run: Union[FlowRun, uuid.UUID, str], poll_interval: float = 5
    ) -> FlowRunHandle:
        """A :class:`~deploytrigger.FlowRunHandle` for a run that exists already.

        Given an id, the run is read once (one request); given a run, nothing is
        sent. ``str(handle)`` is the id, so ``client.handle(str(handle))`` re-attaches.
        """
        check_wait_arguments(None, poll_interval)
        from ._handles.handles import FlowRunHandle

        run = flow_run if isinstance(flow_run, FlowRun) else self.read_flow_run(flow_run)
        return FlowRunHandle(self._runs, run, poll_interval=poll_interval)

    def submit(
        self,
        name: Union[str, uuid.UUID],
        *,
        poll_interval: float = 5,
        **options: Unpack[RunOptions],
    ) -> FlowRunHandle:
        """Create a flow run and return a handle to it at once, like ``Executor.submit``.

        ``options`` are :meth:`run_deployment`'s keywords but ``timeout`` and the
        cancel options; the run is created by the same code path, parent linking
        and idempotency included. ``poll_interval`` is the handle's default.
        """
        if "timeout" in options:
            raise InvalidArgumentError("submit returns at once: wait on the handle instead")
        check_wait_arguments(None, poll_interval)
        from ._handles.handles import FlowRunHandle

        run = self._runs.trigger(RunRequest.check(name, options, where="submit"))
        return FlowRunHandle(self._runs, run, poll_interval=poll_interval)

    def wait_all(
        self,
        runs: Iterable[RunRef],
        timeout: Optional[float] = None,
        poll_interval: float = 5,
        return_when: str = ALL_COMPLETED,
        *,
        progress: Optional[bool] = None,
    ) -> DoneAndNotDone:
        """Wait for many runs, like ``concurrent.futures.wait``, batching the polls.

        One poll is one ``POST /flow_runs/filter`` per 200 pending runs. Done
        callbacks of the handles fire from this loop, in this thread.

        ``runs`` are handles, runs or ids (ids get handles from the first poll);
        ``return_when`` is ``ALL_COMPLETED`` or ``FIRST_COMPLETED``. Returns
        ``(done, not_done)`` lists of handles, in the order given, duplicates
        removed: a timeout is not an error. Raises ``FlowRunNotFoundError`` for
        a run that does not exist. ``progress``: as for :meth:`run_deployment`
        (many runs show a progress bar and a table of runs).
        """
        wait_timeout = check_wait_arguments(timeout, poll_interval)
        from ._handles import batch

        return batch.wait_all(
            self._runs,
            runs,
            timeout=wait_timeout,
            poll_interval=poll_interval,
            return_when=return_when,
            progress=check_progress(progress),
        )

    def as_completed(
        self,
        runs: Iterable[RunRef],
        timeout: Optional[float] = None,
        poll_interval: float = 5,
        *,
        progress: Optional[bool] = None,
    ) -> Iterator[FlowRun]:
        """Yield each run once it is final, as ``concurrent.futures.as_completed`` does.

        Runs already final come first; runs seen final by the same poll come
        in the order they ended. Polls are batched as in :meth:`wait_all`. Raises
        ``FlowRunTimeoutError`` (``.not_done``) when ``timeout`` seconds pass
        with runs still not final, after yielding those that were. ``progress``:
        as for :meth:`wait_all`.
        """
        wait_timeout = check_wait_arguments(timeout, poll_interval)
        from ._handles import batch

        return batch.as_completed(
            self._runs,
            runs,
            timeout=wait_timeout,
            poll_interval=poll_interval,
            progress=check_progress(progress),
        )

    def run_many(
        self,
        calls: Iterable[Call],
        max_workers: int = 16,
        timeout: Optional[float] = None,
        poll_interval: float = 5,
        *,
        progress: Optional[bool] = None,
    ) -> List[FlowRun]:
        """Trigger many deployments from a thread pool, then wait for all of them.

        Each call is a deployment name, ``{"name": ..., **options}`` or
        ``(name, options)``, where options are :meth:`run_deployment`'s keywords
        except ``timeout``. Workers run under the caller's parent run, so runs
        link as if triggered from this thread. Keep ``max_workers`` at most the
        client's ``pool_size`` (32 by default) so every worker has a connection.

        Returns the runs in the order of ``calls``: final, or as last seen when
        ``timeout`` ran out (0 returns them as created). When calls fail, the
        first failure (in call order) is raised once every call has been tried;
        the runs the other calls created keep going. ``progress``: as for
        :meth:`wait_all`, while the runs are waited for.
        """
        wait_timeout = check_wait_arguments(timeout, poll_interval)
        progress = check_progress(progress)
        from ._handles import batch

        return batch.run_many(
            self._runs,
            self.submit,
            self._deployments.resolve,
            calls,
            max_workers=max_workers,
            timeout=wait_timeout,
            poll_interval=poll_interval,
            progress=progress,
        )


def _events_listener(settings: Settings, *, injected_sleep: bool) -> Optional[EventsListener]:
    """The client's events listener, or None for plain polling (``events="off"``).

    Under ``"auto"``, a client given its own ``sleep`` (a test's fake time)
    polls: a listener would pause its waits on real time. ``"on"`` listens anyway.
    Nothing connects, and websocket-client is not imported, until a wait watches a run.
    """
    if settings.events == "off" or (settings.events == "auto" and injected_sleep):
        return None
    return EventsListener(
        settings.api_url,
        token=settings.auth_string or settings.api_key,  # the auth message's token
        verify=settings.verify,
        timeout=settings.request_timeout,
        mode=settings.events,
    )
