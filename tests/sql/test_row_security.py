"""Row security and grants as Supabase runs them.

Supabase's API runs each request as `SET ROLE authenticated` (or anon) with the
JWT claims in the transaction setting `request.jwt.claims`; older clients set
`request.jwt.claim.sub`. `acting_as` does exactly that with SET LOCAL, so it ends
with the test's transaction. Runs on each kind of V2.1 database.
"""

from __future__ import annotations

import pytest

from tests.support.assertions import FOREIGN_KEY_VIOLATION, INSUFFICIENT_PRIVILEGE, acting_as, assert_refused
from tests.support.factories import add_server, add_session, add_user


@pytest.fixture
def two_users(tx):
    """Ana and Bruno, each with one server holding one session, and one spare server without sessions."""
    world = {}
    for name in ("ana", "bruno"):
        user = add_user(tx)
        server = add_server(tx, user, f"{name}-main", prioridade=10)
        spare = add_server(tx, user, f"{name}-spare", prioridade=1)
        session = add_session(tx, user, server, f"{name}-01")
        world[name] = {"user": user, "server": server, "spare": spare, "session": session}
    return world


def visible(tx, table: str) -> set:
    return {row[0] for row in tx.execute(f"SELECT id FROM public.{table}")}


def refused_to_ana(
    tx, two_users, statement: str, params, *, sqlstate: str = INSUFFICIENT_PRIVILEGE, constraint: str | None = None
):
    """`statement`, run by Ana signed in, is refused as `assert_refused` checks; the error."""
    with acting_as(tx, "authenticated", two_users["ana"]["user"]):
        return assert_refused(tx, statement, params, sqlstate=sqlstate, constraint=constraint)


@pytest.mark.parametrize("legacy_claim", [False, True], ids=["request.jwt.claims", "request.jwt.claim.sub"])
def test_user_sees_only_own_servers_and_sessions(tx, two_users, legacy_claim):
    ana = two_users["ana"]
    with acting_as(tx, "authenticated", ana["user"], legacy_claim=legacy_claim):
        assert visible(tx, "waha_servers") == {ana["server"], ana["spare"]}
        assert visible(tx, "waha_sessions") == {ana["session"]}


def test_user_without_claims_sees_nothing(tx, two_users):
    with acting_as(tx, "authenticated"):
        assert visible(tx, "waha_servers") == set()
        assert visible(tx, "waha_sessions") == set()


def test_user_picks_only_own_servers(tx, two_users):
    ana, bruno = two_users["ana"], two_users["bruno"]
    with acting_as(tx, "authenticated", ana["user"]):
        own = tx.execute("SELECT id FROM public.get_available_waha_server(%s)", (ana["user"],)).fetchall()
        strangers = tx.execute("SELECT id FROM public.get_available_waha_server(%s)", (bruno["user"],)).fetchall()
    assert own == [(ana["server"],)]
    assert strangers == []


def test_user_changes_only_own_rows(tx, two_users):
    ana, bruno = two_users["ana"], two_users["bruno"]
    with acting_as(tx, "authenticated", ana["user"]):
        changed_servers = tx.execute("UPDATE public.waha_servers SET descricao = 'editado'").rowcount
        changed_sessions = tx.execute("UPDATE public.waha_sessions SET status = 'WORKING'").rowcount
        aimed_at_bruno = tx.execute(
            "UPDATE public.waha_servers SET ativo = false WHERE id = %s", (bruno["server"],)
        ).rowcount
    assert (changed_servers, changed_sessions, aimed_at_bruno) == (2, 1, 0)
    edited = tx.execute("SELECT user_id FROM public.waha_servers WHERE descricao = 'editado'").fetchall()
    assert {row[0] for row in edited} == {ana["user"]}
    assert tx.execute("SELECT ativo FROM public.waha_servers WHERE id = %s", (bruno["server"],)).fetchone()[0] is True


def test_user_deletes_only_own_rows(tx, two_users):
    ana, bruno = two_users["ana"], two_users["bruno"]
    with acting_as(tx, "authenticated", ana["user"]):
        deleted_sessions = tx.execute("DELETE FROM public.waha_sessions").rowcount
        deleted_servers = tx.execute("DELETE FROM public.waha_servers").rowcount
    assert (deleted_sessions, deleted_servers) == (1, 2)
    servers, sessions = visible(tx, "waha_servers"), visible(tx, "waha_sessions")
    assert {bruno["server"], bruno["spare"]} <= servers and bruno["session"] in sessions
    assert not {ana["server"], ana["spare"]} & servers


def test_user_creates_servers_and_sessions_of_their_own(tx, two_users):
    ana = two_users["ana"]
    with acting_as(tx, "authenticated", ana["user"]):
        server = add_server(tx, ana["user"], "ana-nova")
        add_session(tx, ana["user"], server, "ana-02")
        assert len(visible(tx, "waha_servers")) == 3


def test_inserting_a_server_for_another_user_is_refused(tx, two_users):
    bruno = two_users["bruno"]
    error = refused_to_ana(
        tx,
        two_users,
        "INSERT INTO public.waha_servers (user_id, nome, api_url) VALUES (%s, 'x', 'https://x.example')",
        (bruno["user"],),
    )
    assert "row-level security" in str(error)


def test_inserting_a_session_for_another_user_is_refused(tx, two_users):
    bruno = two_users["bruno"]
    refused_to_ana(
        tx,
        two_users,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, 'x')",
        (bruno["user"], bruno["server"]),
    )


