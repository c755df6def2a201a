"""CSRF tokens: asked for only after the server refuses, then sent on every mutating request.

The stub server below behaves as Prefect's CSRF middleware does (observed on
3.8.8): a mutating request without headers gets ``403 Missing CSRF token.``, a
wrong or replaced token ``403 Invalid CSRF token or client identifier.``, and
every ``GET /csrf-token?client=...`` replaces that client's token.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from helpers.fake_time import FakeTime
from helpers.run_stubs import API

from deploytrigger import Client, CSRFError, PermissionDeniedError
from deploytrigger._http.csrf import CLIENT_HEADER, TOKEN_HEADER, CsrfTokens, is_csrf_refusal

pytestmark = pytest.mark.isolated_environment

FLOWS = f"{API}/flows/"
TOKEN_URL = f"{API}/csrf-token"
MISSING = "Missing CSRF token."
INVALID = "Invalid CSRF token or client identifier."


def later(seconds: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)).isoformat()


class CsrfServer:
    """A stub Prefect API with CSRF protection on (or off, with ``enabled=False``)."""

    def __init__(self, http: responses.RequestsMock, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.tokens: Dict[str, str] = {}
        self.fetches: List[str] = []
        self.expires_in = 3600.0
        self.fetch_delay = 0.0
        self.lock = threading.Lock()
        self.mutating: List[Tuple[Optional[str], Optional[str]]] = []
        http.add_callback(responses.GET, TOKEN_URL, callback=self.token)
        http.add_callback(responses.POST, FLOWS, callback=self.create_flow)
        http.add_callback(responses.GET, f"{API}/flows/x", callback=self.read_flow)

    def token(self, request: requests.PreparedRequest) -> Tuple[int, Dict[str, str], str]:
        if not self.enabled:
            return 422, {}, json.dumps({"detail": "CSRF protection is disabled."})
        time.sleep(self.fetch_delay)  # lets other threads pile up behind the fetch
        client = parse_qs(urlsplit(str(request.url)).query)["client"][0]
        with self.lock:
            self.fetches.append(client)
            token = f"token-{len(self.fetches)}"
            self.tokens[client] = token
        body = {"token": token, "client": client, "expiration": later(self.expires_in)}
        return 200, {}, json.dumps(body)

    def create_flow(self, request: requests.PreparedRequest) -> Tuple[int, Dict[str, str], str]:
        token = request.headers.get(TOKEN_HEADER)
        client = request.headers.get(CLIENT_HEADER)
        with self.lock:
            self.mutating.append((token, client))
            expected = self.tokens.get(client or "")
        if self.enabled:
            if token is None:
                return 403, {}, json.dumps({"detail": MISSING})
            if client is None:
                return 403, {}, json.dumps({"detail": "Missing client identifier."})
            if token != expected:
                return 403, {}, json.dumps({"detail": INVALID})
        return 201, {}, json.dumps({"id": "x", "name": "f"})

    def read_flow(self, request: requests.PreparedRequest) -> Tuple[int, Dict[str, str], str]:
        assert TOKEN_HEADER not in request.headers
        return 200, {}, json.dumps({"id": "x", "name": "f"})


@pytest.fixture
def http() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make_client(**kwargs: Any) -> Client:
    fake = FakeTime(1000.0)
    options: Dict[str, Any] = {"sleep": fake.sleep, "clock": fake.clock, "backoff": lambda s: 1.0}
    options.update(kwargs)
    return Client(API, **options)


def create(client: Client) -> Any:
    return client._transport.request("POST", "/flows/", body={"name": "f"})


def test_no_token_is_asked_for_while_the_server_does_not_refuse(http: Any) -> None:
    server = CsrfServer(http, enabled=False)
    with make_client() as client:
        for _ in range(3):
            create(client)

    assert server.fetches == []
    assert len(http.calls) == 3  # one request per call: CSRF costs nothing when off
    assert server.mutating == [(None, None)] * 3


def test_missing_token_fetches_one_resends_and_sends_it_on_every_later_mutation(
    http: Any,
) -> None:
    server = CsrfServer(http)
    with make_client() as client:
        assert create(client)["id"] == "x"
        first_calls = len(http.calls)
        create(client)
        client._transport.request("GET", "/flows/x")  # a read never carries the token
        client_id = client._transport.csrf.client_id

    assert first_calls == 3  # refused, token, sent again
    assert len(http.calls) == 5  # then one request per call
    assert server.fetches == [client_id]
    assert server.mutating == [(None, None), ("token-1", client_id), ("token-1", client_id)]


def test_invalid_token_is_replaced_once_and_the_request_sent_again(http: Any) -> None:
    server = CsrfServer(http)
    with make_client() as client:
        create(client)
        server.tokens[client._transport.csrf.client_id] = "rotated-by-the-server"
        create(client)

    assert len(server.fetches) == 2
    assert [token for token, _ in server.mutating] == [None, "token-1", "token-1", "token-2"]


def test_a_token_about_to_expire_is_replaced_before_it_is_sent(http: Any) -> None:
    server = CsrfServer(http)
    with make_client() as client:
        create(client)
        tokens = client._transport.csrf
        assert tokens._renew_at is not None
        assert dt.timedelta(seconds=3500) < tokens._renew_at - dt.datetime.now(dt.timezone.utc)
        tokens._renew_at = dt.datetime.now(dt.timezone.utc)  # as if an hour had passed
        create(client)
        create(client)

    assert len(server.fetches) == 2
    assert [token for token, _ in server.mutating] == [None, "token-1", "token-2", "token-2"]


def test_sixteen_threads_refused_at_once_cause_one_token_fetch(http: Any) -> None:
    server = CsrfServer(http)
    server.fetch_delay = 0.2
    with make_client(pool_size=16) as client, ThreadPoolExecutor(16) as pool:
        start = threading.Barrier(16)

        def call(_: int) -> Any:
            start.wait()
            return create(client)

        results = list(pool.map(call, range(16)))

    assert [r["id"] for r in results] == ["x"] * 16
    assert len(server.fetches) == 1
    refused = [token for token, _ in server.mutating if token is None]
    assert len(refused) == 16 and len(server.mutating) == 32


def test_a_403_that_is_not_about_csrf_stays_a_permission_error_with_its_hint(
    http: Any,
) -> None:
    http.post(FLOWS, json={"detail": "Not allowed to write flows"}, status=403)
    with make_client() as client, pytest.raises(PermissionDeniedError) as info:
        create(client)

    assert not isinstance(info.value, CSRFError)
    assert "the credentials are not allowed to do this" in str(info.value)
    assert [call.request.method for call in http.calls] == ["POST"]


def test_a_refusal_that_persists_with_a_fresh_token_raises_csrf_error(http: Any) -> None:
    server = CsrfServer(http)
    server.tokens = _AlwaysWrong()
    with make_client() as client, pytest.raises(CSRFError) as info:
        create(client)

    error = info.value
    assert isinstance(error, PermissionDeniedError)
    assert error.status_code == 403 and error.detail == INVALID
    assert "fresh CSRF token" in str(error) and "POST" in str(error)
    assert "credentials are not allowed" not in str(error)
    assert len(server.fetches) == 1  # one fresh token, not a loop of them
    assert error.attempts == 2


def test_a_server_that_refuses_but_issues_no_token_raises_csrf_error(http: Any) -> None:
    http.post(FLOWS, json={"detail": MISSING}, status=403)
    http.get(TOKEN_URL, json={"detail": "CSRF protection is disabled."}, status=422)
    with make_client() as client, pytest.raises(CSRFError, match="issued no token"):
        create(client)

    assert [call.request.method for call in http.calls] == ["POST", "GET"]


def test_protection_turned_off_after_tokens_were_sent_stops_sending_them(http: Any) -> None:
    server = CsrfServer(http)
    with make_client() as client:
        create(client)
        server.enabled = False  # restarted without protection: the token endpoint answers 422
        server.tokens.clear()
        client._transport.csrf._renew_at = dt.datetime.now(dt.timezone.utc)  # due for renewal
        create(client)
        create(client)

    assert server.mutating[-2:] == [(None, None), (None, None)]


class _AlwaysWrong(dict):  # type: ignore[type-arg]
    """Tokens of a server that never accepts one (say, behind a proxy that drops headers)."""

    def get(self, key: Any, default: Any = None) -> Any:
        return "never-this"


def test_is_csrf_refusal_recognises_the_server_details_only_on_403() -> None:
    assert is_csrf_refusal(403, MISSING)
    assert is_csrf_refusal(403, INVALID)
    assert is_csrf_refusal(403, "Missing client identifier.")
    assert not is_csrf_refusal(403, "Forbidden")
    assert not is_csrf_refusal(401, MISSING)
    assert not is_csrf_refusal(403, {"csrf": 1})


def test_tokens_refresh_only_for_the_generation_that_was_refused() -> None:
    answers = iter([{"token": "a", "expiration": None}, {"token": "b", "expiration": None}])
    tokens = CsrfTokens(lambda client: next(answers))

    assert tokens.headers() == (0, {})
    assert tokens.refresh(0) and tokens.refresh(0)  # the second refusal of gen 0: no fetch
    assert tokens.headers() == (1, {TOKEN_HEADER: "a", CLIENT_HEADER: tokens.client_id})
    assert tokens.refresh(1)
    assert tokens.headers()[1][TOKEN_HEADER] == "b"


def test_tokens_renew_by_their_expiration_on_an_injected_clock() -> None:
    now = [dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.timezone.utc)]
    count = [0]

    def fetch(client: str) -> Dict[str, Any]:
        count[0] += 1
        return {"token": f"t{count[0]}", "expiration": "2026-11-24T13:00:00Z"}

    tokens = CsrfTokens(fetch, now=lambda: now[0])
    tokens.refresh(0)
    assert tokens.headers()[1][TOKEN_HEADER] == "t1"
    now[0] = dt.datetime(2026, 11, 24, 12, 59, 0, tzinfo=dt.timezone.utc)
    assert tokens.headers()[1][TOKEN_HEADER] == "t1"
    now[0] = dt.datetime(2026, 11, 24, 12, 59, 45, tzinfo=dt.timezone.utc)  # within 30 s
    assert tokens.headers()[1][TOKEN_HEADER] == "t2"
    assert count[0] == 2
    assert "t2" not in repr(tokens)
