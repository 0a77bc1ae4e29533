"""Fixtures of the CLI tests: run `waha-db` in-process with click's CliRunner against
databases of the session's throwaway PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.conftest import PASSWORD, PASSWORD_ROLE  # noqa: F401  (the password role of tests/conftest.py)
from waha_db import cli
from waha_db.checks.legacy import LEGACY_V1_SQL
from waha_db.database import conninfo


@pytest.fixture(autouse=True)
def no_database_url_in_environment(monkeypatch):
    """The tests say which database they use; a DATABASE_URL of the developer's shell must not leak in."""
    monkeypatch.delenv("DATABASE_URL", raising=False)


@pytest.fixture
def url(fresh_database) -> sa.URL:
    """A fresh database at head."""
    return fresh_database("head")


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
    monkeypatch.setattr(cli.edge, "can_ask", lambda: True)


def sql(url: sa.URL, statement: str, parameters=None) -> list[tuple]:
    """Run one statement in autocommit; its rows (empty for commands)."""
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        cursor = connection.execute(statement, parameters)
        return cursor.fetchall() if cursor.description else []


def server_version(url: sa.URL) -> tuple[int, str]:
    """The server's own word: (server_version_num, server_version without a distribution's suffix)."""
    ((number, text),) = sql(url, "SELECT current_setting('server_version_num')::int, current_setting('server_version')")
    return number, text.split()[0]


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
