"""Checking the arguments users pass: pure functions, no I/O.

Bad input fails here, before anything is sent, with an
:class:`~deploytrigger.InvalidArgumentError` that names the argument and shows
what is expected.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any, Iterable, Mapping, Optional, Tuple, TypedDict, Union

from ..exceptions import InvalidArgumentError, InvalidArgumentTypeError

PAGE_LIMIT = 200
"""The most rows the server returns per filter request (flow runs, task runs, logs,
deployments), and its default limit."""


NAME_FORM = "a deployment id (UUID) or a name of the form 'flow name/deployment name'"


DeploymentRef = Union[uuid.UUID, Tuple[str, str]]
"""A deployment id, or a (flow name, deployment name) pair."""


class RunOptions(TypedDict, total=False):
    """What describes a run to create: the keywords of ``run_deployment`` but the waiting ones.

    :meth:`Client.run_deployment <deploytrigger.Client.run_deployment>` documents
    each; ``submit``, ``run_many`` and the services take them as one mapping.
    """

    parameters: Optional[Mapping[str, Any]]
    scheduled_time: Optional[datetime]
    flow_run_name: Optional[str]
    tags: Optional[Iterable[str]]
    idempotency_key: Optional[str]
    work_queue_name: Optional[str]
    as_subflow: bool
    job_variables: Optional[Mapping[str, Any]]


def unexpected_keywords(given: Iterable[str], accepted: Iterable[str], where: str) -> None:
    """Refuse keywords that ``where`` does not take, as Python does for a signature.

    Args:
        given: the keywords the caller passed.
        accepted: every keyword ``where`` takes, its named parameters included,
            in the order the message lists them.
        where: what the caller called, as the message names it.

    Raises:
        InvalidArgumentTypeError: a keyword is not among ``accepted``; the message
            suggests the closest accepted name when one is close.
    """
    accepted = list(accepted)
    unknown = sorted(set(given) - set(accepted))
    if not unknown:
        return
    import difflib  # only for a mistake: the common path never loads it

    plural = "s" if len(unknown) > 1 else ""
    names = ", ".join(repr(name) for name in unknown)
    close = {name: difflib.get_close_matches(name, accepted, n=1, cutoff=0.5) for name in unknown}
    guesses = [
        match[0] if len(unknown) == 1 else f"{match[0]} (for {name!r})"
        for name, match in close.items()
        if match
    ]
    takes = f"takes {', '.join(accepted)}"
    hint = f"; did you mean {', '.join(guesses)}? It {takes}" if guesses else f"; it {takes}"
    raise InvalidArgumentTypeError(f"{where} got unexpected keyword argument{plural} {names}{hint}")


def parse_deployment_ref(name: Any) -> DeploymentRef:
    """Read ``name`` as a deployment id or a ``"flow/deployment"`` name.


    Raises:
        InvalidArgumentError: the string is neither form.
        InvalidArgumentTypeError: ``name`` is not a string or UUID.
    """
    if isinstance(name, uuid.UUID):
        return name
    if not isinstance(name, str):
        raise InvalidArgumentTypeError(
            f"name must be {NAME_FORM}, not {type(name).__name__} {name!r}"
        )
    try:
        return uuid.UUID(name)
    except ValueError:
        pass
    parts = name.split("/")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise InvalidArgumentError(
            f"name must be {NAME_FORM}, for example 'etl/nightly'; got {name!r}"
        )
    return parts[0], parts[1]


def as_uuid(value: Any, argument: str) -> uuid.UUID:
    """``value`` (a UUID or a UUID string) as a UUID.


    Raises:
        InvalidArgumentError: a string that is not a UUID.
        InvalidArgumentTypeError: neither a UUID nor a string.
    """
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


def describe_ref(ref: DeploymentRef) -> str:
    """The deployment as a user names it: its id, or ``flow/deployment``."""
    return str(ref) if isinstance(ref, uuid.UUID) else "/".join(ref)


def check_wait_arguments(timeout: Any, poll_interval: Any) -> Optional[float]:
    """Check ``timeout`` and ``poll_interval``; return the timeout as seconds or None.


    ``timeout=None`` (or infinity) waits for a final state; 0 returns at once.
    ``poll_interval=0`` polls without pausing. Each public method that takes them
    (on ``Client`` and ``FlowRunHandle``) calls this once; the layers below take
    the checked values.


    Raises:
        InvalidArgumentError: either is negative or NaN.
        InvalidArgumentTypeError: either is not a number.
    """
    for argument, value in (("timeout", timeout), ("poll_interval", poll_interval)):
        if value is None and argument == "timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgumentTypeError(
                f"`{argument}` must be a number of seconds, not {type(value).__name__} {value!r}"
            )
        if math.isnan(value):
            raise InvalidArgumentError(f"`{argument}` must be a number of seconds, not NaN")
        if value < 0:
            raise InvalidArgumentError(f"`{argument}` cannot be negative (got {value!r})")
        if argument == "poll_interval" and math.isinf(value):
            raise InvalidArgumentError("`poll_interval` must be a finite number of seconds")
    if timeout is None or math.isinf(timeout):
        return None
    return float(timeout)


def check_progress(progress: Any) -> Optional[bool]:
    """``progress`` when it is True, False or None (the client's setting decides).

    Raises:
        InvalidArgumentTypeError: anything else.
    """
    if progress is not None and not isinstance(progress, bool):
        raise InvalidArgumentTypeError(
            f"`progress` must be True, False or None, not {type(progress).__name__} {progress!r}"
        )
    return progress


def check_logs(logs: Any) -> bool:
    """``logs`` when it is True or False.

    Raises:
        InvalidArgumentTypeError: anything else.
    """
    if not isinstance(logs, bool):
        raise InvalidArgumentTypeError(
            f"`logs` must be True or False, not {type(logs).__name__} {logs!r}"
        )
    return logs


def page_limit(limit: Any) -> int:
    """``limit`` when it is a whole number from 1 to :data:`PAGE_LIMIT`.


    Raises:
        InvalidArgumentError: anything else.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= PAGE_LIMIT:
        raise InvalidArgumentError(
            f"limit must be a whole number from 1 to {PAGE_LIMIT}, not {limit!r}"
        )
    return limit
