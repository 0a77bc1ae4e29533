"""Revision 0011 as a DBA meets it: alembic_version out of the API roles' reach on every path, rows the new
rules refuse listed with the statements that fix them, a recorded revision 0010 checked before it is
believed, and a downgrade that never opens alembic_version again."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from click.testing import CliRunner

from tests.migrations.upgrade_support import V1_FULL, psql, run_alembic
from tests.support.databases import database_state, downgrade, run_sql, upgrade
from tests.support.factories import add_server, add_user
from waha_db import cli
from waha_db.database import conninfo
from waha_db.lifecycle import revisions
from waha_db.lifecycle.migrate import (
    FULL_SCHEMA_PATH,
    DataRefused,
    LegacyConversionRefused,
    RecordedRevisionRefused,
    offline_sql,
)

REVISION = "0011"
BELOW = revisions.previous(REVISION)
USER = uuid.UUID("0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44")
OWNER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"

API_ROLES = ("anon", "authenticated")
ATTEMPTS = {
    "SELECT": "SELECT version_num FROM public.alembic_version",
    "UPDATE": "UPDATE public.alembic_version SET version_num = '0004'",
    "DELETE": "DELETE FROM public.alembic_version",
}
INSUFFICIENT_PRIVILEGE = "42501"
OPEN_TO = """
SELECT CASE WHEN acl.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(acl.grantee) END, acl.privilege_type
FROM pg_catalog.pg_class AS c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS acl
WHERE c.oid = 'public.alembic_version'::regclass AND acl.grantee <> c.relowner ORDER BY 1, 2
"""


def api_role_outcomes(url) -> dict[str, str]:
    """What anon and authenticated (with a signed-in user's claims) get for each statement on
    alembic_version: the command tag, or the SQLSTATE that refused it; every attempt rolled back."""
    outcomes = {}
    with psycopg.connect(conninfo(url)) as connection:
        for role in API_ROLES:
            for command, statement in ATTEMPTS.items():
                with connection.transaction(force_rollback=True):
                    connection.execute(f"SET LOCAL ROLE {role}")
                    claims = json.dumps({"sub": str(USER), "role": role})
                    connection.execute("SELECT pg_catalog.set_config('request.jwt.claims', %s, true)", (claims,))
                    try:
                        with connection.transaction():
                            cursor = connection.execute(statement)
                        outcomes[f"{role} {command}"] = cursor.statusmessage
                    except psycopg.Error as error:
                        outcomes[f"{role} {command}"] = error.sqlstate
    return outcomes


def closed_to_the_api(url) -> bool:
    """No role but the owner holds a privilege on alembic_version, its row security is on, and
    anon and authenticated are refused whatever they try."""
    grants = run_sql(url, OPEN_TO)
    row_security = run_sql(
        url, "SELECT relrowsecurity FROM pg_catalog.pg_class WHERE oid = 'public.alembic_version'::regclass"
    )
    refused = set(api_role_outcomes(url).values()) == {INSUFFICIENT_PRIVILEGE}
    return grants == [] and row_security == [(True,)] and refused


def by_waha_db(cluster, url) -> None:
    done = CliRunner().invoke(
        cli.main, ["--database-url", url.render_as_string(hide_password=False), "upgrade", "--yes"]
    )
    assert done.exit_code == 0, done.output


def by_alembic(cluster, url) -> None:
    done = run_alembic(url, "upgrade", "head")
    assert done.returncode == 0, done.stdout + done.stderr


def by_offline_script(cluster, url) -> None:
    done = psql(cluster, url, input=offline_sql("head"))
    assert done.returncode == 0, done.stderr


def by_schema_file(cluster, url) -> None:
    done = psql(cluster, url, "-f", str(FULL_SCHEMA_PATH))
    assert done.returncode == 0, done.stderr


def step_by_step(cluster, url) -> None:
    """To the revision below, committed (the API roles could write alembic_version then), then on to head."""
    upgrade(url, BELOW)
    assert not closed_to_the_api(url)
    upgrade(url)


PATHS = {
    "waha-db upgrade": by_waha_db,
    "alembic upgrade head": by_alembic,
    "waha-db upgrade --sql | psql": by_offline_script,
    "psql -f sql/schema.sql": by_schema_file,
    "upgrade 0010, then head": step_by_step,
}


@pytest.mark.parametrize("path", PATHS)
def test_alembic_version_is_closed_to_the_api_roles_on_every_path(cluster, fresh_database, path):
    url = fresh_database("supabase_empty")
    PATHS[path](cluster, url)
    assert run_sql(url, "SELECT version_num FROM public.alembic_version") == [(revisions.head(),)]
    assert api_role_outcomes(url) == {
        f"{role} {command}": INSUFFICIENT_PRIVILEGE for role in API_ROLES for command in ATTEMPTS
    }
    assert closed_to_the_api(url)


def test_below_0011_the_api_roles_could_move_the_revision(fresh_database):
    """What revision 0011 closes: Supabase's default privileges gave alembic_version to anon and authenticated."""
    url = fresh_database("supabase_empty")
    upgrade(url, BELOW)
    assert api_role_outcomes(url) == {
        f"{role} {command}": tag
        for role in API_ROLES
        for command, tag in (("SELECT", "SELECT 1"), ("UPDATE", "UPDATE 1"), ("DELETE", "DELETE 1"))
    }


@pytest.mark.parametrize("kind", ["empty", "legacy_head"])
def test_closed_on_plain_postgresql_and_an_upgraded_legacy_database(fresh_database, kind):
    url = fresh_database(kind)
    upgrade(url, owner=OWNER)
    assert closed_to_the_api(url)


# --- rows the new rules refuse ----------------------------------------------------------------------


@pytest.fixture
def below(fresh_database):
    url = fresh_database("supabase_empty")
    add_user(url, USER)
    upgrade(url, BELOW)
    return url


def test_rows_the_new_rules_refuse_are_listed_with_their_fix_and_nothing_changes(below):
    probe_trap = add_server(
        below,
        USER,
        "trap",
        api_url="http://127.0.0.1:55459/admin/delete-everything?confirm=yes#",
        timeout=999,
        retry_attempts=50,
    )
    hooked = add_server(
        below,
        USER,
        "hooked",
        api_url="https://waha.example/api",
        webhook_url="https://hooks.example/w?token=t0k3n#hook-frag",
    )
    add_server(below, USER, "fine", api_url="https://fine.example", timeout=120, retry_attempts=10)
    before = database_state(below)

    with pytest.raises(DataRefused) as refused:
        upgrade(below)
    message = str(refused.value)
    first, second = sorted([probe_trap, hooked])
    fixes = {
        probe_trap: f"UPDATE public.waha_servers SET api_url = 'http://127.0.0.1:55459/admin/delete-everything', "
        f"timeout = 120, retry_attempts = 10 WHERE id = '{probe_trap}';",
        hooked: f"UPDATE public.waha_servers SET webhook_url = 'https://hooks.example/w' WHERE id = '{hooked}';",
    }
    problems = {
        probe_trap: "api_url has a query (?...); api_url has a fragment (#...); timeout 999 is not between 1 and 120 "
        "seconds; retry_attempts 50 is not between 0 and 10",
        hooked: "webhook_url has a query (?...); webhook_url has a fragment (#...)",
    }
    names = {probe_trap: "trap", hooked: "hooked"}
    assert message.splitlines() == [
        "waha_servers holds 2 server(s) that the new rules refuse (a URL without user, password, query or fragment; "
        "timeout 1 to 120 seconds; retry_attempts 0 to 10):",
        *(f"  - server {server} ('{names[server]}') of user {USER}: {problems[server]}" for server in (first, second)),
        "Fix each server, then run the upgrade again (each URL loses what the rules refuse, each number goes to the "
        "nearest bound):",
        *(f"  {fixes[server]}" for server in (first, second)),
        "Nothing was changed: the upgrade runs in one transaction.",
        "WAHA's key belongs in api_key, a webhook's in webhook_secret, not in a URL. If an UPDATE fails because the "
        "user has that URL already, keep one of the two servers (waha-db servers remove ID).",
    ]
    for secret in ("confirm=yes", "hook-frag", "t0k3n"):
        assert secret not in message
    assert database_state(below) == before

    for server in (first, second):
        run_sql(below, fixes[server])
    upgrade(below)
    assert run_sql(below, "SELECT version_num FROM public.alembic_version") == [(revisions.head(),)]


def test_the_offline_script_refuses_the_same_rows(cluster, below):
    add_server(below, USER, "trap", api_url="https://waha.example/?x=1", timeout=999)
    done = psql(cluster, below, input=offline_sql("head", start=BELOW))
    assert done.returncode != 0
    assert "waha_servers holds 1 server(s) that the new rules refuse" in done.stderr
    assert "SET api_url = 'https://waha.example/', timeout = 120 WHERE id = " in done.stderr
    assert run_sql(below, "SELECT version_num FROM public.alembic_version") == [(BELOW,)]


def test_legacy_values_the_new_rules_refuse_stop_the_conversion_without_showing_a_secret(fresh_database):
    url = fresh_database("empty")
    run_sql(
        url,
        V1_FULL
        + """
        INSERT INTO public.waha_config (id, api_url, webhook_url, timeout, retry_attempts, rate_limit)
        VALUES (1, 'https://admin:legacy-pw@waha.example/api?token=legacy-t0k3n', 'https://hooks.example/w#x', 300, 20, 100);
        """,
    )
    before = database_state(url)
    with pytest.raises(LegacyConversionRefused) as refused:
        upgrade(url, owner=OWNER)
    message = str(refused.value)
    assert message.splitlines()[:5] == [
        "waha_config holds values the V2.1 schema refuses:",
        "  - waha_config id=1: api_url holds a user or password before the host, a query or a fragment (not shown), "
        "which V2.1 refuses",
        "  - waha_config id=1: webhook_url holds a user or password before the host, a query or a fragment (not shown), "
        "which V2.1 refuses",
        "  - waha_config id=1: timeout 300 is above 120 (V2.1 wants at most 120)",
        "  - waha_config id=1: retry_attempts 20 is above 10 (V2.1 wants at most 10)",
    ]
    for fix in (
        "UPDATE public.waha_config SET api_url = 'https://waha.example/api' WHERE id = 1;",
        "UPDATE public.waha_config SET webhook_url = 'https://hooks.example/w' WHERE id = 1;",
        "UPDATE public.waha_config SET timeout = 120 WHERE id = 1;  -- V2.1's maximum",
        "UPDATE public.waha_config SET retry_attempts = 10 WHERE id = 1;  -- V2.1's maximum",
    ):
        assert fix in message
        run_sql(url, fix)
    assert "legacy-pw" not in message and "legacy-t0k3n" not in message
    assert database_state(url)["catalog"] == before["catalog"]
    upgrade(url, owner=OWNER)
    assert run_sql(url, "SELECT api_url, timeout, retry_attempts FROM public.waha_servers") == [
        ("https://waha.example/api", 120, 10)
    ]


# --- a recorded revision 0010 is checked before it is believed --------------------------------------


def test_a_revision_0010_written_by_anon_is_refused_before_anything_changes(fresh_database):
    """The attack of the issue this revision closes: anon moves alembic_version past a revision that never ran."""
    url = fresh_database("supabase_empty")
    upgrade(url, revisions.previous(BELOW))
    with psycopg.connect(conninfo(url)) as connection:
        connection.execute("SET LOCAL ROLE anon")
        assert connection.execute("UPDATE public.alembic_version SET version_num = '0010'").rowcount == 1
    before = database_state(url)
    with pytest.raises(RecordedRevisionRefused) as refused:
        upgrade(url)
    message = str(refused.value)
    assert message.startswith(
        "alembic_version says revision 0010, but what revision 0010 makes is missing: function "
        "public.waha_normalized_url(text), index public.waha_servers_user_id_normalized_api_url_key, "
        "index public.waha_sessions_user_id_session_name_occupying_key"
    )
    assert "UPDATE public.alembic_version SET version_num = '0009';" in message
    assert database_state(url) == before
    run_sql(url, "UPDATE public.alembic_version SET version_num = '0009'")
    upgrade(url)
    assert closed_to_the_api(url)
    assert run_sql(url, "SELECT to_regprocedure('public.waha_normalized_url(text)') IS NOT NULL") == [(True,)]


# --- the downgrade --------------------------------------------------------------------------------------


def test_downgrade_drops_the_rules_and_keeps_alembic_version_closed(fresh_database):
    url = fresh_database("supabase_head")
    downgrade(url, BELOW)
    assert closed_to_the_api(url)
    assert run_sql(
        url,
        "SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgname LIKE 'waha\\_%%\\_validate\\_row' "
        "UNION ALL SELECT count(*) FROM pg_catalog.pg_proc WHERE proname LIKE 'waha\\_check\\_%%\\_row' "
        "UNION ALL SELECT count(*) FROM pg_catalog.pg_constraint WHERE conname ~ '(without_(userinfo|query|fragment)|at_most_[0-9]+)_check$'",
    ) == [(0,), (0,), (0,)]
    add_user(url, USER)
    add_server(
        url, USER, "long", api_url="https://waha.example/?x=1", timeout=999
    )  # revision 0010's rules take it again
    run_sql(url, "DELETE FROM public.waha_servers")
    upgrade(url)
    assert closed_to_the_api(url)
