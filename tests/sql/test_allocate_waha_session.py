"""allocate_waha_session: one call picks the server, creates the session, takes the slot.

Single-connection behaviour; the races are in test_allocation_concurrency.py.
Runs on every kind of V2.1 database (fresh plain, fresh Supabase, upgraded legacy).
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.support.factories import add_server, add_user
from tests.support.waha_calls import occupying, sessions_ativas


def allocation(tx, user_id, session_name, excluded=None):
    """allocate_waha_session's answer: (waha_server_id, status, user_id, session_name) of the session."""
    sql = "SELECT waha_server_id, status, user_id, session_name FROM public.allocate_waha_session(%s, %s"
    params = [user_id, session_name]
    if excluded is not None:
        sql += ", %s"
        params.append(excluded)
    return tx.execute(sql + ")", params).fetchone()


def act_as(tx, user_id):
    """The connection now acts as a signed-in Supabase user (role authenticated, JWT sub)."""
    tx.execute("SET ROLE authenticated")
    tx.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": str(user_id)}),))


def test_allocation_creates_a_starting_session_and_takes_one_slot(tx):
    user = add_user(tx)
    server = add_server(tx, user, "alpha", max_sessions=3)

    server_id, status, owner, name = allocation(tx, user, "loja-01")

    assert (server_id, status, owner, name) == (server, "STARTING", user, "loja-01")
    assert sessions_ativas(tx, server) == 1
    assert occupying(tx, server) == 1


def test_allocation_follows_get_available_waha_server_choice_at_every_step(tx):
    user = add_user(tx)
    add_server(tx, user, "high", prioridade=10, max_sessions=2)
    add_server(tx, user, "mid-small", prioridade=5, max_sessions=2)
    add_server(tx, user, "mid-large", prioridade=5, max_sessions=4)
    add_server(tx, user, "low", prioridade=0, max_sessions=1)

    chosen = []
    for number in range(9):
        expected = tx.execute("SELECT id FROM public.get_available_waha_server(%s)", (user,)).fetchone()[0]
        server_id, *_ = allocation(tx, user, f"s{number}")
        assert server_id == expected, f"allocation {number} took another server than get_available_waha_server picks"
        chosen.append(tx.execute("SELECT nome FROM public.waha_servers WHERE id = %s", (server_id,)).fetchone()[0])

    # priority first; among equal priority the lower load, then more free slots.
    assert chosen == [
        "high",
        "high",
        "mid-large",
        "mid-small",
        "mid-large",
        "mid-large",
        "mid-small",
        "mid-large",
        "low",
    ]


def test_full_inactive_and_excluded_servers_are_skipped(tx):
    user = add_user(tx)
    add_server(tx, user, "full", prioridade=10, max_sessions=2, sessions_ativas=2)
    add_server(tx, user, "off", prioridade=10, ativo=False)
    excluded = add_server(tx, user, "excluded", prioridade=10)
    fallback = add_server(tx, user, "fallback", prioridade=1)

    server_id, *_ = allocation(tx, user, "s1", excluded=[excluded])

    assert server_id == fallback
    assert sessions_ativas(tx, excluded) == 0


def test_no_capacity_raises_wah10_naming_the_user_and_changes_nothing(tx):
    user = add_user(tx)
    full = add_server(tx, user, "full", max_sessions=1, sessions_ativas=1)
    add_server(tx, user, "off", ativo=False)

    with pytest.raises(psycopg.Error) as raised, tx.transaction():
        allocation(tx, user, "s1")

    assert raised.value.sqlstate == "WAH10"
    assert str(user) in raised.value.diag.message_primary
    assert sessions_ativas(tx, full) == 1
    assert tx.execute("SELECT count(*) FROM public.waha_sessions").fetchone()[0] == 0


def test_unknown_user_gets_wah10(tx):
    with pytest.raises(psycopg.Error) as raised, tx.transaction():
        allocation(tx, uuid.uuid4(), "s1")
    assert raised.value.sqlstate == "WAH10"


def session_ids(tx, user_id, session_name):
    rows = tx.execute(
        "SELECT id, waha_server_id, status FROM public.waha_sessions WHERE user_id = %s AND session_name = %s ORDER BY 1",
        (user_id, session_name),
    )
    return rows.fetchall()


def test_allocating_a_name_twice_returns_the_same_session_and_takes_one_slot(tx):
    user = add_user(tx)
    server = add_server(tx, user, "alpha", max_sessions=5)
    first = tx.execute("SELECT id FROM public.allocate_waha_session(%s, 'loja-01')", (user,)).fetchone()
    second = tx.execute("SELECT id FROM public.allocate_waha_session(%s, 'loja-01')", (user,)).fetchone()
    assert first == second
    assert sessions_ativas(tx, server) == 1 and len(session_ids(tx, user, "loja-01")) == 1


def test_a_released_name_starts_again_in_its_own_row_while_a_slot_is_free(tx):
    """The server picked holds the STOPPED row of that name: it is reused, not refused as a duplicate."""
    user = add_user(tx)
    server = add_server(tx, user, "alpha", max_sessions=5)
    (session_id,) = tx.execute("SELECT id FROM public.allocate_waha_session(%s, 'c1_1')", (user,)).fetchone()
    tx.execute(
        "UPDATE public.waha_sessions SET phone_number = '5511999990000', qr_code = 'old-qr' WHERE id = %s",
        (session_id,),
    )
    tx.execute("SELECT public.release_waha_session(%s)", (session_id,))

    again = tx.execute(
        "SELECT id, status, phone_number, qr_code FROM public.allocate_waha_session(%s, 'c1_1')", (user,)
    ).fetchone()

    assert again == (session_id, "STARTING", "5511999990000", None)
    assert sessions_ativas(tx, server) == 1


