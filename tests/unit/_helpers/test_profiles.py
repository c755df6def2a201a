"""Prefect's profiles file: any valid TOML is read, a broken one only matters when needed.

Every test writes its own file under a temporary PREFECT_HOME; settings are
resolved from an explicit ``environ``, so the real ~/.prefect is never read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict

import pytest
from helpers.profiles import environ, home, write_profiles  # noqa: F401 - the fixture: home

from deploytrigger import Client, ConfigurationError
from deploytrigger._helpers.profiles import read_profile
from deploytrigger.settings import resolve_settings

pytestmark = pytest.mark.isolated_environment(home="home", prefect_home=False)

ENV_URL = "http://env.example:4200/api"
PROFILE_URL = "http://profile.example:4200/api"


# -- any valid TOML, on every Python -------------------------------------------------


def test_a_profile_with_arrays_and_inline_tables_is_read(home: Path) -> None:
    write_profiles(
        home,
        'active = "local"\n\n[profiles.local]\n'
        f'PREFECT_API_URL = "{PROFILE_URL}"\n'
        "PREFECT_CLIENT_RETRY_EXTRA_CODES = [418, 429]\n"
        'PREFECT_LOGGING_EXTRA_LOGGERS = [\n  "dask",  # trailing comment\n  "boto3",\n]\n'
        'PREFECT_SERVER_EXTRAS = { host = "0.0.0.0", port = 4200 }\n'
        "PREFECT_API_REQUEST_TIMEOUT = 12\n",
    )

    settings = resolve_settings(environ=environ(home))

    assert settings.api_url == PROFILE_URL
    assert settings.request_timeout == 12.0


def test_dotted_keys_name_nested_tables(home: Path) -> None:
    write_profiles(
        home,
        'active = "local"\n'
        f'profiles.local.PREFECT_API_URL = "{PROFILE_URL}"\n'
        'profiles.local.plugins.PREFECT_API_KEY = "not-the-profile-key"\n'
        "profiles.local.PREFECT_CLIENT_MAX_RETRIES = 4\n",
    )

    settings = resolve_settings(environ=environ(home))

    assert settings.api_url == PROFILE_URL
    assert settings.api_key is None  # profiles.local.plugins is a table of its own
    assert settings.max_retries == 4


def test_dotted_key_inside_a_profile_table_is_not_a_setting_of_the_profile(home: Path) -> None:
    write_profiles(
        home,
        'active = "local"\n[profiles.local]\n'
        f'PREFECT_API_URL = "{PROFILE_URL}"\n'
        'other.PREFECT_API_AUTH_STRING = "someone:else"\n',
    )

    assert resolve_settings(environ=environ(home)).auth_string is None


def test_multi_line_and_escaped_strings_are_read(home: Path) -> None:
    write_profiles(
        home,
        'active = "my cloud"\n'
        '[profiles."my cloud"]\n'
        'PREFECT_API_URL = """\\\n    https://api.prefect.cloud/api/accounts/a/workspaces/w"""\n'
        "PREFECT_API_KEY = '''pnu_0123'''\n"
        'PREFECT_API_AUTH_STRING = "admin:pa\\"ss\\u0021#word"  # a comment\n'
        "PREFECT_API_TLS_INSECURE_SKIP_VERIFY = false\n",
    )

    settings = resolve_settings(environ=environ(home))

    assert settings.api_url == "https://api.prefect.cloud/api/accounts/a/workspaces/w"
    assert settings.api_key == "pnu_0123"
    assert settings.auth_string == 'admin:pa"ss!#word'
    assert settings.verify is True


