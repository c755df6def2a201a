"""What a caller holds and waits on: run handles and batch waits.

Above the services, which they read runs through
(:class:`~deploytrigger._waits.run_reader.RunReader`): nothing here sends a request.
"""
