"""What `waha-db upgrade` says when something else happens to it: a backend blocking its locks while the
application runs, its connection ended by an administrator or lost, a timeout, a person slow to answer, the
database changing while they read, another database of the server creating the roles at the same moment.

Each message must name what really happened, and say whether anything changed.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import click
import psycopg
import pytest

from tests.polling import wait_until
from tests.support.databases import revision_of, run_sql, upgrade
from tests.support.factories import LEGACY_OWNER
from tests.support.processes import backend_of, finish, start_waha_db
from waha_db.checks.legacy import LEGACY_V1_SQL
from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import conninfo
from waha_db.lifecycle import revisions

HEAD = revisions.head()


def waiting_on_a_lock(url) -> int | None:
    """The pid of the upgrade's backend once it waits for a lock."""
    return backend_of(url, "waha-db upgrade", waiting="Lock")


# --- the backends that blocked the upgrade, while the application runs --------------------------------


class Application:
    """Signed-in users of the app, as PostgREST connects them: `authenticator`, then SET ROLE authenticated.

    Each client reads the user's servers over and over; `longest` is the longest read.
    """

    def __init__(self, url, clients: int = 8) -> None:
        run_sql(
            url, "DO $$ BEGIN CREATE ROLE authenticator LOGIN NOINHERIT; EXCEPTION WHEN duplicate_object THEN END $$"
        )
        run_sql(url, "GRANT authenticated TO authenticator")
        self.url = url.set(username="authenticator")
        self.stop = threading.Event()
        self.pids: list[int] = []
        self.longest = 0.0
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]

    def client(self) -> None:
        with psycopg.connect(conninfo(self.url), autocommit=True) as connection:
            self.pids.append(connection.info.backend_pid)
            connection.execute("SET ROLE authenticated")
            connection.execute("SELECT set_config('request.jwt.claims', %s, false)", (f'{{"sub": "{LEGACY_OWNER}"}}',))
            while not self.stop.is_set():
                began = time.monotonic()
                connection.execute("SELECT count(*) FROM public.waha_servers").fetchone()
                self.longest = max(self.longest, time.monotonic() - began)

    def __enter__(self) -> Application:
        for thread in self.threads:
            thread.start()
        wait_until(lambda: len(self.pids) == len(self.threads), "the application's clients connected")
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.fixture
def sleeper(legacy_at_0004):
    """A transaction that read waha_config, then sleeps (cancelled at the end of the test): the blocker."""
    connection = psycopg.connect(conninfo(legacy_at_0004))
    connection.execute("SELECT * FROM public.waha_config").fetchall()
    sleeping = threading.Thread(target=lambda: _sleep(connection), daemon=True)
    sleeping.start()
    wait_until(
        lambda: (
            run_sql(legacy_at_0004, "SELECT state FROM pg_stat_activity WHERE pid = %s", (connection.info.backend_pid,))
            == [("active",)]
        ),
        "the blocker sleeping",
    )
    yield connection.info.backend_pid
    run_sql(legacy_at_0004, "SELECT pg_cancel_backend(%s)", (connection.info.backend_pid,))
    sleeping.join(30)
    connection.close()


def _sleep(connection) -> None:
    try:
        connection.execute("SELECT pg_sleep(60)")
    except psycopg.errors.QueryCanceled:
        connection.rollback()


def test_the_give_up_names_the_backend_that_blocked_it_and_the_limit_of_each_attempt(legacy_at_0004, sleeper):
    with Application(legacy_at_0004) as application:
        upgrade = start_waha_db(legacy_at_0004, "upgrade", "--yes", "--owner", LEGACY_OWNER, "--lock-timeout", "6")
        output = finish(upgrade)
    assert upgrade.returncode == 1, output
    message = output[output.index("Error: ") :]
    assert re.search(
        r"could not lock the WAHA tables within 6 s: \d attempt\(s\), each waiting at most 2 s for a lock", message
    )
    assert f"were blocked by:\n  pid {sleeper} (" in message
    assert "SELECT pg_sleep(60)" in message
    assert f"SELECT pg_catalog.pg_terminate_backend({sleeper});" in message
    assert "queued behind it, for at most 2 s" in message
    named = {int(pid) for pid in re.findall(r"\bpid (\d+)", output)}
    assert named == {sleeper}, f"innocent backends named: {named - {sleeper}}"
    assert not set(application.pids) & named
    assert revision_of(legacy_at_0004) == "0004"


