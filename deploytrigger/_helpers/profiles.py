"""Prefect's profiles file, read: the active profile's settings.

``$PREFECT_HOME/profiles.toml`` (home ``~/.prefect`` by default), moved with
``PREFECT_PROFILES_PATH``, the profile chosen with ``PREFECT_PROFILE`` or the
file's ``active``. This module only reads the file; ``settings.py`` decides
what a setting from it is worth and whether it needs the file at all.

The file is parsed with ``tomllib`` (the ``tomli`` package before Python
3.11) once per process and kept: a later read costs one ``os.stat``, and the
file is parsed again only when its modification time or size has changed, as
``prefect config set`` or ``prefect profile use`` change it.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Tuple

from ..exceptions import ConfigurationError

logger = logging.getLogger("deploytrigger")


def profiles_path(env: Mapping[str, str]) -> Path:
    """Where the profiles file is: ``PREFECT_PROFILES_PATH``, else in ``PREFECT_HOME``."""
    if env.get("PREFECT_PROFILES_PATH"):
        return Path(env["PREFECT_PROFILES_PATH"]).expanduser()
    home = env.get("PREFECT_HOME") or os.path.join("~", ".prefect")
    return Path(home).expanduser() / "profiles.toml"


def read_profile(env: Mapping[str, str], names: Iterable[str], *, required: bool) -> Dict[str, Any]:
    """The settings ``names`` of the active profile, or an empty dict when there is none.

    Args:
        env: the environment that locates the file and names the profile.
        names: the settings wanted.
        required: True when the caller cannot do without the file (the API URL
            comes from nowhere else): a file that cannot be read or parsed is
            then an error. Otherwise such a file is skipped, with one logged
            warning per file.

    Raises:
        ConfigurationError: ``PREFECT_PROFILE`` names a profile the file does not
            define, or (when ``required``) the file cannot be read or parsed.
    """
    path = profiles_path(env)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        return _unusable(f"cannot read the Prefect profiles file {path}: {exc}", required)
    document, problem = _parse(path, stat.st_mtime_ns, stat.st_size)
    if problem:
        return _unusable(problem, required)
    active = env.get("PREFECT_PROFILE") or document.get("active") or "ephemeral"
    profiles = document.get("profiles")
    profile = profiles.get(active) if isinstance(profiles, dict) else None
    if profile is None:
        if env.get("PREFECT_PROFILE"):
            raise ConfigurationError(
                f"PREFECT_PROFILE names {active!r}, which {path} does not define"
            )
        return {}
    if not isinstance(profile, dict):
        return _unusable(f"the profile {active!r} in {path} is not a table", required)
    wanted = set(names)
    return {k: v for k, v in profile.items() if k in wanted}


def _unusable(problem: str, required: bool) -> Dict[str, Any]:
    """No settings from a file that cannot be used: an error if ``required``, else a warning."""
    if required:
        raise ConfigurationError(
            f"{problem}. Correct the file, or give the API URL (api_url=... or "
            "PREFECT_API_URL) so that the file is not needed"
        )
    _warn_once(f"{problem}; its settings are ignored (the API URL is given elsewhere)")
    return {}


def clear_cache() -> None:
    """Forget the files parsed and the warnings logged (tests use a new file each time)."""
    _parse.cache_clear()
    _warn_once.cache_clear()


@functools.lru_cache(maxsize=8)
def _parse(path: Path, mtime_ns: int, size: int) -> Tuple[Dict[str, Any], str]:
    """The file's TOML document and ``""``, or ``{}`` and why it cannot be used.

    ``mtime_ns`` and ``size`` are only part of the cache key: a changed file is
    parsed again.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"cannot read the Prefect profiles file {path}: {exc}"
    try:
        return tomllib.loads(text), ""
    except tomllib.TOMLDecodeError as exc:
        return {}, f"the Prefect profiles file {path} is not valid TOML: {exc}"


@functools.lru_cache(maxsize=32)
def _warn_once(message: str) -> None:
    """Log ``message`` as a warning, the first time only."""
    logger.warning("%s", message)
