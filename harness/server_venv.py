"""Virtual environments holding other Prefect versions, for testing against several servers.

The package under test talks to whatever server ``PREFECT_API_URL`` names; to
test it against Prefect 2.20 or an older 3.x, :func:`server_python` creates a
virtual environment with just that Prefect (never deploytrigger) and returns
its interpreter, which :class:`~harness.local_server.LocalPrefect`
then uses for ``prefect server start`` and for the flows process::

    python = server_python("2.20.25", Path(".venv-servers"), Path("tests/servers"))
    with LocalPrefect(flows, deployments=[...], python=python) as prefect:
        ...

Each environment lives in ``<root>/prefect-<version>/``. It is created on first
use from ``<constraints_dir>/prefect-<version>.txt`` (pins that are known to
install and run here; see that file's comments) and marked with a stamp file
holding a digest of those pins, so later calls reuse it at once and a changed
pins file rebuilds it. A lock file makes concurrent test processes wait for
one another instead of building the same environment twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Optional

from harness.processes import tail

STAMP_NAME = ".installed"
"""The file whose content (the pins' digest) says an environment is complete."""
INSTALL_TIMEOUT_SECONDS = 1200.0
"""How long creating one environment may take at most (pip from the registry)."""


def venv_dir(version: str, root: Path) -> Path:
    """Where the environment of Prefect ``version`` lives under ``root``."""
    return Path(root) / f"prefect-{version}"


def constraints_file(version: str, constraints_dir: Path) -> Path:
    """The pins file for Prefect ``version``.

    Raises:
        FileNotFoundError: there is none: that version is not one the matrix knows.
    """
    path = Path(constraints_dir) / f"prefect-{version}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no pins for Prefect {version}: {path} does not exist")
    return path


def venv_python(directory: Path) -> Path:
    """The interpreter of the environment in ``directory``."""
    return Path(directory) / "bin" / "python"


def server_python(
    version: str,
    root: Path,
    constraints_dir: Path,
    *,
    base_python: Optional[str] = None,
    log: Optional[Path] = None,
) -> Path:
    """The interpreter of an environment with Prefect ``version``, created when missing.

    Args:
        version: the Prefect version, e.g. ``"2.20.25"``.
        root: the directory that holds the environments (``.venv-servers``).
        constraints_dir: the directory of the ``prefect-<version>.txt`` pins files.
        base_python: the interpreter the environment is made from; this one by default.
        log: the file that receives pip's output; ``<root>/prefect-<version>.log`` by default.

    Returns:
        The path of the environment's ``python``.

    Raises:
        FileNotFoundError: no pins file for ``version``.
        RuntimeError: creating the environment failed (the message shows the log's tail).
    """
    pins = constraints_file(version, constraints_dir)
    digest = hashlib.sha256(pins.read_bytes()).hexdigest()
    directory = venv_dir(version, root)
    stamp = directory / STAMP_NAME
    Path(root).mkdir(parents=True, exist_ok=True)
    with _locked(Path(root) / f"prefect-{version}.lock"):
        if _stamped(stamp, digest):
            return venv_python(directory)
        log_path = log or Path(root) / f"prefect-{version}.log"
        shutil.rmtree(directory, ignore_errors=True)
        for command in _install_commands(version, directory, pins, base_python):
            _run(command, log_path)
        stamp.write_text(digest + "\n")
    return venv_python(directory)


def _stamped(stamp: Path, digest: str) -> bool:
    try:
        return stamp.read_text().strip() == digest
    except OSError:
        return False


def _install_commands(
    version: str, directory: Path, pins: Path, base_python: Optional[str]
) -> List[List[str]]:
    python = str(venv_python(directory))
    return [
        [base_python or sys.executable, "-m", "venv", str(directory)],
        [
            python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            f"prefect=={version}", "-r", str(pins),
        ],
    ]  # fmt: skip


def _run(command: List[str], log_path: Path) -> None:
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(command) + "\n").encode())
        log.flush()
        try:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=INSTALL_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            returncode: Optional[int] = None
        else:
            returncode = completed.returncode
    if returncode != 0:
        outcome = "timed out" if returncode is None else f"exited with code {returncode}"
        raise RuntimeError(
            f"{' '.join(command[:4])} ... {outcome}; last lines of {log_path}:\n{tail(log_path)}"
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
