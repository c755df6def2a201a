"""A process-wide fence on where deploytrigger may send requests, for test doubles.

While a fence is up, every request a deploytrigger client sends (whenever the
client was made) is first checked here: one to a URL outside every fence's
allowed API URLs is not sent, and raises
:class:`~deploytrigger.exceptions.ConfigurationError` naming the URL and how
to fix it. The fake Prefect API raises a fence while it runs (see the testing
guide), so a module-level client or a
``configure(api_url=...)`` made at import cannot reach a real server during a
test. With no fence up a check costs one truth test of a module global.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Tuple

from ._helpers.urls import redact_url, without_credentials
from .exceptions import ConfigurationError

__all__ = ["check_request", "fence"]


class _Fence:
    """Allowed API URLs (credentials removed, no trailing slash) and the fix to suggest."""

    def __init__(self, allowed: Iterable[str], fix: str) -> None:
        self.allowed = tuple(without_credentials(url).rstrip("/") for url in allowed)
        self.fix = fix

    def allows(self, url: str) -> bool:
        return any(url == base or url.startswith(base + "/") for base in self.allowed)


_lock = threading.Lock()
_fences: Tuple[_Fence, ...] = ()  # replaced whole, never mutated: readers need no lock


def fence(allowed: Iterable[str], *, fix: str) -> Callable[[], None]:
    """Refuse requests to any URL not below one of ``allowed`` until the returned call.

    Args:
        allowed: API URLs requests may go to (``http://127.0.0.1:8123/api``);
            a URL below one of them (its paths) is allowed.
        fix: what the refusal tells the user to do, as a sentence.

    Returns:
        A function that takes this fence down (idempotent). A request is
        allowed when any fence that is up allows it.
    """
    global _fences
    entry = _Fence(allowed, fix)
    with _lock:
        _fences = (*_fences, entry)

    def take_down() -> None:
        global _fences
        with _lock:
            _fences = tuple(f for f in _fences if f is not entry)

    return take_down


def check_request(url: str, method: str) -> None:
    """Raise unless ``url`` may be sent to now (always, when no fence is up).

    Raises:
        ConfigurationError: a fence is up and ``url`` is outside it; nothing was sent.
    """
    fences = _fences
    if not fences:
        return
    plain = without_credentials(url)
    if any(entry.allows(plain) for entry in fences):
        return
    allowed = ", ".join(base for entry in fences for base in entry.allowed)
    raise ConfigurationError(
        f"{method} {redact_url(url)} not sent: only {allowed} may be reached now "
        f"(a fake Prefect API is active). {fences[-1].fix}"
    )
