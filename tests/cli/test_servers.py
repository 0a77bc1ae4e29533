"""`waha-db servers ...`: the seed's server screen and admin commands, on plain and Supabase-like databases."""

from __future__ import annotations

import json

import click
import psycopg
import pytest

from tests.support.databases import run_sql
from tests.support.factories import add_seed_servers, add_user
from waha_db import cli
from waha_db.database import conninfo


@pytest.fixture(params=["head", "supabase_head"])
def url(request, fresh_database):
    return fresh_database(request.param)


@pytest.fixture
def user(url):
    return str(add_user(url))


@pytest.fixture
def plain_url(fresh_database):
    """For the many cases of one rule: the rules are the same constraints on every kind of database."""
    return fresh_database("head")


def test_list_renders_the_seeds_screen(waha_db, url, user):
    ids = add_seed_servers(waha_db, url, user)
    run_sql(url, "UPDATE public.waha_servers SET sessions_ativas = 15 WHERE id = %s", (ids["Servidor Principal"],))
    run_sql(url, "UPDATE public.waha_servers SET sessions_ativas = 8 WHERE id = %s", (ids["Servidor Backup"],))
    result = waha_db(url, "servers", "list", "--user", user)
    assert result.exit_code == 0, result.output
    lines = [line.strip("│ ").rstrip() for line in result.output.splitlines()]
    assert "Meus Servidores WAHA" in lines[1]
    blocks = [lines[i : i + 3] for i, line in enumerate(lines) if line.startswith(("🟢", "🔴"))]
    assert blocks == [
        ["🟢 Servidor Principal", "https://waha1.seudominio.example", "Sessões: 15/50  |  Prioridade: 10"],
        ["🟢 Servidor Backup", "https://waha2.seudominio.example", "Sessões: 8/30   |  Prioridade: 5"],
        ["🔴 Servidor de Teste", "https://waha-test.seudominio.example", "Desativado      |  Prioridade: 0"],
    ]


def test_list_orders_by_priority_then_name(waha_db, url, user):
    for name, priority in (("b", "3"), ("a", "3"), ("c", "9")):
        assert (
            waha_db(
                url,
                "servers",
                "add",
                "--user",
                user,
                "--name",
                name,
                "--url",
                f"https://{name}.example",
                "--priority",
                priority,
            ).exit_code
            == 0
        )
    result = waha_db(url, "servers", "list", "--user", user, "--json")
    assert [server["nome"] for server in json.loads(result.output)] == ["c", "a", "b"]


def test_list_json_masks_secrets(waha_db, url, user):
    add_seed_servers(waha_db, url, user)
    result = waha_db(url, "servers", "list", "--user", user, "--json")
    assert "sua-api-key" not in result.output
    assert json.loads(result.output)[0]["api_key"] == "***"


@pytest.mark.parametrize(
    ("options", "rule"),
    [
        (("--priority", "11"), "priority must be between 0 and 10"),
        (("--priority", "-1"), "priority must be between 0 and 10"),
        (("--max-sessions", "0"), "max sessions must be greater than 0"),
        (("--timeout", "0"), "timeout must be between 1 and 120 seconds"),
        (("--timeout", "999"), "timeout must be between 1 and 120 seconds"),
        (("--retries", "-1"), "retries must be between 0 and 10"),
        (("--retries", "11"), "retries must be between 0 and 10"),
        (
            ("--url", "http://127.0.0.1:55459/admin/delete-everything?confirm=yes#"),
            "URL must not have a query: remove everything from the ? on",
        ),
        (("--url", "https://x.example/#top"), "URL must not have a fragment: remove everything from the # on"),
        (("--url", "https://admin:pw@x.example"), "URL must not hold a user or password before the host"),
        (("--webhook-url", "https://hooks.example/w?token=abc"), "webhook URL must not have a query"),
        (("--rate-limit", "0"), "rate limit must be greater than 0 requests per minute"),
        (("--webhook-url", "not-a-url"), "webhook URL must be an http:// or https:// URL"),
    ],
)
def test_add_refuses_bad_values_with_the_rule_in_words(waha_db, plain_url, options, rule):
    url, user = plain_url, str(add_user(plain_url))
    result = waha_db(url, "servers", "add", "--user", user, "--name", "X", "--url", "https://x.example", *options)
    assert result.exit_code == 1
    assert result.output == f"Error: {rule}" + result.output.split(rule, 1)[1]
    assert "violates" not in result.output and "SQL" not in result.output
    assert run_sql(url, "SELECT count(*) FROM public.waha_servers") == [(0,)]


