"""A role that may not read alembic_version (revision 0011 closes it) is told whom to run as.

The case: a DBA, or a deploy script, runs waha-db as an application role (service_role
on Supabase, or any role that is not the schema's owner). Before, `status` and
`upgrade` ended with the bare refusal "permission denied for table alembic_version".
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from waha_db.database import conninfo


@pytest.fixture
def as_another_role(fresh_database):
    """A database at head, and its URL for a new login role that may use the schema but not read alembic_version."""
    url = fresh_database("head")
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN")
        connection.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    yield url, url.set(username=role)
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        connection.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


@pytest.mark.parametrize("command", [("status",), ("status", "--check"), ("upgrade", "--yes"), ("repair", "--yes")])
def test_a_role_that_may_not_read_alembic_version_is_told_to_run_as_its_owner(waha_db, as_another_role, command):
    owner_url, role_url = as_another_role
    result = waha_db(role_url, *command)
    assert result.exit_code == 1, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith(f"Error: the role {role_url.username} may not read public.alembic_version"), error
    assert f"Run waha-db as {owner_url.username} (the role that upgraded this database)" in error
    assert "permission denied" not in result.output
    assert waha_db(owner_url, "status", "--check").exit_code == 0
