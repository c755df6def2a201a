"""Waiting for many runs at once, and starting many at once.

One poll of a batch is one ``POST /flow_runs/filter`` per 200 runs still
pending (:data:`~deploytrigger._helpers.arguments.PAGE_LIMIT`, the server's cap), never
one request per run: waiting on 500 runs costs 3 requests per poll interval.
The loop is the poll engine's (``_waits/engine.py``), outage tolerance included.

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
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Set,
    Tuple,
    Union,
)

from .._helpers.arguments import RunOptions, parse_deployment_ref, unexpected_keywords
from .._helpers.deadline import Deadline
from .._parents.context import propagate
from .._waits.engine import ALL_COMPLETED, FIRST_COMPLETED, NOTHING
from .._waits.run_reader import RunReader
from ..exceptions import FlowRunTimeoutError, InvalidArgumentError, InvalidArgumentTypeError
from ..models import FlowRun
from .handles import FlowRunHandle, read_existing

logger = logging.getLogger("deploytrigger")

RunRef = Union[FlowRunHandle, FlowRun, uuid.UUID, str]
"""A run to wait for: a handle, a run, or a flow run id (UUID or string)."""

Call = Union[str, uuid.UUID, Mapping[str, Any], Tuple[Union[str, uuid.UUID], Mapping[str, Any]]]
"""One ``run_many`` call: a deployment name, ``{"name": ..., **options}`` or ``(name, options)``."""

Submit = Callable[..., FlowRunHandle]
"""Creates one run and returns its handle: ``submit(name, poll_interval=..., **options)``."""


class DoneAndNotDone(NamedTuple):
    """What ``wait_all`` returns: handles in the order given, split by whether final."""

    done: List[FlowRunHandle]
    not_done: List[FlowRunHandle]


class _Batch:
    """The runs one wait is about, and one poll of the pending ones.

    Runs given by id get their handle from the first poll (which reads them
    anyway), so that poll costs no extra request; runs given as :class:`FlowRun`
    get one at once.
    """

    def __init__(self, reader: RunReader, refs: Iterable[RunRef], poll_interval: float) -> None:
        self.reader = reader
        self.poll_interval = poll_interval
        self.entries: List[Union[FlowRunHandle, uuid.UUID]] = []
        seen: Set[object] = set()
        for ref in refs:
            entry: Union[FlowRunHandle, uuid.UUID]
            if isinstance(ref, FlowRun):  # seen already: what an outage falls back on
                entry = FlowRunHandle(reader, ref, poll_interval=poll_interval)
            else:
                entry = ref if isinstance(ref, FlowRunHandle) else _run_id(ref)
            # A handle of the caller's is its own entry; runs and ids dedupe by id.
            key: object = id(ref) if isinstance(ref, FlowRunHandle) else _key(entry)
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

    def pending_ids(self) -> List[uuid.UUID]:
        """The ids of the runs not known to be final (what the events listener watches)."""
        return [
            _key(entry)
            for entry in self.entries
            if not (isinstance(entry, FlowRunHandle) and entry.done())
        ]

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
        runs = read_existing(self.reader, list(wanted), deadline)
        for index, entry in enumerate(self.entries):
            if not isinstance(entry, FlowRunHandle):
                self.entries[index] = FlowRunHandle(
                    self.reader, runs[entry], poll_interval=self.poll_interval
                )
        for run_id, handles in wanted.items():
            for handle in handles:
                handle._observe(runs[run_id])


def _key(entry: Union[FlowRunHandle, uuid.UUID]) -> uuid.UUID:
    return entry.id if isinstance(entry, FlowRunHandle) else entry


def _run_id(ref: Any) -> uuid.UUID:
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
    *,
    progress: Optional[bool] = None,
    all_final: bool = False,
) -> Iterator[bool]:
    """Poll the batch until ``satisfied()`` or the deadline passes; yield after each poll.

    ``all_final``: only the final events of all pending runs wake the wait early
    (``engine.Wakeups.watch``), for a wait that needs every one of them.
    ``progress``: the wait's (``_progress/view.py``); it shows each poll's runs.

    Sends nothing when the runs are all known and already satisfy the wait.
    Through an outage the runs stay as last seen (once each is known).
    """
    if batch.resolved() and satisfied():
        return
    from .._progress.view import open_progress

    def fetch() -> bool:
        batch.poll_once(deadline)
        shown.show([handle.flow_run for handle in batch.handles])
        return satisfied()

    known = satisfied() if batch.resolved() else NOTHING
    with open_progress(progress, batch.reader.poller) as shown:
        yield from batch.reader.poller.rounds(
            fetch,
            bool,
            deadline=deadline,
            interval=interval,
            known=known,
            runs=batch.pending_ids,
            all_final=all_final,
        )


def wait_all(
    reader: RunReader,
    refs: Iterable[RunRef],
    *,
    timeout: Optional[float] = None,
    poll_interval: float = 5,
    return_when: str = ALL_COMPLETED,
    progress: Optional[bool] = None,
) -> DoneAndNotDone:
    """Wait for runs as ``concurrent.futures.wait`` does; see :meth:`Client.wait_all`.

    ``timeout``, ``poll_interval`` and ``progress`` come checked by the client,
    as in every function here (``check_wait_arguments``, ``check_progress``).
    """
    if return_when not in (FIRST_COMPLETED, ALL_COMPLETED):
        raise InvalidArgumentError(
            f"return_when must be FIRST_COMPLETED or ALL_COMPLETED, not {return_when!r}"
        )
    batch = _Batch(reader, refs, float(poll_interval))

    def satisfied() -> bool:
        handles = batch.handles
        if return_when == FIRST_COMPLETED and any(handle.done() for handle in handles):
            return True
        return all(handle.done() for handle in handles)

    deadline = reader.poller.deadline(timeout)
    every = return_when == ALL_COMPLETED
    polls = _poll_until(
        batch, satisfied, deadline, float(poll_interval), progress=progress, all_final=every
    )
    for _ in polls:
        pass
    done: List[FlowRunHandle] = []
    not_done: List[FlowRunHandle] = []
    for handle in batch.handles:
        (done if handle.done() else not_done).append(handle)
    return DoneAndNotDone(done, not_done)


def as_completed(
    reader: RunReader,
    refs: Iterable[RunRef],
    *,
    timeout: Optional[float] = None,
    poll_interval: float = 5,
    progress: Optional[bool] = None,
) -> Iterator[FlowRun]:
    """Yield runs as they turn final; see :meth:`Client.as_completed`."""
    batch = _Batch(reader, refs, float(poll_interval))
    deadline = reader.poller.deadline(timeout)
    yielded: Set[int] = set()

    def newly_done() -> List[FlowRunHandle]:
        fresh = [h for h in batch.handles if h.done() and id(h) not in yielded]
        # Within one poll, in the order the runs ended (then the order given).
        order = {id(h): index for index, h in enumerate(batch.handles)}
        return sorted(fresh, key=lambda h: (_end_key(h.flow_run), order[id(h)]))

    def all_done() -> bool:
        return batch.resolved() and not batch.pending()

    def release() -> Iterator[FlowRun]:
        for handle in newly_done():
            yielded.add(id(handle))
            yield handle.flow_run

    yield from release()  # runs already final come first, before any request
    for _ in _poll_until(batch, all_done, deadline, float(poll_interval), progress=progress):
        yield from release()
    pending = batch.pending()
    if pending:
        raise FlowRunTimeoutError(
            f"{len(pending)} of {len(batch.handles)} flow runs were not final after "
            f"{timeout or 0:g}s; first: {pending[0].id} ({pending[0].flow_run.name}) "
            f"is {pending[0].state.name if pending[0].state else 'without a state'}",
            not_done=[handle.flow_run for handle in pending],
            timeout=timeout,
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
    # Checked here, not by submit, so that the message names what the caller called.
    unexpected_keywords(
        options, ("poll_interval", *RunOptions.__annotations__), f"run_many's calls[{index}]"
    )
    return name, options


def run_many(
    reader: RunReader,
    submit: Submit,
    prepare: Callable[[Any], object],
    calls: Iterable[Call],
    *,
    max_workers: int = 16,
    timeout: Optional[float] = None,
    poll_interval: float = 5,
    progress: Optional[bool] = None,
) -> List[FlowRun]:
    """Trigger calls from a thread pool, then batch-wait; see :meth:`Client.run_many`.

    Args:
        reader: reads the runs while waiting.
        submit: creates one run (``Client.submit``).
        prepare: called once per distinct deployment before any run is created
            (it resolves the deployment, so that an unknown one fails first and
            the workers find it cached).
        calls: the calls, as :data:`Call`.
        max_workers: threads that create runs.
        timeout: seconds to wait for the runs; 0 returns them as created.
        poll_interval: seconds between polls.
        progress: show the wait's progress (``_progress/view.py``).
    """
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise InvalidArgumentError(f"max_workers must be a positive int, not {max_workers!r}")
    normalized = [_normalize_call(call, index) for index, call in enumerate(calls)]
    if not normalized:
        return []
    for ref in dict.fromkeys(parse_deployment_ref(name) for name, _ in normalized):
        prepare(ref)
    # Workers are new threads: hand them the caller's parent run (context.py).
    submit_here = propagate(submit)
    with ThreadPoolExecutor(
        max_workers=min(max_workers, len(normalized)), thread_name_prefix="deploytrigger"
    ) as pool:
        futures = [
            pool.submit(submit_here, name, **{"poll_interval": poll_interval, **options})
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
    if timeout != 0:
        wait_all(reader, handles, timeout=timeout, poll_interval=poll_interval, progress=progress)
    return [handle.flow_run for handle in handles]
