"""`waha-db downgrade`: says what data it removes, asks, refuses without a terminal."""

from __future__ import annotations

from tests.cli.conftest import sql
from tests.cli.test_upgrade import revision_of


def fill(url, user_of, servers: int, sessions: int) -> None:
    user = user_of(url)
    for number in range(servers):
        sql(url, "INSERT INTO public.waha_servers (user_id, nome, api_url) VALUES (%s, %s, %s)",
            (user, f"server {number}", f"https://waha{number}.example"))
    server = sql(url, "SELECT id FROM public.waha_servers WHERE user_id = %s LIMIT 1", (user,))[0][0]
    for number in range(sessions):
        sql(url, "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, %s)",
            (user, server, f"session-{number}"))


def test_downgrade_says_which_tables_and_rows_it_drops_and_refuses_without_terminal(waha_db, fresh_database, user_of):
    url = fresh_database("supabase_head")
    fill(url, user_of, servers=3, sessions=12)
    result = waha_db(url, "downgrade", "base")
    assert result.exit_code == 1
    assert "drops waha_sessions (12 rows) and waha_servers (3 rows)" in result.output
    assert "no terminal to ask on" in result.output
    assert sql(url, "SELECT count(*) FROM public.waha_sessions") == [(12,)]


def test_downgrade_with_yes_removes_everything_to_base(waha_db, fresh_database, user_of):
    url = fresh_database("head")
    fill(url, user_of, servers=1, sessions=0)
    result = waha_db(url, "downgrade", "base", "--yes")
    assert result.exit_code == 0, result.output
    assert "downgraded to base" in result.output
    assert sql(url, "SELECT to_regclass('public.waha_servers')") == [(None,)]
    assert revision_of(url) is None


def test_downgrade_that_drops_no_table_says_so(waha_db, fresh_database, terminal):
    url = fresh_database("head")
    result = waha_db(url, "downgrade", "0003", input="y\n")
    assert result.exit_code == 0, result.output
    assert "no table rows" in result.output
    assert revision_of(url) == "0003"


def test_downgrade_of_the_conversion_says_the_legacy_table_comes_back(waha_db, fresh_database):
    url = fresh_database("legacy_head")
    result = waha_db(url, "downgrade", "0004", "--yes")
    assert result.exit_code == 0, result.output
    assert "puts the legacy public.waha_config back (1 rows" in result.output
    assert sql(url, "SELECT api_url FROM public.waha_config") == [("https://waha.legacy.example",)]


def test_downgrade_without_a_recorded_revision_is_refused(waha_db, fresh_database):
    result = waha_db(fresh_database("empty"), "downgrade", "base", "--yes")
    assert result.exit_code == 1
    assert "nothing to downgrade" in result.output


def test_downgrade_above_the_current_revision_is_refused(waha_db, fresh_database, cluster):
    url = fresh_database("empty")
    cluster.migrate(url.database, "0002")
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
