"""Flow runs: trigger a deployment, read, wait for and cancel runs, read their results.

:class:`Runs` holds the logic of ``run_deployment`` (resolve the deployment,
check the parameters, link to the parent, create the run exactly once, wait)
and implements :class:`~deploytrigger._waits.run_reader.RunReader`, the protocol that
handles, batches and log following read through. Results are read by
``results.py``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timezone
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

from .._helpers import tracing
from .._helpers.arguments import (
    PAGE_LIMIT,
    as_uuid,
    describe_ref,
    page_limit,
)
from .._helpers.deadline import Deadline
from .._http.errors import refine
from .._http.transport import Transport
from .._parents.context import current_parent
from .._waits.engine import NOTHING, Poller
from .._waits.run_reader import cancel_if_interrupted, cancel_if_timed_out
from ..exceptions import (
    BadRequestError,
    DeploymentNotFoundError,
    DeployTriggerError,
    FlowRunNotFoundError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
    ParameterRejectedError,
    ServerError,
)
from ..models import FlowRun, LogRecord, State
from .deployments import Deployments, json_list, read_or_not_found
from .parents import Parents
from .payloads import (
    RunRequest,
    check_parameter_names,
    flow_runs_filter,
    logs_filter_body,
    rejected_parameter,
)

if TYPE_CHECKING:
    from .._results.results import Results


logger = logging.getLogger("deploytrigger")

BATCH_FAILURE_STATUS = 500
"""The status of a batch read the server cannot answer, while it reads each run by id."""


def cancel_state(message: Optional[str]) -> Dict[str, Any]:
    """The ``set_state`` body that asks for a cancellation (not forced)."""
    return {
        "state": {
            "type": "CANCELLING",
            "name": "Cancelling",
            "message": message or "Cancelled by deploytrigger",
        },
        "force": False,
    }


DEPLOYMENT_NAME = "prefect.deployment.name"
"""Span attributes of ours, in Prefect's ``prefect.`` namespace (its engine's spans use
``prefect.run.id``); OpenTelemetry has no conventions for workflow runs."""
DEPLOYMENT_ID = "prefect.deployment.id"
FLOW_RUN_ID = "prefect.flow_run.id"
FLOW_RUN_NAME = "prefect.flow_run.name"
FLOW_RUN_STATE = "prefect.flow_run.state"


def run_attributes(run: FlowRun) -> Dict[str, Any]:
    """The span attributes that describe ``run``: its id, name, deployment and state type."""
    return {
        FLOW_RUN_ID: str(run.id),
        FLOW_RUN_NAME: run.name,
        DEPLOYMENT_ID: None if run.deployment_id is None else str(run.deployment_id),
        FLOW_RUN_STATE: None if run.state is None else str(run.state.type.value),
    }


def _final(run: Any) -> bool:
    return isinstance(run, FlowRun) and run.is_final()


class Runs:
    """Creates, reads, waits for and cancels flow runs.

    Args:
        transport: sends the requests.
        deployments: resolves deployment names (with its cache).
        parents: links new runs to the current parent run.
        poller: the poll engine of every wait.
        results: makes the reader of persisted results, on first use.
    """

    def __init__(
        self,
        transport: Transport,
        deployments: Deployments,
        parents: Parents,
        poller: Poller,
        results: Callable[[], Results],
    ) -> None:
        self._transport = transport
        self._deployments = deployments
        self._parents = parents
        self.poller = poller
        self._make_results = results
        self._results: Optional[Results] = None
        self._fallback_lock = threading.Lock()
        self._fallback_warned = False  # the one-by-one reads were announced

    # -- reading ----------------------------------------------------------------------

    def read_flow_run(
        self, flow_run_id: uuid.UUID, *, deadline: Optional[Deadline] = None
    ) -> FlowRun:
        """One run, by id."""
        data = read_or_not_found(
            self._transport,
            f"/flow_runs/{flow_run_id}",
            "flow run",
            str(flow_run_id),
            FlowRunNotFoundError,
            deadline=deadline,
            flow_run_id=str(flow_run_id),
        )
        return FlowRun.from_json(data, api_url=self._transport.api_url)

    def read_flow_runs(
        self, flow_run_ids: Sequence[uuid.UUID], *, deadline: Optional[Deadline] = None
    ) -> List[FlowRun]:
        """Many runs, one ``POST /flow_runs/filter`` per 200; unknown ids are left out.

        A page the server answers with 500 is read one run at a time instead
        (Prefect 3.8 fails to filter a run with an integer parameter beyond 64
        bits, yet reads it by id); the first time, a warning says so.
        """
        unique = list(dict.fromkeys(flow_run_ids))
        found: Dict[uuid.UUID, FlowRun] = {}
        for start in range(0, len(unique), PAGE_LIMIT):
            for run in self._read_page(unique[start : start + PAGE_LIMIT], deadline):
                found[run.id] = run
        return [found[run_id] for run_id in unique if run_id in found]

    def _read_page(
        self, run_ids: Sequence[uuid.UUID], deadline: Optional[Deadline]
    ) -> List[FlowRun]:
        """At most a page of runs in one ``POST /flow_runs/filter``, or one by one after a 500."""
        body = flow_runs_filter(run_ids)
        try:
            data = self._transport.request(
                "POST", "/flow_runs/filter", body=body, deadline=deadline
            )
        except ServerError as exc:
            if exc.status_code != BATCH_FAILURE_STATUS:
                raise  # 502-504: an outage or a proxy, which one-by-one reads would not outlive
            return self._read_one_by_one(run_ids, exc, deadline)
        if not isinstance(data, list):
            raise InvalidResponseError(
                f"POST /flow_runs/filter answered {type(data).__name__}, not a list"
            )
        return [FlowRun.from_json(item, api_url=self._transport.api_url) for item in data]

    def _read_one_by_one(
        self, run_ids: Sequence[uuid.UUID], batch_error: ServerError, deadline: Optional[Deadline]
    ) -> List[FlowRun]:
        """The runs of a page the server could not filter, each by ``GET /flow_runs/{id}``.

        Raises:
            ServerError: ``batch_error``, when a run cannot be read by id either.
        """
        with self._fallback_lock:
            first, self._fallback_warned = not self._fallback_warned, True
        if first:
            logger.warning(
                "the server could not answer a batch read of flow runs (%s); reading such "
                "runs one by one with GET /flow_runs/{id} (logged once per client)",
                batch_error,
            )
        runs = []
        for run_id in run_ids:
            try:
                runs.append(self.read_flow_run(run_id, deadline=deadline))
            except FlowRunNotFoundError:
                continue  # as the batch read, leave out the runs the server does not know
            except DeployTriggerError as exc:
                raise batch_error from exc
        return runs

    def read_flow_run_states(
        self, flow_run_id: uuid.UUID, *, deadline: Optional[Deadline] = None
    ) -> List[State]:
        """Every state the run has been in, oldest first (``GET /flow_run_states/``)."""
        path = f"/flow_run_states/?flow_run_id={flow_run_id}"
        data = self._transport.request("GET", path, deadline=deadline)
        states = [State.from_json(item) for item in json_list(data, "states")]
        if all(state.timestamp is not None for state in states):  # the server sorts them too
            states.sort(key=lambda state: state.timestamp)  # type: ignore[arg-type,return-value]
        return states

    def read_logs(
        self,
        flow_run_id: uuid.UUID,
        after: Optional[datetime] = None,
        limit: int = PAGE_LIMIT,
        offset: int = 0,
        *,
        deadline: Optional[Deadline] = None,
    ) -> List[LogRecord]:
        """One page of a run's log lines at or after ``after``, oldest first."""
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"offset must be a whole number >= 0, not {offset!r}")
        if after is not None and after.tzinfo is None:
            after = after.replace(tzinfo=timezone.utc)
        body = logs_filter_body(flow_run_id, after, page_limit(limit), offset)
        data = self._transport.request("POST", "/logs/filter", body=body, deadline=deadline)
        return [LogRecord.from_json(item) for item in json_list(data, "logs")]

    def read_result(
        self, flow_run: Union[FlowRun, uuid.UUID], *, allow_pickle: bool = False
    ) -> Any:
        """A final run's return value; a run given not final yet is read again first."""
        run = flow_run
        if not isinstance(run, FlowRun) or not run.is_final():
            run = self.read_flow_run(run.id if isinstance(run, FlowRun) else run)
        if self._results is None:
            self._results = self._make_results()
        return self._results.read(run, allow_pickle=allow_pickle)

    # -- creating -----------------------------------------------------------------------

    def create(self, deployment_id: uuid.UUID, body: Dict[str, Any], ref: str) -> FlowRun:
        """Create a run of a deployment from a checked body (``payloads.flow_run_payload``).

        Without an ``idempotency_key`` a fresh one is sent, so a retried
        request returns the run the first attempt created.
        """
        body.setdefault("idempotency_key", str(uuid.uuid4()))
        path = f"/deployments/{deployment_id}/create_flow_run"
        try:
            data = self._transport.request("POST", path, body=body)
        except NotFoundError as exc:
            raise refine(
                exc, DeploymentNotFoundError, f"deployment {ref!r} was not found", deployment=ref
            ) from None
        except BadRequestError as exc:
            parameter = rejected_parameter(exc.detail)
            if parameter is None:
                raise
            raise refine(
                exc,
                ParameterRejectedError,
                f"deployment {ref!r} rejected the parameters: {exc.detail}",
                parameter=parameter,
            ) from None
        run = FlowRun.from_json(data, api_url=self._transport.api_url)
        logger.info("created flow run %s (%s) of deployment %s", run.id, run.name, ref)
        return run

    def create_from_deployment(
        self, request: RunRequest, parent_task_run_id: Optional[Union[uuid.UUID, str]]
    ) -> FlowRun:
        """Create the run ``request`` describes (its deployment given by id), unlinked.

        Linked to no parent, it carries the caller's current span's trace label.
        """
        deployment_id = as_uuid(request.ref, "deployment_id")
        body = dict(request.body)
        if parent_task_run_id is not None:
            body["parent_task_run_id"] = str(as_uuid(parent_task_run_id, "parent_task_run_id"))
        body.update(self._parents.trace_labels(tracing.current_traceparent()))
        return self.create(deployment_id, body, str(deployment_id))

    def trigger(self, request: RunRequest) -> FlowRun:
        """Create the run that ``request`` describes, linked to the current parent.

        A cached deployment is read again when the server no longer knows it
        (deleted, maybe re-created under the same name) or when it lacks a
        parameter (the flow gained one). The run joins the caller's trace
        (``_helpers/tracing.py``): under a parent it gets the parent's trace
        label, else the caller's current span's; the whole trigger is our
        ``deploytrigger.create_flow_run`` span.
        """
        caller = tracing.current_traceparent()  # before our own span becomes the current one
        shown = describe_ref(request.ref)
        by_id = isinstance(request.ref, uuid.UUID)
        given = {DEPLOYMENT_ID: shown} if by_id else {DEPLOYMENT_NAME: shown}
        with tracing.client_span(tracing.CREATE_SPAN, given) as span:
            run = self._trigger(request, caller)
            tracing.set_attributes(span, run_attributes(run))
        return run

    def _trigger(self, request: RunRequest, caller: Optional[str]) -> FlowRun:
        ref, body = request.ref, dict(request.body)
        shown = describe_ref(ref)
        deployment, cached = self._deployments.resolve(ref)
        stale = False  # each second try runs outside the ``except``: no chained first error
        try:
            check_parameter_names(deployment, body["parameters"], shown)
        except ParameterRejectedError:
            if not cached:
                raise
            stale = True
        if stale:
            deployment, cached = self._deployments.resolve(ref, refresh=True)
            check_parameter_names(deployment, body["parameters"], shown)
        parent = current_parent()
        link = None
        parent_labels: Optional[Mapping[str, Any]] = None
        if parent is not None and request.as_subflow:
            link = self._parents.link(parent, deployment, ref, body["parameters"])
            body["parent_task_run_id"] = str(link.task_run_id)
            parent_labels = link.parent_labels
        elif parent is not None:  # unlinked: its labels only if known without a request
            parent_labels = parent.labels
        body.update(self._parents.trace_labels(tracing.child_traceparent(parent_labels, caller)))
        gone = False
        try:
            run = self.create(deployment.id, body, shown)
        except DeploymentNotFoundError:
            if not cached:
                raise
            gone = True
        if gone:
            deployment, _ = self._deployments.resolve(ref, refresh=True)
            run = self.create(deployment.id, body, shown)
        # A reused idempotency_key returns the run created before, linked elsewhere.
        self._parents.settle(None if link is None else link.task_run_id, run)
        return run

    # -- waiting and cancelling ------------------------------------------------------------

    def wait(
        self,
        run: Union[FlowRun, uuid.UUID],
        timeout: Optional[float],
        poll_interval: float,
        *,
        cancel_on_timeout: bool = False,
        cancel_on_interrupt: bool = False,
        progress: Optional[bool] = None,
        logs: bool = False,
    ) -> FlowRun:
        """Poll a run until it is final or ``timeout`` seconds pass (None: until final).

        ``timeout`` and ``poll_interval`` come checked by the client
        (``check_wait_arguments``). A run given as a :class:`FlowRun` is what
        the wait falls back on if the server cannot answer its first poll. See
        ``Client.run_deployment`` for the cancel options, ``progress`` and
        ``logs``. The wait is our ``deploytrigger.wait`` span when the caller traces.
        """
        from .._progress.view import open_progress  # on a wait: a trigger never loads it

        known: Union[FlowRun, Any] = run if isinstance(run, FlowRun) else NOTHING
        run_id = run.id if isinstance(run, FlowRun) else as_uuid(run, "flow_run_id")
        latest: List[Any] = [known]
        deadline = self.poller.deadline(timeout)

        def seen(fresh: FlowRun) -> None:
            previous = latest[0]
            if not isinstance(previous, FlowRun) or previous.state != fresh.state:
                logger.info("flow run %s (%s) is %s", fresh.id, fresh.name, fresh.state)
            latest[0] = fresh
            shown.show((fresh,))

        def fetch() -> FlowRun:
            fresh = self.read_flow_run(run_id, deadline=deadline)
            seen(fresh)
            return fresh

        span_attributes = {FLOW_RUN_ID: str(run_id)}
        with tracing.client_span(tracing.WAIT_SPAN, span_attributes) as span, open_progress(
            progress, self.poller, cancels_on_interrupt=cancel_on_interrupt
        ) as shown:
            if logs:
                from .._waits.logs import wait_with_logs

                if isinstance(known, FlowRun):
                    shown.show((known,))  # the view first, the run's lines below it
                settled = wait_with_logs(
                    self,
                    run_id,
                    seen,
                    shown.log,
                    poll_interval=float(poll_interval),
                    timeout=timeout,
                    known=known if isinstance(known, FlowRun) else None,
                    cancel_on_timeout=cancel_on_timeout,
                    cancel_on_interrupt=cancel_on_interrupt,
                )
            else:
                try:
                    found = self.poller.poll(
                        fetch,
                        FlowRun.is_final,
                        deadline=deadline,
                        interval=float(poll_interval),
                        known=known,
                        runs=lambda: () if _final(latest[0]) else (run_id,),
                    )
                except KeyboardInterrupt:
                    cancel_if_interrupted(self, latest[0], cancel_on_interrupt)
                    raise
                settled = cancel_if_timed_out(self, found, timeout, cancel_on_timeout)
                if settled is not found:  # cancelled: show the run as read after
                    shown.show((settled,))
            tracing.set_attributes(span, run_attributes(settled))
        return settled

    def cancel_flow_run(self, flow_run_id: uuid.UUID, message: Optional[str] = None) -> bool:
        """Ask the server to cancel a run; True when it accepted (``Client.cancel_flow_run``)."""
        path = f"/flow_runs/{flow_run_id}/set_state"
        try:
            data = self._transport.request("POST", path, body=cancel_state(message))
        except NotFoundError as exc:
            raise refine(
                exc,
                FlowRunNotFoundError,
                f"flow run {str(flow_run_id)!r} was not found",
                flow_run_id=str(flow_run_id),
            ) from None
        status = data.get("status") if isinstance(data, dict) else None
        state = data.get("state") if isinstance(data, dict) else None
        # A run that never started is REJECTed ("no infrastructure to terminate")
        # yet moved straight to CANCELLED: that is a cancellation too.
        now_cancelled = isinstance(state, dict) and state.get("type") in ("CANCELLING", "CANCELLED")
        accepted = status == "ACCEPT" or now_cancelled
        logger.info(
            "cancellation of flow run %s %s",
            flow_run_id,
            "accepted" if accepted else f"refused ({status})",
        )
        return accepted
