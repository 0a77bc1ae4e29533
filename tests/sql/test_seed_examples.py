"""Every SQL example of the seed document (WAHA_MULTIPLOS_SERVIDORES.md) runs as written, on every kind of V2.1 database.

The examples (the seed's SQL verbatim, and the selection rules it implies) live in
waha_db.checks.seed, which `waha-db verify` runs too; here each runs on its own, in
the rolled-back transaction of `tx`.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.factories import add_user
from waha_db.checks import seed


@pytest.mark.parametrize("name", list(seed.EXAMPLES))
def test_seed_example_holds(tx, name):
    assert seed.EXAMPLES[name](tx, lambda: add_user(tx)) == []


def test_with_ids_replaces_every_placeholder_and_refuses_to_leave_one():
    user = uuid.uuid4()
    assert "'user-uuid-aqui'" not in seed.with_ids(seed.CREATE_SERVER, user=user)
    with pytest.raises(ValueError, match="placeholder"):
        seed.with_ids(seed.CREATE_SESSION, user=user)  # its 'server-uuid-aqui' needs a server


def test_an_example_reports_what_differs(tx):
    """The examples can fail: with the seed's Principal disabled, the best server is no longer it."""
    user = add_user(tx)
    seed.run_seed(tx, seed.CREATE_SERVER, user=user)
    seed.run_seed(tx, seed.ADD_MORE_SERVERS, user=user)
    tx.execute(
        "UPDATE public.waha_servers SET ativo = false WHERE user_id = %s AND nome = 'Servidor Principal'", (user,)
    )
    assert seed.best(tx, user) == ["Servidor Backup"]
    assert seed.expect("best", seed.best(tx, user), ["Servidor Principal"]) == [
        "best: expected ['Servidor Principal'], got ['Servidor Backup']"
    ]
