"""A stand-in for a Jupyter kernel's IPython: what the progress views see of one.

``kernel`` puts a fake ``IPython`` in ``sys.modules`` whose ``get_ipython()``
has a kernel and whose ``IPython.display.display`` records what is displayed
and every update of it, so that the notebook view is tested without IPython
installed (nox's unit sessions) and without a kernel. ``no_ipython`` removes
any IPython this process imported, as a plain script has none.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Iterator, List

import pytest


class DisplayHandle:
    """What ``display(..., display_id=True)`` returns: records what it shows, in order."""

    def __init__(self, shown: Any) -> None:
        self.shown: List[Any] = [shown]

    def update(self, obj: Any) -> None:
        self.shown.append(obj)

    def html(self) -> List[str]:
        """Each display and update, as its HTML."""
        return [obj._repr_html_() for obj in self.shown]


class FakeKernel:
    """The displays made in the fake kernel, in order."""

    def __init__(self) -> None:
        self.handles: List[DisplayHandle] = []

    def display(self, obj: Any, *, display_id: bool = False) -> DisplayHandle:
        assert display_id is True, "the live view needs a display handle to update"
        handle = DisplayHandle(obj)
        self.handles.append(handle)
        return handle


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKernel]:
    """This process looks like a Jupyter kernel to deploytrigger."""
    fake = FakeKernel()
    shell = types.SimpleNamespace(kernel=object())
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    display = types.ModuleType("IPython.display")
    display.display = fake.display  # type: ignore[attr-defined]
    ipython.display = display  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    yield fake


@pytest.fixture
def no_ipython(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process has not imported IPython, as a plain script has not."""
    for name in [name for name in sys.modules if name == "IPython" or name.startswith("IPython.")]:
        monkeypatch.delitem(sys.modules, name)
