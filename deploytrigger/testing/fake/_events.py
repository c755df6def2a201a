"""The fake's events: the log of every state change, filters on it, and live subscribers.

A Prefect 3.x server publishes an event for each state a flow run enters and
streams them on the websocket ``/api/events/out``. :class:`EventLog` keeps the
fake's events in the order the states were entered and hands each new one to
every :class:`Subscription` whose :class:`EventFilter` it matches. Subscribing
takes the backfill (past events that match, oldest first) and registers the
subscriber in one step, under the backend's lock, so no event falls between
the two (a real server can lose one there: it backfills from the database,
which its persister writes every few seconds).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ._records import iso, parse_time

MAXIMUM_BACKFILL = 15 * 60.0
"""Seconds back a subscription's backfill reaches at most (the server's default)."""

DEFAULT_SINCE = 180 * 86400.0
"""Seconds back ``occurred.since`` defaults to (the server: 180 days before today)."""

FILTER_KEYS = frozenset(
    {"occurred", "event", "resource", "related", "any_resource", "id", "text", "order"}
)
"""The keys of a 3.8.8 ``EventFilter``; any other key makes the server refuse the filter."""


class InvalidFilter(ValueError):
    """A filter the server's ``EventFilter`` would not validate."""


def _strings(node: Mapping[str, Any], key: str) -> Optional[Tuple[str, ...]]:
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidFilter(f"{key} must be a list of strings")
    return tuple(value)


def _section(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidFilter(f"{key} must be an object")
    return value


def _moment(node: Mapping[str, Any], key: str, default: float) -> float:
    if node.get(key) is None:
        return default
    moment = parse_time(node[key])
    if moment is None:
        raise InvalidFilter(f"occurred.{key} is not a datetime")
    return moment


@dataclass(frozen=True)
class EventFilter:
    """The part of Prefect's ``EventFilter`` the fake applies.

    ``occurred`` ``since``/``until`` (``until`` defaults to the time the filter
    was read, as on the server, so a filter without it matches no live event),
    ``event`` ``prefix``/``name``/``exclude_prefix``/``exclude_name`` and
    ``resource`` ``id``/``id_prefix``. The server's other keys (``related``,
    ``any_resource``, ``id``, ``text``, ``order``, ``resource.labels``...) are
    accepted and not applied.
    """

    since: float
    until: float
    prefix: Optional[Tuple[str, ...]] = None
    names: Optional[Tuple[str, ...]] = None
    exclude_prefix: Optional[Tuple[str, ...]] = None
    exclude_names: Optional[Tuple[str, ...]] = None
    resource_ids: Optional[Tuple[str, ...]] = None
    resource_prefix: Optional[Tuple[str, ...]] = None

    @classmethod
    def parse(cls, body: Any, now: float) -> EventFilter:
        """The filter of a ``{"type": "filter", ...}`` message, clamped as the server does.

        Raises:
            InvalidFilter: not an object, an unknown key, or a value of the wrong type.
        """
        if not isinstance(body, dict):
            raise InvalidFilter("the filter must be an object")
        unknown = set(body) - FILTER_KEYS
        if unknown:
            raise InvalidFilter(f"unknown filter keys: {sorted(unknown)}")
        occurred = _section(body, "occurred")
        event = _section(body, "event")
        resource = _section(body, "resource")
        since = _moment(occurred, "since", now - DEFAULT_SINCE)
        return cls(
            since=max(since, now - MAXIMUM_BACKFILL),
            until=_moment(occurred, "until", now),
            prefix=_strings(event, "prefix"),
            names=_strings(event, "name"),
            exclude_prefix=_strings(event, "exclude_prefix"),
            exclude_names=_strings(event, "exclude_name"),
            resource_ids=_strings(resource, "id"),
            resource_prefix=_strings(resource, "id_prefix"),
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the event passes every part of the filter that is set."""
        occurred = parse_time(event.get("occurred"))
        if occurred is None or not self.since <= occurred <= self.until:
            return False
        name = str(event.get("event", ""))
        if self.prefix is not None and not name.startswith(self.prefix):
            return False
        if self.names is not None and name not in self.names:
            return False
        if self.exclude_prefix is not None and name.startswith(self.exclude_prefix):
            return False
        if self.exclude_names is not None and name in self.exclude_names:
            return False
        resource_id = str(event.get("resource", {}).get("prefect.resource.id", ""))
        if self.resource_ids is not None and resource_id not in self.resource_ids:
            return False
        return self.resource_prefix is None or resource_id.startswith(self.resource_prefix)


class Subscription:
    """One websocket's live events: a queue the event log fills and the socket drains."""

    def __init__(self, event_filter: EventFilter) -> None:
        self.filter = event_filter
        self._events: queue.Queue[Dict[str, Any]] = queue.Queue()

    def offer(self, event: Dict[str, Any]) -> None:
        if self.filter.matches(event):
            self._events.put(event)

    def next(self, timeout: float) -> Optional[Dict[str, Any]]:
        """The next live event, or None after ``timeout`` seconds without one."""
        try:
            event: Dict[str, Any] = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        return event


class EventLog:
    """Every event so far, in order, and the live subscriptions (callers hold ``lock``)."""

    def __init__(self, lock: threading.RLock, clock: Callable[[], float]) -> None:
        self._lock = lock
        self._clock = clock
        self.events: List[Dict[str, Any]] = []
        self.filters: List[Any] = []
        """Every ``filter`` message's filter as received, valid or not, oldest first."""
        self._subscriptions: List[Subscription] = []

    def record_filter(self, event_filter: Any) -> None:
        with self._lock:
            self.filters.append(event_filter)

    def publish(self, event: Dict[str, Any]) -> None:
        """Record an event and pass it to every subscription it matches."""
        with self._lock:
            event["received"] = iso(self._clock())
            self.events.append(event)
            for subscription in self._subscriptions:
                subscription.offer(event)

    def subscribe(
        self, event_filter: EventFilter, backfill: bool
    ) -> Tuple[Subscription, List[Dict[str, Any]]]:
        """A new subscription and, with ``backfill``, the past events it matches, oldest first."""
        with self._lock:
            subscription = Subscription(event_filter)
            self._subscriptions.append(subscription)
            past = (
                [event for event in self.events if event_filter.matches(event)] if backfill else []
            )
        past.sort(key=lambda event: parse_time(event["occurred"]) or 0.0)  # stable: entry order
        return subscription, past

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
