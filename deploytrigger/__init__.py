"""deploytrigger: start a Prefect deployment from plain synchronous Python, get the run back.

>>> import deploytrigger
>>> run = deploytrigger.run_deployment("etl/nightly", parameters={"day": "2026-11-23"})
>>> run.state.type
<StateType.COMPLETED: 'COMPLETED'>
"""

__version__ = "0.1.0"

from .api import run_deployment
from .client import Client
from .exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
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
from .models import FINAL_STATES, Deployment, Flow, FlowRun, State, StateType

__all__ = [
    "FINAL_STATES",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConfigurationError",
    "ConnectionFailedError",
    "DeployTriggerError",
    "Deployment",
    "DeploymentNotFoundError",
    "Flow",
    "FlowRun",
    "FlowRunNotFoundError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidResponseError",
    "NotFoundError",
    "ParameterRejectedError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerError",
    "State",
    "StateType",
    "TLSError",
    "TransportError",
    "__version__",
    "run_deployment",
]
