"""What the tests do to a whole database: run a statement on it, migrate it, read its revision, snapshot it.

Every helper takes where to act as its first argument, a `Target`: a psycopg connection (a
test's transaction, `tx`), a SQLAlchemy Engine or Connection (what the fleet's code is
given), or a URL (a database the CLI under test reads too: each statement commits).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from waha_db.database import conninfo, create_engine
from waha_db.lifecycle import migrate
from waha_db.lifecycle.catalog import catalog_snapshot

Target = psycopg.Connection | sa.Engine | sa.Connection | sa.URL | str

# A login role that must authenticate with a password (tests/fixtures/databases.py: `password_role`).
PASSWORD_ROLE = "waha_cli_password_user"
PASSWORD = "correct-horse-battery-staple"


def run_sql(target: Target, statement: str, parameters: Sequence[Any] | None = None) -> list[tuple]:
    """Run one statement (or several, without parameters); its rows, empty for a command.

    On a URL it runs in autocommit; on a connection, in that connection's transaction; on
    an Engine, in a transaction of its own that commits.
    """
    if isinstance(target, psycopg.Connection):
        cursor = target.execute(statement, parameters)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
    if isinstance(target, sa.Connection):
        # The driver is always handed parameters here, so a statement without any has its % escaped.
        if not parameters:
            statement = statement.replace("%", "%%")
        result = target.exec_driver_sql(statement, tuple(parameters) if parameters else None)
        return [tuple(row) for row in result] if result.returns_rows else []
    if isinstance(target, sa.Engine):
        with target.begin() as connection:
            return run_sql(connection, statement, parameters)
    with psycopg.connect(conninfo(target), autocommit=True) as connection:
        return run_sql(connection, statement, parameters)


def has_auth_users(target: Target) -> bool:
    """Whether Supabase's auth.users exists there (a Supabase-like database)."""
    return bool(run_sql(target, "SELECT pg_catalog.to_regclass('auth.users') IS NOT NULL")[0][0])


def upgrade(url: sa.URL, revision: str = "head", **settings: Any) -> None:
    """`waha-db upgrade` as the library runs it (settings: owner, lock_timeout...)."""
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, revision, **settings)
    finally:
        engine.dispose()


def downgrade(url: sa.URL, revision: str, **settings: Any) -> None:
    engine = create_engine(url)
    try:
        migrate.downgrade(engine, revision, **settings)
    finally:
        engine.dispose()


def recorded_revisions(target: Target) -> list[str]:
    """What alembic_version holds (read as the superuser): empty where it is empty or missing."""
    if run_sql(target, "SELECT pg_catalog.to_regclass('public.alembic_version')")[0][0] is None:
        return []
    return [row[0] for row in run_sql(target, "SELECT version_num FROM public.alembic_version")]


def revision_of(target: Target) -> str | None:
    """The database's revision; None where alembic_version is missing or empty."""
    recorded = recorded_revisions(target)
    return recorded[0] if recorded else None


def server_version(target: Target) -> tuple[int, str]:
    """The server's own word: (server_version_num, server_version without a distribution's suffix)."""
    ((number, text),) = run_sql(
        target, "SELECT current_setting('server_version_num')::int, current_setting('server_version')"
    )
    return number, text.split()[0]


def database_state(url: sa.URL) -> dict:
    """The catalog snapshot plus every row of every table outside PostgreSQL's schemas, and the roles."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            state: dict = {"catalog": catalog_snapshot(connection), "rows": {}}
            tables = (
                connection.exec_driver_sql(
                    "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_catalog.pg_tables "
                    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
                )
                .scalars()
                .all()
            )
            for table in tables:
                state["rows"][table] = sorted(
                    str(row)
                    for row in connection.exec_driver_sql(f"SELECT to_jsonb(t)::text FROM {table} AS t").scalars()
                )
            state["roles"] = sorted(connection.exec_driver_sql("SELECT rolname FROM pg_catalog.pg_roles").scalars())
            return state
    finally:
        engine.dispose()


def servers(target: Target) -> list[dict]:
    """waha_servers rows as dicts, timestamps left out (they are now() of each run)."""
    rows = run_sql(
        target,
        "SELECT to_jsonb(s) - 'created_at' - 'updated_at' FROM public.waha_servers AS s ORDER BY id",
    )
    return [row[0] for row in rows]


def stored_health(target: Target, server_id: Any) -> tuple | None:
    """A server's waha_server_health row: (consecutive_failures, last_error, cooling down, ever succeeded)."""
    rows = run_sql(
        target,
        "SELECT consecutive_failures, last_error, cooldown_until IS NOT NULL, last_success_at IS NOT NULL"
        " FROM public.waha_server_health WHERE server_id = %s",
        (server_id,),
    )
    return rows[0] if rows else None


# Newer pg_dump releases wrap the dump in \restrict lines holding a random key.
_DUMP_NOISE = re.compile(r"^\\(un)?restrict \S+$", re.M)


def pg_dump_schema(pg_dump: Path | str, url: sa.URL, *options: str) -> str:
    """`pg_dump --schema-only` of the database (`options` added), its random \\restrict key left out."""
    done = subprocess.run(
        [str(pg_dump), "--schema-only", *options, "-d", conninfo(url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return _DUMP_NOISE.sub("", done.stdout)
