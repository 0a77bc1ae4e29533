"""Every way the spec says Alembic can be driven reaches head.

- `alembic -x database_url=URL upgrade head` from the repository root (a real
  subprocess, as a DBA types it);
- `DATABASE_URL` in the environment, with the `postgres://` scheme Heroku-style
  URLs use;
- a Connection handed in through config.attributes["connection"] (Alembic's
  cookbook; the caller owns the transaction and commits), and an Engine
  (pytest-alembic).

And what each prints when it cannot start (an unreachable server, a malformed URL):
one `FAILED:` line, never a traceback or a password; and which of them refuse a
hand-made schema (upgrades only).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory

from tests.support.databases import recorded_revisions
from tests.support.factories import LEGACY_OWNER
from tests.support.network import free_port
from waha_db.checks.legacy import LEGACY_V1_SQL
from waha_db.database import create_engine
from waha_db.lifecycle import migrate, revisions

REPOSITORY = Path(__file__).resolve().parents[2]


def repository_config() -> Config:
    """alembic.ini of the repository, as the `alembic` command reads it, without touching pytest's logging."""
    config = Config(str(REPOSITORY / "alembic.ini"))
    config.attributes["configure_logger"] = False
    return config


def test_alembic_command_line_with_x_database_url_upgrades_to_head(fresh_database):
    url = fresh_database("empty")
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "alembic",
            "-x",
            f"database_url={url.render_as_string(hide_password=False)}",
            "upgrade",
            "head",
        ],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Running upgrade  -> 0001" in done.stderr
    assert recorded_revisions(url) == [revisions.head()]


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_database_url_environment_variable_in_any_accepted_scheme(fresh_database, monkeypatch, scheme):
    url = fresh_database("empty")
    monkeypatch.setenv("DATABASE_URL", url.set(drivername=scheme).render_as_string(hide_password=False))

    command.upgrade(repository_config(), "head")

    assert recorded_revisions(url) == [revisions.head()]


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
    assert recorded_revisions(url) == [revisions.head()]


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
    assert recorded_revisions(url) == [revisions.head()]


@pytest.mark.parametrize("caller_ends_with", ["commit", "rollback"])
def test_handed_in_connection_inside_the_callers_transaction_is_left_to_the_caller(
    fresh_database, monkeypatch, caller_ends_with
):
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
    assert recorded_revisions(url) == (["0003"] if caller_ends_with == "commit" else [])


# --- what the `alembic` command prints when it cannot start -------------------------------------

SECRET = "s3cret-Pa55word"


def alembic(*arguments: str) -> subprocess.CompletedProcess:
    """`alembic ARGUMENTS` from the repository root, as a DBA types it (no DATABASE_URL from our environment)."""
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *arguments],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def failed_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if "FAILED:" in line]


def test_alembic_command_on_an_unreachable_server_is_one_failed_line_without_the_password():
    port = free_port()
    done = alembic("-x", f"database_url=postgresql://app:{SECRET}@127.0.0.1:{port}/appdb", "upgrade", "head")
    assert done.returncode != 0
    assert SECRET not in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert failed_lines(done) == [
        f"FAILED: cannot connect to PostgreSQL at 127.0.0.1:{port}, database appdb: Connection refused "
        "(Is the server running on that host and accepting TCP/IP connections?)"
    ]


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{SECRET}@127.0.0.1:not-a-port/appdb",
        f"not a url {SECRET}",
        f"mysql://app:{SECRET}@127.0.0.1/appdb",
    ],
)
def test_alembic_command_with_a_malformed_url_is_one_failed_line_without_the_password(url):
    done = alembic("-x", f"database_url={url}", "upgrade", "head")
    assert done.returncode != 0
    assert SECRET not in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert len(failed_lines(done)) == 1
    assert "postgresql://" in failed_lines(done)[0]  # says what a URL looks like


# --- only an upgrade is refused on a hand-made schema, however env.py is driven ---------------------


@pytest.fixture
def hand_made_url(fresh_database):
    """A database with waha_servers made by hand and no alembic_version."""
    return fresh_database("empty", "CREATE TABLE public.waha_servers (id uuid PRIMARY KEY)")


def test_alembic_command_upgrade_refuses_a_hand_made_schema_but_current_works(hand_made_url):
    database_url = f"database_url={hand_made_url.render_as_string(hide_password=False)}"
    refused = alembic("-x", database_url, "upgrade", "head")
    assert refused.returncode != 0
    assert [line.split(":", 2)[1].strip() for line in failed_lines(refused)] == [
        "this database holds a hand-made V2.1 schema"
    ]
    current = alembic("-x", database_url, "current")
    assert current.returncode == 0, current.stdout + current.stderr
    assert recorded_revisions(hand_made_url) == []


def run_env(url, command_name: str | None, destination: str | None) -> None:
    """Drive env.py as a program may, with a step function of its own naming that applies nothing."""
    engine = create_engine(url)
    config = repository_config()
    config.attributes["connection"] = engine
    if command_name is not None:
        config.attributes["command"] = command_name
    script = ScriptDirectory.from_config(config)

    def nothing_to_apply(revision, context):
        return []

    try:
        with EnvironmentContext(config, script, fn=nothing_to_apply, destination_rev=destination):
            script.run_env()
    finally:
        engine.dispose()


def test_the_command_named_by_the_caller_decides_not_alembics_internal_function_names(hand_made_url, monkeypatch):
    """waha_db.lifecycle.migrate names its command in config.attributes["command"]; env.py believes it."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(migrate.HandMadeSchema):
        run_env(hand_made_url, "upgrade", "head")
    run_env(hand_made_url, "current", None)  # not refused


def test_a_caller_that_names_no_command_is_guarded_when_it_moves_the_revision(hand_made_url, monkeypatch):
    """pytest-alembic and Alembic's cookbook call alembic.command without naming it to env.py."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    engine = create_engine(hand_made_url)
    config = repository_config()
    config.attributes["connection"] = engine
    try:
        with pytest.raises(migrate.HandMadeSchema):
            command.upgrade(config, "head")
        command.current(config)  # not refused
    finally:
        engine.dispose()
    assert recorded_revisions(hand_made_url) == []


def test_a_caller_that_names_no_command_gets_the_checks_before_the_conversion(fresh_database, monkeypatch):
    """A legacy row changed after a rollback is refused, not silently kept, under plain alembic.command too."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    url = fresh_database("empty", LEGACY_V1_SQL)
    engine = create_engine(url)
    config = repository_config()
    config.attributes["connection"] = engine
    config.attributes["owner"] = LEGACY_OWNER
    try:
        command.upgrade(config, "head")
        command.downgrade(config, "0004")
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE public.waha_config SET api_url = 'https://new-legacy.example'")
        del config.attributes["owner"]
        with pytest.raises(migrate.LegacyConversionRefused, match="disagree") as refused:
            command.upgrade(config, "head")
        assert "api_url" in str(refused.value)
    finally:
        engine.dispose()
    assert recorded_revisions(url) == ["0004"]
