"""deploytrigger: start a Prefect deployment from plain synchronous Python, get the run back.

>>> import deploytrigger
>>> run = deploytrigger.run_deployment("etl/nightly", parameters={"day": "2026-11-23"})
>>> run.state.type
<StateType.COMPLETED: 'COMPLETED'>
"""

__version__ = "0.1.0"

from .api import run_deployment
from .batch import ALL_COMPLETED, FIRST_COMPLETED, DoneAndNotDone
from .client import Client
from .context import (
    ParentAwareThreadPoolExecutor,
    ParentRun,
    current_parent,
    parent_run,
    propagate,
)
from .exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectionFailedError,
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
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TLSError,
    TransportError,
)
from .handles import FlowRunHandle
from .logs import LogRecord
from .models import FINAL_STATES, Deployment, Flow, FlowRun, State, StateType

ThreadPoolExecutor = ParentAwareThreadPoolExecutor
"""A drop-in ``concurrent.futures.ThreadPoolExecutor`` that hands the parent run to its tasks."""

__all__ = [
    "ALL_COMPLETED",
    "FINAL_STATES",
    "FIRST_COMPLETED",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
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
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "State",
    "StateType",
    "TLSError",
    "ThreadPoolExecutor",
    "TransportError",
    "__version__",
    "current_parent",
    "parent_run",
    "propagate",
    "run_deployment",
]
