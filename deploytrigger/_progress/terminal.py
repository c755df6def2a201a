"""Progress outside a notebook: one line on stderr, rewritten in place on a terminal.

On a terminal the line is the command line's ``wait`` line (``runs_summary``),
rewritten with ``\\r`` and "erase to the end of the line" at each poll; when
stderr is a file or a pipe (a log, a cron job's mail), a plain line now and
then (:data:`PLAIN_EVERY`) and the last one, so that a log is not flooded.
Shown only when asked (``progress=True``): a script that does not ask gets nothing.
A wait's log lines (``logs=True``) are written above the live line.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence, TextIO

from .._helpers.display import is_terminal, runs_summary
from .snapshot import Snapshot

LIVE_EVERY = 0.25
"""Seconds at least between two rewrites of the line on a terminal (4 per second)."""

PLAIN_EVERY = 10.0
"""Seconds at least between two plain lines when stderr is not a terminal."""

ERASE_LINE = "\r\x1b[K"
"""Back to the start of the line, and erase it."""

INTERRUPTED = "interrupted; the runs go on"
CANCELLING = "interrupted; the run was asked to cancel"


def interruption(snapshot: Snapshot) -> str:
    """What an interrupted wait says of its runs: they go on, or one was asked to cancel."""
    return CANCELLING if snapshot.cancelling else INTERRUPTED


def line(snapshot: Snapshot) -> str:
    """The progress line: runs by state and the time waited (and the interruption)."""
    text = runs_summary(snapshot.runs, snapshot.elapsed)
    return f"{text}  ({interruption(snapshot)})" if snapshot.interrupted else text


class TerminalView:
    """The progress line on ``stream`` (stderr when None): live on a terminal, plain elsewhere."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._live = is_terminal(self._stream)
        self.every = LIVE_EVERY if self._live else PLAIN_EVERY
        self._current: Optional[str] = None  # the live line on screen, not ended yet

    def render(self, snapshot: Snapshot, *, last: bool) -> None:
        """Write the line for ``snapshot``; ``last``: the wait is over (end the line)."""
        text = line(snapshot)
        if self._live:
            self._stream.write(ERASE_LINE + text + ("\n" if last else ""))
            self._current = None if last else text
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def lines(self, texts: Sequence[str]) -> None:
        """Write log lines above the progress line, which is written again below them."""
        written = "".join(text + "\n" for text in texts)
        if self._current is not None:
            written = ERASE_LINE + written + self._current
        self._stream.write(written)
        self._stream.flush()
