"""The ``run`` command: trigger a deployment, then follow the run until final or --timeout.

Following is ``_following.py`` (``--watch``, with log lines) or the live state
line here; on Ctrl-C with ``--cancel-on-interrupt`` the cancel is confirmed.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, Optional

from .. import Client, DeploymentNotFoundError, DeployTriggerError, FlowRun
from ._following import runs_seen, state_key, watch_run, watch_states
from ._output import (
    EXIT_COMPLETED,
    EXIT_NOT_FINAL,
    Output,
    error,
    exit_code_for_run,
    run_to_json,
    state_line,
)
from ._parsing import UsageError, parse_key_value, run_parameters, scheduled_time


def client_for(args: argparse.Namespace) -> Client:
    """The client for the command line's ``--api-url`` (else the environment's, the profile's)."""
    return Client(getattr(args, "api_url", None))


def run_command(args: argparse.Namespace, out: Output, state: Dict[str, Any]) -> int:
    parameters = run_parameters(args.params, args.param)
    job_variables = dict(parse_key_value(item, "--job-variable") for item in args.job_variable)
    start = scheduled_time(args.start_in, args.start_at)
    if args.cancel_on_timeout and args.timeout is None:
        raise UsageError("--cancel-on-timeout needs --timeout")
    with client_for(args) as client:
        try:
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
        except DeploymentNotFoundError as exc:
            if exc.hint is None:  # no hint about the URL: the name is what is wrong
                # The library's message offers exc.close_names, if any.
                what = "them" if exc.close_names else "the deployments"
                state["hint"] = f" (`deploytrigger deployments` lists {what})"
            raise
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
            run = _follow_run(client, run, args, out, state)
        except KeyboardInterrupt:
            if args.cancel_on_interrupt:  # the library cancelled it on the way out
                out.progress(f"interrupted: cancelling flow run {run.id}")
                state["cancelled"] = True
                state["run"] = _confirm_cancel(client, state["run"], out)
            raise
        state["run"] = run
    out.report(run)
    code = exit_code_for_run(run)
    if code == EXIT_NOT_FINAL and args.timeout is not None:
        shown = "Unknown" if run.state is None else run.state.name
        error(
            out,
            f"stopped waiting after {args.timeout:g} s; flow run {run.id} is {shown} and goes on: "
            f"follow it with `deploytrigger logs --follow {run.id}` or "
            f"`deploytrigger status {run.id}`",
        )
    return code


def _confirm_cancel(client: Client, run: FlowRun, out: Output) -> FlowRun:
    """Say whether the cancel sent on Ctrl-C was accepted; the run as read after it."""
    try:
        run = client.read_flow_run(run.id)
    except (DeployTriggerError, KeyboardInterrupt) as exc:
        error(out, f"could not read flow run {run.id} after cancelling it: {exc or 'Ctrl-C'}")
        return run
    if run.state is not None and run.state.type.value in ("CANCELLING", "CANCELLED"):
        out.progress(f"cancel accepted: flow run {run.id} is {run.state.name}")
    else:
        shown = "Unknown" if run.state is None else run.state.name
        error(out, f"the cancel was not accepted: flow run {run.id} is {shown}")
    return run


def _link(run: FlowRun) -> str:
    return f"\n  {run.ui_url}" if run.ui_url else ""


def _follow_run(
    client: Client,
    run: FlowRun,
    args: argparse.Namespace,
    out: Output,
    state: Optional[Dict[str, Any]] = None,
) -> FlowRun:
    """Follow the run until final or --timeout, showing progress; the run as last read
    (also kept as ``state["run"]``, for a Ctrl-C)."""
    if args.watch:
        return watch_run(client, run, args, out, state)
    started = time.monotonic()
    last_state = state_key(run)
    if not out.tty:
        out.progress(state_line(run))
    latest = run
    events = watch_states(client, run, args)
    try:
        for event in runs_seen(events, state):
            latest = event
            key = state_key(event)
            if key != last_state:
                last_state = key
                if not out.tty:
                    out.progress(state_line(event))
            if out.tty:
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
