"""Programs from Debian's packages that the harness starts (``redis-server``, ``nginx``).

:func:`ensure_program` finds a program, and installs its package with
``apt-get install -y`` when it is missing and this process is root (as on the
developers' machines and in CI); anything else fails with a message that
says what to install::

    redis = ensure_program("redis-server", "redis-server")   # /usr/bin/redis-server

Installing never starts the package's own service: the image's
``policy-rc.d`` forbids that, and the harness runs the program itself, on a
free loopback port, with its own files in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List, Optional

SBIN = ("/usr/sbin", "/sbin")
"""Where Debian puts daemons that a non-login ``PATH`` may lack (``nginx``)."""
APT_TIMEOUT_SECONDS = 600.0
"""How long one ``apt-get`` call may take at most."""


def find_program(name: str) -> Optional[str]:
    """The path of program ``name`` on ``PATH`` or in the ``sbin`` folders, or None."""
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _apt_get(args: List[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args],
        capture_output=True,
        text=True,
        timeout=APT_TIMEOUT_SECONDS,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def ensure_program(name: str, package: str) -> str:
    """The path of program ``name``, installing Debian package ``package`` first when missing.

    The package is installed only when this process is root and ``apt-get``
    exists; when the first install fails (an empty package list on a new
    machine), ``apt-get update`` runs once and the install is tried again.

    Args:
        name: The program, e.g. ``"redis-server"``.
        package: The Debian package that ships it.

    Raises:
        RuntimeError: The program is missing and cannot be installed here (not
            root, no ``apt-get``, or the install failed: its output is included).
    """
    found = find_program(name)
    if found:
        return found
    hint = f"{name} is not installed: install the system package ({package!r}), e.g. " + (
        f"'sudo apt-get install -y {package}'"
    )
    if os.geteuid() != 0:
        raise RuntimeError(f"{hint}; the harness installs it only when running as root")
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"{hint}; there is no apt-get on this machine")
    install = ["install", "-y", "--no-install-recommends", package]
    done = _apt_get(install)
    if done.returncode != 0:
        _apt_get(["update"])
        done = _apt_get(install)
    found = find_program(name)
    if done.returncode != 0 or not found:
        raise RuntimeError(
            f"{hint}; 'apt-get {' '.join(install)}' failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return found
