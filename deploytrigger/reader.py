"""What handles, batches and log following need from the client: a small reader protocol.

:class:`RunReader` is the seam between the waits (``handles.py``, ``batch.py``,
``logs.py``) and the service that talks to the server (``runs.Runs``), so that
the waits never import the client. Tests can hand them any object of this shape.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import List, Optional, Protocol, Sequence

from .models import FlowRun, LogRecord
from .waiting import Deadline, Poller

__all__ = ["RunReader"]


class RunReader(Protocol):
    """Reads and cancels flow runs, and says how waits pace themselves."""

    @property
    def poller(self) -> Poller:
        """The poll engine every wait over this reader uses."""
        ...

    def read_flow_run(
        self, flow_run_id: uuid.UUID, *, deadline: Optional[Deadline] = None
    ) -> FlowRun:
        """One run (``FlowRunNotFoundError`` when it does not exist)."""
        ...

    def read_flow_runs(
        self, flow_run_ids: Sequence[uuid.UUID], *, deadline: Optional[Deadline] = None
    ) -> List[FlowRun]:
        """Many runs, in the order asked, each once; unknown ids are left out."""
        ...

    def read_logs(
        self,
        flow_run_id: uuid.UUID,
        after: Optional[datetime] = None,
        limit: int = 200,
        offset: int = 0,
        *,
        deadline: Optional[Deadline] = None,
    ) -> List[LogRecord]:
        """One page of a run's log lines at or after ``after``, oldest first."""
        ...

    def cancel_flow_run(self, flow_run_id: uuid.UUID, message: Optional[str] = None) -> bool:
        """Ask the server to cancel a run; whether it accepted."""
        ...
