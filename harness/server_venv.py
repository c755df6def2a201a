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

A pins file may name the Pythons its Prefect installs on, in a comment line
such as ``# python>=3.11`` (Prefect 3.9 needs 3.11 or later): the environment
is then made from this interpreter when it is recent enough, else from the
oldest ``python3.N`` on ``PATH`` that is.

The Prefect of the demo's and the tests' own server is pinned in
``harness/requirements/server.txt``; :func:`pinned_prefect_version` reads it,
so that tests compare with the pins rather than with a copy of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from harness.processes import tail

STAMP_NAME = ".installed"
"""The file whose content (the pins' digest) says an environment is complete."""
INSTALL_TIMEOUT_SECONDS = 1200.0
"""How long creating one environment may take at most (pip from the registry)."""
SERVER_REQUIREMENTS = Path(__file__).resolve().parent / "requirements" / "server.txt"
"""The pins of the demo's and the tests' own Prefect server."""
NEWEST_MINOR_TRIED = 20
"""The last ``python3.N`` looked for on ``PATH`` when this interpreter is too old."""

_PYTHON_REQUIREMENT = re.compile(r"^#\s*python\s*>=\s*(\d+)\.(\d+)\s*$", re.IGNORECASE)
_PREFECT_PIN = re.compile(r"^prefect\s*==\s*([^\s;#]+)", re.IGNORECASE)


def version_key(version: str) -> Tuple[int, ...]:
    """A release version (``"3.9.1"``) as numbers, for comparing and sorting versions."""
    return tuple(int(part) for part in version.split("."))


def pinned_prefect_version(requirements: Path = SERVER_REQUIREMENTS) -> str:
    """The Prefect version a requirements file pins (``prefect==X``).

    Raises:
        ValueError: the file pins no Prefect version.
    """
    for line in Path(requirements).read_text().splitlines():
        match = _PREFECT_PIN.match(line.strip())
        if match:
            return match.group(1)
    raise ValueError(f"{requirements} pins no Prefect version (no 'prefect==' line)")


def pinned_versions(constraints_dir: Path) -> List[str]:
    """The Prefect versions that have a pins file in ``constraints_dir``, oldest first."""
    names = (path.name for path in Path(constraints_dir).glob("prefect-*.txt"))
    versions = [name[len("prefect-") : -len(".txt")] for name in names]
    return sorted(versions, key=version_key)


def required_python(pins: Path) -> Optional[Tuple[int, int]]:
    """The oldest Python a pins file allows (its ``# python>=X.Y`` line), if it names one."""
    for line in Path(pins).read_text().splitlines():
        match = _PYTHON_REQUIREMENT.match(line.strip())
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


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
        base_python: the interpreter the environment is made from; by default this one,
            or a ``python3.N`` from ``PATH`` when the pins need a newer Python.
        log: the file that receives pip's output; ``<root>/prefect-<version>.log`` by default.

    Returns:
        The path of the environment's ``python``.

    Raises:
        FileNotFoundError: no pins file for ``version``.
        RuntimeError: creating the environment failed (the message shows the log's tail),
            or no Python the pins allow was found.
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
        python = base_python or suitable_python(required_python(pins), f"Prefect {version}")
        for command in _install_commands(version, directory, pins, python):
            _run(command, log_path)
        stamp.write_text(digest + "\n")
    return venv_python(directory)


def suitable_python(minimum: Optional[Tuple[int, int]], needed_by: str) -> str:
    """This interpreter when it is at least ``minimum``, else the oldest ``python3.N`` that is.

    Raises:
        RuntimeError: no interpreter on ``PATH`` is recent enough.
    """
    if minimum is None or sys.version_info[:2] >= minimum:
        return sys.executable
    major, oldest = minimum
    for minor in range(oldest, NEWEST_MINOR_TRIED + 1):
        found = shutil.which(f"python{major}.{minor}")
        if found and (_python_version(found) or (0, 0)) >= minimum:
            return found
    raise RuntimeError(
        f"{needed_by} needs Python >= {major}.{oldest}: this is "
        f"{sys.version_info[0]}.{sys.version_info[1]} and no python{major}.{oldest} or later "
        "is on PATH; install one (or pass base_python)"
    )


def _python_version(python: str) -> Optional[Tuple[int, int]]:
    """The version of the interpreter ``python``; None when it does not run (a stale shim)."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    if done.returncode != 0 or len(parts) != 2 or not all(part.isdigit() for part in parts):
        return None
    return int(parts[0]), int(parts[1])


def _stamped(stamp: Path, digest: str) -> bool:
    try:
        return stamp.read_text().strip() == digest
    except OSError:
        return False


def _install_commands(
    version: str, directory: Path, pins: Path, base_python: str
) -> List[List[str]]:
    python = str(venv_python(directory))
    return [
        [base_python, "-m", "venv", str(directory)],
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
