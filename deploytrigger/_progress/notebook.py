"""The live view in a Jupyter kernel: one display, updated in place as the runs go on.

IPython's own display handles (``display(..., display_id=True)``, then
``handle.update``) work in JupyterLab, the classic Notebook and VS Code alike,
with no widget to install. One run shows its state badge (the colours of the
run's HTML table), how long it has run and its link to the UI; many runs a
progress bar of the finished ones, by final state, and a short table of runs.
A wait's log lines (``logs=True``) are printed below it, as the cell's output.
IPython is imported when the first view renders, never before: only a kernel,
where it is loaded already, gets here.
"""

from __future__ import annotations

import html
import sys
from typing import Any, List, Optional, Sequence

from .._helpers.display import STATE_COLOURS, clock_time, state_badge_html, ui_link_html
from ..models import FlowRun
from .snapshot import Snapshot, running_for
from .terminal import interruption, line

EVERY = 0.25
"""Seconds at least between two updates of the display (4 per second), the last one always."""

ROWS = 10
"""Runs at most in the table of a view of many runs."""

_BAR_BACKGROUND = "#e4e4e7"


class Shown:
    """What is displayed: the view's HTML, and its line as plain text for other front ends."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._html = view_html(snapshot)
        self._text = line(snapshot)

    def _repr_html_(self) -> str:
        return self._html

    def __repr__(self) -> str:
        return self._text


class NotebookView:
    """The live view: displayed at its first render, updated in place afterwards."""

    every = EVERY

    def __init__(self) -> None:
        self._handle: Optional[Any] = None

    def render(self, snapshot: Snapshot, *, last: bool) -> None:
        """Display ``snapshot``, or update the display with it (``last`` changes nothing)."""
        from IPython.display import display  # only in a kernel, where IPython is loaded

        shown = Shown(snapshot)
        if self._handle is None:
            self._handle = display(shown, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(shown)

    def lines(self, texts: Sequence[str]) -> None:
        """Print log lines to the cell's output, below the view."""
        sys.stdout.write("".join(text + "\n" for text in texts))
        sys.stdout.flush()


def view_html(snapshot: Snapshot) -> str:
    """The view of one run or of many, as HTML (every value escaped)."""
    body = one_run_html(snapshot) if len(snapshot.runs) == 1 else many_runs_html(snapshot)
    if snapshot.interrupted:
        body += f'<div style="color:#71717a">{html.escape(interruption(snapshot))}</div>'
    return (
        f'<div class="deploytrigger-progress" data-finished="{snapshot.finished}" '
        f'data-total="{len(snapshot.runs)}">{body}</div>'
    )


def one_run_html(snapshot: Snapshot) -> str:
    """One run: its name, state badge, time it has run and link, on one line."""
    run = snapshot.runs[0]
    parts = [f"flow run <b>{html.escape(run.name)}</b>", state_badge_html(run)]
    seconds = running_for(run, snapshot.now)
    if seconds is not None:
        parts.append(("ran " if run.is_final() else "running ") + clock_time(seconds))
    else:
        parts.append(f"waited {clock_time(snapshot.elapsed)}")
    link = ui_link_html(run)
    if link:
        parts.append(link)
    return " &middot; ".join(parts)


def many_runs_html(snapshot: Snapshot) -> str:
    """Many runs: finished / total by final state, a bar of the same, a table of runs."""
    total = len(snapshot.runs)
    counts = snapshot.final_counts()
    words = ", ".join(f"{count} {kind.value.title()}" for kind, count in counts)
    heading = (
        f"<div><b>{snapshot.finished} / {total}</b> flow runs finished"
        f"{': ' + html.escape(words) if words else ''}"
        f" &middot; {clock_time(snapshot.elapsed)}</div>"
    )
    segments = "".join(
        f'<div class="deploytrigger-bar" data-state="{kind.value}" '
        f'style="width:{100 * count / total:.2f}%;background:{STATE_COLOURS[kind.value]}"></div>'
        for kind, count in counts
    )
    bar = (
        f'<div style="display:flex;width:24em;max-width:100%;height:10px;margin:4px 0;'
        f'background:{_BAR_BACKGROUND};border-radius:5px;overflow:hidden">{segments}</div>'
    )
    rows, hidden = snapshot.rows(ROWS)
    table = "".join(_row(run, snapshot) for run in rows)
    more = (
        f'<tr><td colspan="4" style="text-align:left">and {hidden} more</td></tr>' if hidden else ""
    )
    return f'{heading}{bar}<table class="deploytrigger-runs">{table}{more}</table>'


def _row(run: FlowRun, snapshot: Snapshot) -> str:
    seconds = running_for(run, snapshot.now)
    cells: List[str] = [
        html.escape(run.name),
        state_badge_html(run),
        "" if seconds is None else clock_time(seconds),
        ui_link_html(run),
    ]
    return "<tr>" + "".join(f'<td style="text-align:left">{cell}</td>' for cell in cells) + "</tr>"