@pytest.mark.parametrize(
    "options",
    [("--priority", "11"), ("--timeout", "999"), ("--url", "https://x.example/?token=1")],
    ids=["priority", "timeout", "url"],
)
def test_a_refused_add_leaves_no_secret_in_the_server_log(waha_db, url, user, cluster, options):
    """PostgreSQL would log the refused row (`DETAIL: Failing row contains (...)`), its key and webhook secret included."""
    log = cluster.server.log_path
    start = log.stat().st_size
    key, webhook_secret = f"SECRET-K5-{user[:8]}", f"WHSECRET-{user[:8]}"
    result = waha_db(
        url,
        *("servers", "add", "--user", user, "--name", "X", "--url", "https://x.example"),
        *("--api-key", key, "--webhook-secret", webhook_secret, *options),
    )
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    with log.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(start)
        logged = handle.read()
    assert "violates check constraint" in logged, logged
    assert key not in logged and webhook_secret not in logged
    assert key not in result.output and webhook_secret not in result.output


@pytest.mark.parametrize(
    ("name", "server_url", "rule"),
    [
        ("   ", "https://x.example", "name must not be blank"),
        ("X", "ftp://x.example", "URL must be an http:// or https:// URL"),
        ("N" * 256, "https://x.example", "name must be at most 255 characters"),
    ],
)
def test_add_refuses_bad_name_or_url(waha_db, plain_url, name, server_url, rule):
    url, user = plain_url, str(add_user(plain_url))
    result = waha_db(url, "servers", "add", "--user", user, "--name", name, "--url", server_url)
    assert result.exit_code == 1
    assert f"Error: {rule}" in result.output


def test_add_refuses_a_url_the_user_already_has(waha_db, url, user):
    add_seed_servers(waha_db, url, user)
    result = waha_db(
        url, "servers", "add", "--user", user, "--name", "Again", "--url", "https://waha1.seudominio.example"
    )
    assert result.exit_code == 1
    assert "this user already has a server with that URL" in result.output


def test_add_needs_name_and_url(waha_db, url, user):
    result = waha_db(url, "servers", "add", "--user", user, "--name", "X")
    assert result.exit_code == 2
    assert "missing --url" in result.output


def test_update_changes_only_what_is_given(waha_db, url, user):
    ids = add_seed_servers(waha_db, url, user)
    backup = ids["Servidor Backup"]
    result = waha_db(url, "servers", "update", backup, "--priority", "8", "--description", "agora preferido")
    assert result.exit_code == 0, result.output
    assert run_sql(
        url, "SELECT prioridade, descricao, max_sessions, nome FROM public.waha_servers WHERE id = %s", (backup,)
    ) == [(8, "agora preferido", 30, "Servidor Backup")]
    refused = waha_db(url, "servers", "update", backup, "--priority", "42")
    assert refused.exit_code == 1 and "priority must be between 0 and 10" in refused.output


def test_update_of_an_unknown_server(waha_db, url):
    result = waha_db(url, "servers", "update", "00000000-0000-4000-8000-000000000000", "--priority", "1")
    assert result.exit_code == 1
    assert "no WAHA server with id 00000000-0000-4000-8000-000000000000" in result.output


def test_disable_and_enable(waha_db, url, user):
    ids = add_seed_servers(waha_db, url, user)
    principal = ids["Servidor Principal"]
    assert waha_db(url, "servers", "disable", principal).exit_code == 0
    assert run_sql(url, "SELECT ativo FROM public.waha_servers WHERE id = %s", (principal,)) == [(False,)]
    assert "Servidor Backup" in waha_db(url, "servers", "best", "--user", user).output.splitlines()[0]
    assert waha_db(url, "servers", "enable", principal).exit_code == 0
    assert run_sql(url, "SELECT ativo FROM public.waha_servers WHERE id = %s", (principal,)) == [(True,)]


