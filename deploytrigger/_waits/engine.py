"""The poll engine every wait uses: a fixed interval, a deadline, and patience through outages.

Polling is configured apart from per-request retrying (see ``retries.py``):
this engine asks "is it done yet?" at a fixed interval; the other retries one
request that failed. One transient-error policy serves every wait
(``run_deployment``, handles, batches, log following, the CLI): when a poll
fails because the server cannot answer (a connection failure, a 5xx or a 429
still failing after the request's own retries), the wait keeps the last
result it saw and polls on, for up to ``outage_tolerance`` seconds of
continuous failure; then the error is raised. A wait whose deadline passes
during an outage ends with what it last saw.

Nothing here sends a request: ``fetch`` is the caller's. Time is injected
(:class:`Poller`'s ``sleep`` and ``clock``) so tests never sleep.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, TypeVar, Union

from .._helpers.deadline import Deadline
from ..exceptions import RateLimitedError, ServerError, TransportError

if TYPE_CHECKING:
    import tenacity


logger = logging.getLogger("deploytrigger")

T = TypeVar("T")

FIRST_COMPLETED = "FIRST_COMPLETED"
"""``return_when``: return as soon as any run is final."""

ALL_COMPLETED = "ALL_COMPLETED"
"""``return_when``: return when every run is final (the default)."""

DEFAULT_OUTAGE_TOLERANCE = 300.0
"""Seconds a wait polls on through a server that cannot answer before raising."""


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
    """

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE

    def deadline(self, timeout: Optional[float]) -> Deadline:
        """A deadline ``timeout`` seconds from now on this poller's clock (None: none)."""
        return Deadline(timeout, self.clock)

    def pause(self, interval: float, deadline: Deadline) -> None:
        """Sleep ``interval`` seconds, cut short at the deadline."""
        self.sleep(deadline.cap(interval))

    def rounds(
        self,
        fetch: Callable[[], T],
        is_done: Callable[[T], bool],
        *,
        deadline: Deadline,
        interval: float,
        known: Union[T, _Nothing] = NOTHING,
    ) -> Iterator[T]:
        """Yield each poll's result until one is done or the deadline passes.

        The first poll happens at once; each later one ``interval`` seconds
        after the previous answer, the last pause cut short at the deadline so
        that one final poll sees the state at the deadline. During an outage
        the last result (or ``known``, before the first) stands in for the poll
        that failed, and is yielded again: consumers that yield events compare
        by identity.

        Raises:
            Whatever ``fetch`` raises that is not transient; a transient error
            when there is no earlier result, or once the outage has lasted
            ``outage_tolerance`` seconds.
        """
        import tenacity  # here, not at import: it brings asyncio, which a trigger never needs

        outage = _Outage(self, deadline)
        finished = False

        def keep_polling(state: tenacity.RetryCallState) -> bool:
            failed = state.outcome is not None and state.outcome.failed
            return not failed and not finished  # a failure ends the loop: tenacity raises it

        retrying = tenacity.Retrying(
            retry=keep_polling,
            stop=lambda _: deadline.passed(),
            wait=lambda _: deadline.cap(interval),
            sleep=self.sleep,
            retry_error_callback=lambda _: None,  # the deadline passed: end quietly
        )
        latest: Any = known
        for attempt in retrying:
            with attempt:
                latest = outage.survive(fetch, latest)
            if attempt.retry_state.outcome is None or attempt.retry_state.outcome.failed:
                continue
            finished = is_done(latest)
            yield latest

    def poll(
        self,
        fetch: Callable[[], T],
        is_done: Callable[[T], bool],
        *,
        deadline: Deadline,
        interval: float,
        known: Union[T, _Nothing] = NOTHING,
    ) -> T:
        """The first done result of :meth:`rounds`, or the last one when the deadline passed."""
        latest: Any = known
        for result in self.rounds(
            fetch, is_done, deadline=deadline, interval=interval, known=known
        ):
            latest = result
        final: T = latest
        return final


class _Outage:
    """One wait's transient failures: since when the server has not answered."""

    def __init__(self, poller: Poller, deadline: Deadline) -> None:
        self._poller = poller
        self._deadline = deadline
        self._since: Optional[float] = None

    def survive(self, fetch: Callable[[], T], known: Any) -> T:
        """``fetch()``; on a transient failure, ``known`` while the outage is tolerable."""
        try:
            result = fetch()
        except Exception as exc:
            if not is_transient(exc) or known is NOTHING:
                raise
            self._endure(exc)
            held: T = known
            return held
        self._since = None
        return result

    def _endure(self, exc: Exception) -> None:
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
            self._since = now
        if now - self._since >= self._poller.outage_tolerance:
            raise exc
        logger.warning(
            "the server did not answer (%s); polling on for up to %gs more",
            exc,
            self._poller.outage_tolerance - (now - self._since),
        )
