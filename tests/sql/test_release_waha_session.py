"""release_waha_session: a session stops and gives its slot back, exactly once.

Single-connection behaviour; concurrent releases are in test_allocation_concurrency.py.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.support.factories import add_server, add_session, add_user


def release(tx, session_id):
    return tx.execute("SELECT public.release_waha_session(%s)", (session_id,)).fetchone()[0]


def state(tx, server_id, session_id):
    return tx.execute(
        """
        SELECT server.sessions_ativas, session_row.status
        FROM public.waha_servers AS server JOIN public.waha_sessions AS session_row ON session_row.waha_server_id = server.id
        WHERE server.id = %s AND session_row.id = %s
        """,
        (server_id, session_id),
    ).fetchone()


def test_release_marks_session_stopped_and_frees_its_slot(tx):
    user = add_user(tx)
    server = add_server(tx, user)
    session = tx.execute("SELECT id FROM public.allocate_waha_session(%s, 'loja-01')", (user,)).fetchone()[0]
    assert state(tx, server, session) == (1, "STARTING")

    assert release(tx, session) is True

    assert state(tx, server, session) == (0, "STOPPED")


def test_releasing_twice_frees_one_slot_only(tx):
    user = add_user(tx)
    server = add_server(tx, user, sessions_ativas=3)
    session = add_session(tx, user, server, "loja-01", status="WORKING")

    assert [release(tx, session), release(tx, session)] == [True, False]

    assert state(tx, server, session) == (2, "STOPPED")


def release_from_a_server_counting(tx, user, sessions_ativas: int, status: str):
    """Releases the one `status` session of a server whose counter says `sessions_ativas`: (the result, state after)."""
    server = add_server(tx, user, sessions_ativas=sessions_ativas)
    session = add_session(tx, user, server, "loja-01", status=status)
    return release(tx, session), state(tx, server, session)


@pytest.mark.parametrize("status", ["FAILED", "disconnected", "Stopped"])
def test_session_that_occupies_no_slot_is_left_as_it_is(tx, status):
    released, after = release_from_a_server_counting(tx, add_user(tx), 2, status)
    assert released is False
    assert after == (2, status)


@pytest.mark.parametrize("status", ["WORKING", "SCAN_QR_CODE", "connecting", "PASSKEY_REQUIRED"])
def test_every_occupying_status_frees_a_slot(tx, status):
    released, after = release_from_a_server_counting(tx, add_user(tx), 1, status)
    assert released is True
    assert after == (0, "STOPPED")


def test_counter_never_goes_below_zero(tx):
    released, after = release_from_a_server_counting(tx, add_user(tx), 0, "WORKING")
    assert released is True
    assert after == (0, "STOPPED")


def test_unknown_session_raises_wah11(tx):
    missing = uuid.uuid4()
    with pytest.raises(psycopg.Error) as raised, tx.transaction():
        release(tx, missing)
    assert raised.value.sqlstate == "WAH11"
    assert str(missing) in raised.value.diag.message_primary


def test_signed_in_user_cannot_release_another_users_session(tx):
    owner, stranger = add_user(tx), add_user(tx)
    server = add_server(tx, owner, sessions_ativas=1)
    session = add_session(tx, owner, server, "loja-01", status="WORKING")

    tx.execute("SET ROLE authenticated")
    tx.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": str(stranger)}),))
    with pytest.raises(psycopg.Error) as raised, tx.transaction():
        release(tx, session)
    tx.execute("RESET ROLE")

    assert raised.value.sqlstate == "WAH11"
    assert state(tx, server, session) == (1, "WORKING")
