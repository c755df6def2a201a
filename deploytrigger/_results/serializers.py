"""Prefect's serializers, read back with the standard library: bytes in, a value out.

:func:`decode` reads what Prefect's serializers write, in a result file of
either form: the serializer's output alone (flow results), or
``{"metadata": {...}, "result": "<serializer output>"}`` (task results and some
other records), whose own serializer then wins.

- ``json`` and ``compressed/json`` (base64 of lzma, zlib, bz2 or gzip output),
  with Prefect's marked values turned back into Python types: ``datetime``,
  ``date``, ``time``, ``timedelta``, ``UUID``, ``Decimal``, paths, ``set``,
  ``frozenset``, ``tuple``, ``bytes``, and builtin exceptions. A value of any
  other marked class stays as Prefect wrote it: ``{"__class__": ..., "data": ...}``
  (or ``{"__exc_type__": ..., "message": ...}`` for an exception of another module).
- ``pickle`` and ``compressed/pickle`` only with ``allow_pickle=True``
  (unpickling runs code), with the standard library's ``pickle``: a value that
  cloudpickle wrote by value needs cloudpickle installed, and the error says so.

Nothing here does I/O or knows about runs; ``results.py`` does.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import importlib
import json
import os
import re
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

JSON_HINT = 'persist JSON instead with @flow(result_serializer="json")'
"""How to avoid pickles, for messages."""


class DecodeProblem(Exception):
    """Bytes that :func:`decode` cannot turn into a value (the message says why)."""


class PickleNotAllowed(DecodeProblem):
    """A pickle, and ``allow_pickle`` was not given; the message is the serializer's type."""


def is_pickled(serializer: Mapping[str, Any]) -> bool:
    """Whether a serializer (as Prefect describes it) writes pickles."""
    kind = str(serializer.get("type"))
    if kind in ("pickle", "compressed/pickle"):
        return True
    return kind == "compressed" and is_pickled(_inner(serializer, "pickle"))


def decode(content: bytes, serializer: Mapping[str, Any], *, allow_pickle: bool = False) -> Any:
    """The value in a result file's bytes, either form, written by ``serializer``.

    Raises:
        DecodeProblem: the bytes are not what the serializer writes, the
            serializer is not one read here, or a pickle was not allowed.
    """
    payload, written_by = _unwrap(content)
    return _loads(payload, written_by or serializer, allow_pickle)


def _unwrap(content: bytes) -> Tuple[bytes, Optional[Mapping[str, Any]]]:
    """The serializer output and its serializer, from a ``{"metadata", "result"}`` record."""
    if not content.lstrip().startswith(b"{") or b'"metadata"' not in content:
        return content, None
    try:
        record = json.loads(content)
    except ValueError:
        return content, None
    if isinstance(record, dict) and set(record) == {"metadata", "result"}:
        metadata, result = record["metadata"], record["result"]
        if isinstance(metadata, dict) and isinstance(result, str):
            serializer = metadata.get("serializer")
            return result.encode("utf-8"), serializer if isinstance(serializer, dict) else None
    return content, None


def _inner(serializer: Mapping[str, Any], default: str) -> Mapping[str, Any]:
    inner = serializer.get("serializer") or default
    return {"type": inner} if isinstance(inner, str) else inner


def _loads(payload: bytes, serializer: Mapping[str, Any], allow_pickle: bool) -> Any:
    kind = str(serializer.get("type"))
    if is_pickled(serializer) and not allow_pickle:
        raise PickleNotAllowed(kind)
    if kind == "json":
        return _loads_json(payload)
    if kind == "pickle":
        return _loads_pickle(_base64(payload), str(serializer.get("picklelib") or "cloudpickle"))
    if kind in ("compressed", "compressed/json", "compressed/pickle"):
        inner = _inner(serializer, "pickle" if kind.endswith("pickle") else "json")
        library = str(serializer.get("compressionlib") or "lzma")
        return _loads(_decompress(_base64(payload), library), inner, allow_pickle)
    raise DecodeProblem(
        f"it was written by serializer {kind!r}; deploytrigger reads json and "
        f"compressed/json (and pickle with allow_pickle=True): {JSON_HINT}"
    )


def _base64(payload: bytes) -> bytes:
    try:
        return base64.decodebytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise DecodeProblem(f"it is not base64 as the serializer writes: {exc}") from exc


_COMPRESSORS = ("lzma", "zlib", "bz2", "gzip")


def _decompress(payload: bytes, library: str) -> bytes:
    if library not in _COMPRESSORS:
        raise DecodeProblem(
            f"it was compressed with {library!r}; deploytrigger reads "
            f"{', '.join(_COMPRESSORS)} (the standard library's)"
        )
    try:
        result: bytes = importlib.import_module(library).decompress(payload)
    except Exception as exc:  # each library raises its own error type
        raise DecodeProblem(f"it does not decompress with {library}: {exc}") from exc
    return result


def _loads_json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"), object_hook=_object_hook)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise DecodeProblem(f"it is not valid JSON: {exc}") from exc


