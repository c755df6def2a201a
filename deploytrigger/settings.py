"""Where the client's settings come from, resolved in one place.

Precedence, highest first: explicit arguments, then the environment
(``PREFECT_API_URL``, ``PREFECT_API_KEY``, ``PREFECT_API_AUTH_STRING``,
``PREFECT_API_SSL_CERT_FILE``, ``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``,
``PREFECT_API_REQUEST_TIMEOUT``, ``PREFECT_CLIENT_MAX_RETRIES``), then the active profile in
``$PREFECT_HOME/profiles.toml`` (home ``~/.prefect`` by default; the file can be
moved with ``PREFECT_PROFILES_PATH`` and the profile chosen with
``PREFECT_PROFILE``), then built-in defaults. The profiles file is read only for
a setting that no argument or variable gives. A file that cannot be parsed is a
``ConfigurationError`` when the API URL has to come from it; otherwise it is
skipped with one logged warning. deploytrigger's own settings
(``DEPLOYTRIGGER_RETRY_BUDGET``, ``DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE``,
``DEPLOYTRIGGER_EVENTS``) come
from arguments or the environment only: Prefect's profiles are Prefect's.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypedDict,
    Union,
    cast,
)
from urllib.parse import urlsplit, urlunsplit

from ._helpers.arguments import unexpected_keywords
from ._helpers.profiles import read_profile
from ._helpers.urls import redact_url
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_RETRY_BUDGET",
    "Settings",
    "SettingsOptions",
    "resolve_settings",
]

DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds one HTTP request may take (connecting and reading) unless configured."""

DEFAULT_MAX_RETRIES: Optional[int] = None
"""No limit on the number of retries of a request: its retry budget bounds them."""

DEFAULT_RETRY_BUDGET = 90.0
"""Seconds one request may spend retrying transient failures (Prefect's client: about 62)."""

RETRY_BUDGET_VARIABLE = "DEPLOYTRIGGER_RETRY_BUDGET"
RATE_VARIABLE = "DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE"
EVENTS_VARIABLE = "DEPLOYTRIGGER_EVENTS"
PROGRESS_VARIABLE = "DEPLOYTRIGGER_PROGRESS"

EVENTS_MODES = ("auto", "on", "off")
"""Whether waits listen to the events stream: when possible, insisting (warn once), never."""

PROGRESS_MODES = ("auto", "on", "off")
"""Whether waits show their progress: in a Jupyter kernel, always, never."""

_SETTING_NAMES = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_API_SSL_CERT_FILE",
    "PREFECT_API_TLS_INSECURE_SKIP_VERIFY",
    "PREFECT_API_REQUEST_TIMEOUT",
    "PREFECT_CLIENT_MAX_RETRIES",
)

_HOW_TO_SET_URL = (
    "pass api_url=..., set PREFECT_API_URL (for example http://127.0.0.1:4200/api), "
    "or run `prefect config set PREFECT_API_URL=...` to store it in your Prefect profile"
)

Verify = Union[bool, str]


@dataclass(frozen=True)
class Settings:
    """Resolved client settings. Secrets are kept out of ``repr``.

    Attributes:
        api_url: base URL of the API, ending in ``/api``, without a trailing slash.
        api_key: Prefect Cloud API key, sent as a Bearer token.
        auth_string: ``user:password`` for a self-hosted server's basic auth; preferred
            over ``api_key`` when both are set.
        verify: True to verify TLS with the system CAs, a path to a CA bundle, or False.
        request_timeout: seconds one HTTP request may take.
        max_retries: retries after the first attempt of a transiently failed
            request; None: as many as ``retry_budget`` allows.
        retry_budget: seconds one request may spend retrying (from its first attempt).
        max_requests_per_minute: the request-rate budget shared by every client
            of this process for this API URL; None: no budget.
        events: ``"auto"``, ``"on"`` or ``"off"``: whether waits listen to the
            server's events stream (see the guide "Waits that listen").
        progress: ``"auto"``, ``"on"`` or ``"off"``: whether waits show their
            progress by default (see the guide "Notebooks and progress").
    """

    api_url: str = field(repr=False)
    api_key: Optional[str] = field(default=None, repr=False)
    auth_string: Optional[str] = field(default=None, repr=False)
    verify: Verify = True
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_retries: Optional[int] = DEFAULT_MAX_RETRIES
    retry_budget: float = DEFAULT_RETRY_BUDGET
    max_requests_per_minute: Optional[float] = None
    events: str = "auto"
    progress: str = "auto"

    def __repr__(self) -> str:
        return (
            f"Settings(api_url={redact_url(self.api_url)!r}, verify={self.verify!r}, "
            f"request_timeout={self.request_timeout!r}, max_retries={self.max_retries!r}, "
            f"retry_budget={self.retry_budget!r}, "
            f"max_requests_per_minute={self.max_requests_per_minute!r}, events={self.events!r}, "
            f"progress={self.progress!r})"
        )

    @property
    def authorization(self) -> Optional[str]:
        """The ``Authorization`` header value, or None without credentials."""
        import base64

        if self.auth_string:
            token = base64.b64encode(self.auth_string.encode("utf-8")).decode("ascii")
            return f"Basic {token}"
        if self.api_key:
            return f"Bearer {self.api_key}"
        return None


