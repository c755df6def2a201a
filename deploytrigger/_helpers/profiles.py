"""Prefect's profiles file, read: the active profile's settings.

``$PREFECT_HOME/profiles.toml`` (home ``~/.prefect`` by default), moved with
``PREFECT_PROFILES_PATH``, the profile chosen with ``PREFECT_PROFILE`` or the
file's ``active``. This module only reads the file; ``settings.py`` decides
what a setting from it is worth. On Python < 3.11 (no ``tomllib``) a small
parser reads the subset of TOML that Prefect writes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping

from ..exceptions import ConfigurationError


def _profiles_path(env: Mapping[str, str]) -> Path:
    if env.get("PREFECT_PROFILES_PATH"):
        return Path(env["PREFECT_PROFILES_PATH"]).expanduser()
    home = env.get("PREFECT_HOME") or os.path.join("~", ".prefect")
    return Path(home).expanduser() / "profiles.toml"


def read_profile(env: Mapping[str, str], names: Iterable[str]) -> Dict[str, Any]:
    """The settings ``names`` of the active profile, or an empty dict when there is none."""
    path = _profiles_path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError(f"cannot read the Prefect profiles file {path}: {exc}") from exc
    try:
        document = _parse_toml(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"the Prefect profiles file {path} is not valid TOML: {exc}"
        ) from exc
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
        raise ConfigurationError(f"the profile {active!r} in {path} is not a table")
    wanted = set(names)
    return {k: v for k, v in profile.items() if k in wanted}


def _parse_toml(text: str) -> Dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        return parse_simple_toml(text)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(str(exc)) from None


_TABLE = re.compile(r"^\[\s*([^\[\]]+?)\s*\]$")
_BASIC_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_PAIR = re.compile(r"^([A-Za-z0-9_.\"'-]+)\s*=\s*(.+)$")


def parse_simple_toml(text: str) -> Dict[str, Any]:
    """Parse the subset of TOML that Prefect writes to profiles.toml (tables, scalars)."""
    root: Dict[str, Any] = {}
    table = root
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _TABLE.match(line)
        if match:
            table = root
            for part in _split_key(match.group(1)):
                table = table.setdefault(part, {})
            continue
        match = _PAIR.match(line)
        if not match:
            raise ValueError(f"line {number} is not understood: {line!r}")
        table[_split_key(match.group(1))[-1]] = _toml_value(match.group(2).strip(), number)
    return root


def _split_key(key: str) -> List[str]:
    return [part.strip().strip("\"'") for part in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', key)]


def _toml_value(text: str, number: int) -> Any:
    if text[:1] in ('"', "'"):
        if text[0] == "'":  # literal string: no escapes
            end = text.find("'", 1)
            if end < 0:
                raise ValueError(f"line {number} has an unterminated string")
            return text[1:end]
        match = _BASIC_STRING.match(text)
        if not match:
            raise ValueError(f"line {number} has an unterminated string")
        try:  # TOML basic strings use JSON's escapes (plus \uXXXX / \UXXXXXXXX)
            return json.loads(match.group(0))
        except ValueError:
            raise ValueError(f"line {number} has an invalid string") from None
    value = text.split("#", 1)[0].strip()
    if value in ("true", "false"):
        return value == "true"
    try:
        return float(value) if "." in value else int(value)
    except ValueError:
        raise ValueError(f"line {number} has an unsupported value {value!r}") from None
