"""public.waha_sessions: the spec's columns in order, WAHA's naming rule, one owner per server and session.

Runs on each kind of V2.1 database (fresh plain, fresh Supabase, upgraded legacy).
"""

from __future__ import annotations

import pytest

from tests.sql import catalog
from tests.support.assertions import (
    CHECK_VIOLATION,
    FOREIGN_KEY_VIOLATION,
    PAST,
    UNIQUE_VIOLATION,
    assert_refused,
    assert_updated_at_is_set_by_the_database,
)
from tests.support.databases import has_auth_users
from tests.support.factories import add_server, add_session, add_user

SPEC_COLUMNS = [
    ("id", "uuid", True, "gen_random_uuid()"),
    ("user_id", "uuid", True, None),
    ("waha_server_id", "uuid", True, None),
    ("session_name", "character varying(255)", True, None),
    ("status", "character varying(50)", True, "'STOPPED'::character varying"),
    ("phone_number", "character varying(20)", False, None),
    ("profile_name", "character varying(255)", False, None),
    ("qr_code", "text", False, None),
    ("last_connected_at", "timestamp with time zone", False, None),
    ("created_at", "timestamp with time zone", True, "now()"),
    ("updated_at", "timestamp with time zone", True, "now()"),
]

# A session lives on a server of its own user: (waha_server_id, user_id) -> waha_servers (id, user_id).
OWNER_KEY = "waha_sessions_waha_server_id_user_id_fkey"


def assert_refused_by_the_owner_key(tx, statement: str, params) -> None:
    assert_refused(tx, statement, params, sqlstate=FOREIGN_KEY_VIOLATION, constraint=OWNER_KEY)


def test_columns_are_the_spec_table_in_order(tx):
    assert catalog.columns(tx, "public.waha_sessions") == SPEC_COLUMNS


def test_keys_and_checks_are_named_constraints(tx):
    constraints = catalog.constraints(tx, "public.waha_sessions")

    assert constraints["waha_sessions_pkey"] == ("p", ["id"])
    assert constraints["waha_sessions_waha_server_id_session_name_key"] == ("u", ["waha_server_id", "session_name"])
    assert constraints["waha_sessions_session_name_waha_rule_check"][0] == "c"
    assert constraints[OWNER_KEY] == ("f", ["waha_server_id", "user_id"])


def test_session_to_server_key_is_checked_at_statement_end_not_restricted(tx):
    """NO ACTION, not RESTRICT: a user's deletion cascades through both tables before the check."""
    action = tx.execute(
        """
        SELECT confupdtype, confdeltype, condeferrable FROM pg_catalog.pg_constraint
        WHERE conname = %s
        """,
        (OWNER_KEY,),
    ).fetchone()
    assert action == ("a", "a", False)


def test_user_foreign_key_cascades_only_where_auth_users_exists(tx):
    user_fk = catalog.user_foreign_key(tx, "public.waha_sessions")
    assert user_fk == (("auth.users", "c") if has_auth_users(tx) else None)


def test_indexes_of_the_seed_list_exist(tx):
    leading = catalog.leading_index_columns(tx, "public.waha_sessions")

    assert leading["waha_sessions_user_id_idx"] == "user_id"
    assert leading["waha_sessions_waha_server_id_user_id_idx"] == "waha_server_id"
    assert leading["waha_sessions_status_idx"] == "status"
    assert leading["waha_sessions_session_name_idx"] == "session_name"


def test_every_foreign_key_of_every_waha_table_is_covered_by_an_index_in_its_order(tx):
    keys = {
        name
        for (name,) in tx.execute(
            "SELECT conname FROM pg_catalog.pg_constraint WHERE contype = 'f' AND conrelid::regclass::text ~ '^waha_'"
        ).fetchall()
    }
    assert {OWNER_KEY, "waha_server_health_user_id_server_id_fkey"} <= keys
    assert catalog.unindexed_foreign_keys(tx) == []


def test_uncovered_foreign_key_would_be_reported(tx):
    """The coverage query above can fail: without its index, the session-to-server key is reported."""
    tx.execute("DROP INDEX public.waha_sessions_waha_server_id_user_id_idx")
    # CASCADE: waha_session_last_event's key to the session (revision 0012) goes with it.
    tx.execute("ALTER TABLE public.waha_sessions DROP CONSTRAINT waha_sessions_waha_server_id_session_name_key CASCADE")
    assert catalog.unindexed_foreign_keys(tx) == [("waha_sessions", OWNER_KEY)]


def test_foreign_key_whose_index_has_its_columns_in_another_order_is_reported(tx):
    """(server_id, user_id) is not covered by an index on (user_id, server_id): splinter compares in order."""
    tx.execute("ALTER TABLE public.waha_server_health DROP CONSTRAINT waha_server_health_user_id_server_id_fkey")
    tx.execute(
        "ALTER TABLE public.waha_server_health ADD CONSTRAINT waha_server_health_reversed_fkey "
        "FOREIGN KEY (server_id, user_id) REFERENCES public.waha_servers (id, user_id)"
    )
    assert catalog.unindexed_foreign_keys(tx) == [("waha_server_health", "waha_server_health_reversed_fkey")]


