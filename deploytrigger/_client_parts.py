"""A client's parts, built from its options: the transport, the services and the poller.

:class:`~deploytrigger.Client` is a facade of short methods; this module wires
what is under it, once per client: the settings resolved (``settings.py``), the
events listener when the settings ask for one, the poller it wakes, one
transport, and the services that share them.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Collection, Mapping, Optional

from ._helpers.arguments import unexpected_keywords
from ._http.transport import DEFAULT_POOL_SIZE, Transport
from ._services.deployments import DEFAULT_DEPLOYMENT_CACHE_TTL, Deployments
from ._services.parents import Parents
from ._services.runs import Runs
from ._waits.engine import DEFAULT_OUTAGE_TOLERANCE, Poller, Watch
from .options import ClientOptions
from .settings import Settings, resolve_settings, settings_options

if TYPE_CHECKING:
    from ._results.results import Results
    from ._waits.events import EventsListener


def client_settings(api_url: Optional[str], options: Mapping[str, Any]) -> Settings:
    """The settings of a client given ``api_url`` and ``options`` (checked: no unknown keyword)."""
    unexpected_keywords(options, ClientOptions.__annotations__, "Client")
    return resolve_settings(api_url, **settings_options(options))


class ClientParts:
    """What one client is made of; the client keeps each part as an attribute."""

    __slots__ = ("deployments", "events", "parents", "poller", "runs", "settings", "transport")

    def __init__(
        self,
        settings: Settings,
        events: Optional[ListenerOnDemand],
        poller: Poller,
        transport: Transport,
        deployments: Deployments,
        parents: Parents,
        runs: Runs,
    ) -> None:
        self.settings = settings
        self.events = events
        self.poller = poller
        self.transport = transport
        self.deployments = deployments
        self.parents = parents
        self.runs = runs

    @classmethod
    def build(cls, settings: Settings, options: Mapping[str, Any]) -> ClientParts:
        """The parts for ``settings`` and the client's ``options`` (``ClientOptions``)."""
        sleep = options.get("sleep", time.sleep)
        clock = options.get("clock", time.monotonic)
        tolerance = options.get("outage_tolerance", DEFAULT_OUTAGE_TOLERANCE)
        events = _events_listener(settings, injected_sleep="sleep" in options)
        poller = Poller(sleep=sleep, clock=clock, outage_tolerance=tolerance, wakeups=events)
        transport = Transport(
            settings,
            pool_size=options.get("pool_size", DEFAULT_POOL_SIZE),
            sleep=sleep,
            clock=clock,
            backoff=options.get("backoff"),
        )
        cache_ttl = options.get("deployment_cache_ttl", DEFAULT_DEPLOYMENT_CACHE_TTL)
        deployments = Deployments(transport, clock=clock, cache_ttl=cache_ttl)
        result_reader = options.get("result_reader")
        parents = Parents(transport, deployments)

        def results() -> Results:  # on first use: a script that only triggers never loads it
            from ._results.results import Results

            return Results(transport, sleep=sleep, reader=result_reader)

        runs = Runs(transport, deployments, parents, poller, results)
        return cls(settings, events, poller, transport, deployments, parents, runs)


def _events_listener(settings: Settings, *, injected_sleep: bool) -> Optional[ListenerOnDemand]:
    """The client's events listener, or None for plain polling (``events="off"``).

    Under ``"auto"``, a client given its own ``sleep`` (a test's fake time)
    polls: a listener would pause its waits on real time. ``"on"`` listens anyway.
    """
    if settings.events == "off" or (settings.events == "auto" and injected_sleep):
        return None
    return ListenerOnDemand(settings)


class ListenerOnDemand:
    """The client's :class:`~._waits.events.EventsListener`, made by the first wait.

    Implements ``engine.Wakeups``. A script that only triggers runs never
    imports the listener's modules, nor websocket-client.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._listener: Optional[EventsListener] = None

    @property
    def listener(self) -> EventsListener:
        """The listener, made on first use."""
        made = self._listener
        if made is not None:  # every wait asks: no lock once it exists
            return made
        with self._lock:
            if self._listener is None:
                from ._waits.events import EventsListener

                settings = self._settings
                self._listener = EventsListener(
                    settings.api_url,
                    token=settings.auth_string or settings.api_key,  # the auth message's token
                    verify=settings.verify,
                    timeout=settings.request_timeout,
                    mode=settings.events,
                )
            return self._listener

    def watch(self, run_ids: Collection[uuid.UUID], *, all_final: bool = False) -> Optional[Watch]:
        """``EventsListener.watch``: websocket-client itself loads here, on the first wait."""
        return self.listener.watch(run_ids, all_final=all_final)

    def close(self) -> None:
        """Close the listener if a wait made one."""
        with self._lock:
            listener = self._listener
        if listener is not None:
            listener.close()

    def __repr__(self) -> str:
        listener = self._listener
        return repr(listener) if listener is not None else "EventsListener(not made yet)"
