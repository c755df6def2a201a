"""The blocking client: one ``requests.Session``, retried HTTP calls, errors mapped.

A :class:`Client` is safe to share between threads. Every request has a
finite timeout; transient failures are retried as ``retries.py`` decides;
every failure leaves as a :class:`~deploytrigger.exceptions.DeployTriggerError`.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Type, Union
from urllib.parse import quote

import requests
import tenacity
from requests.adapters import HTTPAdapter

from . import __version__
from .exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
    DeploymentNotFoundError,
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
from .models import Deployment, Flow, FlowRun
from .payloads import (
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
from .waiting import Deadline, poll

__all__ = ["Client"]

logger = logging.getLogger("deploytrigger")

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
        flow_uuid = _as_uuid(flow_id, "flow_id")
        return Flow.from_json(
            self._get_named(f"/flows/{flow_uuid}", NotFoundError, "flow", str(flow_uuid))
        )

    def read_flow_run(self, flow_run_id: Union[uuid.UUID, str]) -> FlowRun:
        """Read a flow run by id.

        Raises:
            FlowRunNotFoundError: no flow run has that id.
        """
        return self._read_flow_run(_as_uuid(flow_run_id, "flow_run_id"))

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
        return FlowRun.from_json(data)

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
        deployment_uuid = _as_uuid(deployment_id, "deployment_id")
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
                else _as_uuid(parent_task_run_id, "parent_task_run_id")
            ),
        )
        return self._create_flow_run(deployment_uuid, body, str(deployment_uuid))

    def _create_flow_run(self, deployment_id: uuid.UUID, body: Dict[str, Any], ref: str) -> FlowRun:
        body.setdefault("idempotency_key", str(uuid.uuid4()))
        try:
            data = self._request("POST", f"/deployments/{deployment_id}/create_flow_run", body=body)
        except NotFoundError as exc:
            raise _renamed(
                exc, DeploymentNotFoundError, f"deployment {ref!r} was not found"
            ) from exc
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
        run = FlowRun.from_json(data)
        logger.info("created flow run %s (%s) of deployment %s", run.id, run.name, ref)
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
        deployment = (
            self.read_deployment(ref)
            if isinstance(ref, uuid.UUID)
            else self.read_deployment_by_name(shown)
        )
        check_parameter_names(deployment, body["parameters"], shown)
        parent_task_run_id = self._link_to_parent(deployment, ref, body) if as_subflow else None
        if parent_task_run_id is not None:
            body["parent_task_run_id"] = str(parent_task_run_id)
        run = self._create_flow_run(deployment.id, body, shown)
        if wait_timeout == 0:
            return run
        return self._wait(run.id, wait_timeout, float(poll_interval), last_known=run)

    def _link_to_parent(
        self, deployment: Deployment, ref: Any, body: Dict[str, Any]
    ) -> Optional[uuid.UUID]:
        """The placeholder task run linking a new run to the current parent run, if any.

        Parent runs are not tracked yet: every run is created as a top-level run.
        """
        return None

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
        return self._wait(_as_uuid(flow_run_id, "flow_run_id"), wait_timeout, float(poll_interval))

    def _wait(
        self,
        flow_run_id: uuid.UUID,
        timeout: Optional[float],
        poll_interval: float,
        last_known: Optional[FlowRun] = None,
    ) -> FlowRun:
        deadline = Deadline(timeout, self._clock)
        latest = [last_known]

        def fetch() -> FlowRun:
            try:
                run = self._read_flow_run(flow_run_id, deadline)
            except (TransportError, ServerError, RateLimitedError):
                # Out of time while the server is unreachable: report what we last saw.
                if deadline.passed() and latest[0] is not None:
                    return latest[0]
                raise
            previous = latest[0]
            if previous is None or previous.state != run.state:
                logger.info("flow run %s (%s) is %s", run.id, run.name, run.state)
            latest[0] = run
            return run

        return poll(
            fetch, FlowRun.is_final, deadline=deadline, interval=poll_interval, sleep=self._sleep
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

        policy = retrying(
            max_retries=self.settings.max_retries,
            idempotent=idempotent,
            deadline=deadline,
            sleep=self._sleep,
            backoff=self._backoff,
            before_sleep=log_retry,
        )
        try:
            response = policy(send)
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


def _as_uuid(value: Any, argument: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise InvalidArgumentTypeError(
            f"{argument} must be a UUID or a UUID string, not {type(value).__name__}"
        )
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgumentError(f"{argument} must be a UUID, not {value!r}") from None


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
