"""Which view a wait gets (kernel, setting, progress=), and how often it renders."""

from __future__ import annotations

import sys
import types
import uuid
from datetime import datetime, timezone
from typing import List, Optional, Sequence, Tuple

import pytest
from helpers.fake_kernel import FakeKernel, kernel, no_ipython  # noqa: F401 - the fixtures
from helpers.fake_time import FakeTime
from helpers.server_json import flow_run_json

from deploytrigger import FlowRun, LogRecord
from deploytrigger._helpers.display import log_line
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
        self.lines_written: List[str] = []

    def render(self, snapshot: Snapshot, *, last: bool) -> None:
        self.renders.append((snapshot.finished, snapshot.elapsed, last, snapshot.interrupted))

    def lines(self, texts: Sequence[str]) -> None:
        self.lines_written.extend(texts)


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


LINE = LogRecord(uuid.uuid4(), NOW, 20, "adding 32 and 10")


def test_a_log_line_goes_to_the_view_at_once_however_recent_the_last_render() -> None:
    shown = Recorder(every=0.25)
    with view.Progress(shown, FakeTime().clock, now=lambda: NOW) as progress:
        progress.show(runs("RUNNING"))
        progress.log(LINE)
        progress.log(LINE)
    assert shown.lines_written == [log_line(LINE)] * 2
    assert log_line(LINE).endswith(" INFO     adding 32 and 10")


@pytest.mark.usefixtures("no_ipython")
def test_with_no_view_a_log_line_goes_to_stderr_outside_a_kernel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    view.Progress(None, FakeTime().clock).log(LINE)
    assert capsys.readouterr() == ("", log_line(LINE) + "\n")


def test_with_no_view_a_log_line_goes_to_the_cells_output_in_a_kernel(
    kernel: FakeKernel, capsys: pytest.CaptureFixture[str]
) -> None:
    view.Progress(None, FakeTime().clock).log(LINE)
    assert capsys.readouterr() == (log_line(LINE) + "\n", "")
    assert kernel.handles == []
