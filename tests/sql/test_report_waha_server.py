"""report_waha_server_failure / report_waha_server_success: health as a fact in the database.

Each test runs on every V2.1 kind, in a transaction rolled back at its end (so
now() is the same for every statement of a test: cooldowns are compared with
the report's own last_failure_at).
"""

from __future__ import annotations

import datetime as dt
import uuid

from tests.support.assertions import acting_as, assert_refused
from tests.support.factories import add_server, add_session, add_user
from tests.support.waha_calls import report_failure, report_success

SECONDS = dt.timedelta(seconds=1)


def health(tx, server_id):
    return tx.execute(
        "SELECT consecutive_failures, cooldown_until, last_error FROM public.waha_server_health WHERE server_id = %s",
        (server_id,),
    ).fetchone()


def test_first_failure_records_the_reason_and_a_30_second_cooldown(tx):
    user = add_user(tx)
    server = add_server(tx, user, "principal")

    failures, cooldown, error, owner = report_failure(tx, server, "connection refused")

    assert (failures, cooldown, error, owner) == (1, 30 * SECONDS, "connection refused", user)


def test_cooldown_doubles_per_failure_up_to_ten_minutes(tx):
    server = add_server(tx, add_user(tx), "principal")

    cooldowns = [report_failure(tx, server)[1] / SECONDS for _ in range(8)]

    assert cooldowns == [30, 60, 120, 240, 480, 600, 600, 600]
    assert health(tx, server)[0] == 8


def test_success_clears_failures_and_cooldown_and_keeps_the_last_error(tx):
    server = add_server(tx, add_user(tx), "principal")
    report_failure(tx, server, "timed out after 30 s")
    report_failure(tx, server, "timed out after 30 s")

    assert report_success(tx, server) == (0, None, "timed out after 30 s", True)


def test_failure_after_a_success_starts_again_at_30_seconds(tx):
    server = add_server(tx, add_user(tx), "principal")
    for _ in range(4):
        report_failure(tx, server)
    report_success(tx, server)

    assert report_failure(tx, server)[:2] == (1, 30 * SECONDS)


def test_first_report_may_be_a_success(tx):
    server = add_server(tx, add_user(tx), "principal")

    assert report_success(tx, server) == (0, None, None, True)


def test_a_report_never_shortens_a_longer_cooldown(tx):
    server = add_server(tx, add_user(tx), "principal")
    report_failure(tx, server)
    tx.execute(
        "UPDATE public.waha_server_health SET cooldown_until = now() + interval '1 hour' WHERE server_id = %s",
        (server,),
    )

    assert report_failure(tx, server)[1] == 3600 * SECONDS


def test_blank_reason_is_recorded_in_plain_words(tx):
    server = add_server(tx, add_user(tx), "principal")

    assert report_failure(tx, server, "   ")[2] == "failure reported without a reason"
    assert report_failure(tx, server, None)[2] == "failure reported without a reason"


def test_report_on_an_unknown_server_is_refused_with_wah20(tx):
    missing = uuid.uuid4()

    error = assert_refused(tx, "SELECT public.report_waha_server_failure(%s, 'x')", (missing,), sqlstate="WAH20")
    assert str(missing) in str(error)
    assert_refused(tx, "SELECT public.report_waha_server_success(%s)", (missing,), sqlstate="WAH20")


def test_health_goes_with_its_server(tx):
    server = add_server(tx, add_user(tx), "principal")
    report_failure(tx, server)

    tx.execute("DELETE FROM public.waha_servers WHERE id = %s", (server,))

    assert health(tx, server) is None


def test_health_follows_a_change_of_owner(tx):
    server = add_server(tx, add_user(tx), "principal")
    report_failure(tx, server)
    new_owner = add_user(tx)

    tx.execute("UPDATE public.waha_servers SET user_id = %s WHERE id = %s", (new_owner, server))

    owner = tx.execute("SELECT user_id FROM public.waha_server_health WHERE server_id = %s", (server,)).fetchone()[0]
    assert owner == new_owner


def test_health_cannot_claim_another_owner_than_the_servers(tx):
    server = add_server(tx, add_user(tx), "principal")
    stranger = add_user(tx)

    assert_refused(
        tx,
        "INSERT INTO public.waha_server_health (server_id, user_id) VALUES (%s, %s)",
        (server, stranger),
        sqlstate="23503",
    )


def test_a_cooldown_without_failures_is_refused(tx):
    server = add_server(tx, add_user(tx), "principal")
    report_success(tx, server)

    assert_refused(
        tx,
        "UPDATE public.waha_server_health SET cooldown_until = now() WHERE server_id = %s",
        (server,),
        sqlstate="23514",
    )


def test_server_with_sessions_keeps_its_sessions_when_reported(tx):
    user = add_user(tx)
    server = add_server(tx, user, "principal", max_sessions=5, sessions_ativas=1)
    add_session(tx, user, server, "loja-01", status="WORKING")

    report_failure(tx, server)

    assert (
        tx.execute("SELECT count(*) FROM public.waha_sessions WHERE waha_server_id = %s", (server,)).fetchone()[0] == 1
    )


# --- row security -----------------------------------------------------------


