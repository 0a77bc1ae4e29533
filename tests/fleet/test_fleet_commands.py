"""The operator's view of a large fleet: `servers list`'s summary, the monitor's round line, the network policy."""

from __future__ import annotations

import json

from tests.support.cli import run_cli
from tests.support.factories import FLEET_USER, add_waha_server
from tests.support.network import free_port

USER = str(FLEET_USER)


def add_fleet(url, urls, *, ativo=True):
    """Servers waha-00, waha-01... of USER at `urls`, two slots each, their counters 0, 1, 2, 0...: a third full."""
    return [
        add_waha_server(
            url, USER, api_url, f"waha-{number:02d}", ativo=ativo, max_sessions=2, sessions_ativas=number % 3
        )
        for number, api_url in enumerate(urls)
    ]


def test_servers_list_of_a_large_fleet_is_a_summary_by_state(url, fake_waha):
    waha = fake_waha("healthy")
    refusing = f"http://127.0.0.1:{free_port()}"
    add_fleet(url, [f"{waha.url}/{n}" for n in range(20)] + [f"{refusing}/{n}" for n in range(3)])
    add_fleet(url, [f"{waha.url}/never/{n}" for n in range(2)], ativo=False)
    assert run_cli(url, "servers", "test", "--user", USER).exit_code == 1

    summary = run_cli(url, "servers", "list", "--user", USER).output.splitlines()
    every_card = run_cli(url, "servers", "list", "--user", USER, "--all").output
    listed = json.loads(run_cli(url, "servers", "list", "--user", USER, "--json").output)

    assert summary[0] == (f"user {USER}: 25 WAHA servers (a summary; --all prints every server, --json every field)")
    assert summary[1:4] == [
        "  active 23, disabled 2",
        "  health: 20 healthy, 3 failing (3 cooling down), 2 never checked",
        "  sessions: 23 in 46 slots of the active servers; 7 full",
    ]
    assert summary[4].startswith("  failing: waha-20 (connection refused), waha-21 (connection refused), ")
    assert every_card.count("Sessões:") == 23 and every_card.count("Desativado") == 2
    assert len(listed) == 25


def test_a_few_servers_are_still_listed_as_cards(url, fake_waha):
    add_fleet(url, [fake_waha("healthy").url])

    assert "Meus Servidores WAHA" in run_cli(url, "servers", "list", "--user", USER).output


def test_monitor_once_prints_its_round_line_and_the_policy(url, fake_waha):
    add_fleet(url, [fake_waha("healthy").url, f"http://127.0.0.1:{free_port()}"])

    result = run_cli(url, "monitor", "--once")

    [round_line] = [line for line in result.output.splitlines() if " round: " in line]
    assert round_line.split(" ", 1)[1].startswith("round: 2 servers probed, 1 healthy, 1 failing, ")
    assert "denied by WAHA_DB_PROBE_DENY: nothing else" in result.output


def test_the_operators_deny_list_applies_to_every_command(url, fake_waha):
    waha = fake_waha("healthy")
    [server] = add_fleet(url, [waha.url])
    denied = {"WAHA_DB_PROBE_DENY": "loopback"}

    monitored = run_cli(url, "monitor", "--once", env=denied)
    tested = run_cli(url, "servers", "test", str(server), env=denied)
    reconciled = run_cli(url, "sessions", "reconcile", "--live", "--user", USER, env=denied)

    assert "refused by the network policy (loopback address, denied by WAHA_DB_PROBE_DENY): not probed" in tested.output
    assert "healthy -> failing: refused by the network policy (loopback address" in monitored.output
    assert "unreachable: refused by the network policy (loopback address" in reconciled.output
    assert waha.connections == 0


def test_an_unreadable_deny_list_is_one_error_line_before_anything_is_asked(url, fake_waha):
    waha = fake_waha("healthy")
    add_fleet(url, [waha.url])

    result = run_cli(url, "monitor", "--once", env={"WAHA_DB_PROBE_DENY": "intranet"})

    assert result.exit_code == 1
    assert result.output.startswith("Error: WAHA_DB_PROBE_DENY='intranet': intranet is not a kind of address")
    assert waha.connections == 0
