"""Fixtures of the fleet's tests: the rolled-back-transaction fixtures of the schema tests.

Each test on the SQL side runs on every V2.1 kind (fresh plain, fresh Supabase,
upgraded legacy) inside a transaction rolled back at its end. The fake WAHA servers
and the network jail are the whole suite's (tests/conftest.py).
"""

from tests.sql.conftest import add_user, shared_v21_databases, tx  # noqa: F401