def test_user_reports_on_their_own_server(tx):
    user = add_user(tx)
    server = add_server(tx, user, "principal")

    with acting_as(tx, "authenticated", user):
        assert report_failure(tx, server)[:2] == (1, 30 * SECONDS)
        assert report_success(tx, server)[0] == 0
        assert health(tx, server)[0] == 0


def test_user_cannot_report_on_a_strangers_server(tx):
    owner, stranger = add_user(tx), add_user(tx)
    server = add_server(tx, owner, "principal")
    report_failure(tx, server, "connection refused")

    with acting_as(tx, "authenticated", stranger):
        assert_refused(tx, "SELECT public.report_waha_server_success(%s)", (server,), sqlstate="WAH20")
        assert_refused(tx, "SELECT public.report_waha_server_failure(%s, 'lies')", (server,), sqlstate="WAH20")

    assert health(tx, server)[0] == 1
    assert health(tx, server)[2] == "connection refused"


def test_user_sees_only_the_health_of_their_own_servers(tx):
    owner, stranger = add_user(tx), add_user(tx)
    mine = add_server(tx, owner, "mine")
    theirs = add_server(tx, stranger, "theirs")
    report_failure(tx, mine)
    report_failure(tx, theirs)

    with acting_as(tx, "authenticated", owner):
        visible = [row[0] for row in tx.execute("SELECT server_id FROM public.waha_server_health")]

    assert visible == [mine]


def test_user_cannot_write_a_strangers_health_directly(tx):
    owner, stranger = add_user(tx), add_user(tx)
    server = add_server(tx, owner, "principal")
    report_failure(tx, server)

    with acting_as(tx, "authenticated", stranger):
        assert_refused(
            tx,
            "INSERT INTO public.waha_server_health (server_id, user_id) VALUES (%s, %s)",
            (server, owner),
            sqlstate="42501",
        )
        updated = tx.execute(
            "UPDATE public.waha_server_health SET consecutive_failures = 0, cooldown_until = NULL WHERE server_id = %s",
            (server,),
        ).rowcount
        assert_refused(tx, "DELETE FROM public.waha_server_health", None, sqlstate="42501")
        assert_refused(tx, "TRUNCATE public.waha_server_health", None, sqlstate="42501")

    assert updated == 0
    assert health(tx, server)[0] == 1


def test_service_role_reports_on_any_server(tx):
    server = add_server(tx, add_user(tx), "principal")

    with acting_as(tx, "service_role"):
        assert report_failure(tx, server)[0] == 1


def test_only_authenticated_and_service_role_may_report(tx):
    rows = tx.execute(
        """
        SELECT grantee.rolname, function.signature,
               pg_catalog.has_function_privilege(grantee.oid, function.signature, 'EXECUTE')
        FROM (VALUES ('public.report_waha_server_failure(uuid, text)'),
                     ('public.report_waha_server_success(uuid)')) AS function (signature)
        CROSS JOIN pg_catalog.pg_roles AS grantee
        WHERE grantee.rolname IN ('authenticated', 'service_role', 'anon')
        """
    ).fetchall()
    allowed = {(role, signature) for role, signature, may in rows if may}

    assert allowed == {
        ("authenticated", "public.report_waha_server_failure(uuid, text)"),
        ("authenticated", "public.report_waha_server_success(uuid)"),
        ("service_role", "public.report_waha_server_failure(uuid, text)"),
        ("service_role", "public.report_waha_server_success(uuid)"),
    }
    public_may = tx.execute(
        """
        SELECT bool_or(acl.grantee = 0)
        FROM pg_catalog.pg_proc AS proc, pg_catalog.aclexplode(proc.proacl) AS acl
        WHERE proc.proname IN ('report_waha_server_failure', 'report_waha_server_success')
        """
    ).fetchone()[0]
    assert public_may is False


def test_health_table_grants_are_exact_and_anon_has_none(tx):
    """On Supabase, default privileges would give anon and authenticated everything."""
    privileges = tx.execute(
        """
        SELECT acl.privilege_type, grantee.rolname
        FROM pg_catalog.pg_class AS relation,
             pg_catalog.aclexplode(relation.relacl) AS acl
             LEFT JOIN pg_catalog.pg_roles AS grantee ON grantee.oid = acl.grantee
        WHERE relation.oid = 'public.waha_server_health'::regclass
        ORDER BY 2, 1
        """
    ).fetchall()
    by_role: dict[str, set[str]] = {}
    for privilege, role in privileges:
        by_role.setdefault(role or "PUBLIC", set()).add(privilege)

    assert by_role["authenticated"] == {"SELECT", "INSERT", "UPDATE"}
    assert by_role["service_role"] >= {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"}
    assert "anon" not in by_role and "PUBLIC" not in by_role


def test_report_functions_have_a_fixed_empty_search_path_and_invoker_rights(tx):
    rows = tx.execute(
        """
        SELECT proname, prosecdef, provolatile, proconfig
        FROM pg_catalog.pg_proc
        WHERE proname IN ('report_waha_server_failure', 'report_waha_server_success')
        ORDER BY proname
        """
    ).fetchall()

    assert rows == [
        ("report_waha_server_failure", False, "v", ['search_path=""']),
        ("report_waha_server_success", False, "v", ['search_path=""']),
    ]
