"""The poll engine every wait uses: a fixed interval, a deadline, and patience through outages.

Polling is configured apart from per-request retrying (see ``retries.py``):
this engine asks "is it done yet?" at a fixed interval; the other retries one
request that failed. One transient-error policy serves every wait
(``run_deployment``, handles, batches, log following, the CLI): when a poll
fails because the server cannot answer (a connection failure, a 5xx or a 429
still failing after the request's own retries), the wait keeps the last
result it saw and polls on, for up to ``outage_tolerance`` seconds of
continuous failure (counted from the start of the first failed poll, so that
a poll's own retries count too); then the error is raised. A wait whose
deadline passes during an outage ends with what it last saw. The outage is
logged: a WARNING at the first failed poll saying how long the wait keeps
trying, again at most once every :data:`OUTAGE_WARNING_EVERY` seconds, and
an INFO line when the server answers again.

Nothing here sends a request: ``fetch`` is the caller's. Time is injected
(:class:`Poller`'s ``sleep`` and ``clock``) so tests never sleep. The loop is
plain Python rather than a tenacity ``Retrying``: it yields every poll's result
(log following and ``as_completed`` show each one), a failed poll during an
outage stands for the last result instead of ending the attempt, and the pause
may be cut short by an event; tenacity would carry each of these as a callback.

**Wakeable.** A poller may hold :class:`Wakeups` (the client's events listener,
``events.py``). A wait that names the runs it is about (``runs=``) then opens a
:class:`Watch` on them *before* its first poll and pauses on the watch instead
of ``sleep``: the fixed interval stays the safety net, and a final-state event
for one of its runs (or a reconnect of the stream, after which events may have
been missed) cuts the pause short. A wait that needs every run final
(``all_final=True``: ``wait_all``, ``run_many``) is woken once all of them
had their event, so a batch of 200 runs finishing over a minute costs one read,
not one per event. The wait then polls, so what it returns is
always the server's record, never an event's word. An event is published
before the server commits the state: when the record read after a final event
is not final yet, the next poll comes after :data:`RECHECK_INTERVAL` instead of
a whole interval, at most :data:`RECHECK_LIMIT` times per wait. Without wakeups,
or once the listener has given up, every wait is the plain polling wait.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import (
    AbstractSet,
    Callable,
    Collection,
    Iterator,
    Optional,
    Protocol,
    TypeVar,
    Union,
)

from .._helpers.deadline import Deadline
from .._helpers.display import about
from ..exceptions import RateLimitedError, ServerError, TransportError

logger = logging.getLogger("deploytrigger")

T = TypeVar("T")

FIRST_COMPLETED = "FIRST_COMPLETED"
"""``return_when``: return as soon as any run is final."""

ALL_COMPLETED = "ALL_COMPLETED"
"""``return_when``: return when every run is final (the default)."""

DEFAULT_OUTAGE_TOLERANCE = 300.0
"""Seconds a wait polls on through a server that cannot answer before raising."""


OUTAGE_WARNING_EVERY = 60.0
"""Seconds between the warnings of one wait about the same outage."""

RECHECK_INTERVAL = 0.05
"""Seconds before re-reading a run whose final event came before its record was final."""

RECHECK_LIMIT = 100
"""Quick re-reads per wait after final events (5 s at 0.05 s), then the interval again."""


class Watch(Protocol):
    """One wait's interest in some runs: a pause that a final-state event can cut short."""

    @property
    def active(self) -> bool:
        """False once the listener gave up (or was closed): the wait falls back on ``sleep``."""
        ...

    def update(self, run_ids: Collection[uuid.UUID]) -> None:
        """The runs the wait is still waiting on (fewer as they finish)."""
        ...

    def wait(self, timeout: float) -> bool:
        """Pause up to ``timeout`` seconds; True when woken early (an event, a reconnect)."""
        ...

    def finals(self) -> AbstractSet[uuid.UUID]:
        """The runs a final-state event was seen for since the watch opened."""
        ...

    def close(self) -> None:
        """The wait is over: forget its runs."""
        ...


