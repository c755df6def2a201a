"""Deployments and flows: reading them, and resolving the name a caller gives.

:class:`Deployments` answers "which deployment is ``etl/nightly``?" for
``run_deployment``, remembering the answer for ``deployment_cache_ttl``
seconds so that steady-state triggering costs one request. The cache is
thread-safe; callers ask for a fresh read when the server says the cached
one is gone (a 404 on create) or stale (an unknown parameter).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar, Union
from urllib.parse import quote

from .._helpers.arguments import (
    PAGE_LIMIT,
    DeploymentRef,
    as_uuid,
    describe_ref,
    page_limit,
    parse_deployment_ref,
)
from .._http.errors import refine
from .._http.transport import Transport
from ..exceptions import (
    DeploymentNotFoundError,
    InvalidArgumentError,
    InvalidResponseError,
    NotFoundError,
)
from ..models import Deployment, Flow

if TYPE_CHECKING:
    from .._helpers.deadline import Deadline


logger = logging.getLogger("deploytrigger")

T = TypeVar("T")

DEFAULT_DEPLOYMENT_CACHE_TTL = 300.0
"""Seconds a resolved deployment is reused by ``run_deployment``."""

CLOSE_NAMES = 3
"""The most names a :class:`~deploytrigger.DeploymentNotFoundError` offers."""


def read_or_not_found(
    transport: Transport,
    path: str,
    what: str,
    ref: str,
    error_type: Type[NotFoundError] = NotFoundError,
    *,
    deadline: Optional[Deadline] = None,
    **extra: Any,
) -> Any:
    """``GET path``; a 404 becomes ``error_type`` saying which ``what`` was not found.

    ``extra`` is what the error type takes besides the HTTP context
    (``deployment=...``, ``flow_run_id=...``).
    """
    try:
        return transport.request("GET", path, deadline=deadline)
    except NotFoundError as exc:
        raise refine(exc, error_type, f"{what} {ref!r} was not found", **extra) from None


def json_list(data: Any, what: str) -> List[Any]:
    """``data`` when the server sent a list, else the error that says it did not."""
    if not isinstance(data, list):
        raise InvalidResponseError(
            f"the server sent {type(data).__name__} where a list of {what} was expected"
        )
    return data


class Deployments:
    """Reads deployments and flows; resolves names through a small cache.

    Args:
        transport: sends the requests.
        clock: a monotonic clock in seconds, for the cache's age.
        cache_ttl: seconds a resolved deployment is reused; 0 turns the cache off.
    """

    def __init__(
        self, transport: Transport, *, clock: Callable[[], float], cache_ttl: float
    ) -> None:
        self._transport = transport
        self._clock = clock
        self._ttl = cache_ttl
        self._cache: Dict[DeploymentRef, Tuple[float, Deployment]] = {}
        self._lock = threading.Lock()
        self._reading: Dict[DeploymentRef, threading.Lock] = {}  # one read per name at a time

    def read(self, deployment_id: Union[uuid.UUID, str]) -> Deployment:
        """A deployment by id."""
        ref = parse_deployment_ref(deployment_id)
        if not isinstance(ref, uuid.UUID):
            raise InvalidArgumentError(
                f"deployment_id must be a UUID, not {deployment_id!r}; "
                "use read_deployment_by_name for 'flow/deployment' names"
            )
        data = read_or_not_found(
            self._transport,
            f"/deployments/{ref}",
            "deployment",
            str(ref),
            DeploymentNotFoundError,
            deployment=str(ref),
        )
        return Deployment.from_json(data)

    def read_by_name(self, name: str) -> Deployment:
        """A deployment by its ``"flow name/deployment name"`` (an id is read as an id)."""
        ref = parse_deployment_ref(name)
        if isinstance(ref, uuid.UUID):
            return self.read(ref)
        flow_name, deployment_name = ref
        path = "/deployments/name/{}/{}".format(
            quote(flow_name, safe=""), quote(deployment_name, safe="")
        )
        try:
            data = read_or_not_found(
                self._transport, path, "deployment", name, DeploymentNotFoundError, deployment=name
            )
        except DeploymentNotFoundError as exc:
            if exc.hint is not None:  # the URL is what is wrong, not the name
                raise
            close = self._close_names(describe_ref(ref))
            if not close:
                raise
            offer = " or ".join(repr(close_name) for close_name in close)
            raise DeploymentNotFoundError(
                f"{exc}; did you mean {offer}?",
                deployment=name,
                close_names=close,
                **exc.context(),
            ) from None
        return Deployment.from_json(data)

    def _close_names(self, name: str) -> Tuple[str, ...]:
        """The ``flow/deployment`` names closest to ``name``; none when they cannot be read.

        A best effort after a 404, never before: one ``POST /deployments/filter``
        (the first 200 deployments by name) and one ``POST /flows/filter`` for
        their flows' names, neither retried.
        """
        import difflib  # only after a 404: a trigger never loads it

        try:
            deployments = self._filter(
                "/deployments/filter", {"sort": "NAME_ASC"}, Deployment.from_json
            )
            flow_ids = sorted({str(deployment.flow_id) for deployment in deployments})
            if not flow_ids:
                return ()
            flows = self._filter(
                "/flows/filter", {"flows": {"id": {"any_": flow_ids}}}, Flow.from_json
            )
            flow_names = {flow.id: flow.name for flow in flows}
            names = [f"{flow_names[d.flow_id]}/{d.name}" for d in deployments]
        except Exception as exc:  # a suggestion must never hide the error it is for
            logger.debug("no close names for deployment %r: %s", name, exc)
            return ()
        return tuple(difflib.get_close_matches(name, names, n=CLOSE_NAMES, cutoff=0.5))

    def _filter(self, path: str, body: Dict[str, Any], parse: Callable[[Any], T]) -> List[T]:
        """The first page (200 rows) a filter request answers, parsed; sent once, not retried."""
        page = {**body, "limit": PAGE_LIMIT}
        data = self._transport.request("POST", path, body=page, retry=False)
        return [parse(item) for item in json_list(data, path.split("/")[1])]

    def read_flow(self, flow_id: Union[uuid.UUID, str]) -> Flow:
        """A flow by id."""
        flow_uuid = as_uuid(flow_id, "flow_id")
        path = f"/flows/{flow_uuid}"
        return Flow.from_json(read_or_not_found(self._transport, path, "flow", str(flow_uuid)))

    def read_many(
        self, flow_name: Optional[str] = None, limit: int = PAGE_LIMIT
    ) -> List[Deployment]:
        """Deployments sorted by name, at most ``limit`` (1 to 200), of one flow or all."""
        body: Dict[str, Any] = {"sort": "NAME_ASC", "limit": page_limit(limit)}
        if flow_name is not None:
            body["flows"] = {"name": {"any_": [str(flow_name)]}}
        data = self._transport.request("POST", "/deployments/filter", body=body)
        return [Deployment.from_json(item) for item in json_list(data, "deployments")]

    def full_name(self, ref: DeploymentRef, deployment: Deployment) -> str:
        """``"flow/deployment"`` for a deployment, reading its flow when named by id."""
        if isinstance(ref, uuid.UUID):
            return f"{self.read_flow(deployment.flow_id).name}/{deployment.name}"
        return describe_ref(ref)

    def resolve(self, ref: DeploymentRef, refresh: bool = False) -> Tuple[Deployment, bool]:
        """The deployment ``ref`` names, and whether it came from the cache.

        Args:
            ref: an id or a (flow, deployment) pair (``payloads.parse_deployment_ref``).
            refresh: read it again even when cached.

        Threads that miss the cache for the same deployment at once share one
        read: the first reads it, the others take its answer from the cache.

        Raises:
            DeploymentNotFoundError: no such deployment (and it leaves the cache).
        """
        if refresh or self._ttl <= 0:
            return self._read_and_cache(ref, refresh), False
        cached = self._cached(ref)
        if cached is not None:
            return cached, True
        with self._lock:
            reading = self._reading.setdefault(ref, threading.Lock())
        with reading:
            cached = self._cached(ref)  # read by the thread this one waited for
            if cached is not None:
                return cached, True
            try:
                return self._read_and_cache(ref, refresh), False
            finally:
                with self._lock:
                    if self._reading.get(ref) is reading:
                        del self._reading[ref]

    def _cached(self, ref: DeploymentRef) -> Optional[Deployment]:
        """The cached deployment ``ref`` names, if younger than the cache's ttl."""
        with self._lock:
            entry = self._cache.get(ref)
        if entry is not None and self._clock() - entry[0] < self._ttl:
            return entry[1]
        return None

    def _read_and_cache(self, ref: DeploymentRef, refresh: bool) -> Deployment:
        """Read the deployment ``ref`` names; cache it (when caching) or forget a missing one."""
        now = self._clock()
        if refresh:
            with self._lock:
                self._cache.pop(ref, None)
        try:
            deployment = (
                self.read(ref)
                if isinstance(ref, uuid.UUID)
                else self.read_by_name(describe_ref(ref))
            )
        except DeploymentNotFoundError:
            with self._lock:
                self._cache.pop(ref, None)
            raise
        if self._ttl > 0:
            with self._lock:
                self._cache[ref] = (now, deployment)
        return deployment
