"""The live view in a notebook: its HTML, displayed once and updated in place."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from helpers.fake_kernel import FakeKernel, kernel  # noqa: F401 - the fixture
from helpers.server_json import flow_run_json

from deploytrigger import FlowRun
from deploytrigger._helpers.display import STATE_COLOURS
from deploytrigger._progress import notebook
from deploytrigger._progress.snapshot import Snapshot

NOW = datetime(2026, 11, 23, 20, 1, tzinfo=timezone.utc)


def run(state: str, name: str = "run", **fields: Any) -> FlowRun:
    return FlowRun.from_json(flow_run_json(state, name=name, **fields))


def test_one_run_shows_its_badge_its_running_time_and_its_link() -> None:
    started = (NOW - timedelta(seconds=12)).isoformat()
    shown = FlowRun.from_json(
        flow_run_json("RUNNING", name="<b>fox</b>", start_time=started),
        api_url="http://prefect.test/api",
    )
    html = notebook.view_html(Snapshot((shown,), 3.0, NOW))
    assert "&lt;b&gt;fox&lt;/b&gt;" in html and "<b>fox</b>" not in html
    assert f'data-state="RUNNING" style="background:{STATE_COLOURS["RUNNING"]}' in html
    assert "running 00:12" in html
    assert f'href="http://prefect.test/runs/flow-run/{shown.id}"' in html
    assert 'data-finished="0" data-total="1"' in html


def test_one_run_not_started_shows_how_long_the_wait_has_been() -> None:
    html = notebook.view_html(Snapshot((run("SCHEDULED"),), 7.0, NOW))
    assert "waited 00:07" in html


def test_many_runs_show_finished_of_total_a_bar_by_final_state_and_a_table() -> None:
    runs = tuple(
        run(state, f"r{i}")
        for i, state in enumerate(["COMPLETED", "COMPLETED", "FAILED", "RUNNING"] * 5)
    )
    html = notebook.view_html(Snapshot(runs, 125.0, NOW))
    assert "<b>15 / 20</b> flow runs finished: 10 Completed, 5 Failed &middot; 02:05" in html
    bars = re.findall(r'data-state="(\w+)" style="width:([\d.]+)%', html)
    assert bars == [("COMPLETED", "50.00"), ("FAILED", "25.00")]
    assert html.count("<tr>") == notebook.ROWS + 1
    assert f"and {20 - notebook.ROWS} more" in html
    assert 'data-finished="15" data-total="20"' in html


def test_an_interrupted_view_says_the_runs_go_on() -> None:
    html = notebook.view_html(Snapshot((run("RUNNING"),), 1.0, NOW, interrupted=True))
    assert "interrupted; the runs go on" in html


def test_what_is_shown_has_the_line_as_its_plain_text() -> None:
    shown = notebook.Shown(Snapshot((run("RUNNING"), run("COMPLETED")), 1.0, NOW))
    assert repr(shown) == "2 flow runs  1 Completed, 1 Running  00:01"
    assert shown._repr_html_().startswith('<div class="deploytrigger-progress"')


def test_the_view_is_displayed_once_then_updated_in_place(kernel: FakeKernel) -> None:
    view = notebook.NotebookView()
    view.render(Snapshot((run("RUNNING"),), 1.0, NOW), last=False)
    view.render(Snapshot((run("COMPLETED"),), 2.0, NOW), last=True)
    assert len(kernel.handles) == 1
    first, last = kernel.handles[0].html()
    assert 'data-state="RUNNING"' in first and 'data-state="COMPLETED"' in last


def test_the_html_renders_in_ipython_as_html() -> None:
    formatters = pytest.importorskip("IPython.core.formatters")
    shown = notebook.Shown(Snapshot((run("COMPLETED"),), 1.0, NOW))
    data, _ = formatters.format_display_data(shown)
    assert data["text/html"] == shown._repr_html_()
    assert data["text/plain"] == "1 flow run  1 Completed  00:01"
