"""How a flow run reads to a person: a short ``repr``, a summary, an HTML table;
a line for many runs as they go (:func:`runs_summary`), a run's log line
(:func:`log_line`); and how long a wait
lasts, as a person says it (:func:`about`).

Pure functions over anything shaped like a :class:`~deploytrigger.models.FlowRun`
(:class:`ShownRun`); the model's ``__repr__``, ``summary`` and ``_repr_html_``
delegate here. This module imports nothing else of the package, so the models
can use it without an import circle. Nothing is fetched: everything shown comes
from the run as last read.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple


class ShownRun(Protocol):
    """What is shown of a run (a :class:`~deploytrigger.models.FlowRun` has it all)."""

    @property
    def id(self) -> Any: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> Any: ...
    @property
    def parameters(self) -> Mapping[str, Any]: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def expected_start_time(self) -> Optional[datetime]: ...
    @property
    def start_time(self) -> Optional[datetime]: ...
    @property
    def end_time(self) -> Optional[datetime]: ...
    @property
    def ui_url(self) -> Optional[str]: ...
    @property
    def created(self) -> Optional[datetime]: ...


STATE_COLOURS = {
    "SCHEDULED": "#fcd14e",
    "PENDING": "#a1a1aa",
    "RUNNING": "#1860f2",
    "PAUSED": "#a1a1aa",
    "CANCELLING": "#71717a",
    "COMPLETED": "#2ac769",
    "FAILED": "#fb4e4e",
    "CANCELLED": "#71717a",
    "CRASHED": "#f97316",
}
"""Background colour of each state type's badge, close to the Prefect UI's."""


def about(seconds: float) -> str:
    """A finite duration (seconds) rounded as a person says it: "about 40 s", "about 5 min"."""
    if seconds < 120:
        step = 1 if seconds < 10 else 5
        return f"about {max(1, step * round(seconds / step))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {round(seconds / 3600, 1):g} h"


_SUMMARY_ORDER = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED", "CANCELLING", "RUNNING")


def state_counts(runs: Iterable[ShownRun]) -> List[Tuple[str, int]]:
    """``(state name, how many)``: final states first, then the others, each name once."""
    counts: Dict[Tuple[int, str], int] = {}
    for run in runs:
        kind = "" if run.state is None else run.state.type.value
        name = "Unknown" if run.state is None else run.state.name
        rank = _SUMMARY_ORDER.index(kind) if kind in _SUMMARY_ORDER else len(_SUMMARY_ORDER)
        counts[(rank, name)] = counts.get((rank, name), 0) + 1
    return [(name, count) for (_, name), count in sorted(counts.items())]


def runs_summary(runs: Sequence[ShownRun], elapsed: float) -> str:
    """``3 flow runs  1 Completed, 2 Running  00:12``: one line for many runs, as a
    terminal shows them while they go on (the command line's ``wait``, a wait's progress)."""
    counts = ", ".join(f"{count} {name}" for name, count in state_counts(runs))
    noun = "flow run" if len(runs) == 1 else "flow runs"
    return f"{len(runs)} {noun}  {counts}  {clock_time(elapsed)}"


def clock_time(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` past an hour) of a number of seconds."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class ShownLine(Protocol):
    """What is shown of a run's log line (a :class:`~deploytrigger.models.LogRecord` has it)."""

    @property
    def timestamp(self) -> datetime: ...

    @property
    def level_name(self) -> str: ...

    @property
    def message(self) -> str: ...


