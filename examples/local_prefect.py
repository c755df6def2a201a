"""A throwaway local Prefect server, optionally serving the example flows.

The demo and the integration tests use it::

    with LocalPrefect() as prefect:
        print(prefect.api_url)  # http://127.0.0.1:<port>/api

Everything Prefect runs in child processes (``prefect server start`` and
``python examples/flows.py``) with their own ``PREFECT_HOME`` in a temporary
directory, so the user's Prefect profile, settings and database are never
touched. This module imports nothing from Prefect; only the interpreter that
runs it needs Prefect installed (the ``server`` extra). Run it as a script to
keep a server up until Ctrl-C: ``python examples/local_prefect.py``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote

import requests

EXAMPLES_DIR = Path(__file__).resolve().parent
FLOWS_SCRIPT = EXAMPLES_DIR / "flows.py"

#: The deployments that ``examples/flows.py`` serves, as ``"<flow>/<deployment>"``.
DEPLOYMENT_NAMES: Tuple[str, ...] = (
    "add/add-dep",
    "fail/fail-dep",
    "sleepy/sleepy-dep",
    "echo/echo-dep",
)

STOP_GRACE_SECONDS = 15.0
READY_POLL_SECONDS = 0.5
LOG_TAIL_LINES = 40


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prefect_command() -> List[str]:
    """Return the command that runs Prefect's CLI with this interpreter.

    Raises:
        RuntimeError: Prefect is not installed for this interpreter.
    """
    spec = importlib.util.find_spec("prefect")
    package_init = Path(spec.origin) if spec is not None and spec.origin else None
    if package_init is not None and package_init.with_name("__main__.py").is_file():
        return [sys.executable, "-m", "prefect"]
    script = Path(sys.executable).parent / "prefect"
    if script.is_file():
        return [str(script)]
    raise RuntimeError(
        f"Prefect is not installed for {sys.executable}; "
        "install the server extra: pip install -e '.[server]'"
    )


class _Child:
    """A child process in its own session, with its output in a log file."""

    def __init__(
        self,
        name: str,
        args: List[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Optional[Path] = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                args,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the process and its process group: SIGTERM, then SIGKILL after a grace period."""
        _signal_group(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(STOP_GRACE_SECONDS)
        _signal_group(self.process.pid, signal.SIGKILL)  # also whatever it left behind
        self.process.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the process's output."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except OSError:
            return ""


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(pgid, signum)


class LocalPrefect:
    """A Prefect server on a free local port, optionally serving the example flows.

    Args:
        serve_flows: Also serve the deployments of ``examples/flows.py``
            (``DEPLOYMENT_NAMES``) and wait until the server knows all of them.
        startup_timeout: Seconds to wait for the server to become healthy, and
            again for the served deployments to appear.
        env: Extra environment variables for the server and the flows process,
            winning over the defaults set here. With
            ``PREFECT_SERVER_API_AUTH_STRING`` the server requires basic auth;
            the flows process and the readiness checks then send it.

    Attributes:
        port: The server's TCP port on 127.0.0.1, chosen when constructed.
        api_url: ``http://127.0.0.1:<port>/api``.
        home: The temporary ``PREFECT_HOME`` (database, ``server.log``,
            ``flows.log``) while started, else None.
    """

    def __init__(
        self,
        *,
        serve_flows: bool = True,
        startup_timeout: float = 180.0,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.serve_flows = serve_flows
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.home: Optional[Path] = None
        self._extra_env: Dict[str, str] = dict(env or {})
        self._server: Optional[_Child] = None
        self._flows: Optional[_Child] = None

    def __repr__(self) -> str:
        return f"LocalPrefect(api_url={self.api_url!r}, home={self.home!r})"

    def __enter__(self) -> LocalPrefect:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def auth(self) -> Optional[Tuple[str, str]]:
        """``(user, password)`` for ``requests``' ``auth=`` when the server requires basic auth."""
        auth_string = self._extra_env.get("PREFECT_SERVER_API_AUTH_STRING")
        if not auth_string:
            return None
        user, _, password = auth_string.partition(":")
        return user, password

    def start(self) -> LocalPrefect:
        """Start the server (and the flows) and wait until they are ready.

        Returns:
            This object, started.

        Raises:
            RuntimeError: A process exited, or was not ready within
                ``startup_timeout``; everything started so far is stopped again.
        """
        if self.home is not None:
            raise RuntimeError(f"{self!r} is already started")
        self.home = Path(tempfile.mkdtemp(prefix="deploytrigger-prefect-"))
        atexit.register(self.stop)
        try:
            self._start_server()
            if self.serve_flows:
                self._start_flows()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process started here and delete ``home``. Safe to call again."""
        children = [child for child in (self._flows, self._server) if child is not None]
        self._flows = self._server = None
        for child in children:
            child.stop()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None
        atexit.unregister(self.stop)

    def restart_server(self) -> None:
        """Stop the server and start it again: same port, same database.

        The flows process keeps running and reconnects on its own.

        Raises:
            RuntimeError: Not started, or the server did not come back in time.
        """
        if self._server is None:
            raise RuntimeError(f"{self!r} is not started")
        self._server.stop()
        self._server = None
        self._start_server()

    def _start_server(self) -> None:
        assert self.home is not None
        args = [*prefect_command(), "server", "start", "--host", "127.0.0.1"]
        args += ["--port", str(self.port)]
        self._server = _Child("prefect server", args, self._environment(), self.home / "server.log")
        self._wait_until(self._healthy, "GET /api/health to answer true", self._server)

    def _start_flows(self) -> None:
        assert self.home is not None
        defaults = {"PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        auth_string = self._extra_env.get("PREFECT_SERVER_API_AUTH_STRING")
        if auth_string:
            defaults["PREFECT_API_AUTH_STRING"] = auth_string
        self._flows = _Child(
            "examples/flows.py",
            [sys.executable, str(FLOWS_SCRIPT)],
            self._environment(defaults),
            self.home / "flows.log",
            cwd=EXAMPLES_DIR,
        )
        self._wait_until(
            lambda: not self._missing_deployments(),
            f"deployments {', '.join(DEPLOYMENT_NAMES)} to exist",
            self._flows,
        )

    def _environment(self, defaults: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """This process's environment without the user's PREFECT_* settings, plus ours."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_UI_ENABLED="false",
        )
        env.update(defaults or {})
        env.update(self._extra_env)
        return env

    def _wait_until(self, ready: Callable[[], bool], what: str, child: _Child) -> None:
        """Poll ``ready`` until true; fail when a child exits or startup_timeout passes."""
        deadline = time.monotonic() + self.startup_timeout
        while not ready():
            for started in (self._server, self._flows):
                if started is not None and not started.running():
                    raise RuntimeError(
                        f"{started.name} exited with code {started.process.returncode} "
                        f"while waiting for {what}; last lines of {started.log_path.name}:\n"
                        f"{started.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"gave up after {self.startup_timeout:.0f} s waiting for {what}; "
                    f"last lines of {child.log_path.name}:\n{child.log_tail()}"
                )
            time.sleep(READY_POLL_SECONDS)

    def _healthy(self) -> bool:
        try:
            response = requests.get(f"{self.api_url}/health", timeout=5)
        except requests.RequestException:
            return False
        return response.status_code == 200 and response.text.strip() == "true"

    def _missing_deployments(self) -> List[str]:
        """The names in DEPLOYMENT_NAMES that the server does not know yet."""
        missing = []
        for name in DEPLOYMENT_NAMES:
            flow_name, deployment_name = name.split("/", 1)
            url = f"{self.api_url}/deployments/name/{quote(flow_name)}/{quote(deployment_name)}"
            try:
                status = requests.get(url, auth=self.auth, timeout=5).status_code
            except requests.RequestException:
                status = None
            if status != 200:
                missing.append(name)
        return missing


def main() -> None:
    """Keep a local server with the example flows up until Ctrl-C."""
    with LocalPrefect() as prefect:
        print(f"Prefect server ready: PREFECT_API_URL={prefect.api_url}")
        print(f"Logs in {prefect.home}. Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping")


if __name__ == "__main__":
    main()