def test_plain_alembic_gives_up_naming_the_backend_that_blocked_it(legacy_at_0004, sleeper):
    import subprocess
    import sys
    from pathlib import Path

    with Application(legacy_at_0004, clients=4):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "-x", f"database_url={conninfo(legacy_at_0004)}"]
            + ["-x", f"owner={LEGACY_OWNER}", "-x", "lock_timeout=3", "upgrade", "head"],
            cwd=Path(__file__).resolve().parents[2],
            env={name: value for name, value in os.environ.items() if name != "DATABASE_URL"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode != 0
    failed = done.stdout[done.stdout.index("FAILED: ") :]
    assert "each waiting at most 2 s for a lock" in failed
    assert {int(pid) for pid in re.findall(r"\bpid (\d+)", failed)} == {sleeper}


# --- the connection ended under the upgrade ---------------------------------------------------------------


@pytest.fixture
def held_waha_config(legacy_at_0004):
    """An application transaction that read waha_config and stays open: the upgrade waits for it."""
    with psycopg.connect(conninfo(legacy_at_0004)) as application:
        application.execute("SELECT * FROM public.waha_config").fetchall()
        yield legacy_at_0004
        application.rollback()


def test_an_upgrade_terminated_by_an_administrator_says_so_and_that_nothing_changed(held_waha_config):
    url = held_waha_config
    upgrade = start_waha_db(url, "upgrade", "--yes", "--owner", LEGACY_OWNER, "--lock-timeout", "60")
    wait_until(lambda: waiting_on_a_lock(url), "the upgrade waiting for waha_config")
    run_sql(url, "SELECT pg_terminate_backend(%s)", (waiting_on_a_lock(url),))
    output = finish(upgrade)
    assert upgrade.returncode == 1, output
    error = output[output.index("Error: ") :].strip()
    assert error.startswith(
        "Error: terminated by an administrator: the server ended this connection (pg_terminate_backend, or the "
        "server shutting down): terminating connection due to administrator command (PostgreSQL at 127.0.0.1:"
    )
    assert error.endswith(
        "while `waha-db upgrade` ran). Its transaction was rolled back: nothing was changed. Run it again."
    )
    assert "cannot connect" not in output
    assert revision_of(url) == "0004"


@pytest.fixture
def own_server():
    """A server of this test alone (a crash restarts every backend of its server)."""
    with ThrowawayPostgres() as server:
        yield server


def test_an_upgrade_whose_backend_is_killed_says_the_connection_was_lost(own_server):
    url = own_server.url(own_server.create_database("app"))
    run_sql(url, LEGACY_V1_SQL)
    upgrade = start_waha_db(url, "upgrade", "0004", "--yes")
    assert finish(upgrade) and upgrade.returncode == 0
    application = psycopg.connect(conninfo(url))  # ended too by the crash: every backend of the server restarts
    application.execute("SELECT * FROM public.waha_config").fetchall()
    upgrade = start_waha_db(url, "upgrade", "--yes", "--owner", LEGACY_OWNER, "--lock-timeout", "60")
    wait_until(lambda: waiting_on_a_lock(url), "the upgrade waiting for waha_config")
    os.kill(waiting_on_a_lock(url), signal.SIGKILL)
    output = finish(upgrade)
    application.close()
    assert upgrade.returncode == 1, output
    error = output[output.index("Error: ") :].strip()
    assert error.startswith("Error: connection lost: ")
    assert "Its transaction was rolled back: nothing was changed." in error
    assert "cannot connect" not in output
    wait_until(lambda: _accepts_connections(url), "the server back after its crash")
    assert revision_of(url) == "0004"


def _accepts_connections(url) -> bool:
    try:
        return bool(run_sql(url, "SELECT 1"))
    except psycopg.OperationalError:
        return False


def test_a_statement_timeout_on_status_is_named_not_a_connection_failure(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, f'ALTER DATABASE "{url.database}" SET statement_timeout = 1')
    result = waha_db(url, "status")
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: statement timeout: a statement ran longer than statement_timeout allows: "
        "canceling statement due to statement timeout (PostgreSQL at 127.0.0.1:"
    ), result.output
    assert "cannot connect" not in result.output


