"""``import deploytrigger`` stays light (the public names are in test_exported_members.py).

The package loads its modules on first use (PEP 562). These tests run a fresh
interpreter each, because this process has long since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import List

HEAVY = ("requests", "urllib3", "tenacity", "dateutil", "asyncio")


def loaded_after(code: str) -> List[str]:
    """The HEAVY modules present in ``sys.modules`` after a fresh interpreter ran ``code``."""
    report = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    script = f"import sys\n{code}\nimport json\n{report}"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: List[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_import_deploytrigger_loads_no_requests_tenacity_dateutil_or_asyncio() -> None:
    assert loaded_after("import deploytrigger") == []


def test_exceptions_are_importable_without_requests() -> None:
    code = (
        "from deploytrigger import DeployTriggerError, APIError, NotFoundError, "
        "FlowRunTimeoutError, TransportError, InvalidArgumentError\n"
        "import deploytrigger.exceptions"
    )
    assert loaded_after(code) == []


def test_models_load_without_dateutil_or_requests() -> None:
    assert loaded_after("from deploytrigger import StateType, FlowRun, State, FINAL_STATES") == []


def test_a_client_that_needs_no_retry_never_loads_tenacity_dateutil_or_asyncio() -> None:
    code = (
        "import responses\n"
        "from deploytrigger import Client\n"
        "with responses.RequestsMock() as mock:\n"
        "    mock.get('http://prefect.test/api/flow_runs/" + RUN_ID + "', json=" + repr(RUN) + ")\n"
        "    with Client('http://prefect.test/api') as client:\n"
        "        client.read_flow_run('" + RUN_ID + "')\n"
    )
    # responses itself may load anything: look only at what deploytrigger adds.
    baseline = set(loaded_after("import responses"))
    assert set(loaded_after(code)) - baseline <= {"requests", "urllib3"}


RUN_ID = "11111111-2222-3333-4444-555555555555"
RUN = {
    "id": RUN_ID,
    "name": "quick-fox",
    "flow_id": "11111111-2222-3333-4444-666666666666",
    "deployment_id": None,
    "state": {"type": "SCHEDULED", "name": "Scheduled", "timestamp": "2026-11-23T21:04:05.123456Z"},
    "created": "2026-11-23T21:04:05.123456Z",
    "expected_start_time": "2026-11-23T21:04:05Z",
}
