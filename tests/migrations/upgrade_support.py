"""Helpers of the upgrade-path tests: the parts of legacy V1 databases, psql, pg_dump and the `alembic` command.

Legacy databases are built as the wild has them (V1 variants), on a fresh empty
clone; "unchanged" is proven with a snapshot of the whole catalog plus every row of
every user table, taken before and after (tests/support/databases.py: database_state).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.support.databases import pg_dump_schema
from waha_db.checks.legacy import LEGACY_APP_TABLE, LEGACY_V1_ROW, LEGACY_V1_TABLE
from waha_db.database import conninfo

OWNER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"
REPOSITORY = Path(__file__).resolve().parents[2]

# The parts of a legacy V1 database (one copy, in waha_db.checks.legacy): the full
# waha_config table, its row, and the application's campaigns table.
V1_FULL, V1_ROW, CAMPAIGNS = LEGACY_V1_TABLE, LEGACY_V1_ROW, LEGACY_APP_TABLE


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


def schema_dump(cluster, url: sa.URL) -> str:
    """pg_dump --schema-only, normalised for the database name too."""
    return pg_dump_schema(cluster.server.bin_dir / "pg_dump", url).replace(url.database, "DBNAME")


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
