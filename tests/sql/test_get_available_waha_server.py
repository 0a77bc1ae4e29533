"""get_available_waha_server(user_uuid, excluded_server_ids): which server a new session goes to.

Order: prioridade DESC, load (sessions_ativas / max_sessions) ASC as an exact ratio,
more free slots, oldest created_at, id. Candidates: the user's active servers with
a free slot, not excluded. At head a server cooling down after failures ranks
after all others (revision 0007); none of these servers has a health row, so the
seed's order decides. Runs on each kind of V2.1 database.
"""

from __future__ import annotations

import datetime
import uuid

import pytest

from tests.support.factories import add_server, add_user

EPOCH = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)


def pick(tx, user_id, excluded=None, *, pass_excluded: bool = False) -> list[uuid.UUID]:
    """The ids the function returns (at most one)."""
    if excluded is None and not pass_excluded:
        rows = tx.execute("SELECT id FROM public.get_available_waha_server(%s)", (user_id,)).fetchall()
    else:
        rows = tx.execute(
            "SELECT id FROM public.get_available_waha_server(%s, %s::uuid[])", (user_id, excluded)
        ).fetchall()
    return [row[0] for row in rows]


def test_function_signature_is_the_apps_rpc(tx):
    properties = tx.execute(
        """
        SELECT p.proargnames, pg_catalog.pg_get_function_arguments(p.oid), p.proretset,
               p.prorettype::regtype::text, p.provolatile, p.prosecdef, p.proconfig, l.lanname
        FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
        WHERE p.oid = 'public.get_available_waha_server(uuid, uuid[])'::regprocedure
        """
    ).fetchone()
    assert properties == (
        ["user_uuid", "excluded_server_ids"],
        "user_uuid uuid, excluded_server_ids uuid[] DEFAULT '{}'::uuid[]",
        True,
        "waha_servers",
        "s",  # STABLE
        False,  # SECURITY INVOKER
        ['search_path=""'],
        "plpgsql",
    )


def test_called_by_parameter_name_as_the_app_does(tx):
    user = add_user(tx)
    server = add_server(tx, user)
    rows = tx.execute("SELECT id FROM public.get_available_waha_server(user_uuid => %s)", (user,)).fetchall()
    assert rows == [(server,)]


def test_returns_the_whole_server_row(tx):
    user = add_user(tx)
    server = add_server(tx, user, descricao="linha inteira")
    picked = tx.execute("SELECT * FROM public.get_available_waha_server(%s)", (user,)).fetchall()
    stored = tx.execute("SELECT * FROM public.waha_servers WHERE id = %s", (server,)).fetchall()
    assert picked == stored


def test_higher_priority_wins_even_when_busier(tx):
    user = add_user(tx)
    add_server(tx, user, "idle", prioridade=5, max_sessions=10, sessions_ativas=0)
    busy = add_server(tx, user, "busy", prioridade=6, max_sessions=10, sessions_ativas=9)
    assert pick(tx, user) == [busy]


def test_at_equal_priority_a_quarter_loaded_server_beats_a_half_loaded_one(tx):
    """Integer division ranks 1/4 and 5/10 equal (0), and then the free-slot tie-break would pick 5/10."""
    user = add_user(tx)
    quarter = add_server(tx, user, "quarter", prioridade=5, max_sessions=4, sessions_ativas=1)
    add_server(tx, user, "half", prioridade=5, max_sessions=10, sessions_ativas=5)
    assert pick(tx, user) == [quarter]


def test_load_is_compared_exactly_not_rounded(tx):
    """2/3 < 3/4; both are 0 in integer division and have one free slot, so only the exact ratio decides."""
    user = add_user(tx)
    add_server(tx, user, "three-quarters", max_sessions=4, sessions_ativas=3, created_at=EPOCH)
    two_thirds = add_server(
        tx, user, "two-thirds", max_sessions=3, sessions_ativas=2, created_at=EPOCH + datetime.timedelta(days=1)
    )
    assert pick(tx, user) == [two_thirds]


def test_load_ratios_that_differ_in_the_nineteenth_decimal_are_told_apart(tx):
    """(n-1)/n vs (n-2)/(n-1) for n = 2^31-1 differ by about 2e-19, beyond float precision."""
    user = add_user(tx)
    n = 2**31 - 1
    add_server(tx, user, "bigger-load", max_sessions=n, sessions_ativas=n - 1, created_at=EPOCH)
    lighter = add_server(
        tx,
        user,
        "lighter-load",
        max_sessions=n - 1,
        sessions_ativas=n - 2,
        created_at=EPOCH + datetime.timedelta(days=1),
    )
    assert pick(tx, user) == [lighter]


def test_at_equal_load_more_free_slots_win(tx):
    user = add_user(tx)
    add_server(tx, user, "small", max_sessions=2, sessions_ativas=1, created_at=EPOCH)
    large = add_server(
        tx, user, "large", max_sessions=10, sessions_ativas=5, created_at=EPOCH + datetime.timedelta(days=1)
    )
    assert pick(tx, user) == [large]


