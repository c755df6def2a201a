"""Module-level functions: the given :class:`Client`, or the default client, does the work.

Without ``client=`` they use the process-wide default client
(:func:`~deploytrigger.default_client`): made once per configuration, shared by every thread,
fork-safe, so that a steady-state trigger costs one request as it does with
a long-lived :class:`Client`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Union

from ._default_clients import default_client
from .client import Client
from .exceptions import InvalidArgumentTypeError
from .models import FlowRun

if TYPE_CHECKING:
    from ._handles.batch import RunRef

__all__ = ["read_result", "run_deployment"]


def _client_for(client: Optional[Client]) -> Client:
    """``client`` itself, or the default client for the configuration in force now."""
    if client is None:
        return default_client()
    if not isinstance(client, Client):
        raise InvalidArgumentTypeError(
            f"client must be a deploytrigger.Client or None, not {type(client).__name__}"
        )
    return client


def run_deployment(
    name: Union[str, uuid.UUID],
    client: Optional[Client] = None,
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

    With ``client=None`` the default client is used: the one for the options
    of :func:`~deploytrigger.configure` and the environment (``PREFECT_API_URL``
    ...) as they are now, made on first use and then reused by every call and
    thread of this process (not by its forked children). A given ``client``
    wins. The other arguments are those of
    :meth:`Client.run_deployment`, with Prefect's semantics: ``timeout=0``
    returns the new run at once, ``timeout=None`` waits for a final state, a
    positive timeout returns the run in whatever state it has when time runs out,
    unless ``cancel_on_timeout`` (then it is cancelled first); with
    ``cancel_on_interrupt`` a ``KeyboardInterrupt`` while waiting cancels the run
    before propagating; ``progress`` shows the run while waiting (by default a
    live view in a Jupyter kernel, nothing elsewhere); ``logs=True`` shows the
    run's log lines as they arrive.

    Raises:
        DeployTriggerError: see :meth:`Client.run_deployment`.
    """
    return _client_for(client).run_deployment(
        name,
        parameters=parameters,
        scheduled_time=scheduled_time,
        flow_run_name=flow_run_name,
        timeout=timeout,
        poll_interval=poll_interval,
        tags=tags,
        idempotency_key=idempotency_key,
        work_queue_name=work_queue_name,
        as_subflow=as_subflow,
        job_variables=job_variables,
        cancel_on_timeout=cancel_on_timeout,
        cancel_on_interrupt=cancel_on_interrupt,
        progress=progress,
        logs=logs,
    )


def read_result(
    flow_run: RunRef, client: Optional[Client] = None, *, allow_pickle: bool = False
) -> Any:
    """The return value of a finished run, as :meth:`Client.read_result` reads it.

    With ``client=None`` the default client is used (see :func:`run_deployment`).
    A result in a storage block other than ``local-file-system`` needs a client
    made with ``result_reader=`` (``configure(result_reader=...)`` gives the
    default client one).
    """
    return _client_for(client).read_result(flow_run, allow_pickle=allow_pickle)
