"""Waiting for many runs at once, and starting many at once.

One poll of a batch is one ``POST /flow_runs/filter`` per :data:`FILTER_LIMIT`
(200, the server's cap) runs still pending, never one request per run: waiting
on 500 runs costs 3 requests per poll interval. The loop itself is
``waiting.poll`` with the client's injected ``sleep`` and ``clock``.

``wait_all`` mirrors ``concurrent.futures.wait`` (``return_when``
:data:`FIRST_COMPLETED` or :data:`ALL_COMPLETED`), ``as_completed`` mirrors
``concurrent.futures.as_completed`` and ``run_many`` triggers a list of calls
from a thread pool, under the caller's parent run, then waits for them all.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from .context import propagate
from .exceptions import (
    FlowRunNotFoundError,
    FlowRunTimeoutError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from .handles import FlowRunHandle
from .models import FlowRun
from .payloads import check_wait_arguments, parse_deployment_ref
from .waiting import ALL_COMPLETED, FIRST_COMPLETED, Deadline, poll

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "ALL_COMPLETED",
    "FILTER_LIMIT",
    "FIRST_COMPLETED",
    "Call",
    "DoneAndNotDone",
    "RunRef",
    "as_completed",
    "chunked",
    "run_many",
    "wait_all",
]

logger = logging.getLogger("deploytrigger")

T = TypeVar("T")

FILTER_LIMIT = 200
"""Most runs one ``POST /flow_runs/filter`` may return: the server refuses a higher limit."""

RunRef = Union[FlowRunHandle, FlowRun, uuid.UUID, str]
"""A run to wait for: a handle, or a flow run id (UUID or string)."""

Call = Union[str, uuid.UUID, Mapping[str, Any], Tuple[Union[str, uuid.UUID], Mapping[str, Any]]]
"""One ``run_many`` call: a deployment name, ``{"name": ..., **options}`` or ``(name, options)``."""

_TRANSIENT = (TransportError, ServerError, RateLimitedError)


class DoneAndNotDone(NamedTuple):
    """What ``wait_all`` returns: handles in the order given, split by whether final."""

    done: List[FlowRunHandle]
    not_done: List[FlowRunHandle]


def chunked(items: Sequence[T], size: int = FILTER_LIMIT) -> Iterator[List[T]]:
    """``items`` in consecutive lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class _Batch:
    """The runs one wait is about, and one poll of the pending ones.

    Runs given by id get their handle from the first poll (which reads them
    anyway), so that poll costs no extra request.
    """

    def __init__(self, client: Client, refs: Iterable[RunRef], poll_interval: float) -> None:
        self.client = client
        self.poll_interval = poll_interval
        self.entries: List[Union[FlowRunHandle, uuid.UUID]] = []
        seen: Set[object] = set()
        for ref in refs:
            entry = ref if isinstance(ref, FlowRunHandle) else _run_id(ref)
            key: object = id(entry) if isinstance(entry, FlowRunHandle) else entry
            if key not in seen:
                seen.add(key)
                self.entries.append(entry)

    @property
    def handles(self) -> List[FlowRunHandle]:
        """The handles, in the order given (all of them once polled once)."""
        return [entry for entry in self.entries if isinstance(entry, FlowRunHandle)]

    def resolved(self) -> bool:
        return all(isinstance(entry, FlowRunHandle) for entry in self.entries)

    def pending(self) -> List[FlowRunHandle]:
        return [handle for handle in self.handles if not handle.done()]

    def poll_once(self, deadline: Optional[Deadline]) -> None:
        """Read every pending run (one request per 200) and update the handles."""
        wanted: Dict[uuid.UUID, List[FlowRunHandle]] = {}
        for entry in self.entries:
            if isinstance(entry, FlowRunHandle):
                if not entry.done():
                    wanted.setdefault(entry.id, []).append(entry)
            else:
                wanted.setdefault(entry, [])
        if not wanted:
            return
        runs = {run.id: run for run in self.client._read_flow_runs(list(wanted), deadline)}
        missing = [run_id for run_id in wanted if run_id not in runs]
        if missing:
            error = FlowRunNotFoundError(
                f"flow run {missing[0]} was not found"
                + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""),
                status_code=404,
                detail="Flow run not found",
                method="POST",
                url=self.client.settings.api_url + "/flow_runs/filter",
            )
            error.flow_run_id = str(missing[0])
            raise error
        for index, entry in enumerate(self.entries):
            if not isinstance(entry, FlowRunHandle):
                self.entries[index] = FlowRunHandle(
                    self.client, runs[entry], poll_interval=self.poll_interval
                )
        for run_id, handles in wanted.items():
            for handle in handles:
                handle._observe(runs[run_id])


