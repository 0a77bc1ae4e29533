"""Safety of every upgrade: one transaction, serialised runs, bounded lock waits, nothing else touched."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.migrations.upgrade_support import CAMPAIGNS, OWNER, V1_FULL, V1_ROW, start_alembic
from tests.polling import wait_until
from tests.support.databases import database_state, run_sql, servers, upgrade
from waha_db.database import conninfo, create_engine
from waha_db.lifecycle import migrate
from waha_db.lifecycle.migrate import LegacyConversionRefused, LockTimeout
from waha_db.lifecycle.revisions import head as head_revision
from waha_db.lifecycle.revisions import script_directory


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
    deploys = [start_alembic(url, "-x", f"owner={OWNER}", "upgrade", "head") for _ in range(2)]
    try:
        outputs = [deploy.communicate(timeout=120)[0] for deploy in deploys]
    finally:
        for deploy in deploys:
            if deploy.poll() is None:
                deploy.kill()
                deploy.wait()
    assert [deploy.returncode for deploy in deploys] == [0, 0], outputs
    assert sorted(output.count("Running upgrade") for output in outputs) == [
        0,
        len(list(script_directory().walk_revisions())),
    ]
    assert run_sql(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert len(servers(url)) == 1


def test_migration_that_cannot_get_its_lock_gives_up_within_its_limit_and_says_who_holds_it(legacy_at_0004):
    with psycopg.connect(conninfo(legacy_at_0004)) as application:
        application.execute("SET application_name = 'legacy app'")
        application.execute("SELECT * FROM public.waha_config")  # an open transaction holds a lock on it
        holder = application.info.backend_pid
        started = time.monotonic()
        with pytest.raises(LockTimeout) as timed_out:
            upgrade(legacy_at_0004, owner=OWNER, lock_timeout=0.5)
        waited = time.monotonic() - started
        application.rollback()
    # Well under the default of 30 s, so the 0.5 s given is the one applied; the
    # rest is slack for a loaded machine (start-up, Alembic, a stalled process).
    assert waited < 20, f"the upgrade gave up after {waited:.1f} s, not after the 0.5 s lock_timeout"
    message = str(timed_out.value)
    assert message.startswith(
        "revision 0005 could not lock the WAHA tables within 0.5 s: 1 attempt(s), each waiting at most 0.5 s"
    )
    assert f"pid {holder} (application_name 'legacy app'" in message
    assert f"pg_terminate_backend({holder})" in message
    assert "Nothing was changed" in message and "-x lock_timeout=120" in message
    assert "for at most 0.5 s; between attempts they ran" in message
    assert run_sql(legacy_at_0004, "SELECT version_num FROM alembic_version") == [("0004",)]


def test_an_attempt_that_times_out_is_retried_until_the_lock_is_free(legacy_at_0004):
    """The overall limit is spent in short attempts: once the blocker ends, the next attempt succeeds."""
    application = psycopg.connect(conninfo(legacy_at_0004))
    application.execute("SELECT * FROM public.waha_config")
    outcome: list = []

    def run() -> None:
        try:
            upgrade(legacy_at_0004, owner=OWNER, lock_timeout=120)
            outcome.append("upgraded")
        except Exception as error:  # reported by the assertion below
            outcome.append(error)

    upgrading = threading.Thread(target=run, daemon=True)
    upgrading.start()
    with psycopg.connect(conninfo(legacy_at_0004), autocommit=True) as watcher:
        # Two attempts (two transactions) queued behind the blocker, each rolled back before the next.
        seen: set[int] = set()

        def second_attempt_queued() -> bool:
            row = watcher.execute(
                "SELECT pid, xact_start FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone()
            if row:
                seen.add(hash(row))
            return len(seen) >= 2

        wait_until(second_attempt_queued, "a second attempt of the upgrade waiting for waha_config")
    application.rollback()
    application.close()
    upgrading.join(60)
    assert outcome == ["upgraded"]
    assert run_sql(legacy_at_0004, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert len(servers(legacy_at_0004)) == 1


def test_an_application_statement_queues_behind_a_waiting_upgrade_for_at_most_one_attempt(legacy_at_0004):
    """The application's SELECT on waha_config (a V1 app reads it on every request) is measured.

    The upgrade, given 120 s overall, waits behind an open transaction in attempts of
    at most 2 s. A SELECT started while an attempt's lock request is queued waits
    behind it until that attempt gives up, then runs, while the upgrade is still
    retrying: it is not kept waiting for the overall limit. The wait is printed.
    """
    blocker = psycopg.connect(conninfo(legacy_at_0004))
    blocker.execute("SELECT * FROM public.waha_config")
    outcome: list = []
    upgrading = threading.Thread(
        target=lambda: outcome.append(upgrade(legacy_at_0004, owner=OWNER, lock_timeout=120) or "upgraded"),
        daemon=True,
    )
    upgrading.start()
    with psycopg.connect(conninfo(legacy_at_0004), autocommit=True) as application:
        wait_until(
            lambda: application.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'public.waha_config'::regclass"
            ).fetchone()[0],
            "the upgrade's lock request queued on waha_config",
        )
        started = time.monotonic()
        assert application.execute("SELECT api_url FROM public.waha_config").fetchall() == [
            ("https://waha.legacy.example",)
        ]
        waited = time.monotonic() - started
    assert upgrading.is_alive(), "the upgrade was over before the application's SELECT ran"
    blocker.rollback()
    blocker.close()
    upgrading.join(60)
    assert outcome == ["upgraded"]
    print(
        f"\nthe application's SELECT on waha_config waited {waited:.2f} s behind the queued upgrade (attempts of 2 s)"
    )
    assert waited < 120, f"the SELECT waited {waited:.1f} s: as long as the overall limit, not one attempt"


def test_offline_script_bounds_the_advisory_lock_by_the_overall_limit_then_each_lock_by_an_attempt():
    """lock_timeout also bounds pg_advisory_xact_lock: the overall limit first, the attempt's after it."""
    from waha_db.lifecycle.migrate import offline_sql

    script = offline_sql("head")
    assert (
        script.index("SET LOCAL lock_timeout = 30000;")
        < script.index("pg_advisory_xact_lock")
        < script.index("SET LOCAL lock_timeout = 2000;")
        < script.index("SET LOCAL statement_timeout = 60000;")
        < script.index("Running upgrade")
    )


