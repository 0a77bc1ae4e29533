"""release_waha_session: a session stops and gives its slot back, exactly once.

Single-connection behaviour; concurrent releases are in test_allocation_concurrency.py.
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


def add_server(db, user_id, name="alpha", *, max_sessions=10, sessions_ativas=0):
    return db.execute(
        """
        INSERT INTO public.waha_servers (user_id, nome, api_url, max_sessions, sessions_ativas)
        VALUES (%s, %s, %s, %s, %s) RETURNING id
        """,
        (user_id, name, f"https://{name}.waha.example", max_sessions, sessions_ativas),
    ).fetchone()[0]


def add_session(db, user_id, server_id, name, status):
    return db.execute(
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status) VALUES (%s, %s, %s, %s) RETURNING id",
        (user_id, server_id, name, status),
    ).fetchone()[0]


def release(db, session_id):
    return db.execute("SELECT public.release_waha_session(%s)", (session_id,)).fetchone()[0]


def state(db, server_id, session_id):
    return db.execute(
        """
        SELECT server.sessions_ativas, session_row.status
        FROM public.waha_servers AS server JOIN public.waha_sessions AS session_row ON session_row.waha_server_id = server.id
        WHERE server.id = %s AND session_row.id = %s
        """,
        (server_id, session_id),
    ).fetchone()


def test_release_marks_session_stopped_and_frees_its_slot(db, new_user):
    user = new_user()
    server = add_server(db, user)
    session = db.execute("SELECT id FROM public.allocate_waha_session(%s, 'loja-01')", (user,)).fetchone()[0]
    assert state(db, server, session) == (1, "STARTING")

    assert release(db, session) is True

    assert state(db, server, session) == (0, "STOPPED")


def test_releasing_twice_frees_one_slot_only(db, new_user):
    user = new_user()
    server = add_server(db, user, sessions_ativas=3)
    session = add_session(db, user, server, "loja-01", "WORKING")

    assert [release(db, session), release(db, session)] == [True, False]

    assert state(db, server, session) == (2, "STOPPED")


def release_from_a_server_counting(db, user, sessions_ativas: int, status: str):
    """Releases the one `status` session of a server whose counter says `sessions_ativas`: (the result, state after)."""
    server = add_server(db, user, sessions_ativas=sessions_ativas)
    session = add_session(db, user, server, "loja-01", status)
    return release(db, session), state(db, server, session)


@pytest.mark.parametrize("status", ["FAILED", "disconnected", "Stopped"])
def test_session_that_occupies_no_slot_is_left_as_it_is(db, new_user, status):
    released, after = release_from_a_server_counting(db, new_user(), 2, status)
    assert released is False
    assert after == (2, status)


@pytest.mark.parametrize("status", ["WORKING", "SCAN_QR_CODE", "connecting", "PASSKEY_REQUIRED"])
def test_every_occupying_status_frees_a_slot(db, new_user, status):
    released, after = release_from_a_server_counting(db, new_user(), 1, status)
    assert released is True
    assert after == (0, "STOPPED")


def test_counter_never_goes_below_zero(db, new_user):
    released, after = release_from_a_server_counting(db, new_user(), 0, "WORKING")
    assert released is True
    assert after == (0, "STOPPED")


def test_unknown_session_raises_wah11(db):
    missing = uuid.uuid4()
    with pytest.raises(psycopg.Error) as raised, db.transaction():
        release(db, missing)
    assert raised.value.sqlstate == "WAH11"
    assert str(missing) in raised.value.diag.message_primary


def test_signed_in_user_cannot_release_another_users_session(db, new_user):
    owner, stranger = new_user(), new_user()
    server = add_server(db, owner, sessions_ativas=1)
    session = add_session(db, owner, server, "loja-01", "WORKING")

    db.execute("SET ROLE authenticated")
    db.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": str(stranger)}),))
    with pytest.raises(psycopg.Error) as raised, db.transaction():
        release(db, session)
    db.execute("RESET ROLE")

    assert raised.value.sqlstate == "WAH11"
    assert state(db, server, session) == (1, "WORKING")