def _run_id(ref: Any) -> uuid.UUID:
    if isinstance(ref, FlowRun):
        return ref.id
    if isinstance(ref, uuid.UUID):
        return ref
    if isinstance(ref, str):
        try:
            return uuid.UUID(ref)
        except ValueError:
            raise InvalidArgumentError(f"not a flow run id: {ref!r}") from None
    raise InvalidArgumentTypeError(
        f"expected a FlowRunHandle, a FlowRun or a flow run id, not {type(ref).__name__}"
    )


def _poll_until(
    batch: _Batch,
    satisfied: Callable[[], bool],
    deadline: Deadline,
    interval: float,
    sleep: Callable[[float], None],
) -> bool:
    """Poll the batch until ``satisfied()`` or the deadline passes.

    Polls at least once when some runs are known only by id. When the server
    cannot be reached at the deadline, the runs stay as last seen.

    Returns:
        Whether any request was sent.
    """

    def step() -> bool:
        try:
            batch.poll_once(deadline)
        except _TRANSIENT:
            if deadline.passed() and batch.resolved():
                return satisfied()
            raise
        return satisfied()

    if batch.resolved() and satisfied():
        return False
    poll(step, bool, deadline=deadline, interval=interval, sleep=sleep)
    return True


def wait_all(
    client: Client,
    refs: Iterable[RunRef],
    *,
    timeout: Optional[float] = None,
    poll_interval: float = 5,
    return_when: str = ALL_COMPLETED,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> DoneAndNotDone:
    """Wait for runs as ``concurrent.futures.wait`` does; see :meth:`Client.wait_all`."""
    wait_timeout = check_wait_arguments(timeout, poll_interval)
    if return_when not in (FIRST_COMPLETED, ALL_COMPLETED):
        raise InvalidArgumentError(
            f"return_when must be FIRST_COMPLETED or ALL_COMPLETED, not {return_when!r}"
        )
    batch = _Batch(client, refs, float(poll_interval))

    def satisfied() -> bool:
        handles = batch.handles
        if return_when == FIRST_COMPLETED and any(handle.done() for handle in handles):
            return True
        return all(handle.done() for handle in handles)

    deadline = Deadline(wait_timeout, clock)
    _poll_until(batch, satisfied, deadline, float(poll_interval), sleep)
    done: List[FlowRunHandle] = []
    not_done: List[FlowRunHandle] = []
    for handle in batch.handles:
        (done if handle.done() else not_done).append(handle)
    return DoneAndNotDone(done, not_done)


def as_completed(
    client: Client,
    refs: Iterable[RunRef],
    *,
    timeout: Optional[float] = None,
    poll_interval: float = 5,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> Iterator[FlowRun]:
    """Yield runs as they turn final; see :meth:`Client.as_completed`."""
    wait_timeout = check_wait_arguments(timeout, poll_interval)
    interval = float(poll_interval)
    batch = _Batch(client, refs, interval)
    deadline = Deadline(wait_timeout, clock)
    yielded: Set[int] = set()

    def newly_done() -> List[FlowRunHandle]:
        fresh = [h for h in batch.handles if h.done() and id(h) not in yielded]
        # Within one poll, in the order the runs ended (then the order given).
        order = {id(h): index for index, h in enumerate(batch.handles)}
        return sorted(fresh, key=lambda h: (_end_key(h.flow_run), order[id(h)]))

    polled = False
    while True:
        if polled:
            # Between rounds, the pause ``poll`` makes between its own polls.
            remaining = deadline.remaining()
            sleep(interval if remaining is None else min(interval, remaining))
        polled = _poll_until(batch, lambda: bool(newly_done()), deadline, interval, sleep)
        ready = newly_done()
        for handle in ready:
            yielded.add(id(handle))
            yield handle.flow_run
        pending = batch.pending()
        if not pending:
            return
        if not ready or deadline.passed():
            raise FlowRunTimeoutError(
                f"{len(pending)} of {len(batch.handles)} flow runs were not final after "
                f"{wait_timeout or 0:g}s; first: {pending[0].id} ({pending[0].flow_run.name}) "
                f"is {pending[0].state.name if pending[0].state else 'without a state'}",
                not_done=[handle.flow_run for handle in pending],
                timeout=wait_timeout,
            )


def _end_key(run: FlowRun) -> float:
    when = run.end_time or (run.state.timestamp if run.state else None)
    return when.timestamp() if when is not None else float("inf")


def _normalize_call(call: Any, index: int) -> Tuple[Union[str, uuid.UUID], Dict[str, Any]]:
    """``(name, options)`` for one ``run_many`` call, checked before anything is sent."""
    if isinstance(call, (str, uuid.UUID)):
        return call, {}
    if isinstance(call, Mapping):
        options = dict(call)
        if "name" not in options:
            raise InvalidArgumentError(f"calls[{index}] has no 'name': {call!r}")
        name = options.pop("name")
    elif isinstance(call, tuple) and len(call) == 2 and isinstance(call[1], Mapping):
        name, options = call[0], dict(call[1])
    else:
        raise InvalidArgumentTypeError(
            f"calls[{index}] must be a deployment name, a dict with 'name' and "
            f"run_deployment options, or a (name, options) pair; not {call!r}"
        )
    if "timeout" in options:
        raise InvalidArgumentError(
            f"calls[{index}] sets 'timeout': run_many's own timeout applies to every call"
        )
    return name, options


def run_many(
    client: Client,
    calls: Iterable[Call],
    *,
    max_workers: int = 16,
    timeout: Optional[float] = None,
    poll_interval: float = 5,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> List[FlowRun]:
    """Trigger calls from a thread pool, then batch-wait; see :meth:`Client.run_many`."""
    wait_timeout = check_wait_arguments(timeout, poll_interval)
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidArgumentError(f"max_workers must be a positive int, not {max_workers!r}")
    normalized = [_normalize_call(call, index) for index, call in enumerate(calls)]
    if not normalized:
        return []
    # Resolve each deployment once here, not once per worker on a cold cache; an
    # unknown deployment fails before any run is created.
    for ref in dict.fromkeys(parse_deployment_ref(name) for name, _ in normalized):
        client._resolve_deployment(ref)
    # Workers are new threads: hand them the caller's parent run (context.py).
    submit = propagate(client.submit)
    with ThreadPoolExecutor(
        max_workers=min(max_workers, len(normalized)), thread_name_prefix="deploytrigger"
    ) as pool:
        futures = [
            pool.submit(submit, name, **{"poll_interval": poll_interval, **options})
            for name, options in normalized
        ]
    handles: List[FlowRunHandle] = []
    for index, future in enumerate(futures):
        error = future.exception()
        if error is not None:
            created = sum(1 for f in futures if f.exception() is None)
            logger.warning(
                "run_many: calls[%d] failed; %d other runs were created and keep going",
                index,
                created,
            )
            raise error
        handles.append(future.result())
    if wait_timeout != 0:
        wait_all(
            client,
            handles,
            timeout=wait_timeout,
            poll_interval=poll_interval,
            sleep=sleep,
            clock=clock,
        )
    return [handle.flow_run for handle in handles]
