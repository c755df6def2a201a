"""Keep a production-shaped Prefect stack up on loopback: PostgreSQL, the server, a pool, workers.

The stack is :class:`harness.prod_stack.ProdStack` serving the
flows of ``examples/flows.py``; this script starts it and leaves it running,
and stops it again from another process (``make prod-up`` / ``make prod-down``)::

    python -m benchmarks.prod_stack up       # start; state in .prod/state.json
    python -m benchmarks.prod_stack up --api-servers 2   # scale-out: 2 API servers, Redis, nginx
    python -m benchmarks.prod_stack status   # what runs, and whether the server is healthy
    python -m benchmarks.prod_stack down     # stop everything by pid, delete the temp dir

``up`` starts a holder process in a session of its own (``serve``), which
starts the stack, writes the state file and keeps the stack until it gets
SIGTERM; ``down`` sends that to the holder's pid, and the holder stops every
process of the stack by pid, the last started first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Sequence

import psutil
import requests

from harness.processes import tail
from harness.prod_stack import ProdStack

REPO = Path(__file__).resolve().parent.parent
FLOWS_SCRIPT = REPO / "examples" / "flows.py"
STATE_DIR = REPO / ".prod"
STATE_FILE = STATE_DIR / "state.json"
HOLDER_LOG = STATE_DIR / "holder.log"
UP_TIMEOUT_SECONDS = 600.0
"""How long ``up`` waits for the holder to report the stack ready."""


def _load_state() -> Optional[Dict[str, Any]]:
    try:
        state: Dict[str, Any] = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return state


def _holder(state: Dict[str, Any]) -> Optional[psutil.Process]:
    """The holder process the state file names, if it still runs this script."""
    try:
        process = psutil.Process(int(state["holder"]))
        running_us = "benchmarks.prod_stack" in " ".join(process.cmdline())
    except (psutil.Error, KeyError, ValueError):
        return None
    return process if running_us else None


def _options(options: argparse.Namespace) -> List[str]:
    args = ["--workers", str(options.workers), "--api-servers", str(options.api_servers)]
    return [*args, "--no-redis"] if options.no_redis else args


def cmd_up(options: argparse.Namespace) -> int:
    """Start the holder, wait until it has written the state file, print what runs."""
    state = _load_state()
    if state is not None and _holder(state) is not None:
        print(f"already up ({STATE_FILE}); run 'down' first", file=sys.stderr)
        return 1
    STATE_DIR.mkdir(exist_ok=True)
    STATE_FILE.unlink(missing_ok=True)
    print("starting PostgreSQL, the Prefect server(s) and the workers ...", flush=True)
    with open(HOLDER_LOG, "ab") as log:
        holder = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.prod_stack", "serve", *_options(options)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + UP_TIMEOUT_SECONDS
    while (state := _load_state()) is None:
        if holder.poll() is not None or time.monotonic() > deadline:
            holder.terminate()
            print(f"the stack did not start; {HOLDER_LOG}:\n{tail(HOLDER_LOG)}", file=sys.stderr)
            return 1
        time.sleep(1)
    print(f"PREFECT_API_URL={state['api_url']}")
    if len(state["backends"]) > 1:
        print(f"nginx round-robin over {', '.join(state['backends'])}")
    if state["redis"]:
        print(f"Prefect's messaging on {state['redis']}")
    print(f"work pool {state['pool']!r}; deployments:")
    for name in state["deployments"]:
        print(f"  {name}")
    print(f"logs and data in {state['base_dir']}; state in {STATE_FILE}")
    return 0


def cmd_serve(options: argparse.Namespace) -> int:
    """Start the stack, write the state file, keep the stack until SIGTERM (the holder)."""

    def stop(signum: int, frame: Any) -> NoReturn:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    stack = ProdStack(
        FLOWS_SCRIPT,
        workers=options.workers,
        api_servers=options.api_servers,
        redis=not options.no_redis,
    )
    try:
        with stack:
            STATE_FILE.write_text(json.dumps({**stack.state, "holder": os.getpid()}, indent=2))
            while True:
                time.sleep(3600)
    finally:
        STATE_FILE.unlink(missing_ok=True)


def cmd_down(options: argparse.Namespace) -> int:
    """Send SIGTERM to the holder and wait until it has stopped the stack."""
    state = _load_state()
    holder = None if state is None else _holder(state)
    if holder is None:
        print("nothing to stop (no state file, or its holder is gone)")
        STATE_FILE.unlink(missing_ok=True)
        return 0
    print(f"stopping the stack (holder pid {holder.pid})", flush=True)
    holder.terminate()
    try:
        holder.wait(120)
    except psutil.TimeoutExpired:
        holder.kill()
    print("down")
    return 0


def cmd_status(options: argparse.Namespace) -> int:
    """Print the recorded processes and the server's health."""
    state = _load_state()
    if state is None or _holder(state) is None:
        print("down (no state file, or its holder is gone)")
        return 1
    print(f"PREFECT_API_URL={state['api_url']}  base dir {state['base_dir']}")
    if len(state.get("backends", [])) > 1:
        print(f"  API servers behind nginx: {', '.join(state['backends'])}")
    if state.get("redis"):
        print(f"  Redis messaging: {state['redis']}")
    for name, pid in state["pids"].items():
        print(f"  {name:16} pid {pid:<8} {'running' if psutil.pid_exists(pid) else 'GONE'}")
    try:
        health = requests.get(f"{state['api_url']}/health", timeout=5).text.strip()
    except requests.RequestException as exc:
        health = f"unreachable ({type(exc).__name__})"
    print(f"  health: {health}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit code."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("up", "start the stack and leave it running"),
        ("serve", "start the stack and keep it until SIGTERM (what 'up' runs)"),
    ]:
        command = sub.add_parser(name, help=text)
        command.add_argument("--workers", type=int, default=2)
        command.add_argument(
            "--api-servers",
            type=int,
            default=1,
            help="API servers on the database; above 1 behind nginx, sharing events via Redis",
        )
        command.add_argument(
            "--no-redis",
            action="store_true",
            help="with several API servers: no Redis messaging (each keeps its events to itself)",
        )
    sub.add_parser("down", help="stop everything 'up' started")
    sub.add_parser("status", help="show pids and server health")
    options = parser.parse_args(argv)
    commands = {"up": cmd_up, "serve": cmd_serve, "down": cmd_down, "status": cmd_status}
    return commands[options.command](options)


if __name__ == "__main__":
    sys.exit(main())
