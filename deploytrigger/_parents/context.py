"""The parent run that new runs are linked to, and how it follows work into threads.

A *parent* is the flow run (optionally a task run inside it) under which
``run_deployment`` links the runs it creates, as Prefect's own
``run_deployment`` does inside a flow. Where the parent comes from, first match
wins:

1. the innermost :func:`parent_run` block of **this thread** (``Client.flow_run``
   pushes one too);
2. a Prefect flow-run or task-run context active in this thread, when Prefect
   is already imported by the process (this module never imports it);
3. ``PREFECT__FLOW_RUN_ID``, which a Prefect worker or runner sets for the
   process it starts for a flow run.

The stack is thread-local: a new thread starts with none of its creator's
parents, and neither do ``concurrent.futures`` workers. Hand the parent over
explicitly with :func:`propagate` or :class:`~deploytrigger.ParentAwareThreadPoolExecutor`;
both capture the parent when the work is *submitted*, so a worker links to the
parent of the code that submitted it. Prefect's own contexts (rule 2) are
``contextvars`` and do not follow into threads either; capturing them is what
those two helpers are for. Nothing follows into other processes, except that
rule 3 applies wherever ``PREFECT__FLOW_RUN_ID`` is inherited.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    MutableMapping,
    Optional,
    Set,
    TypeVar,
    Union,
)

from .._helpers.arguments import as_uuid

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    P = ParamSpec("P")


logger = logging.getLogger("deploytrigger")

T = TypeVar("T")

FLOW_RUN_ID_ENV = "PREFECT__FLOW_RUN_ID"
"""Set by Prefect workers and runners in the process they start for a flow run."""

PrefectKeys = MutableMapping[str, Union[str, int]]
"""Prefect's own per-task_key counters: ``FlowRunContext.task_run_dynamic_keys``."""


@dataclass(frozen=True)
class ParentRun:
    """The run that new runs are linked under.

    Attributes:
        flow_run_id: the parent flow run; placeholders are task runs of this run.
        task_run_id: a task run of that flow run to show as the caller
            (``__parents__`` in Prefect's graph), or None.
        dynamic_key: a fixed dynamic key for the placeholders, as Prefect uses
            for a task-run parent outside any flow-run context (its own
            ``dynamic_key``); None means "count per task_key".
        prefect_keys: Prefect's own counters (``FlowRunContext.task_run_dynamic_keys``)
            when the parent was found in Prefect's context, else None. Left out
            of ``repr`` and comparisons.
        labels: the parent flow run's labels when known without asking the
            server (Prefect's context, a run tracked here), else None; its
            ``__OTEL_TRACEPARENT`` is what children inherit. Left out of
            ``repr`` and comparisons.
    """

    flow_run_id: uuid.UUID
    task_run_id: Optional[uuid.UUID] = None
    dynamic_key: Optional[str] = None
    # Prefect's counter dict when the parent came from its FlowRunContext: shared,
    # so our placeholders and Prefect's own never take the same key.
    prefect_keys: Optional[PrefectKeys] = field(default=None, repr=False, compare=False)
    labels: Optional[Mapping[str, Any]] = field(default=None, repr=False, compare=False)


# -- the thread-local stack ----------------------------------------------------------

_local = threading.local()


def _stack() -> List[ParentRun]:
    stack: Optional[List[ParentRun]] = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


@contextlib.contextmanager
def pushed(parent: ParentRun) -> Iterator[ParentRun]:
    """Make ``parent`` this thread's innermost parent for the block."""
    stack = _stack()
    stack.append(parent)
    try:
        yield parent
    finally:
        # Normally the top; remove by identity in case blocks were left out of order.
        for index in range(len(stack) - 1, -1, -1):
            if stack[index] is parent:
                del stack[index]
                break


@contextlib.contextmanager
def parent_run(
    flow_run_id: Union[uuid.UUID, str],
    *,
    task_run_id: Optional[Union[uuid.UUID, str]] = None,
) -> Iterator[ParentRun]:
    """Link the runs created in this block, in this thread, under ``flow_run_id``.

    Blocks nest; the innermost wins. The parent is popped when the block exits,
    however it exits. Other threads do not see it (see :func:`propagate`).

    Args:
        flow_run_id: the parent flow run.
        task_run_id: a task run of that flow run to show as the caller, if any.

    Yields:
        The :class:`ParentRun` pushed.

    Raises:
        InvalidArgumentError: an id is not a UUID.
    """
    parent = ParentRun(
        flow_run_id=as_uuid(flow_run_id, "flow_run_id"),
        task_run_id=None if task_run_id is None else as_uuid(task_run_id, "task_run_id"),
    )
    with pushed(parent):
        yield parent


def current_parent() -> Optional[ParentRun]:
    """The parent a run created now, in this thread, would be linked under, or None.

    The innermost :func:`parent_run` block of this thread, else what
    :func:`detect_parent` finds.
    """
    stack = _stack()
    if stack:
        return stack[-1]
    return detect_parent()


# -- automatic detection ---------------------------------------------------------------


def detect_parent() -> Optional[ParentRun]:
    """The parent Prefect itself would use here, else ``PREFECT__FLOW_RUN_ID``, else None."""
    parent = _prefect_parent()
    if parent is not None:
        return parent
    return _environment_parent()


