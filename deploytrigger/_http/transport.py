"""The transport: one ``requests.Session``, retried HTTP calls, errors mapped.

A :class:`Transport` sends one request to the Prefect API and returns its
JSON answer, or raises the :class:`~deploytrigger.exceptions.DeployTriggerError`
the failure means. It owns the session (connection pool, auth header, TLS),
retries transient failures as ``retries.py`` decides (within the request's
retry budget), sends CSRF tokens once the server asks for them (``csrf.py``),
keeps to the process's request-rate budget when one is set (``ratelimit.py``),
maps failures to errors (``errors.py``) and shows URLs with credentials
removed. It knows nothing about flow runs: the services above it
(``deployments.py``, ``runs.py``, ``parents.py``) give requests their meaning.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

import requests
import tenacity
from requests.adapters import HTTPAdapter

from .._helpers.deadline import Deadline
from .._helpers.urls import redact_url, without_credentials
from .._version import __version__
from ..exceptions import (
    BadRequestError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
)
from ..guard import check_request
from ..settings import Settings
from .bodies import encode_body
from .csrf import MUTATING_METHODS, CsrfTokens, is_csrf_refusal
from .errors import csrf_error, detail_of, json_or_error, reason, transport_error
from .ratelimit import RateBudget, shared_budget
from .retries import retrying, sent_nothing

logger = logging.getLogger("deploytrigger")

DEFAULT_POOL_SIZE = 32
"""Connections kept per host; enough for a thread pool of that many workers."""

FIRST_CONTACT_RETRIES = 3
"""Retries of a connection that cannot be opened to a server that has never answered.

