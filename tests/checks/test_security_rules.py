"""suite.check_security_rules: Supabase's linter rules hold at head, and each broken rule is reported."""

from __future__ import annotations

import pytest

from tests.support.databases import run_sql
from waha_db.checks import suite


def security_problems(url, *tampering: str) -> list[str]:
    """What verify's security check reports on the database at `url` after `tampering` (committed: the clone is the test's own)."""
    for statement in tampering:
        run_sql(url, statement)
    database = suite.Database(url)
    try:
        suite.check_security_rules(database)
        return []
    except suite.CheckFailed as failure:
        return failure.details
    finally:
        database.close()


@pytest.mark.parametrize("kind", ["head", "supabase_head"])
def test_security_rules_hold_at_head(fresh_database, kind):
    assert security_problems(fresh_database(kind)) == []


def test_security_rules_report_a_foreign_key_whose_index_has_its_columns_in_another_order(fresh_database):
    """Supabase's linter compares in order: an index on (user_id, server_id) does not cover a key on (server_id, user_id)."""
    problems = security_problems(
        fresh_database("supabase_head"),
        "ALTER TABLE public.waha_server_health DROP CONSTRAINT waha_server_health_user_id_server_id_fkey",
        "ALTER TABLE public.waha_server_health ADD CONSTRAINT waha_server_health_reversed_fkey "
        "FOREIGN KEY (server_id, user_id) REFERENCES public.waha_servers (id, user_id)",
    )
    assert problems == [
        "foreign key without an index led by its columns in its order: waha_server_health.waha_server_health_reversed_fkey"
    ]


def test_security_rules_report_a_bare_with_check_next_to_a_wrapped_using(fresh_database):
    problems = security_problems(
        fresh_database("head"),
        "ALTER POLICY waha_servers_update_own ON public.waha_servers WITH CHECK (user_id = public.waha_request_user_id())",
    )
    assert problems == [
        "policy that evaluates the caller per row, not once per query (write it as (select ...)): waha_servers.waha_servers_update_own WITH CHECK"
    ]


def test_security_rules_report_two_permissive_policies_for_one_role_and_command(fresh_database):
    problems = security_problems(
        fresh_database("supabase_head"),
        "CREATE POLICY waha_sessions_select_shared ON public.waha_sessions FOR SELECT TO authenticated "
        "USING (status = (SELECT 'WORKING'))",
    )
    assert problems == [
        "more than one permissive policy for a role and command: "
        "waha_sessions: authenticated SELECT (waha_sessions_select_own, waha_sessions_select_shared)"
    ]


def test_restrictive_policy_next_to_a_permissive_one_is_not_reported(fresh_database):
    problems = security_problems(
        fresh_database("head"),
        "CREATE POLICY waha_sessions_select_working ON public.waha_sessions AS RESTRICTIVE FOR SELECT TO authenticated "
        "USING (status = (SELECT 'WORKING'))",
    )
    assert problems == []


@pytest.mark.parametrize("kind", ["head", "supabase_head"])
def test_security_rules_report_alembic_version_given_back_to_the_app(fresh_database, kind):
    """What Supabase's default privileges did before revision 0011, and a DBA may do by hand."""
    problems = security_problems(
        fresh_database(kind),
        "GRANT SELECT, UPDATE ON public.alembic_version TO authenticated",
        "GRANT ALL ON public.alembic_version TO PUBLIC",
        "ALTER TABLE public.alembic_version DISABLE ROW LEVEL SECURITY",
    )
    rule = "alembic_version open to the app's roles (no grant to PUBLIC, anon, authenticated, service_role; row security on)"
    assert f"{rule}: PUBLIC has UPDATE" in problems
    assert f"{rule}: authenticated has SELECT" in problems
    assert f"{rule}: row security is off" in problems
    assert all(problem.startswith(rule) for problem in problems)


def test_security_rules_report_alembic_version_readable_by_anon(fresh_database):
    problems = security_problems(fresh_database("supabase_head"), "GRANT SELECT ON public.alembic_version TO anon")
    assert problems == [
        "alembic_version open to the app's roles (no grant to PUBLIC, anon, authenticated, service_role; "
        "row security on): anon has SELECT"
    ]
