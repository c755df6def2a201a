"""The events listener: one websocket per client that wakes waits when their runs finish.

The listener only ever *wakes* a wait (:class:`~deploytrigger._waits.engine.Watch`);
the wait then reads the run over REST, so what it returns is always the
server's record. With the listener off, missing or broken, every wait is the
plain polling wait of ``engine.py``.

**One thread, one socket, every run.** A :class:`EventsListener` belongs to one
client. The first wait that asks for a :meth:`~EventsListener.watch` starts a
daemon thread, which opens the server's stream (``<api_url>/events/out``,
subprotocol ``prefect``, ``{"type": "auth", ...}``, then one filter) and reads
it until the client is closed. Every wait of the client registers its runs with
the same listener; a final-state event is routed to the waits watching that run.

**Why one broad subscription, filtered here.** The server takes one filter per
connection and never acknowledges it: changing the set of runs means a new
connection, and until the new filter is in force (which the client cannot know)
an event can be in neither socket. So the listener subscribes once to every
flow run's *final* state events (``resource.id_prefix`` ``prefect.flow-run.``
and the ``prefect.state-type`` label in the final types) and picks the runs it
is waiting on itself. A new wait is covered the moment it registers, with no
reconnect; the cost is one ~1 KB event per finished flow run of the server (or
Cloud workspace), heartbeats and intermediate states excluded by the filter.

**Correct when events go missing.** The interval poll stays (there is no
acknowledgement); "final" is decided from ``prefect.state-type``, never the
state's name; duplicates are dropped by event id; after a final event the wait
re-reads until the record is final (the event is published before the commit,
``engine.RECHECK_INTERVAL``); a dropped socket is reopened with backoff, and
every pending wait is woken to re-read once the new socket is subscribed. The
socket is read with a short timeout so the server's pings are answered.

**When there is no stream** (``websocket-client`` not installed, the handshake
answered with an HTTP error such as 403/404/500, a close 1002/1008 for a
missing subprotocol or a refused token, three failed attempts before the
first success, or three sockets in a row dropped within seconds of being
subscribed, as a server that refuses the filter does) the listener gives up
for the client's lifetime with one log line (INFO for ``events="auto"``,
WARNING for ``"on"``) and the waits poll.

**Secrets** stay in the auth message (``stream.py``, which opens the socket).
A listener is never used across ``fork``: a child process starts its own.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Collection, Dict, FrozenSet, List, Optional, Set

from .._helpers.urls import redact_url
from .stream import (
    RECEIVE_TIMEOUT,
    REFUSING_CLOSE_CODES,
    Connect,
    Connection,
    StreamClosed,
    StreamRefused,
    connect_websocket,
    events_url,
    final_run_of,
    handshake,
    ssl_options,
    stream_filter,
)

logger = logging.getLogger("deploytrigger")

ATTEMPTS_BEFORE_FIRST_SUCCESS = 3
"""Failed connections, before any handshake succeeded, after which the listener gives up."""

QUICK_DROP = 5.0
"""Seconds: a socket dropped sooner after it opened counts toward giving up (a refused filter)."""

MAX_BACKOFF = 30.0
"""Seconds, at most, between attempts to reopen a dropped stream."""

IDLE_CLOSE = 60.0
"""Seconds with no wait watching a run before the socket is closed (the next wait reopens it)."""

REMEMBERED = 4096
"""Event ids (for de-duplication) and finished runs (for late watchers) kept."""


class _Watch:
    """One wait's runs, and the event it pauses on (:class:`~._waits.engine.Watch`)."""

    def __init__(self, listener: EventsListener, *, all_final: bool = False) -> None:
        self._listener = listener
        self._all_final = all_final
        self._woken = threading.Event()
        self._finals: Set[uuid.UUID] = set()
        self.run_ids: FrozenSet[uuid.UUID] = frozenset()

    @property
    def active(self) -> bool:
        return self._listener.listening()

    def update(self, run_ids: Collection[uuid.UUID]) -> None:
        self._listener._update(self, frozenset(run_ids))

    def wait(self, timeout: float) -> bool:
        woken = self._woken.wait(timeout)
        self._woken.clear()
        return woken

    def finals(self) -> FrozenSet[uuid.UUID]:
        with self._listener._lock:
            return frozenset(self._finals)

    def close(self) -> None:
        self._listener._update(self, frozenset(), closing=True)

    def _wake(self, run_id: Optional[uuid.UUID] = None) -> None:
        """Under the listener's lock: cut the pause short (a run's final event, a reconnect).

        A watch for all its runs (``all_final``) is woken by the event of the last one.
        """
        if run_id is not None:
            self._finals.add(run_id)
            if self._all_final and not self.run_ids <= self._finals:
                return
        self._woken.set()


