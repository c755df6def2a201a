"""What a progress view shows of a wait at one moment: the runs as last seen, and the time.

Pure: no output, no request. The views (``notebook``, ``terminal``) render it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import List, Optional, Tuple

from ..models import FINAL_STATES, FlowRun, StateType

FINAL_ORDER = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
"""The final states in the order a progress bar stacks them."""

_ROW_ORDER = (StateType.FAILED, StateType.CRASHED)
"""Rows first in a table of runs: the ones a person wants to look at (then the unfinished)."""


@dataclass(frozen=True)
class Snapshot:
    """A wait's runs at one moment.

    Attributes:
        runs: the runs as last seen, in the order the wait was given them.
        elapsed: seconds since the wait began.
        now: the time now (UTC), for how long a run has been running.
        interrupted: the wait was interrupted (the runs go on).
        cancelling: the wait was interrupted and asked the server to cancel its
            run (``cancel_on_interrupt``).
    """

    runs: Tuple[FlowRun, ...]
    elapsed: float
    now: datetime
    interrupted: bool = False
    cancelling: bool = False

    @property
    def finished(self) -> int:
        """How many of the runs are final."""
        return sum(1 for run in self.runs if run.is_final())

    def final_counts(self) -> List[Tuple[StateType, int]]:
        """``(final state, how many)`` in :data:`FINAL_ORDER`, states with none left out."""
        counts = {kind: 0 for kind in FINAL_ORDER}
        for run in self.runs:
            if run.state is not None and run.state.type in FINAL_STATES:
                counts[run.state.type] += 1
        return [(kind, count) for kind, count in counts.items() if count]

    def rows(self, limit: int) -> Tuple[List[FlowRun], int]:
        """At most ``limit`` runs for a table, and how many were left out.

        Failed and crashed runs come first, then the runs not final, then the
        others; within each, the order the wait was given.
        """

        def rank(run: FlowRun) -> int:
            kind = run.state.type if run.state is not None else None
            if kind in _ROW_ORDER:
                return 0
            return 1 if not run.is_final() else 2

        ordered = sorted(self.runs, key=rank)  # stable: the given order within a rank
        return ordered[:limit], max(0, len(ordered) - limit)


def running_for(run: FlowRun, now: datetime) -> Optional[float]:
    """Seconds the run has run: until it ended, or until ``now``; None before it started."""
    if run.start_time is None or (run.is_final() and run.end_time is None):
        return None
    until = run.end_time if run.end_time is not None else now
    return max(0.0, (until - run.start_time).total_seconds())
