"""deploytrigger: start a Prefect deployment from plain synchronous Python, get the run back.

>>> import deploytrigger
>>> run = deploytrigger.run_deployment("etl/nightly", parameters={"day": "2026-11-23"})
>>> run.state.type
<StateType.COMPLETED: 'COMPLETED'>

``import deploytrigger`` is cheap: only the exceptions are loaded with the
package. Every other public name is imported from its module the first time
it is used (PEP 562), so a script pays for ``requests`` when it makes a
:class:`Client`, and for ``tenacity`` only when a request has to be retried.
"""

from typing import TYPE_CHECKING, Any, Dict, List

from ._version import __version__
from .exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectionFailedError,
    CSRFError,
    DeploymentNotFoundError,
    DeployTriggerError,
    FlowRunFailedError,
    FlowRunNotFoundError,
    FlowRunTimeoutError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidResponseError,
    NotFoundError,
    ParameterRejectedError,
    PermissionDeniedError,
    PickleRefusedError,
    RateLimitedError,
    RequestTimeoutError,
    ResultDecodeError,
    ResultError,
    ResultExpiredError,
    ResultNotPersistedError,
    ResultNotReadyError,
    ResultStorageError,
    ServerError,
    TLSError,
    TransportError,
)

if TYPE_CHECKING:
    from .api import read_result, run_deployment
    from .batch import DoneAndNotDone
    from .client import Client
    from .context import (
        ParentAwareThreadPoolExecutor,
        ParentRun,
        current_parent,
        parent_run,
        propagate,
    )
    from .defaults import configure, default_client, reset_default_client
    from .handles import FlowRunHandle
    from .models import FINAL_STATES, Deployment, Flow, FlowRun, LogRecord, State, StateType
    from .results import StorageBlock
    from .waiting import ALL_COMPLETED, FIRST_COMPLETED

    ThreadPoolExecutor = ParentAwareThreadPoolExecutor

_LAZY: Dict[str, str] = {
    "run_deployment": "api",
    "read_result": "api",
    "configure": "defaults",
    "default_client": "defaults",
    "reset_default_client": "defaults",
    "ALL_COMPLETED": "waiting",
    "FIRST_COMPLETED": "waiting",
    "DoneAndNotDone": "batch",
    "Client": "client",
    "ParentAwareThreadPoolExecutor": "context",
    "ParentRun": "context",
    "current_parent": "context",
    "parent_run": "context",
    "propagate": "context",
    "FlowRunHandle": "handles",
    "LogRecord": "models",
    "FINAL_STATES": "models",
    "Deployment": "models",
    "Flow": "models",
    "FlowRun": "models",
    "State": "models",
    "StateType": "models",
    "StorageBlock": "results",
}
"""Public name -> the module (in this package) that defines it, imported on first use."""

_ALIASES: Dict[str, str] = {
    # A drop-in ``concurrent.futures.ThreadPoolExecutor`` that hands the parent run to its tasks.
    "ThreadPoolExecutor": "ParentAwareThreadPoolExecutor",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and keep the name (PEP 562)."""
    target = _ALIASES.get(name, name)
    module_name = _LAZY.get(target)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), target)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    """The public names (loaded or not) and the module's dunders; no helpers."""
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})


__all__ = [
    "ALL_COMPLETED",
    "FINAL_STATES",
    "FIRST_COMPLETED",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CSRFError",
    "Client",
    "ConfigurationError",
    "ConnectionFailedError",
    "DeployTriggerError",
    "Deployment",
    "DeploymentNotFoundError",
    "DoneAndNotDone",
    "Flow",
    "FlowRun",
    "FlowRunFailedError",
    "FlowRunHandle",
    "FlowRunNotFoundError",
    "FlowRunTimeoutError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidResponseError",
    "LogRecord",
    "NotFoundError",
    "ParameterRejectedError",
    "ParentAwareThreadPoolExecutor",
    "ParentRun",
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
    "State",
    "StateType",
    "StorageBlock",
    "TLSError",
    "ThreadPoolExecutor",
    "TransportError",
    "__version__",
    "configure",
    "current_parent",
    "default_client",
    "parent_run",
    "propagate",
    "read_result",
    "reset_default_client",
    "run_deployment",
]
