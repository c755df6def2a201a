"""What the fake does with each new run of a deployment: the states it goes through, its result.

An :class:`Outcome` is the plan for every run of one deployment: Scheduled,
then Pending, Submitting, Running and the outcome's state, spread over
``after`` seconds from the run's scheduled time. The fake applies the plan
when a run is read and, in between, from a ticker that publishes each state's
event when it is due. A result is written the way a Prefect 3.x
flow persists a JSON result: a file holding the serializer's output, and a
record in the final state's ``data`` that names it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import math
import uuid
from pathlib import Path, PurePath
from typing import Any, Callable, Dict, List, Optional, Tuple

NO_RESULT: Any = object()
"""``set_outcome``'s default: the run persists no result."""

_PROGRESSION = ("PENDING", "RUNNING")
_STATES = ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "CRASHED")

JSON_SERIALIZER: Dict[str, Any] = {
    "type": "json",
    "jsonlib": "json",
    "object_encoder": "prefect.serializers.prefect_json_object_encoder",
    "object_decoder": "prefect.serializers.prefect_json_object_decoder",
    "dumps_kwargs": {},
    "loads_kwargs": {},
}
"""How a 3.x server describes Prefect's JSON serializer in a result record."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How each new run of a deployment ends (see :meth:`FakePrefect.set_outcome`).

    Attributes:
        state: the state type the run ends in (``"COMPLETED"``, ``"FAILED"``,
            ``"CRASHED"``, ``"CANCELLED"``), or where it stops
            (``"SCHEDULED"``: nothing picks it up; ``"PENDING"``, ``"RUNNING"``).
        after: seconds from the run's scheduled time to that state.
        message: the last state's message.
        result: the serialized return value (or exception) of a final run, if any.
    """

    state: str = "COMPLETED"
    after: float = 0.0
    message: Optional[str] = None
    result: Optional[bytes] = None

    @classmethod
    def build(cls, state: Any, after: Any, message: Optional[str], result: Any) -> Outcome:
        """An outcome from ``set_outcome``'s arguments, checked.

        Raises:
            ValueError: an unknown state or a negative or non-finite ``after``.
            TypeError: a wrong type, or a result that Prefect's JSON serializer
                would not write.
        """
        kind = getattr(state, "value", state)
        if not isinstance(kind, str) or kind.upper() not in _STATES:
            raise ValueError(f"state must be one of {', '.join(_STATES)}, not {state!r}")
        if isinstance(after, bool) or not isinstance(after, (int, float)):
            raise TypeError(f"after must be a number of seconds, not {type(after).__name__}")
        if not math.isfinite(after) or after < 0:
            raise ValueError(f"after must be a finite number of seconds >= 0, not {after!r}")
        if message is not None and not isinstance(message, str):
            raise TypeError(f"message must be a string, not {type(message).__name__}")
        encoded = None if result is NO_RESULT else encode_result(result)
        return cls(kind.upper(), float(after), message, encoded)


Step = Tuple[float, str, Optional[str], Optional[str]]
"""One planned state: ``(when, type, name or None for the type's own, message)``."""


def plan(outcome: Outcome, start: float) -> List[Step]:
    """The states after Scheduled, as :data:`Step` tuples, for a run due at ``start``.

    Pending is followed at once by Submitting (also PENDING), as Prefect's
    runner marks a run it picks up.
    """
    if outcome.state == "SCHEDULED":
        return []
    steps = (
        [*_PROGRESSION[: _PROGRESSION.index(outcome.state) + 1]]
        if (outcome.state in _PROGRESSION)
        else [*_PROGRESSION, outcome.state]
    )
    last = len(steps) - 1
    planned = [
        (
            start + (outcome.after * index / last if last else outcome.after),
            kind,
            outcome.message if index == last else None,
        )
        for index, kind in enumerate(steps)
    ]
    # The process that picks a run up marks it Submitting (a PENDING state) right
    # after Pending, as Prefect's runner does.
    when, kind, message = planned[0]
    return [
        (when, kind, None, None if last == 0 else message),
        (when, kind, "Submitting", message if last == 0 else None),
        *((at, step, None, text) for at, step, text in planned[1:]),
    ]


def result_record(path: Path) -> Dict[str, Any]:
    """The ``state.data`` of a final run whose result file is ``path``."""
    return {
        "storage_key": str(path),
        "expiration": None,
        "serializer": dict(JSON_SERIALIZER),
        "prefect_version": "3.8.8",
        "storage_block_id": None,
    }


def encode_result(value: Any) -> bytes:
    """``value`` as Prefect's JSON serializer writes it (its marked types included).

    An exception becomes ``{"__exc_type__": ..., "message": ...}``, as Prefect
    writes a failed run's exception.

    Raises:
        TypeError: a value Prefect's JSON serializer would not write.
    """
    try:
        return json.dumps(value, default=_marked, allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise TypeError(f"the result cannot be written as JSON: {exc}") from exc


def _marked(value: Any) -> Any:
    """Prefect's JSON encoding of a value plain JSON lacks: ``{"__class__": ..., "data": ...}``."""
    if isinstance(value, BaseException):
        kind = type(value)
        return {"__exc_type__": f"{kind.__module__}.{kind.__qualname__}", "message": str(value)}
    marks: Tuple[Tuple[type, Callable[[Any], Any]], ...] = (
        (dt.datetime, lambda v: v.isoformat()),
        (dt.date, lambda v: v.isoformat()),
        (dt.time, lambda v: v.isoformat()),
        (dt.timedelta, iso_duration),
        (uuid.UUID, str),
        (decimal.Decimal, str),
        (PurePath, str),
        (set, list),
        (frozenset, list),
        (bytes, lambda v: v.decode("utf-8")),
    )
    for kind, data in marks:
        if isinstance(value, kind):
            cls = type(value)
            return {"__class__": f"{cls.__module__}.{cls.__qualname__}", "data": data(value)}
    raise TypeError(
        f"a {type(value).__name__} cannot be written by Prefect's JSON serializer; "
        "give the fake a JSON value (dict, list, str, int, float, bool, None, or a "
        "datetime, date, timedelta, UUID, Decimal, path, set or bytes)"
    )


def iso_duration(value: dt.timedelta) -> str:
    """``value`` as the ISO 8601 duration Prefect writes (``P1Y35DT1H0.5S``, ``-PT5S``)."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    years, days = divmod(value.days, 365)
    minutes, seconds = divmod(value.seconds, 60)
    hours, minutes = divmod(minutes, 60)
    date = "".join(f"{amount}{unit}" for amount, unit in ((years, "Y"), (days, "D")) if amount)
    time = "".join(f"{amount}{unit}" for amount, unit in ((hours, "H"), (minutes, "M")) if amount)
    if value.microseconds:
        time += f"{seconds}.{value.microseconds:06d}".rstrip("0") + "S"
    elif seconds:
        time += f"{seconds}S"
    if not date and not time:
        return "PT0S"
    return f"{sign}P{date}{'T' + time if time else ''}"
