"""Plain HTTP to the test servers, for setting them up and checking what deploytrigger did.

A SQLite-backed Prefect server answers 503 ("database is busy") when it is
loaded, most of all right after it starts. These sessions retry a 503 (every
method: test set-up writes are upserts, the rest are reads and filters) so the
integration tests are robust, not lucky.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional, Tuple

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# urllib3 1.26 (under the lowest requests we support, in nox's "minimum" session) caps each
# backoff at 120 s and takes no backoff_max; the integration tests run on urllib3 2
_BACKOFF_MAX = {"backoff_max": 8} if "backoff_max" in inspect.signature(Retry).parameters else {}


def server_session(auth: Optional[Tuple[str, str]] = None) -> requests.Session:
    """A session that retries 503s with backoff (about 60 s in all) and sends ``auth``."""
    session = requests.Session()
    session.auth = auth
    retry = Retry(
        total=12, backoff_factor=0.5, status_forcelist=[503], allowed_methods=None, **_BACKOFF_MAX
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


raw = server_session()
"""A shared session for tests against a server without auth."""


def task_runs_of(api_url: str, flow_run_id: Any) -> List[Dict[str, Any]]:
    """Every task run of a flow run, as the server stores them (page by page)."""
    runs: List[Dict[str, Any]] = []
    while True:
        response = raw.post(
            f"{api_url}/task_runs/filter",
            json={
                "task_runs": {"flow_run_id": {"any_": [str(flow_run_id)]}},
                "limit": 200,
                "offset": len(runs),
            },
            timeout=60,
        )
        response.raise_for_status()
        page: List[Dict[str, Any]] = response.json()
        runs.extend(page)
        if len(page) < 200:
            return runs