def test_status_defaults_to_stopped_and_accepts_free_text(tx):
    user = add_user(tx)
    server = add_server(tx, user)
    stopped = add_session(tx, user, server, "padrao")
    connecting = add_session(tx, user, server, "nova", status="connecting")

    statuses = dict(
        tx.execute("SELECT id, status FROM public.waha_sessions WHERE id IN (%s, %s)", (stopped, connecting)).fetchall()
    )
    assert statuses == {stopped: "STOPPED", connecting: "connecting"}


@pytest.mark.parametrize("name", ["a", "loja-01", "Cliente_42", "x" * 54, "default", "A-b_9"])
def test_names_waha_accepts_are_accepted(tx, name):
    user = add_user(tx)
    session = add_session(tx, user, add_server(tx, user), name)
    assert tx.execute("SELECT session_name FROM public.waha_sessions WHERE id = %s", (session,)).fetchone()[0] == name


@pytest.mark.parametrize("name", ["x" * 55, "", "loja 01", "loja.01", "sessão", "loja/01", " loja", "loja\n"])
def test_names_waha_refuses_are_refused(tx, name):
    user = add_user(tx)
    server = add_server(tx, user)
    assert_refused(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, %s)",
        (user, server, name),
        sqlstate=CHECK_VIOLATION,
        constraint="waha_sessions_session_name_waha_rule_check",
    )


def test_same_session_name_twice_on_one_server_is_refused(tx):
    user = add_user(tx)
    server = add_server(tx, user)
    add_session(tx, user, server, "loja-01")
    assert_refused(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, 'loja-01')",
        (user, server),
        sqlstate=UNIQUE_VIOLATION,
        constraint="waha_sessions_waha_server_id_session_name_key",
    )


def test_same_session_name_on_two_servers_is_allowed(tx):
    user = add_user(tx)
    add_session(tx, user, add_server(tx, user, "alpha"), "loja-01")
    add_session(tx, user, add_server(tx, user, "beta"), "loja-01")
    assert tx.execute("SELECT count(*) FROM public.waha_sessions WHERE user_id = %s", (user,)).fetchone()[0] == 2


def test_session_on_another_users_server_is_refused(tx):
    owner, intruder = add_user(tx), add_user(tx)
    server = add_server(tx, owner)
    assert_refused_by_the_owner_key(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, 'intrusa')",
        (intruder, server),
    )


def test_session_on_a_missing_server_is_refused(tx):
    user = add_user(tx)
    assert_refused_by_the_owner_key(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, gen_random_uuid(), 'orfa')",
        (user,),
    )


def test_moving_a_session_to_another_users_server_is_refused(tx):
    owner, stranger = add_user(tx), add_user(tx)
    session = add_session(tx, owner, add_server(tx, owner))
    strangers_server = add_server(tx, stranger)
    assert_refused_by_the_owner_key(
        tx, "UPDATE public.waha_sessions SET waha_server_id = %s WHERE id = %s", (strangers_server, session)
    )


def test_giving_a_session_to_another_user_is_refused(tx):
    owner, stranger = add_user(tx), add_user(tx)
    session = add_session(tx, owner, add_server(tx, owner))
    assert_refused_by_the_owner_key(
        tx, "UPDATE public.waha_sessions SET user_id = %s WHERE id = %s", (stranger, session)
    )


def test_moving_a_session_between_own_servers_is_allowed(tx):
    user = add_user(tx)
    session = add_session(tx, user, add_server(tx, user, "alpha"))
    beta = add_server(tx, user, "beta")
    tx.execute("UPDATE public.waha_sessions SET waha_server_id = %s WHERE id = %s", (beta, session))
    assert tx.execute("SELECT waha_server_id FROM public.waha_sessions WHERE id = %s", (session,)).fetchone()[0] == beta


def test_phone_number_longer_than_20_characters_is_refused(tx):
    user = add_user(tx)
    server = add_server(tx, user)
    assert_refused(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, phone_number) VALUES (%s, %s, 'a', %s)",
        (user, server, "5" * 21),
        sqlstate="22001",
    )


def test_updated_at_is_set_by_the_database_even_when_the_update_sets_it(tx):
    user = add_user(tx)
    session = add_session(tx, user, add_server(tx, user), created_at=PAST, updated_at=PAST)
    assert_updated_at_is_set_by_the_database(tx, "public.waha_sessions", session, "status = 'WORKING'")


def test_updated_at_triggers_fire_before_each_row_update(tx):
    triggers = tx.execute(
        """
        SELECT tgrelid::regclass::text, tgname, tgfoid::regproc::text, tgtype
        FROM pg_catalog.pg_trigger
        WHERE tgrelid IN ('public.waha_servers'::regclass, 'public.waha_sessions'::regclass)
          AND tgname LIKE '%%updated_at'
        ORDER BY 1
        """
    ).fetchall()
    # tgtype 19 = ROW (1) | BEFORE (2) | UPDATE (16)
    assert triggers == [
        ("waha_servers", "waha_servers_set_updated_at", "waha_set_updated_at", 19),
        ("waha_sessions", "waha_sessions_set_updated_at", "waha_set_updated_at", 19),
    ]
