"""A server older than waha-db supports is refused by every entry point, before anything is read or changed.

No server older than 15 can be had here: the pure decision is tested in
tests/test_database.py, and here the real path runs on the session's own server,
with the minimum raised above it for the test.
"""

from __future__ import annotations

import pytest
from alembic.util import CommandError

from tests.support.databases import run_sql, server_version
from waha_db import database
from waha_db.database import create_engine
from waha_db.lifecycle import migrate


@pytest.fixture
def server_too_old(monkeypatch, fresh_database):
    """The minimum raised to the major version after the running server's: what an old server meets."""
    number, version = server_version(fresh_database("empty"))
    minimum = (number // 10000 + 1) * 10000
    monkeypatch.setattr(database, "MINIMUM_SERVER_VERSION", minimum)
    return f"PostgreSQL {version} is older than waha-db supports: it needs PostgreSQL {minimum // 10000} or later"


@pytest.mark.parametrize(
    "command", [["status"], ["status", "--check"], ["upgrade", "--yes"], ["adopt", "--yes"], ["verify"]]
)
def test_every_command_on_a_database_refuses_a_server_too_old_before_anything(
    waha_db, fresh_database, server_too_old, command
):
    url = fresh_database("empty")
    result = waha_db(url, *command)
    assert result.exit_code == 1
    assert f"Error: {server_too_old}" in result.output
    assert "Nothing was done. Upgrade the server to PostgreSQL" in result.output
    assert run_sql(url, "SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = 'public'::regnamespace") == [
        (0,)
    ]


def test_plain_alembic_refuses_a_server_too_old_and_changes_nothing(fresh_database, server_too_old):
    """Through migrations/env.py, as `alembic upgrade head` and pytest-alembic run it: one FAILED line."""
    url = fresh_database("empty")
    engine = create_engine(url)
    try:
        with pytest.raises(CommandError, match=server_too_old):
            migrate.upgrade(engine)
    finally:
        engine.dispose()
    assert run_sql(url, "SELECT to_regclass('public.alembic_version')") == [(None,)]


def test_verify_refuses_throwaway_binaries_too_old_before_starting_them(waha_db, cluster, server_too_old):
    result = waha_db(None, "verify", "--pg-bin", str(cluster.server.bin_dir))
    assert result.exit_code == 1
    assert f"Error: {server_too_old}" in result.output
    assert "Nothing was started. Point --pg-bin or WAHA_DB_PG_BIN at the bin directory of PostgreSQL" in result.output
    assert "[postgres]" not in result.output  # no check ran on a database
