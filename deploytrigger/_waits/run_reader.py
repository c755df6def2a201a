"""What handles, batches and log following need from the client: a small reader protocol.

:class:`RunReader` is the seam between what a caller holds and waits on
(``_handles/``: handles, batches, log following), the poll engine, and the
service that talks to the server (``_services/runs.py``'s ``Runs``), so that
neither imports the services nor the client. Tests can hand them any object of
this shape.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, List, Optional, Protocol, Sequence

from .._helpers.deadline import Deadline
from ..exceptions import DeployTriggerError
from ..models import FlowRun, LogRecord
from .engine import Poller

logger = logging.getLogger("deploytrigger")


class RunReader(Protocol):
    """Reads and cancels flow runs and their results, and says how waits pace themselves."""

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

    def read_result(self, flow_run: FlowRun, *, allow_pickle: bool = False) -> Any:
        """A final run's persisted return value (``ResultError`` when it cannot be read)."""
        ...


def cancel_if_timed_out(
    reader: RunReader, run: FlowRun, timeout: Optional[float], enabled: bool
) -> FlowRun:
    """With ``enabled``, cancel a run still not final when a wait's timeout ran out.

    Returns:
        The run as read after the cancellation, or ``run`` when nothing was done.
    """
    if not enabled or timeout is None or run.is_final():
        return run
    return _cancel_unfinished(reader, run, f"not final after {timeout:g}s")


def cancel_if_interrupted(reader: RunReader, run: Any, enabled: bool) -> None:
    """With ``enabled``, cancel a run (a :class:`FlowRun`) whose wait was interrupted."""
    if enabled and isinstance(run, FlowRun) and not run.is_final():
        _cancel_unfinished(reader, run, "interrupted")


def _cancel_unfinished(reader: RunReader, run: FlowRun, why: str) -> FlowRun:
    """Cancel a run that was waited for in vain; the run re-read (as last seen on error)."""
    try:
        reader.cancel_flow_run(run.id, f"Cancelled by deploytrigger: {why}")
        return reader.read_flow_run(run.id)
    except DeployTriggerError as exc:
        logger.warning("could not cancel flow run %s after %s: %s", run.id, why, exc)
        return run