def test_remove_with_sessions_is_refused_with_the_count(waha_db, url, user):
    ids = add_seed_servers(waha_db, url, user)
    principal = ids["Servidor Principal"]
    for name in ("sessao-cliente-001", "sessao-cliente-002"):
        run_sql(
            url,
            "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name) VALUES (%s, %s, %s)",
            (user, principal, name),
        )
    result = waha_db(url, "servers", "remove", principal)
    assert result.exit_code == 1
    assert "still has 2 sessions" in result.output and "servers disable" in result.output
    assert run_sql(url, "SELECT count(*) FROM public.waha_servers WHERE id = %s", (principal,)) == [(1,)]


def test_remove_without_sessions(waha_db, url, user):
    ids = add_seed_servers(waha_db, url, user)
    result = waha_db(url, "servers", "remove", ids["Servidor de Teste"], "--yes")
    assert result.exit_code == 0, result.output
    assert "removes Servidor de Teste (https://" in result.output
    assert run_sql(url, "SELECT nome FROM public.waha_servers ORDER BY nome") == [
        ("Servidor Backup",),
        ("Servidor Principal",),
    ]


def test_remove_asks_first_like_every_command_that_changes_data(waha_db, url, user, terminal):
    ids = add_seed_servers(waha_db, url, user)
    unasked = waha_db(url, "servers", "remove", ids["Servidor de Teste"], input="")
    answered_no = waha_db(url, "servers", "remove", ids["Servidor de Teste"], input="n\n")
    assert "Remove this server? [y/N]" in answered_no.output and answered_no.exit_code == 1
    assert unasked.exit_code == 1
    assert run_sql(url, "SELECT count(*) FROM public.waha_servers WHERE id = %s", (ids["Servidor de Teste"],)) == [(1,)]
    assert waha_db(url, "servers", "remove", ids["Servidor de Teste"], input="y\n").exit_code == 0
    assert run_sql(url, "SELECT count(*) FROM public.waha_servers WHERE id = %s", (ids["Servidor de Teste"],)) == [(0,)]


def test_remove_without_a_terminal_needs_yes(waha_db, url, user):
    ids = add_seed_servers(waha_db, url, user)
    result = waha_db(url, "servers", "remove", ids["Servidor de Teste"])
    assert result.exit_code == 1 and "pass --yes to remove it without asking" in result.output
    assert run_sql(url, "SELECT count(*) FROM public.waha_servers WHERE id = %s", (ids["Servidor de Teste"],)) == [(1,)]


def test_update_without_an_option_changes_nothing_and_says_so(waha_db, url, user):
    ids = add_seed_servers(waha_db, url, user)
    result = waha_db(url, "servers", "update", ids["Servidor de Teste"])
    assert result.exit_code == 2
    assert "nothing to update: give at least one of --name, --url" in result.output and "updated" not in result.output


def test_one_server_written_with_a_trailing_slash_is_refused_in_plain_words(waha_db, url, user):
    assert waha_db(url, "servers", "add", "--user", user, "--name", "A", "--url", "http://h:1/").exit_code == 0
    result = waha_db(url, "servers", "add", "--user", user, "--name", "B", "--url", "http://h:1")
    assert result.exit_code == 1
    assert "this user already has a server with that URL, written differently" in result.output


def test_best_shows_the_pick_and_why(waha_db, url, user):
    add_seed_servers(waha_db, url, user)
    result = waha_db(url, "servers", "best", "--user", user)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        result.output.splitlines()[0],
        "  - priority 10, load 0/50 (0%)",
        "  - higher priority than Servidor Backup (10 > 5)",
        "  not a candidate: Servidor de Teste: disabled",
    ]
    assert result.output.startswith("best: Servidor Principal (https://waha1.seudominio.example), priority 10")