def test_parking_a_session_on_a_strangers_server_by_its_id_is_refused(tx, two_users):
    """Row security passes (the row is Ana's), the foreign key (which ignores row security) refuses."""
    ana, bruno = two_users["ana"], two_users["bruno"]
    refused_to_ana(
        tx,
        two_users,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, 'x')",
        (ana["user"], bruno["server"]),
        sqlstate=FOREIGN_KEY_VIOLATION,
        constraint="waha_sessions_waha_server_id_user_id_fkey",
    )


def test_giving_own_server_to_another_user_is_refused(tx, two_users):
    ana, bruno = two_users["ana"], two_users["bruno"]
    refused_to_ana(
        tx, two_users, "UPDATE public.waha_servers SET user_id = %s WHERE id = %s", (bruno["user"], ana["spare"])
    )


def test_truncate_is_refused_to_users(tx, two_users):
    ana = two_users["ana"]
    with acting_as(tx, "authenticated", ana["user"]):
        for table in ("waha_sessions", "waha_servers"):
            assert_refused(tx, f"TRUNCATE public.{table} CASCADE", sqlstate=INSUFFICIENT_PRIVILEGE)


def test_service_role_sees_and_changes_everything(tx, two_users):
    every_server, every_session = visible(tx, "waha_servers"), visible(tx, "waha_sessions")
    assert len(every_server) >= 4 and len(every_session) >= 2
    with acting_as(tx, "service_role"):
        assert visible(tx, "waha_servers") == every_server
        assert visible(tx, "waha_sessions") == every_session
        assert tx.execute("UPDATE public.waha_servers SET descricao = 'admin'").rowcount == len(every_server)
        picked = tx.execute(
            "SELECT id FROM public.get_available_waha_server(%s)", (two_users["bruno"]["user"],)
        ).fetchall()
    assert picked == [(two_users["bruno"]["server"],)]


@pytest.mark.parametrize("tx", ["supabase_head"], indirect=True)
@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM public.waha_servers",
        "SELECT * FROM public.waha_sessions",
        "INSERT INTO public.waha_servers (user_id, nome, api_url) VALUES (gen_random_uuid(), 'x', 'https://x.example')",
        "UPDATE public.waha_sessions SET status = 'x'",
        "DELETE FROM public.waha_servers",
        "TRUNCATE public.waha_sessions",
        "SELECT * FROM public.get_available_waha_server(gen_random_uuid())",
    ],
)
def test_anon_gets_nothing_despite_supabases_default_privileges(tx, two_users, statement):
    # Supabase's default privileges are in force: a table created now is anon's to read...
    tx.execute("CREATE TABLE public.waha_test_probe (id integer)")
    with acting_as(tx, "anon"):
        assert tx.execute("SELECT count(*) FROM public.waha_test_probe").fetchone()[0] == 0
    # ...and 0004's REVOKE wins over them on our objects.
    with acting_as(tx, "anon"):
        error = assert_refused(tx, statement, sqlstate=INSUFFICIENT_PRIVILEGE)
    assert "permission denied" in str(error)


def test_a_role_with_only_public_privileges_gets_nothing(tx, two_users):
    """PUBLIC holds nothing on our objects: a fresh role (created in this transaction) is refused everything."""
    tx.execute("CREATE ROLE waha_test_outsider NOLOGIN")
    with acting_as(tx, "waha_test_outsider"):
        for statement in (
            "SELECT * FROM public.waha_servers",
            "SELECT * FROM public.waha_sessions",
            "SELECT * FROM public.get_available_waha_server(gen_random_uuid())",
        ):
            assert_refused(tx, statement, sqlstate=INSUFFICIENT_PRIVILEGE)


def test_grants_are_exactly_the_spec(tx):
    grants = tx.execute(
        """
        SELECT table_name, grantee, string_agg(privilege_type, ',' ORDER BY privilege_type)
        FROM information_schema.role_table_grants
        WHERE table_schema = 'public' AND table_name IN ('waha_servers', 'waha_sessions')
          AND grantee IN ('PUBLIC', 'anon', 'authenticated', 'service_role')
        GROUP BY table_name, grantee ORDER BY table_name, grantee
        """
    ).fetchall()
    everything = "DELETE,INSERT,REFERENCES,SELECT,TRIGGER,TRUNCATE,UPDATE"
    assert grants == [
        ("waha_servers", "authenticated", "DELETE,INSERT,SELECT,UPDATE"),
        ("waha_servers", "service_role", everything),
        ("waha_sessions", "authenticated", "DELETE,INSERT,SELECT,UPDATE"),
        ("waha_sessions", "service_role", everything),
    ]


def test_row_security_is_enabled_with_one_policy_per_command(tx):
    enabled = tx.execute(
        "SELECT relname, relrowsecurity FROM pg_catalog.pg_class "
        "WHERE oid IN ('public.waha_servers'::regclass, 'public.waha_sessions'::regclass) ORDER BY 1"
    ).fetchall()
    policies = tx.execute(
        """
        SELECT tablename, cmd, roles::text[] FROM pg_catalog.pg_policies
        WHERE schemaname = 'public' AND tablename IN ('waha_servers', 'waha_sessions') ORDER BY 1, 2
        """
    ).fetchall()
    assert enabled == [("waha_servers", True), ("waha_sessions", True)]
    assert policies == [
        (table, command, ["authenticated"])
        for table in ("waha_servers", "waha_sessions")
        for command in ("DELETE", "INSERT", "SELECT", "UPDATE")
    ]
