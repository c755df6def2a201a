"""Parameters checked against a deployment's schema, and merged: pure functions, no I/O.

A Prefect server with ``enforce_parameter_schema`` validates a new run's
parameters (the deployment's defaults updated with the run's own) against
the deployment's ``parameter_openapi_schema`` with ``jsonschema``, and answers
409 with the first error. :func:`schema_error` covers the part of JSON Schema
that Prefect writes for Python annotations, without ``jsonschema``:
``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``enum``, ``const``, ``anyOf``/``oneOf``/``allOf`` and local ``$ref``s. It words
its messages as ``jsonschema`` does. Keywords outside that list are ignored
(the value passes), never guessed.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple


def merge_parameters(
    defaults: Mapping[str, Any], given: Optional[Mapping[str, Any]]
) -> Dict[str, Any]:
    """A run's parameters: the deployment's defaults, updated with the run's own."""
    merged = dict(defaults)
    merged.update(given or {})
    return merged


def merge_tags(deployment_tags: Sequence[str], run_tags: Iterable[str]) -> List[str]:
    """A run's tags: the deployment's and the run's, each once.

    The server unions two sets, so its order is arbitrary; this keeps the
    deployment's tags first, then the run's, in the order given.
    """
    merged: List[str] = []
    for tag in [*deployment_tags, *run_tags]:
        if tag not in merged:
            merged.append(tag)
    return merged


_Error = Tuple[List[Any], str]
"""Where in the value (path of keys and indexes) and what is wrong."""


def schema_error(parameters: Mapping[str, Any], schema: Mapping[str, Any]) -> Optional[str]:
    """The server's message for parameters that fail ``schema``; None when they pass.

    For example ``"Validation failed for field 'x'. Failure reason: 'a' is not of
    type 'integer'"`` or ``"Validation failed. Failure reason: 'x' is a required
    property"`` (the second half is jsonschema's message).
    """
    error = _first_error(dict(parameters), schema, schema, [])
    if error is None:
        return None
    path, reason = error
    if not path:
        return f"Validation failed. Failure reason: {reason}"
    return f"Validation failed for field {_json_path(path)!r}. Failure reason: {reason}"


def _json_path(path: Sequence[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with a local ``$ref`` (``#/definitions/X``, ``#/$defs/X``) followed."""
    seen = 0
    while isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/") and seen < 32:
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            return {}
        schema, seen = target, seen + 1
    return schema


def _first_error(
    value: Any, schema: Any, root: Mapping[str, Any], path: List[Any]
) -> Optional[_Error]:
    if not isinstance(schema, Mapping):
        return None
    schema = _resolve(schema, root)
    for check in (_type, _enum, _combinators, _object, _array):
        error = check(value, schema, root, path)
        if error is not None:
            return error
    return None


def _type(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: List[Any]
) -> Optional[_Error]:
    expected = schema.get("type")
    names = [expected] if isinstance(expected, str) else expected
    if not isinstance(names, list) or not all(name in _TYPES for name in names):
        return None
    if any(_TYPES[name](value) for name in names):
        return None
    shown = ", ".join(repr(name) for name in names)
    return path, f"{value!r} is not of type {shown}"


def _enum(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: List[Any]
) -> Optional[_Error]:
    if "const" in schema and value != schema["const"]:
        return path, f"{schema['const']!r} was expected"
    choices = schema.get("enum")
    if isinstance(choices, list) and value not in choices:
        return path, f"{value!r} is not one of {choices!r}"
    return None


def _combinators(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: List[Any]
) -> Optional[_Error]:
    for option in schema.get("allOf") or []:
        error = _first_error(value, option, root, path)
        if error is not None:
            return error
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if not isinstance(options, list):
            continue
        passing = [opt for opt in options if _first_error(value, opt, root, path) is None]
        if not passing:
            return path, f"{value!r} is not valid under any of the given schemas"
        if keyword == "oneOf" and len(passing) > 1:
            return path, f"{value!r} is valid under each of {', '.join(map(repr, passing))}"
    return None


def _object(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: List[Any]
) -> Optional[_Error]:
    if not isinstance(value, dict):
        return None
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    for name, item in value.items():
        if name in properties:
            error = _first_error(item, properties[name], root, [*path, name])
            if error is not None:
                return error
    for name in schema.get("required") or []:
        if name not in value:
            return path, f"{name!r} is a required property"
    extra_schema = schema.get("additionalProperties")
    extra = [name for name in value if name not in properties]
    if extra_schema is False and extra:
        listed = ", ".join(repr(name) for name in extra)
        verb = "was" if len(extra) == 1 else "were"
        return path, f"Additional properties are not allowed ({listed} {verb} unexpected)"
    if isinstance(extra_schema, Mapping):
        for name in extra:
            error = _first_error(value[name], extra_schema, root, [*path, name])
            if error is not None:
                return error
    return None


def _array(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: List[Any]
) -> Optional[_Error]:
    items = schema.get("items")
    if not isinstance(value, list) or not isinstance(items, Mapping):
        return None
    for index, item in enumerate(value):
        error = _first_error(item, items, root, [*path, index])
        if error is not None:
            return error
    return None
