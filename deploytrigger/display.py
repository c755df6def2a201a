"""How a flow run reads to a human: a short ``repr``, a Prefect UI link, an HTML table.

Pure functions over :class:`~deploytrigger.models.FlowRun`; the model's
``__repr__``, ``ui_url`` and ``_repr_html_`` delegate here. Nothing is fetched:
everything shown comes from the run as last read.
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from .models import FlowRun

__all__ = ["STATE_COLOURS", "flow_run_html", "flow_run_repr", "ui_base_url", "ui_url"]

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

_CLOUD_API = re.compile(r"^/api/accounts/(?P<account>[^/]+)/workspaces/(?P<workspace>[^/]+)/?$")


def ui_base_url(api_url: Optional[str]) -> Optional[str]:
    """The Prefect UI's base URL for an API URL, or None when it cannot be derived.

    ``http://host:port/api`` (a self-hosted server, which serves its UI next to
    the API) gives ``http://host:port``; Prefect Cloud's
    ``https://api.prefect.cloud/api/accounts/A/workspaces/W`` gives
    ``https://app.prefect.cloud/account/A/workspace/W``. Credentials in the URL
    are dropped.
    """
    if not api_url:
        return None
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = parts.path.rstrip("/")
    cloud = _CLOUD_API.match(path)
    if cloud and parts.hostname.startswith("api."):
        app_host = "app." + netloc[len("api.") :]
        app_path = f"/account/{cloud['account']}/workspace/{cloud['workspace']}"
        return urlunsplit((parts.scheme, app_host, app_path, "", ""))
    if path.endswith("/api"):
        return urlunsplit((parts.scheme, netloc, path[: -len("/api")], "", ""))
    return None


def ui_url(api_url: Optional[str], flow_run_id: Any) -> Optional[str]:
    """The flow run's page in the Prefect UI, or None when the UI cannot be derived."""
    base = ui_base_url(api_url)
    return None if base is None else f"{base}/runs/flow-run/{flow_run_id}"


def _when(value: Optional[datetime]) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _duration(run: FlowRun) -> Optional[str]:
    if run.start_time is None or run.end_time is None:
        return None
    return f"{(run.end_time - run.start_time).total_seconds():.1f}s"


def flow_run_repr(run: FlowRun) -> str:
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


def flow_run_html(run: FlowRun) -> str:
    """A small HTML table for Jupyter: state badge, times, parameters, UI link.

    Every value is HTML-escaped.
    """
    esc = html.escape
    state_type = "UNKNOWN" if run.state is None else run.state.type.value
    state_name = "Unknown" if run.state is None else run.state.name
    colour = STATE_COLOURS.get(state_type, "#a1a1aa")
    badge = (
        f'<span class="deploytrigger-state" data-state="{esc(state_type)}" '
        f'style="background:{colour};color:#fff;padding:1px 6px;border-radius:8px">'
        f"{esc(state_name)}</span>"
    )
    rows: List[Tuple[str, str]] = [("state", badge)]
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
    link = run.ui_url
    if link is not None:
        rows.append(
            ("link", f'<a href="{esc(link)}" target="_blank" rel="noopener">open in Prefect</a>')
        )
    body = "".join(
        f'<tr><th style="text-align:left">{esc(key)}</th>'
        f'<td style="text-align:left">{value}</td></tr>'
        for key, value in rows
    )
    return (
        f'<table class="deploytrigger-flow-run"><caption style="text-align:left">'
        f"flow run <b>{esc(run.name)}</b></caption>{body}</table>"
    )
