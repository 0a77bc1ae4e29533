"""public.waha_servers: the spec's columns in the seed's order, and the rules the database enforces.

Every refusal is asserted by SQLSTATE and constraint name, with no row written.
Runs on each kind of V2.1 database (fresh plain, fresh Supabase, upgraded legacy).
"""

from __future__ import annotations

import importlib.util
import re
import uuid
from pathlib import Path

import pytest

from tests.sql import catalog
from tests.support.assertions import (
    CHECK_VIOLATION,
    FOREIGN_KEY_VIOLATION,
    NOT_NULL_VIOLATION,
    PAST,
    UNIQUE_VIOLATION,
    assert_insert_refused,
    assert_refused,
    assert_updated_at_is_set_by_the_database,
)
from tests.support.databases import has_auth_users
from tests.support.factories import add_server, add_session, add_user

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations" / "versions"

# The spec's table, in its order: (column, type as format_type prints it, NOT NULL, default).
SPEC_COLUMNS = [
    ("id", "uuid", True, "gen_random_uuid()"),
    ("user_id", "uuid", True, None),
    ("nome", "character varying(255)", True, None),
    ("api_url", "text", True, None),
    ("api_key", "text", False, None),
    ("descricao", "text", False, None),
    ("ativo", "boolean", True, "true"),
    ("webhook_url", "text", False, None),
    ("webhook_secret", "text", False, None),
    ("timeout", "integer", True, "30"),
    ("retry_attempts", "integer", True, "3"),
    ("rate_limit", "integer", True, "100"),
    ("prioridade", "integer", True, "0"),
    ("max_sessions", "integer", True, "50"),
    ("sessions_ativas", "integer", True, "0"),
    ("created_at", "timestamp with time zone", True, "now()"),
    ("updated_at", "timestamp with time zone", True, "now()"),
]


def breaking(column: str, constraint: str, *values) -> list:
    """One case per value: a server whose `column` is that value breaks the CHECK `constraint`."""
    return [pytest.param(column, value, constraint, id=f"{column}={value!r}") for value in values]


def a_server(user, **columns) -> dict:
    """The values of a waha_servers row that breaks no rule, but for what `columns` set."""
    return {"user_id": user, "nome": "a", "api_url": "https://a.example", **columns}


def test_columns_are_the_spec_table_in_order(tx):
    assert catalog.columns(tx, "public.waha_servers") == SPEC_COLUMNS


def test_keys_and_checks_are_named_constraints(tx):
    constraints = catalog.constraints(tx, "public.waha_servers")

    assert constraints["waha_servers_pkey"] == ("p", ["id"])
    assert constraints["waha_servers_user_id_api_url_key"] == ("u", ["user_id", "api_url"])
    checks = {name for name, (kind, _) in constraints.items() if kind == "c"}
    assert checks == {
        "waha_servers_nome_not_blank_check",
        "waha_servers_api_url_http_check",
        "waha_servers_webhook_url_http_check",
        "waha_servers_api_url_without_userinfo_check",
        "waha_servers_api_url_without_query_check",
        "waha_servers_api_url_without_fragment_check",
        "waha_servers_webhook_url_without_userinfo_check",
        "waha_servers_webhook_url_without_query_check",
        "waha_servers_webhook_url_without_fragment_check",
        "waha_servers_timeout_positive_check",
        "waha_servers_timeout_at_most_120_check",
        "waha_servers_retry_attempts_not_negative_check",
        "waha_servers_retry_attempts_at_most_10_check",
        "waha_servers_rate_limit_positive_check",
        "waha_servers_prioridade_range_check",
        "waha_servers_max_sessions_positive_check",
        "waha_servers_sessions_ativas_not_negative_check",
    }


def test_user_foreign_key_cascades_only_where_auth_users_exists(tx):
    user_fk = catalog.user_foreign_key(tx, "public.waha_servers")

    if has_auth_users(tx):
        assert user_fk == ("auth.users", "c")
    else:
        assert user_fk is None


def test_indexes_of_the_seed_list_exist(tx):
    leading = catalog.leading_index_columns(tx, "public.waha_servers")

    assert leading["waha_servers_user_id_prioridade_idx"] == "user_id"
    assert leading["waha_servers_ativo_idx"] == "ativo"
    assert leading["waha_servers_prioridade_idx"] == "prioridade"


def test_defaults_fill_what_the_insert_leaves_out(tx):
    user = add_user(tx)
    server = add_server(tx, user)

    row = tx.execute(
        """
        SELECT ativo, timeout, retry_attempts, rate_limit, prioridade, max_sessions, sessions_ativas,
               created_at = now(), updated_at = now(), id IS NOT NULL
        FROM public.waha_servers WHERE id = %s
        """,
        (server,),
    ).fetchone()

    assert row == (True, 30, 3, 100, 0, 50, 0, True, True, True)


