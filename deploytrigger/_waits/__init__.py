"""How a wait waits, below the services: the poll engine, the events listener and stream,
and a run's log lines read as it goes.

Nothing here sends a request: runs are read through
:class:`~deploytrigger._waits.run_reader.RunReader`, which the services implement.
"""
