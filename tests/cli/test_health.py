"""`waha-db servers test` and `waha-db monitor` against fake WAHA servers and a real database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import psycopg

from tests.polling import wait_until
from tests.support.cli import run_cli
from tests.support.factories import FLEET_USER, add_waha_server
from tests.support.network import free_port
from waha_db.database import conninfo

USER = str(FLEET_USER)


def test_servers_test_shows_reachable_latency_and_version(url, fake_waha):
    # A WAHA Core 2024 server set up as it should be: a single session. It refuses /health (422).
    waha = fake_waha("needs_key", api_key="key1", version="2024.10.1", engine="WEBJS")
    server_id = add_waha_server(url, USER, waha.url, "Principal", api_key="key1", max_sessions=1)

    result = run_cli(url, "servers", "test", str(server_id))

    assert result.exit_code == 0, result.output
    first, second = result.output.splitlines()
    assert first.startswith("Principal (http://127.0.0.1:") and "): reachable, " in first
    assert first.endswith("ms, WAHA 2024.10.1 (WEBJS, CORE)")
    assert second == "  recorded: healthy"
    assert "key1" not in result.output


def test_servers_test_for_a_user_reports_the_failure_and_exits_1(url, fake_waha):
    add_waha_server(url, USER, f"http://127.0.0.1:{free_port()}", "Principal", prioridade=10)
    add_waha_server(url, USER, fake_waha("healthy").url, "Backup", prioridade=5)

    result = run_cli(url, "servers", "test", "--user", USER)

    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].endswith("): unreachable: connection refused")
    assert lines[1].startswith("  recorded: failing (1 in a row), cooling down 30 s, until ")
    assert lines[2].startswith("Backup (") and "reachable" in lines[2]
    assert lines[-1] == "Error: 1 of 2 servers unreachable: Principal"


def test_servers_test_json_has_the_outcome_and_the_health(url, fake_waha):
    server_id = add_waha_server(url, USER, fake_waha("error_500").url, "Principal", api_key="never-printed")

    result = run_cli(url, "servers", "test", str(server_id), "--json")

    assert result.exit_code == 1
    document = result.output[: result.output.rindex("]") + 1]
    [entry] = json.loads(document)
    assert entry["server_id"] == str(server_id)
    assert (entry["reachable"], entry["error"], entry["attempts"]) == (False, "server error (HTTP 500)", 1)
    assert entry["health"]["consecutive_failures"] == 1
    assert entry["health"]["cooldown_until"] is not None
    assert "never-printed" not in result.output


def test_servers_test_needs_an_id_or_a_user(url):
    result = run_cli(url, "servers", "test")

    assert result.exit_code == 2
    assert "give either a server ID or --user UUID" in result.output


def test_servers_test_of_an_unknown_id_says_so(url):
    missing = uuid.uuid4()

    result = run_cli(url, "servers", "test", str(missing))

    assert result.exit_code == 1
    assert f"Error: no WAHA server with id {missing}" in result.output


def test_servers_best_moves_to_backup_and_back(url, fake_waha):
    principal = fake_waha("healthy")
    principal_id = add_waha_server(url, USER, principal.url, "Principal", prioridade=10, max_sessions=100)
    add_waha_server(url, USER, fake_waha("healthy").url, "Backup", prioridade=5)

    principal.mode = "close"
    assert run_cli(url, "servers", "test", str(principal_id)).exit_code == 1
    failover = run_cli(url, "servers", "best", "--user", USER).output
    assert failover.startswith("best: Backup ")
    assert "healthy, while Principal is cooling down (1 failure(s) in a row" in failover
    assert "higher priority" not in failover

    principal.mode = "healthy"
    assert run_cli(url, "servers", "test", str(principal_id)).exit_code == 0
    assert run_cli(url, "servers", "best", "--user", USER).output.startswith("best: Principal ")


def test_monitor_once_prints_the_state_change(url, fake_waha):
    server_id = add_waha_server(url, USER, fake_waha("not_json").url, "Principal")

    result = run_cli(url, "monitor", "--once")

    assert result.exit_code == 0, result.output
    assert f"Principal ({server_id}) " in result.output
    assert "healthy -> failing: not a WAHA server: the answer is not JSON; failing (1 in a row)" in result.output


def health_recorded(url) -> bool:
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        return connection.execute("SELECT count(*) FROM public.waha_server_health").fetchone()[0] > 0


def test_monitor_stops_cleanly_on_sigterm(url, fake_waha):
    """A round every 60 s: SIGTERM lands in the wait after the first round, however slow that round was."""
    add_waha_server(url, USER, fake_waha("healthy").url, "Principal")
    environment = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    process = subprocess.Popen(
        [sys.executable, "-c", "from waha_db.cli import main; main()", "monitor", "--interval", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    watchdog = threading.Timer(60, process.kill)  # a monitor that never prints must not hang the test on readline
    watchdog.daemon = True
    watchdog.start()
    try:
        started = process.stderr.readline()
        assert started.startswith("monitoring the active WAHA servers of every user at 127.0.0.1:"), started
        wait_until(lambda: health_recorded(url), "the monitor to record its first check")
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 0, rest
    assert rest.startswith("stopped after 1 round(s), 1 check(s), 0 state change(s)"), rest


# --- what each server is: recorded by servers test, shown by servers list -----------------------------


def fix_for(server_id) -> str:
    return f"fix: waha-db servers update {server_id} --max-sessions 1"


def test_servers_list_shows_what_servers_test_learnt(url, fake_waha):
    principal = add_waha_server(
        url, USER, fake_waha(version="2025.1.2", engine="NOWEB", tier="PLUS").url, "Principal", prioridade=10
    )
    add_waha_server(url, USER, fake_waha().url, "Never tested")
    assert run_cli(url, "servers", "test", str(principal)).exit_code == 0

    screen = run_cli(url, "servers", "list", "--user", USER).output.splitlines()
    listed = json.loads(run_cli(url, "servers", "list", "--user", USER, "--json").output)

    assert screen[3].startswith("│ 🟢 Principal")
    assert screen[6] == "│    WAHA 2025.1.2 (NOWEB, PLUS)" + " " * 25 + "│"
    assert screen[7].startswith("├") and "WAHA" not in "".join(screen[8:])
    assert [(entry["nome"], entry["waha"] and entry["waha"]["tier"], entry["warning"]) for entry in listed] == [
        ("Principal", "PLUS", None),
        ("Never tested", None, None),
    ]
    assert listed[0]["waha"]["version"] == "2025.1.2" and listed[0]["waha"]["engine"] == "NOWEB"


def test_a_core_server_with_room_for_many_sessions_is_flagged_until_fixed(url, fake_waha):
    core = add_waha_server(
        url, USER, fake_waha(version="2024.10.1", engine="WEBJS", tier="CORE").url, "Core", max_sessions=50
    )

    tested = run_cli(url, "servers", "test", str(core))
    listed = run_cli(url, "servers", "list", "--user", USER)
    as_json = json.loads(run_cli(url, "servers", "list", "--user", USER, "--json").output)

    assert tested.exit_code == 0
    warning = tested.output.splitlines()[2]
    assert warning.startswith(f"  warning: Core ({core}) is WAHA CORE, which runs a single session (named 'default'), ")
    assert "but its max_sessions is 50: selection would send it sessions it cannot run; " + fix_for(core) in warning
    assert listed.output.splitlines()[-1] == warning.strip()
    assert fix_for(core) in as_json[0]["warning"]

    assert run_cli(url, "servers", "update", str(core), "--max-sessions", "1").exit_code == 0
    assert "warning" not in run_cli(url, "servers", "list", "--user", USER).output
    assert "warning" not in run_cli(url, "servers", "test", str(core)).output


def test_a_failed_probe_keeps_the_last_known_answer(url, fake_waha):
    waha = fake_waha(version="2025.1.2", engine="WEBJS", tier="PLUS")
    server = add_waha_server(url, USER, waha.url, "Principal")
    run_cli(url, "servers", "test", str(server))

    waha.mode = "error_500"
    assert run_cli(url, "servers", "test", str(server)).exit_code == 1

    assert "WAHA 2025.1.2 (WEBJS, PLUS)" in run_cli(url, "servers", "list", "--user", USER).output


# --- WAHA by version: the Core image runs many sessions since 2026.6.1; /health; workers ----------------


def test_a_2026_core_server_runs_many_sessions_and_is_not_told_otherwise(url, fake_waha):
    core = add_waha_server(url, USER, fake_waha(version="2026.9.1", tier="CORE").url, "Core 2026", max_sessions=50)

    result = run_cli(url, "servers", "test", str(core))

    assert result.exit_code == 0, result.output
    probed, recorded = result.output.splitlines()
    assert probed.endswith("ms, WAHA 2026.9.1 (GOWS, CORE), health ok")
    assert recorded == "  recorded: healthy"


def test_a_2025_core_server_is_told_it_runs_one_session(url, fake_waha):
    core = add_waha_server(url, USER, fake_waha(version="2025.11.3", tier="CORE").url, "Core 2025", max_sessions=50)

    result = run_cli(url, "servers", "test", str(core))

    assert result.exit_code == 0, result.output
    probed, recorded, warning = result.output.splitlines()
    assert probed.endswith("ms, WAHA 2025.11.3 (GOWS, CORE)")  # it refuses /health (422): the version decides
    assert recorded == "  recorded: healthy"
    assert warning.startswith(f"  warning: Core 2025 ({core}) is WAHA CORE, which runs a single session")
    assert fix_for(core) in warning and "WAHA 2025.11.3 Core also refuses, with HTTP 422" in warning


def test_servers_test_says_a_server_shutting_down_is_drained_not_failed(url, fake_waha):
    leaving = add_waha_server(url, USER, fake_waha(health="shutting_down").url, "Leaving")

    result = run_cli(url, "servers", "test", str(leaving))

    assert result.exit_code == 0, result.output
    probed, recorded = result.output.splitlines()
    assert probed.endswith(
        "ms, WAHA 2026.9.1 (GOWS, CORE); drained: WAHA is shutting down (GET /health answered 503 shutting_down); "
        "no new sessions until it answers ok"
    )
    assert recorded.startswith("  recorded: drained: no new sessions while WAHA shuts down")


def test_servers_test_flags_two_servers_of_a_user_that_report_one_worker(url, fake_waha):
    add_waha_server(url, USER, fake_waha(worker="worker-a").url, "First")
    add_waha_server(url, USER, fake_waha(worker="worker-a").url, "Second")

    result = run_cli(url, "servers", "test", "--user", USER)
    listed = run_cli(url, "servers", "list", "--user", USER)

    assert result.exit_code == 0, result.output
    warning = result.output.splitlines()[-1]
    assert warning.startswith("warning: First (") and "report the same WAHA worker 'worker-a'" in warning
    assert listed.output.splitlines()[-1] == warning
    assert "│    WAHA 2026.9.1 (GOWS, CORE), worker worker-a" in listed.output
