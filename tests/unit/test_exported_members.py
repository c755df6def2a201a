"""The public names of ``deploytrigger``: exactly these, each resolving to its module's object."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import deploytrigger
import deploytrigger.exceptions

# The public API, pinned: adding or removing a name is a decision, made here.
EXPORTED = [
    "ALL_COMPLETED",
    "FINAL_STATES",
    "FIRST_COMPLETED",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CSRFError",
    "Client",
    "ClientOptions",
    "ConfigurationError",
    "ConnectionFailedError",
    "DeployTriggerError",
    "Deployment",
    "DeploymentNotFoundError",
    "DoneAndNotDone",
    "Flow",
    "FlowRun",
    "FlowRunFailedError",
    "FlowRunHandle",
    "FlowRunNotFoundError",
    "FlowRunTimeoutError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidResponseError",
    "LogRecord",
    "NotFoundError",
    "ParameterRejectedError",
    "ParentAwareThreadPoolExecutor",
    "ParentRun",
    "PermissionDeniedError",
    "PickleRefusedError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResultDecodeError",
    "ResultError",
    "ResultExpiredError",
    "ResultNotPersistedError",
    "ResultNotReadyError",
    "ResultStorageError",
    "ServerError",
    "State",
    "StateType",
    "StorageBlock",
    "TLSError",
    "TransportError",
    "__version__",
    "configure",
    "current_parent",
    "default_client",
    "parent_run",
    "propagate",
    "read_result",
    "reset_default_client",
    "run_deployment",
]


def test_all_is_exactly_the_pinned_public_names() -> None:
    assert sorted(deploytrigger.__all__) == sorted(EXPORTED)


def test_all_is_the_lazy_names_the_exceptions_and_the_version() -> None:
    exceptions = {
        name
        for name, value in vars(deploytrigger.exceptions).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
    }
    assert set(deploytrigger.__all__) == set(deploytrigger._LAZY) | exceptions | {"__version__"}
    assert len(deploytrigger.__all__) == len(set(deploytrigger.__all__))


@pytest.mark.parametrize("name", deploytrigger.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(deploytrigger, name) is not None


def test_public_names_are_the_same_objects_as_in_their_modules() -> None:
    from deploytrigger._parents.executor import ParentAwareThreadPoolExecutor
    from deploytrigger.client import Client
    from deploytrigger.models import FlowRun

    assert deploytrigger.Client is Client
    assert deploytrigger.FlowRun is FlowRun
    assert deploytrigger.ParentAwareThreadPoolExecutor is ParentAwareThreadPoolExecutor


def test_star_import_gives_every_public_name() -> None:
    namespace: dict = {}
    exec("from deploytrigger import *", namespace)
    assert set(deploytrigger.__all__) <= set(namespace)


def test_dir_lists_the_public_names_and_no_helpers() -> None:
    names = dir(deploytrigger)
    assert set(deploytrigger.__all__) <= set(names)
    assert "TYPE_CHECKING" not in names and "Any" not in names


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        deploytrigger.no_such_name  # noqa: B018


def test_type_checkers_see_every_public_name_as_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's ``mypy --strict`` accepts ``from deploytrigger import <each name>``.

    mypy reads only a literal ``__all__`` (and ``+=`` of a module's ``__all__``): a
    computed one would make every name "not explicitly exported".
    """
    mypy_api = pytest.importorskip("mypy.api")
    names = [name for name in EXPORTED if name != "__version__"]
    user = tmp_path / "user_code.py"
    user.write_text(f"from deploytrigger import {', '.join(names)}\n")
    root = Path(deploytrigger.__file__).resolve().parent.parent
    monkeypatch.setenv("MYPYPATH", str(root))
    out, err, status = mypy_api.run(["--strict", "--cache-dir", str(tmp_path / "c"), str(user)])
    assert status == 0, out + err
