"""The placeholder task run that links a child run to its parent: pure functions, no I/O.

Prefect shows a run started by ``run_deployment`` inside a flow as a subflow
through a task run of the parent ("placeholder") whose id the child carries as
``parent_task_run_id``. This module builds that task run's body as the
server's own version of ``run_deployment`` writes it (:class:`Dialect`, from
``GET /admin/version``), except that we name it after the deployment (Prefect
leaves the name to the server, which invents one like "mottled-crab") and
choose its id, so that an answer carrying another id shows that the key was
already taken. What differs per version (checked in each version's source and
against the records each server writes):

- the task key's prefix: ``prefect.deployments.deployments.run_deployment.``
  on 2.x, ``prefect.deployments.flow_runs.run_deployment.`` on 3.x;
- ``task_inputs["__parents__"]`` naming a task-run parent: from 3.6 on only.

The same version tells whether ``create_flow_run`` takes ``labels`` (the
trace label of ``_helpers/tracing.py``): from 3.1.11 on; earlier servers
refuse the field with a 422.

No version gets ``labels``: Prefect 3.x's client sends an empty mapping, which
the server stores as it stores an absent one, and Prefect 2.x and 3.0 refuse
the field (422: their request schemas forbid unknown fields).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from .._helpers.arguments import PAGE_LIMIT
from .._parents.context import ParentRun
from ..models import FlowRun

TASK_KEY_PREFIX = "prefect.deployments.flow_runs.run_deployment."
"""Prefect names the placeholder's task key after the module and function that make it (3.x)."""
TASK_KEY_PREFIX_2 = "prefect.deployments.deployments.run_deployment."
"""The same in Prefect 2.x, whose ``run_deployment`` is in ``prefect.deployments.deployments``."""
PARENTS_INPUT_SINCE = (3, 6)
"""The first Prefect release whose ``run_deployment`` records the calling task run in
``task_inputs["__parents__"]``."""
LABELS_SINCE = (3, 1, 11)
"""The first Prefect server whose ``create_flow_run`` request schema has ``labels`` (3.1.10
forbids unknown fields, 3.1.11 declares it)."""