@pytest.mark.parametrize("prioridade", [0, 10])
def test_priority_at_the_bounds_is_accepted(tx, prioridade):
    server = add_server(tx, add_user(tx), prioridade=prioridade)
    assert tx.execute("SELECT prioridade FROM public.waha_servers WHERE id = %s", (server,)).fetchone()[0] == prioridade


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        *breaking("prioridade", "waha_servers_prioridade_range_check", -1, 11),
        *breaking("max_sessions", "waha_servers_max_sessions_positive_check", 0, -5),
        *breaking("sessions_ativas", "waha_servers_sessions_ativas_not_negative_check", -1),
        *breaking("timeout", "waha_servers_timeout_positive_check", 0, -1),
        *breaking("timeout", "waha_servers_timeout_at_most_120_check", 121, 2147483647),
        *breaking("retry_attempts", "waha_servers_retry_attempts_not_negative_check", -1),
        *breaking("retry_attempts", "waha_servers_retry_attempts_at_most_10_check", 11, 2147483647),
        *breaking("rate_limit", "waha_servers_rate_limit_positive_check", 0),
        *breaking(
            "api_url",
            "waha_servers_api_url_http_check",
            "ftp://waha.example",
            "waha.example",
            "javascript:alert(1)",
            "http://",
            "https:///path",
            " https://waha.example",
            "",
            "file:///etc/passwd",
            # the whole string is the URL: no space, no credentials, nothing trailing
            "https://a b",
            "https://waha.example/api v2",
            "https://waha.example ",
            "https://waha.example\n",
            "https://waha.example:",
            "https://waha.example:http",
            "http://[::1",
        ),
        # What would ride along in every request of the admin's probes: credentials, a query, a fragment.
        *breaking(
            "api_url",
            "waha_servers_api_url_without_userinfo_check",
            "https://user:pw@waha.example",
            "https://user@waha.example",
            "http://127.0.0.1:9@evil.example/",
        ),
        *breaking(
            "api_url",
            "waha_servers_api_url_without_query_check",
            "http://127.0.0.1:55459/admin/delete-everything?confirm=yes",
            "https://waha.example/?",
            "https://waha.example?x=1#top",
        ),
        *breaking(
            "api_url", "waha_servers_api_url_without_fragment_check", "https://waha.example/api#", "https://w.example#x"
        ),
        *breaking("webhook_url", "waha_servers_webhook_url_without_userinfo_check", "https://bot:s3cret@hooks.example"),
        *breaking("webhook_url", "waha_servers_webhook_url_without_query_check", "https://hooks.example/w?token=abc"),
        *breaking("webhook_url", "waha_servers_webhook_url_without_fragment_check", "https://hooks.example/w#x"),
        *breaking(
            "webhook_url",
            "waha_servers_webhook_url_http_check",
            "ftp://hooks.example",
            "hooks.example/waha",
            "mailto:ops@example.com",
            "https://hooks.example/a b",
        ),
        *breaking("nome", "waha_servers_nome_not_blank_check", "", " ", "   ", "\t\n"),
    ],
)
def test_value_a_check_rules_out_is_refused(tx, column, value, constraint):
    server = a_server(add_user(tx), **{column: value})
    assert_insert_refused(tx, "public.waha_servers", server, sqlstate=CHECK_VIOLATION, constraint=constraint)


def test_priority_cannot_be_updated_out_of_range(tx):
    server = add_server(tx, add_user(tx), prioridade=5)
    assert_refused(
        tx,
        "UPDATE public.waha_servers SET prioridade = 11 WHERE id = %s",
        (server,),
        sqlstate=CHECK_VIOLATION,
        constraint="waha_servers_prioridade_range_check",
    )
    assert tx.execute("SELECT prioridade FROM public.waha_servers WHERE id = %s", (server,)).fetchone()[0] == 5


def test_session_counter_cannot_be_decremented_below_zero(tx):
    server = add_server(tx, add_user(tx))
    assert_refused(
        tx,
        "UPDATE public.waha_servers SET sessions_ativas = sessions_ativas - 1 WHERE id = %s",
        (server,),
        sqlstate=CHECK_VIOLATION,
        constraint="waha_servers_sessions_ativas_not_negative_check",
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:3000",
        "https://waha1.seudominio.com",
        "https://waha-prod.com",
        "HTTPS://WAHA.EXAMPLE/api",
        "http://localhost:3000/",
        "https://waha.example.com/api",
        "http://[::1]:3000",
        "https://waha.example/base/path@v2",
    ],
)
def test_http_and_https_api_urls_are_accepted(tx, url):
    server = add_server(tx, add_user(tx), api_url=url)
    assert tx.execute("SELECT api_url FROM public.waha_servers WHERE id = %s", (server,)).fetchone()[0] == url


@pytest.mark.parametrize("column", ["nome", "api_url"])
def test_name_and_api_url_are_required(tx, column):
    server = a_server(add_user(tx))
    del server[column]
    assert_insert_refused(tx, "public.waha_servers", server, sqlstate=NOT_NULL_VIOLATION)


def test_webhook_url_may_be_null_or_http(tx):
    user = add_user(tx)
    add_server(tx, user, "sem-webhook", webhook_url=None)
    add_server(tx, user, "com-webhook", webhook_url="https://app.example/api/webhook")
    assert tx.execute("SELECT count(*) FROM public.waha_servers WHERE user_id = %s", (user,)).fetchone()[0] == 2


