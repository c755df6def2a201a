"""Where settings come from: arguments > environment > active Prefect profile > defaults.

Every test reads an explicit ``environ`` (or a monkeypatched one) whose
PREFECT_HOME is a temporary directory, so the real ~/.prefect is never read.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import sys
import typing
import warnings
from pathlib import Path

import pytest
from helpers.profiles import environ, home, write_profiles  # noqa: F401 - the fixture: home

import deploytrigger.settings as settings_module
from deploytrigger import Client, ConfigurationError
from deploytrigger.settings import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_BUDGET,
    Settings,
    resolve_settings,
)

pytestmark = pytest.mark.isolated_environment(home="home", prefect_home=False)

ARG_URL = "http://arg.example:4200/api"
ENV_URL = "http://env.example:4200/api"
PROFILE_URL = "http://profile.example:4200/api"


def ca_file(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text("-----BEGIN CERTIFICATE-----\n", encoding="ascii")
    return str(path)


# -- precedence ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwarg", "variable", "attribute", "values"),
    [
        ("api_url", "PREFECT_API_URL", "api_url", (ARG_URL, ENV_URL, PROFILE_URL)),
        ("api_key", "PREFECT_API_KEY", "api_key", ("arg-key", "env-key", "profile-key")),
        (
            "auth_string",
            "PREFECT_API_AUTH_STRING",
            "auth_string",
            ("arg:pw", "env:pw", "profile:pw"),
        ),
        ("request_timeout", "PREFECT_API_REQUEST_TIMEOUT", "request_timeout", (5.0, 7.0, 9.0)),
        ("max_retries", "PREFECT_CLIENT_MAX_RETRIES", "max_retries", (1, 2, 3)),
    ],
)
def test_argument_beats_environment_beats_active_profile(
    home: Path, kwarg: str, variable: str, attribute: str, values: tuple
) -> None:
    arg_value, env_value, profile_value = values
    profile_literal = (
        f'"{profile_value}"' if isinstance(profile_value, str) else repr(profile_value)
    )
    url_line = "" if variable == "PREFECT_API_URL" else f'PREFECT_API_URL = "{PROFILE_URL}"\n'
    write_profiles(
        home,
        f'active = "local"\n\n[profiles.local]\n{url_line}{variable} = {profile_literal}\n',
    )
    env = environ(home, **{variable: str(env_value)})

    from_argument = resolve_settings(**{kwarg: arg_value}, environ=env)
    from_environment = resolve_settings(environ=env)
    from_profile = resolve_settings(environ=environ(home))

    assert getattr(from_argument, attribute) == arg_value
    assert getattr(from_environment, attribute) == env_value
    assert getattr(from_profile, attribute) == profile_value


def test_empty_environment_variable_falls_through_to_the_profile(home: Path) -> None:
    write_profiles(home, f'active = "local"\n[profiles.local]\nPREFECT_API_URL = "{PROFILE_URL}"\n')

    settings = resolve_settings(environ=environ(home, PREFECT_API_URL=""))

    assert settings.api_url == PROFILE_URL


def test_defaults_apply_when_nothing_sets_timeout_retries_or_verify(home: Path) -> None:
    settings = resolve_settings(ARG_URL, environ=environ(home))

    assert settings.request_timeout == DEFAULT_REQUEST_TIMEOUT == 30.0
    assert settings.max_retries is DEFAULT_MAX_RETRIES is None  # the retry budget bounds them
    assert settings.retry_budget == DEFAULT_RETRY_BUDGET == 90.0
    assert settings.max_requests_per_minute is None
    assert settings.verify is True
    assert settings.api_key is None
    assert settings.auth_string is None


# -- profiles ----------------------------------------------------------------------

PROFILES = f"""\
active = "local"

[profiles.ephemeral]
PREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "true"

[profiles.local]
PREFECT_API_URL = "{PROFILE_URL}"

