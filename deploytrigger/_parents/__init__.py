"""The current parent run: a thread-local stack, and handing it to new threads; sends nothing.

Linking a new run under that parent (the placeholder task run) is a service:
``_services/parents.py`` and ``_services/placeholders.py``.
"""
