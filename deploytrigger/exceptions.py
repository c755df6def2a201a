"""Exceptions raised by deploytrigger.

Every error the public API raises is a :class:`DeployTriggerError`; no
``requests``, ``tenacity`` or ``json`` exception escapes it (the original is
kept as ``__cause__``)::

    DeployTriggerError
    ├── ConfigurationError          (also ValueError) no or bad API URL, profile, option
    ├── InvalidArgumentError        (also ValueError) bad input, found before any request
    │   └── InvalidArgumentTypeError (also TypeError)
    ├── TransportError              the server could not be reached or did not answer
    │   ├── ConnectionFailedError   (also ConnectionError)
    │   ├── RequestTimeoutError     (also TimeoutError)
    │   └── TLSError                certificate verification or handshake failed
    ├── APIError                    the server answered with an error status
    │   ├── AuthenticationError     401: missing or wrong credentials
    │   ├── PermissionDeniedError   403: credentials lack the permission
    │   │   └── CSRFError           the server's CSRF protection refused even a fresh token
    │   ├── NotFoundError           (also LookupError) 404
    │   │   ├── DeploymentNotFoundError  .close_names: the names closest to the one asked for
    │   │   └── FlowRunNotFoundError
    │   ├── BadRequestError         (also ValueError) 400, 409, 422: the request was refused
    │   │   └── ParameterRejectedError  the deployment's parameter schema refused a parameter
    │   ├── RateLimitedError        429, still after every retry
    │   └── ServerError             5xx, still after every retry
    ├── InvalidResponseError        the answer was not the JSON expected
    ├── FlowRunTimeoutError         (also TimeoutError) a run was not final in time:
    │                               .flow_run_id .state .flow_run .not_done
    ├── FlowRunFailedError          a run ended FAILED, CRASHED or CANCELLED: .flow_run .state
    │                               .exception_type (when ``read_result`` could decode it)
    └── ResultError                 a run's return value cannot be read: .flow_run .state
        ├── ResultNotReadyError     the run is not final yet
        ├── ResultNotPersistedError the flow did not persist it (set ``persist_result=True``)
        ├── ResultExpiredError      it expired: .expiration
        ├── ResultStorageError      its storage is not reachable from here: .location
        ├── PickleRefusedError      it is pickled and ``allow_pickle`` was not given: .serializer
        └── ResultDecodeError       (also ValueError) it could not be decoded: .serializer

Messages never contain an API key, an auth string or URL credentials.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CSRFError",
    "ConfigurationError",
    "ConnectionFailedError",
    "DeployTriggerError",
    "DeploymentNotFoundError",
    "FlowRunFailedError",
    "FlowRunNotFoundError",
    "FlowRunTimeoutError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidResponseError",
    "NotFoundError",
    "ParameterRejectedError",
    "PermissionDeniedError",
    "PickleRefusedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResultDecodeError",
    "ResultError",
    "ResultExpiredError",
    "ResultNotPersistedError",
    "ResultNotReadyError",
    "ResultStorageError",
    "ServerError",
    "TLSError",
    "TransportError",
]


class DeployTriggerError(Exception):
    """Root of every error deploytrigger raises."""


class ConfigurationError(DeployTriggerError, ValueError):
    """The client cannot be configured: no API URL, a malformed one, a bad profile or option.

    Every option is checked the same way, from an argument or the environment:
    the message names it, says where it came from and what it must be.
    """


class InvalidArgumentError(DeployTriggerError, ValueError):
    """An argument has a bad value; raised before any request is sent."""


class InvalidArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument has the wrong type; raised before any request is sent."""


