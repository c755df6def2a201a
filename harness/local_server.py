"""A throwaway local Prefect server, optionally serving the deployments of a flows script.

The demo, the integration tests and the benchmarks use it::

    with LocalPrefect(Path("examples/flows.py"), deployments=["add/add-dep"]) as prefect:
        print(prefect.api_url)  # http://127.0.0.1:<port>/api

Everything Prefect runs in child processes (``prefect server start`` and
``python <flows script>``) with their own ``PREFECT_HOME`` in a temporary
directory, so the user's Prefect profile, settings and database are never
touched. This module imports nothing from Prefect; only the interpreter that
runs it needs Prefect installed (``make server`` uses ``.venv-demo``). Run it to
keep a server up until Ctrl-C or SIGTERM, which stop every process it started::

    python -m harness.local_server --flows examples/flows.py \\
        --deployment add/add-dep [--port 4200]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

import requests

from harness.processes import Harness, Service, free_port

AUTH_STRING_VARIABLE = "PREFECT_SERVER_API_AUTH_STRING"
"""The server setting that makes it require basic auth (``user:password``)."""


def prefect_command(python: Optional[str] = None) -> List[str]:
    """Return the command that runs Prefect's CLI with ``python`` (this interpreter by default).

    Raises:
        RuntimeError: Prefect is not installed for this interpreter.
    """
    if python is not None:
        # Prefect 2 has no ``__main__``: its console script sits beside the interpreter.
        script = Path(python).parent / "prefect"
        return [str(script)] if script.is_file() else [str(python), "-m", "prefect"]
    spec = importlib.util.find_spec("prefect")
    package_init = Path(spec.origin) if spec is not None and spec.origin else None
    if package_init is not None and package_init.with_name("__main__.py").is_file():
        return [sys.executable, "-m", "prefect"]
    script = Path(sys.executable).parent / "prefect"
    if script.is_file():
        return [str(script)]
    raise RuntimeError(
        f"Prefect is not installed for {sys.executable}; "
        "install the pinned server: pip install -r harness/requirements/server.txt"
    )


def server_command(port: int, python: Optional[str] = None) -> List[str]:
    """The command that starts a Prefect server on ``127.0.0.1:<port>`` with ``python``."""
    return [
        *prefect_command(python), "server", "start", "--host", "127.0.0.1", "--port", str(port)
    ]  # fmt: skip


def prefect_environment(
    home: Path, api_url: str, *overrides: Optional[Mapping[str, str]]
) -> Dict[str, str]:
    """The environment for Prefect processes of a throwaway server.

    Args:
        home: Their ``PREFECT_HOME``.
        api_url: Their ``PREFECT_API_URL``.
        overrides: More variables, each mapping winning over those before it.

    Returns:
        This process's environment without the user's ``PREFECT_*`` settings,
        plus ``home``, ``api_url``, analytics and UI off, plus ``overrides``.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
    )
    for override in overrides:
        env.update(override or {})
    return env


def server_healthy(api_url: str, auth: Optional[Tuple[str, str]] = None) -> bool:
    """Whether the server at ``api_url`` answers ``GET /health`` with ``true``."""
    try:
        response = requests.get(f"{api_url}/health", auth=auth, timeout=5)
    except requests.RequestException:
        return False
    return response.status_code == 200 and response.text.strip() == "true"


