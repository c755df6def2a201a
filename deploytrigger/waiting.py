"""Polling an operation until it is done or a deadline passes; nothing HTTP-specific.

Polling is configured apart from per-request retrying (see ``retries.py``):
this loop asks "is it done yet?" at a fixed interval, the other retries one
request that failed. Time is injected (``sleep``, ``clock``) so tests never sleep.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

if TYPE_CHECKING:
    import tenacity

__all__ = ["ALL_COMPLETED", "FIRST_COMPLETED", "Deadline", "poll"]

T = TypeVar("T")

FIRST_COMPLETED = "FIRST_COMPLETED"
"""``return_when``: return as soon as any run is final."""

ALL_COMPLETED = "ALL_COMPLETED"
"""``return_when``: return when every run is final (the default)."""


class Deadline:
    """A point on a monotonic clock, or none (wait forever).

    Args:
        timeout: seconds from now, or None for no deadline.
        clock: the monotonic clock, ``time.monotonic`` by default.
    """

    def __init__(
        self, timeout: Optional[float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self.at = None if timeout is None else clock() + timeout

    def remaining(self) -> Optional[float]:
        """Seconds left (never negative), or None without a deadline."""
        return None if self.at is None else max(0.0, self.at - self._clock())

    def passed(self) -> bool:
        """True once the deadline is reached."""
        return self.at is not None and self._clock() >= self.at


def poll(
    fetch: Callable[[], T],
    is_done: Callable[[T], bool],
    *,
    deadline: Deadline,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fetch`` until its result is done or the deadline passes.

    The first fetch happens at once; each later one ``interval`` seconds after
    the previous answer, the last pause cut short at the deadline so that one
    final fetch sees the state at the deadline.

    Returns:
        The first done result, or the last result when the deadline passed.

    Raises:
        Whatever ``fetch`` raises.
    """
    import tenacity  # here, not at import: it brings asyncio, which a trigger never needs

    def pause(_: tenacity.RetryCallState) -> float:
        remaining = deadline.remaining()
        return interval if remaining is None else min(interval, remaining)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda result: not is_done(result)),
        stop=lambda _: deadline.passed(),
        wait=pause,
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    result: T = retrying(fetch)
    return result
