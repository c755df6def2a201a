"""How a wait waits, below the services: the poll engine, the events listener and stream.

Nothing here sends a request: runs are read through
:class:`~deploytrigger._waits.run_reader.RunReader`, which the services implement.
"""