def test_same_url_twice_for_one_user_is_refused(tx):
    user = add_user(tx)
    add_server(tx, user, "primeiro", api_url="https://waha.example")
    assert_insert_refused(
        tx,
        "public.waha_servers",
        a_server(user, nome="segundo", api_url="https://waha.example"),
        sqlstate=UNIQUE_VIOLATION,
        constraint="waha_servers_user_id_api_url_key",
    )


def test_same_url_for_two_users_is_allowed(tx):
    add_server(tx, add_user(tx), api_url="https://shared.waha.example")
    add_server(tx, add_user(tx), api_url="https://shared.waha.example")
    count = tx.execute(
        "SELECT count(*) FROM public.waha_servers WHERE api_url = 'https://shared.waha.example'"
    ).fetchone()[0]
    assert count == 2


def test_updated_at_is_set_by_the_database_even_when_the_update_sets_it(tx):
    server = add_server(tx, add_user(tx), created_at=PAST, updated_at=PAST)
    assert_updated_at_is_set_by_the_database(tx, "public.waha_servers", server, "nome = 'renomeado'")


def test_deleting_a_server_without_sessions_is_allowed(tx):
    server = add_server(tx, add_user(tx))
    assert tx.execute("DELETE FROM public.waha_servers WHERE id = %s", (server,)).rowcount == 1


def test_deleting_a_server_that_still_has_sessions_is_refused(tx):
    user = add_user(tx)
    server = add_server(tx, user)
    add_session(tx, user, server)
    assert_refused(
        tx,
        "DELETE FROM public.waha_servers WHERE id = %s",
        (server,),
        sqlstate=FOREIGN_KEY_VIOLATION,
        constraint="waha_sessions_waha_server_id_user_id_fkey",
    )


def test_changing_the_owner_of_a_server_with_sessions_is_refused(tx):
    owner, stranger = add_user(tx), add_user(tx)
    server = add_server(tx, owner)
    add_session(tx, owner, server)
    assert_refused(
        tx,
        "UPDATE public.waha_servers SET user_id = %s WHERE id = %s",
        (stranger, server),
        sqlstate=FOREIGN_KEY_VIOLATION,
        constraint="waha_sessions_waha_server_id_user_id_fkey",
    )
    assert tx.execute("SELECT user_id FROM public.waha_servers WHERE id = %s", (server,)).fetchone()[0] == owner


def test_changing_the_owner_of_a_server_without_sessions_is_allowed(tx):
    owner, new_owner = add_user(tx), add_user(tx)
    server = add_server(tx, owner)
    tx.execute("UPDATE public.waha_servers SET user_id = %s WHERE id = %s", (new_owner, server))
    assert tx.execute("SELECT user_id FROM public.waha_servers WHERE id = %s", (server,)).fetchone()[0] == new_owner


@pytest.mark.parametrize("tx", ["supabase_head"], indirect=True)
def test_deleting_the_auth_user_removes_their_servers_and_sessions(tx):
    user, other = add_user(tx), add_user(tx)
    server = add_server(tx, user)
    add_session(tx, user, server, "loja-01")
    add_session(tx, user, server, "loja-02")
    kept_server = add_server(tx, other)
    add_session(tx, other, kept_server)

    tx.execute("DELETE FROM auth.users WHERE id = %s", (user,))

    left = tx.execute(
        """
        SELECT (SELECT count(*) FROM public.waha_servers WHERE user_id = %(user)s),
               (SELECT count(*) FROM public.waha_sessions WHERE user_id = %(user)s),
               (SELECT count(*) FROM public.waha_servers WHERE user_id = %(other)s),
               (SELECT count(*) FROM public.waha_sessions WHERE user_id = %(other)s)
        """,
        {"user": user, "other": other},
    ).fetchone()
    assert left == (0, 0, 1, 1)


@pytest.mark.parametrize("tx", ["supabase_head"], indirect=True)
def test_server_of_a_user_missing_from_auth_users_is_refused(tx):
    assert_insert_refused(
        tx,
        "public.waha_servers",
        a_server(uuid.uuid4()),
        sqlstate=FOREIGN_KEY_VIOLATION,
        constraint="waha_servers_user_id_fkey",
    )


def test_legacy_conversion_checks_urls_with_the_rule_of_the_table(tx):
    """0005 refuses, before converting, exactly the URLs the CHECKs would refuse: its expression is theirs."""
    spec = importlib.util.spec_from_file_location("conversion_0005", MIGRATIONS / "0005_convert_legacy_waha_config.py")
    conversion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conversion)
    legacy_rules = set(re.findall(r"legacy\.(?:api|webhook)_url !~\* '([^']+)'", conversion.UPGRADE_SQL))

    table_rules = {
        re.search(r"~\* '([^']+)'", definition).group(1)
        for (definition,) in tx.execute(
            "SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint "
            "WHERE conname IN ('waha_servers_api_url_http_check', 'waha_servers_webhook_url_http_check')"
        ).fetchall()
    }
    assert len(table_rules) == 1 and legacy_rules == table_rules
