"""allocate_waha_session: one call picks the server, creates the session, takes the slot.

Single-connection behaviour; the races are in test_allocation_concurrency.py.
Runs on every kind of V2.1 database (fresh plain, fresh Supabase, upgraded legacy).
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest


@pytest.fixture
def db(v21_tx):
    """Each test in a transaction rolled back at its end, on a database of each kind."""
    return v21_tx


OCCUPYING_COUNT = """
SELECT count(*) FROM public.waha_sessions
WHERE waha_server_id = %s AND upper(status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED')
"""


def add_server(db, user_id, name, *, prioridade=0, max_sessions=10, sessions_ativas=0, ativo=True):
    return db.execute(
        """
        INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, max_sessions, sessions_ativas, ativo)
        VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (user_id, name, f"https://{name}.waha.example", prioridade, max_sessions, sessions_ativas, ativo),
    ).fetchone()[0]


def allocate(db, user_id, session_name, excluded=None):
    sql = "SELECT waha_server_id, status, user_id, session_name FROM public.allocate_waha_session(%s, %s"
    params = [user_id, session_name]
    if excluded is not None:
        sql += ", %s"
        params.append(excluded)
    return db.execute(sql + ")", params).fetchone()


def counter(db, server_id):
    return db.execute("SELECT sessions_ativas FROM public.waha_servers WHERE id = %s", (server_id,)).fetchone()[0]


def act_as(db, user_id):
    """The connection now acts as a signed-in Supabase user (role authenticated, JWT sub)."""
    db.execute("SET ROLE authenticated")
    db.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": str(user_id)}),))


def test_allocation_creates_a_starting_session_and_takes_one_slot(db, new_user):
    user = new_user()
    server = add_server(db, user, "alpha", max_sessions=3)

    server_id, status, owner, name = allocate(db, user, "loja-01")

    assert (server_id, status, owner, name) == (server, "STARTING", user, "loja-01")
    assert counter(db, server) == 1
    assert db.execute(OCCUPYING_COUNT, (server,)).fetchone()[0] == 1


def test_allocation_follows_get_available_waha_server_choice_at_every_step(db, new_user):
    user = new_user()
    add_server(db, user, "high", prioridade=10, max_sessions=2)
    add_server(db, user, "mid-small", prioridade=5, max_sessions=2)
    add_server(db, user, "mid-large", prioridade=5, max_sessions=4)
    add_server(db, user, "low", prioridade=0, max_sessions=1)

    chosen = []
    for number in range(9):
        expected = db.execute("SELECT id FROM public.get_available_waha_server(%s)", (user,)).fetchone()[0]
        server_id, *_ = allocate(db, user, f"s{number}")
        assert server_id == expected, f"allocation {number} took another server than get_available_waha_server picks"
        chosen.append(db.execute("SELECT nome FROM public.waha_servers WHERE id = %s", (server_id,)).fetchone()[0])

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


def test_full_inactive_and_excluded_servers_are_skipped(db, new_user):
    user = new_user()
    add_server(db, user, "full", prioridade=10, max_sessions=2, sessions_ativas=2)
    add_server(db, user, "off", prioridade=10, ativo=False)
    excluded = add_server(db, user, "excluded", prioridade=10)
    fallback = add_server(db, user, "fallback", prioridade=1)

    server_id, *_ = allocate(db, user, "s1", excluded=[excluded])

    assert server_id == fallback
    assert counter(db, excluded) == 0


def test_no_capacity_raises_wah10_naming_the_user_and_changes_nothing(db, new_user):
    user = new_user()
    full = add_server(db, user, "full", max_sessions=1, sessions_ativas=1)
    add_server(db, user, "off", ativo=False)

    with pytest.raises(psycopg.Error) as raised, db.transaction():
        allocate(db, user, "s1")

    assert raised.value.sqlstate == "WAH10"
    assert str(user) in raised.value.diag.message_primary
    assert counter(db, full) == 1
    assert db.execute("SELECT count(*) FROM public.waha_sessions").fetchone()[0] == 0


def test_unknown_user_gets_wah10(db):
    with pytest.raises(psycopg.Error) as raised, db.transaction():
        allocate(db, uuid.uuid4(), "s1")
    assert raised.value.sqlstate == "WAH10"


def session_ids(db, user_id, session_name):
    rows = db.execute(
        "SELECT id, waha_server_id, status FROM public.waha_sessions WHERE user_id = %s AND session_name = %s ORDER BY 1",
        (user_id, session_name),
    )
    return rows.fetchall()


def test_allocating_a_name_twice_returns_the_same_session_and_takes_one_slot(db, new_user):
    user = new_user()
    server = add_server(db, user, "alpha", max_sessions=5)
    first = db.execute("SELECT id FROM public.allocate_waha_session(%s, 'loja-01')", (user,)).fetchone()
    second = db.execute("SELECT id FROM public.allocate_waha_session(%s, 'loja-01')", (user,)).fetchone()
    assert first == second
    assert counter(db, server) == 1 and len(session_ids(db, user, "loja-01")) == 1


