"""The real-server harness itself: the server is up and has every deployment the tests use."""

import pytest
from conftest import DEPLOYMENT_NAMES
from helpers.server_http import raw

from harness.local_server import LocalPrefect


@pytest.mark.integration
def test_local_server_is_healthy_and_has_all_deployments(
    prefect: LocalPrefect, pooled_deployment: str
) -> None:
    health = raw.get(f"{prefect.api_url}/health", auth=prefect.auth, timeout=10)
    assert health.json() is True

    for name in (*DEPLOYMENT_NAMES, pooled_deployment):
        response = raw.get(
            f"{prefect.api_url}/deployments/name/{name}", auth=prefect.auth, timeout=10
        )
        assert response.status_code == 200, (name, response.text)
        assert response.json()["name"] == name.split("/")[1]