class SettingsOptions(TypedDict, total=False):
    """The client options that are settings, each overriding the environment and profile.

    :func:`resolve_settings` documents each; :class:`~deploytrigger.Client`
    and :func:`~deploytrigger.configure` take them among their keywords.
    """

    api_key: Optional[str]
    auth_string: Optional[str]
    verify: Optional[Verify]
    request_timeout: Optional[float]
    max_retries: Optional[int]
    retry_budget: Optional[float]
    max_requests_per_minute: Optional[float]
    events: Optional[str]
    progress: Optional[str]


def settings_options(options: Mapping[str, Any]) -> SettingsOptions:
    """The :class:`SettingsOptions` among ``options`` (a client's keywords)."""
    names = SettingsOptions.__annotations__
    return cast(SettingsOptions, {k: v for k, v in options.items() if k in names})


def resolve_settings(
    api_url: Optional[str] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    **options: Unpack[SettingsOptions],
) -> Settings:
    """Merge explicit arguments, the environment and the active Prefect profile.

    Args:
        api_url: overrides ``PREFECT_API_URL``.
        api_key: overrides ``PREFECT_API_KEY``.
        auth_string: overrides ``PREFECT_API_AUTH_STRING``.
        verify: overrides ``PREFECT_API_SSL_CERT_FILE`` and
            ``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``; True, False or a CA bundle path.
        request_timeout: seconds per HTTP request; overrides ``PREFECT_API_REQUEST_TIMEOUT``.
        max_retries: retries per request after the first attempt (0 disables
            retrying); overrides ``PREFECT_CLIENT_MAX_RETRIES``. Unset: no count
            limit, the retry budget bounds retries.
        retry_budget: seconds one request may spend retrying transient failures
            (0 disables retrying); overrides ``DEPLOYTRIGGER_RETRY_BUDGET``; 90 by default.
        max_requests_per_minute: a request-rate budget for every client of this
            process that talks to this API URL; overrides
            ``DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE``; none by default.
        events: ``"auto"`` (listen to the events stream when websocket-client is
            installed and the server offers it), ``"on"`` (the same, with a
            warning when it cannot) or ``"off"`` (never open a websocket);
            overrides ``DEPLOYTRIGGER_EVENTS``; ``"auto"`` by default.
        progress: the default of every wait's ``progress``: ``"auto"`` (a live
            view in a Jupyter kernel, nothing elsewhere), ``"on"`` (also a
            progress line on stderr outside a kernel) or ``"off"``; overrides
            ``DEPLOYTRIGGER_PROGRESS``; ``"auto"`` by default.
        environ: the environment to read; ``os.environ`` by default.

    Returns:
        The resolved settings.

    Raises:
        ConfigurationError: no API URL anywhere, or a setting that cannot be used.
    """
    unexpected_keywords(
        options, ("api_url", "environ", *SettingsOptions.__annotations__), "resolve_settings"
    )
    api_key = options.get("api_key")
    auth_string = options.get("auth_string")
    verify = options.get("verify")
    request_timeout = options.get("request_timeout")
    max_retries = options.get("max_retries")
    env = os.environ if environ is None else environ
    layers = [
        (
            "argument",
            {
                k: v
                for k, v in (
                    ("PREFECT_API_URL", api_url),
                    ("PREFECT_API_KEY", api_key),
                    ("PREFECT_API_AUTH_STRING", auth_string),
                )
                if v is not None
            },
        ),
        ("environment variable", {k: env[k] for k in _SETTING_NAMES if env.get(k, "") != ""}),
    ]
    url_given = any("PREFECT_API_URL" in values for _, values in layers)
    profile: Optional[Dict[str, Any]] = None

    def lookup(name: str) -> Tuple[Optional[Any], str]:
        nonlocal profile
        for source, values in layers:
            if name in values:
                return values[name], f"{source} {name}" if source != "argument" else source
        if profile is None:  # read only for a setting that no argument or variable gives
            profile = read_profile(env, _SETTING_NAMES, required=not url_given)
        if name in profile:
            return profile[name], f"profile {name}"
        return None, ""

    raw_url, url_source = lookup("PREFECT_API_URL")
    if raw_url is None:
        raise ConfigurationError(f"no Prefect API URL is configured: {_HOW_TO_SET_URL}")
    url = normalize_api_url(str(raw_url), url_source)

    key = _credential("api_key", *lookup("PREFECT_API_KEY"))
    auth = _credential("auth_string", *lookup("PREFECT_API_AUTH_STRING"))
    if verify is None:
        verify = _resolve_verify(lookup)
    elif not isinstance(verify, (bool, str)):
        raise refused("verify", "True, False or the path of a CA bundle file", verify)
    elif isinstance(verify, str):
        verify = _check_ca_file(verify, "argument verify")

    if request_timeout is None:
        raw_timeout, timeout_source = lookup("PREFECT_API_REQUEST_TIMEOUT")
        timeout = (
            DEFAULT_REQUEST_TIMEOUT
            if raw_timeout is None
            else number(raw_timeout, "request_timeout", timeout_source)
        )
    else:
        timeout = number(request_timeout, "request_timeout")
    if max_retries is not None:
        max_retries = whole_number(max_retries, "max_retries", zero_ok=True)
    else:
        raw_retries, retries_source = lookup("PREFECT_CLIENT_MAX_RETRIES")
        max_retries = (
            DEFAULT_MAX_RETRIES
            if raw_retries is None
            else whole_number(raw_retries, "max_retries", retries_source, zero_ok=True)
        )
    budget = _own_number(options.get("retry_budget"), "retry_budget", RETRY_BUDGET_VARIABLE, env)
    rate = _own_number(
        options.get("max_requests_per_minute"), "max_requests_per_minute", RATE_VARIABLE, env
    )

    events = _mode("events", EVENTS_MODES, options.get("events"), EVENTS_VARIABLE, env)
    progress = _mode("progress", PROGRESS_MODES, options.get("progress"), PROGRESS_VARIABLE, env)

    return Settings(
        api_url=url,
        api_key=key,
        auth_string=auth,
        verify=verify,
        request_timeout=timeout,
        max_retries=max_retries,
        retry_budget=DEFAULT_RETRY_BUDGET if budget is None else budget,
        max_requests_per_minute=rate,
        events=events,
        progress=progress,
    )


