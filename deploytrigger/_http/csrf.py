"""CSRF tokens for servers that require them, at no cost on servers that do not.

A Prefect server started with ``PREFECT_SERVER_CSRF_PROTECTION_ENABLED=true``
refuses every POST, PUT, PATCH and DELETE without a token with ``403`` and a
detail such as "Missing CSRF token.". deploytrigger sends no token and asks for
none until that first refusal, so a server without protection sees one request
per call, as before. On the first refusal the client fetches a token
(``GET /csrf-token?client=<this client's id>``; the answer has ``token`` and
``expiration``), sends the refused request again with ``Prefect-Csrf-Token`` and
``Prefect-Csrf-Client``, and sends both on every later mutating request. A token
is fetched again shortly before it expires, and when the server calls it
invalid.

The server keeps one token per client id and replaces it on every fetch, so
threads must not fetch one each: a refusal names the token *generation* it was
sent with, and only the first thread to report a generation fetches the next;
the others send again with the token it got.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

TOKEN_HEADER = "Prefect-Csrf-Token"
CLIENT_HEADER = "Prefect-Csrf-Client"

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""The methods a CSRF-protected server checks."""

EXPIRY_MARGIN = dt.timedelta(seconds=30)
"""A token this close to its expiration is replaced before it is sent (at most half
its lifetime, so a short-lived token is still used)."""


def is_csrf_refusal(status_code: int, detail: Any) -> bool:
    """Whether an answer is the server's CSRF protection refusing a request."""
    if status_code != 403 or not isinstance(detail, str):
        return False
    text = detail.lower()
    return "csrf" in text or "missing client identifier" in text


class CsrfTokens:
    """The CSRF token of one client; safe to share between threads.

    Args:
        fetch: ``fetch(client_id)`` asks the server for a token (``GET
            /csrf-token?client=...``) and returns its JSON answer, or None when
            the server issues none (CSRF protection off: 422; an old server: 404).
        now: the current time, timezone-aware (tests inject a fake).

    Attributes:
        client_id: the id the server keeps this client's token under.
        generation: how many tokens have been fetched; a refusal reports the
            generation it was sent with, so one refusal causes at most one fetch.
    """

    def __init__(
        self,
        fetch: Callable[[str], Optional[Mapping[str, Any]]],
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self._fetch = fetch
        self._now = now
        self._lock = threading.Lock()
        self.client_id = str(uuid.uuid4())
        self.generation = 0
        self.required = False
        self._token: Optional[str] = None
        self._renew_at: Optional[dt.datetime] = None

    def __repr__(self) -> str:  # the token is a secret
        return f"CsrfTokens(client_id={self.client_id!r}, required={self.required})"

    def headers(self) -> Tuple[int, Dict[str, str]]:
        """The generation and headers to send a mutating request with (none until required)."""
        generation = self.generation
        if not self.required:
            return generation, {}
        if self._expired():
            self.refresh(generation)
        with self._lock:
            if self._token is None:
                return self.generation, {}
            return self.generation, {TOKEN_HEADER: self._token, CLIENT_HEADER: self.client_id}

    def refresh(self, generation: int) -> bool:
        """Fetch a new token, unless one newer than ``generation`` is there already.

        Returns False when the server issues no token (its CSRF protection is
        off): requests are sent without one from then on.
        """
        with self._lock:
            if self.generation != generation:
                return self._token is not None
            answer = self._fetch(self.client_id)
            self.generation += 1
            if answer is None:
                self.required = False
                self._token = self._renew_at = None
                return False
            self.required = True
            self._token = str(answer.get("token") or "") or None
            expiration = _parse_time(answer.get("expiration"))
            if expiration is None:
                self._renew_at = None
            else:
                now = self._now()
                self._renew_at = expiration - min(EXPIRY_MARGIN, max(expiration - now, ZERO) / 2)
            return self._token is not None

    def _expired(self) -> bool:
        renew_at = self._renew_at
        return renew_at is not None and self._now() >= renew_at


ZERO = dt.timedelta(0)


def _parse_time(value: Any) -> Optional[dt.datetime]:
    """An ISO 8601 time as an aware datetime (naive: UTC); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    from dateutil.parser import isoparse

    try:
        when = isoparse(value)
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
