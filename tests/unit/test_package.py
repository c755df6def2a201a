"""``import deploytrigger`` stays light (the public names are in test_exported_members.py).

The package loads its modules on first use (PEP 562). These tests run a fresh
interpreter each, because this process has long since imported everything.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

from deploytrigger.testing import FakePrefect

HEAVY = ("requests", "urllib3", "tenacity", "dateutil", "asyncio")


def loaded_after(
    code: str, modules: Sequence[str] = HEAVY, env: Optional[Dict[str, str]] = None
) -> List[str]:
    """The ``modules`` present in ``sys.modules`` after a fresh interpreter ran ``code``."""
    report = f"print(json.dumps([m for m in {tuple(modules)!r} if m in sys.modules]))"
    script = f"import sys\n{code}\nimport json\n{report}"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
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


def test_a_client_that_reads_a_run_sent_as_prefect_sends_it_never_loads_dateutil() -> None:
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
    assert set(loaded_after(code)) - baseline <= {"requests", "urllib3", "tenacity", "asyncio"}


# What a first trigger (resolve the name, create the run, no wait) has no use for.
NOT_FOR_A_FIRST_TRIGGER = (
    "deploytrigger._handles.handles",
    "deploytrigger._handles.batch",
    "websocket",  # the events listener's module loads with a client; its websocket, on a wait
    "deploytrigger._waits.logs",
    "deploytrigger._results.results",
    "deploytrigger._services.placeholders",
    "deploytrigger._parents.executor",
    "deploytrigger._progress.view",
    "deploytrigger._progress.notebook",
    "deploytrigger._progress.terminal",
)


def test_a_first_trigger_loads_no_handles_websocket_logs_results_or_linking() -> None:
    # A module renamed or moved must be renamed here too, not pass unnoticed.
    assert [name for name in NOT_FOR_A_FIRST_TRIGGER if not importlib.util.find_spec(name)] == []
    modules = (*NOT_FOR_A_FIRST_TRIGGER, "deploytrigger.models")
    # The runtime dependencies may load some (tenacity: asyncio): look only at what
    # deploytrigger adds.
    baseline = set(loaded_after("import requests, tenacity\nrequests.Session()", modules))
    with FakePrefect(set_environment=False) as api:
        api.add_deployment("add/add-dep")
        env = {**os.environ, "PREFECT_API_URL": api.api_url}
        code = "import deploytrigger\ndeploytrigger.run_deployment('add/add-dep', timeout=0)"
        loaded = loaded_after(code, modules, env)
    # The models did load: the trigger ran and parsed its answer.
    assert [name for name in loaded if name not in baseline] == ["deploytrigger.models"]


def test_a_wait_in_a_script_loads_no_opentelemetry_no_ipython_and_no_progress_view() -> None:
    modules = (
        "opentelemetry",
        "opentelemetry.trace",
        "IPython",
        "deploytrigger._progress.notebook",
        "deploytrigger._progress.terminal",
    )
    with FakePrefect(set_environment=False) as api:
        api.add_deployment("add/add-dep")
        env = {**os.environ, "PREFECT_API_URL": api.api_url}
        code = (
            "import deploytrigger\n"
            "run = deploytrigger.run_deployment('add/add-dep', timeout=30, poll_interval=0)\n"
            "assert run.is_final(), run.state\n"
            "assert 'deploytrigger._progress.view' in sys.modules  # it did wait\n"
        )
        assert loaded_after(code, modules, env) == []


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