def test_a_released_name_starts_again_in_its_own_row_while_a_slot_is_free(db, new_user):
    """The server picked holds the STOPPED row of that name: it is reused, not refused as a duplicate."""
    user = new_user()
    server = add_server(db, user, "alpha", max_sessions=5)
    (session_id,) = db.execute("SELECT id FROM public.allocate_waha_session(%s, 'c1_1')", (user,)).fetchone()
    db.execute(
        "UPDATE public.waha_sessions SET phone_number = '5511999990000', qr_code = 'old-qr' WHERE id = %s",
        (session_id,),
    )
    db.execute("SELECT public.release_waha_session(%s)", (session_id,))

    again = db.execute(
        "SELECT id, status, phone_number, qr_code FROM public.allocate_waha_session(%s, 'c1_1')", (user,)
    ).fetchone()

    assert again == (session_id, "STARTING", "5511999990000", None)
    assert counter(db, server) == 1


def test_a_name_stopped_on_one_server_starts_on_the_server_picked(db, new_user):
    user = new_user()
    backup = add_server(db, user, "backup", prioridade=5)
    db.execute(
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status) VALUES (%s, %s, 'c1_1', 'STOPPED')",
        (user, backup),
    )
    principal = add_server(db, user, "principal", prioridade=10)
    assert allocate(db, user, "c1_1") == (principal, "STARTING", user, "c1_1")
    assert [(server, status) for _id, server, status in session_ids(db, user, "c1_1")] in (
        [(backup, "STOPPED"), (principal, "STARTING")],
        [(principal, "STARTING"), (backup, "STOPPED")],
    )


def test_a_name_occupying_a_slot_on_an_excluded_server_is_refused_not_moved(db, new_user):
    user = new_user()
    alpha = add_server(db, user, "alpha", prioridade=10)
    add_server(db, user, "beta", prioridade=5)
    allocate(db, user, "c1_1")
    with pytest.raises(psycopg.Error) as raised, db.transaction():
        allocate(db, user, "c1_1", [alpha])
    assert raised.value.sqlstate == "WAH12"
    assert "release it first" in raised.value.diag.message_hint
    assert counter(db, alpha) == 1


def test_a_user_cannot_hold_two_occupying_sessions_of_one_name(db, new_user):
    user = new_user()
    alpha, beta = add_server(db, user, "alpha"), add_server(db, user, "beta")
    insert = (
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status) VALUES (%s, %s, 'c1_1', %s)"
    )
    db.execute(insert, (user, alpha, "WORKING"))
    db.execute(insert.replace("'c1_1'", "'c1_2'"), (user, beta, "WORKING"))
    with pytest.raises(psycopg.errors.UniqueViolation) as raised, db.transaction():
        db.execute(insert, (user, beta, "connecting"))
    assert raised.value.diag.constraint_name == "waha_sessions_user_id_session_name_occupying_key"
    db.execute(insert, (user, beta, "STOPPED"))  # a stopped one of the same name is history, allowed


def test_invalid_session_name_takes_no_slot(db, new_user):
    user = new_user()
    server = add_server(db, user, "alpha")

    with pytest.raises(psycopg.errors.CheckViolation), db.transaction():
        allocate(db, user, "no spaces allowed")

    assert counter(db, server) == 0


def test_signed_in_user_allocates_on_own_server_never_on_another_users(db, new_user):
    me, stranger = new_user(), new_user()
    mine = add_server(db, me, "mine", prioridade=0, max_sessions=1)
    theirs = add_server(db, stranger, "theirs", prioridade=10, max_sessions=50)

    act_as(db, me)
    server_id, *_ = allocate(db, me, "s1")
    assert server_id == mine

    # My server is now full; the stranger's free server is invisible to me, by id or otherwise.
    with pytest.raises(psycopg.Error) as own_full, db.transaction():
        allocate(db, me, "s2")
    with pytest.raises(psycopg.Error) as for_stranger, db.transaction():
        allocate(db, stranger, "s3")
    db.execute("RESET ROLE")

    assert own_full.value.sqlstate == "WAH10"
    assert for_stranger.value.sqlstate == "WAH10"
    assert counter(db, theirs) == 0
    assert (
        db.execute("SELECT count(*) FROM public.waha_sessions WHERE waha_server_id = %s", (theirs,)).fetchone()[0] == 0
    )


def test_service_role_allocates_for_any_user(db, new_user):
    user = new_user()
    server = add_server(db, user, "alpha")

    db.execute("SET ROLE service_role")
    server_id, *_ = allocate(db, user, "s1")
    db.execute("RESET ROLE")

    assert server_id == server


def test_execute_is_granted_to_authenticated_and_service_role_only(db):
    db.execute("CREATE ROLE waha_test_outsider NOLOGIN")
    for function in ("public.allocate_waha_session(uuid, text, uuid[])", "public.release_waha_session(uuid)"):
        allowed = {
            role: db.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function)).fetchone()[0]
            for role in ("authenticated", "service_role", "waha_test_outsider")
        }
        assert allowed == {"authenticated": True, "service_role": True, "waha_test_outsider": False}, function
        if db.execute("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon')").fetchone()[0]:
            assert not db.execute("SELECT has_function_privilege('anon', %s, 'EXECUTE')", (function,)).fetchone()[0]


def test_functions_are_volatile_security_invoker_with_empty_search_path(db):
    rows = db.execute(
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
