"""The monitor: state changes, one server's failure, a database that restarts, a clean stop."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.polling import wait_until
from tests.support.factories import FLEET_USER as USER
from tests.support.factories import add_waha_server
from tests.support.monitor import RunningMonitor
from tests.support.network import free_port
from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import create_engine
from waha_db.fleet import monitor as fleet_monitor
from waha_db.lifecycle import migrate

PROBE_TIMEOUT = 5  # seconds: a healthy fake answers at once, but never fails a probe for being slow


def failures(engine, server_id):
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT consecutive_failures FROM public.waha_server_health WHERE server_id = :id"),
            {"id": server_id},
        ).scalar()


def test_monitor_prints_one_line_per_state_change(engine, fake_waha):
    principal = fake_waha("healthy")
    backup = fake_waha("healthy")
    principal_id = add_waha_server(engine, USER, principal.url, "Principal", timeout=PROBE_TIMEOUT)
    backup_id = add_waha_server(engine, USER, backup.url, "Backup", timeout=PROBE_TIMEOUT)
    add_waha_server(engine, USER, "http://127.0.0.1:9/never-probed", "Teste", timeout=PROBE_TIMEOUT, ativo=False)
    with RunningMonitor(engine) as monitor:
        wait_until(lambda: failures(engine, principal_id) == 0, "the first successful check")

        principal.mode = "error_500"
        wait_until(lambda: monitor.lines_with("healthy -> failing"), "healthy -> failing")
        wait_until(lambda: (failures(engine, principal_id) or 0) >= 3, "more failed checks")
        principal.mode = "healthy"
        wait_until(lambda: monitor.lines_with("failing -> healthy"), "failing -> healthy")
        stats = monitor.finish()

    # Besides these, the first round says what each server is (test_monitor_says_what_a_server_is_...).
    state_changes = monitor.lines_with(" -> ")
    assert len(state_changes) == 2, monitor.lines
    down, up = state_changes
    assert (
        f"Principal ({principal_id}) {principal.url}: healthy -> failing: server error (HTTP 500); failing (1 in a row), cooling down 30 s"
        in down
    )
    assert f"Principal ({principal_id}) {principal.url}: failing -> healthy: reachable, " in up
    assert failures(engine, backup_id) == 0 and len(backup.requests) >= 4
    assert stats.state_changes == 2 and stats.cycles >= 4


def test_monitor_once_runs_one_cycle_and_returns(engine, fake_waha):
    server_id = add_waha_server(engine, USER, fake_waha("close").url, "Principal", timeout=PROBE_TIMEOUT)

    stats = fleet_monitor.monitor(engine, once=True, emit=lambda line: None, backoff=0)

    assert (stats.cycles, stats.probes, stats.state_changes) == (1, 1, 1)
    assert failures(engine, server_id) == 1


def test_monitor_once_says_when_the_database_cannot_be_reached():
    nothing_there = sa.URL.create(
        "postgresql+psycopg", username="postgres", host="127.0.0.1", port=free_port(), database="app"
    )
    engine = create_engine(nothing_there)

    with pytest.raises(fleet_monitor.MonitorError, match="the database cannot be reached"):
        fleet_monitor.monitor(engine, once=True, emit=lambda line: None)


def test_monitor_survives_a_database_restart(fake_waha):
    """A separate server, so the restart disturbs no other test."""
    fake = fake_waha("healthy")
    with ThrowawayPostgres() as postgres:
        database = postgres.create_database("monitored")
        engine = create_engine(postgres.url(database))
        migrate.upgrade(engine, "head")
        server_id = add_waha_server(engine, USER, fake.url, "Principal", timeout=PROBE_TIMEOUT)
        # The monitor stops before the server does, however the block is left.
        with RunningMonitor(engine, reconnect_delay=0.05, max_reconnect_delay=0.2) as monitor:
            wait_until(lambda: failures(engine, server_id) == 0, "the first successful check")

            # Fast shutdown (SIGINT) closes the monitor's connection; the data directory stays.
            postgres.halt()
            wait_until(lambda: monitor.lines_with("database connection lost"), "the lost connection to be noticed")
            fake.mode = "error_500"
            postgres.resume()

            wait_until(lambda: monitor.lines_with("database connection restored"), "the reconnection")
            wait_until(lambda: monitor.lines_with("healthy -> failing"), "checks recorded after the restart")
            stats = monitor.finish()
        engine.dispose()

    assert stats.reconnects == 1
    assert len(monitor.lines_with("database connection lost")) == 1, monitor.lines
    lost = monitor.lines_with("database connection lost")[0]
    assert "reconnecting" in lost


def test_monitor_says_what_a_server_is_when_it_is_first_seen_and_when_it_changes(engine, fake_waha):
    waha = fake_waha(version="2024.10.1", engine="WEBJS", tier="CORE")
    server = add_waha_server(engine, USER, waha.url, "Principal", timeout=PROBE_TIMEOUT, max_sessions=10)

    def one_round() -> list[str]:
        lines: list[str] = []
        fleet_monitor.monitor(engine, once=True, emit=lines.append, backoff=0)
        return [line.split(" ", 1)[1] for line in lines]  # without the timestamp

    first = one_round()
    unchanged = one_round()
    waha.version, waha.tier = "2025.1.2", "PLUS"
    upgraded = one_round()

    head = f"Principal ({server}) {waha.url}: "
    assert first == [
        head + "WAHA 2024.10.1 (WEBJS, CORE), first identified",
        f"warning: Principal ({server}) is WAHA CORE, which runs a single session (named 'default'), but its "
        "max_sessions is 10: selection would send it sessions it cannot run; "
        f"fix: waha-db servers update {server} --max-sessions 1 (or upgrade it to WAHA 2026.6.1 or later, whose Core "
        "runs many sessions, or run WAHA Plus there). WAHA 2024.10.1 Core also refuses, with HTTP 422, any session "
        "not named 'default'.",
    ]
    assert unchanged == []
    assert upgraded == [head + "WAHA 2025.1.2 (WEBJS, PLUS), was WAHA 2024.10.1 (WEBJS, CORE)"]

    waha.version, waha.tier = "2026.9.1", "CORE"  # since 2026.6.1 the Core image runs many sessions: no warning
    assert one_round() == [head + "WAHA 2026.9.1 (WEBJS, CORE), was WAHA 2025.1.2 (WEBJS, PLUS)"]


def test_monitor_tells_a_drain_from_a_failure_and_a_shared_worker_once(engine, fake_waha):
    leaving, twin = fake_waha(worker="worker-a"), fake_waha(worker="worker-a")
    principal = add_waha_server(engine, USER, leaving.url, "Principal", timeout=PROBE_TIMEOUT)
    copy = add_waha_server(engine, USER, twin.url, "Copy", timeout=PROBE_TIMEOUT)
    summaries = []

    def one_round() -> list[str]:
        lines: list[str] = []
        fleet_monitor.monitor(engine, once=True, emit=lines.append, backoff=0, on_round=summaries.append)
        return [line.split(" ", 1)[1] for line in lines]

    first = one_round()
    leaving.health = "shutting_down"
    draining = one_round()
    leaving.health = "ok"
    back = one_round()

    head = f"Principal ({principal}) {leaving.url}: "
    assert first == [
        f"Copy ({copy}) {twin.url}: WAHA 2026.9.1 (GOWS, CORE), worker worker-a, first identified",
        head + "WAHA 2026.9.1 (GOWS, CORE), worker worker-a, first identified",
        f"warning: Copy ({copy}) and Principal ({principal}) of user {USER} report the same WAHA worker 'worker-a' "
        "(GET /api/server/status): one WAHA registered twice, or two WAHA servers given one WAHA_WORKER_ID; each "
        "lists the other's sessions as its own, so they are counted twice and `sessions reconcile --live` skips "
        "them: keep one registration (waha-db servers disable ID), or give each WAHA its own WAHA_WORKER_ID",
    ]
    [drained] = draining
    assert drained.startswith(
        head + "healthy -> drained: WAHA answers GET /health with 503 shutting_down; drained: no new sessions "
        "while WAHA shuts down (ranked after the healthy servers), cooling down 30 s, until "
    )
    [healthy_again] = back
    assert healthy_again.startswith(head + "drained -> healthy: reachable, ")
    assert [(summary.healthy, summary.failing, summary.drained) for summary in summaries] == [
        (2, 0, 0),
        (1, 0, 1),
        (2, 0, 0),
    ]
    assert " round: 2 servers probed, 1 healthy, 0 failing, 1 drained, " in summaries[1].line()