class TransportError(DeployTriggerError):
    """The request did not get an HTTP answer.

    Attributes:
        method: HTTP method of the request.
        url: URL of the request (credentials removed).
        attempts: how many times the request was sent.
    """

    def __init__(self, message: str, *, method: str, url: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.attempts = attempts


class ConnectionFailedError(TransportError, ConnectionError):
    """The connection was refused, reset or could not be opened."""


class RequestTimeoutError(TransportError, TimeoutError):
    """The server did not answer one request within the request timeout."""


class TLSError(TransportError):
    """TLS failed: an untrusted or invalid certificate, or a failed handshake."""


class APIError(DeployTriggerError):
    """The server answered with an error status, or with an answer that means one.

    Attributes:
        status_code: the HTTP status; None when deploytrigger found the problem
            itself (for example a parameter the deployment's schema lacks, found
            before anything was sent).
        detail: the server's explanation (its ``detail`` field, or the body).
        method: HTTP method of the request; None when nothing was sent.
        url: URL of the request (credentials removed); None when nothing was sent.
        attempts: how many times the request was sent (0 when it was not).
        hint: what to change when deploytrigger can tell (for example an API URL
            that lacks ``/api``); None otherwise. Also the end of the message.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        detail: Any = None,
        method: Optional[str] = None,
        url: Optional[str] = None,
        attempts: int = 0,
        hint: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.hint = hint
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.url = url
        self.attempts = attempts

    def context(self) -> Dict[str, Any]:
        """The HTTP context as keywords, to raise a more specific error about the same answer."""
        return {
            "status_code": self.status_code,
            "detail": self.detail,
            "method": self.method,
            "url": self.url,
            "attempts": self.attempts,
            "hint": self.hint,
        }


class AuthenticationError(APIError):
    """401: the server did not accept the credentials (or none were sent)."""


class PermissionDeniedError(APIError):
    """403: the credentials are valid but not allowed to do this."""


class CSRFError(PermissionDeniedError):
    """403 from the server's CSRF protection, still after a fresh token (or none was issued).

    deploytrigger fetches a CSRF token on the first refusal and sends the
    request again with it; this error means the server refused that too.
    """


class NotFoundError(APIError, LookupError):
    """404: the object asked for does not exist."""


class DeploymentNotFoundError(NotFoundError):
    """The deployment asked for does not exist.

    Attributes:
        deployment: the id or ``"flow/deployment"`` name that was asked for.
        close_names: the server's ``"flow/deployment"`` names closest to a name
            that was asked for, closest first (also in the message); empty when
            none is close, for an id, or when they could not be read.
    """

    def __init__(
        self, message: str, *, deployment: str, close_names: Sequence[str] = (), **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.deployment = deployment
        self.close_names = tuple(close_names)


class FlowRunNotFoundError(NotFoundError):
    """The flow run asked for does not exist.

    Attributes:
        flow_run_id: the id that was asked for.
    """

    def __init__(self, message: str, *, flow_run_id: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.flow_run_id = flow_run_id


class BadRequestError(APIError, ValueError):
    """400, 409 or 422: the server refused the request as it was sent."""


class ParameterRejectedError(BadRequestError):
    """The deployment's parameter schema refused a parameter.

    Raised on the server's refusal (a 409 or 422) or before sending, when the
    deployment enforces a schema that lacks the parameter (then the HTTP
    attributes are None).

    Attributes:
        parameter: the name of the offending parameter, when known.
    """

    def __init__(self, message: str, *, parameter: Optional[str], **context: Any) -> None:
        super().__init__(message, **context)
        self.parameter = parameter


class RateLimitedError(APIError):
    """429: still rate limited after every retry.

    Attributes:
        retry_after: seconds the server last asked to wait, when it said.
    """

    def __init__(self, message: str, *, retry_after: Optional[float], **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server failed, still after every retry allowed for the request."""


class InvalidResponseError(DeployTriggerError):
    """The server's answer was not the JSON deploytrigger expected.

    Attributes:
        method: HTTP method of the request (None where the request is not known).
        url: URL of the request, credentials removed (None where not known).
        status_code: the HTTP status of the answer (None where not known).
    """

    def __init__(
        self,
        message: str,
        *,
        method: Optional[str] = None,
        url: Optional[str] = None,
        status_code: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.status_code = status_code


class FlowRunTimeoutError(DeployTriggerError, TimeoutError):
    """A run (or some of a batch of runs) was not final when the wait's timeout ran out.

    Raised by :meth:`FlowRunHandle.result` and :meth:`Client.as_completed`;
    the runs keep going on the server.

    Attributes:
        flow_run_id: the id of the (first) run still not final.
        state: that run's last seen state (None if the server sent none).
        flow_run: that run as last seen.
        not_done: every run still not final, as last seen, in the order given.
        timeout: the timeout that ran out, in seconds.
    """

    def __init__(self, message: str, *, not_done: Sequence[Any], timeout: Optional[float]) -> None:
        super().__init__(message)
        self.not_done = tuple(not_done)
        self.flow_run = self.not_done[0]
        self.flow_run_id = self.flow_run.id
        self.state = self.flow_run.state
        self.timeout = timeout


class FlowRunFailedError(DeployTriggerError):
    """A run ended FAILED, CRASHED or CANCELLED.

    Raised by :meth:`FlowRunHandle.result`, :meth:`FlowRun.raise_for_state`
    and, since such a run has no return value, by ``read_result``.

    Attributes:
        flow_run: the run in its final state.
        flow_run_id: its id.
        state: its final state, with the server's message (for a failure, the
            exception's type and text).
        exception_type: the qualified name of the exception the flow raised
            (``"builtins.ValueError"``) when ``read_result`` could decode it from
            the persisted record (JSON, or pickle with ``allow_pickle``); else None.
    """

    def __init__(
        self, message: str, *, flow_run: Any, exception_type: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.flow_run = flow_run
        self.flow_run_id = flow_run.id
        self.state = flow_run.state
        self.exception_type = exception_type


class ResultError(DeployTriggerError):
    """A run's return value cannot be read; the message names the run and says what to do.

    Attributes:
        flow_run: the run as read.
        flow_run_id: its id.
        state: its state.
    """

    def __init__(self, message: str, *, flow_run: Any) -> None:
        super().__init__(message)
        self.flow_run = flow_run
        self.flow_run_id = flow_run.id
        self.state = flow_run.state


class ResultNotReadyError(ResultError):
    """The run is not final yet, so it has no result yet (wait for it first)."""


class ResultNotPersistedError(ResultError):
    """The run completed, but its flow did not persist the return value.

    Prefect keeps a flow's return value only when it persists results:
    ``@flow(persist_result=True)``, a ``result_storage`` or a ``result_serializer``.
    """


class ResultExpiredError(ResultError):
    """The persisted result has expired.

    Attributes:
        expiration: when it expired (timezone-aware).
    """

    def __init__(self, message: str, *, flow_run: Any, expiration: Any) -> None:
        super().__init__(message, flow_run=flow_run)
        self.expiration = expiration


class ResultStorageError(ResultError):
    """The storage the result was written to cannot be read from this machine.

    A result lives where the flow wrote it: a path on the machine that ran the
    flow, or a storage block. The message says which and what to do.

    Attributes:
        location: the path, or the storage block and key, that could not be read.
    """

    def __init__(self, message: str, *, flow_run: Any, location: str) -> None:
        super().__init__(message, flow_run=flow_run)
        self.location = location


class PickleRefusedError(ResultError):
    """The result is pickled, and unpickling runs code: refused unless ``allow_pickle=True``.

    Attributes:
        serializer: the serializer's type, e.g. ``"pickle"``.
    """

    def __init__(self, message: str, *, flow_run: Any, serializer: str) -> None:
        super().__init__(message, flow_run=flow_run)
        self.serializer = serializer


class ResultDecodeError(ResultError, ValueError):
    """The stored bytes could not be decoded: corrupt, an unknown serializer, or a
    pickle that needs a library or code that is missing here (cloudpickle, the
    flow's own modules).

    Attributes:
        serializer: the serializer's type, e.g. ``"compressed/json"``.
    """

    def __init__(self, message: str, *, flow_run: Any, serializer: str) -> None:
        super().__init__(message, flow_run=flow_run)
        self.serializer = serializer
