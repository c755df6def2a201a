"""Waiting for runs: the poll engine, handles, batches and log following.

Nothing here sends a request: runs are read through
:class:`~deploytrigger._waits.run_reader.RunReader`.
"""
