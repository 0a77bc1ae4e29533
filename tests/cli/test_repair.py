"""`waha-db repair`: head's definitions back, after the seed's `GRANT ALL` or a dropped index; all or nothing."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.databases import run_sql
from tests.support.factories import add_server, add_user
from waha_db.database import conninfo

SEED_GRANTS = (
    "GRANT ALL ON public.waha_servers TO authenticated, service_role; "
    "GRANT ALL ON public.waha_sessions TO authenticated, service_role;"
)


def authenticated_may_truncate(url) -> bool:
    with psycopg.connect(conninfo(url)) as connection:
        connection.execute("SET ROLE authenticated")
        try:
            connection.execute("TRUNCATE public.waha_sessions")
        except psycopg.errors.InsufficientPrivilege:
            return False
        except psycopg.errors.FeatureNotSupported:
            # Allowed: the privilege is checked first; then waha_session_last_event's foreign key
            # (revision 0012) stops a TRUNCATE of waha_sessions alone.
            return True
        finally:
            connection.rollback()
        return True


def test_the_seeds_grant_all_lets_a_signed_in_user_truncate_until_repair_revokes_it(waha_db, fresh_database):
    url = fresh_database("supabase_head")
    run_sql(url, SEED_GRANTS)
    assert authenticated_may_truncate(url)
    result = waha_db(url, "repair", "--yes")
    assert result.exit_code == 0, result.output
    assert "  REVOKE ALL ON TABLE public.waha_sessions FROM authenticated;" in result.output
    assert "  GRANT DELETE, INSERT, SELECT, UPDATE ON TABLE public.waha_sessions TO authenticated;" in result.output
    assert not authenticated_may_truncate(url)
    assert waha_db(url, "status", "--check").exit_code == 0


def test_repair_asks_first_and_changes_nothing_without_a_yes(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, SEED_GRANTS)
    result = waha_db(url, "repair")
    assert result.exit_code == 1 and "no terminal to ask on" in result.output
    assert authenticated_may_truncate(url)


@pytest.mark.parametrize("kind", ["head", "supabase_head"])
def test_repair_of_a_database_without_drift_has_nothing_to_do(waha_db, fresh_database, kind):
    result = waha_db(fresh_database(kind), "repair", "--yes")
    assert result.exit_code == 0, result.output
    assert "nothing to repair" in result.output


def test_repair_runs_nothing_when_part_of_the_drift_needs_a_person(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "DROP INDEX public.waha_servers_ativo_idx")
    run_sql(url, "ALTER TABLE public.waha_servers ALTER COLUMN timeout SET DEFAULT 60")
    result = waha_db(url, "repair", "--yes")
    assert result.exit_code == 1
    assert "changed column public.waha_servers.timeout" in result.output and "nothing was changed" in result.output
    assert run_sql(url, "SELECT to_regclass('public.waha_servers_ativo_idx')") == [(None,)]


def test_repair_drops_a_policy_head_does_not_have(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "CREATE POLICY everyone_reads ON public.waha_servers FOR SELECT TO authenticated USING (true)")
    result = waha_db(url, "repair", "--yes")
    assert result.exit_code == 0, result.output
    assert "DROP POLICY everyone_reads ON public.waha_servers;" in result.output
    assert waha_db(url, "status", "--check").exit_code == 0


def same_url_twice(url) -> str | None:
    """Add one server under two spellings of its URL; the SQLSTATE of the refusal (None: accepted), rolled back."""
    with psycopg.connect(conninfo(url)) as connection:
        try:
            user = add_user(connection)
            for spelling in ("https://waha.example.test", "HTTPS://waha.example.test:443/"):
                add_server(connection, user, spelling, api_url=spelling)
        except psycopg.errors.UniqueViolation as error:
            return error.sqlstate
        finally:
            connection.rollback()
    return None


@pytest.mark.parametrize("kind", ["head", "supabase_head"])
def test_repair_creates_a_dropped_function_before_the_index_that_calls_it(waha_db, fresh_database, kind):
    url = fresh_database(kind)
    run_sql(url, "DROP FUNCTION public.waha_normalized_url(text) CASCADE")  # the 0010 unique index goes with it
    assert same_url_twice(url) is None
    status = waha_db(url, "status").output
    assert "missing index public.waha_servers.waha_servers_user_id_normalized_api_url_key" in status
    assert "next: waha-db repair" in status
    result = waha_db(url, "repair", "--yes")
    assert result.exit_code == 0, result.output
    statements = result.output.split("statements that restore head's definitions:")[1]
    assert statements.index("FUNCTION public.waha_normalized_url") < statements.index("CREATE UNIQUE INDEX")
    assert same_url_twice(url) == "23505"
    assert waha_db(url, "status", "--check").exit_code == 0, waha_db(url, "status").output


@pytest.mark.parametrize("kind", ["head", "supabase_head"])
def test_a_function_repair_creates_gets_no_privilege_head_does_not_give(waha_db, fresh_database, kind):
    url = fresh_database(kind)
    run_sql(url, "DROP FUNCTION public.waha_normalized_url(text) CASCADE")
    result = waha_db(url, "repair", "--yes")
    assert result.exit_code == 0, result.output
    assert "REVOKE ALL ON FUNCTION public.waha_normalized_url(url text) FROM PUBLIC;" in result.output
    grantees = run_sql(
        url,
        "SELECT CASE acl.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(acl.grantee) END FROM pg_proc p, "
        "aclexplode(p.proacl) AS acl WHERE p.oid = 'public.waha_normalized_url(text)'::regprocedure "
        "AND acl.grantee <> p.proowner ORDER BY 1",
    )
    assert grantees == [("authenticated",), ("service_role",)]


def test_repair_drops_an_extra_policy_whose_name_holds_spaces(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, 'CREATE POLICY "Admins read all" ON public.waha_servers FOR SELECT TO authenticated USING (true)')
    assert "next: waha-db repair" in waha_db(url, "status").output
    result = waha_db(url, "repair", "--yes")
    assert result.exit_code == 0, result.output
    assert 'DROP POLICY "Admins read all" ON public.waha_servers;' in result.output


def test_alembic_version_open_to_anon_is_drift_that_repair_closes(waha_db, fresh_database):
    url = fresh_database("supabase_head")
    run_sql(url, "GRANT SELECT, UPDATE, DELETE ON public.alembic_version TO anon")
    run_sql(url, "ALTER TABLE public.alembic_version DISABLE ROW LEVEL SECURITY")
    status = waha_db(url, "status", "--check")
    assert status.exit_code == 1
    assert "unexpected grants on public.alembic_version: 'anon: DELETE, SELECT, UPDATE'" in status.output
    assert "changed row security of public.alembic_version: head has 'on', database has 'off'" in status.output
    result = waha_db(url, "repair", "--yes")
    assert result.exit_code == 0, result.output
    assert "  REVOKE ALL ON TABLE public.alembic_version FROM anon;" in result.output
    assert "  ALTER TABLE public.alembic_version ENABLE ROW LEVEL SECURITY;" in result.output
    with psycopg.connect(conninfo(url)) as connection:
        connection.execute("SET ROLE anon")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("UPDATE public.alembic_version SET version_num = '0004'")
    assert waha_db(url, "status", "--check").exit_code == 0