# --- a person reading the plan --------------------------------------------------------------------------


def open_transactions(url) -> list[tuple]:
    """The backends of this database, other than the asking one, in a transaction or holding the migrations' lock."""
    return run_sql(
        url,
        "SELECT a.pid, a.application_name, a.state FROM pg_stat_activity a WHERE a.datname = %s "
        "AND a.pid <> pg_backend_pid() AND (a.xact_start IS NOT NULL OR EXISTS "
        "(SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory'))",
        (url.database,),
    )


@pytest.fixture
def person(monkeypatch):
    """A person at a terminal who reads the plan for `reading` seconds, does `meanwhile`, then answers yes."""

    class Person:
        reading = 0.0
        meanwhile = staticmethod(lambda: None)
        saw_open: list[tuple] | None = None
        url = None

        def confirm(self, question, default=False):
            self.saw_open = open_transactions(self.url)
            time.sleep(self.reading)
            self.meanwhile()
            return True

    reader = Person()
    monkeypatch.setattr("waha_db.cli.edge.can_ask", lambda: True)
    monkeypatch.setattr(click, "confirm", reader.confirm)
    return reader


def test_no_transaction_and_no_lock_stay_open_while_a_person_reads_the_plan(waha_db, fresh_database, person):
    url = fresh_database("empty")
    run_sql(url, f'ALTER DATABASE "{url.database}" SET idle_in_transaction_session_timeout = 500')
    person.url, person.reading = url, 1.5
    result = waha_db(url, "upgrade")
    assert person.saw_open == []
    assert result.exit_code == 0, result.output
    assert revision_of(url) == HEAD


def test_a_plan_that_no_longer_holds_after_the_question_is_refused_saying_what_changed(waha_db, fresh_database, person):
    url = fresh_database("empty")
    person.url = url
    person.meanwhile = lambda: upgrade(url, "0004")  # another run, while the person read
    result = waha_db(url, "upgrade")
    assert result.exit_code == 1
    assert "the database changed after the plan was shown" in result.output
    assert "nothing was changed" in result.output
    assert "  was: current revision: none (no alembic_version)\n" in result.output
    assert "  now: current revision: 0004\n" in result.output
    assert revision_of(url) == "0004"


def test_a_plan_carried_out_by_another_run_meanwhile_leaves_nothing_to_do(waha_db, fresh_database, person):
    url = fresh_database("empty")
    person.url = url
    person.meanwhile = lambda: upgrade(url)
    result = waha_db(url, "upgrade")
    assert result.exit_code == 0, result.output
    assert "another run carried it out meanwhile: nothing to do" in result.output
    assert "upgraded to" not in result.output


# --- two databases of one server, upgraded at once ----------------------------------------------------------


def test_roles_created_by_another_databases_upgrade_at_the_same_moment_are_taken_as_made(own_server):
    first, second = (own_server.url(own_server.create_database(name)) for name in ("first", "second"))
    with psycopg.connect(conninfo(first)) as other_upgrade:  # in the middle of its revision 0004
        other_upgrade.execute("CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS")
        upgrade = start_waha_db(second, "upgrade", "--yes")
        wait_until(
            lambda: run_sql(
                second,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'second' AND wait_event = 'transactionid'",
            )[0][0],
            "the upgrade's CREATE ROLE waiting for the other transaction",
        )
        other_upgrade.commit()
        output = finish(upgrade)
    assert upgrade.returncode == 0, output
    assert "duplicate key" not in output and "pg_authid_rolname_index" not in output
    assert "found role authenticated created at the same moment by another upgrade on this server" in output
    assert run_sql(second, "SELECT version_num FROM public.alembic_version") == [(HEAD,)]


def test_two_databases_of_one_server_upgraded_at_once_both_reach_head(own_server):
    urls = [own_server.url(own_server.create_database(f"app_{number}")) for number in range(2)]
    upgrades = [start_waha_db(url, "upgrade", "--yes") for url in urls]
    outputs = [finish(upgrade) for upgrade in upgrades]
    assert [upgrade.returncode for upgrade in upgrades] == [0, 0], outputs
    assert [run_sql(url, "SELECT version_num FROM public.alembic_version") for url in urls] == [[(HEAD,)]] * 2
