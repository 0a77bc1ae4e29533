"""Fixtures for the behaviour of the V2.1 schema: a transaction rolled back after each test.

Cloning a database costs ~0.2 s; most schema tests only need a clean slate,
which a rolled-back transaction gives for ~5 ms. ``tx`` is a psycopg connection
inside a transaction on a database of each V2.1 kind (fresh plain, fresh
Supabase, upgraded legacy), cloned once per test session and left unchanged by
every test: whatever a test writes, or SETs LOCAL (roles, JWT claims), is
rolled back at its end.

Inside ``tx``, ``with tx.transaction():`` is a savepoint, so a test can let a
statement fail and go on.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from waha_db.database import conninfo

V21_KINDS = ("head", "supabase_head", "legacy_head")

# A timestamp no test runs at: rows inserted with it show whether the database moved it.
PAST = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)

# The SQLSTATEs the refusal tests assert on.
NOT_NULL_VIOLATION = "23502"
FOREIGN_KEY_VIOLATION = "23503"
UNIQUE_VIOLATION = "23505"
CHECK_VIOLATION = "23514"
INSUFFICIENT_PRIVILEGE = "42501"


@pytest.fixture(scope="session")
def shared_v21_databases(cluster):
    """One clone per V2.1 kind for the whole session; tests only ever roll back in them."""
    created: dict[str, str] = {}

    def database(kind: str) -> str:
        if kind not in created:
            created[kind] = cluster.clone(kind)
        return created[kind]

    yield database
    for name in created.values():
        cluster.server.drop_database(name)


@pytest.fixture(params=V21_KINDS)
def tx(request, cluster, shared_v21_databases) -> Iterator[psycopg.Connection]:
    """A connection (as the superuser `postgres`) in a transaction rolled back after the test."""
    name = shared_v21_databases(request.param)
    with psycopg.connect(conninfo(cluster.url(name))) as connection:
        # The first statement opens the transaction, so later transaction() blocks are savepoints.
        opened_in = connection.execute("SELECT pg_catalog.txid_current()").fetchone()[0]
        yield connection
        if connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
            still_in = connection.execute("SELECT pg_catalog.txid_current()").fetchone()[0]
            assert still_in == opened_in, (
                "the test committed its transaction: it must leave the shared database as it found it"
            )
        connection.rollback()


@pytest.fixture
def tx_kind(request, tx) -> str:
    """The kind of database `tx` is on: head, supabase_head or legacy_head."""
    return request.node.callspec.params["tx"]


def has_auth_users(connection: psycopg.Connection) -> bool:
    return connection.execute("SELECT pg_catalog.to_regclass('auth.users') IS NOT NULL").fetchone()[0]


@pytest.fixture
def add_user(tx):
    """A factory of user ids; where auth.users exists (Supabase) they are rows of it too."""

    def make() -> uuid.UUID:
        user_id = uuid.uuid4()
        if has_auth_users(tx):
            tx.execute("INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
        return user_id

    return make


def insert_statement(table: str, values: dict) -> str:
    """INSERT INTO `table` naming the columns of `values` (column -> value), one placeholder each."""
    names = ", ".join(values)
    placeholders = ", ".join(["%s"] * len(values))
    return f"INSERT INTO {table} ({names}) VALUES ({placeholders})"


def insert_row(connection: psycopg.Connection, table: str, values: dict) -> uuid.UUID:
    """INSERT one row of `values` (column -> value) into `table`; its id."""
    return connection.execute(insert_statement(table, values) + " RETURNING id", list(values.values())).fetchone()[0]


def add_server(connection: psycopg.Connection, user_id: uuid.UUID, name: str = "alpha", **columns) -> uuid.UUID:
    """A waha_servers row with a unique URL; `columns` override any other column."""
    values = {"user_id": user_id, "nome": name, "api_url": f"https://{name}-{uuid.uuid4().hex[:8]}.waha.example"}
    return insert_row(connection, "public.waha_servers", {**values, **columns})


def add_session(
    connection: psycopg.Connection, user_id: uuid.UUID, server_id: uuid.UUID, name: str = "loja-01", **columns
) -> uuid.UUID:
    values = {"user_id": user_id, "waha_server_id": server_id, "session_name": name}
    return insert_row(connection, "public.waha_sessions", {**values, **columns})


def row_counts(connection: psycopg.Connection) -> tuple[int, int]:
    return connection.execute(
        "SELECT (SELECT count(*) FROM public.waha_servers), (SELECT count(*) FROM public.waha_sessions)"
    ).fetchone()


def assert_refused(
    connection: psycopg.Connection,
    statement: str,
    params=None,
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
):
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
