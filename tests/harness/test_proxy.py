"""The test proxy's path rewriting and rate limit, decided without a network."""

from __future__ import annotations

from harness.proxy import Proxy

UPSTREAM = "http://127.0.0.1:1/api"
CLOUD = "/api/accounts/a/workspaces/w"


def test_paths_below_the_served_api_path_map_to_the_upstream_path() -> None:
    proxy = Proxy(UPSTREAM, api_path=CLOUD)
    try:
        assert proxy.api_url.endswith(CLOUD)
        assert proxy.upstream_path_of(CLOUD + "/flow_runs/x") == "/api/flow_runs/x"
        assert proxy.upstream_path_of(CLOUD + "/csrf-token?client=c") == "/api/csrf-token?client=c"
        assert proxy.upstream_path_of("/api/flow_runs/x") is None
        assert proxy.upstream_path_of(CLOUD + "x/flow_runs") is None
        rule = proxy._decide("GET", "/api/health")
        assert rule is not None and rule.status == 404
        assert proxy.actions() == {"unknown-path": 1}
    finally:
        proxy.stop()


def test_requests_above_the_rate_are_answered_429_and_recorded_as_limited() -> None:
    proxy = Proxy(UPSTREAM, max_per_minute=60, burst=2, retry_after="1")
    try:
        decisions = [proxy._decide("GET", "/api/health") for _ in range(4)]
        assert decisions[:2] == [None, None]
        assert all(rule is not None and rule.status == 429 for rule in decisions[2:])
        assert decisions[2] is not None and decisions[2].headers == {"Retry-After": "1"}
        assert proxy.actions() == {"forward": 2, "limited": 2}
    finally:
        proxy.stop()


def test_the_status_a_request_was_answered_is_recorded_on_its_record() -> None:
    proxy = Proxy(UPSTREAM)
    try:
        proxy._decide("POST", "/api/flows/")
        proxy._answered(403)
        proxy._decide("GET", "/api/health")
        assert [r.status for r in proxy.received] == [403, None]
    finally:
        proxy.stop()