def _loads_pickle(payload: bytes, picklelib: str) -> Any:
    import pickle

    try:
        return pickle.loads(payload)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in ("cloudpickle", picklelib.split(".")[0]):
            raise DecodeProblem(
                f"it was pickled by {missing} and needs it to load ({exc}): install "
                f"{missing} where you read the result (pip install {missing}), or {JSON_HINT}"
            ) from exc
        raise DecodeProblem(
            f"the pickled value needs module {exc.name!r}, which is not importable here: "
            f"install the flow's code where you read the result, or {JSON_HINT}"
        ) from exc
    except Exception as exc:  # unpickling can raise anything
        raise DecodeProblem(
            f"it does not unpickle with the standard library ({type(exc).__name__}: {exc}); "
            f"it may need the flow's code or {picklelib} here, or {JSON_HINT}"
        ) from exc


# -- Prefect's marked JSON values ----------------------------------------------------------


def _object_hook(value: Dict[str, Any]) -> Any:
    """``json.loads``' hook: a value Prefect's JSON encoder marked, as its Python type."""
    if len(value) != 2:
        return value
    if "__class__" in value and "data" in value:
        convert = _CONVERTERS.get(str(value["__class__"]))
        if convert is None:
            return value
        try:
            return convert(value["data"])
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise DecodeProblem(
                f"its {value['__class__']} value {value['data']!r} is malformed: {exc}"
            ) from exc
    if "__exc_type__" in value and "message" in value:
        return _builtin_exception(str(value["__exc_type__"]), value["message"]) or value
    return value


def _builtin_exception(qualified_name: str, message: Any) -> Optional[BaseException]:
    """``builtins.ValueError`` and the like as an instance; None for any other class."""
    module, _, name = qualified_name.rpartition(".")
    exc_type = getattr(builtins, name, None) if module == "builtins" else None
    if isinstance(exc_type, type) and issubclass(exc_type, BaseException):
        return exc_type(message)
    return None


def _text(data: Any) -> str:
    if not isinstance(data, str):
        raise TypeError(f"expected a string, not {type(data).__name__}")
    return data


def _datetime(data: Any) -> datetime:
    text = _text(data)
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        from dateutil import parser as date_parser  # forms older Pythons do not read

        return date_parser.isoparse(text)


def _time(data: Any) -> time:
    text = _text(data)
    try:
        return time.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        from dateutil import parser as date_parser

        return date_parser.isoparser().parse_isotime(text)


_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(
    rf"([-+]?)P(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}W)?(?:{_NUMBER}D)?"
    rf"(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?"
)


def _timedelta(data: Any) -> timedelta:
    """An ISO 8601 duration (pydantic's ``P1Y35DT2H0.5S``, ``-PT5S``) or a number of seconds.

    As pydantic reads them, a year is 365 days and a month 30.
    """
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return timedelta(seconds=data)
    match = _DURATION.fullmatch(_text(data))
    sign, *parts = match.groups() if match is not None else ("", None)
    if not any(parts):
        raise ValueError("not an ISO 8601 duration")
    years, months, weeks, days, hours, minutes, seconds = (float(part or 0) for part in parts)
    days += 365 * years + 30 * months
    value = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    return -value if sign == "-" else value


def _hashable(item: Any) -> Any:
    return tuple(_hashable(element) for element in item) if isinstance(item, list) else item


def _items(data: Any) -> List[Any]:
    if not isinstance(data, list):
        raise TypeError(f"expected a list, not {type(data).__name__}")
    return data


_LOCAL_PATH = Path
_POSIX_PATH = Path if os.name != "nt" else PurePosixPath
_WINDOWS_PATH = Path if os.name == "nt" else PureWindowsPath

_CONVERTERS: Dict[str, Callable[[Any], Any]] = {
    "datetime.datetime": _datetime,
    "datetime.date": lambda data: date.fromisoformat(_text(data)),
    "datetime.time": _time,
    "datetime.timedelta": _timedelta,
    "uuid.UUID": lambda data: uuid.UUID(_text(data)),
    "decimal.Decimal": lambda data: Decimal(str(data)),
    "pathlib.Path": lambda data: _LOCAL_PATH(_text(data)),
    "pathlib.PosixPath": lambda data: _POSIX_PATH(_text(data)),
    "pathlib.WindowsPath": lambda data: _WINDOWS_PATH(_text(data)),
    "pathlib.PurePath": lambda data: PurePath(_text(data)),
    "pathlib.PurePosixPath": lambda data: PurePosixPath(_text(data)),
    "pathlib.PureWindowsPath": lambda data: PureWindowsPath(_text(data)),
    "builtins.set": lambda data: {_hashable(item) for item in _items(data)},
    "builtins.frozenset": lambda data: frozenset(_hashable(item) for item in _items(data)),
    "builtins.tuple": lambda data: tuple(_items(data)),
    "builtins.bytes": lambda data: _text(data).encode("utf-8"),
}
"""Prefect's ``__class__`` names of the standard library types it marks -> how to rebuild one."""
# Python 3.13 defines the path classes in ``pathlib._local``, so a flow run there writes
# ``pathlib._local.PosixPath``: the same paths, read on every Python.
_CONVERTERS.update(
    {
        name.replace("pathlib.", "pathlib._local.", 1): convert
        for name, convert in list(_CONVERTERS.items())
        if name.startswith("pathlib.")
    }
)
