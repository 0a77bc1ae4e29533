"""Helpers of the upgrade-path tests: legacy V1 databases, psql and pg_dump, snapshots.

Legacy databases are built as the wild has them (V1 variants), on a fresh empty
clone; "unchanged" is proven with a snapshot of the whole catalog plus every row of
every user table, taken before and after.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import sqlalchemy as sa

from waha_db.checks.legacy import LEGACY_APP_TABLE, LEGACY_V1_ROW, LEGACY_V1_TABLE
from waha_db.database import conninfo, create_engine
from waha_db.lifecycle import migrate
from waha_db.lifecycle.catalog import catalog_snapshot

OWNER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"
REPOSITORY = Path(__file__).resolve().parents[2]

# The parts of a legacy V1 database (one copy, in tests/conftest.py): the full
# waha_config table, its row, and the application's campaigns table.
V1_FULL, V1_ROW, CAMPAIGNS = LEGACY_V1_TABLE, LEGACY_V1_ROW, LEGACY_APP_TABLE


def run_sql(url: sa.URL, sql: str, *params) -> list[tuple]:
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        cursor = connection.execute(sql, params or None)
        return cursor.fetchall() if cursor.description else []


def upgrade(url: sa.URL, revision: str = "head", **settings) -> None:
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, revision, **settings)
    finally:
        engine.dispose()


def downgrade(url: sa.URL, revision: str, **settings) -> None:
    engine = create_engine(url)
    try:
        migrate.downgrade(engine, revision, **settings)
    finally:
        engine.dispose()


def database_state(url: sa.URL) -> dict:
    """The catalog snapshot plus every row of every table outside PostgreSQL's schemas."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            state = {"catalog": catalog_snapshot(connection), "rows": {}}
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


def servers(url: sa.URL) -> list[dict]:
    """waha_servers rows as dicts, timestamps left out (they are now() of each run)."""
    rows = run_sql(
        url,
        "SELECT to_jsonb(s) - 'created_at' - 'updated_at' FROM public.waha_servers AS s ORDER BY id",
    )
    return [row[0] for row in rows]


def psql(cluster, database_url: sa.URL, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """psql -v ON_ERROR_STOP=1 on a database; the completed process (never raises)."""
    return subprocess.run(
        [
            str(cluster.server.bin_dir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo(database_url),
            *args,
        ],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


_DUMP_NOISE = re.compile(r"^\\(un)?restrict \S+$", re.M)


def schema_dump(cluster, url: sa.URL) -> str:
    """pg_dump --schema-only, normalised only for the database name (and pg_dump's random \\restrict key)."""
    done = subprocess.run(
        [str(cluster.server.bin_dir / "pg_dump"), "--schema-only", "-d", conninfo(url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return _DUMP_NOISE.sub("", done.stdout).replace(url.database, "DBNAME")


def _alembic(url: sa.URL, args: tuple[str, ...]) -> dict:
    """The `alembic` command line on `url`, run from the repository (its alembic.ini), as Popen arguments.

    `python -m alembic` of the running interpreter, so the venv's Alembic runs
    whatever the PATH; DATABASE_URL is left out so only `-x database_url` counts.
    """
    return dict(
        args=[sys.executable, "-m", "alembic", "-x", f"database_url={conninfo(url)}", *args],
        cwd=REPOSITORY,
        env={name: value for name, value in os.environ.items() if name != "DATABASE_URL"},
        text=True,
    )


def run_alembic(url: sa.URL, *args: str) -> subprocess.CompletedProcess:
    """`alembic -x database_url=... ARGS` to its end; the completed process (never raises for its exit code)."""
    return subprocess.run(**_alembic(url, args), capture_output=True, timeout=120)


def start_alembic(url: sa.URL, *args: str) -> subprocess.Popen:
    """`alembic -x database_url=... ARGS` started, stdout and stderr together in `stdout`."""
    return subprocess.Popen(**_alembic(url, args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
