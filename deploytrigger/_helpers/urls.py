"""API URLs: the one place credentials are taken out of them, and the UI links they give.

Functions over strings; nothing here sends a request. The one setting read
here, ``PREFECT_UI_URL``, is read when a link is made, as Prefect reads it.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)?[^/@]*@")
_CLOUD_API = re.compile(r"^/api/accounts/(?P<account>[^/]+)/workspaces/(?P<workspace>[^/]+)/?$")


@functools.lru_cache(maxsize=64)  # a client's URL, scrubbed for every run it reads
def without_credentials(url: str, mask: str = "") -> str:
    """``url`` with its ``user:password@`` part removed, or replaced by ``mask + "@"``.

    Also handles scheme-less text (``user:pw@host/api``), as found in
    configuration that failed to parse.
    """
    if "@" not in url:
        return url
    return _USERINFO.sub(lambda match: (match.group(1) or "") + (f"{mask}@" if mask else ""), url)


def redact_url(url: str) -> str:
    """``url`` for messages: credentials shown as ``***@``, so a reader knows some were set."""
    return without_credentials(url, "***")


def ui_base_url(
    api_url: Optional[str], environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """The Prefect UI's base URL for an API URL, or None when it cannot be derived.

    ``PREFECT_UI_URL`` in ``environ`` (``os.environ`` by default), when set,
    is the answer whatever the API URL (a UI served elsewhere, behind a proxy).

    ``http://host:port/api`` (a self-hosted server, which serves its UI next to
    the API) gives ``http://host:port``; Prefect Cloud's
    ``https://api.prefect.cloud/api/accounts/A/workspaces/W`` gives
    ``https://app.prefect.cloud/account/A/workspace/W``. Credentials in the URL
    are dropped.
    """
    configured = (os.environ if environ is None else environ).get("PREFECT_UI_URL", "").strip()
    if configured:
        return without_credentials(configured).rstrip("/")
    if not api_url:
        return None
    parts = urlsplit(without_credentials(api_url))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = parts.path.rstrip("/")
    cloud = _CLOUD_API.match(path)
    if cloud and parts.hostname.startswith("api."):
        app_host = "app." + netloc[len("api.") :]
        app_path = f"/account/{cloud['account']}/workspace/{cloud['workspace']}"
        return urlunsplit((parts.scheme, app_host, app_path, "", ""))
    if path.endswith("/api"):
        return urlunsplit((parts.scheme, netloc, path[: -len("/api")], "", ""))
    return None


def ui_url(
    api_url: Optional[str], flow_run_id: Any, environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """The flow run's page in the Prefect UI, or None when the UI cannot be derived.

    ``PREFECT_UI_URL`` (in ``environ``, ``os.environ`` by default) overrides the
    UI derived from ``api_url``.
    """
    base = ui_base_url(api_url, environ)
    return None if base is None else f"{base}/runs/flow-run/{flow_run_id}"
