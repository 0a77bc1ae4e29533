"""Failover in the database: a server in cooldown ranks after every healthy one.

Selection (get_available_waha_server) and allocation (allocate_waha_session, which
asks the selection) on every V2.1 kind, in a rolled-back transaction.
"""

from __future__ import annotations

from tests.support.assertions import acting_as
from tests.support.factories import add_server, add_user
from tests.support.waha_calls import allocate, report_failure, report_success


def best(tx, user, excluded=None):
    if excluded is None:
        row = tx.execute("SELECT nome FROM public.get_available_waha_server(%s)", (user,)).fetchone()
    else:
        row = tx.execute("SELECT nome FROM public.get_available_waha_server(%s, %s)", (user, excluded)).fetchone()
    return None if row is None else row[0]


def allocated_on(tx, user, session_name):
    """The name of the server allocate_waha_session put the session on."""
    _, server = allocate(tx, user, session_name)
    return tx.execute("SELECT nome FROM public.waha_servers WHERE id = %s", (server,)).fetchone()[0]


def fail(tx, server_id, times=1):
    """`times` failures reported in a row."""
    for _ in range(times):
        report_failure(tx, server_id)


def seed_servers(tx, user):
    """Cenário 1 of the seed: Principal (priority 10, 100 slots) and Backup (5, 50 slots)."""
    principal = add_server(tx, user, "Principal", prioridade=10, max_sessions=100)
    backup = add_server(tx, user, "Backup", prioridade=5, max_sessions=50)
    return principal, backup


def test_principal_is_chosen_while_healthy(tx):
    user = add_user(tx)
    principal, _ = seed_servers(tx, user)
    report_success(tx, principal)

    assert best(tx, user) == "Principal"


def test_backup_is_chosen_while_principal_cools_down(tx):
    user = add_user(tx)
    principal, _ = seed_servers(tx, user)

    fail(tx, principal)

    assert best(tx, user) == "Backup"


def test_principal_is_chosen_again_after_a_success(tx):
    user = add_user(tx)
    principal, _ = seed_servers(tx, user)
    fail(tx, principal, times=3)

    report_success(tx, principal)

    assert best(tx, user) == "Principal"


def test_principal_is_offered_again_once_its_cooldown_has_ended(tx):
    user = add_user(tx)
    principal, _ = seed_servers(tx, user)
    fail(tx, principal)

    tx.execute(
        "UPDATE public.waha_server_health SET cooldown_until = now() - interval '1 second' WHERE server_id = %s",
        (principal,),
    )

    assert best(tx, user) == "Principal"


def test_when_every_server_cools_down_the_earliest_cooldown_end_is_offered(tx):
    user = add_user(tx)
    principal, backup = seed_servers(tx, user)
    fail(tx, principal, times=1)  # 30 s
    fail(tx, backup, times=3)  # 120 s

    assert best(tx, user) == "Principal"

    fail(tx, principal, times=3)  # now 240 s, later than Backup's 120 s
    assert best(tx, user) == "Backup"


def test_a_cooling_server_is_still_offered_when_the_healthy_ones_are_excluded(tx):
    user = add_user(tx)
    principal, backup = seed_servers(tx, user)
    fail(tx, principal)

    assert best(tx, user, [backup]) == "Principal"


def test_cooldown_never_makes_a_full_or_inactive_server_eligible(tx):
    user = add_user(tx)
    principal, _ = seed_servers(tx, user)
    add_server(tx, user, "Cheio", prioridade=10, max_sessions=1, sessions_ativas=1)
    add_server(tx, user, "Desativado", prioridade=10, ativo=False)
    fail(tx, principal)

    assert best(tx, user) == "Backup"


def test_the_seeds_order_holds_among_healthy_servers(tx):
    user = add_user(tx)
    principal = add_server(tx, user, "Principal", prioridade=10, max_sessions=100)
    # Among the healthy ones: priority first, then the lower load, then more free slots.
    add_server(tx, user, "Cheio-70", prioridade=5, max_sessions=10, sessions_ativas=7)
    add_server(tx, user, "Leve-20", prioridade=5, max_sessions=10, sessions_ativas=2)
    add_server(tx, user, "Leve-20-grande", prioridade=5, max_sessions=20, sessions_ativas=4)
    add_server(tx, user, "Baixa", prioridade=1, max_sessions=10)
    fail(tx, principal)

    picks = []
    excluded = []
    while (pick := best(tx, user, excluded)) is not None:
        picks.append(pick)
        excluded.append(
            tx.execute("SELECT id FROM public.waha_servers WHERE user_id = %s AND nome = %s", (user, pick)).fetchone()[
                0
            ]
        )

    assert picks == ["Leve-20-grande", "Leve-20", "Cheio-70", "Baixa", "Principal"]


def test_allocation_falls_back_to_backup_while_principal_cools_down(tx):
    user = add_user(tx)
    principal, _ = seed_servers(tx, user)
    fail(tx, principal)

    assert allocated_on(tx, user, "loja-01") == "Backup"

    report_success(tx, principal)
    assert allocated_on(tx, user, "loja-02") == "Principal"


def test_allocation_uses_a_cooling_server_when_no_healthy_one_has_room(tx):
    user = add_user(tx)
    principal = add_server(tx, user, "Principal", prioridade=10, max_sessions=5)
    add_server(tx, user, "Backup", prioridade=5, max_sessions=1)
    fail(tx, principal)

    assert [allocated_on(tx, user, f"loja-{n}") for n in range(3)] == ["Backup", "Principal", "Principal"]


def test_failover_works_for_a_signed_in_user(tx):
    user = add_user(tx)
    principal, _ = seed_servers(tx, user)

    with acting_as(tx, "authenticated", user):
        fail(tx, principal)
        assert best(tx, user) == "Backup"
        assert allocated_on(tx, user, "loja-01") == "Backup"
