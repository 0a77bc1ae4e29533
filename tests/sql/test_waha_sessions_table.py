"""public.waha_sessions: the spec's columns in order, WAHA's naming rule, one owner per server and session.

Runs on each kind of V2.1 database (fresh plain, fresh Supabase, upgraded legacy).
"""

from __future__ import annotations

import datetime

import pytest

from tests.sql.conftest import add_server, add_session, assert_refused, has_auth_users
from tests.sql.test_waha_servers_table import (
    CHECK_VIOLATION,
    FOREIGN_KEY_VIOLATION,
    UNIQUE_VIOLATION,
    columns_of,
    constraints_of,
)

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

# Supabase's linter rule 0001_unindexed_foreign_keys (splinter), on every WAHA table:
# a foreign key is covered only by a valid index whose leading columns are the key's
# columns in the key's order (conkey order). int2vector's text form gives a 1-based
# array; a plain ::int2[] cast would start at 0.
UNINDEXED_FOREIGN_KEYS_SQL = """
SELECT c.conrelid::regclass::text, c.conname
FROM pg_catalog.pg_constraint AS c
WHERE c.contype = 'f'
  AND c.connamespace = 'public'::regnamespace
  AND c.conrelid::regclass::text ~ '^waha_'
  AND NOT EXISTS (
      SELECT FROM pg_catalog.pg_index AS i
      WHERE i.indrelid = c.conrelid AND i.indisvalid
        AND c.conkey = (pg_catalog.string_to_array(i.indkey::text, ' ')::int2[])[1:pg_catalog.array_length(c.conkey, 1)]
  )
ORDER BY 1, 2
"""


def test_columns_are_the_spec_table_in_order(tx):
    assert columns_of(tx, "public.waha_sessions") == SPEC_COLUMNS


def test_keys_and_checks_are_named_constraints(tx):
    constraints = constraints_of(tx, "public.waha_sessions")

    assert constraints["waha_sessions_pkey"] == ("p", ["id"])
    assert constraints["waha_sessions_waha_server_id_session_name_key"] == ("u", ["waha_server_id", "session_name"])
    assert constraints["waha_sessions_session_name_waha_rule_check"][0] == "c"
    assert constraints["waha_sessions_waha_server_id_user_id_fkey"] == ("f", ["waha_server_id", "user_id"])


def test_session_to_server_key_is_checked_at_statement_end_not_restricted(tx):
    """NO ACTION, not RESTRICT: a user's deletion cascades through both tables before the check."""
    action = tx.execute(
        """
        SELECT confupdtype, confdeltype, condeferrable FROM pg_catalog.pg_constraint
        WHERE conname = 'waha_sessions_waha_server_id_user_id_fkey'
        """
    ).fetchone()
    assert action == ("a", "a", False)


def test_user_foreign_key_cascades_only_where_auth_users_exists(tx):
    user_fk = tx.execute(
        """
        SELECT confrelid::regclass::text, confdeltype FROM pg_catalog.pg_constraint
        WHERE conrelid = 'public.waha_sessions'::regclass AND conname = 'waha_sessions_user_id_fkey'
        """
    ).fetchone()
    assert user_fk == (("auth.users", "c") if has_auth_users(tx) else None)


def test_indexes_of_the_seed_list_exist(tx):
    leading = dict(
        tx.execute(
            """
            SELECT indexrelid::regclass::text, attname
            FROM pg_catalog.pg_index
            JOIN pg_catalog.pg_attribute ON attrelid = indrelid AND attnum = indkey[0]
            WHERE indrelid = 'public.waha_sessions'::regclass
            """
        ).fetchall()
    )

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
    assert {"waha_sessions_waha_server_id_user_id_fkey", "waha_server_health_user_id_server_id_fkey"} <= keys
    assert tx.execute(UNINDEXED_FOREIGN_KEYS_SQL).fetchall() == []


def test_uncovered_foreign_key_would_be_reported(tx):
    """The coverage query above can fail: without its index, the session-to-server key is reported."""
    tx.execute("DROP INDEX public.waha_sessions_waha_server_id_user_id_idx")
    tx.execute("ALTER TABLE public.waha_sessions DROP CONSTRAINT waha_sessions_waha_server_id_session_name_key")
    assert tx.execute(UNINDEXED_FOREIGN_KEYS_SQL).fetchall() == [
        ("waha_sessions", "waha_sessions_waha_server_id_user_id_fkey")
    ]


def test_foreign_key_whose_index_has_its_columns_in_another_order_is_reported(tx):
    """(server_id, user_id) is not covered by an index on (user_id, server_id): splinter compares in order."""
    tx.execute("ALTER TABLE public.waha_server_health DROP CONSTRAINT waha_server_health_user_id_server_id_fkey")
    tx.execute(
        "ALTER TABLE public.waha_server_health ADD CONSTRAINT waha_server_health_reversed_fkey "
        "FOREIGN KEY (server_id, user_id) REFERENCES public.waha_servers (id, user_id)"
    )
    assert tx.execute(UNINDEXED_FOREIGN_KEYS_SQL).fetchall() == [("waha_server_health", "waha_server_health_reversed_fkey")]


