"""`waha-db sessions reconcile`: report, then correct with confirmation."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner

from waha_db.cli import main
from waha_db.database import conninfo


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
