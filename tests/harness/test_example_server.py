"""The example server users start (``make server``): its Makefile target, and how it stops.

``python -m harness.local_server`` runs a Prefect server and a flows process,
each in a session of its own (so a Ctrl-C in the terminal reaches only the
main process). SIGTERM must stop all of them as Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List

import pytest
from conftest import FLOWS_SCRIPT

from harness.local_server import server_healthy
from harness.processes import free_port, tail

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 240.0
"""Seconds the server and its flows get to be ready (a loaded 2-core machine)."""
STOP_TIMEOUT = 90.0
"""Seconds every process gets to end after the signal: far more than the few a stop takes,
and less than the 180 s after which the harness would SIGKILL a process that ignored it."""


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_server_runs_the_local_server_from_the_demo_venv_with_the_users_arguments() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "server", "SERVER_ARGS=--port 4200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    command = dry_run.replace("\\\n", " ").splitlines()[-1].split()
    assert command[:4] == [
        f"PYTHONPATH={ROOT}",
        ".venv-demo/bin/python",
        "-m",
        "harness.local_server",
    ]
    assert command[4:] == [
        "--flows", "examples/flows.py", "--deployment", "add/add-dep", "--port", "4200"
    ]  # fmt: skip
    building = subprocess.run(
        ["make", "-n", "-B", "server"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "-r harness/requirements/harness.txt" in building  # mirakuru, which the harness runs on


def _tree(pid: int) -> List[Any]:
    """The process ``pid`` and all its descendants that are alive now (psutil processes)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _command(process: Any) -> str:
    import psutil

    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return ""


def _still_running(processes: List[Any], timeout: float) -> List[Any]:
    """Those of ``processes`` still running after waiting up to ``timeout`` seconds for them."""
    import psutil

    _, alive = psutil.wait_procs(processes, timeout=timeout)
    running = []
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
    return running


def _kill(processes: List[Any]) -> None:
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


@pytest.mark.integration
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_example_server_and_every_process_it_started(
    stop_signal: int, tmp_path: Path
) -> None:
    pytest.importorskip("psutil")
    port = free_port()
    output = tmp_path / "output.txt"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "harness.local_server", "--flows", str(FLOWS_SCRIPT),
        "--deployment", "add/add-dep", "--port", str(port),
    ]  # fmt: skip
    with open(output, "wb") as out:
        main = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    tree: List[Any] = []
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while "export PREFECT_API_URL=" not in output.read_text() and main.poll() is None:
            assert time.monotonic() < deadline, f"not ready in time:\n{tail(output)}"
            time.sleep(0.5)
        assert main.poll() is None, f"it exited:\n{tail(output)}"
        assert f"export PREFECT_API_URL=http://127.0.0.1:{port}/api" in output.read_text()
        assert server_healthy(f"http://127.0.0.1:{port}/api")

        tree = _tree(main.pid)
        commands = [_command(process) for process in tree]
        assert any("prefect server start" in c for c in commands), commands
        assert any(c.endswith(str(FLOWS_SCRIPT)) for c in commands), commands

        main.send_signal(stop_signal)
        assert main.wait(timeout=STOP_TIMEOUT) == 0, tail(output)
        left = _still_running(tree, timeout=STOP_TIMEOUT)
        assert left == [], [f"{p.pid}: {_command(p)}" for p in left]
        assert "stopping" in output.read_text()
    finally:
        _kill([*_tree(main.pid), *tree])
        if main.poll() is None:
            main.kill()
        main.wait(timeout=30)