def test_status_defaults_to_stopped_and_accepts_free_text(tx, add_user):
    user = add_user()
    server = add_server(tx, user)
    stopped = add_session(tx, user, server, "padrao")
    connecting = add_session(tx, user, server, "nova", status="connecting")

    statuses = dict(
        tx.execute("SELECT id, status FROM public.waha_sessions WHERE id IN (%s, %s)", (stopped, connecting)).fetchall()
    )
    assert statuses == {stopped: "STOPPED", connecting: "connecting"}


@pytest.mark.parametrize("name", ["a", "loja-01", "Cliente_42", "x" * 54, "default", "A-b_9"])
def test_names_waha_accepts_are_accepted(tx, add_user, name):
    user = add_user()
    session = add_session(tx, user, add_server(tx, user), name)
    assert tx.execute("SELECT session_name FROM public.waha_sessions WHERE id = %s", (session,)).fetchone()[0] == name


@pytest.mark.parametrize("name", ["x" * 55, "", "loja 01", "loja.01", "sessão", "loja/01", " loja", "loja\n"])
def test_names_waha_refuses_are_refused(tx, add_user, name):
    user = add_user()
    server = add_server(tx, user)
    assert_refused(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, %s)",
        (user, server, name),
        sqlstate=CHECK_VIOLATION,
        constraint="waha_sessions_session_name_waha_rule_check",
    )


def test_same_session_name_twice_on_one_server_is_refused(tx, add_user):
    user = add_user()
    server = add_server(tx, user)
    add_session(tx, user, server, "loja-01")
    assert_refused(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, 'loja-01')",
        (user, server),
        sqlstate=UNIQUE_VIOLATION,
        constraint="waha_sessions_waha_server_id_session_name_key",
    )


def test_same_session_name_on_two_servers_is_allowed(tx, add_user):
    user = add_user()
    add_session(tx, user, add_server(tx, user, "alpha"), "loja-01")
    add_session(tx, user, add_server(tx, user, "beta"), "loja-01")
    assert tx.execute("SELECT count(*) FROM public.waha_sessions WHERE user_id = %s", (user,)).fetchone()[0] == 2


def test_session_on_another_users_server_is_refused(tx, add_user):
    owner, intruder = add_user(), add_user()
    server = add_server(tx, owner)
    assert_refused(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, 'intrusa')",
        (intruder, server),
        sqlstate=FOREIGN_KEY_VIOLATION,
        constraint="waha_sessions_waha_server_id_user_id_fkey",
    )


def test_session_on_a_missing_server_is_refused(tx, add_user):
    user = add_user()
    assert_refused(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, gen_random_uuid(), 'orfa')",
        (user,),
        sqlstate=FOREIGN_KEY_VIOLATION,
        constraint="waha_sessions_waha_server_id_user_id_fkey",
    )


def test_moving_a_session_to_another_users_server_is_refused(tx, add_user):
    owner, stranger = add_user(), add_user()
    session = add_session(tx, owner, add_server(tx, owner))
    strangers_server = add_server(tx, stranger)
    assert_refused(
        tx,
        "UPDATE public.waha_sessions SET waha_server_id = %s WHERE id = %s",
        (strangers_server, session),
        sqlstate=FOREIGN_KEY_VIOLATION,
        constraint="waha_sessions_waha_server_id_user_id_fkey",
    )


def test_giving_a_session_to_another_user_is_refused(tx, add_user):
    owner, stranger = add_user(), add_user()
    session = add_session(tx, owner, add_server(tx, owner))
    assert_refused(
        tx,
        "UPDATE public.waha_sessions SET user_id = %s WHERE id = %s",
        (stranger, session),
        sqlstate=FOREIGN_KEY_VIOLATION,
        constraint="waha_sessions_waha_server_id_user_id_fkey",
    )


def test_moving_a_session_between_own_servers_is_allowed(tx, add_user):
    user = add_user()
    session = add_session(tx, user, add_server(tx, user, "alpha"))
    beta = add_server(tx, user, "beta")
    tx.execute("UPDATE public.waha_sessions SET waha_server_id = %s WHERE id = %s", (beta, session))
    assert tx.execute("SELECT waha_server_id FROM public.waha_sessions WHERE id = %s", (session,)).fetchone()[0] == beta


def test_phone_number_longer_than_20_characters_is_refused(tx, add_user):
    user = add_user()
    server = add_server(tx, user)
    assert_refused(
        tx,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, phone_number) VALUES (%s, %s, 'a', %s)",
        (user, server, "5" * 21),
        sqlstate="22001",
    )


def test_updated_at_is_set_by_the_database_even_when_the_update_sets_it(tx, add_user):
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
    user = add_user()
    session = add_session(tx, user, add_server(tx, user), created_at=past, updated_at=past)

    tx.execute("UPDATE public.waha_sessions SET status = 'WORKING', updated_at = %s WHERE id = %s", (past, session))

    created_at, updated_at, now = tx.execute(
        "SELECT created_at, updated_at, now() FROM public.waha_sessions WHERE id = %s", (session,)
    ).fetchone()
    assert (created_at, updated_at) == (past, now)


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
