"""`waha-db upgrade` beside other runs and the application: the migrations' lock, retries, a killed run.

Each run is a real `waha-db` process, as two deploys or a DBA's terminal start it;
the other side (a run holding the migrations' lock, an application transaction) is
a connection of the test, so each case is set up exactly, without timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.polling import wait_until
from tests.support.databases import run_sql
from tests.support.factories import LEGACY_OWNER
from tests.support.processes import backend_of, finish, start_waha_db
from waha_db.database import conninfo, create_engine
from waha_db.lifecycle import locks, migrate, revisions

HEAD = revisions.head()
OTHER_OWNER = "11111111-2222-4333-8444-555555555555"


TRYING_THE_LOCK = "pg_try_advisory_xact_lock"


@pytest.fixture
def first_run(legacy_url):
    """A run named as waha-db names its connections, in a transaction that holds the migrations' advisory lock."""
    engine = create_engine(legacy_url, application_name="waha-db upgrade")
    with engine.connect() as connection:
        connection.begin()
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({locks.MIGRATION_LOCK_KEY})")
        yield connection
        if connection.in_transaction():
            connection.rollback()
    engine.dispose()


def pid_of(connection) -> int:
    return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def test_a_second_upgrade_waits_for_the_first_then_plans_and_finds_nothing_to_do(legacy_url, first_run):
    first_pid = pid_of(first_run)
    second = start_waha_db(legacy_url, "upgrade", "--yes", "--owner", OTHER_OWNER)
    wait_until(
        lambda: backend_of(legacy_url, "waha-db upgrade", other_than=first_pid, running=TRYING_THE_LOCK),
        "the second run trying the migrations' lock",
    )
    migrate.upgrade(first_run, owner=LEGACY_OWNER, lock_timeout=30)
    first_run.commit()  # ends the first run: the second takes the lock, then plans
    output = finish(second)
    assert second.returncode == 0, output
    assert f"for the migrations' lock, held by pid {first_pid} (application_name 'waha-db upgrade'" in output
    assert f"nothing to do: the database is at {HEAD}" in output
    assert "revisions to apply" not in output and OTHER_OWNER not in output and "upgraded to" not in output
    assert run_sql(legacy_url, "SELECT user_id::text FROM public.waha_servers") == [(LEGACY_OWNER,)]


def test_a_run_that_never_gets_the_migrations_lock_names_its_holder_and_makes_no_plan(legacy_url, first_run):
    first_pid = pid_of(first_run)
    second = start_waha_db(legacy_url, "upgrade", "--yes", "--owner", LEGACY_OWNER, "--lock-timeout", "1")
    output = finish(second)
    assert second.returncode == 1, output
    assert "another run held the migrations' lock for the whole 1 s this one may wait" in output
    assert f"pid {first_pid} (application_name 'waha-db upgrade'" in output
    assert f"SELECT pg_catalog.pg_terminate_backend({first_pid});" in output
    assert "revisions to apply" not in output and "current revision" not in output
    assert run_sql(legacy_url, "SELECT to_regclass('public.alembic_version')") == [(None,)]


def test_plain_alembic_names_its_connection_and_waits_for_the_migrations_lock_in_plain_sight(legacy_url, first_run):
    first_pid = pid_of(first_run)
    environment = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    alembic = subprocess.Popen(
        [sys.executable, "-m", "alembic", "-x", f"database_url={conninfo(legacy_url)}", "-x", f"owner={LEGACY_OWNER}"]
        + ["upgrade", "head"],
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_until(
        lambda: backend_of(legacy_url, "alembic (waha-db migrations)", running=TRYING_THE_LOCK),
        "alembic's named connection trying the migrations' lock",
    )
    first_run.rollback()
    output = finish(alembic)
    assert alembic.returncode == 0, output
    assert f"for the migrations' lock, held by pid {first_pid}" in output
    assert run_sql(legacy_url, "SELECT version_num FROM public.alembic_version") == [(HEAD,)]


# --- an application transaction in the way -------------------------------------------------------------


def test_an_upgrade_that_gives_up_prints_nothing_of_what_its_rolled_back_attempts_did(waha_db, legacy_at_0004):
    with psycopg.connect(conninfo(legacy_at_0004)) as application:
        application.execute("SELECT * FROM public.waha_config")
        holder = application.info.backend_pid
        result = waha_db(legacy_at_0004, "upgrade", "--yes", "--owner", LEGACY_OWNER, "--lock-timeout", "0.3")
        application.rollback()
    assert result.exit_code == 1
    assert "could not lock the WAHA tables within 0.3 s" in result.output
    assert f"pid {holder}" in result.output
    assert "converted now" not in result.output and "notice:" not in result.output
    assert "was not kept waiting" not in result.output
    assert run_sql(legacy_at_0004, "SELECT version_num FROM public.alembic_version") == [("0004",)]


def test_an_upgrade_retries_while_the_application_holds_a_lock_and_then_says_what_happened(legacy_at_0004):
    application = psycopg.connect(conninfo(legacy_at_0004))
    application.execute("SELECT * FROM public.waha_config")
    upgrade = start_waha_db(legacy_at_0004, "upgrade", "--yes", "--owner", LEGACY_OWNER, "--lock-timeout", "120")
    wait_until(
        lambda: backend_of(legacy_at_0004, "waha-db upgrade", waiting="Lock"), "the upgrade waiting for waha_config"
    )
    application.rollback()
    application.close()
    output = finish(upgrade)
    assert upgrade.returncode == 0, output
    assert f"upgraded to {HEAD}" in output
    assert output.count("(converted now)") == 1  # the notice of the attempt that committed, once


def test_a_killed_upgrade_leaves_no_lock_behind_for_the_next_run(waha_db, legacy_at_0004):
    """kill -9 of a run waiting on a lock: its server process gives up within one attempt, freeing the lock."""
    application = psycopg.connect(conninfo(legacy_at_0004))
    application.execute("SELECT * FROM public.waha_config")
    killed = start_waha_db(legacy_at_0004, "upgrade", "--yes", "--owner", LEGACY_OWNER, "--lock-timeout", "600")
    wait_until(
        lambda: backend_of(legacy_at_0004, "waha-db upgrade", waiting="Lock"), "the upgrade waiting for waha_config"
    )
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    wait_until(lambda: backend_of(legacy_at_0004, "waha-db upgrade") is None, "the killed run's server process to end")
    application.rollback()
    application.close()
    result = waha_db(legacy_at_0004, "upgrade", "--yes", "--owner", LEGACY_OWNER)
    assert result.exit_code == 0, result.output
    assert "for the migrations' lock" not in result.output
    assert f"upgraded to {HEAD}" in result.output