def test_best_on_equal_priority_explains_the_load(waha_db, url, user):
    ids = add_seed_servers(waha_db, url, user)
    run_sql(
        url,
        "UPDATE public.waha_servers SET prioridade = 10, sessions_ativas = 20 WHERE id = %s",
        (ids["Servidor Principal"],),
    )
    run_sql(
        url,
        "UPDATE public.waha_servers SET prioridade = 10, sessions_ativas = 6 WHERE id = %s",
        (ids["Servidor Backup"],),
    )
    result = waha_db(url, "servers", "best", "--user", user)
    assert result.output.startswith("best: Servidor Backup")
    assert "same priority as Servidor Principal, lower load (6/30 (20%) < 20/50 (40%))" in result.output


def test_best_with_exclusion_is_the_apps_fallback(waha_db, url, user):
    ids = add_seed_servers(waha_db, url, user)
    result = waha_db(url, "servers", "best", "--user", user, "--exclude", ids["Servidor Principal"], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["server"]["nome"] == "Servidor Backup"
    assert "Servidor Principal: excluded" in report["not_candidates"]


def test_best_when_no_server_has_capacity(waha_db, url, user):
    add_seed_servers(waha_db, url, user)
    run_sql(url, "UPDATE public.waha_servers SET sessions_ativas = max_sessions WHERE ativo")
    result = waha_db(url, "servers", "best", "--user", user)
    assert result.exit_code == 1
    assert (
        "has free capacity (Servidor Principal: full, 50/50 sessions; Servidor Backup: full, 30/30 sessions; Servidor de Teste: disabled)"
        in result.output
    )


def test_best_for_a_user_without_servers(waha_db, url, user):
    result = waha_db(url, "servers", "best", "--user", user)
    assert result.exit_code == 1
    assert "the user has no servers" in result.output


def _answer_yes_after(monkeypatch, meanwhile):
    """A person at the terminal who answers yes, once `meanwhile()` has run while the question waits."""
    monkeypatch.setattr(cli.edge, "can_ask", lambda: True)

    def confirm(question, default=False):
        meanwhile()
        return True

    monkeypatch.setattr(click, "confirm", confirm)


def test_no_lock_on_the_server_waits_for_the_person_who_reads_the_question(waha_db, url, user, monkeypatch):
    ids = add_seed_servers(waha_db, url, user)
    target = ids["Servidor de Teste"]
    locked_meanwhile = []

    def lock_it_as_an_allocation_would():
        # allocate_waha_session locks the chosen server's row: NOWAIT fails (55P03) if the row is held.
        with psycopg.connect(conninfo(url), autocommit=True) as connection:
            with connection.transaction():
                rows = connection.execute(
                    "SELECT id FROM public.waha_servers WHERE id = %s FOR UPDATE NOWAIT", (target,)
                ).fetchall()
            busy = connection.execute(
                "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name LIKE 'waha-db%%' "
                "AND state LIKE 'idle in transaction%%'"
            ).fetchone()[0]
        locked_meanwhile.append((len(rows), busy))

    _answer_yes_after(monkeypatch, lock_it_as_an_allocation_would)
    result = waha_db(url, "servers", "remove", target)
    assert result.exit_code == 0, result.output
    assert locked_meanwhile == [(1, 0)]
    assert run_sql(url, "SELECT count(*) FROM public.waha_servers WHERE id = %s", (target,)) == [(0,)]


def test_a_server_changed_while_the_question_waits_is_not_removed(waha_db, url, user, monkeypatch):
    ids = add_seed_servers(waha_db, url, user)
    target = ids["Servidor de Teste"]

    def update_it():
        # Within 2 s: were the row locked while the question waits, this would wait for the answer forever.
        with psycopg.connect(conninfo(url), autocommit=True) as connection:
            connection.execute("SET lock_timeout = '2s'")
            connection.execute("UPDATE public.waha_servers SET descricao = 'kept: in use' WHERE id = %s", (target,))

    _answer_yes_after(monkeypatch, update_it)
    result = waha_db(url, "servers", "remove", target)
    assert result.exit_code == 1
    assert "changed after it was shown" in result.output and "nothing was deleted" in result.output
    assert run_sql(url, "SELECT descricao FROM public.waha_servers WHERE id = %s", (target,)) == [("kept: in use",)]
