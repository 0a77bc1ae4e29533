"""The checks `verify` runs, run by the tests on every kind of database, and shown to fail when they should.

Every check of waha_db.checks.suite passes on a fresh plain database, a Supabase-like
one, and a legacy V1 database with a filled waha_config (each with an application
table that must survive), with the catalog snapshot and with pg_dump as the schema.
"""

from __future__ import annotations

import pytest

from tests.support.databases import run_sql
from waha_db.checks import suite
from waha_db.lifecycle import revisions

# The kinds of checked_database (tests/checks/conftest.py).
KINDS = ("empty", "supabase_empty", "legacy")

# The legacy conversion check brings its own V1 table: it needs a database without one.
CASES = [
    (kind, name, check)
    for kind in KINDS
    for name, check in suite.CHECKS
    if not (kind == "legacy" and check is suite.check_legacy_conversion)
]


@pytest.mark.parametrize(("kind", "name", "check"), CASES, ids=[f"{kind}-{check.__name__}" for kind, _, check in CASES])
def test_every_check_passes_on_every_kind_of_database(checked_database, kind, name, check):
    database = checked_database(kind)
    check(database)


def test_there_is_one_head():
    assert suite.check_one_head() == revisions.head()


def test_the_legacy_conversion_check_needs_a_database_without_waha_config(checked_database):
    with pytest.raises(suite.CheckFailed, match="already holds a public.waha_config"):
        suite.check_legacy_conversion(checked_database("legacy"))


def test_legacy_rows_and_the_applications_table_survive_the_whole_stairway(checked_database):
    database = checked_database("legacy")
    suite.check_revisions_up_down_up(database)
    suite.check_downgrade_to_base(database)
    assert database.rows() == database.baseline_rows


# --- each check can fail ---------------------------------------------------------------------------------


class ForgetfulDowngrade(suite.Database):
    """A database on which undoing one revision leaves that revision's objects in place."""

    forgotten = "0003"

    def downgrade(self, revision: str) -> None:
        if revision == revisions.previous(self.forgotten) and self.revision() == self.forgotten:
            with self.engine.begin() as connection:  # record the step down without undoing anything
                connection.exec_driver_sql(f"UPDATE public.alembic_version SET version_num = '{revision}'")
            return
        super().downgrade(revision)


def test_stairway_reports_a_downgrade_that_does_not_undo_its_upgrade(fresh_database):
    database = ForgetfulDowngrade(fresh_database("empty"))
    try:
        with pytest.raises(suite.CheckFailed) as failure:
            suite.check_revisions_up_down_up(database)
    finally:
        database.close()
    assert any(
        line.startswith("0003: unexpected function public.get_available_waha_server") for line in failure.value.details
    )


def test_downgrade_to_base_reports_an_object_left_behind(checked_database, cluster):
    database = checked_database("empty")
    database.head()
    run_sql(database.url, "CREATE FUNCTION public.waha_stray() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    with pytest.raises(suite.CheckFailed) as failure:
        suite.check_downgrade_to_base(database)
    assert any("waha_stray" in line for line in failure.value.details)


def test_downgrade_to_base_reports_rows_of_the_application_that_changed(checked_database, cluster):
    database = checked_database("empty")
    database.head()
    run_sql(database.url, "DELETE FROM public.campaigns WHERE name = 'Natal'")
    with pytest.raises(suite.CheckFailed) as failure:
        suite.check_downgrade_to_base(database)
    assert failure.value.details == ["rows of public.campaigns differ from before the upgrade"]


def test_seed_examples_report_a_selection_that_breaks_the_seeds_order(fresh_database, cluster):
    url = fresh_database("head")
    # Priority turned upside down (the levels walked from the bottom, and the fallback's
    # order): the seed's Principal (10) would lose to Backup (5).
    run_sql(
        url,
        "UPDATE pg_catalog.pg_proc "
        "SET prosrc = replace(replace(prosrc, 'prioridade DESC', 'prioridade ASC'), 'level DESC', 'level ASC') "
        "WHERE proname = 'get_available_waha_server'",
    )
    database = suite.Database(url)
    try:
        with pytest.raises(suite.CheckFailed) as failure:
            suite.check_seed_examples(database)
    finally:
        database.close()
    assert any(line.startswith("como_usar_best_server_is_the_principal:") for line in failure.value.details)
