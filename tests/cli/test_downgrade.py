"""`waha-db downgrade`: says what data it removes, asks, refuses without a terminal."""

from __future__ import annotations

import pytest

from tests.support.databases import downgrade, revision_of, run_sql, upgrade
from tests.support.factories import LEGACY_OWNER, add_server, add_session, add_user
from waha_db.database import create_engine
from waha_db.lifecycle import plan as plans
from waha_db.lifecycle import revisions


def add_user_with_servers(url, servers: int, sessions: int) -> None:
    """A user with `servers` servers, the first of them holding `sessions` sessions."""
    user = add_user(url)
    first, *_ = [add_server(url, user, f"server {number}") for number in range(servers)]
    for number in range(sessions):
        add_session(url, user, first, f"session-{number}")


def test_downgrade_says_which_tables_and_rows_it_drops_and_refuses_without_terminal(waha_db, fresh_database):
    url = fresh_database("supabase_head")
    add_user_with_servers(url, servers=3, sessions=12)
    result = waha_db(url, "downgrade", "base")
    assert result.exit_code == 1
    assert "drops waha_sessions (12 rows) and waha_servers (3 rows)" in result.output
    assert "no terminal to ask on" in result.output
    assert run_sql(url, "SELECT count(*) FROM public.waha_sessions") == [(12,)]


def test_downgrade_with_yes_removes_everything_to_base(waha_db, fresh_database):
    url = fresh_database("head")
    add_user_with_servers(url, servers=1, sessions=0)
    result = waha_db(url, "downgrade", "base", "--yes")
    assert result.exit_code == 0, result.output
    assert "downgraded to base" in result.output
    assert run_sql(url, "SELECT to_regclass('public.waha_servers')") == [(None,)]
    assert revision_of(url) is None


def test_downgrade_that_drops_no_table_says_so(waha_db, fresh_database, terminal):
    url = fresh_database("empty")
    upgrade(url, "0006")
    result = waha_db(url, "downgrade", "0003", input="y\n")
    assert result.exit_code == 0, result.output
    assert "no table rows" in result.output
    assert revision_of(url) == "0003"


def test_downgrade_below_0007_says_it_drops_the_health_of_the_servers(waha_db, fresh_database):
    url = fresh_database("head")
    add_user_with_servers(url, servers=2, sessions=0)
    run_sql(
        url, "INSERT INTO public.waha_server_health (server_id, user_id) SELECT id, user_id FROM public.waha_servers"
    )
    result = waha_db(url, "downgrade", "0006", "--yes")
    assert result.exit_code == 0, result.output
    assert "drops waha_server_health (2 rows)" in result.output
    assert "no table rows" not in result.output
    assert run_sql(url, "SELECT to_regclass('public.waha_server_health')") == [(None,)]


def test_downgrade_below_0009_says_it_drops_what_the_servers_reported_being(waha_db, fresh_database):
    url = fresh_database("head")
    add_user_with_servers(url, servers=3, sessions=0)
    run_sql(
        url,
        "SELECT public.report_waha_server_version(id, '2025.1.2', 'WEBJS', 'CORE') FROM public.waha_servers LIMIT 2",
    )
    result = waha_db(url, "downgrade", "0007", "--yes")
    assert result.exit_code == 0, result.output
    assert (
        "drops columns waha_version, waha_engine, waha_tier, identified_at of waha_server_health (2 rows hold values)"
        in result.output
    )
    assert run_sql(url, "SELECT count(*) FROM public.waha_server_health") == [(2,)], "the health rows stay"


def test_downgrade_of_the_conversion_says_the_legacy_table_comes_back(waha_db, fresh_database):
    url = fresh_database("legacy_head")
    result = waha_db(url, "downgrade", "0004", "--yes")
    assert result.exit_code == 0, result.output
    assert "puts the legacy public.waha_config back (1 row" in result.output
    assert "the servers converted from it stay in waha_servers until 0002 is undone" in result.output
    assert "notice: waha_config is back in public as it was before the upgrade; the converted server stays in " in (
        result.output
    )
    assert run_sql(url, "SELECT api_url FROM public.waha_config") == [("https://waha.legacy.example",)]


def test_downgrade_to_base_never_says_the_converted_server_stays_in_a_table_it_drops(waha_db, fresh_database):
    url = fresh_database("legacy_head")
    result = waha_db(url, "downgrade", "base", "--yes")
    assert result.exit_code == 0, result.output
    assert "stays in waha_servers" not in result.output and "stay in waha_servers" not in result.output
    assert "the servers converted from it go with waha_servers (0002 is undone too)" in result.output
    assert "notice: waha_config is back in public as it was before the upgrade; the converted server went with " in (
        result.output
    )
    assert run_sql(url, "SELECT to_regclass('public.waha_servers')") == [(None,)]
    status = waha_db(url, "status").output
    again = waha_db(url, "downgrade", "base", "--yes").output
    assert "current revision: none (alembic_version is empty)" in again
    assert "no revision is recorded in this database (alembic_version is empty)" in again
    assert "none (no alembic_version)" not in status + again


