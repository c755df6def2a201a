"""The Client facade: what it is built from, its repr, the arguments and options it refuses."""

from __future__ import annotations

from typing import Any, Dict

import pytest
import responses
from helpers.bad_options import OUT_OF_RANGE, WRONG_TYPES
from helpers.client_stubs import (  # noqa: F401 - the fixtures: client, fake_time, http
    API,
    BY_ID,
    DEPLOYMENT_ID,
    KEY,
    client,
    fake_time,
    http,
)
from helpers.fake_time import FakeTime
from helpers.server_json import deployment_json

from deploytrigger import (
    Client,
    ClientOptions,
    ConfigurationError,
    InvalidArgumentError,
)

pytestmark = pytest.mark.isolated_environment


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": -1},
        {"poll_interval": -1},
        {"parameters": {"x": float("nan")}},
        {"tags": "nightly"},
        {"scheduled_time": "tomorrow"},
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    client: Client, http: responses.RequestsMock, kwargs: Dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgumentError):
        client.run_deployment("add/add-dep", **kwargs)

    assert len(http.calls) == 0


def test_client_reads_url_and_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, http: responses.RequestsMock
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", API + "/")
    monkeypatch.setenv("PREFECT_API_KEY", KEY)
    http.get(BY_ID, json=deployment_json(shape="api"))

    with Client(max_retries=0) as client:
        client.read_deployment(DEPLOYMENT_ID)

    assert http.calls[0].request.url == BY_ID
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


def test_client_repr_hides_the_key_and_url_credentials(fake_time: FakeTime) -> None:
    with Client("http://admin:URLPASSWORD@prefect.test/api", api_key=KEY) as client:
        shown = repr(client)

    assert KEY not in shown
    assert "URLPASSWORD" not in shown
    assert "prefect.test" in shown


# -- options: each checked, as the environment's values are ------------------------------


@pytest.mark.parametrize("option", sorted(ClientOptions.__annotations__))
def test_every_option_of_a_wrong_type_is_refused_in_one_line_naming_it(option: str) -> None:
    value, message = WRONG_TYPES[option]  # a KeyError: an option without a case

    with pytest.raises(ConfigurationError) as caught:
        Client(API, **{option: value})

    assert str(caught.value) == message


@pytest.mark.parametrize("option", sorted(OUT_OF_RANGE))
def test_an_option_out_of_range_is_refused_in_one_line_naming_it(option: str) -> None:
    value, message = OUT_OF_RANGE[option]

    with pytest.raises(ConfigurationError) as caught:
        Client(API, **{option: value})

    assert str(caught.value) == message


def test_numbers_given_as_text_are_read_as_the_environment_is() -> None:
    with Client(API, pool_size="4", max_retries="3", outage_tolerance=" 60 ") as client:
        assert client.settings.max_retries == 3
        assert client._poller.outage_tolerance == 60.0
