"""The real ``deploytrigger`` entry point as a subprocess, for the command-line tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

PROCESS_TIMEOUT = 240
"""Seconds one command may take, generous for a loaded machine."""


def cli_environment(prefect_home: Path) -> Dict[str, str]:
    """This process's environment without any ``PREFECT_*`` setting, and its own PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(prefect_home)
    return env


def deploytrigger(
    env: Dict[str, str], api_url: str, *argv: str
) -> subprocess.CompletedProcess[str]:
    """``python -m deploytrigger ARGV --api-url API_URL``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "deploytrigger", *argv, "--api-url", api_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
    )