def _prefect_parent() -> Optional[ParentRun]:
    """The parent from Prefect's flow-run/task-run context, with Prefect's rules.

    Only when Prefect is already imported: importing it here would cost seconds
    and could never find an active context anyway.
    """
    prefect_context = sys.modules.get("prefect.context")
    if prefect_context is None:
        return None
    try:
        flow_ctx = prefect_context.FlowRunContext.get()
        task_ctx = prefect_context.TaskRunContext.get()
        flow_run: Any = getattr(flow_ctx, "flow_run", None)
        task_run: Any = getattr(task_ctx, "task_run", None)
        if flow_run is not None:
            flow_run_id = uuid.UUID(str(flow_run.id))
        elif task_run is not None and task_run.flow_run_id is not None:
            flow_run_id = uuid.UUID(str(task_run.flow_run_id))
        else:
            return None  # no run, or a task run outside any flow run: nothing to link under
        # A task run is the caller only when it belongs to this flow run.
        task_run_id = None
        if task_run is not None and (
            flow_run is None or str(task_run.flow_run_id) == str(flow_run.id)
        ):
            task_run_id = uuid.UUID(str(task_run.id))
        if flow_run is not None:
            detached = bool(getattr(flow_ctx, "detached", False))
            keys = None if detached else flow_ctx.task_run_dynamic_keys
            labels = getattr(flow_run, "labels", None)  # absent on Prefect 2's models
            known = dict(labels) if isinstance(labels, Mapping) else None
            return ParentRun(flow_run_id, task_run_id, None, keys, known)
        return ParentRun(flow_run_id, task_run_id, str(task_run.dynamic_key))
    except Exception:  # a Prefect version whose contexts look different: do not break the call
        logger.debug("could not read Prefect's run context", exc_info=True)
        return None


def _environment_parent() -> Optional[ParentRun]:
    value = os.environ.get(FLOW_RUN_ID_ENV, "").strip()
    if not value:
        return None
    try:
        return ParentRun(uuid.UUID(value))
    except ValueError:
        logger.warning("ignoring %s=%r: not a flow run id", FLOW_RUN_ID_ENV, value)
        return None


# -- handing the parent to other threads ---------------------------------------------


def propagate(fn: Callable[P, T]) -> Callable[P, T]:
    """Wrap ``fn`` to run under the caller's current parent, in whichever thread calls it.

    The parent is captured now (explicit or detected, see :func:`current_parent`),
    not when ``fn`` runs. Without a current parent ``fn`` runs under no
    explicit parent.
    """
    parent = current_parent()

    @functools.wraps(fn)
    def run_under_parent(*args: P.args, **kwargs: P.kwargs) -> T:
        if parent is None:
            return fn(*args, **kwargs)
        with pushed(parent):
            return fn(*args, **kwargs)

    return run_under_parent


# -- dynamic keys ------------------------------------------------------------------------


class _Counters:
    """The next dynamic key per task_key for one parent flow run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next: Optional[Dict[str, int]] = None  # None until seeded


class DynamicKeys:
    """Per (parent flow run, task_key) counters giving "0", "1", ... as Prefect does.

    Thread-safe. For a parent whose counters live in Prefect's flow-run
    context, those are used (under this object's lock), so keys taken by
    Prefect's own calls are never taken again. For a parent known only by id,
    the first key asked for reads which keys the parent's task runs already
    use on the server (``used_keys``, once per parent) and counts on from the
    highest numeric one. Parents this process created itself start at 0 with
    no query (:meth:`mark_new`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parents: Dict[uuid.UUID, _Counters] = {}
        self._new: Set[uuid.UUID] = set()

    def mark_new(self, flow_run_id: uuid.UUID) -> None:
        """Record that ``flow_run_id`` was just created here, so it has no task runs yet."""
        with self._lock:
            self._parents.pop(flow_run_id, None)
            self._new.add(flow_run_id)

    def forget(self, flow_run_id: uuid.UUID) -> None:
        """Drop the counters of a parent; a later use reads the server again."""
        with self._lock:
            self._parents.pop(flow_run_id, None)
            self._new.discard(flow_run_id)

    def next_key(
        self,
        parent: ParentRun,
        task_key: str,
        used_keys: Callable[[], Iterable[Any]],
    ) -> str:
        """The dynamic key for the next placeholder with ``task_key`` under ``parent``.

        Args:
            parent: the parent run.
            task_key: the placeholder's task key.
            used_keys: returns ``(task_key, dynamic_key)`` pairs of the parent's
                existing task runs; called at most once per parent, and only when
                the counters are not known otherwise.
        """
        if parent.dynamic_key is not None:
            return parent.dynamic_key
        if parent.prefect_keys is not None:
            return self._next_prefect_key(parent.prefect_keys, task_key)
        with self._lock:
            counters = self._parents.setdefault(parent.flow_run_id, _Counters())
            new = parent.flow_run_id in self._new
        with counters.lock:
            if counters.next is None:
                counters.next = {} if new else _next_keys(used_keys())
            key = counters.next.get(task_key, 0)
            counters.next[task_key] = key + 1
        return str(key)

    def _next_prefect_key(self, keys: PrefectKeys, task_key: str) -> str:
        # Prefect's rule: the first call stores 0, each later one adds 1.
        with self._lock:
            current = keys.get(task_key)
            key = 0 if current is None else int(current) + 1
            keys[task_key] = key
        return str(key)


def _next_keys(used: Iterable[Any]) -> Dict[str, int]:
    """For each task_key, one past the highest numeric dynamic key in ``used``."""
    result: Dict[str, int] = {}
    for task_key, dynamic_key in used:
        text = str(dynamic_key)
        if text.isdigit():
            result[task_key] = max(result.get(task_key, 0), int(text) + 1)
    return result


DYNAMIC_KEYS = DynamicKeys()
"""The process's counters, shared by every :class:`~deploytrigger.Client`."""
