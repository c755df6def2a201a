"""The harness's child processes, run by mirakuru: own session, output in a log, stopped by pid.

A :class:`Service` is a mirakuru executor: ``start()`` runs the command in a
session of its own and returns once ``ready()`` is true (or raises, with the
last lines of its log, when it exits or takes too long, after killing it);
``stop()`` sends SIGTERM to its process group, then SIGKILL, and also ends the
processes it started that left the group (mirakuru marks them through their
environment). Every service still running when Python exits is killed.

:func:`system_program` finds the programs the harness runs from Debian's
packages (installed by ``make system-packages``, never by a test run)::

    with Service("nginx", [system_program("nginx"), ...], env, log, ready=accepting):
        ...
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
from collections import deque
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, TypeVar

from mirakuru import Executor, SimpleExecutor
from mirakuru.base import ENV_UUID
from mirakuru.exceptions import ExecutorError, ProcessFinishedWithError

LOG_TAIL_LINES = 40
"""How many lines of a log an error message shows."""
PACKAGES = {"nginx": "nginx", "redis-server": "redis-server", "initdb": "postgresql"}
"""The Debian package of each program the harness runs (``make system-packages`` installs them)."""
SEARCH_PATH = ["/usr/sbin", "/sbin", *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
"""Where Debian puts programs a user's ``PATH`` may lack (daemons; PostgreSQL's, newest first)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def system_program(name: str) -> str:
    """The path of program ``name`` on ``PATH`` or in :data:`SEARCH_PATH`.

    Raises:
        RuntimeError: It is not installed; the message says which package to install.
    """
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SEARCH_PATH))
    if found is None:
        package = PACKAGES.get(name, name)
        raise RuntimeError(
            f"{name} is not installed: run 'make system-packages' as root "
            f"(or 'apt-get install -y {package}')"
        )
    return found


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the text file at ``path``; empty when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return "".join(deque(log, maxlen=lines))
    except OSError:
        return ""


class Service(Executor):
    """A command in a session of its own, its output appended to a log file, ready when ``ready()``.

    Args:
        name: What error messages call it.
        args: The command and its arguments.
        env: Its whole environment (not merged into this process's).
        log_path: The file that receives its standard output and error.
        ready: Whether it is ready; :meth:`start` returns once it is. By
            default it is ready once started.
        cwd: Its working directory; this process's by default.
        timeout: Seconds :meth:`start` waits for ``ready`` at most, and
            :meth:`stop` for the process to end before SIGKILL.
        stop_signal: What :meth:`stop` sends first.

    A service is started once; start a new one to run the command again.

    Attributes:
        name: As given.
        log_path: As given.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        ready: Optional[Callable[[], bool]] = None,
        cwd: Optional[Path] = None,
        timeout: float = 60.0,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._env = dict(env)
        self._ready = ready
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed once the process has its copy)
        super().__init__(
            list(args),
            cwd=None if cwd is None else str(cwd),
            timeout=timeout,
            sleep=0.5,
            stop_signal=stop_signal,
            envvars=self._env,  # mirakuru 2 (Python 3.8, 3.9) merges it into this process's
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __repr__(self) -> str:
        return f"Service({self.name!r}, pid={self.pid})"

    @property
    def envvars(self) -> Dict[str, str]:
        """The environment given, plus mirakuru's marker (which finds what the process starts).

        mirakuru merges its ``envvars`` into this process's environment; a
        service gets exactly the one it is given (mirakuru 3 reads this property).
        """
        return {**self._env, ENV_UUID: super().envvars[ENV_UUID]}

    @property
    def pid(self) -> Optional[int]:
        """The process's pid (its process group's id) while started, else None."""
        return None if self.process is None else self.process.pid

    def pre_start_check(self) -> bool:
        """Never already running: each service gets its own free port."""
        return False

    def after_start_check(self) -> bool:
        """Whether it is ready."""
        return self._ready is None or self._ready()

    def start(self) -> Service:
        """Start the process and wait until it is ready.

        Raises:
            RuntimeError: It exited, or was not ready in time (it is killed);
                the message shows the last lines of its log.
        """
        try:
            super().start()
        except ExecutorError as exc:
            raise RuntimeError(
                f"{self.name}: {exc}; last lines of {self.log_path.name}:\n{self.log_tail()}"
            ) from None
        finally:
            self._log.close()  # the process has its own copy
        return self

    def stop(
        self, stop_signal: Optional[int] = None, expected_returncode: Optional[int] = None
    ) -> Service:
        """Stop the process and its whole group; whatever its exit code. Safe to call again."""
        try:
            super().stop(stop_signal, expected_returncode)
        except ProcessFinishedWithError:
            self._clear_process()
        return self

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the process's output."""
        return tail(self.log_path, lines)


_H = TypeVar("_H", bound="Harness")
_E = TypeVar("_E", bound=SimpleExecutor)


class Harness:
    """Services started together and stopped together, the last started first: a context manager.

    ``with Subclass(...) as started:``. A subclass starts its pieces in
    :meth:`_start`, each through :meth:`run`, and registers any other clean-up
    (a temporary directory) with :meth:`on_stop`; a failed start stops what
    had started. Whatever is still running when Python exits is killed by mirakuru.
    """

    _cleanup: Optional[contextlib.ExitStack] = None

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has run and :meth:`stop` has not since."""
        return self._cleanup is not None

    def _start(self) -> None:
        """Start every piece and wait until it is ready."""
        raise NotImplementedError

    def __enter__(self: _H) -> _H:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self: _H) -> _H:
        """Start everything and wait until it is ready.

        Raises:
            RuntimeError: Already started; or a process exited or was not ready
                in time (the message shows its log's tail), and everything
                started so far has been stopped again.
        """
        if self.started:
            raise RuntimeError(f"{self!r} is already started")
        self._cleanup = contextlib.ExitStack()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process started here, the last started first. Safe to call again."""
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            cleanup.close()

    def run(self, executor: _E) -> _E:
        """Start ``executor`` (a :class:`Service`), wait until it is ready; stopped at stop."""
        self.on_stop(executor.stop)
        executor.start()
        return executor

    def on_stop(self, callback: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Call ``callback(*args, **kwargs)`` when stopping, before what was registered earlier."""
        assert self._cleanup is not None, "only while starting or started"
        self._cleanup.callback(callback, *args, **kwargs)
