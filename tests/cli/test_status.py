"""`waha-db status`: the state of a database, drift from head, and --check for deploy scripts."""

from __future__ import annotations

import json

from tests.support.databases import run_sql, server_version, upgrade
from waha_db.lifecycle import revisions

HEAD = revisions.head()


def test_empty_database(waha_db, fresh_database):
    result = waha_db(fresh_database("empty"), "status")
    assert result.exit_code == 0, result.output
    assert "state: empty: no WAHA objects" in result.output
    assert "next: waha-db upgrade" in result.output


def test_check_fails_unless_at_head(waha_db, fresh_database):
    result = waha_db(fresh_database("empty"), "status", "--check")
    assert result.exit_code == 1
    assert "not at head" in result.output


def test_head_without_drift_passes_check(waha_db, fresh_database):
    for kind in ("head", "supabase_head", "legacy_head"):
        result = waha_db(fresh_database(kind), "status", "--check")
        assert result.exit_code == 0, (kind, result.output)
        assert f"at head ({HEAD})" in result.output


def test_legacy_database_names_the_server_to_convert(waha_db, legacy_url):
    result = waha_db(legacy_url, "status")
    assert result.exit_code == 0, result.output
    assert "state: legacy V1: waha_config holds 1 WAHA server(s) to convert" in result.output
    assert "to convert: https://waha.legacy.example" in result.output
    assert "next: waha-db upgrade --owner UUID" in result.output


def test_managed_database_with_pending_revisions(waha_db, fresh_database):
    url = fresh_database("empty")
    upgrade(url, "0003")
    result = waha_db(url, "status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["current"] == "0003" and report["at_head"] is False
    assert report["pending"] == migrate_revisions_after("0003")
    assert report["next"] == "waha-db upgrade"


def migrate_revisions_after(revision: str) -> list[str]:
    ids = [script.revision for script in reversed(list(revisions.script_directory().walk_revisions()))]
    return ids[ids.index(revision) + 1 :]


def test_unknown_revision_is_said_and_fails_check(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "UPDATE public.alembic_version SET version_num = '9999'")
    result = waha_db(url, "status", "--check")
    assert result.exit_code == 1
    assert "at revision 9999, unknown to this waha-db" in result.output


def test_drift_names_what_differs_and_fails_check(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "DROP INDEX public.waha_servers_ativo_idx")
    run_sql(url, "DROP POLICY waha_sessions_delete_own ON public.waha_sessions")
    run_sql(url, "ALTER TABLE public.waha_servers ALTER COLUMN timeout SET DEFAULT 60")
    result = waha_db(url, "status", "--check")
    assert result.exit_code == 1
    assert "drifted" in result.output
    assert "missing index public.waha_servers.waha_servers_ativo_idx" in result.output
    assert "missing policy public.waha_sessions.waha_sessions_delete_own" in result.output
    assert "changed column public.waha_servers.timeout" in result.output and "DEFAULT 60" in result.output


def test_hand_made_schema_points_to_adopt(waha_db, fresh_database):
    url = fresh_database("empty")
    run_sql(url, "CREATE TABLE public.waha_servers (id uuid PRIMARY KEY, user_id uuid NOT NULL)")
    result = waha_db(url, "status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["state"] == "hand_made" and "adopt" in report["next"]


def test_status_names_the_server_version(waha_db, fresh_database):
    url = fresh_database("head")
    _, version = server_version(url)
    assert f"server: PostgreSQL {version}\n" in waha_db(url, "status").output
    assert json.loads(waha_db(url, "status", "--json").output)["server_version"] == version


def test_one_difference_is_said_in_the_singular(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "DROP INDEX public.waha_servers_ativo_idx")
    assert f"state: at head ({HEAD}) but drifted from it: 1 difference\n" in waha_db(url, "status").output


def test_a_function_indented_anew_shows_the_indentation_that_differs(waha_db, fresh_database):
    url = fresh_database("head")
    ((definition,),) = run_sql(url, "SELECT pg_get_functiondef('public.release_waha_session(uuid)'::regprocedure)")
    run_sql(url, definition.replace("\n        DECLARE\n", "\n\tDECLARE\n", 1))  # re-indented by hand
    output = waha_db(url, "status").output
    (line,) = [line for line in output.splitlines() if "changed function public.release_waha_session" in line]
    number = definition.splitlines().index("        DECLARE") + 1
    assert line.strip() == (
        f"changed function public.release_waha_session(session_id uuid): line {number} differs only in whitespace "
        "(\u00b7 a space, \u2192 a tab): head has '\u00b7\u00b7\u00b7\u00b7\u00b7\u00b7\u00b7\u00b7DECLARE', "
        "database has '\u2192DECLARE'"
    )
