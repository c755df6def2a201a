"""The ``deploytrigger`` command line: a thin layer over the public API.

Commands: ``run`` (trigger a deployment, optionally wait, watch, cancel on
timeout), ``status``, ``logs``, ``cancel`` and ``deployments``. Only the
standard library (argparse) and deploytrigger's own dependencies are used.

Exit codes (:data:`EXIT_CODES`): 0 completed, 1 failed or crashed, 2 usage
error, 3 still not final when the timeout ran out, 4 cancelled (or being
cancelled), 5 API or configuration error; 130 on Ctrl-C. Errors are one line
on stderr; ``--debug`` adds the traceback and the HTTP log.

The parsing helpers at the top are pure functions, tested on their own. Only
the public API (names in ``deploytrigger.__all__``) is used.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
import traceback
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, NoReturn, Optional, Sequence, TextIO, Tuple

from dateutil import parser as date_parser

from . import (
    Client,
    DeployTriggerError,
    FlowRun,
    InvalidArgumentError,
    LogRecord,
    ParameterRejectedError,
    StateType,
    __version__,
)

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_CANCELLED",
    "EXIT_CODES",
    "EXIT_COMPLETED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FINAL",
    "EXIT_USAGE",
    "UsageError",
    "exit_code_for_error",
    "exit_code_for_run",
    "main",
    "parse_duration",
    "parse_key_value",
    "parse_params",
    "parse_start_at",
    "parse_value",
    "run_to_json",
]

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

DEFAULT_POLL_INTERVAL = 2.0


class UsageError(Exception):
    """A bad option or argument on the command line (exit code 2)."""


# -- pure parsing helpers -----------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """A ``key=value`` value: its JSON meaning when it is JSON, else the text itself.

    ``5`` is an int, ``true`` a bool, ``[1,2]`` a list, ``"5"`` the string "5";
    ``hello`` (not JSON) is the string "hello". ``NaN`` and ``Infinity`` stay strings.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_key_value(text: str, option: str = "--param") -> Tuple[str, Any]:
    """Split ``key=value`` at the first ``=``; the value as :func:`parse_value` reads it.

    Raises:
        UsageError: no ``=`` or an empty key.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"{option} expects key=value, not {text!r}")
    return key, parse_value(value)


def parse_params(text: str, read_file: Any = None) -> Dict[str, Any]:
    """``--params``: a JSON object, or ``@path`` to a file holding one.

    Raises:
        UsageError: unreadable file, invalid JSON, or JSON that is not an object.
    """
    source = "--params"
    if text.startswith("@"):
        path = text[1:]
        source = f"--params file {path!r}"
        try:
            text = read_file(path) if read_file is not None else _read_text(path)
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``10m``, ``2h``, ``1d``, ``1h30m`` or a bare number of seconds.

    Raises:
        UsageError: anything else, or a negative duration.
    """
    compact = text.strip().lower().replace(" ", "")
    position, total, matched = 0, 0.0, False
    while position < len(compact):
        match = _DURATION.match(compact, position)
        if match is None:
            break
        number, unit = match.groups()
        if not unit and (position or match.end() != len(compact)):
            break  # a bare number of seconds only on its own: "10m5" is ambiguous
        total += float(number) * _UNITS[unit or "s"]
        position, matched = match.end(), True
    if not matched or position != len(compact):
        raise UsageError(
            f"--start-in expects a duration like 90s, 10m, 2h, 1d or 1h30m, not {text!r}"
        )
    return total


