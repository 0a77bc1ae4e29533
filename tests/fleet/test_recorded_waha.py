"""The recorded WAHA Core 2024.10.8, replayed byte for byte (tests/fleet/replay_waha.py), through `servers test`
and `sessions reconcile --live` on a real database.

That server answers its version as Core 2024.10.8, refuses /health with 422 (a Plus
feature then), says `worker.id` "" at /api/server/status, and lists its one session,
`default`, with neither `assignedWorker` nor `timestamps`.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.fleet.replay_waha import RecordedWaha
from tests.support.factories import FLEET_USER as USER
from tests.support.factories import add_waha_server
from waha_db import cli
from waha_db.fleet import health
from waha_db.fleet.live import reconcile_live


def test_servers_test_reads_the_recorded_server_and_falls_back_where_it_refuses_health(engine):
    with RecordedWaha() as waha:
        server = add_waha_server(engine, USER, waha.url, "Core", api_key="testkey123", timeout=5, max_sessions=1)
        with health.autocommit_connection(engine) as connection:
            [item] = health.test_servers(connection, health.load_servers(connection, server_ids=[server]))
        requests = list(waha.requests)

    probe = item.probe
    assert (probe.reachable, probe.version, probe.engine, probe.tier) == (True, "2024.10.8", "NOWEB", "CORE")
    assert (probe.health, probe.worker_known, probe.worker_id, probe.outcome) == (None, True, None, None)
    assert item.health.state == "healthy" and item.warning is None  # max_sessions 1: as a Core 2024 should be
    assert (item.identity.version, item.identity.worker_id) == ("2024.10.8", None)
    assert requests[0] == "/api/server/version"
    assert sorted(requests[1:]) == ["/api/server/status", "/health"]


def test_servers_test_on_the_command_line_warns_about_the_recorded_core_with_room_for_many(url, engine):
    with RecordedWaha() as waha:
        server = add_waha_server(engine, USER, waha.url, "Core", api_key="testkey123", timeout=5, max_sessions=50)
        result = CliRunner().invoke(
            cli.main, ["--database-url", url.render_as_string(hide_password=False), "servers", "test", str(server)]
        )

    assert result.exit_code == 0, result.output
    probed, recorded, warning = result.output.splitlines()
    assert probed.endswith("ms, WAHA 2024.10.8 (NOWEB, CORE)")
    assert recorded == "  recorded: healthy"
    assert warning.startswith(f"  warning: Core ({server}) is WAHA CORE, which runs a single session")
    assert warning.endswith("WAHA 2024.10.8 Core also refuses, with HTTP 422, any session not named 'default'.")


@pytest.mark.parametrize(
    ("listing", "status", "occupying"),
    [("28_list_all_while_starting", "STARTING", 1), ("33_list_all_after_stop", "STOPPED", 0)],
)
def test_the_live_reconcile_reads_the_recorded_sessions(engine, listing, status, occupying):
    with RecordedWaha(listing) as waha:
        server = add_waha_server(
            engine,
            USER,
            waha.url,
            "Core",
            api_key="testkey123",
            timeout=5,
            max_sessions=1,
            sessions_ativas=1 - occupying,
        )
        with engine.connect() as connection:
            report = reconcile_live(connection, user_id=USER, apply=True)
        requests = list(waha.requests)

    [item] = report.servers
    assert [(d.kind, d.session_name) for d in item.comparison.differences] == [
        ("unknown_session", "default"),
        ("counter", None),
    ]
    assert [(s.name, s.status, s.assigned_worker, s.activity_at) for s in item.waha_sessions] == [
        ("default", status, None, None)
    ]
    assert requests == ["/api/sessions?all=true"]  # its list names no worker: nothing more is asked
    with engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT session_name, status, phone_number FROM public.waha_sessions WHERE waha_server_id = :id"),
            {"id": server},
        ).one()
        counted = connection.execute(
            sa.text("SELECT sessions_ativas FROM public.waha_servers WHERE id = :id"), {"id": server}
        ).scalar_one()
    assert tuple(row) == ("default", status, None) and counted == occupying
