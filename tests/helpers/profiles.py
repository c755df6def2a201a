"""A temporary PREFECT_HOME with a profiles file, for the settings and profiles tests.

Import the fixture into a test module to use it: ``home``.
"""

from pathlib import Path
from typing import Dict

import pytest


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty PREFECT_HOME."""
    path = tmp_path / "prefect-home"
    path.mkdir()
    return path


def environ(home: Path, **values: str) -> Dict[str, str]:
    """An environment whose PREFECT_HOME is ``home``, with ``values`` besides."""
    return {"PREFECT_HOME": str(home), **values}


def write_profiles(home: Path, text: str) -> Path:
    """Write ``text`` as the profiles file of ``home``; return its path."""
    path = home / "profiles.toml"
    path.write_text(text, encoding="utf-8")
    return path