def _mode(
    name: str, modes: Sequence[str], value: Any, variable: str, env: Mapping[str, str]
) -> str:
    """A setting of a few words (``events``): the argument, else ``variable``, else ``"auto"``."""
    source = "argument"
    if value is None:
        value = env.get(variable, "").strip().lower() or "auto"
        source = f"environment variable {variable}"
    if not isinstance(value, str) or value not in modes:
        raise refused(name, f"one of {', '.join(modes)}", value, source)
    return value


def _own_number(value: Any, name: str, variable: str, env: Mapping[str, str]) -> Optional[float]:
    """A deploytrigger setting: the argument, else its environment variable, else None.

    A retry budget may be 0 (no retries); a request rate may not.
    """
    zero_ok = name == "retry_budget"
    if value is not None:
        return number(value, name, zero_ok=zero_ok)
    text = env.get(variable, "").strip()
    if not text:
        return None
    return number(text, name, f"environment variable {variable}", zero_ok=zero_ok)


def normalize_api_url(value: str, source: str = "argument") -> str:
    """Check an API URL and strip trailing slashes; any credentials in it are kept."""
    text = value.strip()
    parts = urlsplit(text)
    shown = redact_url(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"the Prefect API URL {shown!r} (from {source}) must start with http:// or "
            "https:// and name a host, for example http://127.0.0.1:4200/api"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ConfigurationError(
            f"the Prefect API URL {shown!r} (from {source}) has an invalid port"
        ) from None
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"the Prefect API URL {shown!r} (from {source}) must not have a query or fragment"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _credential(name: str, value: Any, source: str) -> Optional[str]:
    """A credential stripped of surrounding white space; never shown in an error."""
    if value is None:
        return None
    if not isinstance(value, str):
        where = "" if source == "argument" else f" (from {source})"
        raise ConfigurationError(f"{name}{where} must be a string, not {type(value).__name__}")
    text = value.strip()
    if any(not (" " <= char <= "~") for char in text):
        raise ConfigurationError(
            f"the credential from {source} contains characters that cannot be sent in an "
            "HTTP header (only printable ASCII is allowed)"
        )
    return text or None


def _resolve_verify(lookup: Any) -> Verify:
    skip, skip_source = lookup("PREFECT_API_TLS_INSECURE_SKIP_VERIFY")
    if skip is not None and _truthy(skip, skip_source):
        return False
    cert_file, cert_source = lookup("PREFECT_API_SSL_CERT_FILE")
    if cert_file:
        return _check_ca_file(str(cert_file), cert_source)
    return True


def _check_ca_file(path: str, source: str) -> str:
    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded):
        raise ConfigurationError(f"the CA bundle {path!r} (from {source}) is not a readable file")
    return expanded


