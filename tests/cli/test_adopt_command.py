"""`waha-db adopt` (and `status`) on V2.1 databases made by hand from the seed's document."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.support.databases import revision_of, run_sql
from tests.support.factories import add_user, hand_made_v21
from waha_db.database import conninfo
from waha_db.lifecycle import revisions


def test_status_says_a_hand_made_database_is_adoptable(waha_db, fresh_database):
    result = waha_db(fresh_database("empty", hand_made_v21()), "status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["state"] == "hand_made" and report["details"] == [] and report["next"] == "waha-db adopt"


def test_adopt_refuses_without_a_terminal(waha_db, fresh_database):
    url = fresh_database("empty", hand_made_v21())
    result = waha_db(url, "adopt")
    assert result.exit_code == 1
    assert "adoption plan:" in result.output and "no terminal to ask on" in result.output
    assert revision_of(url) is None


def test_adopt_keeps_every_row_and_reaches_head_without_drift(waha_db, fresh_database):
    url = fresh_database("empty", hand_made_v21())
    result = waha_db(url, "adopt", "--yes")
    assert result.exit_code == 0, result.output
    assert revision_of(url) == revisions.head()
    assert run_sql(url, "SELECT nome, sessions_ativas FROM public.waha_servers") == [("Servidor Principal", 1)]
    assert run_sql(url, "SELECT session_name, status FROM public.waha_sessions") == [
        ("sessao-cliente-001", "connecting")
    ]
    assert waha_db(url, "status", "--check").exit_code == 0


def test_adopt_lists_the_problems_and_changes_nothing(waha_db, fresh_database):
    url = fresh_database("empty", hand_made_v21(42))
    status = json.loads(waha_db(url, "status", "--json").output)
    assert status["state"] == "hand_made" and any("prioridade" in problem for problem in status["details"])
    result = waha_db(url, "adopt", "--yes")
    assert result.exit_code == 1
    assert "cannot adopt:" in result.output and "prioridade" in result.output
    assert revision_of(url) is None
    assert run_sql(url, "SELECT prioridade FROM public.waha_servers") == [(42,)]


def test_adopting_a_database_that_never_had_waha_config_never_mentions_it(waha_db, fresh_database):
    url = fresh_database("empty", hand_made_v21())
    result = waha_db(url, "adopt", "--yes")
    assert result.exit_code == 0, result.output
    assert "waha_config" not in result.output
    plan = result.output.split("adoption plan:")[1]
    assert plan.count("create table public.waha_server_health\n") == 1  # the table is created once, said once
    assert "create relation public.waha_server_health" not in plan


# What an app adds on its hand-made tables: an audit trigger, an admins' policy, Supabase Realtime.
APP_OBJECTS = """
CREATE TABLE public.audit_log (id bigserial PRIMARY KEY, table_name text, operation text);
CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit_log (table_name, operation) VALUES (TG_TABLE_NAME, TG_OP);
    RETURN NULL;
END $$;
CREATE TRIGGER servers_audit AFTER INSERT OR UPDATE OR DELETE ON public.waha_servers
    FOR EACH ROW EXECUTE FUNCTION public.audit_row();
ALTER TABLE public.waha_servers ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Admins read all" ON public.waha_servers FOR SELECT TO authenticated
    USING ((current_setting('request.jwt.claims', true)::jsonb ->> 'role') = 'admin');
