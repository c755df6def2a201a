"""Pure helpers that read the command line's values: parameters, durations, times.

Each raises :class:`UsageError` (exit code 2) for input it cannot read.
"""

from __future__ import annotations

import argparse
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from dateutil import parser as date_parser


class UsageError(Exception):
    """A bad option or argument on the command line (exit code 2)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """A ``key=value`` value: its JSON meaning when it is JSON, else the text itself.

    ``5`` is an int, ``true`` a bool, ``[1,2]`` a list, ``"5"`` the string "5";
    ``hello`` (not JSON) is the string "hello". ``NaN`` and ``Infinity`` stay strings.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def parse_key_value(text: str, option: str = "--param") -> Tuple[str, Any]:
    """Split ``key=value`` at the first ``=``; the value as :func:`parse_value` reads it.

    Raises:
        UsageError: no ``=`` or an empty key.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"{option} expects key=value, not {text!r}")
    return key, parse_value(value)


def parse_params(text: str, read_file: Any = None) -> Dict[str, Any]:
    """``--params``: a JSON object, or ``@path`` to a file holding one.

    Raises:
        UsageError: unreadable file, invalid JSON, or JSON that is not an object.
    """
    source = "--params"
    if text.startswith("@"):
        path = text[1:]
        source = f"--params file {path!r}"
        try:
            text = read_file(path) if read_file is not None else _read_text(path)
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{source} must be a JSON object, not {type(value).__name__}")
    return value


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``10m``, ``2h``, ``1d``, ``1h30m`` or a bare number of seconds.

    Raises:
        UsageError: anything else, or a negative duration.
    """
    compact = text.strip().lower().replace(" ", "")
    position, total, matched = 0, 0.0, False
    while position < len(compact):
        match = _DURATION.match(compact, position)
        if match is None:
            break
        number, unit = match.groups()
        if not unit and (position or match.end() != len(compact)):
            break  # a bare number of seconds only on its own: "10m5" is ambiguous
        total += float(number) * _UNITS[unit or "s"]
        position, matched = match.end(), True
    if not matched or position != len(compact):
        raise UsageError(
            f"--start-in expects a duration like 90s, 10m, 2h, 1d or 1h30m, not {text!r}"
        )
    return total


def parse_start_at(text: str) -> datetime:
    """An ISO 8601 (or other dateutil-readable) time; without an offset it is local time.

    Raises:
        UsageError: the text is not a date and time.
    """
    try:
        parsed = date_parser.parse(text)
    except (ValueError, OverflowError):
        raise UsageError(
            f"--start-at expects a date and time like 2026-11-23T18:00:00+01:00, not {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # the user's local time zone
    return parsed.astimezone(timezone.utc)


def non_negative_seconds(text: str) -> float:
    """An argparse type: seconds, a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, not {text!r}")
    return value


def scheduled_time(
    start_in: Optional[str], start_at: Optional[str], now: Optional[datetime] = None
) -> Optional[datetime]:
    """The run's scheduled time from ``--start-in`` / ``--start-at``; None for now."""
    if start_in is not None:
        base = now or datetime.now(timezone.utc)
        return base + timedelta(seconds=parse_duration(start_in))
    if start_at is not None:
        return parse_start_at(start_at)
    return None


def run_parameters(params: Optional[str], param: Iterable[str]) -> Dict[str, Any]:
    """``--params`` first, then each ``-p key=value`` over it."""
    merged = parse_params(params) if params is not None else {}
    for item in param:
        key, value = parse_key_value(item, "--param")
        merged[key] = value
    return merged


def unique_run_ids(texts: Sequence[str]) -> List[uuid.UUID]:
    """The run ids, each once, in the order given.

    Raises:
        UsageError: one is not a UUID.
    """
    found: List[uuid.UUID] = []
    for text in texts:
        try:
            run_id = uuid.UUID(text)
        except ValueError:
            raise UsageError(f"not a flow run id: {text!r}") from None
        if run_id not in found:
            found.append(run_id)
    return found
