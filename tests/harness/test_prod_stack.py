"""The production stack's options and process bookkeeping (nothing is started here)."""

from __future__ import annotations

import pytest
from conftest import FLOWS_SCRIPT

from harness.prod_stack import BALANCER, REDIS, SERVICES, ProdStack, marker, stop_order


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


def test_processes_stop_workers_first_then_nginx_the_services_the_servers_and_redis() -> None:
    names = [REDIS, "server-1", SERVICES, "prod-worker-1", "server-0", BALANCER, "prod-worker-0"]
    assert sorted(names, key=stop_order) == [
        "prod-worker-1",
        "prod-worker-0",
        BALANCER,
        SERVICES,
        "server-1",
        "server-0",
        REDIS,
    ]
    assert stop_order("server") == stop_order("server-0")


def test_each_process_is_signalled_only_when_its_command_line_holds_its_marker() -> None:
    names = ["server", "server-1", SERVICES, BALANCER, REDIS, "w"]
    assert {name: marker(name) for name in names} == {
        "server": "server start",
        "server-1": "server start",
        SERVICES: "services start",
        BALANCER: "nginx: master",
        REDIS: "redis-server",
        "w": "worker start",
    }
