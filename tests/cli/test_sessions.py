"""`waha-db sessions reconcile`: report, then correct with confirmation; with --live, against the WAHA servers."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from tests.support.cli import run_cli
from tests.support.databases import run_sql
from tests.support.factories import FLEET_USER, add_waha_server
from tests.support.network import free_port
from waha_db.cli import main
from waha_db.database import conninfo

USER = str(FLEET_USER)


def broken_counters(url):
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        user = connection.execute("SELECT gen_random_uuid()").fetchone()[0]
        below, above = (
            connection.execute(
                "INSERT INTO public.waha_servers (user_id, nome, api_url, sessions_ativas) VALUES (%s, %s, %s, %s) RETURNING id",
                (user, name, f"https://{name}.waha.example", counter),
            ).fetchone()[0]
            for name, counter in (("below", 0), ("above", 3))
        )
        connection.execute(
            "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status) VALUES (%s, %s, 's1', 'WORKING')",
            (user, below),
        )
    return below, above


def counters(url):
    with psycopg.connect(conninfo(url)) as connection:
        return dict(connection.execute("SELECT nome, sessions_ativas FROM public.waha_servers").fetchall())


def test_reconcile_reports_then_applies_only_what_the_rule_allows(fresh_database):
    url = fresh_database("head")
    below, above = broken_counters(url)
    address = ["--database-url", url.render_as_string(hide_password=False)]
    runner = CliRunner()

    reported = runner.invoke(main, [*address, "sessions", "reconcile", "--json"])
    assert reported.exit_code == 0, reported.output
    assert {row["server_id"] for row in json.loads(reported.output)["drifts"]} == {str(below), str(above)}
    assert counters(url) == {"below": 0, "above": 3}

    refused = runner.invoke(main, [*address, "sessions", "reconcile", "--apply"])
    assert refused.exit_code == 1 and "--yes" in refused.output
    assert counters(url) == {"below": 0, "above": 3}

    applied = runner.invoke(main, [*address, "sessions", "reconcile", "--apply", "--yes"])
    assert applied.exit_code == 0, applied.output
    assert "corrected 0 -> 1" in applied.output
    assert counters(url) == {"below": 1, "above": 3}

    named = runner.invoke(main, [*address, "sessions", "reconcile", "--apply", "--yes", "--server", str(above)])
    assert named.exit_code == 0, named.output
    assert counters(url) == {"below": 1, "above": 0}


# --- sessions reconcile --live: the rows against fake WAHA servers -----------------------------------------


def add_old_row(url, server, name, status):
    run_sql(
        url,
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status, updated_at)"
        " VALUES (%s, %s, %s, %s, now() - interval '1 hour')",
        (USER, server, name, status),
    )


@pytest.fixture
def drifted(url, fake_waha):
    """Principal: WAHA lost loja-03 and runs painel-01 unknown to the database; its counter says 5."""
    waha = fake_waha("needs_key", api_key="key1", tier="PLUS")
    waha.run_session("loja-01")
    waha.run_session("painel-01", "SCAN_QR_CODE")
    server = add_waha_server(url, USER, waha.url, "Principal", api_key="key1", prioridade=10)
    run_sql(url, "UPDATE public.waha_servers SET sessions_ativas = 5 WHERE id = %s", (server,))
    add_old_row(url, server, "loja-01", "WORKING")
    add_old_row(url, server, "loja-03", "WORKING")
    return server


def statuses(url, server):
    return dict(
        run_sql(url, "SELECT session_name, status FROM public.waha_sessions WHERE waha_server_id = %s", (server,))
    )


def test_the_report_lists_each_difference_with_what_apply_would_do_and_changes_nothing(url, drifted):
    result = run_cli(url, "sessions", "reconcile", "--live")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Principal (http://127.0.0.1:") and f"  server {drifted}  user {USER}" in lines[0]
    assert lines[1] == "  WAHA has 2 session(s), 2 occupying; sessions_ativas 5, max_sessions 50"
    assert [line.split()[0] for line in lines[2::2][:3]] == ["unknown_session", "missing_session", "counter"]
    assert lines[3].strip() == f"--apply: insert it for the server's user ({USER}) with WAHA's status"
    assert lines[5].strip() == "--apply: mark it STOPPED (the row stays, as history)"
    assert lines[-1] == (
        "1 server(s): 0 in line with WAHA, 1 with 3 difference(s), 0 unreachable; "
        "3 to apply: run again with --apply (nothing is ever changed on a WAHA server)"
    )
    assert "key1" not in result.output
    assert statuses(url, drifted) == {"loja-01": "WORKING", "loja-03": "WORKING"}


def test_apply_without_a_terminal_is_refused_unless_yes(url, drifted):
    refused = run_cli(url, "sessions", "reconcile", "--live", "--apply")

    assert refused.exit_code == 1
    assert "not confirmed: there is no terminal to ask on, so nothing was done; pass --yes" in refused.output
    assert statuses(url, drifted) == {"loja-01": "WORKING", "loja-03": "WORKING"}

    applied = run_cli(url, "sessions", "reconcile", "--live", "--apply", "--yes")

    assert applied.exit_code == 0, applied.output
    assert "done: mark it STOPPED (the row stays, as history)" in applied.output
    assert applied.output.splitlines()[-1].endswith("; applied to 1 server(s), one transaction each (0 skipped)")
    assert statuses(url, drifted) == {"loja-01": "WORKING", "loja-03": "STOPPED", "painel-01": "SCAN_QR_CODE"}
    assert run_sql(url, "SELECT sessions_ativas FROM public.waha_servers WHERE id = %s", (drifted,)) == [(2,)]
    assert run_cli(url, "sessions", "reconcile", "--live").output.splitlines()[2] == "  in line with WAHA"


def test_an_unreachable_server_is_skipped_and_exits_1(url, drifted):
    dead = add_waha_server(url, USER, f"http://127.0.0.1:{free_port()}", "Morto")
    add_old_row(url, dead, "loja-30", "WORKING")

    result = run_cli(url, "sessions", "reconcile", "--live", "--apply", "--yes")

    assert result.exit_code == 1
    assert "  unreachable: connection refused; skipped: nothing read, nothing changed" in result.output
    assert result.output.splitlines()[-1] == "Error: 1 of 2 server(s) not reconciled: Morto (connection refused)"
    assert statuses(url, dead) == {"loja-30": "WORKING"}
    assert statuses(url, drifted)["loja-03"] == "STOPPED", "the reachable server is reconciled all the same"


def test_the_json_output_is_the_same_twice_and_names_the_kinds(url, drifted):
    first, second = (run_cli(url, "sessions", "reconcile", "--live", "--json") for _ in range(2))

    assert first.exit_code == 0 and first.output == second.output
    [server] = json.loads(first.output)["servers"]
    assert [difference["kind"] for difference in server["differences"]] == [
        "unknown_session",
        "missing_session",
        "counter",
    ]


def test_scope_options_without_live_are_a_usage_error(url):
    result = run_cli(url, "sessions", "reconcile", "--user", USER)

    assert result.exit_code == 2
    assert "--user, --grace and --silent-after go with --live" in result.output


def test_a_named_server_of_another_user_is_refused(url, drifted):
    other = "11111111-2222-4333-8444-555555555555"

    result = run_cli(url, "sessions", "reconcile", "--live", "--user", other, "--server", str(drifted))

    assert result.exit_code == 1
    assert f"Error: server {drifted} is not a server of user {other}" in result.output


def test_a_user_without_active_servers_is_told_so(url):
    result = run_cli(url, "sessions", "reconcile", "--live", "--user", USER)

    assert result.exit_code == 0
    assert (
        result.output == "no WAHA server to reconcile: the scope holds no active server (name one with --server ID)\n"
    )
