"""The database `waha-db bench` runs on, and the options it runs with: checked before anything is written.

The benchmark fills its database with a million servers of made-up users, so a
database it is given must be as empty as `verify` wants one (the same check:
nothing in schema public), and everything that can be known wrong beforehand (a
table too small for the measured users, no pgbench, more clients than the server
accepts, an auth.users that the made-up users are not in) is refused before the
migrations run. Afterwards, whatever happened, the database is taken back to
empty: the benchmark's rows, the migrations' objects and alembic_version go; the
roles authenticated and service_role, if the migrations created them, stay (roles
are never dropped), as after `verify`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from waha_db.checks.pgtemp import find_server_binaries
from waha_db.checks.verify import contents_of_public
from waha_db.database import connect_engine, create_engine, display_url
from waha_db.errors import UserError
from waha_db.lifecycle import migrate


class BenchError(UserError):
    """The benchmark could not run; the message says what to do."""


def check_table_sizes(table_servers: tuple[int, ...], user_servers: tuple[int, ...]) -> None:
    """BenchError unless every table holds the measured users' servers (the rest are 5-server users)."""
    needed = sum(user_servers)
    too_small = sorted(servers for servers in table_servers if servers < needed)
    if too_small:
        sizes = ", ".join(f"{servers:,}" for servers in too_small)
        raise BenchError(
            f"a table of {sizes} servers cannot hold the measured users' {needed:,} servers; "
            f"give tables of at least {needed:,} servers"
        )


def check_options(
    *,
    table_servers: tuple[int, ...],
    user_servers: tuple[int, ...],
    counts: dict[str, int | float | tuple[int, ...]],
) -> None:
    """BenchError for the first option that cannot work; nothing is touched (pure)."""
    if not table_servers or not user_servers:
        raise BenchError("give at least one table size and one measured user")
    for name, value in {"table sizes": table_servers, "measured users' servers": user_servers, **counts}.items():
        values = value if isinstance(value, tuple) else (value,)
        if not values or any(item < 1 for item in values):
            raise BenchError(f"the benchmark's {name} must be 1 or more, not {value}")
    check_table_sizes(table_servers, user_servers)


def pgbench() -> str:
    """The pgbench program: on PATH, else beside the PostgreSQL server binaries."""
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        candidate: Path | None = find_server_binaries() / "pgbench"
    except UserError:
        candidate = None
    if candidate and candidate.is_file():
        return str(candidate)
    raise BenchError(
        "pgbench was not found on PATH or next to the PostgreSQL server binaries; install postgresql-client (it ships pgbench)"
    )


_CONNECTIONS = """
SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int,
       to_regclass('auth.users') IS NOT NULL
"""


def refuse_unless_empty(url: sa.URL, *, clients: int) -> None:
    """BenchError unless the database at `url` is empty as verify wants it and accepts `clients` connections more."""
    engine = connect_engine(url)
    try:
        with engine.connect() as connection:
            found = contents_of_public(connection)
            accepted, has_auth_users = connection.exec_driver_sql(_CONNECTIONS).one()
    finally:
        engine.dispose()
    if found:
        raise BenchError(
            f"{display_url(url)} is not empty (schema public holds {', '.join(found)}): the benchmark fills the "
            "database it runs on with a million servers; give it an empty database (CREATE DATABASE waha_bench), "
            "or no --database-url to use a throwaway PostgreSQL"
        )
    if has_auth_users:
        raise BenchError(
            f"{display_url(url)} has auth.users (Supabase), and the benchmark's servers belong to made-up users "
            "that are not in it; run the benchmark on a plain PostgreSQL database, or without --database-url"
        )
    if clients > accepted:
        raise BenchError(
            f"{display_url(url)} accepts {accepted} connections (max_connections less the superuser's reserve), "
            f"and the benchmark opens {clients} at once; raise max_connections or run it without --database-url"
        )


@contextmanager
def migrated_then_emptied(url: sa.URL) -> Iterator[None]:
    """The database at head for the benchmark, then back to empty (rows, objects, alembic_version), even on failure."""
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, "head")
        try:
            yield
        finally:
            with engine.begin() as connection:
                # Emptied first, so the downgrade has no rows to carry (the legacy conversion's, say). CASCADE
                # reaches every table that refers to the servers: all the migrations' own, the database
                # having held nothing else.
                connection.exec_driver_sql("TRUNCATE public.waha_servers CASCADE")
            migrate.downgrade(engine, "base")
            with engine.begin() as connection:
                connection.exec_driver_sql("DROP TABLE IF EXISTS public.alembic_version")
    finally:
        engine.dispose()
