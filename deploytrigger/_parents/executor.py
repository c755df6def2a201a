"""A thread pool whose tasks run under the submitter's parent run.

Apart from ``context.py`` so that a script that only triggers runs never loads
``concurrent.futures``.
"""

from __future__ import annotations

from concurrent import futures
from typing import TYPE_CHECKING, Callable, List, TypeVar

from .context import propagate

if TYPE_CHECKING:
    from typing_extensions import ParamSpec

    P = ParamSpec("P")

T = TypeVar("T")


class ParentAwareThreadPoolExecutor(futures.ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run under the submitter's current parent.

    Each ``submit`` (and so each item of ``map``) captures the parent current
    in the submitting thread at that moment; see :func:`~deploytrigger.propagate`.
    """

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> futures.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` under the parent current here and now."""
        return super().submit(propagate(fn), *args, **kwargs)


__all__: List[str] = ["ParentAwareThreadPoolExecutor"]
