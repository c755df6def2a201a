"""The progress line: rewritten in place on a terminal, plain lines now and then elsewhere."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from helpers.server_json import flow_run_json

from deploytrigger import FlowRun
from deploytrigger._progress import terminal
from deploytrigger._progress.snapshot import Snapshot

NOW = datetime(2026, 11, 23, 20, 1, tzinfo=timezone.utc)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def snapshot(*states: str, interrupted: bool = False) -> Snapshot:
    runs = tuple(FlowRun.from_json(flow_run_json(state)) for state in states)
    return Snapshot(runs, 65.0, NOW, interrupted=interrupted)


def test_the_line_is_the_command_lines_wait_line() -> None:
    assert terminal.line(snapshot("COMPLETED", "RUNNING")) == (
        "2 flow runs  1 Completed, 1 Running  01:05"
    )


def test_an_interrupted_wait_says_the_runs_go_on() -> None:
    assert terminal.line(snapshot("RUNNING", interrupted=True)) == (
        "1 flow run  1 Running  01:05  (interrupted; the runs go on)"
    )


def test_on_a_terminal_the_line_is_rewritten_in_place_and_ended_at_the_last() -> None:
    stream = Terminal()
    view = terminal.TerminalView(stream)
    assert view.every == terminal.LIVE_EVERY
    view.render(snapshot("RUNNING"), last=False)
    view.render(snapshot("COMPLETED"), last=True)
    assert stream.getvalue() == (
        "\r\x1b[K1 flow run  1 Running  01:05\r\x1b[K1 flow run  1 Completed  01:05\n"
    )


def test_elsewhere_plain_lines_come_at_most_every_ten_seconds() -> None:
    stream = io.StringIO()
    view = terminal.TerminalView(stream)
    assert view.every == terminal.PLAIN_EVERY == 10.0
    view.render(snapshot("RUNNING"), last=False)
    view.render(snapshot("COMPLETED"), last=True)
    assert stream.getvalue() == "1 flow run  1 Running  01:05\n1 flow run  1 Completed  01:05\n"
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_log_lines_go_above_the_live_line_which_is_written_again_below_them() -> None:
    stream = Terminal()
    view = terminal.TerminalView(stream)
    view.lines(["first"])  # no line on screen yet
    view.render(snapshot("RUNNING"), last=False)
    view.lines(["second", "third"])
    view.render(snapshot("COMPLETED"), last=True)
    view.lines(["fourth"])  # the line was ended: nothing to erase or write again
    running = "1 flow run  1 Running  01:05"
    assert stream.getvalue() == (
        f"first\n\r\x1b[K{running}\r\x1b[Ksecond\nthird\n{running}"
        "\r\x1b[K1 flow run  1 Completed  01:05\nfourth\n"
    )


def test_elsewhere_log_lines_are_plain_lines_between_the_progress_lines() -> None:
    stream = io.StringIO()
    view = terminal.TerminalView(stream)
    view.render(snapshot("RUNNING"), last=False)
    view.lines(["adding"])
    assert stream.getvalue() == "1 flow run  1 Running  01:05\nadding\n"


def test_an_interrupted_wait_that_cancelled_its_run_says_so() -> None:
    cancelled = Snapshot(snapshot("RUNNING").runs, 65.0, NOW, interrupted=True, cancelling=True)
    assert terminal.line(cancelled).endswith("  (interrupted; the run was asked to cancel)")