def test_a_name_stopped_on_one_server_starts_on_the_server_picked(tx):
    user = add_user(tx)
    backup = add_server(tx, user, "backup", prioridade=5)
    tx.execute(
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status) VALUES (%s, %s, 'c1_1', 'STOPPED')",
        (user, backup),
    )
    principal = add_server(tx, user, "principal", prioridade=10)
    assert allocation(tx, user, "c1_1") == (principal, "STARTING", user, "c1_1")
    assert [(server, status) for _id, server, status in session_ids(tx, user, "c1_1")] in (
        [(backup, "STOPPED"), (principal, "STARTING")],
        [(principal, "STARTING"), (backup, "STOPPED")],
    )


def test_a_name_occupying_a_slot_on_an_excluded_server_is_refused_not_moved(tx):
    user = add_user(tx)
    alpha = add_server(tx, user, "alpha", prioridade=10)
    add_server(tx, user, "beta", prioridade=5)
    allocation(tx, user, "c1_1")
    with pytest.raises(psycopg.Error) as raised, tx.transaction():
        allocation(tx, user, "c1_1", [alpha])
    assert raised.value.sqlstate == "WAH12"
    assert "release it first" in raised.value.diag.message_hint
    assert sessions_ativas(tx, alpha) == 1


def test_a_user_cannot_hold_two_occupying_sessions_of_one_name(tx):
    user = add_user(tx)
    alpha, beta = add_server(tx, user, "alpha"), add_server(tx, user, "beta")
    insert = (
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status) VALUES (%s, %s, 'c1_1', %s)"
    )
    tx.execute(insert, (user, alpha, "WORKING"))
    tx.execute(insert.replace("'c1_1'", "'c1_2'"), (user, beta, "WORKING"))
    with pytest.raises(psycopg.errors.UniqueViolation) as raised, tx.transaction():
        tx.execute(insert, (user, beta, "connecting"))
    assert raised.value.diag.constraint_name == "waha_sessions_user_id_session_name_occupying_key"
    tx.execute(insert, (user, beta, "STOPPED"))  # a stopped one of the same name is history, allowed


def test_invalid_session_name_takes_no_slot(tx):
    user = add_user(tx)
    server = add_server(tx, user, "alpha")

    with pytest.raises(psycopg.errors.CheckViolation), tx.transaction():
        allocation(tx, user, "no spaces allowed")

    assert sessions_ativas(tx, server) == 0


def test_signed_in_user_allocates_on_own_server_never_on_another_users(tx):
    me, stranger = add_user(tx), add_user(tx)
    mine = add_server(tx, me, "mine", prioridade=0, max_sessions=1)
    theirs = add_server(tx, stranger, "theirs", prioridade=10, max_sessions=50)

    act_as(tx, me)
    server_id, *_ = allocation(tx, me, "s1")
    assert server_id == mine

    # My server is now full; the stranger's free server is invisible to me, by id or otherwise.
    with pytest.raises(psycopg.Error) as own_full, tx.transaction():
        allocation(tx, me, "s2")
    with pytest.raises(psycopg.Error) as for_stranger, tx.transaction():
        allocation(tx, stranger, "s3")
    tx.execute("RESET ROLE")

    assert own_full.value.sqlstate == "WAH10"
    assert for_stranger.value.sqlstate == "WAH10"
    assert sessions_ativas(tx, theirs) == 0
    assert (
        tx.execute("SELECT count(*) FROM public.waha_sessions WHERE waha_server_id = %s", (theirs,)).fetchone()[0] == 0
    )


def test_service_role_allocates_for_any_user(tx):
    user = add_user(tx)
    server = add_server(tx, user, "alpha")

    tx.execute("SET ROLE service_role")
    server_id, *_ = allocation(tx, user, "s1")
    tx.execute("RESET ROLE")

    assert server_id == server


def test_execute_is_granted_to_authenticated_and_service_role_only(tx):
    tx.execute("CREATE ROLE waha_test_outsider NOLOGIN")
    for function in ("public.allocate_waha_session(uuid, text, uuid[])", "public.release_waha_session(uuid)"):
        allowed = {
            role: tx.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function)).fetchone()[0]
            for role in ("authenticated", "service_role", "waha_test_outsider")
        }
        assert allowed == {"authenticated": True, "service_role": True, "waha_test_outsider": False}, function
        if tx.execute("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon')").fetchone()[0]:
            assert not tx.execute("SELECT has_function_privilege('anon', %s, 'EXECUTE')", (function,)).fetchone()[0]


def test_functions_are_volatile_security_invoker_with_empty_search_path(tx):
    rows = tx.execute(
        """
        SELECT proname, provolatile, prosecdef, proconfig
        FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace
          AND proname IN ('allocate_waha_session', 'release_waha_session')
        ORDER BY proname
        """
    ).fetchall()
    assert rows == [
        ("allocate_waha_session", "v", False, ['search_path=""']),
        ("release_waha_session", "v", False, ['search_path=""']),
    ]
