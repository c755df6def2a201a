"""What the command line prints: exit codes, JSON shapes, timestamped lines.

Results go to stdout; progress and errors to stderr (:class:`Output`).
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time, timedelta
from typing import Any, Dict, Iterable, Optional, TextIO, Union

from .. import (
    FlowRun,
    FlowRunFailedError,
    FlowRunTimeoutError,
    InvalidArgumentError,
    LogRecord,
    ParameterRejectedError,
    ResultNotReadyError,
    State,
    StateType,
)
from .._helpers.display import is_terminal, local_stamp
from ._parsing import UsageError

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FINAL = 3
EXIT_CANCELLED = 4
EXIT_API_ERROR = 5
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_COMPLETED: "the run completed",
    EXIT_FAILED: "the run failed or crashed",
    EXIT_USAGE: "usage error: bad options or arguments, nothing was run",
    EXIT_NOT_FINAL: "the run was still not final when --timeout ran out",
    EXIT_CANCELLED: "the run was cancelled (or is being cancelled)",
    EXIT_API_ERROR: "API or configuration error (unknown deployment, server unreachable, ...)",
}


def exit_code_for_run(run: FlowRun) -> int:
    """0 completed, 1 failed or crashed, 4 cancelled or cancelling, 3 anything not final."""
    state = run.state
    if state is None:
        return EXIT_NOT_FINAL
    if state.type is StateType.COMPLETED:
        return EXIT_COMPLETED
    if state.type in (StateType.FAILED, StateType.CRASHED):
        return EXIT_FAILED
    if state.type in (StateType.CANCELLED, StateType.CANCELLING):
        return EXIT_CANCELLED
    return EXIT_NOT_FINAL


WAIT_EXIT_CODES = {
    EXIT_COMPLETED: "every run completed",
    EXIT_FAILED: "at least one run failed or crashed",
    EXIT_NOT_FINAL: "none failed, but some were still not final when --timeout ran out",
    EXIT_CANCELLED: "every run is final, none failed, at least one was cancelled",
    EXIT_API_ERROR: "API or configuration error (unknown run, server unreachable, ...)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); the runs keep going",
}
"""The exit codes of ``wait``, which stand for all its runs (:func:`exit_code_for_runs`)."""

_WORST_FIRST = (EXIT_FAILED, EXIT_NOT_FINAL, EXIT_CANCELLED, EXIT_COMPLETED)


def exit_code_for_runs(runs: Iterable[FlowRun]) -> int:
    """One code for many runs: the worst of :func:`exit_code_for_run` over them.

    A failure (1) outranks a run still going (3), which outranks a
    cancellation (4): a run not final may still fail, and a script that sees 4
    knows every run ended. 0 only when every run completed (or there are none).
    """
    codes = {exit_code_for_run(run) for run in runs}
    return next((code for code in _WORST_FIRST if code in codes), EXIT_COMPLETED)


def run_line(run: FlowRun) -> str:
    """One line: ``flow run 'name' (id): COMPLETED in 3s``, then the state's message."""
    line = run.summary().splitlines()[0]
    if run.state is not None and run.state.message:
        line += f": {one_line(run.state.message)}"
    return line


def exit_code_for_error(exc: BaseException) -> int:
    """2 for bad input (found by the client or refused by the deployment); for a
    result that is not there, the code of the run (1 or 4 when it did not complete,
    3 when it is not final); else 5."""
    if isinstance(exc, (UsageError, InvalidArgumentError, ParameterRejectedError)):
        return EXIT_USAGE
    if isinstance(exc, FlowRunFailedError):
        return exit_code_for_run(exc.flow_run)
    if isinstance(exc, (ResultNotReadyError, FlowRunTimeoutError)):
        return EXIT_NOT_FINAL
    return EXIT_API_ERROR


def _iso(value: Optional[datetime]) -> Optional[str]:
    return None if value is None else value.isoformat()