def parse_start_at(text: str) -> datetime:
    """An ISO 8601 (or other dateutil-readable) time; without an offset it is local time.

    Raises:
        UsageError: the text is not a date and time.
    """
    try:
        parsed = date_parser.parse(text)
    except (ValueError, OverflowError):
        raise UsageError(
            f"--start-at expects a date and time like 2026-11-23T18:00:00+01:00, not {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # the user's local time zone
    return parsed.astimezone(timezone.utc)


def non_negative_seconds(text: str) -> float:
    """An argparse type: seconds, a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, not {text!r}")
    return value


def scheduled_time(
    start_in: Optional[str], start_at: Optional[str], now: Optional[datetime] = None
) -> Optional[datetime]:
    """The run's scheduled time from ``--start-in`` / ``--start-at``; None for now."""
    if start_in is not None:
        base = now or datetime.now(timezone.utc)
        return base + timedelta(seconds=parse_duration(start_in))
    if start_at is not None:
        return parse_start_at(start_at)
    return None


def run_parameters(params: Optional[str], param: Iterable[str]) -> Dict[str, Any]:
    """``--params`` first, then each ``-p key=value`` over it."""
    merged = parse_params(params) if params is not None else {}
    for item in param:
        key, value = parse_key_value(item, "--param")
        merged[key] = value
    return merged


# -- exit codes and output shapes -----------------------------------------------------


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


def exit_code_for_error(exc: BaseException) -> int:
    """2 for bad input (found by the client or refused by the deployment), else 5."""
    if isinstance(exc, (UsageError, InvalidArgumentError, ParameterRejectedError)):
        return EXIT_USAGE
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


def one_line(text: str) -> str:
    """``text`` with all whitespace runs (newlines too) collapsed to one space."""
    return " ".join(str(text).split())


def _stamp(when: Optional[datetime] = None) -> str:
    moment = (when or datetime.now(timezone.utc)).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def state_line(run: FlowRun, when: Optional[datetime] = None) -> str:
    """``<time> state    Running: message`` for a plain, timestamped stream."""
    state = "Unknown" if run.state is None else str(run.state)
    stamp = when or (run.state.timestamp if run.state is not None else None)
    return f"{_stamp(stamp)} {'STATE':<8} {one_line(state)}"


def log_line(record: LogRecord) -> str:
    """``<time> INFO     message``; a multi-line message keeps its lines."""
    return f"{_stamp(record.timestamp)} {record.level_name:<8} {record.message}"


# -- argument parsing -------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is an exception (one line, exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _common(defaults: bool) -> _Parser:
    """Options every command takes, before or after its name."""
    common = _Parser(add_help=False)
    default: Any = None if defaults else argparse.SUPPRESS
    common.add_argument(
        "--api-url",
        default=default,
        help="the Prefect API URL (default: PREFECT_API_URL or the Prefect profile)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="print one JSON object on stdout instead of text",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=False if defaults else argparse.SUPPRESS,
        help="log HTTP requests to stderr and show tracebacks",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(
        prog="deploytrigger",
        description="Trigger and watch Prefect deployment runs.",
        epilog="exit codes: "
        + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()),
        parents=[_common(True)],
    )
    parser.add_argument("--version", action="version", version=f"deploytrigger {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    common = [_common(False)]

    run = commands.add_parser(
        "run", parents=common, help="trigger a deployment run and wait for it"
    )
    run.add_argument("deployment", metavar="NAME", help="'flow/deployment' or a deployment id")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter; VALUE is read as JSON when it parses, else as a string (repeatable)",
    )
    run.add_argument("--params", metavar="JSON", help="parameters as a JSON object, or @file.json")
    when = run.add_mutually_exclusive_group()
    when.add_argument("--start-in", metavar="DURATION", help="start later: 90s, 10m, 2h, 1d")
    when.add_argument(
        "--start-at", metavar="TIME", help="start at an ISO 8601 time (local if no offset)"
    )
    run.add_argument("--name", help="the run's name")
    run.add_argument("--tag", action="append", default=[], help="a tag for the run (repeatable)")
    run.add_argument("--idempotency-key", help="repeating a key returns the same run")
    run.add_argument("--work-queue", help="a work queue of the deployment's work pool")
    run.add_argument(
        "--job-variable",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an infrastructure override, parsed like --param (repeatable)",
    )
    run.add_argument(
        "--timeout",
        type=non_negative_seconds,
        metavar="SECONDS",
        help="stop waiting after this long (exit 3 if not final); default: wait until final",
    )
    run.add_argument(
        "--poll-interval",
        type=non_negative_seconds,
        default=DEFAULT_POLL_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between polls (default {DEFAULT_POLL_INTERVAL:g})",
    )
    run.add_argument("--no-wait", action="store_true", help="print the run id and exit")
    run.add_argument(
        "--watch", action="store_true", help="stream state changes and the run's log lines"
    )
    run.add_argument(
        "--cancel-on-timeout",
        action="store_true",
        help="cancel the run when --timeout runs out (exit 4)",
    )
    run.add_argument("--cancel-on-interrupt", action="store_true", help="cancel the run on Ctrl-C")

    status = commands.add_parser("status", parents=common, help="show a run's state")
    status.add_argument("run_id", metavar="RUN_ID")

    logs = commands.add_parser("logs", parents=common, help="print a run's log lines")
    logs.add_argument("run_id", metavar="RUN_ID")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until the run is final"
    )
    logs.add_argument(
        "--poll-interval",
        type=non_negative_seconds,
        default=DEFAULT_POLL_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between reads with --follow (default {DEFAULT_POLL_INTERVAL:g})",
    )

    cancel = commands.add_parser("cancel", parents=common, help="cancel a run")
    cancel.add_argument("run_id", metavar="RUN_ID")

    deployments = commands.add_parser(
        "deployments", parents=common, help="list deployments and their default parameters"
    )
    deployments.add_argument("--flow", metavar="NAME", help="only the deployments of this flow")
    return parser