class Wakeups(Protocol):
    """What can wake waits early: the client's events listener (``events.py``)."""

    def watch(self, run_ids: Collection[uuid.UUID], *, all_final: bool = False) -> Optional[Watch]:
        """Start watching ``run_ids``; None when there is no stream to listen to.

        With ``all_final``, final events wake the wait only once every run it
        still waits on has had one (a wait for all of them); a reconnect
        always wakes it.
        """
        ...


class _Nothing:
    """The type of :data:`NOTHING`."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING = _Nothing()
"""``known=NOTHING``: no earlier result to fall back on during an outage."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failed poll means "the server cannot answer now" rather than "no"."""
    return isinstance(exc, (TransportError, ServerError, RateLimitedError))


@dataclass(frozen=True)
class Poller:
    """How every wait paces itself: how it sleeps, its clock, its patience with outages.

    Args:
        sleep: how to pause between polls (tests inject a fake).
        clock: a monotonic clock in seconds (tests inject a fake).
        outage_tolerance: seconds of continuous transient failure a wait
            outlives before it raises (see the module docstring).
        wakeups: what wakes a wait early (the events listener); None: plain polling.
        progress: whether waits show their progress when they are not told:
            ``"auto"``, ``"on"`` or ``"off"`` (the client's ``progress`` setting).
    """

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE
    wakeups: Optional[Wakeups] = None
    progress: str = "auto"

    def __repr__(self) -> str:
        return (
            f"Poller(outage_tolerance={self.outage_tolerance!r}, "
            f"wakeups={'on' if self.wakeups is not None else 'off'})"
        )

    def deadline(self, timeout: Optional[float]) -> Deadline:
        """A deadline ``timeout`` seconds from now on this poller's clock (None: none)."""
        return Deadline(timeout, self.clock)

    def rounds(
        self,
        fetch: Callable[[], T],
        is_done: Callable[[T], bool],
        *,
        deadline: Deadline,
        interval: float,
        known: Union[T, _Nothing] = NOTHING,
        runs: Optional[Callable[[], Collection[uuid.UUID]]] = None,
        all_final: bool = False,
    ) -> Iterator[T]:
        """Yield each poll's result until one is done or the deadline passes.

        The first poll happens at once; each later one ``interval`` seconds
        after the previous answer, the last pause cut short at the deadline so
        that one final poll sees the state at the deadline. During an outage
        the last result (or ``known``, before the first) stands in for the poll
        that failed, and is yielded again: consumers that yield events compare
        by identity. ``runs`` gives the ids of the runs still pending (asked
        before the first poll and after each): with it and :attr:`wakeups`, a
        final-state event of one of them cuts a pause short, or, with
        ``all_final``, the events of all of them (module docstring).

        Raises:
            Whatever ``fetch`` raises that is not transient; a transient error
            when there is no earlier result, or once the outage has lasted
            ``outage_tolerance`` seconds.
        """
        outage = _Outage(self, deadline)
        pace = _Pace(self, runs, interval, all_final=all_final)  # watching before the first poll
        try:
            latest = outage.poll(fetch, known)
            yield latest
            while not is_done(latest) and not deadline.passed():
                pace.pause(deadline)
                latest = outage.poll(fetch, latest)
                yield latest
        finally:
            pace.close()

    def poll(
        self,
        fetch: Callable[[], T],
        is_done: Callable[[T], bool],
        *,
        deadline: Deadline,
        interval: float,
        known: Union[T, _Nothing] = NOTHING,
        runs: Optional[Callable[[], Collection[uuid.UUID]]] = None,
    ) -> T:
        """The first done result of :meth:`rounds`, or the last one when the deadline passed."""
        for result in self.rounds(
            fetch, is_done, deadline=deadline, interval=interval, known=known, runs=runs
        ):
            latest = result
        return latest  # rounds yields at least once, or raises


