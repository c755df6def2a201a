"""Keep a production-shaped Prefect stack up on loopback: PostgreSQL, the server, a pool, workers.

The stack is :class:`harness.prod_stack.ProdStack` serving the
flows of ``examples/flows.py``; this script starts it and leaves it running,
and stops it again from another process (``make prod-up`` / ``make prod-down``)::

    python -m benchmarks.prod_stack up       # start; state in .prod/state.json
    python -m benchmarks.prod_stack up --api-servers 2   # scale-out: 2 API servers, Redis, nginx
    python -m benchmarks.prod_stack status   # what runs, and whether the server is healthy
    python -m benchmarks.prod_stack down     # stop everything by pid, delete the temp dirs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import requests

from harness.postgres import Postgres
from harness.processes import alive, stop_group
from harness.prod_stack import ProdStack, marker, stop_order

REPO = Path(__file__).resolve().parent.parent
FLOWS_SCRIPT = REPO / "examples" / "flows.py"
STATE_DIR = REPO / ".prod"
STATE_FILE = STATE_DIR / "state.json"


def _load_state() -> Optional[Dict[str, Any]]:
    try:
        state: Dict[str, Any] = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return state


def cmd_up(options: argparse.Namespace) -> int:
    """Start the stack, leave it running and write the state file."""
    state = _load_state()
    if state is not None and any(alive(pid) for pid in state["pids"].values()):
        print(f"already up ({STATE_FILE}); run 'down' first", file=sys.stderr)
        return 1
    STATE_DIR.mkdir(exist_ok=True)
    stack = ProdStack(
        FLOWS_SCRIPT,
        workers=options.workers,
        api_servers=options.api_servers,
        redis=not options.no_redis,
    )
    servers = (
        "the Prefect server"
        if options.api_servers == 1
        else (
            f"{'' if stack.use_redis else 'no '}Redis, {options.api_servers} API servers, "
            "the services, nginx"
        )
    )
    print(f"starting PostgreSQL, {servers} and the workers ...", flush=True)
    stack.start()
    stack.detach()
    STATE_FILE.write_text(json.dumps(stack.state, indent=2) + "\n")
    print(f"PREFECT_API_URL={stack.api_url}")
    if len(stack.backend_urls) > 1:
        print(f"nginx round-robin over {', '.join(stack.backend_urls)}")
        if stack.nginx is not None:
            print(f"nginx config {stack.nginx.config_path}")
    if stack.redis is not None:
        print(f"Prefect's messaging on {stack.redis.url}")
    print(f"work pool {stack.pool!r} with {stack.workers} workers; deployments:")
    for name in stack.deployments:
        print(f"  {name}")
    print(f"logs and data in {stack.base_dir}; state in {STATE_FILE}")
    return 0


def cmd_down(options: argparse.Namespace) -> int:
    """Stop every process the state file names, then PostgreSQL; delete the temp dir."""
    state = _load_state()
    if state is None:
        print("nothing to stop (no state file)")
        return 0
    markers = state.get("markers", {})
    for name, pid in sorted(state["pids"].items(), key=lambda item: stop_order(item[0])):
        print(f"stopping {name} (pid {pid})", flush=True)
        stop_group(pid, marker=markers.get(name, marker(name)))
    data_dir = state["postgres"]["data_dir"]
    if data_dir:
        print("stopping PostgreSQL", flush=True)
        Postgres(Path(data_dir), state["postgres"]["port"]).stop()
    base = Path(state["base_dir"])
    if base.name.startswith("deploytrigger-prod-") and base.is_dir():
        shutil.rmtree(base, ignore_errors=True)
    STATE_FILE.unlink()
    print("down")
    return 0


def cmd_status(options: argparse.Namespace) -> int:
    """Print the recorded processes and the server's health."""
    state = _load_state()
    if state is None:
        print("down (no state file)")
        return 1
    print(f"PREFECT_API_URL={state['api_url']}  base dir {state['base_dir']}")
    if len(state.get("backends", [])) > 1:
        print(f"  API servers behind nginx: {', '.join(state['backends'])}")
    if state.get("redis"):
        print(f"  Redis messaging: {state['redis']}")
    for name, pid in state["pids"].items():
        print(f"  {name:16} pid {pid:<8} {'running' if alive(pid) else 'GONE'}")
    pg = Postgres(Path(state["postgres"]["data_dir"]), state["postgres"]["port"])
    print(f"  {'postgres':16} pid {pg.pid() or '-'!s:<8} port {pg.port}")
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
    up = sub.add_parser("up", help="start the stack and leave it running")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument(
        "--api-servers",
        type=int,
        default=1,
        help="API server processes on the database; above 1 behind nginx, sharing events via Redis",
    )
    up.add_argument(
        "--no-redis",
        action="store_true",
        help="with several API servers: no Redis messaging (each keeps its events to itself)",
    )
    sub.add_parser("down", help="stop everything 'up' started")
    sub.add_parser("status", help="show pids and server health")
    options = parser.parse_args(argv)
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status}
    return commands[options.command](options)


if __name__ == "__main__":
    sys.exit(main())
