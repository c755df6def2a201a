"""The production stack's options (nothing is started here)."""

from __future__ import annotations

import pytest
from conftest import FLOWS_SCRIPT

from harness.prod_stack import ProdStack, prefect_redis_settings


def test_a_stack_needs_an_api_server_but_may_have_no_workers() -> None:
    with pytest.raises(ValueError, match="at least one API server, not 0"):
        ProdStack(FLOWS_SCRIPT, api_servers=0)
    with pytest.raises(ValueError, match="workers must be 0 or more, not -1"):
        ProdStack(FLOWS_SCRIPT, workers=-1)
    assert ProdStack(FLOWS_SCRIPT, workers=0, api_servers=2).api_servers == 2


def test_redis_messaging_comes_with_several_api_servers_unless_turned_off() -> None:
    assert ProdStack(FLOWS_SCRIPT, api_servers=2).use_redis
    assert not ProdStack(FLOWS_SCRIPT, api_servers=2, redis=False).use_redis
    assert not ProdStack(FLOWS_SCRIPT, api_servers=1).use_redis


def test_every_process_of_a_stack_gets_prefects_redis_messaging_settings() -> None:
    assert prefect_redis_settings("127.0.0.1", 6390) == {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": "127.0.0.1",
        "PREFECT_REDIS_MESSAGING_PORT": "6390",
        "PREFECT_REDIS_MESSAGING_DB": "0",
    }