class _Pace:
    """The pause between one wait's polls: ``sleep``, or a :class:`Watch` that events cut short.

    The watch opens here, before the first poll, so that an event that comes
    while the first answer is on its way is not missed.
    """

    def __init__(
        self,
        poller: Poller,
        runs: Optional[Callable[[], Collection[uuid.UUID]]],
        interval: float,
        *,
        all_final: bool = False,
    ) -> None:
        self._sleep = poller.sleep
        self._runs = runs
        self._interval = interval
        self._all_final = all_final
        self._rechecks = 0
        self._watch: Optional[Watch] = None
        if runs is not None and poller.wakeups is not None and interval > 0:
            self._watch = poller.wakeups.watch(runs(), all_final=all_final)

    def pause(self, deadline: Deadline) -> None:
        """Pause before the next poll, at most until the deadline."""
        watch = self._watch
        if watch is None or self._runs is None or not watch.active:
            self._sleep(deadline.cap(self._interval))
            return
        pending = set(self._runs())
        watch.update(pending)
        # Final by an event, not yet by the record: the state is being committed. A wait
        # for all its runs re-reads only once every one of them is final by its event.
        finals = watch.finals()
        if self._all_final:
            unconfirmed = bool(pending) and pending <= finals
        else:
            unconfirmed = bool(pending & finals)
        seconds = self._interval
        if unconfirmed and self._rechecks < RECHECK_LIMIT:
            self._rechecks += 1
            seconds = min(self._interval, RECHECK_INTERVAL)
        watch.wait(deadline.cap(seconds))

    def close(self) -> None:
        """The wait is over: close its watch."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None


class _Outage:
    """One wait's patience with a server that cannot answer: since when it has not, and
    what was said about it."""

    def __init__(self, poller: Poller, deadline: Deadline) -> None:
        self._poller = poller
        self._deadline = deadline
        self._since: Optional[float] = None  # when the first failed poll of the outage began
        self._warned: Optional[float] = None  # when the outage was last warned about

    def poll(self, fetch: Callable[[], T], last: Union[T, _Nothing]) -> T:
        """``fetch()``; when the server cannot answer, ``last`` while the outage is tolerable."""
        started = self._poller.clock()
        try:
            result = fetch()
        except Exception as exc:
            if not is_transient(exc) or isinstance(last, _Nothing):
                raise
            self._endure(exc, started)
            return last
        if self._since is not None and self._warned is not None:
            logger.info(
                "the server answers again after %s; the wait goes on",
                about(self._poller.clock() - self._since),
            )
        self._since = self._warned = None
        return result

    def _endure(self, exc: Exception, started: float) -> None:
        """Return to poll on, sleep out a ``Retry-After`` that outlasts the deadline, or raise."""
        remaining = self._deadline.remaining()
        retry_after = getattr(exc, "retry_after", None)
        if remaining is not None and retry_after is not None and retry_after >= remaining:
            self._poller.sleep(remaining)  # the server asked for longer than is left
            return
        if remaining is not None and remaining <= 0:
            return  # out of time: the wait ends with what it last saw
        now = self._poller.clock()
        if self._since is None:
            self._since = started
        if now - self._since >= self._poller.outage_tolerance:
            raise exc
        if self._warned is None or now - self._warned >= OUTAGE_WARNING_EVERY:
            # A poll that starts just before the tolerance ends may take as long as this one.
            left = self._poller.outage_tolerance - (now - self._since) + (now - started)
            if remaining is not None:
                left = min(left, remaining)
            _warn_outage(exc, now - self._since, left, first=self._warned is None)
            self._warned = now


def _warn_outage(exc: Exception, lasted: float, left: float, *, first: bool) -> None:
    """One WARNING line about an outage: what failed, and how long the wait keeps trying."""
    keeps = "until it answers" if math.isinf(left) else f"for up to {about(left)} more"
    unreachable = isinstance(exc, TransportError)
    if first:
        what = "is unreachable" if unreachable else "cannot answer"
        logger.warning("the server %s (%s); the wait keeps trying %s", what, exc, keeps)
        return
    what = "is still unreachable" if unreachable else "still cannot answer"
    logger.warning("the server %s after %s; the wait keeps trying %s", what, about(lasted), keeps)