def _truthy(value: Any, source: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise refused("verify", "true or false", value, source)


# -- checking values: one rule per kind of option, whatever the option's source ------------


def refused(name: str, expected: str, value: Any, source: str = "argument") -> ConfigurationError:
    """The error for option ``name`` given ``value`` (from ``source``): what it must be."""
    where = "" if source == "argument" else f" (from {source})"
    return ConfigurationError(f"{name}{where} must be {expected}, not {value!r}")


def number(value: Any, name: str, source: str = "argument", *, zero_ok: bool = False) -> float:
    """``value`` as a finite number > 0 (>= 0 with ``zero_ok``); text is read as one.

    Raises:
        ConfigurationError: ``value`` is no such number (a bool is none).
    """
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = math.nan
    if (
        isinstance(value, bool)
        or not math.isfinite(result)
        or result < 0
        or (result == 0 and not zero_ok)
    ):
        raise refused(name, f"a finite number {'>= 0' if zero_ok else '> 0'}", value, source)
    return result


def whole_number(value: Any, name: str, source: str = "argument", *, zero_ok: bool = False) -> int:
    """``value`` as an int > 0 (>= 0 with ``zero_ok``); text of digits is read as one.

    Raises:
        ConfigurationError: ``value`` is no such number (a bool or 1.0 is none).
    """
    text = value.strip() if isinstance(value, str) else None
    result = int(text) if text is not None and text.isdigit() else value
    if isinstance(result, bool) or not isinstance(result, int) or result < (0 if zero_ok else 1):
        raise refused(name, f"a whole number {'>= 0' if zero_ok else '> 0'}", value, source)
    return result


def function(value: Any, name: str, *, optional: bool = False) -> Any:
    """``value``, a callable (or None when ``optional``).

    Raises:
        ConfigurationError: ``value`` cannot be called.
    """
    if callable(value) or (optional and value is None):
        return value
    raise refused(name, "a function or None" if optional else "a function", value)


_warned_insecure = False


def warn_insecure_once() -> None:
    """Warn, once per process, that TLS verification is off.

    urllib3's own ``InsecureRequestWarning`` (one per request under an "always"
    warnings filter, as in pytest or Jupyter) is silenced: the user chose this.
    """
    global _warned_insecure
    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    if not _warned_insecure:
        _warned_insecure = True
        warnings.warn(
            "TLS certificate verification is disabled (PREFECT_API_TLS_INSECURE_SKIP_VERIFY "
            "or verify=False): the connection to the Prefect API can be intercepted",
            stacklevel=3,
        )
