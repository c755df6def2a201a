"""The placeholder body, task-run filter and task keys that link a run to its parent."""

from __future__ import annotations

import pytest
from helpers.parent_stubs import (  # noqa: F401 - the autouse fixture
    ADD_KEY,
    OTHER,
    PARENT,
    TASK_RUN,
    no_ambient_parent,
)

from deploytrigger import ParentRun
from deploytrigger._services.placeholders import (
    TASK_KEY_PREFIX,
    placeholder_payload,
    slugify,
    task_key,
    task_runs_filter,
)

# -- the placeholder body ------------------------------------------------------------------


def test_placeholder_payload_for_a_flow_run_parent() -> None:
    body = placeholder_payload(
        deployment_name="add/add-dep",
        deployment_version="1.0",
        parameter_names=["x", "y"],
        parent=ParentRun(PARENT),
        dynamic_key="5",
        task_run_id=TASK_RUN,
    )
    assert body == {
        "id": str(TASK_RUN),
        "name": "add/add-dep",
        "flow_run_id": str(PARENT),
        "task_key": "prefect.deployments.flow_runs.run_deployment.add-add-dep",
        "dynamic_key": "5",
        "cache_key": None,
        "cache_expiration": None,
        "task_version": "1.0",
        "empirical_policy": {
            "max_retries": 0,
            "retries": 0,
            "retry_delay": 0,
            "retry_delay_seconds": 0.0,
            "retry_jitter_factor": None,
        },
        "tags": [],
        "state": {"type": "PENDING", "name": "Pending"},
        "task_inputs": {"x": [], "y": []},
    }


def test_placeholder_payload_names_a_task_run_parent_in_parents() -> None:
    body = placeholder_payload(
        deployment_name="add/add-dep",
        deployment_version=None,
        parameter_names=[],
        parent=ParentRun(PARENT, TASK_RUN),
        dynamic_key="0",
        task_run_id=OTHER,
    )
    assert body["task_inputs"] == {"__parents__": [{"input_type": "task_run", "id": str(TASK_RUN)}]}
    assert body["task_version"] is None


def test_task_runs_filter_selects_one_flow_runs_task_runs() -> None:
    assert task_runs_filter(str(PARENT), 400) == {
        "task_runs": {"flow_run_id": {"any_": [str(PARENT)]}},
        "sort": "ID_DESC",
        "limit": 200,
        "offset": 400,
    }


SLUG_NAMES = [
    "add/add-dep",
    "My Flow/Prod Deployment",
    "etl_flow/daily_run",
    "UPPER/CASE",
    "  weird--name__/ ..x.. ",
    "it's/o'clock",
    "1,000/2,5",
    "x/y!@#$%^&*()",
    "tab\tname/new\nline",
    "a&amp;b/c&#39;d",
    "caf&eacute;/&#x41;&#66;",
    "Café/Crème brûlée",
    "naïve/résumé",
    "Ünïcödé/dép",
    "ÆØÅ/straße",
    "ŁódŹ/Œuvre",
    "€uro/£ound",
    "A–B/C—D",  # noqa: RUF001
    "ﬁle/½",
    "x²/℃",
]


@pytest.mark.parametrize("name", SLUG_NAMES)
def test_slugify_matches_prefects_slugify(name: str) -> None:
    pytest.importorskip(
        "prefect", reason="needs Prefect itself (harness/requirements/server.txt; on .venv)"
    )
    from prefect.utilities.slugify import slugify as prefect_slugify

    assert slugify(name) == prefect_slugify(name)


def test_task_key_uses_prefects_slugify_for_other_scripts_when_loaded() -> None:
    pytest.importorskip(
        "prefect", reason="needs Prefect itself (harness/requirements/server.txt; on .venv)"
    )
    from prefect.utilities.slugify import slugify as prefect_slugify

    assert task_key("Привет/мир") == TASK_KEY_PREFIX + prefect_slugify("Привет/мир")
    assert task_key("add/add-dep") == ADD_KEY
