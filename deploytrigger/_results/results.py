"""A flow run's persisted return value, read without Prefect: where it is, and the errors.

A completed run whose flow persists its result carries a small record in
``state.data``: the storage key, the serializer, an optional storage block and
an expiration. :class:`Results` follows it:

- a ``storage_key`` without a block is a path on the machine that ran the flow
  (by default under its ``$PREFECT_HOME/storage``), read directly;
- a ``local-file-system`` block's key is relative to the block's ``basepath``
  (the block is read with ``GET /block_documents/{id}``);
- any other block (S3, GCS, Azure ...) goes to the ``result_reader`` the client
  was given, a function ``(block, key) -> bytes`` over the user's own SDK.

A missing or empty file is read again (``READ_ATTEMPTS`` times, ``READ_RETRY_DELAY``
apart, with the client's ``sleep``), as Prefect does: the file can land just
after the state. ``serializers.py`` decodes the bytes.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from .._http.transport import Transport
from ..exceptions import (
    DeployTriggerError,
    FlowRunFailedError,
    InvalidArgumentTypeError,
    NotFoundError,
    PickleRefusedError,
    ResultDecodeError,
    ResultExpiredError,
    ResultNotPersistedError,
    ResultNotReadyError,
    ResultStorageError,
)
from ..models import FlowRun, StateType, parse_datetime, parse_uuid
from .serializers import JSON_HINT, DecodeProblem, PickleNotAllowed, decode, is_pickled

logger = logging.getLogger("deploytrigger")

READ_ATTEMPTS = 10
"""Reads of a result file before giving up (Prefect's own count)."""

READ_RETRY_DELAY = 0.25
"""Seconds between those reads (Prefect's own)."""

LOCAL_FILE_SYSTEM = "local-file-system"
"""The storage block type read here without help."""


@dataclass(frozen=True)
class StorageBlock:
    """A storage block document, as ``GET /block_documents/{id}`` describes it (no secrets).

    Attributes:
        id: the block document's id.
        name: its name.
        block_type_slug: its type, e.g. ``"s3-bucket"`` or ``"local-file-system"``.
        data: its fields, e.g. ``{"bucket_name": ...}``; secret fields are masked.
    """

    id: uuid.UUID
    name: str
    block_type_slug: str
    data: Dict[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StorageBlock:
        """Parse a block document from the API."""
        block_type = data.get("block_type") if isinstance(data, Mapping) else None
        slug = block_type.get("slug") if isinstance(block_type, Mapping) else None
        fields = data.get("data") if isinstance(data, Mapping) else None
        return cls(
            id=parse_uuid(data.get("id") if isinstance(data, Mapping) else None),
            name=str(data.get("name") or ""),
            block_type_slug=str(slug or data.get("block_type_name") or ""),
            data=dict(fields) if isinstance(fields, Mapping) else {},
            raw=dict(data),
        )

    def __str__(self) -> str:
        return f"{self.block_type_slug}/{self.name}"


ResultReader = Callable[[StorageBlock, str], bytes]
"""``reader(block, key) -> bytes``: reads a key from a storage block deploytrigger cannot read."""


# -- where the result is, and reading it -----------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """A run's ``state.data`` when its result was persisted."""

    storage_key: str
    serializer: Mapping[str, Any]
    storage_block_id: Optional[uuid.UUID]
    expiration: Optional[datetime]

    @property
    def serializer_type(self) -> str:
        return str(self.serializer.get("type"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _named(run: FlowRun) -> str:
    return f"{run.id} ({run.name})" if run.name else str(run.id)


class Results:
    """Reads the persisted return values of flow runs (see the module docstring).

    Args:
        transport: reads storage block documents.
        sleep: how to wait between reads of a file that is not there yet
            (the client's; tests inject a fake).
        reader: reads a key of a storage block other than ``local-file-system``.
        attempts: reads of a missing file before giving up.
        delay: seconds between them.
        now: the current time, timezone-aware (for expirations).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        sleep: Callable[[float], None],
        reader: Optional[ResultReader] = None,
        attempts: int = READ_ATTEMPTS,
        delay: float = READ_RETRY_DELAY,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self._transport = transport
        self._sleep = sleep
        self._reader = reader
        self._attempts = attempts
        self._delay = delay
        self._now = now

    def read(self, run: FlowRun, *, allow_pickle: bool = False) -> Any:
        """The return value of ``run`` (as read: the state decides), decoded.

        Raises:
            ResultNotReadyError, FlowRunFailedError, ResultNotPersistedError,
            ResultExpiredError, PickleRefusedError, ResultStorageError,
            ResultDecodeError: see ``exceptions.py``; each names the run.
        """
        if not isinstance(allow_pickle, bool):
            raise InvalidArgumentTypeError(
                f"allow_pickle must be True or False, not {allow_pickle!r}"
            )
        state = run.state
        if state is None or not state.is_final():
            shown = state.name if state is not None else "without a state"
            raise ResultNotReadyError(
                f"flow run {_named(run)} is {shown}, not final: it has no result yet; "
                "wait for it first (FlowRunHandle.read_result waits)",
                flow_run=run,
            )
        if state.type is not StateType.COMPLETED:
            exception_type = self._exception_type(run, allow_pickle)
            raise FlowRunFailedError(
                f"flow run {_named(run)} ended {state.type.value}"
                + (f": {state.message}" if state.message else "")
                + (f" (it raised {exception_type})" if exception_type else "")
                + "; a run that did not complete has no result",
                flow_run=run,
                exception_type=exception_type,
            )
        record = self._record(run)
        if record is None:
            raise ResultNotPersistedError(
                f"flow run {_named(run)} completed without persisting its result, so "
                "Prefect kept no return value: set persist_result=True on the flow (or "
                "give it a result_storage or result_serializer)",
                flow_run=run,
            )
        if record.expiration is not None and record.expiration <= self._now():
            raise ResultExpiredError(
                f"the result of flow run {_named(run)} expired at {record.expiration.isoformat()}",
                flow_run=run,
                expiration=record.expiration,
            )
        if is_pickled(record.serializer) and not allow_pickle:
            raise self._pickle_refused(run, record.serializer_type)
        return self._decode(run, record, self._fetch(run, record, self._attempts), allow_pickle)

    def _record(self, run: FlowRun) -> Optional[_Record]:
        """The run's result record; None when its state carries none."""
        data = run.state.raw.get("data") if run.state is not None else None
        if data is None:
            return None
        serializer = data.get("serializer") if isinstance(data, Mapping) else None
        serializer = {"type": serializer} if isinstance(serializer, str) else serializer
        key = data.get("storage_key") if isinstance(data, Mapping) else None
        if not isinstance(key, str) or not isinstance(serializer, Mapping):
            raise ResultDecodeError(
                f"flow run {_named(run)} carries a result record deploytrigger does not "
                f"read (no storage_key or serializer): {str(data)[:200]}",
                flow_run=run,
                serializer=(
                    str(serializer.get("type")) if isinstance(serializer, Mapping) else "unknown"
                ),
            )
        block_id = data.get("storage_block_id")
        return _Record(
            storage_key=key,
            serializer=serializer,
            storage_block_id=None if block_id is None else parse_uuid(block_id),
            expiration=parse_datetime(data.get("expiration")),
        )

    def _pickle_refused(self, run: FlowRun, serializer: str) -> PickleRefusedError:
        return PickleRefusedError(
            f"the result of flow run {_named(run)} is pickled (serializer {serializer!r}); "
            "unpickling runs whatever code the file names, so deploytrigger does not by "
            f"default: pass allow_pickle=True if you trust its storage, or {JSON_HINT}",
            flow_run=run,
            serializer=serializer,
        )

    def _decode(self, run: FlowRun, record: _Record, content: bytes, allow_pickle: bool) -> Any:
        try:
            return decode(content, record.serializer, allow_pickle=allow_pickle)
        except PickleNotAllowed as exc:
            raise self._pickle_refused(run, str(exc)) from None
        except DecodeProblem as exc:
            raise ResultDecodeError(
                f"the result of flow run {_named(run)} could not be decoded: {exc}",
                flow_run=run,
                serializer=record.serializer_type,
            ) from exc

    def _exception_type(self, run: FlowRun, allow_pickle: bool) -> Optional[str]:
        """The qualified name of the exception a failed run persisted, when it can be read.

        Best effort, one read: the run failed either way.
        """
        try:
            record = self._record(run)
            if record is None or (is_pickled(record.serializer) and not allow_pickle):
                return None
            value = self._decode(run, record, self._fetch(run, record, 1), allow_pickle)
        except DeployTriggerError as exc:
            logger.debug("exception of flow run %s not readable: %s", run.id, exc)
            return None
        if isinstance(value, BaseException):
            return f"{type(value).__module__}.{type(value).__qualname__}"
        if isinstance(value, Mapping) and isinstance(value.get("__exc_type__"), str):
            return str(value["__exc_type__"])
        return None

    # -- the bytes -------------------------------------------------------------------------

    def _fetch(self, run: FlowRun, record: _Record, attempts: int) -> bytes:
        """The record's bytes, read up to ``attempts`` times while missing or empty."""
        read, location = self._locate(run, record)
        problem: Optional[Exception] = None
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._sleep(self._delay)
            try:
                content = read()
            except Exception as exc:  # OSError from a file; anything from a user's reader
                problem = exc
            else:
                if not isinstance(content, (bytes, bytearray)):
                    raise InvalidArgumentTypeError(
                        f"result_reader must return bytes, not {type(content).__name__}"
                    )
                if content:
                    return bytes(content)
                problem = None
            logger.debug(
                "result of flow run %s not readable at %s (attempt %d of %d): %s",
                run.id,
                location,
                attempt,
                attempts,
                problem or "empty",
            )
        why = f"{type(problem).__name__}: {problem}" if problem is not None else "it is empty"
        raise ResultStorageError(
            f"the result of flow run {_named(run)} is not readable from this machine: "
            f"{location}: {why}. A result stays where the flow wrote it (by default "
            "$PREFECT_HOME/storage on the machine that ran the flow); to read it "
            "elsewhere, persist it to shared storage (a storage block) and read that "
            "through Client(result_reader=...)",
            flow_run=run,
            location=location,
        ) from problem

    def _locate(self, run: FlowRun, record: _Record) -> Tuple[Callable[[], bytes], str]:
        """How to read the record's bytes, and where that is, for messages."""
        key = record.storage_key
        if record.storage_block_id is None:
            return self._local(run, Path(key), None, key)
        block = self._block(run, record.storage_block_id)
        if block.block_type_slug == LOCAL_FILE_SYSTEM:
            basepath = str(block.data.get("basepath") or "")
            path = Path(os.path.expanduser(key))
            return self._local(run, Path(os.path.expanduser(basepath)) / path, block, key)
        reader = self._reader
        location = f"key {key!r} of storage block {block} ({block.id})"
        if reader is None:
            raise ResultStorageError(
                f"the result of flow run {_named(run)} is at {location}, a "
                f"{block.block_type_slug!r} block: deploytrigger reads paths and "
                f"{LOCAL_FILE_SYSTEM} blocks itself; for this one give the client "
                "result_reader=, a function (block, key) -> bytes that reads the key "
                "with your storage's SDK",
                flow_run=run,
                location=location,
            )
        return (lambda: reader(block, key)), location

    def _local(
        self, run: FlowRun, path: Path, block: Optional[StorageBlock], key: str
    ) -> Tuple[Callable[[], bytes], str]:
        location = str(path) if block is None else f"{path} (storage block {block})"
        if not path.is_absolute():
            raise ResultStorageError(
                f"the result of flow run {_named(run)} is at {key!r} "
                + ("" if block is None else f"in storage block {block} ")
                + "relative to the working directory of the process that ran the flow, "
                "which is not known here: give the storage an absolute path",
                flow_run=run,
                location=location,
            )
        return path.read_bytes, location

    def _block(self, run: FlowRun, block_id: uuid.UUID) -> StorageBlock:
        try:
            data = self._transport.request("GET", f"/block_documents/{block_id}")
        except NotFoundError as exc:
            raise ResultStorageError(
                f"the result of flow run {_named(run)} is in storage block {block_id}, "
                "which the server no longer has",
                flow_run=run,
                location=f"storage block {block_id}",
            ) from exc
        return StorageBlock.from_json(data)
