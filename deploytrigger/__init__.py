"""deploytrigger: start a Prefect deployment from plain synchronous Python, get the run back.

>>> import deploytrigger
>>> run = deploytrigger.run_deployment("etl/nightly", parameters={"day": "2026-11-23"})
>>> run.state.type
<StateType.COMPLETED: 'COMPLETED'>

``import deploytrigger`` is cheap: only the exceptions are loaded with the
package. Every other public name is imported from its module the first time
it is used (PEP 562), so a script pays for ``requests`` and ``tenacity`` when
it makes a :class:`Client`.
"""

from typing import TYPE_CHECKING, Any, Dict, List

from . import exceptions
from ._version import __version__
from .exceptions import *  # noqa: F403  # the exception tree, as listed in exceptions.__all__

if TYPE_CHECKING:
    from ._default_clients import configure, default_client, reset_default_client
    from ._handles.batch import DoneAndNotDone
    from ._handles.handles import FlowRunHandle
    from ._parents.context import (
        ParentRun,
        current_parent,
        parent_run,
        propagate,
    )
    from ._parents.executor import ParentAwareThreadPoolExecutor
    from ._results.results import StorageBlock
    from ._waits.engine import ALL_COMPLETED, FIRST_COMPLETED
    from .api import read_result, run_deployment
    from .client import Client
    from .models import FINAL_STATES, Deployment, Flow, FlowRun, LogRecord, State, StateType
    from .options import ClientOptions

_LAZY: Dict[str, str] = {
    "run_deployment": "api",
    "read_result": "api",
    "configure": "_default_clients",
    "default_client": "_default_clients",
    "reset_default_client": "_default_clients",
    "ALL_COMPLETED": "_waits.engine",
    "FIRST_COMPLETED": "_waits.engine",
    "DoneAndNotDone": "_handles.batch",
    "Client": "client",
    "ClientOptions": "options",
    "ParentAwareThreadPoolExecutor": "_parents.executor",
    "ParentRun": "_parents.context",
    "current_parent": "_parents.context",
    "parent_run": "_parents.context",
    "propagate": "_parents.context",
    "FlowRunHandle": "_handles.handles",
    "LogRecord": "models",
    "FINAL_STATES": "models",
    "Deployment": "models",
    "Flow": "models",
    "FlowRun": "models",
    "State": "models",
    "StateType": "models",
    "StorageBlock": "_results.results",
}
"""The public names loaded on first use -> the module (in this package) that defines each."""


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and keep the name (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    """The public names (loaded or not) and the module's dunders; no helpers."""
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})


__all__ = [
    "ALL_COMPLETED",
    "FINAL_STATES",
    "FIRST_COMPLETED",
    "Client",
    "ClientOptions",
    "Deployment",
    "DoneAndNotDone",
    "Flow",
    "FlowRun",
    "FlowRunHandle",
    "LogRecord",
    "ParentAwareThreadPoolExecutor",
    "ParentRun",
    "State",
    "StateType",
    "StorageBlock",
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
__all__ += exceptions.__all__
"""The public API: ``__version__``, the names of :data:`_LAZY` and the exceptions
(``exceptions.__all__``). Written out, not computed from the table, because type
checkers read only a literal ``__all__`` (and ``+=`` of a module's); a test pins it
and checks it against the table."""