[profiles.cloud]
PREFECT_API_URL = "https://api.prefect.cloud/api/accounts/a/workspaces/w"
PREFECT_API_KEY = "pnu_cloud"
"""


def test_profile_named_by_active_key_is_used(home: Path) -> None:
    write_profiles(home, PROFILES)

    assert resolve_settings(environ=environ(home)).api_url == PROFILE_URL


def test_prefect_profile_variable_overrides_the_active_key(home: Path) -> None:
    write_profiles(home, PROFILES)

    settings = resolve_settings(environ=environ(home, PREFECT_PROFILE="cloud"))

    assert settings.api_url == "https://api.prefect.cloud/api/accounts/a/workspaces/w"
    assert settings.api_key == "pnu_cloud"


def test_prefect_profile_naming_an_undefined_profile_is_a_configuration_error(
    home: Path,
) -> None:
    write_profiles(home, PROFILES)

    with pytest.raises(ConfigurationError, match="nope"):
        resolve_settings(environ=environ(home, PREFECT_PROFILE="nope"))


def test_without_active_key_the_ephemeral_profile_is_used(home: Path) -> None:
    write_profiles(home, f'[profiles.ephemeral]\nPREFECT_API_URL = "{PROFILE_URL}"\n')

    assert resolve_settings(environ=environ(home)).api_url == PROFILE_URL


def test_prefect_profiles_path_moves_the_profiles_file(home: Path, tmp_path: Path) -> None:
    write_profiles(home, 'active = "local"\n[profiles.local]\nPREFECT_API_URL = "http://x/api"\n')
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(
        f'active = "other"\n[profiles.other]\nPREFECT_API_URL = "{PROFILE_URL}"\n', "utf-8"
    )

    settings = resolve_settings(environ=environ(home, PREFECT_PROFILES_PATH=str(elsewhere)))

    assert settings.api_url == PROFILE_URL


def test_profile_settings_for_tls_and_timeout_are_read_with_toml_types(home: Path) -> None:
    write_profiles(
        home,
        f'active = "local"\n[profiles.local]\nPREFECT_API_URL = "{PROFILE_URL}"\n'
        "PREFECT_API_TLS_INSECURE_SKIP_VERIFY = true\nPREFECT_API_REQUEST_TIMEOUT = 12\n",
    )

    settings = resolve_settings(environ=environ(home))

    assert settings.verify is False
    assert settings.request_timeout == 12.0


def test_invalid_profiles_file_is_a_configuration_error_naming_the_file(home: Path) -> None:
    path = write_profiles(home, "[profiles.local\nPREFECT_API_URL = \n")

    with pytest.raises(ConfigurationError, match="profiles"):
        resolve_settings(environ=environ(home))
    with pytest.raises(ConfigurationError) as info:
        resolve_settings(environ=environ(home))
    assert str(path) in str(info.value)


# -- the API URL -----------------------------------------------------------------


def test_no_url_anywhere_raises_configuration_error_saying_how_to_set_it(home: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_settings(environ=environ(home))

    message = str(info.value)
    assert "PREFECT_API_URL" in message
    assert "api_url=" in message
    assert "prefect config set" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "url", ["127.0.0.1:4200/api", "localhost:4200/api", "ftp://host/api", "http:///api"]
)
def test_url_without_http_scheme_or_host_is_rejected(home: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="http://"):
        resolve_settings(url, environ=environ(home))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:4200/api/", "http://127.0.0.1:4200/api"),
        ("  https://h.example/api//  ", "https://h.example/api"),
        ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200/api"),
    ],
)
def test_url_trailing_slashes_and_whitespace_are_stripped(
    home: Path, url: str, expected: str
) -> None:
    assert resolve_settings(url, environ=environ(home)).api_url == expected


@pytest.mark.parametrize("url", ["http://h/api?x=1", "http://h/api#frag"])
def test_url_with_query_or_fragment_is_rejected(home: Path, url: str) -> None:
    with pytest.raises(ConfigurationError, match="query or fragment"):
        resolve_settings(url, environ=environ(home))


def test_url_error_names_the_environment_variable_it_came_from(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="environment variable PREFECT_API_URL"):
        resolve_settings(environ=environ(home, PREFECT_API_URL="not a url"))


def test_url_with_invalid_port_is_rejected(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="port"):
        resolve_settings("http://h:99999/api", environ=environ(home))


def test_scheme_less_url_with_credentials_does_not_leak_the_password(home: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_settings("admin:s3cr3t-pw@h.example:4200/api", environ=environ(home))

    assert "s3cr3t-pw" not in str(info.value)


# -- authentication ----------------------------------------------------------------


def test_auth_string_is_sent_as_basic_and_preferred_over_api_key(home: Path) -> None:
    settings = resolve_settings(
        ARG_URL, api_key="pnu_key", auth_string="user:pass", environ=environ(home)
    )

    expected = "Basic " + base64.b64encode(b"user:pass").decode("ascii")
    assert settings.authorization == expected == "Basic dXNlcjpwYXNz"


def test_api_key_alone_is_sent_as_bearer(home: Path) -> None:
    settings = resolve_settings(
        environ=environ(home, PREFECT_API_URL=ENV_URL, PREFECT_API_KEY="k1")
    )

    assert settings.authorization == "Bearer k1"


def test_no_credentials_means_no_authorization_header(home: Path) -> None:
    assert resolve_settings(ARG_URL, environ=environ(home)).authorization is None


def test_api_key_and_auth_string_are_absent_from_settings_and_client_repr(home: Path) -> None:
    settings = resolve_settings(
        ARG_URL, api_key="pnu_SECRETKEY", auth_string="admin:SECRETPW", environ=environ(home)
    )
    with Client(ARG_URL, api_key="pnu_SECRETKEY", auth_string="admin:SECRETPW") as client:
        shown = repr(settings) + str(settings) + repr(client)

    assert "SECRETKEY" not in shown
    assert "SECRETPW" not in shown
    assert "arg.example" in repr(client)


def test_url_credentials_are_absent_from_client_repr(home: Path) -> None:
    with Client("http://admin:SECRETPW@h.example/api") as client:
        assert "SECRETPW" not in repr(client)


def test_url_credentials_are_absent_from_settings_repr(home: Path) -> None:
    settings = resolve_settings("http://admin:SECRETPW@h.example/api", environ=environ(home))

    assert "SECRETPW" not in repr(settings)


def test_settings_are_a_frozen_dataclass_whose_copies_keep_secrets_out_of_repr(home: Path) -> None:
    settings = resolve_settings(
        "http://admin:SECRETPW@h.example/api", api_key="pnu_SECRETKEY", environ=environ(home)
    )
    names = [f.name for f in dataclasses.fields(Settings)]
    assert names == list(typing.get_type_hints(Settings)) == list(dataclasses.asdict(settings))
    assert names[:3] == ["api_url", "api_key", "auth_string"]
    changed = dataclasses.replace(settings, request_timeout=7.0)
    assert changed.request_timeout == 7.0 and changed.api_key == "pnu_SECRETKEY"
    assert changed != settings and dataclasses.replace(changed, request_timeout=30.0) == settings
    assert "SECRET" not in repr(changed) and "request_timeout=7.0" in repr(changed)
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.api_key = "other"  # type: ignore[misc]


@pytest.mark.skipif(sys.version_info < (3, 13), reason="copy.replace is new in Python 3.13")
def test_copy_replace_makes_a_changed_copy_of_the_settings(home: Path) -> None:
    settings = resolve_settings(ARG_URL, api_key="pnu_SECRETKEY", environ=environ(home))
    changed = copy.replace(settings, retry_budget=5.0)
    assert changed == dataclasses.replace(settings, retry_budget=5.0)
    assert "SECRETKEY" not in repr(changed)


# -- TLS ---------------------------------------------------------------------------


def test_ca_file_from_environment_becomes_the_verify_path(home: Path, tmp_path: Path) -> None:
    path = ca_file(tmp_path, "ca.pem")

    settings = resolve_settings(ARG_URL, environ=environ(home, PREFECT_API_SSL_CERT_FILE=path))

    assert settings.verify == path


def test_verify_argument_beats_environment_ca_file(home: Path, tmp_path: Path) -> None:
    env_path = ca_file(tmp_path, "env.pem")
    arg_path = ca_file(tmp_path, "arg.pem")
    env = environ(home, PREFECT_API_SSL_CERT_FILE=env_path)

    assert resolve_settings(ARG_URL, verify=arg_path, environ=env).verify == arg_path
    assert resolve_settings(ARG_URL, verify=True, environ=env).verify is True


def test_ca_file_from_profile_is_used_when_environment_has_none(home: Path, tmp_path: Path) -> None:
    path = ca_file(tmp_path, "profile.pem")
    write_profiles(
        home,
        f'active = "local"\n[profiles.local]\nPREFECT_API_SSL_CERT_FILE = "{path}"\n',
    )

    assert resolve_settings(ARG_URL, environ=environ(home)).verify == path


@pytest.mark.parametrize("source", ["argument", "environment", "profile"])
def test_ca_file_that_does_not_exist_is_a_configuration_error(
    home: Path, tmp_path: Path, source: str
) -> None:
    missing = str(tmp_path / "missing-ca.pem")
    env = environ(home)
    kwargs = {}
    if source == "argument":
        kwargs["verify"] = missing
    elif source == "environment":
        env["PREFECT_API_SSL_CERT_FILE"] = missing
    else:
        write_profiles(
            home,
            f'active = "local"\n[profiles.local]\nPREFECT_API_SSL_CERT_FILE = "{missing}"\n',
        )

    with pytest.raises(ConfigurationError, match=r"missing-ca\.pem"):
        resolve_settings(ARG_URL, environ=env, **kwargs)


@pytest.mark.parametrize("value", ["true", "True", "1", "yes", "on"])
def test_skip_verify_variable_true_turns_verification_off(home: Path, value: str) -> None:
    env = environ(home, PREFECT_API_TLS_INSECURE_SKIP_VERIFY=value)

    assert resolve_settings(ARG_URL, environ=env).verify is False


def test_skip_verify_wins_over_a_ca_file(home: Path, tmp_path: Path) -> None:
    env = environ(
        home,
        PREFECT_API_TLS_INSECURE_SKIP_VERIFY="true",
        PREFECT_API_SSL_CERT_FILE=ca_file(tmp_path, "ca.pem"),
    )

    assert resolve_settings(ARG_URL, environ=env).verify is False


@pytest.mark.parametrize("value", ["false", "0", "no", "off"])
def test_skip_verify_variable_false_keeps_verification_on(home: Path, value: str) -> None:
    env = environ(home, PREFECT_API_TLS_INSECURE_SKIP_VERIFY=value)

    assert resolve_settings(ARG_URL, environ=env).verify is True


def test_skip_verify_variable_that_is_not_a_boolean_is_a_configuration_error(
    home: Path,
) -> None:
    env = environ(home, PREFECT_API_TLS_INSECURE_SKIP_VERIFY="maybe")

    with pytest.raises(ConfigurationError, match="PREFECT_API_TLS_INSECURE_SKIP_VERIFY"):
        resolve_settings(ARG_URL, environ=env)


def test_verify_argument_of_wrong_type_is_a_configuration_error(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="verify"):
        resolve_settings(ARG_URL, verify=1.5, environ=environ(home))  # type: ignore[arg-type]


def test_client_warns_once_per_process_when_verification_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settings_module, "_warned_insecure", False)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Client(ARG_URL).close()
        Client(ARG_URL, verify=False).close()
        Client(ARG_URL, verify=False).close()

    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "verification is disabled" in messages[0]


def test_client_reads_skip_verify_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "_warned_insecure", True)
    monkeypatch.setenv("PREFECT_API_URL", ENV_URL)
    monkeypatch.setenv("PREFECT_API_TLS_INSECURE_SKIP_VERIFY", "true")

    with Client() as client:
        assert client.settings.verify is False
        assert client.settings.api_url == ENV_URL


# -- timeouts and retries ------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf"])
def test_request_timeout_must_be_a_positive_finite_number(home: Path, value: str) -> None:
    env = environ(home, PREFECT_API_REQUEST_TIMEOUT=value)

    with pytest.raises(ConfigurationError, match="PREFECT_API_REQUEST_TIMEOUT"):
        resolve_settings(ARG_URL, environ=env)


def test_a_bad_value_from_the_environment_is_refused_as_the_argument_is_naming_the_variable(
    home: Path,
) -> None:
    env = environ(home, PREFECT_API_REQUEST_TIMEOUT="soon")

    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(ARG_URL, environ=env)

    assert str(caught.value) == (
        "request_timeout (from environment variable PREFECT_API_REQUEST_TIMEOUT) "
        "must be a finite number > 0, not 'soon'"
    )


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), True])
def test_request_timeout_argument_must_be_a_positive_finite_number(
    home: Path, value: float
) -> None:
    with pytest.raises(ConfigurationError, match="request_timeout"):
        resolve_settings(ARG_URL, request_timeout=value, environ=environ(home))


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_max_retries_must_be_a_whole_number_at_least_zero(home: Path, value: int) -> None:
    with pytest.raises(ConfigurationError, match="max_retries"):
        resolve_settings(ARG_URL, max_retries=value, environ=environ(home))


def test_max_retries_zero_is_accepted(home: Path) -> None:
    assert resolve_settings(ARG_URL, max_retries=0, environ=environ(home)).max_retries == 0


@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_max_retries_from_the_environment_must_be_a_whole_number(home: Path, value: str) -> None:
    env = environ(home, PREFECT_CLIENT_MAX_RETRIES=value)

    with pytest.raises(ConfigurationError, match="PREFECT_CLIENT_MAX_RETRIES"):
        resolve_settings(ARG_URL, environ=env)


# -- retry budget and request-rate budget ---------------------------------------------------


@pytest.mark.parametrize(
    ("kwarg", "variable", "arg_value", "env_value"),
    [
        ("retry_budget", "DEPLOYTRIGGER_RETRY_BUDGET", 20.0, "45"),
        ("max_requests_per_minute", "DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE", 600.0, "1200"),
    ],
)
def test_deploytrigger_settings_come_from_the_argument_then_the_environment(
    home: Path, kwarg: str, variable: str, arg_value: float, env_value: str
) -> None:
    env = environ(home, **{variable: env_value})
    write_profiles(home, f'active = "local"\n[profiles.local]\n{variable} = "7"\n')

    assert getattr(resolve_settings(ARG_URL, **{kwarg: arg_value}, environ=env), kwarg) == arg_value
    assert getattr(resolve_settings(ARG_URL, environ=env), kwarg) == float(env_value)
    # Prefect's profile is Prefect's: deploytrigger's own settings are not read from it
    assert getattr(resolve_settings(ARG_URL, environ=environ(home)), kwarg) in (
        DEFAULT_RETRY_BUDGET,
        None,
    )


def test_retry_budget_zero_is_accepted_a_rate_of_zero_is_not(home: Path) -> None:
    assert resolve_settings(ARG_URL, retry_budget=0, environ=environ(home)).retry_budget == 0
    with pytest.raises(ConfigurationError, match="max_requests_per_minute"):
        resolve_settings(ARG_URL, max_requests_per_minute=0, environ=environ(home))


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_a_bad_budget_in_the_environment_names_the_variable(home: Path, value: str) -> None:
    for variable in ("DEPLOYTRIGGER_RETRY_BUDGET", "DEPLOYTRIGGER_MAX_REQUESTS_PER_MINUTE"):
        with pytest.raises(ConfigurationError, match=variable):
            resolve_settings(ARG_URL, environ=environ(home, **{variable: value}))


def test_a_boolean_budget_argument_is_refused(home: Path) -> None:
    with pytest.raises(ConfigurationError, match="retry_budget"):
        resolve_settings(ARG_URL, retry_budget=True, environ=environ(home))


def test_settings_repr_shows_the_budgets(home: Path) -> None:
    settings = resolve_settings(
        ARG_URL, retry_budget=12, max_requests_per_minute=300, environ=environ(home)
    )
    assert "retry_budget=12.0" in repr(settings)
    assert "max_requests_per_minute=300.0" in repr(settings)
