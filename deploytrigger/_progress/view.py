"""Which progress a wait shows, and when it renders: every wait holds one :class:`Progress`.

``progress`` on a wait: None follows the client's setting (``"auto"``: the
live view in a Jupyter kernel, nothing elsewhere; ``"on"``; ``"off"``); True
shows the live view in a kernel and the line on stderr elsewhere; False
shows nothing. The wait calls :meth:`Progress.show` with the runs each poll
read (no request of its own), a wait with ``logs=True`` also calls
:meth:`Progress.log` with each new line, and it ends with :meth:`Progress.close`, which
renders the last state even when the wait was interrupted. Renders are at
least a view's ``every`` seconds apart, but for the last.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Callable, Optional, Protocol, Sequence, Tuple, Type

from .._helpers.display import log_line
from .._waits.engine import Poller
from ..models import FlowRun, LogRecord
from .snapshot import Snapshot


class View(Protocol):
    """Where progress shows: the notebook's display, the terminal's line."""

    every: float
    """Seconds at least between two renders (but for the last)."""

    def render(self, snapshot: Snapshot, *, last: bool) -> None:
        """Show ``snapshot``; ``last``: the wait is over."""
        ...

    def lines(self, texts: Sequence[str]) -> None:
        """Show a run's new log lines (a wait with ``logs=True``), below the view."""
        ...


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (IPython with a kernel), without importing IPython.

    A kernel has imported IPython long before any wait: a process that has not
    is not one.
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return getattr(shell, "kernel", None) is not None


def choose(asked: Optional[bool], default: str) -> Optional[View]:
    """The view for a wait's ``progress`` (``asked``) and the client's setting (``default``).

    None: show nothing.
    """
    wanted = {"on": True, "off": False}.get(default) if asked is None else asked
    kernel = in_kernel()
    if wanted is False or (wanted is None and not kernel):
        return None
    if kernel:
        from .notebook import NotebookView

        return NotebookView()
    from .terminal import TerminalView

    return TerminalView()


class Progress:
    """One wait's progress: the runs each poll read, rendered by a view (or by none).

    Use it as a context manager around the wait: on the way out it renders the
    last runs seen, marked interrupted on ``KeyboardInterrupt`` (and, with
    ``cancels_on_interrupt``, that the run was asked to cancel).
    """

    def __init__(
        self,
        view: Optional[View],
        clock: Callable[[], float],
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        *,
        cancels_on_interrupt: bool = False,
    ) -> None:
        self.view = view
        self._cancels_on_interrupt = cancels_on_interrupt
        self._clock = clock
        self._now = now
        self._started = clock()
        self._runs: Tuple[FlowRun, ...] = ()
        self._rendered_at: Optional[float] = None

    def show(self, runs: Sequence[FlowRun]) -> None:
        """The runs as a poll read them; rendered unless the last render was too recent."""
        if self.view is None:
            return
        self._runs = tuple(runs)
        now = self._clock()
        if self._rendered_at is None or now - self._rendered_at >= self.view.every:
            self._render(last=False)

    def log(self, record: LogRecord) -> None:
        """A new log line of the run (a wait with ``logs=True``): written at once.

        Below the view when there is one; else on stdout in a Jupyter kernel (the
        cell's output) and on stderr elsewhere.
        """
        text = log_line(record)
        if self.view is not None:
            self.view.lines((text,))
            return
        stream = sys.stdout if in_kernel() else sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def close(self, interrupted: bool = False) -> None:
        """The wait is over: render the last runs seen (if any were)."""
        if self.view is not None and self._runs:
            self._render(last=True, interrupted=interrupted)

    def _render(self, *, last: bool, interrupted: bool = False) -> None:
        assert self.view is not None
        self._rendered_at = self._clock()
        snapshot = Snapshot(
            self._runs,
            self._rendered_at - self._started,
            self._now(),
            interrupted=interrupted,
            cancelling=interrupted and self._cancels_on_interrupt,
        )
        self.view.render(snapshot, last=last)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: Optional[Type[BaseException]], *rest: object) -> None:
        self.close(interrupted=kind is not None and issubclass(kind, KeyboardInterrupt))


def open_progress(
    asked: Optional[bool], poller: Poller, *, cancels_on_interrupt: bool = False
) -> Progress:
    """The progress of a wait paced by ``poller`` (its clock, the client's setting);
    ``cancels_on_interrupt``: an interrupt cancels the wait's run (it says so)."""
    return Progress(
        choose(asked, poller.progress), poller.clock, cancels_on_interrupt=cancels_on_interrupt
    )