RELATIONS_LOCKED_BY_THIS_TRANSACTION = """
SELECT DISTINCT owner_schema.nspname || '.' || owner_table.relname, lock.mode
FROM pg_catalog.pg_locks AS lock
JOIN pg_catalog.pg_class AS locked ON locked.oid = lock.relation
LEFT JOIN pg_catalog.pg_index AS index_of ON index_of.indexrelid = locked.oid
JOIN pg_catalog.pg_class AS indexed ON indexed.oid = coalesce(index_of.indrelid, locked.oid)
LEFT JOIN pg_catalog.pg_class AS toasted ON toasted.reltoastrelid = indexed.oid
JOIN pg_catalog.pg_class AS owner_table ON owner_table.oid = coalesce(toasted.oid, indexed.oid)
JOIN pg_catalog.pg_namespace AS owner_schema ON owner_schema.oid = owner_table.relnamespace
WHERE lock.pid = pg_catalog.pg_backend_pid() AND lock.locktype = 'relation' AND lock.granted
"""
"""Every table this backend holds a lock on, with the mode; an index, a TOAST table and its index count as their table.

Run inside the upgrade's own transaction, so the tables it created, still
uncommitted, resolve to their names."""


class CampaignWriter:
    """The application: inserts into public.campaigns in a loop, from its own connection.

    Its lock_timeout is 50 ms, so a write that had to wait for the upgrade fails
    at once with LockNotAvailable (55P03) instead of being merely slow: a
    behavioural proof that does not depend on how fast the machine is. Each
    write is counted under the phase current when it started.
    """

    def __init__(self, url) -> None:
        self.url = url
        self.phase = "before"
        self.writes = {"before": 0, "paused": 0, "after": 0}
        self.refused: list[str] = []
        self.slowest = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._write, name="campaign-writer", daemon=True)

    def _write(self) -> None:
        with psycopg.connect(conninfo(self.url), autocommit=True) as writer:
            writer.execute("SET lock_timeout = '50ms'")
            while not self.stop.is_set():
                phase, began = self.phase, time.monotonic()
                try:
                    writer.execute("INSERT INTO public.campaigns (name) VALUES (%s)", (f"written {phase} the upgrade",))
                except psycopg.errors.LockNotAvailable as refused:
                    self.refused.append(f"{phase}: {refused}")
                    continue
                self.slowest = max(self.slowest, time.monotonic() - began)
                self.writes[phase] += 1

    def wait_for_writes(self, phase: str, count: int = 3) -> None:
        wait_until(
            lambda: self.refused or self.writes[phase] >= count, f"{count} writes to campaigns {phase} the upgrade"
        )
        assert self.refused == [], f"writes to campaigns had to wait for the upgrade: {self.refused}"

    def __enter__(self) -> CampaignWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(30)