# -- commands ---------------------------------------------------------------------------------


class _Output:
    """Where each kind of output goes: results on stdout, progress on stderr."""

    def __init__(self, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json = as_json
        self.stdout = stdout
        self.stderr = stderr
        self.tty = _isatty(stderr)
        self._live = False

    def result(self, text: str) -> None:
        self.clear_live()
        print(text, file=self.stdout, flush=True)

    def result_json(self, value: Any) -> None:
        self.clear_live()
        print(json.dumps(value, default=str), file=self.stdout, flush=True)

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


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _client(args: argparse.Namespace) -> Client:
    return Client(getattr(args, "api_url", None))


def _run_command(args: argparse.Namespace, out: _Output, state: Dict[str, Any]) -> int:
    parameters = run_parameters(args.params, args.param)
    job_variables = dict(parse_key_value(item, "--job-variable") for item in args.job_variable)
    start = scheduled_time(args.start_in, args.start_at)
    if args.cancel_on_timeout and args.timeout is None:
        raise UsageError("--cancel-on-timeout needs --timeout")
    with _client(args) as client:
        run = client.run_deployment(
            args.deployment,
            parameters=parameters,
            scheduled_time=start,
            flow_run_name=args.name,
            timeout=0,
            tags=args.tag or None,
            idempotency_key=args.idempotency_key,
            work_queue_name=args.work_queue,
            job_variables=job_variables or None,
            as_subflow=False,
        )
        state["run"] = run
        if args.no_wait:
            if out.json:
                out.result_json(run_to_json(run))
            else:
                out.result(str(run.id))
            return EXIT_COMPLETED
        if not out.json:
            out.progress(f"created flow run {run.name!r} ({run.id})" + _link(run))
        try:
            run = _follow_run(client, run, args, out)
        except KeyboardInterrupt:
            if args.cancel_on_interrupt:  # the library cancelled it on the way out
                out.progress(f"interrupted: cancelling flow run {run.id}")
                state["cancelled"] = True
            raise
        state["run"] = run
    _report_run(run, out)
    return exit_code_for_run(run)


def _link(run: FlowRun) -> str:
    return f"\n  {run.ui_url}" if run.ui_url else ""


def _follow_run(client: Client, run: FlowRun, args: argparse.Namespace, out: _Output) -> FlowRun:
    """Follow the run until final or --timeout, showing progress; the run as last read."""
    started = time.monotonic()
    last_state: Optional[Tuple[Any, ...]] = (
        None if run.state is None else (run.state.type, run.state.name)
    )
    if args.watch:
        out.stream(state_line(run))
    elif not out.tty:
        out.progress(state_line(run))
    latest = run
    events = client.watch(
        run,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        logs=args.watch,
        cancel_on_timeout=args.cancel_on_timeout,
        cancel_on_interrupt=args.cancel_on_interrupt,
    )
    try:
        for event in events:
            if isinstance(event, LogRecord):
                out.stream(log_line(event))
                continue
            latest = event
            key = None if event.state is None else (event.state.type, event.state.name)
            if key != last_state:
                last_state = key
                if args.watch:
                    out.stream(state_line(event))
                elif not out.tty:
                    out.progress(state_line(event))
            if out.tty and not args.watch:
                elapsed = time.monotonic() - started
                shown = "Unknown" if event.state is None else event.state.name
                out.live(f"{event.name}  {shown}  {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}")
    except KeyboardInterrupt as interrupt:
        # One that struck here rather than inside the library's loop goes back to
        # it, so that it can cancel the run; ``throw`` raises it again either way.
        events.throw(interrupt)
        raise
    out.clear_live()
    return latest


def _report_run(run: FlowRun, out: _Output) -> None:
    if out.json:
        out.result_json(run_to_json(run))
    else:
        out.result(run.summary())


def _status_command(args: argparse.Namespace, out: _Output, state: Dict[str, Any]) -> int:
    with _client(args) as client:
        run = client.read_flow_run(args.run_id)
    _report_run(run, out)
    return exit_code_for_run(run)


def _logs_command(args: argparse.Namespace, out: _Output, state: Dict[str, Any]) -> int:
    with _client(args) as client:
        records: Iterable[LogRecord] = (
            client.follow_logs(args.run_id, poll_interval=args.poll_interval)
            if args.follow
            else client.read_all_logs(args.run_id)
        )
        for record in records:
            if out.json:
                out.result_json(log_to_json(record))
            else:
                out.result(log_line(record))
    return EXIT_COMPLETED


def _cancel_command(args: argparse.Namespace, out: _Output, state: Dict[str, Any]) -> int:
    with _client(args) as client:
        accepted = client.cancel_flow_run(args.run_id, "Cancelled with deploytrigger cancel")
        run = client.read_flow_run(args.run_id)
    if out.json:
        out.result_json({**run_to_json(run), "cancel_accepted": accepted})
    elif accepted:
        out.result(f"cancelling flow run {run.name!r} ({run.id}): {run.state}")
    if accepted:
        return EXIT_COMPLETED
    current = "Unknown" if run.state is None else run.state.type.value
    _error(out, f"flow run {run.id} was not cancelled: it is {current}")
    return EXIT_FAILED


def _deployments_command(args: argparse.Namespace, out: _Output, state: Dict[str, Any]) -> int:
    with _client(args) as client:
        deployments = client.read_deployments(flow_name=args.flow)
        flow_names: Dict[uuid.UUID, str] = {}
        for deployment in deployments:
            if deployment.flow_id not in flow_names:
                flow_names[deployment.flow_id] = client.read_flow(deployment.flow_id).name
    rows = sorted((f"{flow_names[d.flow_id]}/{d.name}", d) for d in deployments)
    if out.json:
        out.result_json(
            {
                "deployments": [
                    {
                        "name": name,
                        "id": str(d.id),
                        "parameters": d.parameters,
                        "tags": list(d.tags),
                        "work_pool_name": d.work_pool_name,
                    }
                    for name, d in rows
                ]
            }
        )
        return EXIT_COMPLETED
    if not rows:
        out.result("no deployments" + (f" of flow {args.flow!r}" if args.flow else ""))
    width = max((len(name) for name, _ in rows), default=0)
    for name, d in rows:
        out.result(f"{name:<{width}}  {json.dumps(d.parameters, sort_keys=True, default=str)}")
    return EXIT_COMPLETED


_COMMANDS = {
    "run": _run_command,
    "status": _status_command,
    "logs": _logs_command,
    "cancel": _cancel_command,
    "deployments": _deployments_command,
}


def _error(out: _Output, message: str) -> None:
    out.clear_live()
    print(f"deploytrigger: error: {one_line(message)}", file=out.stderr, flush=True)


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
) -> int:
    """Run the command line; returns the exit code (see :data:`EXIT_CODES`)."""
    out = _Output(False, stdout or sys.stdout, stderr or sys.stderr)
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    state: Dict[str, Any] = {}
    try:
        args = build_parser().parse_args(argv)
        out.json = bool(getattr(args, "json", False))
        debug = bool(getattr(args, "debug", False))
        if debug:
            _log_to(out.stderr)
        return _COMMANDS[args.command](args, out, state)
    except KeyboardInterrupt:
        run = state.get("run")
        if run is not None and not state.get("cancelled"):
            _error(out, f"interrupted; flow run {run.id} keeps going")
        elif run is None:
            _error(out, "interrupted")
        return EXIT_INTERRUPTED
    except (UsageError, DeployTriggerError) as exc:
        if debug:
            traceback.print_exc(file=out.stderr)
        _error(out, str(exc))
        code = exit_code_for_error(exc)
        if out.json:
            out.result_json({"error": one_line(str(exc)), "exit_code": code})
        return code


def _log_to(stream: TextIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("deploytrigger")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