def test_downgrade_without_a_recorded_revision_is_refused(waha_db, fresh_database):
    result = waha_db(fresh_database("empty"), "downgrade", "base", "--yes")
    assert result.exit_code == 1
    assert "nothing to downgrade" in result.output
    assert "current revision: none (no alembic_version)" in result.output


def test_downgrade_above_the_current_revision_is_refused(waha_db, fresh_database):
    url = fresh_database("empty")
    upgrade(url, "0002")
    result = waha_db(url, "downgrade", "0004", "--yes")
    assert result.exit_code == 1
    assert "is above the current revision 0002" in result.output


def test_downgrade_sql_needs_no_database(waha_db):
    result = waha_db(None, "downgrade", "base", "--sql")
    assert result.exit_code == 0, result.output
    assert "DROP TABLE public.waha_sessions" in result.output


def test_unknown_revision_lists_the_known_ones(waha_db, fresh_database):
    result = waha_db(fresh_database("head"), "downgrade", "9999", "--yes")
    assert result.exit_code == 1
    assert "no revision '9999': the revisions are 0001, 0002" in result.output


def test_downgrade_of_a_database_at_an_unknown_revision_is_refused_and_says_to_upgrade_waha_db(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "UPDATE public.alembic_version SET version_num = '9999'")
    result = waha_db(url, "downgrade", "0006", "--yes")
    assert result.exit_code == 1
    assert "current revision: 9999" in result.output
    assert "this database is at revision 9999, which this waha-db does not know" in result.output
    assert "Upgrade waha-db" in result.output
    assert revision_of(url) == "9999"


# --- the plan names every table a downgrade drops ---------------------------------------------------


def tables(url) -> set[str]:
    """Every table of the database, schema-qualified, but the catalogs' and Alembic's own."""
    return {
        name
        for (name,) in run_sql(
            url,
            """
        SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
          AND (n.nspname, c.relname) <> ('public', 'alembic_version')""",
        )
    }


def public_columns(url) -> set[str]:
    """Every column of the tables of schema public, as table.column."""
    return {
        f"{table}.{column}"
        for table, column in run_sql(
            url, "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        )
    }


def planned_drops(url, target: str) -> tuple[set[str], set[str]]:
    """The tables, and the columns of tables that stay, that the plan of a downgrade to `target` says it drops."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            plan = plans.plan_downgrade(connection, target)
    finally:
        engine.dispose()
    return {f"public.{table}" for table, _ in plan.drops}, {f"{table}.{column}" for table, column in plan.drops_columns}


def test_every_table_and_column_a_revisions_downgrade_drops_is_in_its_plan(fresh_database):
    """Undo the revisions one at a time from head: a new revision whose downgrade drops a
    table that migrate.tables_created, or a column that migrate.columns_added, does not
    find in its SQL fails here."""
    url = fresh_database("head")
    script = revisions.script_directory()
    for revision in script.walk_revisions():  # head first
        target = revision.down_revision or "base"
        tables_before, columns_before = tables(url), public_columns(url)
        planned_tables, planned_columns = planned_drops(url, target)
        downgrade(url, target)
        tables_after = tables(url)
        assert planned_tables == tables_before - tables_after, f"downgrade of {revision.revision}"
        kept = {name.split(".", 1)[1] for name in tables_after if name.startswith("public.")}
        dropped_columns = {name for name in columns_before - public_columns(url) if name.split(".")[0] in kept}
        assert planned_columns == dropped_columns, f"downgrade of {revision.revision}"


def test_downgrade_to_base_counts_the_rows_of_the_waha_config_0001_made(waha_db, fresh_database):
    """0001 made waha_config on a fresh install; the app wrote to it before the conversion:
    undoing 0001 drops it, rows and all, and the plan says so."""
    url = fresh_database("empty")
    upgrade(url, "0004")
    run_sql(url, "INSERT INTO public.waha_config (id, api_url) VALUES (1, 'https://waha.written-later.example')")
    upgrade(url, "head", owner=LEGACY_OWNER)
    result = waha_db(url, "downgrade", "base", "--yes")
    assert result.exit_code == 0, result.output
    assert "drops waha_config (1 row)" in result.output
    assert run_sql(url, "SELECT to_regclass('public.waha_config')") == [(None,)]


@pytest.mark.parametrize("target", ["0004", "base"])
def test_downgrade_keeps_the_legacy_waha_config_of_the_dba_and_does_not_count_it_as_dropped(
    waha_db, fresh_database, target
):
    url = fresh_database("legacy_head")
    result = waha_db(url, "downgrade", target, "--yes")
    assert result.exit_code == 0, result.output
    assert "drops waha_config" not in result.output
    assert run_sql(url, "SELECT api_url FROM public.waha_config") == [("https://waha.legacy.example",)]
