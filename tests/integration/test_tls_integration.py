"""TLS against an HTTPS proxy whose CA and certificate are made in the test (trustme).

The :class:`~harness.proxy.Proxy` serves HTTPS on 127.0.0.1 with a server
certificate signed by a throwaway CA and forwards to the session's server.
"""

from __future__ import annotations

import logging
import ssl
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import pytest
import trustme
from helpers.events_probe import (
    SAFETY_NET,
    TIMEOUT,
    eventually,
    listener_of,
    record_connects,
)
from helpers.relay import Relay

from deploytrigger import Client, StateType, TLSError
from deploytrigger import settings as settings_module
from deploytrigger._waits import events
from harness.proxy import Proxy

pytestmark = pytest.mark.integration

DEPLOYMENT = "add/add-dep"


def make_ca_and_server_cert(directory: Path) -> Tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(paths[0]))
    cert.cert_chain_pems[0].write_to_path(str(paths[1]))
    cert.private_key_pem.write_to_path(str(paths[2]))
    return paths


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path, Path]:
    return make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_proxy(api_url: str, certificates: Tuple[Path, Path, Path]) -> Iterator[Proxy]:
    _, cert_path, key_path = certificates
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    with Proxy(api_url, ssl_context=context) as proxy:
        yield proxy


@pytest.fixture(autouse=True)
def clean_tls_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PREFECT_API_SSL_CERT_FILE", "PREFECT_API_TLS_INSECURE_SKIP_VERIFY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_untrusted_certificate_fails_with_a_clear_tls_error(https_proxy: Proxy) -> None:
    assert https_proxy.api_url.startswith("https://")
    with Client(https_proxy.api_url) as client:
        assert client.settings.verify is True  # on by default
        with pytest.raises(TLSError) as caught:
            client.read_deployment_by_name(DEPLOYMENT)
    message = str(caught.value)
    assert "certificate" in message.lower() and "PREFECT_API_SSL_CERT_FILE" in message
    assert https_proxy.api_url in message
    assert caught.value.attempts == 1  # a certificate problem is not retried
    assert https_proxy.matching() == []  # nothing got past the handshake


def test_https_to_the_plain_http_server_says_so_and_gives_the_http_url(api_url: str) -> None:
    assert api_url.startswith("http://")
    secure = "https://" + api_url[len("http://") :]
    with Client(secure) as client, pytest.raises(TLSError) as caught:
        client.read_deployment_by_name(DEPLOYMENT)
    message = str(caught.value)
    assert message.endswith(f"the server seems to speak plain HTTP, not HTTPS: use {api_url}")
    assert caught.value.attempts == 1
    with Client(api_url) as client:  # the URL it suggests works
        assert client.read_deployment_by_name(DEPLOYMENT).name == "add-dep"


def test_ssl_cert_file_setting_trusts_the_local_ca(
    https_proxy: Proxy,
    certificates: Tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca_path = certificates[0]
    monkeypatch.setenv("PREFECT_API_SSL_CERT_FILE", str(ca_path))
    with Client(https_proxy.api_url) as client:
        assert client.settings.verify == str(ca_path)
        run = client.run_deployment(DEPLOYMENT, timeout=0)
        assert client.read_flow_run(run.id).id == run.id
    with Client(https_proxy.api_url, verify=str(ca_path)) as client:
        assert client.read_deployment_by_name(DEPLOYMENT).name == "add-dep"


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_skip_verify_works_and_warns_once(
    https_proxy: Proxy, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(settings_module, "_warned_insecure", False)
    if how == "environment":
        monkeypatch.setenv("PREFECT_API_TLS_INSECURE_SKIP_VERIFY", "true")
    verify = False if how == "argument" else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            with Client(https_proxy.api_url, verify=verify) as client:
                assert client.settings.verify is False
                for _ in range(2):
                    assert client.read_deployment_by_name(DEPLOYMENT).name == "add-dep"
    shown = [str(w.message) for w in caught]
    assert len(shown) == 1, shown
    assert "verification is disabled" in shown[0]


# -- the events stream over wss (a TLS-terminating TCP relay: the Proxy passes no websockets) ---


@pytest.fixture
def tls_relay(api_url: str, certificates: Tuple[Path, Path, Path]) -> Iterator[Relay]:
    _, cert_path, key_path = certificates
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    relay = Relay(api_url, ssl_context=context)
    yield relay
    relay.close()


def test_the_listener_connects_over_wss_with_the_rest_ca_bundle_and_wakes_the_wait(
    tls_relay: Relay, certificates: Tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca_path = certificates[0]
    connects = record_connects(monkeypatch)
    with Client(tls_relay.api_url, verify=str(ca_path), events="on") as client:
        run = client.run_deployment(
            "sleepy/sleepy-dep",
            parameters={"seconds": 2},
            poll_interval=SAFETY_NET,
            timeout=TIMEOUT,
        )
        listener = listener_of(client)

    assert run.state is not None and run.state.type == StateType.COMPLETED
    assert tls_relay.api_url.startswith("https://")
    assert connects == [events.events_url(tls_relay.api_url)]
    assert connects[0].startswith("wss://") and listener.connections == 1
    assert tls_relay.failed_handshakes == 0


def test_a_stream_whose_certificate_is_not_trusted_falls_back_to_polling(
    tls_relay: Relay,
    certificates: Tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """REST trusts the relay's CA, the listener another CA: the wait polls, one log line.

    The client gives both the same ``verify=``, so the listener alone is handed
    the other CA through ``events.ssl_options`` (what turns ``verify`` into
    websocket-client's ``sslopt``).
    """
    ca_path = certificates[0]
    other_ca = make_ca_and_server_cert(tmp_path)[0]
    original = events.ssl_options

    def other_ca_options(verify: Any, environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
        assert verify == str(ca_path)  # what REST uses
        return original(str(other_ca), environ)

    monkeypatch.setattr(events, "ssl_options", other_ca_options)
    caplog.set_level(logging.DEBUG, logger="deploytrigger")
    with Client(tls_relay.api_url, verify=str(ca_path), events="auto") as client:
        run = client.run_deployment(
            "sleepy/sleepy-dep", parameters={"seconds": 4}, poll_interval=2, timeout=240
        )
        listener = listener_of(client)
        gave_up = eventually(lambda: not listener.listening(), 120)

    assert run.state is not None and run.state.type == StateType.COMPLETED
    assert gave_up and listener.connections == 0
    assert tls_relay.failed_handshakes >= events.ATTEMPTS_BEFORE_FIRST_SUCCESS
    (line,) = [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.INFO and record.getMessage().startswith("events:")
    ]
    assert "could not open the stream (SSLCertVerificationError)" in line
