"""The ``fake_prefect`` fixture, as a user's suite gets it through the ``pytest11`` entry point.

Each test writes a user-style test file and runs pytest on it in a
subprocess (pytester), so the entry point, not this suite's conftest, has to
provide the fixture. The subprocess cannot import Prefect: the fixture needs
only deploytrigger and pytest.
"""

import pytest

pytest_plugins = ["pytester"]

NO_PREFECT = '''
import sys


class _NoPrefect:
    """Refuses ``import prefect``: the user's environment has only deploytrigger and pytest."""

    def find_spec(self, name, path=None, target=None):
        if name == "prefect" or name.startswith("prefect."):
            raise ImportError(f"{name} is not installed here")
        return None


sys.meta_path.insert(0, _NoPrefect())
'''

USER_TESTS = """
import os

import pytest

import deploytrigger


def test_nightly_completes(fake_prefect):
    fake_prefect.add_deployment("etl/nightly", parameters={"day": "mon"})
    run = deploytrigger.run_deployment("etl/nightly", timeout=10, poll_interval=0.05)
    assert run.state.is_completed()
    assert run.parameters == {"day": "mon"}
    assert [r.id for r in fake_prefect.runs] == [run.id]


def test_nightly_failure_is_reported(fake_prefect):
    fake_prefect.add_deployment("etl/nightly")
    fake_prefect.set_outcome("etl/nightly", "FAILED", after=0.2, message="disk full")
    run = deploytrigger.run_deployment("etl/nightly", timeout=10, poll_interval=0.05)
    assert run.state.is_failed() and run.state.message == "disk full"


def test_each_test_gets_a_fresh_fake(fake_prefect):
    assert fake_prefect.runs == []
    assert os.environ["PREFECT_API_URL"] == fake_prefect.api_url


def test_prefect_is_not_importable_here():
    with pytest.raises(ImportError):
        import prefect  # noqa: F401


def test_environment_is_restored_after_the_fixture():
    assert os.environ.get("PREFECT_API_URL") == "http://unused.invalid/api"
"""


def test_fixture_comes_from_the_entry_point_and_needs_no_prefect(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://unused.invalid/api")
    pytester.makeconftest(NO_PREFECT)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=5)


def test_fixture_is_absent_when_the_plugin_is_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="def test_x(fake_prefect):\n    pass\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:deploytrigger", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_prefect' not found*"])
