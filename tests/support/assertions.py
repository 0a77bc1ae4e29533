"""How the schema's tests act as Supabase's API does, and how they prove a statement refused changed nothing."""

from __future__ import annotations

import contextlib
import datetime
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.factories import insert_statement

# A timestamp no test runs at: rows inserted with it show whether the database moved it.
PAST = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)

# The SQLSTATEs the refusal tests assert on.
NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"
UNIQUE_VIOLATION = "23505"
CHECK_VIOLATION = "23514"
INSUFFICIENT_PRIVILEGE = "42501"


def row_counts(connection: psycopg.Connection) -> tuple[int, int]:
    """How many rows waha_servers and waha_sessions hold (as the connection's role sees them)."""
    return connection.execute(
        "SELECT (SELECT count(*) FROM public.waha_servers), (SELECT count(*) FROM public.waha_sessions)"
    ).fetchone()


def assert_refused(
    connection: psycopg.Connection,
    statement: str,
    params: Any = None,
    *,
    sqlstate: str,
    constraint: str | None = None,
) -> psycopg.Error:
    """`statement` fails with `sqlstate` (and `constraint`, when given) and changes no row of either table.

    Runs in a savepoint, so the test's transaction goes on afterwards. The row
    counts are read as the caller (`postgres`, or a role SET LOCAL by `acting_as`).
    """
    before = _counts_as_superuser(connection)
    with pytest.raises(psycopg.Error) as caught:
        with connection.transaction():
            connection.execute(statement, params)
    error = caught.value
    assert error.sqlstate == sqlstate, f"expected SQLSTATE {sqlstate}, got {error.sqlstate}: {error}"
    if constraint is not None:
        assert error.diag.constraint_name == constraint, (
            f"expected constraint {constraint}, got {error.diag.constraint_name}: {error}"
        )
    assert _counts_as_superuser(connection) == before, f"rows changed although the statement failed: {statement}"
    return error


def assert_insert_refused(
    connection: psycopg.Connection, table: str, values: dict, *, sqlstate: str, constraint: str | None = None
) -> psycopg.Error:
    """INSERTing the row `values` (column -> value) into `table` is refused as `assert_refused` checks."""
    return assert_refused(
        connection, insert_statement(table, values), list(values.values()), sqlstate=sqlstate, constraint=constraint
    )


def assert_updated_at_is_set_by_the_database(
    connection: psycopg.Connection, table: str, row_id: uuid.UUID, change: str
) -> None:
    """An UPDATE doing `change` and also setting updated_at to the row's past leaves updated_at = now(), created_at alone.

    The row must have been inserted with created_at = updated_at = 2001-01-01 UTC (`PAST`).
    """
    connection.execute(f"UPDATE {table} SET {change}, updated_at = %s WHERE id = %s", (PAST, row_id))
    created_at, updated_at, now = connection.execute(
        f"SELECT created_at, updated_at, now() FROM {table} WHERE id = %s", (row_id,)
    ).fetchone()
    assert (created_at, updated_at) == (PAST, now)


def _counts_as_superuser(connection: psycopg.Connection) -> tuple[int, int]:
    """Row counts of both tables whatever role the transaction has SET LOCAL (row security would hide rows)."""
    with connection.transaction():
        connection.execute("RESET ROLE")
        counts = row_counts(connection)
        raise psycopg.Rollback()  # back to the caller's role
    return counts


@contextlib.contextmanager
def acting_as(
    connection: psycopg.Connection, role: str, user_id: uuid.UUID | None = None, *, legacy_claim: bool = False
) -> Iterator[psycopg.Connection]:
    """The transaction runs as `role` with the JWT `sub` of `user_id`, as Supabase's API does; restored after.

    `legacy_claim` sets the older `request.jwt.claim.sub` instead of `request.jwt.claims`.
    """
    connection.execute(f'SET LOCAL ROLE "{role}"')
    if user_id is not None:
        if legacy_claim:
            connection.execute("SELECT pg_catalog.set_config('request.jwt.claim.sub', %s, true)", (str(user_id),))
        else:
            claims = json.dumps({"sub": str(user_id), "role": role})
            connection.execute("SELECT pg_catalog.set_config('request.jwt.claims', %s, true)", (claims,))
    try:
        yield connection
    finally:
        if connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            connection.execute("RESET ROLE")
            connection.execute("SELECT pg_catalog.set_config('request.jwt.claims', '', true)")
            connection.execute("SELECT pg_catalog.set_config('request.jwt.claim.sub', '', true)")