def run_to_json(run: FlowRun) -> Dict[str, Any]:
    """The run as a JSON-ready dict, with the exit code the CLI gives it."""
    state = run.state
    return {
        "id": str(run.id),
        "name": run.name,
        "deployment_id": None if run.deployment_id is None else str(run.deployment_id),
        "state": None if state is None else state.type.value,
        "state_name": None if state is None else state.name,
        "state_message": None if state is None else state.message,
        "final": run.is_final(),
        "parameters": run.parameters,
        "tags": list(run.tags),
        "expected_start_time": _iso(run.expected_start_time),
        "start_time": _iso(run.start_time),
        "end_time": _iso(run.end_time),
        "ui_url": run.ui_url,
        "exit_code": exit_code_for_run(run),
    }


def log_to_json(record: LogRecord) -> Dict[str, Any]:
    """A log line as a JSON-ready dict."""
    return {
        "timestamp": record.timestamp.isoformat(),
        "level": record.level,
        "level_name": record.level_name,
        "name": record.name,
        "message": record.message,
    }


def _jsonable(value: Any) -> Any:
    """``json.dumps``' fallback for the types a result decodes to: ISO times, seconds, lists."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:  # mixed types
            return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, BaseException):
        return {"__exc_type__": type(value).__qualname__, "message": str(value)}
    return str(value)  # UUID, Decimal, paths, anything else


def result_to_json(value: Any) -> str:
    """A run's return value as one line of JSON: times in ISO 8601, timedeltas in
    seconds, sets as lists, UUIDs, decimals and paths as strings."""
    return json.dumps(value, default=_jsonable)


def one_line(text: str) -> str:
    """``text`` with all whitespace runs (newlines too) collapsed to one space."""
    return " ".join(str(text).split())


def state_line(run: Union[FlowRun, State], when: Optional[datetime] = None) -> str:
    """``<time> state    Running: message`` (of a run's state) for a plain, timestamped stream."""
    entered = run.state if isinstance(run, FlowRun) else run
    shown = "Unknown" if entered is None else str(entered)
    stamp = when or (entered.timestamp if entered is not None else None)
    return f"{local_stamp(stamp)} {'STATE':<8} {one_line(shown)}"


class Output:
    """Where each kind of output goes: results on stdout, progress on stderr."""

    def __init__(self, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json = as_json
        self.stdout = stdout
        self.stderr = stderr
        self.tty = is_terminal(stderr)
        self._live = False

    def result(self, text: str) -> None:
        self.clear_live()
        print(text, file=self.stdout, flush=True)

    def result_json(self, value: Any) -> None:
        self.clear_live()
        print(json.dumps(value, default=str), file=self.stdout, flush=True)

    def report(self, run: FlowRun) -> None:
        """A run as the command's result: its JSON, or its summary line."""
        if self.json:
            self.result_json(run_to_json(run))
        else:
            self.result(run.summary())

    def stream(self, text: str) -> None:
        """A --watch line: on stdout, or stderr when stdout carries JSON."""
        self.clear_live()
        print(text, file=self.stderr if self.json else self.stdout, flush=True)

    def progress(self, text: str) -> None:
        """A plain progress line on stderr."""
        self.clear_live()
        print(text, file=self.stderr, flush=True)

    def live(self, text: str) -> None:
        """Rewrite the one live status line on a terminal."""
        self.stderr.write("\r\x1b[K" + text)
        self.stderr.flush()
        self._live = True

    def clear_live(self) -> None:
        if self._live:
            self.stderr.write("\r\x1b[K")
            self.stderr.flush()
            self._live = False


def error(out: Output, message: str) -> None:
    """One line on stderr: ``deploytrigger: error: ...``."""
    out.clear_live()
    print(f"deploytrigger: error: {one_line(message)}", file=out.stderr, flush=True)


class WarningLines(logging.Handler):
    """The library's warnings as ``deploytrigger: warning: ...`` lines on stderr.

    Attached to the ``deploytrigger`` logger while a command runs (but under
    ``--debug``, which shows every record), so that a wait riding out an
    outage says so on the terminal.
    """

    def __init__(self, out: Output) -> None:
        super().__init__(logging.WARNING)
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's to report, not a crash
            self.handleError(record)
            return
        self._out.clear_live()
        print(f"deploytrigger: warning: {one_line(message)}", file=self._out.stderr, flush=True)
