"""Deployments over a stubbed Prefect API: look-up by name or id, not found, the cache."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from typing import Any

import pytest
import responses
from helpers.client_stubs import (  # noqa: F401 - the fixtures: client, fake_time, http
    API,
    BY_ID,
    BY_NAME,
    CREATE,
    DEPLOYMENT_ID,
    RUN_ID,
    VALIDATION_DETAIL,
    assert_deploytrigger_error,
    calls_to,
    client,
    fake_time,
    http,
    make_client,
    sent_json,
    stub_deployment_and_create,
)
from helpers.fake_time import FakeTime
from helpers.server_json import FLOW_ID, deployment_json, flow_run_json

from deploytrigger import (
    Client,
    DeploymentNotFoundError,
    InvalidArgumentError,
    ParameterRejectedError,
)

pytestmark = pytest.mark.isolated_environment


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("my flow/my dep", "my%20flow/my%20dep"),
        ("données/dép", "donn%C3%A9es/d%C3%A9p"),
        ("etl?x/a#b", "etl%3Fx/a%23b"),
    ],
)
def test_deployment_name_parts_are_url_quoted(
    client: Client, http: responses.RequestsMock, name: str, path: str
) -> None:
    url = f"{API}/deployments/name/{path}"
    http.get(url, json=deployment_json(shape="api"))
    http.post(CREATE, json=flow_run_json(shape="api"), status=201)

    client.run_deployment(name, timeout=0)

    assert http.calls[0].request.method == "GET"
    assert http.calls[0].request.url == url


@pytest.mark.parametrize("name", [DEPLOYMENT_ID, str(DEPLOYMENT_ID)])
def test_run_by_id_reads_the_deployment_by_id(
    client: Client, http: responses.RequestsMock, name: Any
) -> None:
    http.get(BY_ID, json=deployment_json(shape="api"))
    http.post(CREATE, json=flow_run_json(shape="api"), status=201)

    run = client.run_deployment(name, timeout=0)

    assert [(c.request.method, c.request.url) for c in http.calls] == [
        ("GET", BY_ID),
        ("POST", CREATE),
    ]
    assert run.id == RUN_ID


def test_bad_deployment_name_is_refused_before_any_request(
    client: Client, http: responses.RequestsMock
) -> None:
    with pytest.raises(InvalidArgumentError, match="flow name/deployment name"):
        client.run_deployment("a/b/c", timeout=0)

    assert len(http.calls) == 0


def test_unknown_parameter_name_is_refused_before_the_run_is_created(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    with pytest.raises(ParameterRejectedError) as info:
        client.run_deployment("add/add-dep", parameters={"zz": 1}, timeout=0)

    assert info.value.parameter == "zz"
    assert calls_to(http, "POST", CREATE) == []


def test_404_on_a_deployment_name_raises_deployment_not_found_naming_it(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment("add/add-dep", timeout=0)

    error = info.value
    assert_deploytrigger_error(error, DeploymentNotFoundError)
    assert isinstance(error, LookupError)
    assert "'add/add-dep'" in str(error)
    assert error.deployment == "add/add-dep"
    assert error.close_names == ()
    # The 404, then the look-up of close names (unanswered here, so none offered).
    assert [c.request.url for c in http.calls] == [BY_NAME, FILTER_DEPLOYMENTS]


FILTER_DEPLOYMENTS = f"{API}/deployments/filter"
FILTER_FLOWS = f"{API}/flows/filter"
OTHER_FLOW_ID = uuid.UUID("7e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b")


def stub_close_names(http: responses.RequestsMock) -> None:
    """A server with add/add-dep, add/add-dev and echo/echo-dep, and no deployment add/ad-dep."""
    http.get(
        f"{API}/deployments/name/add/ad-dep", json={"detail": "Deployment not found"}, status=404
    )
    http.post(
        FILTER_DEPLOYMENTS,
        json=[
            deployment_json(shape="api"),
            deployment_json(shape="api", deployment_id=uuid.uuid4(), name="add-dev"),
            deployment_json(
                shape="api", deployment_id=uuid.uuid4(), flow_id=OTHER_FLOW_ID, name="echo-dep"
            ),
        ],
    )
    http.post(
        FILTER_FLOWS,
        json=[{"id": str(FLOW_ID), "name": "add"}, {"id": str(OTHER_FLOW_ID), "name": "echo"}],
    )


def test_404_on_a_deployment_name_offers_the_closest_names_in_the_error(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_close_names(http)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment("add/ad-dep", timeout=0)

    error = info.value
    assert_deploytrigger_error(error, DeploymentNotFoundError)
    assert error.close_names == ("add/add-dep", "add/add-dev")
    assert str(error).startswith("deployment 'add/ad-dep' was not found (GET ")
    assert str(error).endswith("answered 404); did you mean 'add/add-dep' or 'add/add-dev'?")
    assert error.status_code == 404 and error.deployment == "add/ad-dep"
    assert [(c.request.method, c.request.url) for c in http.calls] == [
        ("GET", f"{API}/deployments/name/add/ad-dep"),
        ("POST", FILTER_DEPLOYMENTS),
        ("POST", FILTER_FLOWS),
    ]
    assert sent_json(http.calls[1]) == {"sort": "NAME_ASC", "limit": 200}
    assert sent_json(http.calls[2]) == {
        "flows": {"id": {"any_": sorted([str(FLOW_ID), str(OTHER_FLOW_ID)])}},
        "limit": 200,
    }


def test_a_deployment_that_exists_costs_no_look_up_of_close_names(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_close_names(http)
    stub_deployment_and_create(http)

    client.run_deployment("add/add-dep", timeout=0)

    assert [c.request.url for c in http.calls] == [BY_NAME, CREATE]


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 503, "json": {"detail": "busy"}},
        {"status": 200, "json": {"not": "a list"}},
        {"status": 200, "json": [{"id": "no flow_id"}]},
    ],
    ids=["server error", "not a list", "malformed deployment"],
)
def test_a_failed_look_up_of_close_names_raises_the_plain_error_at_once(
    client: Client, http: responses.RequestsMock, failure: Any
) -> None:
    http.get(
        f"{API}/deployments/name/add/ad-dep", json={"detail": "Deployment not found"}, status=404
    )
    http.post(FILTER_DEPLOYMENTS, **failure)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment("add/ad-dep", timeout=0)

    assert info.value.close_names == ()
    assert str(info.value).endswith("answered 404)")
    assert len(calls_to(http, "POST", FILTER_DEPLOYMENTS)) == 1  # not retried (max_retries=3)


def test_a_failed_look_up_of_the_flows_names_raises_the_plain_error(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_close_names(http)
    http.replace(responses.POST, FILTER_FLOWS, status=502)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment("add/ad-dep", timeout=0)

    assert info.value.close_names == ()
    assert len(calls_to(http, "POST", FILTER_FLOWS)) == 1


def test_no_close_name_leaves_the_message_as_it_was(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_close_names(http)
    http.get(f"{API}/deployments/name/zzz/qqq", json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment("zzz/qqq", timeout=0)

    assert info.value.close_names == ()
    assert "did you mean" not in str(info.value)


def test_404_on_a_deployment_id_raises_deployment_not_found_naming_it(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_ID, json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment(DEPLOYMENT_ID, timeout=0)

    assert str(DEPLOYMENT_ID) in str(info.value)
    assert info.value.deployment == str(DEPLOYMENT_ID)
    assert info.value.close_names == ()
    assert len(http.calls) == 1  # an id has no close names: nothing is looked up


def test_404_on_create_raises_deployment_not_found_with_the_deployment_asked_for(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json(shape="api"))
    http.post(CREATE, json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError) as info:
        client.run_deployment("add/add-dep", timeout=0)

    assert_deploytrigger_error(info.value, DeploymentNotFoundError)
    assert "'add/add-dep'" in str(info.value)
    assert info.value.deployment == "add/add-dep"


def test_409_validation_failure_raises_parameter_rejected_naming_the_parameter(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json(shape="api"))
    http.post(CREATE, json={"detail": VALIDATION_DETAIL}, status=409)

    with pytest.raises(ParameterRejectedError) as info:
        client.run_deployment("add/add-dep", parameters={"x": "abc"}, timeout=0)

    error = info.value
    assert_deploytrigger_error(error, ParameterRejectedError)
    assert isinstance(error, ValueError)
    assert error.parameter == "x"
    assert error.status_code == 409
    assert "is not of type 'integer'" in str(error)
    assert "'add/add-dep'" in str(error)


OTHER_DEPLOYMENT_ID = uuid.UUID("7e1f0a2b-3c4d-4e5f-8a6b-9c0d1e2f3a4b")


OTHER_CREATE = f"{API}/deployments/{OTHER_DEPLOYMENT_ID}/create_flow_run"


def test_steady_state_trigger_costs_one_request(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)

    for _ in range(3):
        client.run_deployment("add/add-dep", parameters={"x": 1}, timeout=0)

    assert [c.request.method for c in http.calls] == ["GET", "POST", "POST", "POST"]


def test_threads_missing_the_cache_at_once_share_one_read_of_the_deployment(
    client: Client, http: responses.RequestsMock
) -> None:
    def slow_read(request: Any) -> Any:
        time.sleep(0.3)  # long enough for every thread to miss the cache meanwhile
        return 200, {}, json.dumps(deployment_json(shape="api"))

    http.add_callback(responses.GET, BY_NAME, callback=slow_read)
    http.post(CREATE, json=flow_run_json(shape="api"), status=201)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        runs = list(pool.map(lambda _: client.run_deployment("add/add-dep", timeout=0), range(16)))

    assert len(runs) == 16
    assert len(calls_to(http, "GET", BY_NAME)) == 1
    assert len(calls_to(http, "POST", CREATE)) == 16


def test_a_failed_shared_read_is_not_reused_by_the_threads_that_waited_for_it(
    client: Client, http: responses.RequestsMock
) -> None:
    answers = iter([(404, {}, json.dumps({"detail": "Deployment not found"}))])

    def read(request: Any) -> Any:
        time.sleep(0.2)
        return next(answers, (200, {}, json.dumps(deployment_json(shape="api"))))

    http.add_callback(responses.GET, BY_NAME, callback=read)
    http.post(CREATE, json=flow_run_json(shape="api"), status=201)

    def trigger(_: int) -> str:
        try:
            client.run_deployment("add/add-dep", timeout=0)
        except DeploymentNotFoundError:
            return "not found"
        return "created"

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = sorted(pool.map(trigger, range(4)))

    assert outcomes == ["created", "created", "created", "not found"]
    assert len(calls_to(http, "GET", BY_NAME)) == 2


def test_cache_off_reads_the_deployment_for_every_trigger(
    fake_time: FakeTime, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    with make_client(fake_time, deployment_cache_ttl=0) as uncached:
        uncached.run_deployment("add/add-dep", timeout=0)
        uncached.run_deployment("add/add-dep", timeout=0)
    assert [c.request.method for c in http.calls] == ["GET", "POST", "GET", "POST"]


def test_cached_deployment_expires_after_its_ttl(
    fake_time: FakeTime, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    with make_client(fake_time, deployment_cache_ttl=60) as client:
        client.run_deployment("add/add-dep", timeout=0)
        fake_time.now += 61
        client.run_deployment("add/add-dep", timeout=0)
    assert len(calls_to(http, "GET", BY_NAME)) == 2


def test_deployment_recreated_under_the_same_name_is_resolved_again_on_404(
    client: Client, http: responses.RequestsMock
) -> None:
    http.get(BY_NAME, json=deployment_json(shape="api"))
    http.post(CREATE, json=flow_run_json(shape="api"), status=201)
    client.run_deployment("add/add-dep", timeout=0)

    # Deleted and re-created: the old id answers 404, the name now has a new id.
    http.replace(responses.POST, CREATE, json={"detail": "Deployment not found"}, status=404)
    http.replace(
        responses.GET, BY_NAME, json=deployment_json(shape="api", id=str(OTHER_DEPLOYMENT_ID))
    )
    http.post(
        OTHER_CREATE,
        json=flow_run_json(shape="api", deployment_id=str(OTHER_DEPLOYMENT_ID)),
        status=201,
    )

    run = client.run_deployment("add/add-dep", idempotency_key="same-key", timeout=0)

    assert run.deployment_id == OTHER_DEPLOYMENT_ID
    assert [(c.request.method, c.request.url) for c in http.calls[2:]] == [
        ("POST", CREATE),
        ("GET", BY_NAME),
        ("POST", OTHER_CREATE),
    ]
    assert sent_json(http.calls[2])["idempotency_key"] == "same-key"
    assert sent_json(http.calls[4])["idempotency_key"] == "same-key"


def test_deployment_deleted_for_good_raises_not_found_after_one_fresh_lookup(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    client.run_deployment("add/add-dep", timeout=0)
    http.replace(responses.POST, CREATE, json={"detail": "Deployment not found"}, status=404)
    http.replace(responses.GET, BY_NAME, json={"detail": "Deployment not found"}, status=404)

    with pytest.raises(DeploymentNotFoundError, match="'add/add-dep'"):
        client.run_deployment("add/add-dep", timeout=0)
    # The create's 404, one fresh read, then the look-up of close names (unanswered here).
    assert [c.request.url for c in http.calls[2:]] == [CREATE, BY_NAME, FILTER_DEPLOYMENTS]


def test_parameter_new_to_a_cached_deployment_is_checked_against_a_fresh_read(
    client: Client, http: responses.RequestsMock
) -> None:
    stub_deployment_and_create(http)
    client.run_deployment("add/add-dep", parameters={"x": 1}, timeout=0)
    schema = deployment_json(shape="api")["parameter_openapi_schema"]
    schema["properties"]["z"] = {"title": "z", "position": 2, "type": "integer"}
    http.replace(
        responses.GET, BY_NAME, json=deployment_json(shape="api", parameter_openapi_schema=schema)
    )

    client.run_deployment("add/add-dep", parameters={"z": 3}, timeout=0)

    assert [c.request.method for c in http.calls] == ["GET", "POST", "GET", "POST"]
    assert sent_json(http.calls[3])["parameters"] == {"z": 3}
