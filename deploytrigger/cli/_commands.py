"""The commands: the argument parser, ``wait``, ``status``, ``result``, ``logs``, ``cancel``,
``deployments`` (``run`` is ``_running.py``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import traceback
import uuid
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    NoReturn,
    Optional,
    Sequence,
    TextIO,
)

from .. import (
    ConfigurationError,
    DeployTriggerError,
    FlowRun,
    FlowRunTimeoutError,
    LogRecord,
    ResultError,
    __version__,
)
from .._helpers.display import log_line, runs_summary
from ._following import as_completed_ticking, handles_for
from ._output import (
    EXIT_CODES,
    EXIT_COMPLETED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    WAIT_EXIT_CODES,
    Output,
    WarningLines,
    error,
    exit_code_for_error,
    exit_code_for_run,
    exit_code_for_runs,
    log_to_json,
    one_line,
    result_to_json,
    run_line,
    run_to_json,
)
from ._parsing import (
    UsageError,
    non_negative_seconds,
    unique_run_ids,
)
from ._running import client_for, run_command

DEFAULT_POLL_INTERVAL = 2.0


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
    _seconds(
        run,
        "--timeout",
        "stop waiting after this long (exit 3 if not final); default: wait until final",
    )
    _poll_interval(run, "polls")
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

    wait = commands.add_parser(
        "wait",
        parents=common,
        help="wait for flow runs to be final",
        description="Wait for flow runs (of any deployment) until every one is final. Prints "
        "a line per run as it ends (with --json: the run as one JSON object, as `run --json` "
        "prints it); on a terminal a live line on stderr counts the runs by state.",
        epilog="exit codes: "
        + "; ".join(f"{code} {meaning}" for code, meaning in WAIT_EXIT_CODES.items()),
    )
    wait.add_argument("run_ids", metavar="RUN_ID", nargs="+", help="flow run ids")
    _seconds(
        wait,
        "--timeout",
        "stop waiting after this long (exit 3 if some are not final); default: until all are",
    )
    _poll_interval(wait, "polls (one request per 200 runs still going)")

    status = commands.add_parser("status", parents=common, help="show a run's state")
    status.add_argument("run_id", metavar="RUN_ID")

    result = commands.add_parser(
        "result", parents=common, help="print a finished run's return value as JSON"
    )
    result.add_argument("run_id", metavar="RUN_ID")
    result.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load a pickled result (unpickling runs code: only from storage you trust)",
    )
    result.add_argument("--wait", action="store_true", help="wait for the run to be final first")
    _seconds(
        result,
        "--timeout",
        "with --wait: stop waiting after this long (exit 3); default: until final",
    )
    _poll_interval(result, "polls with --wait")

    logs = commands.add_parser("logs", parents=common, help="print a run's log lines")
    logs.add_argument("run_id", metavar="RUN_ID")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until the run is final"
    )
    _poll_interval(logs, "reads with --follow")

    cancel = commands.add_parser("cancel", parents=common, help="cancel a run")
    cancel.add_argument("run_id", metavar="RUN_ID")

    deployments = commands.add_parser(
        "deployments", parents=common, help="list deployments and their default parameters"
    )
    deployments.add_argument("--flow", metavar="NAME", help="only the deployments of this flow")
    return parser


def _seconds(
    parser: argparse.ArgumentParser, flag: str, text: str, default: Optional[float] = None
) -> None:
    """An option taking seconds (>= 0), e.g. ``--timeout``."""
    parser.add_argument(
        flag, type=non_negative_seconds, default=default, metavar="SECONDS", help=text
    )


def _poll_interval(parser: argparse.ArgumentParser, between: str) -> None:
    text = f"seconds between {between} (default {DEFAULT_POLL_INTERVAL:g})"
    _seconds(parser, "--poll-interval", text, DEFAULT_POLL_INTERVAL)


def _wait_command(args: argparse.Namespace, out: Output, state: Dict[str, Any]) -> int:
    run_ids = unique_run_ids(args.run_ids)
    started = time.monotonic()
    with client_for(args) as client:
        handles = handles_for(client, run_ids, args.poll_interval)
        runs = {handle.id: handle.flow_run for handle in handles}

        def report(run: FlowRun) -> None:
            runs[run.id] = run
            if out.json:
                out.result_json(run_to_json(run))
            else:
                out.result(run_line(run))
            show_live()

        def show_live() -> None:
            if out.tty:
                current = [handle.flow_run for handle in handles]
                out.live(runs_summary(current, time.monotonic() - started))

        show_live()
        try:
            for run in as_completed_ticking(client, handles, args, show_live if out.tty else None):
                report(run)
        except FlowRunTimeoutError as exc:
            for run in exc.not_done:
                report(run)
            out.clear_live()
            if not out.json:
                out.progress(
                    f"{len(exc.not_done)} of {len(handles)} flow runs still not final "
                    f"after {args.timeout:g}s; they keep going"
                )
        except KeyboardInterrupt:
            out.clear_live()
            pending = sum(1 for handle in handles if not handle.done())
            error(out, f"interrupted; {pending} of {len(handles)} flow runs keep going")
            return EXIT_INTERRUPTED
    out.clear_live()
    finished = [runs[handle.id] for handle in handles]
    if not out.json:
        out.progress(runs_summary(finished, time.monotonic() - started))
    return exit_code_for_runs(finished)


def _status_command(args: argparse.Namespace, out: Output, state: Dict[str, Any]) -> int:
    with client_for(args) as client:
        run = client.read_flow_run(args.run_id)
    out.report(run)
    return exit_code_for_run(run)


def _result_command(args: argparse.Namespace, out: Output, state: Dict[str, Any]) -> int:
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout needs --wait")
    with client_for(args) as client:
        if args.wait:
            handle = client.handle(args.run_id, poll_interval=args.poll_interval)
            value = handle.read_result(args.timeout, allow_pickle=args.allow_pickle)
        else:
            value = client.read_result(args.run_id, allow_pickle=args.allow_pickle)
    out.result(result_to_json(value))
    return EXIT_COMPLETED


def _logs_command(args: argparse.Namespace, out: Output, state: Dict[str, Any]) -> int:
    with client_for(args) as client:
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


def _cancel_command(args: argparse.Namespace, out: Output, state: Dict[str, Any]) -> int:
    with client_for(args) as client:
        accepted = client.cancel_flow_run(args.run_id, "Cancelled with deploytrigger cancel")
        run = client.read_flow_run(args.run_id)
    if out.json:
        out.result_json({**run_to_json(run), "cancel_accepted": accepted})
    elif accepted:
        out.result(f"cancelling flow run {run.name!r} ({run.id}): {run.state}")
    if accepted:
        return EXIT_COMPLETED
    current = "Unknown" if run.state is None else run.state.type.value
    error(out, f"flow run {run.id} was not cancelled: it is {current}")
    return EXIT_FAILED


def _deployments_command(args: argparse.Namespace, out: Output, state: Dict[str, Any]) -> int:
    with client_for(args) as client:
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
    "run": run_command,
    "wait": _wait_command,
    "status": _status_command,
    "result": _result_command,
    "logs": _logs_command,
    "cancel": _cancel_command,
    "deployments": _deployments_command,
}


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
) -> int:
    """Run the command line; returns the exit code (see :data:`EXIT_CODES`)."""
    out = Output(False, stdout or sys.stdout, stderr or sys.stderr)
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    state: Dict[str, Any] = {}
    try:
        args = build_parser().parse_args(argv)
        out.json = bool(getattr(args, "json", False))
        debug = bool(getattr(args, "debug", False))
        if debug:
            _log_to(out.stderr)
            return _COMMANDS[args.command](args, out, state)
        with _warnings_to(out):
            return _COMMANDS[args.command](args, out, state)
    except KeyboardInterrupt:
        run = state.get("run")
        if run is not None and not state.get("cancelled"):
            error(out, f"interrupted; flow run {run.id} keeps going")
        elif run is None:
            error(out, "interrupted")
        if out.json and run is not None:  # the run as last seen
            out.result_json({**run_to_json(run), "interrupted": True})
        return EXIT_INTERRUPTED
    except (UsageError, DeployTriggerError) as exc:
        if debug:
            traceback.print_exc(file=out.stderr)
        message = _for_the_command_line(exc) + state.get("hint", "")
        error(out, message)
        code = exit_code_for_error(exc)
        if out.json:
            out.result_json({"error": one_line(message), "exit_code": code})
        return code


def _for_the_command_line(exc: BaseException) -> str:
    """The error's message, with the command line's spelling of the Python advice."""
    text = str(exc)
    if isinstance(exc, ConfigurationError):
        text = text.replace("pass api_url=...", "pass --api-url URL")
    if isinstance(exc, ResultError):
        text = text.replace("pass allow_pickle=True", "pass --allow-pickle")
        text = text.replace("with allow_pickle=True", "with --allow-pickle")
    return text


@contextlib.contextmanager
def _warnings_to(out: Output) -> Iterator[None]:
    """The library's warnings on stderr while a command runs."""
    handler = WarningLines(out)
    logger = logging.getLogger("deploytrigger")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _log_to(stream: TextIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("deploytrigger")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
