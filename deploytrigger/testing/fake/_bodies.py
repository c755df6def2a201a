"""Reading the fake's request bodies as the server's validation does: fields, pages, filters.

A body that does not validate raises :class:`Invalid`, which the backend
answers with a 422 in the server's shape.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Dict, List, Optional, Tuple

from ._records import new_id

PAGE_LIMIT = 200
"""The most rows a filter returns, and its default (the server's own)."""

Answer = Tuple[int, Any]
"""A status code and the JSON value of the body."""


class Invalid(Exception):
    """A request body that does not parse: answered 422 in the server's shape."""

    def __init__(self, loc: List[Any], msg: str, given: Any, error_type: str) -> None:
        super().__init__(msg)
        self.loc, self.msg, self.given, self.error_type = loc, msg, given, error_type


def parse_body(raw: bytes) -> Tuple[Any, Optional[Dict[str, Any]]]:
    """The JSON body, or the 422 answer for one that is not JSON."""
    if not raw.strip():
        return None, None
    try:
        return json.loads(raw.decode("utf-8")), None
    except ValueError as exc:
        text = raw.decode("utf-8", "replace")
        return None, {
            "exception_message": "Invalid request received.",
            "exception_detail": [
                {
                    "type": "json_invalid",
                    "loc": ["body", 1],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": str(exc).split(":")[0]},
                }
            ],
            "request_body": text,
        }


def field(body: Any, key: str, kind: type, loc: Optional[List[Any]] = None) -> Any:
    """A required field of the body, of type ``kind`` (422 otherwise)."""
    where = loc or [key]
    if not isinstance(body, dict) or key not in body:
        raise Invalid(where, "Field required", body, "missing")
    value = body[key]
    if not isinstance(value, kind):
        raise Invalid(where, f"Input should be a valid {kind.__name__}", value, "type_error")
    return value


def optional_field(body: Any, key: str, kind: type, error_type: str, what: str) -> Any:
    value = body.get(key) if isinstance(body, dict) else None
    if value is not None and not isinstance(value, kind):
        raise Invalid([key], f"Input should be {what}", value, error_type)
    return value


def string_list(body: Any, key: str) -> Optional[List[str]]:
    value = optional_field(body, key, list, "list_type", "a valid list")
    for index, item in enumerate(value or []):
        if not isinstance(item, str):
            raise Invalid([key, index], "Input should be a valid string", item, "string_type")
    strings: Optional[List[str]] = value
    return strings


def page(body: Any) -> Tuple[int, int]:
    body = body if isinstance(body, dict) else {}
    limit, offset = body.get("limit", PAGE_LIMIT), body.get("offset", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise Invalid(["limit"], "Input should be a valid integer", limit, "int_type")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise Invalid(["offset"], "Input should be a valid integer", offset, "int_type")
    return limit, offset


def any_of(body: Any, *keys: str, uuids: bool = False) -> Optional[List[str]]:
    """The ``any_`` list at ``body[keys...]``; None when the filter is absent."""
    node = body
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    values = node.get("any_") if isinstance(node, dict) else None
    if values is None:
        return None
    if not isinstance(values, list):
        raise Invalid([*keys, "any_"], "Input should be a valid list", values, "list_type")
    if not uuids:
        return [str(value) for value in values]
    found: List[str] = []
    for index, value in enumerate(values):
        try:
            found.append(str(uuid.UUID(str(value))))
        except ValueError:
            raise Invalid(
                [*keys, "any_", index], "Input should be a valid UUID", value, "uuid_parsing"
            ) from None
    return found


def mapping(value: Any) -> Dict[str, Any]:
    """``value`` when it is an object, else an empty one."""
    return dict(value) if isinstance(value, dict) else {}


def chosen_id(body: Any) -> str:
    """The ``id`` a create request chose for its record (kept, as the server does), or a new one."""
    chosen = body.get("id") if isinstance(body, dict) else None
    if chosen is None:
        return new_id()
    try:
        return str(uuid.UUID(str(chosen)))
    except ValueError:
        raise Invalid(["id"], "Input should be a valid UUID", chosen, "uuid_parsing") from None


def canonical(text: str) -> str:
    """An id as the fake stores it (lower case, dashed); unchanged if not a UUID."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text
