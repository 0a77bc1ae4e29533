"""A refused row never shows its values: not in the error, not in the server's log.

PostgreSQL reports a CHECK or NOT NULL violation with `DETAIL: Failing row contains (...)`
and logs it: the api_key and webhook_secret of a server, the phone, profile and QR code
of a session. Revision 0011's triggers check the same rules first and raise PostgreSQL's
own message, SQLSTATE and constraint (or column), with the rule in words instead of the
row. Every CHECK and NOT NULL of both tables is covered: a rule added without a case here
fails the first tests.

Runs on each kind of V2.1 database (fresh plain, fresh Supabase, upgraded legacy); the log
is the session's throwaway server's (tests/conftest.py).
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tests.sql import catalog
from tests.support.assertions import CHECK_VIOLATION, NOT_NULL_VIOLATION, acting_as, assert_refused
from tests.support.factories import add_server, add_session, add_user, insert_statement

# A value that breaks each CHECK of waha_servers (and no rule checked before it).
SERVER_CHECKS = {
    "waha_servers_nome_not_blank_check": ("nome", "  "),
    "waha_servers_api_url_without_userinfo_check": ("api_url", "https://admin:pw@waha.example"),
    "waha_servers_api_url_without_query_check": (
        "api_url",
        "http://127.0.0.1:55459/admin/delete-everything?confirm=yes",
    ),
    "waha_servers_api_url_without_fragment_check": ("api_url", "https://waha.example/api#"),
    "waha_servers_api_url_http_check": ("api_url", "ftp://waha.example"),
    "waha_servers_webhook_url_without_userinfo_check": ("webhook_url", "https://bot:pw@hooks.example"),
    "waha_servers_webhook_url_without_query_check": ("webhook_url", "https://hooks.example/w?token=abc"),
    "waha_servers_webhook_url_without_fragment_check": ("webhook_url", "https://hooks.example/w#x"),
    "waha_servers_webhook_url_http_check": ("webhook_url", "mailto:ops@example.com"),
    "waha_servers_timeout_positive_check": ("timeout", 0),
    "waha_servers_timeout_at_most_120_check": ("timeout", 2147483647),
    "waha_servers_retry_attempts_not_negative_check": ("retry_attempts", -1),
    "waha_servers_retry_attempts_at_most_10_check": ("retry_attempts", 11),
    "waha_servers_rate_limit_positive_check": ("rate_limit", 0),
    "waha_servers_prioridade_range_check": ("prioridade", 11),
    "waha_servers_max_sessions_positive_check": ("max_sessions", 0),
    "waha_servers_sessions_ativas_not_negative_check": ("sessions_ativas", -1),
}
SESSION_CHECKS = {"waha_sessions_session_name_waha_rule_check": ("session_name", "nome com espaço")}


def secrets() -> dict[str, str]:
    """Values no error and no log line may show, new for each test (so the log holds them only from it)."""
    mark = uuid.uuid4().hex[:10]
    return {
        "api_key": f"api-key-{mark}",
        "webhook_secret": f"webhook-secret-{mark}",
        "phone_number": f"+55{int(mark, 16) % 10**11:011d}",
        "profile_name": f"Perfil {mark}",
        "qr_code": f"qr-{mark}",
    }


def server_values(user: uuid.UUID, hidden: dict[str, str], **columns) -> dict:
    values = {
        "user_id": user,
        "nome": "a",
        "api_url": f"https://a-{uuid.uuid4().hex[:8]}.example",
        "api_key": hidden["api_key"],
        "webhook_secret": hidden["webhook_secret"],
    }
    return values | columns


def session_values(user: uuid.UUID, server: uuid.UUID, hidden: dict[str, str], **columns) -> dict:
    values = {"user_id": user, "waha_server_id": server, "session_name": "loja-01"}
    return values | {key: hidden[key] for key in ("phone_number", "profile_name", "qr_code")} | columns


def shows_no_row(error: psycopg.Error, hidden: dict[str, str]) -> None:
    """Nothing the client (and the log) gets from `error` holds a value of the row."""
    diagnostic = error.diag
    said = "\n".join(
        filter(
            None, [diagnostic.message_primary, diagnostic.message_detail, diagnostic.message_hint, diagnostic.context]
        )
    )
    assert "Failing row contains" not in said
    for value in hidden.values():
        assert value not in said


def not_null_columns(connection: psycopg.Connection, table: str) -> list[str]:
    return [name for name, _type, not_null, _default in catalog.columns(connection, table) if not_null]


def test_every_check_of_waha_servers_has_a_case():
    """(The catalog side is test_the_cases_are_the_tables_checks: together, no CHECK goes untested.)"""
    assert len(SERVER_CHECKS) == len(set(SERVER_CHECKS))


def test_the_cases_are_the_tables_checks(tx):
    for table, cases in (("public.waha_servers", SERVER_CHECKS), ("public.waha_sessions", SESSION_CHECKS)):
        checks = {name for name, (kind, _columns) in catalog.constraints(tx, table).items() if kind == "c"}
        assert checks == set(cases), f"every CHECK of {table} needs a case here (and the trigger a rule)"


@pytest.mark.parametrize("constraint", SERVER_CHECKS)
def test_a_server_insert_a_check_refuses_shows_the_rule_not_the_row(tx, constraint):
    column, value = SERVER_CHECKS[constraint]
    hidden = secrets()
    values = server_values(add_user(tx), hidden, **{column: value})
    error = assert_refused(
        tx,
        insert_statement("public.waha_servers", values),
        list(values.values()),
        sqlstate=CHECK_VIOLATION,
        constraint=constraint,
    )
    shows_no_row(error, hidden)
    assert error.diag.message_primary == f'new row for relation "waha_servers" violates check constraint "{constraint}"'
    assert column in error.diag.message_detail
    assert (error.diag.schema_name, error.diag.table_name) == ("public", "waha_servers")


@pytest.mark.parametrize("constraint", SERVER_CHECKS)
def test_a_server_update_a_check_refuses_shows_the_rule_not_the_row(tx, constraint):
    column, value = SERVER_CHECKS[constraint]
    hidden = secrets()
    server = add_server(tx, add_user(tx), api_key=hidden["api_key"], webhook_secret=hidden["webhook_secret"])
    error = assert_refused(
        tx,
        f"UPDATE public.waha_servers SET {column} = %s WHERE id = %s",
        (value, server),
        sqlstate=CHECK_VIOLATION,
        constraint=constraint,
    )
    shows_no_row(error, hidden)


def test_every_required_column_of_waha_servers_is_refused_without_the_row(tx):
    user = add_user(tx)
    for column in not_null_columns(tx, "public.waha_servers"):
        hidden = secrets()
        values = server_values(user, hidden, **{column: None})
        error = assert_refused(
            tx, insert_statement("public.waha_servers", values), list(values.values()), sqlstate=NOT_NULL_VIOLATION
        )
        shows_no_row(error, hidden)
        assert error.diag.column_name == column
        assert error.diag.message_primary == (
            f'null value in column "{column}" of relation "waha_servers" violates not-null constraint'
        )


def test_an_update_to_null_is_refused_without_the_row(tx):
    hidden = secrets()
    server = add_server(tx, add_user(tx), api_key=hidden["api_key"])
    error = assert_refused(
        tx, "UPDATE public.waha_servers SET nome = NULL WHERE id = %s", (server,), sqlstate=NOT_NULL_VIOLATION
    )
    shows_no_row(error, hidden)
    assert error.diag.column_name == "nome"


def test_updated_at_set_to_null_is_still_set_by_the_database(tx):
    """The check fires after waha_servers_set_updated_at: it sees the row as it will be stored."""
    server = add_server(tx, add_user(tx))
    tx.execute("UPDATE public.waha_servers SET updated_at = NULL, nome = 'b' WHERE id = %s", (server,))
    assert tx.execute("SELECT updated_at = now() FROM public.waha_servers WHERE id = %s", (server,)).fetchone() == (
        True,
    )


@pytest.mark.parametrize("statement", ["insert", "update"])
def test_a_session_a_check_refuses_shows_the_rule_not_the_personal_data(tx, statement):
    user, hidden = add_user(tx), secrets()
    server = add_server(tx, user)
    constraint, (column, value) = next(iter(SESSION_CHECKS.items()))
    if statement == "insert":
        values = session_values(user, server, hidden, **{column: value})
        sql, parameters = insert_statement("public.waha_sessions", values), list(values.values())
    else:
        session = add_session(
            tx, user, server, **{key: hidden[key] for key in ("phone_number", "profile_name", "qr_code")}
        )
        sql, parameters = f"UPDATE public.waha_sessions SET {column} = %s WHERE id = %s", (value, session)
    error = assert_refused(tx, sql, parameters, sqlstate=CHECK_VIOLATION, constraint=constraint)
    shows_no_row(error, hidden)
    assert column in error.diag.message_detail


def test_every_required_column_of_waha_sessions_is_refused_without_the_personal_data(tx):
    user = add_user(tx)
    server = add_server(tx, user)
    for column in not_null_columns(tx, "public.waha_sessions"):
        hidden = secrets()
        values = session_values(user, server, hidden, **{column: None})
        error = assert_refused(
            tx, insert_statement("public.waha_sessions", values), list(values.values()), sqlstate=NOT_NULL_VIOLATION
        )
        shows_no_row(error, hidden)
        assert error.diag.column_name == column


# --- the server's log ---------------------------------------------------------------------------


def refused_in_the_log(cluster, connection: psycopg.Connection, statement: str, parameters) -> str:
    """Run `statement` (it must fail) in a savepoint; the server's log lines it added."""
    log = cluster.server.log_path
    start = log.stat().st_size
    with pytest.raises(psycopg.Error):
        with connection.transaction():
            connection.execute(statement, parameters)
    with log.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(start)
        return handle.read()


# The roles a refused write is tried as: the owner (waha-db's admin commands), service_role (the app's
# backend) and authenticated (a signed-in user through the Data API, whose JWT `sub` is the row's user).
ROLES = ("postgres", "service_role", "authenticated")


@pytest.mark.parametrize("role", ROLES)
def test_refused_rows_leave_no_secret_in_the_server_log(cluster, tx, role):
    user, hidden = add_user(tx), secrets()
    server = add_server(tx, user)
    refused_rows = [
        ("public.waha_servers", server_values(user, hidden, prioridade=11)),
        ("public.waha_servers", server_values(user, hidden, timeout=None)),
        ("public.waha_sessions", session_values(user, server, hidden, session_name="a b")),
    ]
    for table, values in refused_rows:
        with acting_as(tx, role, user if role == "authenticated" else None):
            logged = refused_in_the_log(cluster, tx, insert_statement(table, values), list(values.values()))
        assert "violates" in logged, f"the refusal as {role} was not logged: {logged!r}"
        for name, value in hidden.items():
            assert value not in logged, f"{name} of the row refused as {role} is in the server's log"