# -- server versions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """How one Prefect server version's ``run_deployment`` writes a placeholder.

    Attributes:
        version: the server's version as it reported it, or None when unknown.
        task_key_prefix: what the task key starts with.
        parents_input: whether a task-run parent goes into ``task_inputs["__parents__"]``.
        run_labels: whether ``create_flow_run`` (and ``POST /flow_runs/``) take ``labels``.
    """

    version: Optional[str]
    task_key_prefix: str = TASK_KEY_PREFIX
    parents_input: bool = True
    run_labels: bool = True


CURRENT = Dialect(None)
"""The shape of the newest Prefect 3 (3.8.8), for servers that do not tell their version."""

_VERSION = re.compile(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: Any) -> Optional[Tuple[int, int, int]]:
    """``(major, minor, patch)`` of a version like ``"3.4.25"`` or ``"2.20.25+dev"``, else None."""
    match = _VERSION.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def dialect_for(version: Any) -> Dialect:
    """The placeholder shape for a server that reported ``version`` (``GET /admin/version``).

    An unknown or unreadable version gets :data:`CURRENT`.
    """
    parsed = parse_version(version)
    if parsed is None:
        return CURRENT
    shown = str(version).strip()
    if parsed[0] < 3:  # checked against 2.20.25
        return Dialect(shown, TASK_KEY_PREFIX_2, parents_input=False, run_labels=False)
    return Dialect(
        shown,
        TASK_KEY_PREFIX,
        parents_input=parsed[:2] >= PARENTS_INPUT_SINCE,
        run_labels=parsed >= LABELS_SINCE,
    )


EMPIRICAL_POLICY: Mapping[str, Any] = {
    "max_retries": 0,
    "retries": 0,
    "retry_delay": 0,
    "retry_delay_seconds": 0.0,
    "retry_jitter_factor": None,
}
"""A placeholder never retries: what Prefect sends for a task with default retry settings."""

# -- slugs -------------------------------------------------------------------------------

# The rules of python-slugify's ``slugify(text)`` with default arguments, as
# Prefect calls it (prefect.utilities.slugify), in the same order.
_QUOTES = re.compile(r"[']+")
_DECIMAL = re.compile(r"&#(\d+);")
_HEX = re.compile(r"&#x([\da-fA-F]+);")
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d)")
_DISALLOWED = re.compile(r"[^-a-zA-Z0-9]+")
_DASHES = re.compile(r"-{2,}")

# Letters that Unicode does not decompose into ASCII but that python-slugify's
# transliteration spells in ASCII (Latin-1 and Latin Extended-A, and the euro).
_SPELLED = {
    "Æ": "AE", "æ": "ae", "Ð": "D", "ð": "d", "Ø": "O", "ø": "o", "Þ": "Th", "þ": "th",
    "ß": "ss", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i", "ĸ": "k", "Ł": "L",  # noqa: RUF001
    "ł": "l", "Ŋ": "ng", "ŋ": "NG", "Œ": "OE", "œ": "oe", "Ŧ": "T", "ŧ": "t",
    "ẞ": "Ss", "×": "x", "µ": "m", "©": "(c)", "®": "(r)", "°": "deg", "£": "PS",  # noqa: RUF001
    "¥": "Y=", "¢": "C/", "§": "SS", "¶": "P", "€": "EUR",
}  # fmt: skip


def _transliterate(text: str) -> str:
    """ASCII for ``text`` (NFKD-decomposed): accents dropped, a few letters spelled out.

    Characters of other scripts, which python-slugify transliterates from a
    large table, become separators; :func:`task_key` defers to Prefect's own
    slugify for those when Prefect is loaded.
    """
    return "".join(_ascii(char) for char in text)


def _ascii(char: str) -> str:
    if ord(char) < 128:
        return char
    if unicodedata.combining(char):
        return ""
    return _SPELLED.get(char, "-")


@functools.lru_cache(maxsize=1)
def _entities() -> Tuple[re.Pattern[str], Dict[str, int]]:
    """The named HTML entities and their pattern, made on first use (a cold start
    triggering a run with no parent never needs them: compiling costs milliseconds)."""
    from html.entities import name2codepoint

    return re.compile("&({});".format("|".join(name2codepoint))), name2codepoint


def _decode_entities(text: str) -> str:
    if "&" not in text:
        return text
    entity, codepoints = _entities()
    text = entity.sub(lambda m: chr(codepoints[m.group(1)]), text)
    # python-slugify replaces each kind of numeric reference all at once, or not at all.
    with contextlib.suppress(ValueError, OverflowError):
        text = _DECIMAL.sub(lambda m: chr(int(m.group(1))), text)
    with contextlib.suppress(ValueError, OverflowError):
        text = _HEX.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text


def slugify(text: str) -> str:
    """``text`` as Prefect's ``slugify`` writes it: lower-case ASCII words joined by "-".

    Quotes split words, accents are dropped, HTML entities are decoded, "1,000"
    loses its comma, and every run of other characters becomes one "-"
    ("Add/Add_Dep" -> "add-add-dep").
    """
    text = _QUOTES.sub("-", text)
    text = _transliterate(unicodedata.normalize("NFKD", text))
    text = _decode_entities(text)
    text = unicodedata.normalize("NFKD", text).lower()
    text = _QUOTES.sub("", text)
    text = _DIGIT_COMMA.sub("", text)
    text = _DISALLOWED.sub("-", text)
    return _DASHES.sub("-", text).strip("-")


def task_key(deployment_name: str, dialect: Dialect = CURRENT) -> str:
    """The placeholder's task key for ``"flow/deployment"``, as Prefect derives it."""
    slug = slugify(deployment_name)
    if not deployment_name.isascii():
        # Scripts beyond Latin need python-slugify's transliteration table; use
        # Prefect's own when this process has it loaded (never import it here).
        prefect_slugify = getattr(sys.modules.get("prefect.utilities.slugify"), "slugify", None)
        if callable(prefect_slugify):
            slug = str(prefect_slugify(deployment_name))
    return dialect.task_key_prefix + slug


