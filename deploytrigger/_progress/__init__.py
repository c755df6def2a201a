"""What a wait shows while it waits: a live view in a notebook, a line in a terminal.

The waits (``_services/runs.py``, ``_handles/``) hand each poll's runs to a
:class:`~deploytrigger._progress.view.Progress`; it renders them, never reads
them: a view sends no request. ``view`` chooses the view, ``notebook`` and
``terminal`` render a :class:`~deploytrigger._progress.snapshot.Snapshot`.
"""
