"""report_waha_server_version (revision 0009): what each WAHA server is, kept in waha_server_health.

Each test runs on every V2.1 kind, in a transaction rolled back at its end.
"""

from __future__ import annotations

from tests.support.assertions import acting_as, assert_refused
from tests.support.factories import add_server, add_user
from tests.support.waha_calls import report_failure, report_success


def report_version(tx, server_id, version="2025.1.2", engine="NOWEB", tier="PLUS"):
    return tx.execute(
        "SELECT waha_version, waha_engine, waha_tier, identified_at = now(), consecutive_failures"
        " FROM public.report_waha_server_version(%s, %s, %s, %s)",
        (server_id, version, engine, tier),
    ).fetchone()


def test_the_answer_is_kept_without_touching_the_health(tx):
    server = add_server(tx, add_user(tx), "principal")
    report_failure(tx, server)

    assert report_version(tx, server, " 2025.1.2 ", "NOWEB", "PLUS") == ("2025.1.2", "NOWEB", "PLUS", True, 1)
    assert report_failure(tx, server)[0] == 2, "a failure after it counts on"


def test_a_later_answer_replaces_the_earlier_one(tx):
    server = add_server(tx, add_user(tx), "principal")
    report_version(tx, server, "2024.10.1", "WEBJS", "CORE")

    assert report_version(tx, server, "2025.1.2", "", None)[:3] == ("2025.1.2", None, None)


def test_the_health_reports_leave_the_answer_alone(tx):
    server = add_server(tx, add_user(tx), "principal")
    report_version(tx, server, "2025.1.2", "GOWS", "PLUS")
    report_failure(tx, server)
    report_success(tx, server)

    assert tx.execute(
        "SELECT waha_version, waha_engine, waha_tier FROM public.waha_server_health WHERE server_id = %s", (server,)
    ).fetchone() == ("2025.1.2", "GOWS", "PLUS")


def test_a_blank_version_is_refused(tx):
    server = add_server(tx, add_user(tx), "principal")

    error = assert_refused(
        tx, "SELECT public.report_waha_server_version(%s, %s, 'WEBJS', 'CORE')", (server, "  "), sqlstate="22023"
    )

    assert "a WAHA version is required" in str(error)


def test_a_server_that_is_not_yours_is_wah20(tx):
    ana, bruno = add_user(tx), add_user(tx)
    brunos = add_server(tx, bruno, "bruno")

    with acting_as(tx, "authenticated", ana):
        assert_refused(tx, "SELECT public.report_waha_server_version(%s, '2025.1.2')", (brunos,), sqlstate="WAH20")
    with acting_as(tx, "authenticated", bruno):
        assert report_version(tx, brunos)[:3] == ("2025.1.2", "NOWEB", "PLUS")


def test_only_authenticated_and_service_role_may_report_with_invoker_rights_and_no_search_path(tx):
    signature = "public.report_waha_server_version(uuid, text, text, text)"
    allowed = [
        role
        for (role,) in tx.execute(
            "SELECT rolname FROM pg_catalog.pg_roles"
            " WHERE rolname IN ('authenticated', 'service_role', 'anon', 'waha_test_nobody')"
            "   AND pg_catalog.has_function_privilege(oid, %s, 'EXECUTE') ORDER BY rolname",
            (signature,),
        )
    ]
    definition = tx.execute(
        "SELECT prosecdef, provolatile, proconfig, bool_or(acl.grantee = 0)"
        " FROM pg_catalog.pg_proc AS proc, pg_catalog.aclexplode(proc.proacl) AS acl"
        " WHERE proc.oid = %s::regprocedure GROUP BY 1, 2, 3",
        (signature,),
    ).fetchone()

    assert allowed == ["authenticated", "service_role"]
    assert definition == (False, "v", ['search_path=""'], False)
