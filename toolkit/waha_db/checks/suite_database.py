"""The database the checks of the migrations run on (waha_db.checks.suite), and how they fail."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import sqlalchemy as sa

from waha_db.database import connect_engine, conninfo
from waha_db.lifecycle import catalog, migrate, revisions

# What the checks compare: a catalog snapshot here; a subclass may render schemas another way
# (the tests use pg_dump's text), so the checks only hand schemas back to `Database.differences`.
Schema = Any


class CheckFailed(Exception):
    """A check found a difference; `details` says what, one line each."""

    def __init__(self, summary: str, details: list[str] | None = None) -> None:
        super().__init__(summary)
        self.details = details or []


def waha_tables(connection: sa.Connection) -> list[str]:
    """The WAHA tables of public (every `waha_*` table but the legacy waha_config)."""
    return list(
        connection.exec_driver_sql(
            "SELECT relname FROM pg_catalog.pg_class WHERE relnamespace = 'public'::pg_catalog.regnamespace "
            "AND relkind IN ('r', 'p') AND relname LIKE 'waha\\_%%' AND relname <> 'waha_config' ORDER BY 1"
        ).scalars()
    )


_USER_TABLES = """
    SELECT pg_catalog.quote_ident(schemaname) || '.' || pg_catalog.quote_ident(tablename) FROM pg_catalog.pg_tables
    WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> 'alembic_version' ORDER BY 1
"""


class Database:
    """One database the checks run on.

    `baseline` is its schema when first seen (before any check), `online_head` its
    schema after the online upgrade to head; `owner` converts a legacy waha_config
    it may hold. `schema()` and `differences()` say what a schema is and how two
    compare; a subclass may render schemas another way (the tests use pg_dump).
    """

    def __init__(self, url: sa.URL, label: str = "", *, owner: uuid.UUID | None = None) -> None:
        self.label = label
        self.url = url
        self.owner = owner
        self.engine = connect_engine(url)
        self.baseline = self.schema()
        self.baseline_rows = self.rows()
        self.online_head: Schema = None

    def close(self) -> None:
        self.engine.dispose()

    def schema(self) -> Schema:
        """What the checks compare: the catalog snapshot."""
        return self.catalog()

    def catalog(self) -> catalog.Snapshot:
        """The catalog snapshot, without Alembic's bookkeeping table (which Alembic keeps, empty, at base)."""
        with self.engine.connect() as connection:
            snapshot = catalog.catalog_snapshot(connection)
        return {
            section: items
            if isinstance(items, list)
            else {name: value for name, value in items.items() if not name.startswith("public.alembic_version")}
            for section, items in snapshot.items()
        }

    def differences(self, expected: Schema, actual: Schema, expected_label: str, actual_label: str) -> list[str]:
        return catalog.diff_snapshots(expected, actual, expected_label=expected_label, actual_label=actual_label)

    def rows(self) -> dict[str, list[str]]:
        """Every row of every table outside PostgreSQL's schemas (alembic_version aside), as text, by table."""
        with self.engine.connect() as connection:
            tables = connection.exec_driver_sql(_USER_TABLES).scalars().all()
            return {
                table: sorted(connection.exec_driver_sql(f"SELECT to_jsonb(t)::text FROM {table} AS t").scalars())
                for table in tables
            }

    def run_script(self, script: str) -> None:
        """A SQL script as psql would run it with ON_ERROR_STOP (it holds its own BEGIN/COMMIT), after
        `SET waha.config_owner` when the database has an owner for its legacy waha_config (as docs/UPGRADING.md says)."""
        with psycopg.connect(conninfo(self.url), autocommit=True) as connection:
            if self.owner is not None:
                connection.execute("SELECT pg_catalog.set_config('waha.config_owner', %s, false)", (str(self.owner),))
            connection.execute(script)

    def revision(self) -> str | None:
        with self.engine.connect() as connection:
            return revisions.current_revision(connection)

    def upgrade(self, revision: str = "head") -> None:
        migrate.upgrade(self.engine, revision, owner=self.owner)

    def downgrade(self, revision: str) -> None:
        migrate.downgrade(self.engine, revision)

    def head(self) -> None:
        """At head, with `online_head` recorded."""
        if self.revision() != revisions.head():
            self.upgrade()
        if self.online_head is None:
            self.online_head = self.schema()

    def reset(self) -> None:
        """Back to base: downgrade to base, then drop Alembic's own bookkeeping table."""
        self.downgrade("base")
        with self.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS public.alembic_version")


def new_user(connection: psycopg.Connection) -> uuid.UUID:
    """A new user id; where auth.users exists (Supabase), also a row of it."""
    user_id = uuid.uuid4()
    if relation_exists(connection, "auth.users"):
        connection.execute("INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
    return user_id


def relation_exists(connection: psycopg.Connection, name: str) -> bool:
    """Whether the table (or view...) `name`, schema-qualified, exists."""
    found = connection.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return found is not None and bool(found[0])
