"""The blocking client: one ``requests.Session``, retried HTTP calls, errors mapped.

A :class:`Client` is safe to share between threads. Every request has a
finite timeout; transient failures are retried as ``retries.py`` decides;
every failure leaves as a :class:`~deploytrigger.exceptions.DeployTriggerError`.

Modules that only some methods need (batch waiting, handles, logs, parent
linking) are imported inside those methods, so that a script that only
triggers runs does not load them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Type,
    Union,
)
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .context import DYNAMIC_KEYS, ParentRun, current_parent, pushed
from .exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
    DeploymentNotFoundError,
    DeployTriggerError,
    FlowRunNotFoundError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidResponseError,
    NotFoundError,
    ParameterRejectedError,
    PermissionDeniedError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TLSError,
    TransportError,
)
from .models import Deployment, Flow, FlowRun, parse_uuid
from .payloads import (
    SERVER_PAGE_LIMIT,
    DeploymentRef,
    as_uuid,
    check_parameter_names,
    check_wait_arguments,
    describe_ref,
    encode_body,
    flow_run_payload,
    parse_deployment_ref,
    rejected_parameter,
)
from .retries import RETRY_STATUSES, RetryableStatus, parse_retry_after, retrying
from .settings import Settings, redact_url, resolve_settings, warn_insecure_once
from .waiting import ALL_COMPLETED, Deadline, poll

if TYPE_CHECKING:
    import tenacity

    from . import batch as _batch
    from .handles import FlowRunHandle
    from .logs import LogRecord

__all__ = ["Client"]

logger = logging.getLogger("deploytrigger")

DEFAULT_DEPLOYMENT_CACHE_TTL = 300.0
"""Seconds a resolved deployment is reused by ``run_deployment``."""

DEFAULT_OUTAGE_TOLERANCE = 300.0
"""Seconds a wait polls on through a server that cannot answer before raising."""

DEFAULT_POOL_SIZE = 32
"""Connections kept per host; enough for a thread pool of that many workers."""

_STATUS_ERRORS: Dict[int, Type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
}


class Client:
    """A blocking, thread-safe client for the Prefect API.

    Args:
        api_url: the API's base URL (ending in ``/api``); else ``PREFECT_API_URL``,
            else the active Prefect profile.
        api_key: a Prefect Cloud API key (sent as ``Bearer``); else ``PREFECT_API_KEY``.
        auth_string: ``user:password`` for a self-hosted server's basic auth;
            else ``PREFECT_API_AUTH_STRING``. Preferred over the API key.
        request_timeout: seconds one HTTP request may take (default 30).
        verify: True, False or a CA bundle path; else ``PREFECT_API_SSL_CERT_FILE``
            and ``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``; else True.
        max_retries: retries after the first attempt of a transiently failed request
            (default 5).
        pool_size: connections kept open to the server; size it for your threads.
        sleep: how to wait between retries and polls (tests inject a fake).
        clock: a monotonic clock in seconds (tests inject a fake).
        backoff: the wait before a retry when the server asks none (tests inject one).
        deployment_cache_ttl: seconds a deployment resolved by ``run_deployment``
            is reused, so that steady-state triggering costs one request; 0 turns
            the cache off. A cached deployment is read again when the server
            answers 404 to a create (deleted and re-created under the same name)
            or when it does not know a parameter (the flow gained one).
        outage_tolerance: seconds a wait keeps polling through a server that cannot
            answer (connection failures, 5xx, 429 after every retry of one poll),
            so a wait outlives a server restart; then the error is raised. A wait
            with a timeout returns the run as last seen when its deadline passes.

    Raises:
        ConfigurationError: no API URL is configured, or a setting is unusable.
    """

    def __init__(
        self,
        api_url: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        auth_string: Optional[str] = None,
        request_timeout: Optional[float] = None,
        verify: Optional[Union[bool, str]] = None,
        max_retries: Optional[int] = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff: Optional[Callable[[tenacity.RetryCallState], float]] = None,
        deployment_cache_ttl: float = DEFAULT_DEPLOYMENT_CACHE_TTL,
        outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE,
    ) -> None:
        self.settings: Settings = resolve_settings(
            api_url,
            api_key=api_key,
            auth_string=auth_string,
            verify=verify,
            request_timeout=request_timeout,
            max_retries=max_retries,
        )
        self._sleep = sleep
        self._clock = clock
        self._backoff = backoff
        self._deployment_cache_ttl = deployment_cache_ttl
        self._outage_tolerance = outage_tolerance
        self._deployments: Dict[Any, Tuple[float, Deployment]] = {}
        self._deployments_lock = threading.Lock()
        if self.settings.verify is False:
            warn_insecure_once()
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": f"deploytrigger/{__version__}",
            }
        )
        authorization = self.settings.authorization
        if authorization:
            self._session.headers["Authorization"] = authorization

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the session's connections; the client cannot be used afterwards."""
        self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(api_url={redact_url(self.settings.api_url)!r})"

    # -- reading -----------------------------------------------------------------

    def read_deployment(self, deployment_id: Union[uuid.UUID, str]) -> Deployment:
        """Read a deployment by id.

        Raises:
            DeploymentNotFoundError: no deployment has that id.
        """
        ref = parse_deployment_ref(deployment_id)
        if not isinstance(ref, uuid.UUID):
            raise InvalidArgumentError(
                f"deployment_id must be a UUID, not {deployment_id!r}; "
                "use read_deployment_by_name for 'flow/deployment' names"
            )
        data = self._get_named(
            f"/deployments/{ref}", DeploymentNotFoundError, "deployment", str(ref)
        )
        return Deployment.from_json(data)

    def read_deployment_by_name(self, name: str) -> Deployment:
        """Read a deployment by its ``"flow name/deployment name"``.

        Raises:
            InvalidArgumentError: ``name`` is not of that form.
            DeploymentNotFoundError: no such deployment.
        """
        ref = parse_deployment_ref(name)
        if isinstance(ref, uuid.UUID):
            return self.read_deployment(ref)
        flow_name, deployment_name = ref
        path = "/deployments/name/{}/{}".format(
            quote(flow_name, safe=""), quote(deployment_name, safe="")
        )
        return Deployment.from_json(
            self._get_named(path, DeploymentNotFoundError, "deployment", name)
        )

    def read_flow(self, flow_id: Union[uuid.UUID, str]) -> Flow:
        """Read a flow by id.

        Raises:
            NotFoundError: no flow has that id.
        """
        flow_uuid = as_uuid(flow_id, "flow_id")
        return Flow.from_json(
            self._get_named(f"/flows/{flow_uuid}", NotFoundError, "flow", str(flow_uuid))
        )

    def read_flow_run(self, flow_run_id: Union[uuid.UUID, str]) -> FlowRun:
        """Read a flow run by id.

        Raises:
            FlowRunNotFoundError: no flow run has that id.
        """
        return self._read_flow_run(as_uuid(flow_run_id, "flow_run_id"))

    def _read_flow_run(
        self, flow_run_id: uuid.UUID, deadline: Optional[Deadline] = None
    ) -> FlowRun:
        data = self._get_named(
            f"/flow_runs/{flow_run_id}",
            FlowRunNotFoundError,
            "flow run",
            str(flow_run_id),
            deadline,
        )
        return FlowRun.from_json(data, api_url=self.settings.api_url)

    def read_deployments(
        self, flow_name: Optional[str] = None, limit: int = SERVER_PAGE_LIMIT
    ) -> List[Deployment]:
        """List deployments by name (``POST /deployments/filter``), at most ``limit`` (<= 200).

        Args:
            flow_name: only the deployments of this flow.
            limit: the most to return; the server returns at most 200 per request.

        Raises:
            InvalidArgumentError: ``limit`` is not between 1 and 200.
        """
        body: Dict[str, Any] = {"sort": "NAME_ASC", "limit": _page_limit(limit)}
        if flow_name is not None:
            body["flows"] = {"name": {"any_": [str(flow_name)]}}
        data = self._request("POST", "/deployments/filter", body=body)
        return [Deployment.from_json(item) for item in _json_list(data, "deployments")]

    def read_logs(
        self,
        flow_run_id: Union[uuid.UUID, str],
        after: Optional[datetime] = None,
        limit: int = SERVER_PAGE_LIMIT,
        *,
        offset: int = 0,
    ) -> List[LogRecord]:
        """Read one page of a run's log lines, oldest first (``POST /logs/filter``).

        Args:
            flow_run_id: the run.
            after: only lines logged at or after this time (inclusive; a naive
                datetime is taken as UTC).
            limit: the most lines to return (1 to 200, the server's cap).
            offset: lines to skip, for paging through more than ``limit``.

        Returns:
            :class:`~deploytrigger.logs.LogRecord` objects; ``.level_name`` gives
            the level by name. To read everything use :meth:`follow_logs`.

        Raises:
            InvalidArgumentError: a malformed id, limit or offset.
        """
        run_id = as_uuid(flow_run_id, "flow_run_id")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise InvalidArgumentError(f"offset must be a whole number >= 0, not {offset!r}")
        if after is not None and after.tzinfo is None:
            after = after.replace(tzinfo=timezone.utc)
        from .logs import LogRecord, logs_filter_body

        body = logs_filter_body(run_id, after, _page_limit(limit), offset)
        data = self._request("POST", "/logs/filter", body=body)
        return [LogRecord.from_json(item) for item in _json_list(data, "logs")]

    def follow_logs(
        self,
        flow_run_id: Union[uuid.UUID, str],
        poll_interval: float = 1,
        timeout: Optional[float] = None,
    ) -> Iterator[LogRecord]:
        """Yield a run's log lines as they arrive, until the run is final and its logs drained.

        Every line once, in timestamp order, none skipped: reads page through
        more than 200 new lines, and lines sharing a timestamp are told apart
        by id. After the run is final, reading continues until no new line has
        come for a few seconds (Prefect sends logs in batches). See
        :func:`deploytrigger.logs.watch` to follow state changes too.

        Args:
            flow_run_id: the run.
            poll_interval: seconds between reads.
            timeout: seconds after which to stop even if the run is not final
                (None: until it is final).

        Raises:
            InvalidArgumentError: a malformed id, or a negative timeout or interval.
            FlowRunNotFoundError: no flow run has that id.
        """
        run_id = as_uuid(flow_run_id, "flow_run_id")
        check_wait_arguments(timeout, poll_interval)
        from .logs import follow

        return follow(
            self,
            run_id,
            poll_interval=float(poll_interval),
            timeout=timeout,
            sleep=self._sleep,
            clock=self._clock,
        )

    # -- creating ----------------------------------------------------------------

    def create_flow_run_from_deployment(
        self,
        deployment_id: Union[uuid.UUID, str],
        *,
        parameters: Optional[Mapping[str, Any]] = None,
        scheduled_time: Optional[datetime] = None,
        flow_run_name: Optional[str] = None,
        tags: Optional[Iterable[str]] = None,
        idempotency_key: Optional[str] = None,
        work_queue_name: Optional[str] = None,
        job_variables: Optional[Mapping[str, Any]] = None,
        parent_task_run_id: Optional[Union[uuid.UUID, str]] = None,
    ) -> FlowRun:
        """Create a flow run of a deployment, scheduled now or at ``scheduled_time``.

        Parameters merge over the deployment's defaults and tags over its tags,
        on the server. Without an ``idempotency_key`` a fresh one is sent, so a
        retried request returns the run the first attempt created.

        Raises:
            InvalidArgumentError: an argument is malformed (nothing was sent).
            ParameterRejectedError: the deployment's parameter schema refused a parameter.
            DeploymentNotFoundError: the deployment does not exist.
        """
        deployment_uuid = as_uuid(deployment_id, "deployment_id")
        body = flow_run_payload(
            parameters=parameters,
            scheduled_time=scheduled_time,
            flow_run_name=flow_run_name,
            tags=tags,
            idempotency_key=idempotency_key,
            work_queue_name=work_queue_name,
            job_variables=job_variables,
            parent_task_run_id=(
                None
                if parent_task_run_id is None
                else as_uuid(parent_task_run_id, "parent_task_run_id")
            ),
        )
        return self._create_flow_run(deployment_uuid, body, str(deployment_uuid))

    def _create_flow_run(self, deployment_id: uuid.UUID, body: Dict[str, Any], ref: str) -> FlowRun:
        body.setdefault("idempotency_key", str(uuid.uuid4()))
        try:
            data = self._request("POST", f"/deployments/{deployment_id}/create_flow_run", body=body)
        except NotFoundError as exc:
            missing = _renamed(exc, DeploymentNotFoundError, f"deployment {ref!r} was not found")
            missing.deployment = ref
            raise missing from exc
        except BadRequestError as exc:
            parameter = rejected_parameter(exc.detail)
            if parameter is None:
                raise
            rejected = _renamed(
                exc,
                ParameterRejectedError,
                f"deployment {ref!r} rejected the parameters: {exc.detail}",
            )
            rejected.parameter = parameter
            raise rejected from exc
        run = FlowRun.from_json(data, api_url=self.settings.api_url)
        logger.info("created flow run %s (%s) of deployment %s", run.id, run.name, ref)
        return run

    def cancel_flow_run(
        self, flow_run_id: Union[uuid.UUID, str], message: Optional[str] = None
    ) -> bool:
        """Ask the server to cancel a run: it goes CANCELLING, then CANCELLED.

        A scheduled run becomes CANCELLED at once; a running one once its
        runner or worker has stopped it (a few seconds). The request is not
        forced, so the server refuses it for a run that is already final.

        Args:
            flow_run_id: the run.
            message: the state's message; "Cancelled by deploytrigger" by default.

        Returns:
            True when the server accepted the cancellation, False when it
            refused it (for example because the run is already final).

        Raises:
            FlowRunNotFoundError: no flow run has that id.
        """
        run_id = as_uuid(flow_run_id, "flow_run_id")
        body = {
            "state": {
                "type": "CANCELLING",
                "name": "Cancelling",
                "message": message or "Cancelled by deploytrigger",
            },
            "force": False,
        }
        try:
            data = self._request("POST", f"/flow_runs/{run_id}/set_state", body=body)
        except NotFoundError as exc:
            error = _renamed(exc, FlowRunNotFoundError, f"flow run {str(run_id)!r} was not found")
            error.flow_run_id = str(run_id)
            raise error from exc
        status = data.get("status") if isinstance(data, dict) else None
        state = data.get("state") if isinstance(data, dict) else None
        # A run that never started is REJECTed ("no infrastructure to terminate")
        # yet moved straight to CANCELLED: that is a cancellation too.
        now_cancelled = isinstance(state, dict) and state.get("type") in ("CANCELLING", "CANCELLED")
        accepted = status == "ACCEPT" or now_cancelled
        logger.info(
            "cancellation of flow run %s %s",
            run_id,
            "accepted" if accepted else f"refused ({status})",
        )
        return accepted

    def _cancel_unfinished(self, run: FlowRun, why: str) -> FlowRun:
        """Cancel a run that was waited for in vain; the run re-read (as last seen on error)."""
        try:
            self.cancel_flow_run(run.id, f"Cancelled by deploytrigger: {why}")
            return self._read_flow_run(run.id)
        except DeployTriggerError as exc:
            logger.warning("could not cancel flow run %s after %s: %s", run.id, why, exc)
            return run

    # -- the main job ---------------------------------------------------------------

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
    ) -> FlowRun:
        """Create a flow run of a deployment and return it once final or when time runs out.

        Args:
            name: the deployment's id, or ``"flow name/deployment name"``.
            parameters: overrides merged over the deployment's default parameters.
            scheduled_time: when the run should start; now by default. A naive
                datetime is taken as UTC, as Prefect does.
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

        Returns:
            The flow run as last read.

        Raises:
            InvalidArgumentError: a malformed argument, e.g. a negative timeout (nothing sent).
            DeploymentNotFoundError: the deployment does not exist.
            ParameterRejectedError: the deployment refused a parameter.
            DeployTriggerError: any other failure to create or read the run.
        """
        wait_timeout = check_wait_arguments(timeout, poll_interval)
        ref = parse_deployment_ref(name)
        body = flow_run_payload(
            parameters=parameters,
            scheduled_time=scheduled_time,
            flow_run_name=flow_run_name,
            tags=tags,
            idempotency_key=idempotency_key,
            work_queue_name=work_queue_name,
            job_variables=job_variables,
        )
        if not isinstance(as_subflow, bool):
            raise InvalidArgumentTypeError(f"as_subflow must be True or False, not {as_subflow!r}")
        shown = describe_ref(ref)
        deployment, cached = self._resolve_deployment(ref)
        try:
            check_parameter_names(deployment, body["parameters"], shown)
        except ParameterRejectedError:
            if not cached:
                raise
            deployment, cached = self._resolve_deployment(ref, refresh=True)
            check_parameter_names(deployment, body["parameters"], shown)
        parent_task_run_id = self._link_to_parent(deployment, ref, body) if as_subflow else None
        if parent_task_run_id is not None:
            body["parent_task_run_id"] = str(parent_task_run_id)
        try:
            run = self._create_flow_run(deployment.id, body, shown)
        except DeploymentNotFoundError:
            if not cached:
                raise
            # Deleted since it was cached; maybe re-created under the same name.
            deployment, _ = self._resolve_deployment(ref, refresh=True)
            run = self._create_flow_run(deployment.id, body, shown)
        if wait_timeout == 0:
            return run
        try:
            run = self._wait(run.id, wait_timeout, float(poll_interval), last_known=run)
        except KeyboardInterrupt:
            if cancel_on_interrupt:
                self._cancel_unfinished(run, "interrupted")
            raise
        if cancel_on_timeout and wait_timeout is not None and not run.is_final():
            return self._cancel_unfinished(run, f"not final after {wait_timeout:g}s")
        return run

    def _resolve_deployment(
        self, ref: DeploymentRef, refresh: bool = False
    ) -> Tuple[Deployment, bool]:
        """The deployment ``ref`` names and whether it came from the cache."""
        now = self._clock()
        with self._deployments_lock:
            entry = self._deployments.get(ref)
            if refresh:
                self._deployments.pop(ref, None)
        if not refresh and entry is not None and now - entry[0] < self._deployment_cache_ttl:
            return entry[1], True
        try:
            deployment = (
                self.read_deployment(ref)
                if isinstance(ref, uuid.UUID)
                else self.read_deployment_by_name(describe_ref(ref))
            )
        except DeploymentNotFoundError:
            with self._deployments_lock:
                self._deployments.pop(ref, None)
            raise
        if self._deployment_cache_ttl > 0:
            with self._deployments_lock:
                self._deployments[ref] = (now, deployment)
        return deployment, False

    def _link_to_parent(
        self, deployment: Deployment, ref: Any, body: Dict[str, Any]
    ) -> Optional[uuid.UUID]:
        """The placeholder task run linking a new run to the current parent run, if any.

        Creates it as Prefect's ``run_deployment`` does (see ``linking.py``) under
        :func:`~deploytrigger.current_parent`. ``POST /task_runs/`` returns the
        existing task run for a repeated (flow run, task_key, dynamic_key), so
        retrying it is safe.
        """
        parent = current_parent()
        if parent is None:
            return None
        from .linking import placeholder_payload, task_key

        if isinstance(ref, uuid.UUID):
            deployment_name = f"{self.read_flow(deployment.flow_id).name}/{deployment.name}"
        else:
            deployment_name = describe_ref(ref)
        dynamic_key = DYNAMIC_KEYS.next_key(
            parent, task_key(deployment_name), lambda: self._task_run_keys(parent.flow_run_id)
        )
        payload = placeholder_payload(
            deployment_name=deployment_name,
            deployment_version=deployment.version,
            parameter_names=body["parameters"],
            parent=parent,
            dynamic_key=dynamic_key,
        )
        try:
            data = self._request("POST", "/task_runs/", body=payload)
        except BadRequestError as exc:
            if exc.status_code != 409:
                raise
            # The body's only reference is the parent flow run: a 409 means it is missing.
            missing = _renamed(
                exc,
                FlowRunNotFoundError,
                f"cannot link to parent flow run {parent.flow_run_id}: it was not found",
            )
            missing.flow_run_id = str(parent.flow_run_id)
            raise missing from exc
        task_run_id = parse_uuid(data.get("id") if isinstance(data, dict) else None)
        logger.debug(
            "placeholder task run %s (dynamic key %s) in flow run %s for %s",
            task_run_id,
            dynamic_key,
            parent.flow_run_id,
            deployment_name,
        )
        return task_run_id

    def _task_run_keys(self, flow_run_id: uuid.UUID) -> List[Any]:
        """``(task_key, dynamic_key)`` of every task run of a flow run, page by page."""
        from .linking import TASK_RUNS_PAGE, existing_keys, task_runs_filter

        keys: List[Any] = []
        offset = 0
        while True:
            page = self._request(
                "POST", "/task_runs/filter", body=task_runs_filter(str(flow_run_id), offset)
            )
            found = existing_keys(page)
            keys.extend(found)
            if len(found) < TASK_RUNS_PAGE:
                return keys
            offset += len(found)

    # -- tracked parent runs -------------------------------------------------------

    @contextlib.contextmanager
    def flow_run(
        self,
        flow_name: str,
        *,
        name: Optional[str] = None,
        parameters: Optional[Mapping[str, Any]] = None,
        tags: Optional[Iterable[str]] = None,
    ) -> Iterator[FlowRun]:
        """Track a block of code as a Running flow run, the parent of the runs it triggers.

        Gets or creates the flow ``flow_name``, creates a run of it in the Running
        state and makes it this thread's parent for the block (see
        :func:`~deploytrigger.parent_run`). When the block ends the run becomes
        Completed; Failed with the exception's message when the block raises
        (the exception propagates); Cancelled on ``KeyboardInterrupt``.

        Args:
            flow_name: the flow the run belongs to (created when missing).
            name: the run's name (the server invents one otherwise).
            parameters: parameters to record on the run.
            tags: tags for the run.

        Yields:
            The new flow run, as created.

        Raises:
            InvalidArgumentError: a malformed argument (nothing was sent).
            DeployTriggerError: the run could not be created, or (after a block
                that succeeded) its final state could not be set.
        """
        if not isinstance(flow_name, str) or not flow_name.strip():
            raise InvalidArgumentError(f"flow_name must be a non-empty string, not {flow_name!r}")
        checked = flow_run_payload(parameters=parameters, flow_run_name=name, tags=tags)
        flow = Flow.from_json(self._request("POST", "/flows/", body={"name": flow_name}))
        body: Dict[str, Any] = {
            "flow_id": str(flow.id),
            "state": {"type": "RUNNING", "name": "Running"},
            "parameters": checked["parameters"],
            "tags": checked.get("tags", []),
            "idempotency_key": str(uuid.uuid4()),
        }
        if "name" in checked:
            body["name"] = checked["name"]
        run = FlowRun.from_json(self._request("POST", "/flow_runs/", body=body))
        logger.info("tracking flow run %s (%s) of flow %s", run.id, run.name, flow_name)
        DYNAMIC_KEYS.mark_new(run.id)
        try:
            with pushed(ParentRun(run.id)):
                yield run
        except KeyboardInterrupt:
            self._finish_tracked(run, "CANCELLED", "Interrupted (KeyboardInterrupt)", quiet=True)
            raise
        except BaseException as exc:
            self._finish_tracked(run, "FAILED", f"{type(exc).__name__}: {exc}", quiet=True)
            raise
        else:
            self._finish_tracked(run, "COMPLETED", None, quiet=False)
        finally:
            DYNAMIC_KEYS.forget(run.id)

    def _finish_tracked(
        self, run: FlowRun, state_type: str, message: Optional[str], *, quiet: bool
    ) -> None:
        """Give a tracked run its final state; ``quiet``: log a failure instead of raising.

        ``quiet`` is for a block that already raised: its exception matters more.
        """
        state: Dict[str, Any] = {"type": state_type, "name": state_type.title()}
        if message is not None:
            state["message"] = message
        try:
            result = self._request(
                "POST", f"/flow_runs/{run.id}/set_state", body={"state": state, "force": False}
            )
        except DeployTriggerError:
            if not quiet:
                raise
            logger.warning("could not mark flow run %s %s", run.id, state_type, exc_info=True)
            return
        status = result.get("status") if isinstance(result, dict) else None
        if status != "ACCEPT":
            logger.warning(
                "the server answered %s to marking flow run %s %s: %s",
                status,
                run.id,
                state_type,
                result.get("details") if isinstance(result, dict) else result,
            )
        else:
            logger.info("flow run %s (%s) is %s", run.id, run.name, state["name"])

    # -- waiting -----------------------------------------------------------------

    def wait_for_flow_run(
        self,
        flow_run_id: Union[uuid.UUID, str],
        timeout: Optional[float] = None,
        poll_interval: float = 5,
    ) -> FlowRun:
        """Poll a flow run until it is final or ``timeout`` seconds pass.

        Returns:
            The run once final, or as last read when the timeout ran out.

        Raises:
            InvalidArgumentError: a negative timeout or poll interval.
            FlowRunNotFoundError: no flow run has that id.
        """
        wait_timeout = check_wait_arguments(timeout, poll_interval)
        return self._wait(as_uuid(flow_run_id, "flow_run_id"), wait_timeout, float(poll_interval))

    def _wait(
        self,
        flow_run_id: uuid.UUID,
        timeout: Optional[float],
        poll_interval: float,
        last_known: Optional[FlowRun] = None,
    ) -> FlowRun:
        deadline = Deadline(timeout, self._clock)
        latest = [last_known]
        outage_since: List[Optional[float]] = [None]

        def fetch() -> FlowRun:
            try:
                run = self._read_flow_run(flow_run_id, deadline)
            except (TransportError, ServerError, RateLimitedError) as exc:
                known = latest[0]
                if known is None:
                    raise
                remaining = deadline.remaining()
                retry_after = getattr(exc, "retry_after", None)
                if remaining is not None and retry_after is not None and retry_after >= remaining:
                    self._sleep(remaining)  # the server asked for longer than is left
                    return known
                if remaining is not None and remaining <= 0:
                    return known  # out of time: report what we last saw
                now = self._clock()
                since = outage_since[0] = now if outage_since[0] is None else outage_since[0]
                if now - since >= self._outage_tolerance:
                    raise
                logger.warning("cannot read flow run %s (%s); polling on", flow_run_id, exc)
                return known
            outage_since[0] = None
            previous = latest[0]
            if previous is None or previous.state != run.state:
                logger.info("flow run %s (%s) is %s", run.id, run.name, run.state)
            latest[0] = run
            return run

        return poll(
            fetch, FlowRun.is_final, deadline=deadline, interval=poll_interval, sleep=self._sleep
        )

    # -- many runs (the logic lives in handles.py and batch.py) -----------------------

    def read_flow_runs(self, flow_run_ids: Iterable[Union[uuid.UUID, str]]) -> List[FlowRun]:
        """Read many flow runs: one ``POST /flow_runs/filter`` per 200 ids.

        Returns:
            The runs in the order of ``flow_run_ids``, each once; ids the server
            does not know are left out.

        Raises:
            InvalidArgumentError: an id is not a UUID (nothing sent).
        """
        ids = [as_uuid(value, "flow_run_ids") for value in flow_run_ids]
        return self._read_flow_runs(ids)

    def _read_flow_runs(
        self, flow_run_ids: List[uuid.UUID], deadline: Optional[Deadline] = None
    ) -> List[FlowRun]:
        from . import batch as _batch

        unique = list(dict.fromkeys(flow_run_ids))
        found: Dict[uuid.UUID, FlowRun] = {}
        for chunk in _batch.chunked(unique, _batch.FILTER_LIMIT):
            body = {
                "flow_runs": {"id": {"any_": [str(run_id) for run_id in chunk]}},
                "limit": _batch.FILTER_LIMIT,
            }
            data = self._request("POST", "/flow_runs/filter", body=body, deadline=deadline)
            if not isinstance(data, list):
                raise InvalidResponseError(
                    f"POST /flow_runs/filter answered {type(data).__name__}, not a list"
                )
            for item in data:
                run = FlowRun.from_json(item, api_url=self.settings.api_url)
                found[run.id] = run
        return [found[run_id] for run_id in unique if run_id in found]

    def submit(
        self, name: Union[str, uuid.UUID], *, poll_interval: float = 5, **options: Any
    ) -> FlowRunHandle:
        """Create a flow run and return a handle to it at once, like ``Executor.submit``.

        Args:
            name: the deployment's id, or ``"flow name/deployment name"``.
            poll_interval: the handle's default seconds between polls.
            **options: any keyword of :meth:`run_deployment` except ``timeout``
                (``parameters``, ``scheduled_time``, ``tags``, ``idempotency_key``,
                ``as_subflow`` ...); the run is created by the same code path,
                parent linking and idempotency included.

        Returns:
            A :class:`~deploytrigger.FlowRunHandle` for the new run.

        Raises:
            DeployTriggerError: as :meth:`run_deployment`.
        """
        if "timeout" in options:
            raise InvalidArgumentError("submit returns at once: wait on the handle instead")
        check_wait_arguments(None, poll_interval)
        run = self.run_deployment(name, timeout=0, **options)
        from .handles import FlowRunHandle

        return FlowRunHandle(self, run, poll_interval=poll_interval)

    def wait_all(
        self,
        runs: Iterable[Union[FlowRunHandle, FlowRun, uuid.UUID, str]],
        timeout: Optional[float] = None,
        poll_interval: float = 5,
        return_when: str = ALL_COMPLETED,
    ) -> _batch.DoneAndNotDone:
        """Wait for many runs, like ``concurrent.futures.wait``, batching the polls.

        One poll is one ``POST /flow_runs/filter`` per 200 pending runs. Done
        callbacks of the handles fire from this loop, in this thread.

        Args:
            runs: handles or flow run ids (ids get handles from the first poll).
            timeout: seconds to wait; None waits as long as ``return_when`` needs.
            poll_interval: seconds between polls.
            return_when: ``ALL_COMPLETED`` or ``FIRST_COMPLETED``.

        Returns:
            ``(done, not_done)`` lists of handles, in the order given, duplicates
            removed. A timeout is not an error: look at ``not_done``.

        Raises:
            InvalidArgumentError: a bad argument (nothing sent).
            FlowRunNotFoundError: a run does not exist.
        """
        from . import batch as _batch

        return _batch.wait_all(
            self,
            runs,
            timeout=timeout,
            poll_interval=poll_interval,
            return_when=return_when,
            sleep=self._sleep,
            clock=self._clock,
        )

    def as_completed(
        self,
        runs: Iterable[Union[FlowRunHandle, FlowRun, uuid.UUID, str]],
        timeout: Optional[float] = None,
        poll_interval: float = 5,
    ) -> Iterator[FlowRun]:
        """Yield each run once it is final, as ``concurrent.futures.as_completed`` does.

        Runs already final come first; runs seen final by the same poll come
        in the order they ended. Polls are batched as in :meth:`wait_all`.

        Raises:
            FlowRunTimeoutError: ``timeout`` seconds passed with runs still not
                final (``.not_done``), after yielding those that were.
            FlowRunNotFoundError: a run does not exist.
        """
        from . import batch as _batch

        return _batch.as_completed(
            self,
            runs,
            timeout=timeout,
            poll_interval=poll_interval,
            sleep=self._sleep,
            clock=self._clock,
        )

    def run_many(
        self,
        calls: Iterable[_batch.Call],
        max_workers: int = 16,
        timeout: Optional[float] = None,
        poll_interval: float = 5,
    ) -> List[FlowRun]:
        """Trigger many deployments from a thread pool, then wait for all of them.

        Each call is a deployment name, ``{"name": ..., **options}`` or
        ``(name, options)``, where options are :meth:`run_deployment`'s keywords
        except ``timeout``. Workers run under the caller's parent run, so runs
        link as if triggered from this thread. Keep ``max_workers`` at most the
        client's ``pool_size`` (32 by default) so every worker has a connection.

        Returns:
            The runs in the order of ``calls``: final, or as last seen when
            ``timeout`` ran out (0 returns them as created).

        Raises:
            InvalidArgumentError: a malformed call or argument (nothing sent).
            DeployTriggerError: the first failed call, in call order, once every
                call has been tried; runs the other calls created keep going.
        """
        from . import batch as _batch

        return _batch.run_many(
            self,
            calls,
            max_workers=max_workers,
            timeout=timeout,
            poll_interval=poll_interval,
            sleep=self._sleep,
            clock=self._clock,
        )

    # -- HTTP ----------------------------------------------------------------------

    def _get_named(
        self,
        path: str,
        not_found: Type[NotFoundError],
        what: str,
        ref: str,
        deadline: Optional[Deadline] = None,
    ) -> Any:
        try:
            return self._request("GET", path, deadline=deadline)
        except NotFoundError as exc:
            error = _renamed(exc, not_found, f"{what} {ref!r} was not found")
            if isinstance(error, DeploymentNotFoundError):
                error.deployment = ref
            elif isinstance(error, FlowRunNotFoundError):
                error.flow_run_id = ref
            raise error from exc

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        idempotent: bool = True,
        deadline: Optional[Deadline] = None,
    ) -> Any:
        """Send one request (retried as allowed) and return its JSON answer."""
        url = self.settings.api_url + path
        shown = redact_url(url)
        data = None if body is None else encode_body(body)
        attempts = 0

        def send() -> requests.Response:
            nonlocal attempts
            attempts += 1
            started = time.monotonic()
            response = self._session.request(
                method,
                url,
                data=data,
                timeout=self.settings.request_timeout,
                verify=self.settings.verify,
            )
            logger.debug(
                "%s %s -> %s in %.3fs (attempt %d)",
                method,
                shown,
                response.status_code,
                time.monotonic() - started,
                attempts,
            )
            if response.status_code in RETRY_STATUSES:
                raise RetryableStatus(
                    response, parse_retry_after(response.headers.get("Retry-After"))
                )
            return response

        def log_retry(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = (
                exc.response.status_code if isinstance(exc, RetryableStatus) else type(exc).__name__
            )
            wait = state.next_action.sleep if state.next_action else 0.0
            logger.debug("%s %s failed (%s); retrying in %.2fs", method, shown, reason, wait)

        try:
            try:
                response = send()
            except Exception as first_failure:
                # Only now is tenacity (and asyncio with it) needed: it decides about
                # the attempt that failed as if it had made it, then retries.
                policy = retrying(
                    max_retries=self.settings.max_retries,
                    idempotent=idempotent,
                    deadline=deadline,
                    sleep=self._sleep,
                    backoff=self._backoff,
                    before_sleep=log_retry,
                )
                response = policy(_replay(first_failure, send))
        except RetryableStatus as exc:
            response = exc.response
        except requests.exceptions.SSLError as exc:
            raise TLSError(
                f"TLS failed for {method} {shown}: {_reason(exc)}; trust the server's CA with "
                "PREFECT_API_SSL_CERT_FILE or verify=<path>",
                method=method,
                url=shown,
                attempts=attempts,
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise RequestTimeoutError(
                f"{method} {shown} got no answer within {self.settings.request_timeout:g}s "
                f"({_attempts(attempts)})",
                method=method,
                url=shown,
                attempts=attempts,
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise ConnectionFailedError(
                f"cannot reach the Prefect API at {redact_url(self.settings.api_url)} "
                f"({method} {shown}, {_attempts(attempts)}): {_reason(exc)}",
                method=method,
                url=shown,
                attempts=attempts,
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise TransportError(
                f"{method} {shown} failed: {_reason(exc)}",
                method=method,
                url=shown,
                attempts=attempts,
            ) from exc
        return _json_or_error(response, method, shown, attempts)


def _replay(
    failure: Exception, send: Callable[[], requests.Response]
) -> Callable[[], requests.Response]:
    """``send``, except that the first call raises ``failure`` (an attempt already made)."""
    pending = [failure]

    def attempt() -> requests.Response:
        if pending:
            raise pending.pop()
        return send()

    return attempt


def _json_or_error(response: requests.Response, method: str, url: str, attempts: int) -> Any:
    """The answer's JSON, or the error its status means."""
    status = response.status_code
    try:
        payload = response.json() if response.content else None
        parsed = True
    except ValueError:
        payload, parsed = None, False
    if status < 400:
        if not parsed:
            raise InvalidResponseError(
                f"{method} {url} answered {status} with a body that is not JSON: "
                f"{_snippet(response.text)}",
                method=method,
                url=url,
                status_code=status,
            )
        return payload
    detail: Any = payload.get("detail", payload) if isinstance(payload, dict) else payload
    if detail is None:
        detail = _snippet(response.text) or response.reason
    error_type = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIError)
    message = f"{method} {url} answered {status} {response.reason or ''}".rstrip()
    if attempts > 1:
        message += f" after {attempts} attempts"
    message += f": {detail}"
    hint = _HINTS.get(status)
    if hint:
        message += f" ({hint})"
    error = error_type(
        message, status_code=status, detail=detail, method=method, url=url, attempts=attempts
    )
    if isinstance(error, RateLimitedError):
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
    raise error


_HINTS = {
    401: "check PREFECT_API_KEY or PREFECT_API_AUTH_STRING",
    403: "the credentials are not allowed to do this",
}


def _renamed(exc: APIError, error_type: Type[Any], message: str) -> Any:
    """``exc`` as a more specific error type with a message that names what was asked for."""
    return error_type(
        f"{message} ({exc.method} {exc.url} answered {exc.status_code})",
        status_code=exc.status_code,
        detail=exc.detail,
        method=exc.method,
        url=exc.url,
        attempts=exc.attempts,
    )


def _page_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= SERVER_PAGE_LIMIT:
        raise InvalidArgumentError(
            f"limit must be a whole number from 1 to {SERVER_PAGE_LIMIT}, not {limit!r}"
        )
    return limit


def _json_list(data: Any, what: str) -> List[Any]:
    if not isinstance(data, list):
        raise InvalidResponseError(
            f"the server sent {type(data).__name__} where a list of {what} was expected"
        )
    return data


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _reason(exc: BaseException) -> str:
    """The innermost readable reason of a requests/urllib3 error, without the noise."""
    text = str(exc.args[0]) if exc.args else str(exc)
    for marker in ("Caused by ", "): "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip("()'\" ") or type(exc).__name__


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
