"""Child processes for test servers: own process group, output in a log file, stopped by pid.

The local server, the production stack and its command line share these: a
:class:`Child` is started in a new session (so its whole process group can be
signalled), :func:`wait_until` polls for readiness while watching the
children, :func:`stop_group` stops a group by pid, also one started by
another process (the stack's ``down``), and :class:`Harness` is what starts
children and must stop them whatever happens.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, List, Mapping, Optional, Sequence, TypeVar

STOP_GRACE_SECONDS = 15.0
"""How long a process group gets between SIGTERM and SIGKILL."""
READY_POLL_SECONDS = 0.5
"""How often :func:`wait_until` asks whether something is ready."""
LOG_TAIL_LINES = 40
"""How many lines of a log an error message shows."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (an exited child of ours is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child
        reaped = 0
    if reaped:
        return False
    with contextlib.suppress(OSError, IndexError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def command_line(pid: int) -> str:
    """The command line of process ``pid``, space-separated; empty when unknown."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_gone(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for process ``pid`` to exit; whether it did."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_group(pid: int, *, marker: str = "", grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop the process group led by ``pid``: SIGTERM, then SIGKILL after ``grace`` seconds.

    A group whose leader has already exited still gets SIGKILL, for whatever
    the leader left behind in it.

    Args:
        pid: The leader's pid, which is also the group's id.
        marker: When given, a running leader is signalled only if its command
            line contains it, so that a recycled pid (from an old state file)
            is never signalled.
        grace: Seconds between SIGTERM and SIGKILL.
    """
    if alive(pid):
        if marker and marker not in command_line(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        wait_gone(pid, grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    wait_gone(pid, 5)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the text file at ``path``; empty when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return "".join(deque(log, maxlen=lines))
    except OSError:
        return ""


class Child:
    """A command started in its own process group (session), its output appended to a log file.

    Args:
        name: What error messages call it.
        args: The command and its arguments.
        env: Its whole environment.
        log_path: The file that receives its standard output and error.
        cwd: Its working directory; this process's by default.

    Attributes:
        name: As given.
        log_path: As given.
        process: The started process.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Optional[Path] = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                list(args),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def __repr__(self) -> str:
        return f"Child({self.name!r}, pid={self.pid})"

    @property
    def pid(self) -> int:
        """The process's pid, which is also its process group's id."""
        return self.process.pid

    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop the process and its whole process group (see :func:`stop_group`)."""
        stop_group(self.pid, grace=grace)
        self.process.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the process's output."""
        return tail(self.log_path, lines)


def wait_until(
    ready: Callable[[], bool],
    what: str,
    *,
    children: Iterable[Child],
    watched: Child,
    timeout: float,
) -> None:
    """Poll ``ready`` until it returns true.

    Args:
        ready: The readiness check.
        what: What is waited for, for error messages.
        children: Processes that must keep running meanwhile.
        watched: The process whose log the timeout error shows.
        timeout: Seconds to wait at most.

    Raises:
        RuntimeError: One of ``children`` exited, or ``timeout`` passed; the
            message shows the tail of the relevant log.
    """
    deadline = time.monotonic() + timeout
    watching: List[Child] = list(children)
    while not ready():
        for child in watching:
            if not child.running():
                raise RuntimeError(
                    f"{child.name} exited with code {child.process.returncode} "
                    f"while waiting for {what}; last lines of {child.log_path.name}:\n"
                    f"{child.log_tail()}"
                )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"gave up after {timeout:.0f} s waiting for {what}; "
                f"last lines of {watched.log_path.name}:\n{watched.log_tail()}"
            )
        time.sleep(READY_POLL_SECONDS)


_H = TypeVar("_H", bound="Harness")


class Harness:
    """Runs child processes; stopped at the end, on a failed start, and when Python exits.

    A context manager: ``with Subclass(...) as started:``. Subclasses provide
    :attr:`started`, :meth:`_start` and :meth:`_stop`.
    """

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has run and :meth:`stop` has not since."""
        raise NotImplementedError

    def _start(self) -> None:
        """Start every piece and wait until it is ready."""
        raise NotImplementedError

    def _stop(self) -> None:
        """Stop whatever has been started, also after a partial start."""
        raise NotImplementedError

    def __enter__(self: _H) -> _H:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self: _H) -> _H:
        """Start everything and wait until it is ready.

        Returns:
            This object, started.

        Raises:
            RuntimeError: Already started; or a process exited or was not ready
                in time (the message shows its log's tail), and everything
                started so far has been stopped again.
        """
        if self.started:
            raise RuntimeError(f"{self!r} is already started")
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process started here and delete their files. Safe to call again."""
        self._stop()
        atexit.unregister(self.stop)

    def detach(self) -> None:
        """Leave everything running when this process exits."""
        atexit.unregister(self.stop)
