"""The fleet's commands at the edges: a database not upgraded yet, numbers beyond the database's integers,
JSON timestamps, and a live reconcile where no server could be read."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.support.cli import run_cli
from tests.support.databases import run_sql
from tests.support.factories import FLEET_USER, add_user, add_waha_server
from tests.support.network import free_port
from waha_db.lifecycle.status import not_upgraded

USER = str(FLEET_USER)

NOT_UPGRADED = [
    ("servers", "list", "--user", USER),
    ("servers", "add", "--user", USER, "--name", "X", "--url", "https://x.example"),
    ("servers", "best", "--user", USER),
    ("servers", "test", "--user", USER),
    ("sessions", "reconcile"),
    ("sessions", "reconcile", "--live"),
    ("monitor", "--once"),
]


@pytest.mark.parametrize("command", NOT_UPGRADED, ids=lambda command: " ".join(command[:2]))
def test_a_fleet_command_on_a_database_not_upgraded_says_to_upgrade(fresh_database, command):
    result = run_cli(fresh_database("empty"), *command)
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: this database has no WAHA V2.1 schema yet (no waha_servers table): run `waha-db upgrade` first"
    )
    assert "relation" not in result.output and "does not exist" not in result.output


def test_a_fleet_command_on_tables_made_by_hand_says_to_adopt(fresh_database):
    url = fresh_database("empty")
    run_sql(url, "CREATE TABLE public.waha_servers (id uuid PRIMARY KEY, user_id uuid NOT NULL)")
    result = run_cli(url, "servers", "list", "--user", USER)
    assert result.exit_code == 1
    assert "V2.1 tables were made by hand and are not managed yet: run `waha-db adopt` first" in result.output


def test_a_role_that_may_not_read_alembic_version_still_runs_the_fleet_commands(fresh_database):
    url = fresh_database("supabase_head")
    run_sql(url, "DO $$ BEGIN CREATE ROLE waha_admin LOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
    run_sql(url, "GRANT service_role TO waha_admin")
    admin = url.set(username="waha_admin")
    assert run_sql(admin, "SELECT has_table_privilege('public.alembic_version', 'SELECT')") == [(False,)]
    result = run_cli(admin, "servers", "list", "--user", str(add_user(url)))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("facts", "says"),
    [
        ((False, False), "no WAHA V2.1 schema yet"),
        ((False, True), "no WAHA V2.1 schema yet"),
        ((True, False), "run `waha-db adopt` first"),
        ((True, True), None),
    ],
)
def test_whether_a_fleet_command_can_run_is_said_from_two_facts(facts, says):
    why = not_upgraded(*facts)
    assert (why is None) if says is None else (says in why)


@pytest.mark.parametrize("option", ["--timeout", "--priority", "--max-sessions", "--retries", "--rate-limit"])
def test_a_number_beyond_the_databases_integers_is_a_worded_usage_error(url, option):
    result = run_cli(
        url, "servers", "add", "--user", USER, "--name", "X", "--url", "https://x.example", option, "99999999999"
    )
    assert result.exit_code == 2
    assert (
        f"Invalid value for '{option}': 99999999999 is out of range: waha_servers stores a whole number up to 2147483647"
        in result.output
    )
    assert run_sql(url, "SELECT count(*) FROM public.waha_servers") == [(0,)]


def test_servers_list_json_writes_every_timestamp_in_iso_8601(url):
    add_waha_server(url, USER, "https://waha1.example.test", "Principal")
    run_sql(url, "SELECT public.report_waha_server_version(id, '2024.10.8', 'WEBJS', 'PLUS') FROM public.waha_servers")
    result = run_cli(url, "servers", "list", "--user", USER, "--json")
    assert result.exit_code == 0, result.output
    (server,) = json.loads(result.output)
    stamps = {key: value for key, value in [*server.items(), *server["waha"].items()] if key.endswith("_at")}
    assert {"created_at", "updated_at", "identified_at"} <= set(stamps)
    for key, value in stamps.items():
        assert "T" in value and dt.datetime.fromisoformat(value).tzinfo is not None, (key, value)


def test_a_live_apply_where_no_server_could_be_read_says_nothing_was_applied(url):
    add_waha_server(url, USER, f"http://127.0.0.1:{free_port()}", "Morto")
    add_waha_server(url, USER, f"http://127.0.0.1:{free_port()}", "Outro")
    result = run_cli(url, "sessions", "reconcile", "--live", "--apply", "--yes")
    assert result.exit_code == 1
    summary = result.output.splitlines()[-2]
    assert (
        summary
        == "2 server(s): 0 in line with WAHA, 0 with 0 difference(s), 2 unreachable; nothing applied: no server could be read and brought in line"
    )
    assert "applied to" not in result.output and "one transaction per server" not in result.output
