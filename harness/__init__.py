"""The project's own test and benchmark tooling: never packaged, never installed.

Real local Prefect servers (``local_server``), their processes run by mirakuru
(``processes``), a counting and fault-injecting proxy (``proxy``), nginx as the
load balancer (``nginx``), PostgreSQL (``postgres``), the production-shaped stack
with Redis from pytest-redis (``prod_stack``) and server environments of other Prefect versions
(``server_venv``). Tests, benchmarks, examples and the demo import it from the
repository root; what users import for their own tests is
``deploytrigger.testing``.
"""
