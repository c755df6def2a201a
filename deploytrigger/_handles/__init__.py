"""What a caller holds and waits on: run handles, batch waits, a run's logs followed.

Above the services, which they read runs through
(:class:`~deploytrigger._waits.run_reader.RunReader`): nothing here sends a request.
"""
