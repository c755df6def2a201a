"""The process-wide default client behind the module-level functions (``api.py``).

``deploytrigger.run_deployment(...)`` without ``client=`` uses the default
client for the configuration in force at the time of the call: the options
given to :func:`configure` merged with the environment and the Prefect
profile, resolved on every call (``settings.py``), so a changed
``PREFECT_API_URL`` or API key gets a client of its own. Each configuration's
client is made once (thread-safe) and then reused by every thread: one
connection pool and one deployment cache, so a steady-state trigger costs one
request, as with a long-lived :class:`~deploytrigger.Client`.

Fork safety: a child process (gunicorn prefork workers, ``multiprocessing``
with ``fork``, Celery prefork) never uses a client made by its parent. The
fork is seen by ``os.register_at_fork(after_in_child=...)``, or by a change
of ``os.getpid()`` where that hook does not exist; the child then drops the
parent's clients, unused, and makes its own when it first needs one. What
the child drops is its copy of the parent's sockets: closing a copy sends
nothing to the server, so the parent's connections stay open and usable.
The default clients are closed when the interpreter exits.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from ._helpers.arguments import unexpected_keywords
from .client import Client
from .options import ClientOptions
from .settings import Settings, resolve_settings, settings_options

if TYPE_CHECKING:
    from typing_extensions import Unpack


MAX_DEFAULT_CLIENTS = 8
"""Configurations whose default clients are kept; the oldest beyond that is closed."""


class _Generation:
    """One :func:`configure` call: how to resolve the settings and make a client, and the
    clients made so far, one per resolved :class:`~deploytrigger.settings.Settings`."""

    def __init__(
        self, resolve: Callable[[], Settings], make: Callable[[], Client], pid: int
    ) -> None:
        self.resolve = resolve
        self.make = make
        self.pid = pid
        self.clients: Dict[Settings, Client] = {}


class _DefaultClients:
    """The registry of default clients in this process (a single module-level instance)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = _Generation(resolve_settings, Client, os.getpid())

    def get(self) -> Client:
        """The default client for the configuration in force now, made on first use."""
        generation = self._generation
        if generation.pid != os.getpid():  # a fork that the at-fork hook did not see
            generation = self._forget_parent()
        settings = generation.resolve()
        client = generation.clients.get(settings)
        return client if client is not None else self._make(generation, settings)

    def _make(self, generation: _Generation, settings: Settings) -> Client:
        """Make the client for ``settings``, once, however many threads ask at the same time."""
        with self._lock:
            if self._generation is not generation:  # reconfigured meanwhile: the new options
                generation = self._generation
                settings = generation.resolve()
            client = generation.clients.get(settings)
            if client is not None:
                return client
            client = generation.make()
            generation.clients[settings] = client
            evicted = _oldest_beyond(generation.clients, MAX_DEFAULT_CLIENTS)
        for old in evicted:
            old.close()
        return client

    def replace(self, resolve: Callable[[], Settings], make: Callable[[], Client]) -> None:
        """Use new options from now on; close the clients made with the old ones."""
        with self._lock:
            old, self._generation = self._generation, _Generation(resolve, make, os.getpid())
        for client in old.clients.values():
            client.close()

    def close_all(self) -> None:
        """Close every default client of this process (they are made again when needed)."""
        with self._lock:
            generation = self._generation
            clients, generation.clients = list(generation.clients.values()), {}
        for client in clients:
            client.close()

    def after_fork_in_child(self) -> None:
        """Forget the parent's clients in a forked child (the at-fork hook)."""
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        old = self._generation
        self._generation = _Generation(old.resolve, old.make, os.getpid())

    def _forget_parent(self) -> _Generation:
        with self._lock:
            if self._generation.pid != os.getpid():
                old = self._generation
                self._generation = _Generation(old.resolve, old.make, os.getpid())
            return self._generation


def _oldest_beyond(clients: Dict[Settings, Client], limit: int) -> List[Client]:
    """Remove and return the clients made first while there are more than ``limit``."""
    evicted = []
    while len(clients) > limit:
        evicted.append(clients.pop(next(iter(clients))))
    return evicted


_registry = _DefaultClients()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_registry.after_fork_in_child)
atexit.register(_registry.close_all)


def default_client() -> Client:
    """The default client for the current configuration (made on first use, then reused).

    It is what the module-level functions use. Do not close it: it is closed
    when the interpreter exits, and by :func:`reset_default_client`.

    Raises:
        ConfigurationError: no API URL is configured, or a setting is unusable.
    """
    return _registry.get()


def configure(api_url: Optional[str] = None, **options: Unpack[ClientOptions]) -> None:
    """Set the options of the default client; the keywords are those of :class:`Client`.

    Each call replaces the options of the one before (``configure()`` restores
    the defaults) and closes the default clients made so far; the next
    module-level call makes a new one. Options left out still come from the
    environment and the Prefect profile, read at every call. Options are
    checked when the client is made, as :class:`Client` checks them: an
    unusable one raises :class:`~deploytrigger.ConfigurationError` from the next call.

    Raises:
        InvalidArgumentTypeError: a keyword that :class:`Client` does not take.
    """
    unexpected_keywords(options, ("api_url", *ClientOptions.__annotations__), "configure")
    resolve = functools.partial(resolve_settings, api_url, **settings_options(options))
    _registry.replace(resolve, functools.partial(Client, api_url, **options))


def reset_default_client() -> None:
    """Close the default clients and forget :func:`configure`'s options (for tests, reloads).

    The next module-level call makes a new client from the environment.
    """
    _registry.replace(resolve_settings, Client)
