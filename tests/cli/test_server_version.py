"""The server's version: named by `status` and `verify`, and a server older than waha-db supports refused.

No server older than 15 can be had here, so the refusal is proven twice: the pure
decision on the versions users have, and the real path through every entry point on
the session's own server, with the minimum raised above it for the test.
"""

from __future__ import annotations

import json

import pytest
from alembic.util import CommandError

from tests.cli.conftest import server_version, sql
from waha_db import database
from waha_db.database import create_engine
from waha_db.lifecycle import migrate


@pytest.mark.parametrize(
    ("version", "number"),
    [
        ("18.6", 180006),
        ("15.18 (Debian 15.18-0+deb12u1)", 150018),
        ("17beta1", 170000),
        ("14.11", 140011),
        ("9.6.24", 90624),
    ],
)
def test_version_number_reads_a_version_as_the_server_counts_it(version, number):
    assert database.version_number(version) == number


@pytest.mark.parametrize(
    ("number", "version"), [(150000, "15.0"), (160002, "16.2"), (170004, "17.4"), (180006, "18.6")]
)
def test_15_and_later_are_supported(number, version):
    assert database.unsupported_server_reason(number, version) is None


@pytest.mark.parametrize(("number", "version"), [(140011, "14.11"), (130016, "13.16")])
def test_13_and_14_are_refused_as_untested(number, version):
    assert database.unsupported_server_reason(number, version) == (
        f"PostgreSQL {version} is older than waha-db supports: it needs PostgreSQL 15 or later (tested on 15, 16 and 18)"
    )


@pytest.mark.parametrize(("number", "version"), [(120020, "12.20"), (90624, "9.6.24")])
def test_older_than_13_is_refused_and_says_what_is_missing(number, version):
    reason = database.unsupported_server_reason(number, version)
    assert reason.startswith(f"PostgreSQL {version} is older than waha-db supports: it needs PostgreSQL 15 or later")
    assert reason.endswith("before 13, gen_random_uuid(), the default of every id, is not even built in")


def test_the_refusal_says_what_to_do():
    with pytest.raises(database.UnsupportedServer) as refused:
        database.require_supported_version(140011, "14.11")
    assert str(refused.value).endswith(
        "Nothing was done. Upgrade the server to PostgreSQL 15 or later first "
        "(pg_upgrade, or your provider's major-version upgrade), then run waha-db again."
    )


# --- on the session's real server ------------------------------------------------------------------


def test_status_names_the_server_version(waha_db, fresh_database):
    url = fresh_database("head")
    _, version = server_version(url)
    assert f"server: PostgreSQL {version}\n" in waha_db(url, "status").output
    assert json.loads(waha_db(url, "status", "--json").output)["server_version"] == version


def test_verify_on_a_database_url_names_the_server_version(waha_db, fresh_database):
    url = fresh_database("empty")
    _, version = server_version(url)
    result = waha_db(url, "verify")
    assert result.exit_code == 0, result.output
    assert f"(PostgreSQL {version}): 11 passed, 0 failed" in result.output.splitlines()[-1]


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
    assert sql(url, "SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = 'public'::regnamespace") == [(0,)]


def test_plain_alembic_refuses_a_server_too_old_and_changes_nothing(fresh_database, server_too_old):
    """Through migrations/env.py, as `alembic upgrade head` and pytest-alembic run it: one FAILED line."""
    url = fresh_database("empty")
    engine = create_engine(url)
    try:
        with pytest.raises(CommandError, match=server_too_old):
            migrate.upgrade(engine)
    finally:
        engine.dispose()
    assert sql(url, "SELECT to_regclass('public.alembic_version')") == [(None,)]


def test_verify_refuses_throwaway_binaries_too_old_before_starting_them(waha_db, cluster, server_too_old):
    result = waha_db(None, "verify", "--pg-bin", str(cluster.server.bin_dir))
    assert result.exit_code == 1
    assert f"Error: {server_too_old}" in result.output
    assert "Nothing was started. Point --pg-bin or WAHA_DB_PG_BIN at the bin directory of PostgreSQL" in result.output
    assert "[postgres]" not in result.output  # no check ran on a database
