"""The options of a client, defined once for :class:`~deploytrigger.Client` and
:func:`~deploytrigger.configure` (and so for the default client)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, cast

from .settings import SettingsOptions, function, number, whole_number

if TYPE_CHECKING:
    import tenacity

    from ._results.results import ResultReader

__all__ = ["ClientOptions"]


class ClientOptions(SettingsOptions, total=False):
    """The keywords that :class:`~deploytrigger.Client` and :func:`~deploytrigger.configure` take.

    Each is optional; the first nine are settings, which fall back on the
    environment (and, but for ``events`` and ``progress``, the active Prefect profile). A value
    that cannot be used raises :class:`~deploytrigger.ConfigurationError` naming
    the option, whether it came from an argument or the environment.

    Attributes:
        api_key: a Prefect Cloud API key (sent as ``Bearer``); else ``PREFECT_API_KEY``.
        auth_string: ``user:password`` for a self-hosted server's basic auth;
            else ``PREFECT_API_AUTH_STRING``. Preferred over the API key.
        verify: True, False or a CA bundle path; else ``PREFECT_API_SSL_CERT_FILE``
            and ``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``; else True.
        request_timeout: seconds one HTTP request may take; else
            ``PREFECT_API_REQUEST_TIMEOUT``; else 30.
        max_retries: retries after the first attempt of a transiently failed request;
            else ``PREFECT_CLIENT_MAX_RETRIES``; else as many as ``retry_budget`` allows.
        retry_budget: seconds one request may spend retrying 408, 429, 502, 503 and
            connection failures (from its first attempt; 0: no retries); else
            ``DEPLOYTRIGGER_RETRY_BUDGET``; else 90. Waits never outlast a caller's timeout.
        max_requests_per_minute: a request-rate budget shared by every client of this
            process for the same API URL, adapting to 429s (see the guide "Servers
            and limits"); else ``DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE``; else none.
        events: ``"auto"``, ``"on"`` or ``"off"``: whether waits listen to the
            server's events stream and return the moment a run is final (polling
            stays the safety net); else ``DEPLOYTRIGGER_EVENTS``; else ``"auto"``,
            which listens when the extra ``deploytrigger[events]`` is installed,
            the server offers the stream and no ``sleep`` is injected. ``"off"``
            never opens a websocket. See the guide "Waits that listen".
        progress: ``"auto"``, ``"on"`` or ``"off"``: the default of every wait's
            ``progress`` (a wait's own ``progress=True``/``False`` wins); else
            ``DEPLOYTRIGGER_PROGRESS``; else ``"auto"``: a live view in a Jupyter
            kernel, nothing elsewhere. ``"on"`` also shows a progress line on
            stderr outside a kernel. See the guide "Notebooks and progress".
        pool_size: connections kept open to the server (32); size it for your threads.
        sleep: how to pause between retries and polls, ``sleep(seconds)``
            (``time.sleep``; a test seam).
        clock: a monotonic clock in seconds (``time.monotonic``; a test seam).
        backoff: the pause before a retry the server sets no ``Retry-After`` for,
            given tenacity's retry state (exponential with jitter by default).
        deployment_cache_ttl: seconds a deployment resolved by ``run_deployment``
            is reused (300; one request per steady-state trigger); 0 turns the
            cache off. It is read again after a 404 on create or an unknown parameter.
        outage_tolerance: seconds every wait (``run_deployment``, handles, batch
            waits, log following) polls on through a server that cannot answer
            (connection failures, 5xx, 429 after a poll's retries), so that it
            outlives a restart (300), counted from the start of the first failed
            poll; then the error is raised. See the guide "Reliability, settings
            and security".
        result_reader: ``reader(block, key) -> bytes``, for
            :meth:`~deploytrigger.Client.read_result`: reads a key of a storage
            block other than ``local-file-system`` (S3, GCS, Azure ...) with the
            SDK you use; given a :class:`~deploytrigger.StorageBlock` (its fields,
            secrets masked).
    """

    pool_size: int
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    backoff: Optional[Callable[[tenacity.RetryCallState], float]]
    deployment_cache_ttl: float
    outage_tolerance: float
    result_reader: Optional[ResultReader]


def check_client_options(options: ClientOptions) -> ClientOptions:
    """``options`` with the client's own values checked (text read as numbers).

    The settings among them are left as given: ``resolve_settings`` checks
    them with the same rules, together with the environment's values.

    Raises:
        ConfigurationError: an option whose value cannot be used, named.
    """
    checked: Dict[str, Any] = dict(options)
    for name, value in options.items():
        if name == "pool_size":
            checked[name] = whole_number(value, name)
        elif name in ("deployment_cache_ttl", "outage_tolerance"):
            checked[name] = number(value, name, zero_ok=True)
        elif name in ("sleep", "clock"):
            checked[name] = function(value, name)
        elif name in ("backoff", "result_reader"):
            checked[name] = function(value, name, optional=True)
    return cast(ClientOptions, checked)
