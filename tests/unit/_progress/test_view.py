"""Which view a wait gets (kernel, setting, progress=), and how often it renders."""

from __future__ import annotations

import sys
import types
from datetime import datetime, timezone
from typing import List, Optional, Tuple

import pytest
from helpers.fake_kernel import FakeKernel, kernel, no_ipython  # noqa: F401 - the fixtures
from helpers.fake_time import FakeTime
from helpers.server_json import flow_run_json

from deploytrigger import FlowRun
from deploytrigger._progress import view
from deploytrigger._progress.notebook import NotebookView
from deploytrigger._progress.snapshot import Snapshot
from deploytrigger._progress.terminal import TerminalView

NOW = datetime(2026, 11, 23, 20, 1, tzinfo=timezone.utc)


def runs(*states: str) -> List[FlowRun]:
    return [FlowRun.from_json(flow_run_json(state)) for state in states]


class Recorder:
    """A view that records each render: (finished, elapsed, last, interrupted)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.renders: List[Tuple[int, float, bool, bool]] = []

    def render(self, snapshot: Snapshot, *, last: bool) -> None:
        self.renders.append((snapshot.finished, snapshot.elapsed, last, snapshot.interrupted))


@pytest.mark.usefixtures("no_ipython")
def test_a_process_without_ipython_is_no_kernel_and_ipython_is_not_imported() -> None:
    assert view.in_kernel() is False
    assert "IPython" not in sys.modules


def test_ipython_without_a_kernel_is_no_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal_shell = types.SimpleNamespace()  # a terminal IPython's shell has no kernel
    for shell in (None, terminal_shell):
        ipython = types.ModuleType("IPython")
        ipython.get_ipython = lambda shell=shell: shell  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "IPython", ipython)
        assert view.in_kernel() is False


def test_a_kernel_is_a_kernel(kernel: FakeKernel) -> None:
    assert view.in_kernel() is True


@pytest.mark.parametrize(
    "asked, default, outside, inside",
    [
        (None, "auto", None, NotebookView),
        (None, "on", TerminalView, NotebookView),
        (None, "off", None, None),
        (True, "off", TerminalView, NotebookView),
        (True, "auto", TerminalView, NotebookView),
        (False, "on", None, None),
        (False, "auto", None, None),
    ],
)
def test_the_view_follows_progress_then_the_setting_then_whether_this_is_a_kernel(
    request: pytest.FixtureRequest,
    asked: Optional[bool],
    default: str,
    outside: Optional[type],
    inside: Optional[type],
) -> None:
    request.getfixturevalue("no_ipython")
    chosen = view.choose(asked, default)
    assert chosen is None if outside is None else isinstance(chosen, outside)
    request.getfixturevalue("kernel")
    chosen = view.choose(asked, default)
    assert chosen is None if inside is None else isinstance(chosen, inside)


def test_renders_are_a_views_interval_apart_but_the_last_always_comes() -> None:
    time = FakeTime()
    shown = Recorder(every=0.25)
    progress = view.Progress(shown, time.clock, now=lambda: NOW)
    with progress:
        for states in (["RUNNING", "RUNNING"], ["COMPLETED", "RUNNING"], ["COMPLETED"] * 2):
            progress.show(runs(*states))
            time.sleep(0.1)
        time.sleep(0.1)
        progress.show(runs("COMPLETED", "FAILED"))
    assert shown.renders == [
        (0, 0.0, False, False),
        (2, pytest.approx(0.4), False, False),
        (2, pytest.approx(0.4), True, False),
    ]


def test_an_interrupted_wait_renders_the_last_runs_seen_marked_and_reraises() -> None:
    shown = Recorder(every=0.25)
    progress = view.Progress(shown, FakeTime().clock, now=lambda: NOW)
    with pytest.raises(KeyboardInterrupt), progress:
        progress.show(runs("RUNNING"))
        raise KeyboardInterrupt
    assert shown.renders[-1] == (0, 0.0, True, True)


def test_a_wait_that_saw_no_run_renders_nothing_and_no_view_renders_nothing() -> None:
    shown = Recorder(every=0.25)
    with view.Progress(shown, FakeTime().clock):
        pass
    assert shown.renders == []
    with view.Progress(None, FakeTime().clock) as progress:
        progress.show(runs("RUNNING"))  # no view: nothing to do