Without a ``max_retries``, a request retries for its whole retry budget; a
mistyped URL should fail in seconds instead, as in Prefect's client (which does
not retry such a failure at all).
"""

CSRF_ROUNDS = 3
"""Times one request is sent again after a CSRF refusal before the error is raised."""


class Transport:
    """Sends requests to one Prefect API; safe to share between threads.

    Args:
        settings: where the API is and how to authenticate (``settings.py``).
        pool_size: connections kept open to the server; size it for your threads.
        sleep: how to wait between retries (tests inject a fake).
        clock: a monotonic clock in seconds, for the retry budget (tests inject a fake).
        backoff: the wait before a retry when the server asks none (tests inject one).
        rate_budget: the request-rate budget to keep to; by default the one this
            process shares for the API URL when ``settings.max_requests_per_minute``
            is set (``ratelimit.py``), else none.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff: Optional[Callable[[tenacity.RetryCallState], float]] = None,
        rate_budget: Optional[RateBudget] = None,
    ) -> None:
        self.settings = settings
        self.api_url = settings.api_url
        self.shown_url = redact_url(settings.api_url)
        self._sleep = sleep
        self._clock = clock
        self._backoff = backoff
        self._answered = False  # whether the server has ever answered this transport
        self._unreachable_told = False  # whether this outage's warning was logged
        self._lock = threading.Lock()
        self._route_hint_checked = False  # whether <url>/api/health was asked (``_route_hint``)
        self._route_hint_text: Optional[str] = None
        self.csrf = CsrfTokens(self._fetch_csrf_token)
        if rate_budget is None and settings.max_requests_per_minute:
            rate_budget = shared_budget(
                without_credentials(settings.api_url), settings.max_requests_per_minute
            )
        self.rate_budget = rate_budget
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": f"deploytrigger/{__version__}",
            }
        )
        if settings.authorization:
            self._session.headers["Authorization"] = settings.authorization

    def close(self) -> None:
        """Close the session's connections."""
        self._session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        idempotent: bool = True,
        deadline: Optional[Deadline] = None,
        retry: bool = True,
    ) -> Any:
        """Send one request (retried as allowed) and return its JSON answer.

        Args:
            method: the HTTP method.
            path: the path below the API URL, starting with ``/``.
            body: a JSON-ready request body.
            idempotent: whether sending it twice has the effect of sending it
                once; only then is a request that may have reached the server retried.
            deadline: no retry starts after it.
            retry: False sends it once, whatever the settings allow (for a best effort).

        Raises:
            TransportError: no HTTP answer (connection, timeout, TLS).
            APIError: an error status, as the subclass for that status;
                ``CSRFError`` when CSRF protection refuses even a fresh token.
            InvalidResponseError: a success whose body is not JSON.
        """
        url = self.api_url + path
        check_request(url, method)  # a test's fake Prefect API may fence this URL off
        shown = redact_url(url)
        data = None if body is None else encode_body(body)
        mutating = method.upper() in MUTATING_METHODS
        attempts = 0
        fresh_token = False  # whether a token was fetched after this request was refused
        for _ in range(CSRF_ROUNDS + 1):
            generation, headers = self.csrf.headers() if mutating else (0, {})
            response, tries = self._send(
                method, url, shown, data, headers, idempotent, deadline, retry
            )
            attempts += tries
            detail = detail_of(response) if response.status_code == 403 and mutating else None
            if not is_csrf_refusal(response.status_code, detail):
                break
            if fresh_token and generation == self.csrf.generation:
                raise csrf_error(response, method, shown, attempts, detail, "a fresh token")
            logger.debug("%s %s refused for CSRF (%s); fetching a token", method, shown, detail)
            if not self.csrf.refresh(generation) and not headers:
                raise csrf_error(response, method, shown, attempts, detail, "no token issued")
            fresh_token = True
        else:
            raise csrf_error(response, method, shown, attempts, detail, "a fresh token")
        hint = None
        if response.status_code == 404 and not path.startswith("/csrf-token"):
            hint = self._route_hint(response)
        return json_or_error(response, method, shown, attempts, hint)

    def _route_hint(self, response: requests.Response) -> Optional[str]:
        """What to change when a 404 means "no such route" and ``<url>/api`` is the API.

        A server answers ``{"detail": "Not Found"}`` for a path it has no route
        for, and e.g. ``Deployment not found`` for a deployment it lacks. Only
        the first kind, and only for a URL that does not end in ``/api``, costs
        one ``GET <url>/api/health`` (once per transport): a server configured
        right never sees it.
        """
        if detail_of(response) != "Not Found" or self.api_url.rstrip("/").endswith("/api"):
            return None
        if self._route_hint_checked:
            return self._route_hint_text
        self._route_hint_checked = True
        candidate = self.api_url.rstrip("/") + "/api"
        try:
            check_request(candidate + "/health", "GET")
            answer = self._session.get(
                candidate + "/health",
                timeout=min(self.settings.request_timeout, 5.0),
                verify=self.settings.verify,
            )
        except requests.exceptions.RequestException as exc:
            logger.debug("GET %s/health failed: %s", redact_url(candidate), reason(exc))
            return None
        if answer.status_code == 200:
            self._route_hint_text = (
                f"the API URL probably needs to end in /api: {redact_url(candidate)}"
            )
        return self._route_hint_text

    def _send(
        self,
        method: str,
        url: str,
        shown: str,
        data: Optional[bytes],
        headers: Dict[str, str],
        idempotent: bool,
        deadline: Optional[Deadline],
        retry: bool = True,
    ) -> Tuple[requests.Response, int]:
        """Send one request, retried as allowed; the last answer and how many attempts it took."""
        attempts = 0

        def send() -> requests.Response:
            nonlocal attempts
            attempts += 1
            if self.rate_budget is not None:
                self._take_slot(method, shown, deadline)
            started = time.monotonic()
            response = self._session.request(
                method,
                url,
                data=data,
                headers=headers or None,
                timeout=self.settings.request_timeout,
                verify=self.settings.verify,
                stream=True,  # the body is read below, where a failure to read it is told apart
            )
            try:
                response.content  # noqa: B018 - read the body, as requests does without stream
            except ValueError as exc:
                # requests maps what urllib3 raises reading a body to its own errors;
                # a ValueError here is the file under it closed while read ("I/O
                # operation on closed file"). Seen from 16 threads sharing a session
                # beside a CPU hog: likely urllib3 pooled the connection before its
                # last close, and another thread closed it. As uncertain as a reset.
                raise requests.exceptions.ConnectionError(
                    f"the connection was closed under the answer: {exc}"
                ) from exc
            self._answered = True
            self._unreachable_told = False  # the next outage is warned about again
            logger.debug(
                "%s %s -> %s in %.3fs (attempt %d)",
                method,
                shown,
                response.status_code,
                time.monotonic() - started,
                attempts,
            )
            if self.rate_budget is not None:
                if response.status_code == 429:
                    self.rate_budget.limited()
                elif response.status_code < 400:
                    self.rate_budget.succeeded()
            return response

        def log_retry(state: tenacity.RetryCallState) -> None:
            assert state.outcome is not None and state.next_action is not None
            failure = state.outcome.exception()
            if failure is not None and self._answered and sent_nothing(failure):
                self._tell_unreachable()
            why = type(failure).__name__ if failure else state.outcome.result().status_code
            wait = state.next_action.sleep
            logger.debug("%s %s failed (%s); retrying in %.2fs", method, shown, why, wait)

        max_retries = self.settings.max_retries if retry else 0
        policy = retrying(
            max_retries=max_retries,
            idempotent=idempotent,
            first_contact_retries=(
                FIRST_CONTACT_RETRIES if max_retries is None and not self._answered else None
            ),
            deadline=deadline,
            budget=Deadline(self.settings.retry_budget, self._clock),
            sleep=self._sleep,
            backoff=self._backoff,
            before_sleep=log_retry,
        )
        try:
            response = policy(send)
        except requests.exceptions.RequestException as exc:
            # One failure, one cause: the requests error itself, without the
            # urllib3 chain behind it or its frames (its message says it all).
            _one_level(exc)
            raise transport_error(
                exc,
                method,
                shown,
                attempts,
                timeout=self.settings.request_timeout,
                api_url=self.shown_url,
            ) from exc
        return response, attempts

    def _tell_unreachable(self) -> None:
        """One WARNING per outage: the server that answered before refuses connections now."""
        with self._lock:
            if self._unreachable_told:
                return
            self._unreachable_told = True
        budget = f"{round(self.settings.retry_budget, 1):g} s"
        max_retries = self.settings.max_retries
        how = (
            f"retrying for up to {budget}"
            if max_retries is None
            else f"retrying up to {max_retries} times within {budget}"
        )
        logger.warning("%s is unreachable; %s", self.shown_url, how)

    def _take_slot(self, method: str, shown: str, deadline: Optional[Deadline]) -> None:
        """Wait for this request's slot in the rate budget, but not past ``deadline``.

        Raises:
            RateLimitedError: the slot comes after the caller's deadline; the
                request is not sent (a wait then ends with the run as last seen).
        """
        assert self.rate_budget is not None
        remaining = None if deadline is None else deadline.remaining()
        wait = self.rate_budget.acquire(max_wait=remaining)
        if remaining is not None and wait > remaining:
            raise RateLimitedError(
                f"{method} {shown} not sent: the request-rate budget's next slot "
                f"({wait:.1f}s away) comes after the deadline",
                retry_after=wait,
                method=method,
                url=shown,
            )

    def _fetch_csrf_token(self, client_id: str) -> Optional[Dict[str, Any]]:
        """A CSRF token for ``client_id``, or None when the server issues none (422, 404)."""
        try:
            answer = self.request("GET", f"/csrf-token?client={client_id}")
        except (BadRequestError, NotFoundError) as exc:
            if exc.status_code in (404, 422):
                logger.debug("the server issues no CSRF token: %s", exc.detail)
                return None
            raise
        if not isinstance(answer, dict) or not answer.get("token"):
            raise InvalidResponseError(
                f"GET {self.shown_url}/csrf-token answered without a token",
                method="GET",
                url=f"{self.shown_url}/csrf-token",
            )
        return answer


def _one_level(exc: BaseException) -> None:
    """Cut what is chained behind ``exc`` and its frames, so it shows as one line of cause."""
    exc.__cause__ = None
    exc.__context__ = None
    exc.__suppress_context__ = True
    exc.__traceback__ = None