def test_at_equal_load_and_free_slots_the_oldest_wins(tx):
    user = add_user(tx)
    add_server(tx, user, "newer", created_at=EPOCH + datetime.timedelta(seconds=1))
    older = add_server(tx, user, "older", created_at=EPOCH)
    add_server(tx, user, "newest", created_at=EPOCH + datetime.timedelta(days=1))
    assert pick(tx, user) == [older]


def test_complete_ties_are_broken_by_id(tx):
    user = add_user(tx)
    ids = [uuid.UUID(f"{digit}" * 8 + "-0000-4000-8000-000000000000") for digit in (7, 3, 9)]
    for number, server_id in enumerate(ids):
        add_server(tx, user, f"twin-{number}", id=server_id, created_at=EPOCH)
    assert pick(tx, user) == [min(ids)]
    assert pick(tx, user) == [min(ids)]


def test_full_server_is_skipped(tx):
    user = add_user(tx)
    add_server(tx, user, "full", prioridade=10, max_sessions=5, sessions_ativas=5)
    backup = add_server(tx, user, "backup", prioridade=1, max_sessions=5, sessions_ativas=4)
    assert pick(tx, user) == [backup]


def test_server_over_its_capacity_is_skipped(tx):
    """max_sessions lowered below the sessions already running."""
    user = add_user(tx)
    add_server(tx, user, "overfull", prioridade=10, max_sessions=2, sessions_ativas=7)
    backup = add_server(tx, user, "backup", prioridade=1)
    assert pick(tx, user) == [backup]


def test_inactive_server_is_skipped(tx):
    user = add_user(tx)
    add_server(tx, user, "inactive", prioridade=10, ativo=False)
    active = add_server(tx, user, "active", prioridade=0)
    assert pick(tx, user) == [active]


def test_excluded_server_is_skipped(tx):
    user = add_user(tx)
    failed = add_server(tx, user, "failed", prioridade=10)
    fallback = add_server(tx, user, "fallback", prioridade=5)
    assert pick(tx, user, [failed]) == [fallback]


def test_excluding_every_candidate_gives_zero_rows(tx):
    user = add_user(tx)
    first, second = add_server(tx, user, "first"), add_server(tx, user, "second")
    assert pick(tx, user, [first, second]) == []


def test_null_inside_the_excluded_list_excludes_only_the_listed_servers(tx):
    user = add_user(tx)
    failed = add_server(tx, user, "failed", prioridade=10)
    fallback = add_server(tx, user, "fallback", prioridade=5)
    assert pick(tx, user, [None]) == [failed]
    assert pick(tx, user, [failed, None]) == [fallback]


def test_null_excluded_list_excludes_nothing(tx):
    user = add_user(tx)
    best = add_server(tx, user, "best", prioridade=10)
    add_server(tx, user, "other", prioridade=1)
    assert pick(tx, user, None, pass_excluded=True) == [best]


def test_empty_excluded_list_excludes_nothing(tx):
    user = add_user(tx)
    best = add_server(tx, user, "best", prioridade=10)
    assert pick(tx, user, []) == [best]


def test_another_users_server_is_never_picked(tx):
    user, stranger = add_user(tx), add_user(tx)
    add_server(tx, stranger, "strangers-best", prioridade=10)
    own = add_server(tx, user, "own", prioridade=0, max_sessions=2, sessions_ativas=1)
    assert pick(tx, user) == [own]


def test_user_whose_servers_are_all_unavailable_gets_zero_rows(tx):
    user, stranger = add_user(tx), add_user(tx)
    add_server(tx, user, "full", max_sessions=1, sessions_ativas=1)
    add_server(tx, user, "off", ativo=False)
    add_server(tx, stranger, "strangers")
    assert pick(tx, user) == []


def test_unknown_user_gets_zero_rows_not_an_error(tx):
    add_server(tx, add_user(tx))
    assert pick(tx, uuid.uuid4()) == []


def test_null_user_gets_zero_rows(tx):
    add_server(tx, add_user(tx))
    assert pick(tx, None) == []


def test_picking_changes_nothing(tx):
    user = add_user(tx)
    server = add_server(tx, user, sessions_ativas=3)
    before = tx.execute("SELECT * FROM public.waha_servers WHERE id = %s", (server,)).fetchone()
    pick(tx, user)
    assert tx.execute("SELECT * FROM public.waha_servers WHERE id = %s", (server,)).fetchone() == before


@pytest.mark.parametrize("filled", range(0, 5))
def test_filling_servers_one_slot_at_a_time_follows_priority_then_load(tx, filled):
    """The seed's scenario as a sequence: Principal until full, then Backup."""
    user = add_user(tx)
    principal = add_server(tx, user, "principal", prioridade=10, max_sessions=2)
    backup = add_server(tx, user, "backup", prioridade=5, max_sessions=2)
    picks = []
    for _ in range(filled):
        (chosen,) = pick(tx, user)
        picks.append(chosen)
        tx.execute("UPDATE public.waha_servers SET sessions_ativas = sessions_ativas + 1 WHERE id = %s", (chosen,))
    assert picks == [principal, principal, backup, backup][:filled]
    assert pick(tx, user) == ([] if filled == 4 else [[principal, principal, backup, backup][filled]])
