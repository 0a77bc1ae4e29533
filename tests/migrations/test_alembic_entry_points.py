"""Every way the spec says Alembic can be driven reaches head.

- `alembic -x database_url=URL upgrade head` from the repository root (a real
  subprocess, as a DBA types it);
- `DATABASE_URL` in the environment, with the `postgres://` scheme Heroku-style
  URLs use;
- a Connection handed in through config.attributes["connection"] (Alembic's
  cookbook; the caller owns the transaction and commits), and an Engine
  (pytest-alembic).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config

from tests.conftest import conninfo
from toolkit import migrate
from toolkit.database import create_engine

REPOSITORY = Path(__file__).resolve().parents[2]


def version_of(url) -> list:
    with psycopg.connect(conninfo(url)) as connection:
        if connection.execute("SELECT pg_catalog.to_regclass('public.alembic_version')").fetchone()[0] is None:
            return []
        return [row[0] for row in connection.execute("SELECT version_num FROM public.alembic_version")]


def repository_config() -> Config:
    """alembic.ini of the repository, as the `alembic` command reads it, without touching pytest's logging."""
    config = Config(str(REPOSITORY / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


def test_alembic_command_line_with_x_database_url_upgrades_to_head(fresh_database):
    url = fresh_database("empty")
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"database_url={url.render_as_string(hide_password=False)}", "upgrade", "head"],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Running upgrade  -> 0001" in done.stderr
    assert version_of(url) == [migrate.head_revision()]


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_database_url_environment_variable_in_any_accepted_scheme(fresh_database, monkeypatch, scheme):
    url = fresh_database("empty")
    monkeypatch.setenv("DATABASE_URL", url.set(drivername=scheme).render_as_string(hide_password=False))

    command.upgrade(repository_config(), "head")

    assert version_of(url) == [migrate.head_revision()]


def test_handed_in_engine_is_used(fresh_database, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    url = fresh_database("empty")
    engine = create_engine(url)
    config = repository_config()
    config.attributes["connection"] = engine
    try:
        command.upgrade(config, "head")
    finally:
        engine.dispose()
    assert version_of(url) == [migrate.head_revision()]


def test_handed_in_connection_is_used(fresh_database, monkeypatch):
    """A connection with no transaction begun: Alembic begins and commits one."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    url = fresh_database("empty")
    engine = create_engine(url)
    config = repository_config()
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
    assert version_of(url) == [migrate.head_revision()]


@pytest.mark.parametrize("caller_ends_with", ["commit", "rollback"])
def test_handed_in_connection_inside_the_callers_transaction_is_left_to_the_caller(fresh_database, monkeypatch, caller_ends_with):
    """Alembic's cookbook: when the caller has begun a transaction, the caller decides whether it stays."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    url = fresh_database("empty")
    engine = create_engine(url)
    config = repository_config()
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")  # the caller's transaction has begun
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
            assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0003"
            getattr(connection, caller_ends_with)()
    finally:
        engine.dispose()
    assert version_of(url) == (["0003"] if caller_ends_with == "commit" else [])