class EventsListener:
    """One client's events stream: a daemon thread and a websocket, shared by its waits.

    Implements :class:`~deploytrigger._waits.engine.Wakeups`. Making one opens
    nothing: the first :meth:`watch` imports websocket-client and starts the
    thread, so a client that only triggers runs never loads it.

    Args:
        api_url: the REST API's URL (``events_url`` makes the stream's).
        token: what the auth message carries: the raw ``user:pass`` of a server
            with basic auth, else the Cloud API key, else None. Kept out of ``repr``.
        verify: the REST settings' ``verify`` (True, False or a CA bundle path).
        timeout: seconds to connect and to get the answer to the auth message.
        mode: ``"auto"`` or ``"on"`` (``"off"`` makes no listener at all).
        connect: opens a websocket (:func:`connect_websocket`; tests script one).
        now: the wall clock, for the filter's ``occurred`` window (UTC).
        backoff: seconds before reconnect attempt ``n`` (1, 2 ...) after a drop.
        idle_close: seconds the socket stays open with no wait watching a run.
        clock: a monotonic clock in seconds, for ``idle_close``.
    """

    def __init__(
        self,
        api_url: str,
        *,
        token: Optional[str] = None,
        verify: Any = True,
        timeout: float = 30.0,
        mode: str = "auto",
        connect: Optional[Connect] = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        backoff: Optional[Callable[[int], float]] = None,
        idle_close: float = IDLE_CLOSE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = token
        self._verify = verify
        self._timeout = timeout
        self._mode = mode
        self._connect = connect
        self._now = now
        self._backoff = backoff or _default_backoff
        self._idle_close = idle_close
        self._clock = clock
        self.url = events_url(api_url)
        self.connections = 0
        """Sockets opened so far (handshakes that succeeded)."""
        self._reset()

    def _reset(self) -> None:
        """A fresh state: at creation, and in a child process after ``fork``."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._watches: Dict[_Watch, FrozenSet[uuid.UUID]] = {}
        self._by_run: Dict[uuid.UUID, Set[_Watch]] = {}
        self._seen_events: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._finished: collections.OrderedDict[uuid.UUID, None] = collections.OrderedDict()
        self._thread: Optional[threading.Thread] = None
        self._connection: Optional[Connection] = None
        self._gave_up = False
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "gave up" if self._gave_up else "listening"
        return f"EventsListener(url={redact_url(self.url)!r}, mode={self._mode!r}, {state})"

    # -- what waits use -------------------------------------------------------------

    def listening(self) -> bool:
        """Whether waits should pause on their watch (False: plain polling)."""
        return not (self._gave_up or self._closed) and self._pid == os.getpid()

    def watch(self, run_ids: Collection[uuid.UUID], *, all_final: bool = False) -> Optional[_Watch]:
        """Watch ``run_ids`` for one wait, starting the listener on first use.

        ``all_final``: wake the wait once every one of its runs had its final
        event, not at each (``engine.Wakeups.watch``).

        Returns None (the wait polls) when the listener has given up or is closed.
        """
        if self._pid != os.getpid():
            self._reset()  # a forked child: never touch the parent's socket
        if not self.listening():
            return None
        if self._connect is None:
            try:
                import websocket  # noqa: F401 - is the extra installed?
            except ImportError:
                self._give_up(
                    "websocket-client is not installed: pip install 'deploytrigger[events]'"
                )
                return None
            self._connect = connect_websocket
        watch = _Watch(self, all_final=all_final)
        self._update(watch, frozenset(run_ids))
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="deploytrigger-events", daemon=True
                )
                self._thread.start()
        return watch

    def close(self) -> None:
        """Stop the thread and close the socket (``Client.close``); waits fall back on polling."""
        if self._pid != os.getpid():
            return
        with self._lock:
            self._closed = True
            connection, thread = self._connection, self._thread
            watches = list(self._watches)
            for watch in watches:
                watch._wake()
            self._changed.notify_all()
        if connection is not None:
            connection.close()  # the thread's read fails at once and it ends
            if thread is not None and thread is not threading.current_thread():
                thread.join(RECEIVE_TIMEOUT + 1.0)
        # Without a connection the thread may be connecting (a DNS lookup cannot be cut
        # short): it sees ``_closed`` when it returns, closes what it opened and ends.

    # -- bookkeeping ----------------------------------------------------------------

    def _update(self, watch: _Watch, run_ids: FrozenSet[uuid.UUID], closing: bool = False) -> None:
        with self._lock:
            old = self._watches.pop(watch, frozenset())
            for run_id in old - run_ids:
                watchers = self._by_run.get(run_id)
                if watchers is not None:
                    watchers.discard(watch)
                    if not watchers:
                        del self._by_run[run_id]
            if closing:
                return
            self._watches[watch] = run_ids
            watch.run_ids = run_ids
            for run_id in run_ids - old:
                self._by_run.setdefault(run_id, set()).add(watch)
                if run_id in self._finished:  # its event came before this wait watched it
                    watch._wake(run_id)
            if watch._all_final and run_ids and run_ids <= watch._finals:
                watch._wake()  # the runs left are those whose events came
            self._changed.notify_all()

    def _deliver(self, event_id: str, run_id: uuid.UUID) -> None:
        with self._lock:
            if event_id in self._seen_events:
                return
            _remember(self._seen_events, event_id)
            _remember(self._finished, run_id)
            for watch in self._by_run.get(run_id, ()):
                watch._wake(run_id)

    def _wake_all(self) -> None:
        with self._lock:
            for watch in self._watches:
                watch._wake()

    def _give_up(self, why: str) -> None:
        level = logging.WARNING if self._mode == "on" else logging.INFO
        with self._lock:
            if self._gave_up or self._closed:
                return
            # Said before it shows: whoever sees the listener given up sees the line too.
            shown = redact_url(self.url)
            logger.log(level, "events: %s: %s; waits poll at their interval", shown, why)
            self._gave_up = True
            for watch in self._watches:
                watch._wake()  # pause on ``sleep`` from now on

    # -- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._listen()
        except Exception as exc:  # a bug here must not leave waits paused on a dead listener
            self._give_up(f"the listener failed ({type(exc).__name__})")
            raise

    def _listen(self) -> None:
        failures = 0
        quick_drops = 0
        connected_once = False
        dropped = False  # since the last socket was subscribed: events may have been missed
        while not self._stopping():
            if not self._wait_for_watchers():
                return
            try:
                connection = self._open()
            except StreamRefused as exc:
                self._give_up(f"the server refused the stream ({exc})")
                return
            except Exception as exc:  # any failure to connect is retried
                failures += 1
                logger.debug("events: could not open the stream: %s", type(exc).__name__)
                if not connected_once and failures >= ATTEMPTS_BEFORE_FIRST_SUCCESS:
                    self._give_up(f"could not open the stream ({type(exc).__name__})")
                    return
                self._pause(self._backoff(failures))
                continue
            if dropped:
                self._wake_all()  # events may have been missed while the socket was down
            connected_once, failures, dropped = True, 0, False
            opened = time.monotonic()
            try:
                self._read(connection)
                logger.debug("events: no wait for %gs; closed the stream", self._idle_close)
            except StreamClosed as exc:
                if self._stopping():
                    return
                if exc.code in REFUSING_CLOSE_CODES:
                    self._give_up(f"the server closed the stream (code {exc.code})")
                    return
                # A server that refuses the filter drops the connection right after it.
                lasted = time.monotonic() - opened >= QUICK_DROP
                quick_drops = 0 if lasted else quick_drops + 1
                if quick_drops >= ATTEMPTS_BEFORE_FIRST_SUCCESS:
                    self._give_up("the server drops the stream as soon as it is subscribed")
                    return
                logger.debug("events: the stream dropped (%s); reopening", exc)
                failures, dropped = 1, True
                self._pause(self._backoff(failures + quick_drops))
            finally:
                connection.close()
                with self._lock:
                    self._connection = None

    def _stopping(self) -> bool:
        return self._closed or self._gave_up

    def _wait_for_watchers(self) -> bool:
        """Block until some wait watches a run (no socket is opened for nobody); False: closed."""
        with self._lock:
            while not self._watches and not self._closed:
                self._changed.wait()
            return not self._closed

    def _pause(self, seconds: float) -> None:
        with self._lock:
            if not self._closed:
                self._changed.wait(seconds)

    def _open(self) -> Connection:
        """Connect, authenticate, subscribe (``stream.handshake``); the open connection."""
        assert self._connect is not None
        options = {
            "timeout": self._timeout,
            "receive_timeout": RECEIVE_TIMEOUT,
            "sslopt": ssl_options(self._verify),
        }
        connection = self._connect(self.url, options)
        with self._lock:
            if self._closed:
                connection.close()
                raise StreamClosed("the client was closed")
            self._connection = connection
        handshake(
            connection,
            token=self._token,
            subscription=stream_filter(self._now()),
            timeout=self._timeout,
            closed=lambda: self._closed,
        )
        self.connections += 1
        logger.debug("events: listening on %s", redact_url(self.url))
        return connection

    def _read(self, connection: Connection) -> None:
        """Read until closed: each final flow-run event wakes the waits on its run.

        Returns (the socket is then closed) once no wait has watched a run for
        ``idle_close`` seconds; the backfill of the next socket's filter covers
        a wait that registers while it opens, as it does the first one.
        """
        idle_since: Optional[float] = None
        while not self._closed:
            if self._watches:
                idle_since = None
            elif idle_since is None:
                idle_since = self._clock()
            elif self._clock() - idle_since >= self._idle_close:
                return
            frame = connection.receive()
            if frame is None:
                continue
            found = final_run_of(frame)
            if found is not None:
                self._deliver(*found)


def _remember(memory: collections.OrderedDict[Any, None], key: Any) -> None:
    memory[key] = None
    memory.move_to_end(key)
    while len(memory) > REMEMBERED:
        memory.popitem(last=False)


def _default_backoff(attempt: int) -> float:
    """Exponential from 0.5 s with jitter, capped at :data:`MAX_BACKOFF`."""
    pause: float = min(MAX_BACKOFF, 0.5 * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)
    return pause


__all__: List[str] = ["EventsListener", "connect_websocket", "events_url"]