PREFECT_STYLE_PROFILES = r"""# Prefect profiles
active = "my cloud"

[profiles.ephemeral]
PREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "true"

[profiles.local]
PREFECT_API_URL = "http://127.0.0.1:4200/api"
PREFECT_API_AUTH_STRING = 'admin:pass#word'
PREFECT_API_SSL_CERT_FILE = "C:\\certs\\ca bundle.pem"

[profiles."my cloud"]
PREFECT_API_URL = "https://api.prefect.cloud/api/accounts/a/workspaces/w"  # the workspace
PREFECT_API_KEY = "pnu_0123456789abcdef"
PREFECT_API_REQUEST_TIMEOUT = 60.0
PREFECT_API_TLS_INSECURE_SKIP_VERIFY = false
PREFECT_CLIENT_MAX_RETRIES = 3

[profiles."with.dot"]
PREFECT_API_URL = "http://10.0.0.1:4200/api"
"""
NAMES = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_API_SSL_CERT_FILE",
    "PREFECT_API_TLS_INSECURE_SKIP_VERIFY",
    "PREFECT_API_REQUEST_TIMEOUT",
    "PREFECT_CLIENT_MAX_RETRIES",
)


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (
            "",  # the file's active profile
            {
                "PREFECT_API_URL": "https://api.prefect.cloud/api/accounts/a/workspaces/w",
                "PREFECT_API_KEY": "pnu_0123456789abcdef",
                "PREFECT_API_REQUEST_TIMEOUT": 60.0,
                "PREFECT_API_TLS_INSECURE_SKIP_VERIFY": False,
                "PREFECT_CLIENT_MAX_RETRIES": 3,
            },
        ),
        (
            "local",
            {
                "PREFECT_API_URL": "http://127.0.0.1:4200/api",
                "PREFECT_API_AUTH_STRING": "admin:pass#word",
                "PREFECT_API_SSL_CERT_FILE": "C:\\certs\\ca bundle.pem",
            },
        ),
        ("with.dot", {"PREFECT_API_URL": "http://10.0.0.1:4200/api"}),
        ("ephemeral", {}),  # a setting deploytrigger does not read is left out
    ],
)
def test_a_prefect_written_profiles_file_gives_each_profiles_settings_with_toml_types(
    home: Path, profile: str, expected: Dict[str, object]
) -> None:
    write_profiles(home, PREFECT_STYLE_PROFILES)

    assert read_profile(environ(home, PREFECT_PROFILE=profile), NAMES, required=True) == expected


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ('PREFECT_API_SSL_CERT_FILE = "/home/josé/ca.pem"', "/home/josé/ca.pem"),
        ('PREFECT_API_AUTH_STRING = "admin:pa\\"ss"', 'admin:pa"ss'),
    ],
    ids=["non-ascii", "escaped-quote"],
)
def test_strings_are_decoded(home: Path, line: str, value: str) -> None:
    write_profiles(home, f'active = "local"\n[profiles.local]\n{line}\n')

    assert list(read_profile(environ(home), NAMES, required=True).values()) == [value]


# -- a file that cannot be parsed ----------------------------------------------------

BROKEN = 'active = "local"\n[profiles.local]\nPREFECT_API_URL = \n'


def test_a_broken_file_is_skipped_with_one_warning_when_the_url_is_in_the_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_profiles(home, BROKEN)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.setenv("PREFECT_API_URL", ENV_URL)

    with caplog.at_level(logging.WARNING, logger="deploytrigger"):
        with Client() as client:
            assert client.settings.api_url == ENV_URL
        for _ in range(3):
            assert resolve_settings().api_url == ENV_URL

    (warning,) = [record for record in caplog.records if str(path) in record.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "line 3" in warning.getMessage()


def test_a_broken_file_is_not_needed_when_the_url_is_an_argument(home: Path) -> None:
    write_profiles(home, BROKEN)

    assert resolve_settings(ENV_URL, environ=environ(home)).api_url == ENV_URL


def test_a_broken_file_the_url_must_come_from_is_an_error_naming_file_line_and_fix(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_profiles(home, BROKEN)
    monkeypatch.setenv("PREFECT_HOME", str(home))

    with pytest.raises(ConfigurationError) as info:
        Client()

    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert "api_url=... or PREFECT_API_URL" in message


# -- read once -----------------------------------------------------------------------


def test_the_file_is_parsed_once_for_many_resolves_until_it_changes(home: Path) -> None:
    first = f'active = "local"\n[profiles.local]\nPREFECT_API_URL = "{PROFILE_URL}"\n'
    path = write_profiles(home, first)
    assert resolve_settings(environ=environ(home)).api_url == PROFILE_URL
    written = path.stat()

    # same size and modification time: the file is taken as unchanged, not read again
    path.write_text(first.replace("profile.example", "changed.example"), encoding="utf-8")
    os.utime(path, ns=(written.st_atime_ns, written.st_mtime_ns))
    for _ in range(20):
        assert resolve_settings(environ=environ(home)).api_url == PROFILE_URL

    # a later modification time (prefect config set, prefect profile use): read again
    os.utime(path, ns=(written.st_atime_ns, written.st_mtime_ns + 1_000_000_000))
    assert resolve_settings(environ=environ(home)).api_url == "http://changed.example:4200/api"