def is_waha(table: str) -> bool:
    return "waha" in table or table == "public.alembic_version"


def test_upgrade_never_blocks_writers_of_other_tables(fresh_database):
    """The whole upgrade from V1, paused before its commit while it holds every lock it took.

    Meanwhile the application writes public.campaigns (never waiting over 50 ms
    for a lock) and one of its transactions holds a row of it locked. Proven:
    the writes go on before, during and after; the upgrade locks no table
    outside the WAHA objects and only weak locks on PostgreSQL's catalogs; and a
    read of a WAHA table being converted does wait (so the writer's 50 ms would
    catch a blocked write).
    """
    url = fresh_database("empty")
    run_sql(url, V1_FULL + V1_ROW + CAMPAIGNS)
    engine = create_engine(url)
    try:
        with CampaignWriter(url) as application, psycopg.connect(conninfo(url)) as long_transaction:
            long_transaction.execute(
                "UPDATE public.campaigns SET name = name WHERE id = 1"
            )  # row lock held until rollback
            application.wait_for_writes("before")

            with engine.connect() as upgrading, upgrading.begin():
                # lock_timeout 2 s: were the upgrade to need the locked campaigns row or table, it would fail.
                migrate.upgrade(upgrading, owner=OWNER, lock_timeout=2)
                application.phase = "paused"
                locks = set(upgrading.exec_driver_sql(RELATIONS_LOCKED_BY_THIS_TRANSACTION).all())

                application.wait_for_writes("paused")
                with psycopg.connect(conninfo(url), autocommit=True) as reader:
                    reader.execute("SET lock_timeout = '50ms'")
                    with pytest.raises(psycopg.errors.LockNotAvailable):
                        reader.execute("SELECT count(*) FROM public.waha_config")
            application.phase = "after"
            application.wait_for_writes("after")
            long_transaction.rollback()
    finally:
        engine.dispose()

    assert ("waha_legacy.waha_config_v1", "AccessExclusiveLock") in locks, (
        f"the lock query missed the conversion: {locks}"
    )
    outside = sorted(
        (table, mode) for table, mode in locks if not table.startswith("pg_catalog.") and not is_waha(table)
    )
    assert outside == [], f"the upgrade locked tables outside the WAHA objects: {outside}"
    catalog_modes = {mode for table, mode in locks if table.startswith("pg_catalog.")}
    assert catalog_modes <= {"AccessShareLock", "RowExclusiveLock"}, f"strong locks on PostgreSQL's catalogs: {locks}"
    # Information only (no timing bound): the slowest write, which the 50 ms lock_timeout kept from ever blocking.
    assert application.slowest < 30, f"a write to campaigns took {application.slowest:.1f} s"
    assert run_sql(url, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    assert run_sql(url, "SELECT name FROM public.campaigns WHERE id <= 2 ORDER BY id") == [
        ("Black Friday",),
        ("Natal",),
    ]


def test_upgrade_touches_no_object_outside_waha(fresh_database):
    url = fresh_database("empty")
    run_sql(
        url,
        V1_FULL
        + V1_ROW
        + CAMPAIGNS
        + """
        CREATE SCHEMA app;
        CREATE TABLE app.contacts (id bigint PRIMARY KEY, phone text);
        CREATE FUNCTION public.app_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0' $$;
    """,
    )
    before = database_state(url)
    upgrade(url, owner=OWNER)
    after = database_state(url)

    def outside_waha(state):
        return {
            section: {
                name: value for name, value in items.items() if "waha" not in name and "alembic_version" not in name
            }
            for section, items in state["catalog"].items()
            if isinstance(items, dict)
        }, {table: rows for table, rows in state["rows"].items() if "waha" not in table and "alembic" not in table}

    assert outside_waha(after) == outside_waha(before)
