"""Safety of every upgrade: one transaction, serialised runs, bounded lock waits, nothing else touched."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import conninfo
from tests.migrations.upgrade_support import CAMPAIGNS, OWNER, V1_FULL, V1_ROW, database_state, run_sql, servers, upgrade
from toolkit.migrate import LegacyConversionRefused, LockTimeout, head_revision, script_directory

REPOSITORY = Path(__file__).resolve().parents[2]


def test_failure_in_a_late_revision_leaves_nothing_of_the_earlier_ones(fresh_database):
    url = fresh_database("empty")
    run_sql(url, V1_FULL + "INSERT INTO public.waha_config (id, api_url) VALUES (1, 'not a url');" + CAMPAIGNS)
    before = database_state(url)
    with pytest.raises(LegacyConversionRefused, match="api_url 'not a url' is not an http"):
        upgrade(url, owner=OWNER)
    after = database_state(url)
    assert after == before
    assert "public.alembic_version" not in after["catalog"]["relations"]
    assert "public.waha_servers" not in after["catalog"]["relations"]


def test_two_upgrades_started_together_both_succeed_and_build_once(fresh_database):
    """Two deploys at once, as two processes (Alembic's `context` is per process)."""
    url = fresh_database("empty")
    run_sql(url, V1_FULL + V1_ROW)
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    alembic = str(Path(sys.executable).with_name("alembic"))
    command = [alembic, "-x", f"database_url={conninfo(url)}", "-x", f"owner={OWNER}", "upgrade", "head"]
    deploys = [subprocess.Popen(command, cwd=REPOSITORY, env=environment, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [deploy.communicate(timeout=60)[0] for deploy in deploys]
    assert [deploy.returncode for deploy in deploys] == [0, 0], outputs
    assert sorted(output.count("Running upgrade") for output in outputs) == [0, len(list(script_directory().walk_revisions()))]
    assert run_sql(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert len(servers(url)) == 1


@pytest.fixture
def legacy_at_0004(fresh_database):
    """A legacy database upgraded to 0004: the conversion (which alters waha_config) is pending."""
    url = fresh_database("empty")
    run_sql(url, V1_FULL + V1_ROW + CAMPAIGNS)
    upgrade(url, "0004", owner=OWNER)
    return url


def test_migration_that_cannot_get_its_lock_fails_fast_and_says_why(legacy_at_0004):
    with psycopg.connect(conninfo(legacy_at_0004)) as application:
        application.execute("SELECT * FROM public.waha_config")  # an open transaction holds a lock on it
        started = time.monotonic()
        with pytest.raises(LockTimeout) as timed_out:
            upgrade(legacy_at_0004, owner=OWNER, lock_timeout=0.5)
        waited = time.monotonic() - started
        application.rollback()
    assert waited < 3
    message = str(timed_out.value)
    assert message.startswith("revision 0005 could not lock a WAHA table within 0.5 s: another transaction holds a lock on it")
    assert "pg_stat_activity" in message and "-x lock_timeout=30" in message and "Nothing was changed" in message
    assert run_sql(legacy_at_0004, "SELECT version_num FROM alembic_version") == [("0004",)]


def test_lock_timeout_defaults_to_five_seconds_and_is_set_after_the_advisory_lock():
    """lock_timeout also bounds pg_advisory_xact_lock: the advisory lock comes first, then the timeout."""
    from toolkit.migrate import offline_sql

    script = offline_sql("head")
    assert script.index("pg_advisory_xact_lock") < script.index("SET LOCAL lock_timeout = 5000;") < script.index("Running upgrade")


def test_upgrade_never_blocks_writers_of_other_tables(legacy_at_0004):
    """Another connection writes public.campaigns all along, one holds it locked: neither waits on us."""
    latencies: list[float] = []
    stop = threading.Event()

    def application_writes() -> None:
        with psycopg.connect(conninfo(legacy_at_0004), autocommit=True) as writer:
            while not stop.is_set():
                began = time.monotonic()
                writer.execute("INSERT INTO public.campaigns (name) VALUES ('during the upgrade')")
                latencies.append(time.monotonic() - began)

    with psycopg.connect(conninfo(legacy_at_0004)) as long_transaction:
        long_transaction.execute("UPDATE public.campaigns SET name = name WHERE id = 1")  # row lock held until rollback
        long_transaction.execute("SELECT count(*) FROM public.campaigns")
        writer = threading.Thread(target=application_writes)
        writer.start()
        time.sleep(0.1)
        upgrade(legacy_at_0004, owner=OWNER, lock_timeout=2)
        time.sleep(0.1)
        stop.set()
        writer.join(10)
        long_transaction.rollback()
    assert run_sql(legacy_at_0004, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert len(latencies) > 20
    assert max(latencies) < 0.25, f"a write to campaigns waited {max(latencies):.3f} s during the upgrade"
    assert run_sql(legacy_at_0004, "SELECT name FROM public.campaigns WHERE id <= 2 ORDER BY id") == [("Black Friday",), ("Natal",)]


def test_upgrade_touches_no_object_outside_waha(fresh_database):
    url = fresh_database("empty")
    run_sql(url, V1_FULL + V1_ROW + CAMPAIGNS + """
        CREATE SCHEMA app;
        CREATE TABLE app.contacts (id bigint PRIMARY KEY, phone text);
        CREATE FUNCTION public.app_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;
    """)
    before = database_state(url)
    upgrade(url, owner=OWNER)
    after = database_state(url)

    def outside_waha(state):
        return {
            section: {name: value for name, value in items.items()
                      if "waha" not in name and "alembic_version" not in name}
            for section, items in state["catalog"].items() if isinstance(items, dict)
        }, {table: rows for table, rows in state["rows"].items() if "waha" not in table and "alembic" not in table}

    assert outside_waha(after) == outside_waha(before)
