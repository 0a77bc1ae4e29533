"""Fixtures of the CLI tests: run `waha-db` in-process with click's CliRunner against
databases of the session's throwaway PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from waha_db import cli
from waha_db.checks.legacy import LEGACY_V1_SQL
from waha_db.database import conninfo

PASSWORD_ROLE = "waha_cli_password_user"
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def no_database_url_in_environment(monkeypatch):
    """The tests say which database they use; a DATABASE_URL of the developer's shell must not leak in."""
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.fixture
def waha_db():
    """``waha_db(url, *args, input=None)``: run the CLI with --database-url (None: without); the click Result."""
    runner = CliRunner()

    def run(url: sa.URL | str | None, *args: str, input: str | None = None):
        prefix = (
            []
            if url is None
            else ["--database-url", url if isinstance(url, str) else url.render_as_string(hide_password=False)]
        )
        return runner.invoke(cli.main, [*prefix, *args], input=input, catch_exceptions=False)

    return run


@pytest.fixture
def terminal(monkeypatch):
    """Pretend a person sits at a terminal, so confirmations are asked (answers come from `input=`)."""
    monkeypatch.setattr(cli, "_can_ask", lambda: True)


def sql(url: sa.URL, statement: str, parameters=None) -> list[tuple]:
    """Run one statement in autocommit; its rows (empty for commands)."""
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        cursor = connection.execute(statement, parameters)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def legacy_url(cluster, fresh_database) -> sa.URL:
    """A legacy V1 database: waha_config with a convertible row, plus a table of the rest of the app."""
    url = fresh_database("empty")
    cluster.run_sql(url.database, LEGACY_V1_SQL)
    return url


@pytest.fixture
def user_of(request):
    """``user_of(url)``: a new user id, also a row of auth.users where that table exists."""

    def make(url: sa.URL) -> uuid.UUID:
        user_id = uuid.uuid4()
        if sql(url, "SELECT to_regclass('auth.users') IS NOT NULL")[0][0]:
            sql(url, "INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
        return user_id

    return make


@pytest.fixture(scope="session")
def password_role(cluster):
    """A login role that must authenticate with a password over TCP (the harness trusts everyone else).

    A pg_hba.conf line for this role alone is put first, so the rest of the suite keeps
    trust authentication.
    """
    cluster.run_sql("postgres", f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
    hba_file = sql(cluster.url("postgres"), "SHOW hba_file")[0][0]
    with open(hba_file) as handle:
        original = handle.read()
    with open(hba_file, "w") as handle:
        handle.write(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{original}")
    sql(cluster.url("postgres"), "SELECT pg_reload_conf()")
    wrong = cluster.url("postgres").set(username=PASSWORD_ROLE, password="not-the-password")
    for _ in range(600):  # the reload is asynchronous; up to 30 s on a loaded machine
        try:
            psycopg.connect(conninfo(wrong)).close()
        except psycopg.OperationalError:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("pg_hba.conf reload did not take effect")
    yield PASSWORD_ROLE
    with open(hba_file, "w") as handle:
        handle.write(original)
    sql(cluster.url("postgres"), "SELECT pg_reload_conf()")
