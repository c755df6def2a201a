"""A deadline on a monotonic clock, shared by request retries and waits."""

from __future__ import annotations

import time
from typing import Callable, Optional


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

    def cap(self, seconds: float) -> float:
        """``seconds``, or less when the deadline comes sooner."""
        remaining = self.remaining()
        return seconds if remaining is None else min(seconds, remaining)
