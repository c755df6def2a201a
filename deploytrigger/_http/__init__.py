"""The HTTP layer: one request to the Prefect API, its retries, CSRF and request-rate budget.

It knows nothing of flow runs (a contract in ``.importlinter`` keeps it so)."""