CREATE PUBLICATION supabase_realtime;
ALTER PUBLICATION supabase_realtime ADD TABLE public.waha_sessions;
ALTER TABLE public.waha_sessions REPLICA IDENTITY FULL;
"""
ADMIN = '{"sub": "33333333-3333-4333-8333-333333333333", "role": "admin"}'


@pytest.fixture
def app_built_on_it(fresh_database):
    url = fresh_database("supabase_empty")
    add_user(url, "22222222-2222-4222-8222-222222222222")
    run_sql(url, hand_made_v21() + APP_OBJECTS)
    return url


def servers_an_admin_reads(url) -> int:
    with psycopg.connect(conninfo(url)) as connection:
        connection.execute("SET ROLE authenticated")
        connection.execute("SELECT set_config('request.jwt.claims', %s, true)", (ADMIN,))
        return connection.execute("SELECT count(*) FROM public.waha_servers").fetchone()[0]


def test_adopt_keeps_the_apps_trigger_policy_and_realtime_publication(waha_db, app_built_on_it):
    url = app_built_on_it
    assert servers_an_admin_reads(url) == 1
    result = waha_db(url, "adopt", "--yes")
    assert result.exit_code == 0, result.output
    assert "replace hand-made" not in result.output
    assert "  + keep the app's trigger servers_audit on waha_servers, made again on the rebuilt table" in result.output
    assert '  + keep the app\'s policy "Admins read all" on waha_servers, made again as it was' in result.output
    assert "  + keep waha_sessions in publication supabase_realtime" in result.output
    assert "  + keep REPLICA IDENTITY FULL of waha_sessions" in result.output
    assert revision_of(url) == revisions.head()
    assert run_sql(url, "SELECT pubname, tablename FROM pg_publication_tables") == [
        ("supabase_realtime", "waha_sessions")
    ]
    assert run_sql(url, "SELECT relreplident FROM pg_class WHERE oid = 'public.waha_sessions'::regclass") == [("f",)]
    assert servers_an_admin_reads(url) == 1, "the app's policy still lets an admin read every server"
    run_sql(url, "UPDATE public.waha_servers SET descricao = 'audited'")
    assert run_sql(url, "SELECT table_name, operation FROM public.audit_log") == [("waha_servers", "UPDATE")]
    assert run_sql(url, "SELECT nome FROM public.waha_servers") == [("Servidor Principal",)]


def test_adopt_says_drop_for_what_the_rebuild_does_not_make_again(waha_db, fresh_database):
    url = fresh_database("empty", hand_made_v21())
    run_sql(url, "CREATE INDEX idx_waha_servers_user_id ON public.waha_servers (user_id)")
    run_sql(
        url,
        "CREATE FUNCTION public.waha_set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "NEW.updated_at := now(); RETURN NEW; END $$",
    )
    run_sql(
        url,
        "CREATE TRIGGER update_waha_servers_updated_at BEFORE UPDATE ON public.waha_servers "
        "FOR EACH ROW EXECUTE FUNCTION public.waha_set_updated_at()",
    )
    result = waha_db(url, "adopt", "--yes")
    assert result.exit_code == 0, result.output
    assert "replace hand-made" not in result.output
    assert "  + drop hand-made index public.waha_servers.idx_waha_servers_user_id: " in result.output
    assert (
        "  + drop hand-made trigger update_waha_servers_updated_at on waha_servers: it runs waha_set_updated_at(), "
        "as V2.1's own trigger does"
    ) in result.output
    assert "  + drop hand-made constraint public.waha_sessions.waha_sessions_waha_server_id_fkey: " in result.output
    assert run_sql(url, "SELECT to_regclass('public.idx_waha_servers_user_id')") == [(None,)]
    assert waha_db(url, "status", "--check").exit_code == 0


def test_adopt_refuses_when_it_could_not_put_the_table_back_in_a_publication(waha_db, app_built_on_it):
    url = app_built_on_it
    run_sql(url, "CREATE ROLE waha_adopter LOGIN")
    run_sql(url, f'GRANT CREATE ON DATABASE "{url.database}" TO waha_adopter')
    run_sql(url, "GRANT USAGE ON SCHEMA auth TO waha_adopter; GRANT SELECT ON auth.users TO waha_adopter")
    run_sql(
        url,
        "ALTER TABLE public.waha_servers OWNER TO waha_adopter; ALTER TABLE public.waha_sessions OWNER TO waha_adopter",
    )
    try:
        result = waha_db(url.set(username="waha_adopter"), "adopt", "--yes")
        assert result.exit_code == 1
        assert (
            "publication supabase_realtime lists waha_sessions: adoption must add the rebuilt table to it again, "
            "which takes its owner (postgres); run `waha-db adopt` as postgres"
        ) in result.output
        assert revision_of(url) is None
        assert run_sql(url, "SELECT tablename FROM pg_publication_tables") == [("waha_sessions",)]
    finally:
        run_sql(
            url, "ALTER TABLE public.waha_servers OWNER TO postgres; ALTER TABLE public.waha_sessions OWNER TO postgres"
        )
        run_sql(url, f'REVOKE ALL ON DATABASE "{url.database}" FROM waha_adopter')
        run_sql(url, "REVOKE ALL ON SCHEMA auth FROM waha_adopter; REVOKE ALL ON auth.users FROM waha_adopter")
        run_sql(url, "DROP ROLE waha_adopter")