class LocalPrefect(Harness):
    """A Prefect server on a free local port, optionally serving a flows script.

    Args:
        flows_script: A Python script that serves deployments (it calls
            Prefect's ``serve``), run by path in a child process from its own
            directory. None: the server alone.
        deployments: The ``"<flow>/<deployment>"`` names that ``flows_script``
            serves and that :meth:`start` waits for.
        serve_flows: False starts the server alone even with a ``flows_script``.
        startup_timeout: Seconds to wait for the server to become healthy, and
            again for the served deployments to appear.
        env: Extra environment variables for the server and the flows process,
            winning over the defaults set here. With
            ``PREFECT_SERVER_API_AUTH_STRING`` the server requires basic auth;
            the flows process and the readiness checks then send it.
        python: The interpreter that runs the server and the flows script, e.g.
            one from :func:`~harness.server_venv.server_python`
            with another Prefect version; this one by default.
        port: The server's TCP port on 127.0.0.1; a free one by default.

    Attributes:
        port: The server's TCP port on 127.0.0.1, chosen when constructed.
        api_url: ``http://127.0.0.1:<port>/api``.
        home: The temporary ``PREFECT_HOME`` (database, ``server.log``,
            ``flows.log``) while started, else None.

    Raises:
        FileNotFoundError: ``flows_script`` is not a file.
    """

    def __init__(
        self,
        flows_script: Optional[Path] = None,
        *,
        deployments: Sequence[str] = (),
        serve_flows: bool = True,
        startup_timeout: float = 180.0,
        env: Optional[Mapping[str, str]] = None,
        python: Optional[Path] = None,
        port: Optional[int] = None,
    ) -> None:
        if flows_script is not None and not Path(flows_script).is_file():
            raise FileNotFoundError(f"no flows script at {flows_script}")
        self.flows_script = Path(flows_script).resolve() if flows_script is not None else None
        self.deployments: Tuple[str, ...] = tuple(deployments)
        self.serve_flows = serve_flows and self.flows_script is not None
        self.startup_timeout = startup_timeout
        self.port = free_port() if port is None else port
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.home: Optional[Path] = None
        self._extra_env: Dict[str, str] = dict(env or {})
        self.python: Optional[str] = None if python is None else str(python)
        self._server: Optional[Service] = None

    def __repr__(self) -> str:
        return f"LocalPrefect(api_url={self.api_url!r}, home={self.home!r})"

    @property
    def auth(self) -> Optional[Tuple[str, str]]:
        """``(user, password)`` for ``requests``' ``auth=`` when the server requires basic auth."""
        auth_string = self._extra_env.get(AUTH_STRING_VARIABLE)
        if not auth_string:
            return None
        user, _, password = auth_string.partition(":")
        return user, password

    def _start(self) -> None:
        """Start the server (and the flows), wait until they are ready; ``home`` goes at stop."""
        home = self.home = Path(tempfile.mkdtemp(prefix="deploytrigger-prefect-"))
        self.on_stop(self._forget_home, home)
        self._start_server()
        if self.serve_flows:
            self._start_flows()

    def _forget_home(self, home: Path) -> None:
        shutil.rmtree(home, ignore_errors=True)
        self.home = self._server = None

    def restart_server(self) -> None:
        """Stop the server and start it again: same port, same database.

        The flows process keeps running and reconnects on its own.

        Raises:
            RuntimeError: Not started, or the server did not come back in time.
        """
        if self._server is None:
            raise RuntimeError(f"{self!r} is not started")
        self._server.stop()
        self._start_server()

    def missing_deployments(self) -> List[str]:
        """The names in ``deployments`` that the server does not know (yet)."""
        missing = []
        for name in self.deployments:
            flow_name, deployment_name = name.split("/", 1)
            url = f"{self.api_url}/deployments/name/{quote(flow_name)}/{quote(deployment_name)}"
            try:
                status = requests.get(url, auth=self.auth, timeout=5).status_code
            except requests.RequestException:
                status = None
            if status != 200:
                missing.append(name)
        return missing

    def _start_server(self) -> None:
        assert self.home is not None
        self._server = self.run(
            Service(
                "prefect server",
                server_command(self.port, self.python),
                self._environment(),
                self.home / "server.log",
                ready=lambda: server_healthy(self.api_url),
                timeout=self.startup_timeout,
            )
        )

    def _start_flows(self) -> None:
        assert self.home is not None and self.flows_script is not None
        defaults = {"PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        auth_string = self._extra_env.get(AUTH_STRING_VARIABLE)
        if auth_string:
            defaults["PREFECT_API_AUTH_STRING"] = auth_string
        self.run(
            Service(
                self.flows_script.name,
                [self.python or sys.executable, str(self.flows_script)],
                self._environment(defaults),
                self.home / "flows.log",
                ready=lambda: not self.missing_deployments(),
                cwd=self.flows_script.parent,
                timeout=self.startup_timeout,
            )
        )

    def _environment(self, defaults: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        assert self.home is not None
        return prefect_environment(self.home, self.api_url, defaults, self._extra_env)


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    """A signal handler that stops the server as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Keep a local server up until Ctrl-C or SIGTERM; return the exit code.

    Both stop every process started here (the flows, then the server) before it
    returns; more of them while it stops are ignored, so that none is left running.
    """
    parser = argparse.ArgumentParser(
        prog="python -m harness.local_server",
        description="Start a throwaway local Prefect server; keep it up until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--flows", type=Path, help="a flows script to serve, run by path")
    parser.add_argument(
        "--deployment",
        action="append",
        default=[],
        metavar="FLOW/DEPLOYMENT",
        help="a deployment the flows script serves, waited for (repeatable)",
    )
    parser.add_argument(
        "--port", type=int, help="the server's port on 127.0.0.1 (default: a free one)"
    )
    options = parser.parse_args(argv)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with LocalPrefect(
            options.flows, deployments=options.deployment, port=options.port
        ) as prefect:
            print("Prefect server ready. In another shell:", flush=True)
            print(f"    export PREFECT_API_URL={prefect.api_url}", flush=True)
            print(f"Logs in {prefect.home}. Ctrl-C to stop.", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("stopping", flush=True)
                for number in handlers:  # the stop is not cut short
                    signal.signal(number, signal.SIG_IGN)
    except KeyboardInterrupt:  # while starting: what had started is stopped
        print("stopped while starting", flush=True)
        return 130
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