# -- bodies -------------------------------------------------------------------------------


def placeholder_payload(
    *,
    deployment_name: str,
    deployment_version: Optional[str],
    parameter_names: Iterable[str],
    parent: ParentRun,
    dynamic_key: str,
    task_run_id: uuid.UUID,
    dialect: Dialect = CURRENT,
) -> Dict[str, Any]:
    """The body of ``POST /task_runs/`` for the placeholder of one child run.

    Args:
        deployment_name: ``"flow name/deployment name"``; names the task run and
            gives its task key.
        deployment_version: the deployment's version (the task run's ``task_version``).
        parameter_names: the parameters passed to the child run; each gets an
            (empty) entry in ``task_inputs``, as Prefect records inputs.
        parent: the parent run.
        dynamic_key: the key that makes this placeholder unique in the parent.
        task_run_id: the id to give it; an answer with another id is a task run
            that already had this (flow run, task key, dynamic key).
        dialect: the server version's shape.
    """
    task_inputs: Dict[str, List[Dict[str, str]]] = {name: [] for name in parameter_names}
    if parent.task_run_id is not None and dialect.parents_input:
        task_inputs["__parents__"] = [{"input_type": "task_run", "id": str(parent.task_run_id)}]
    return {
        "id": str(task_run_id),
        "name": deployment_name,
        "flow_run_id": str(parent.flow_run_id),
        "task_key": task_key(deployment_name, dialect),
        "dynamic_key": dynamic_key,
        "cache_key": None,
        "cache_expiration": None,
        "task_version": deployment_version,
        "empirical_policy": dict(EMPIRICAL_POLICY),
        "tags": [],
        "state": {"type": "PENDING", "name": "Pending"},
        "task_inputs": task_inputs,
    }


def task_runs_filter(flow_run_id: str, offset: int) -> Dict[str, Any]:
    """The body of ``POST /task_runs/filter`` for one page of a flow run's task runs."""
    return {
        "task_runs": {"flow_run_id": {"any_": [flow_run_id]}},
        "sort": "ID_DESC",
        "limit": PAGE_LIMIT,
        "offset": offset,
    }


def existing_keys(task_runs: Any) -> List[Tuple[str, str]]:
    """``(task_key, dynamic_key)`` of each task run in a ``/task_runs/filter`` answer."""
    if not isinstance(task_runs, list):
        return []
    return [
        (str(run.get("task_key")), str(run.get("dynamic_key")))
        for run in task_runs
        if isinstance(run, Mapping)
    ]


def duplicate_state(run: FlowRun) -> Dict[str, Any]:
    """The final state for a placeholder that ``run``, an existing run, made superfluous.

    An ``idempotency_key`` already used makes ``create_flow_run`` answer with
    the run created before, linked to another placeholder (or none). Ours then
    mirrors that run: its final state (type, name, message), with
    ``child_flow_run_id`` pointing at it, as the server does for a placeholder
    whose run changes state. A run not final yet gives a Completed state named
    "Duplicate", so that the placeholder does not stay Pending for ever (the
    server only updates the placeholder the run is linked to).
    """
    message = f"flow run {run.name!r} ({run.id}) already existed for this idempotency key"
    details = {"child_flow_run_id": str(run.id)}
    state = run.state
    if state is not None and state.is_final():
        return {
            "type": state.type.value,
            "name": state.name,
            "message": state.message or message,
            "state_details": details,
        }
    return {"type": "COMPLETED", "name": "Duplicate", "message": message, "state_details": details}