def local_stamp(when: Optional[datetime] = None) -> str:
    """``2026-12-06 00:21:30``: a moment (now when None) in this machine's time zone."""
    moment = (when or datetime.now(timezone.utc)).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def log_line(record: ShownLine) -> str:
    """``<time> INFO     message``: a run's log line, as the command line and a wait with
    ``logs=True`` write it; a multi-line message keeps its lines."""
    return f"{local_stamp(record.timestamp)} {record.level_name:<8} {record.message}"


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal, where a line can be rewritten in place."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _when(value: Optional[datetime]) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _duration(run: ShownRun) -> Optional[str]:
    """ "ran 0.1 s, 4.4 s after it was triggered": the flow's own run time, and how
    long after the run was created it started (a runner's poll, a busy worker)."""
    if run.start_time is None or run.end_time is None:
        return None
    text = f"ran {(run.end_time - run.start_time).total_seconds():.1f} s"  # one decimal
    if run.created is not None:
        delay = max((run.start_time - run.created).total_seconds(), 0.0)
        text += f", {delay:.1f} s after it was triggered"
    return text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def flow_run_summary(run: ShownRun) -> str:
    """A few lines for a person: name, id, state, duration, the state's message, UI link."""
    state = "Unknown" if run.state is None else run.state.type.value
    text = f"flow run {run.name!r} ({run.id}): {state}"
    duration = _duration(run)
    if duration is not None:
        text += f", {duration}"
    if run.state is not None and run.state.message:
        text += f"\n  {_one_line(run.state.message)}"
    if run.ui_url:
        text += f"\n  {run.ui_url}"
    return text


def flow_run_repr(run: ShownRun) -> str:
    """A one-line ``repr``: id, name, state and the times that are known."""
    state = "None" if run.state is None else run.state.type.value
    parts = [f"id='{run.id}'", f"name={run.name!r}", f"state={state}"]
    if run.state is not None and run.state.name.upper() != state:
        parts.append(f"state_name={run.state.name!r}")
    if run.start_time is not None:
        parts.append(f"start_time='{_when(run.start_time)}'")
    elif run.expected_start_time is not None:
        parts.append(f"expected_start_time='{_when(run.expected_start_time)}'")
    if run.end_time is not None:
        parts.append(f"end_time='{_when(run.end_time)}'")
    return f"FlowRun({', '.join(parts)})"


def _json(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def state_badge_html(run: ShownRun) -> str:
    """The run's state as a coloured badge (HTML), as the Prefect UI shows it."""
    import html

    state_type = "UNKNOWN" if run.state is None else run.state.type.value
    state_name = "Unknown" if run.state is None else run.state.name
    colour = STATE_COLOURS.get(state_type, "#a1a1aa")
    return (
        f'<span class="deploytrigger-state" data-state="{html.escape(state_type)}" '
        f'style="background:{colour};color:#fff;padding:1px 6px;border-radius:8px">'
        f"{html.escape(state_name)}</span>"
    )


def ui_link_html(run: ShownRun) -> str:
    """A link to the run in the Prefect UI (HTML), or an empty string without one."""
    import html

    if run.ui_url is None:
        return ""
    return f'<a href="{html.escape(run.ui_url)}" target="_blank" rel="noopener">open in Prefect</a>'


def flow_run_html(run: ShownRun) -> str:
    """A small HTML table for Jupyter: state badge, times, parameters, UI link.

    Every value is HTML-escaped.
    """
    import html  # only a notebook shows a run as HTML: not loaded before

    esc = html.escape
    rows: List[Tuple[str, str]] = [("state", state_badge_html(run))]
    if run.state is not None and run.state.message:
        rows.append(("message", esc(run.state.message)))
    rows.append(("id", f"<code>{esc(str(run.id))}</code>"))
    rows.append(("scheduled", esc(_when(run.expected_start_time))))
    rows.append(("started", esc(_when(run.start_time))))
    rows.append(("ended", esc(_when(run.end_time))))
    duration = _duration(run)
    if duration is not None:
        rows.append(("duration", esc(duration)))
    rows.append(("parameters", f"<code>{esc(_json(run.parameters))}</code>"))
    if run.tags:
        rows.append(("tags", esc(", ".join(run.tags))))
    if run.ui_url is not None:
        rows.append(("link", ui_link_html(run)))
    body = "".join(
        f'<tr><th style="text-align:left">{esc(key)}</th>'
        f'<td style="text-align:left">{value}</td></tr>'
        for key, value in rows
    )
    return (
        f'<table class="deploytrigger-flow-run"><caption style="text-align:left">'
        f"flow run <b>{esc(run.name)}</b></caption>{body}</table>"
    )
