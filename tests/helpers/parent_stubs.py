"""Ids and the no-ambient-parent fixture shared by the parent and linking tests."""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any, Dict, Iterator, List

import pytest
import responses

import deploytrigger
import deploytrigger._parents.context
import deploytrigger._services.parents
from deploytrigger._parents.context import (
    FLOW_RUN_ID_ENV,
    DynamicKeys,
)
from deploytrigger._services.placeholders import (
    TASK_KEY_PREFIX,
)

API = "http://prefect.test/api"
PARENT = uuid.UUID("11111111-1111-4111-8111-111111111111")
OTHER = uuid.UUID("22222222-2222-4222-8222-222222222222")
TASK_RUN = uuid.UUID("33333333-3333-4333-8333-333333333333")
DEPLOYMENT_ID = uuid.UUID("44444444-4444-4444-8444-444444444444")
FLOW_ID = uuid.UUID("55555555-5555-4555-8555-555555555555")
ADD_KEY = TASK_KEY_PREFIX + "add-add-dep"


@pytest.fixture(autouse=True)
def no_ambient_parent(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PREFECT__FLOW_RUN_ID and no Prefect run context unless a test sets one."""
    monkeypatch.delenv(FLOW_RUN_ID_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "prefect.context", raising=False)
    fresh = DynamicKeys()  # counters from other tests must not leak in
    monkeypatch.setattr(deploytrigger._parents.context, "DYNAMIC_KEYS", fresh)
    monkeypatch.setattr(deploytrigger._services.parents, "DYNAMIC_KEYS", fresh)
    yield


def sent(mock: responses.RequestsMock, method: str, path: str) -> List[Dict[str, Any]]:
    """The JSON bodies of the ``method`` requests to ``API + path``, in order."""
    return [
        json.loads(call.request.body or b"null")
        for call in mock.calls
        if call.request.method == method and call.request.url == API + path
    ]
