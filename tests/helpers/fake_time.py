"""The one fake clock of the unit tests."""

from __future__ import annotations

import threading
from typing import List


class FakeTime:
    """A monotonic clock that only ``sleep`` moves; records every sleep (thread-safe).

    Pass it as ``Client(sleep=time.sleep, clock=time.clock)``: nothing really sleeps.
    ``now`` is where the clock starts.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: List[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        """Move the clock on without recording a sleep (time passing elsewhere)."""
        with self._lock:
            self.now += seconds
