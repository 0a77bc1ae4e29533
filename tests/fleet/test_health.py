"""test_servers and record_probe: real HTTP to fake WAHA servers, outcomes recorded in a real database."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from tests.support.databases import stored_health
from tests.support.factories import FLEET_USER as USER
from tests.support.factories import add_waha_server
from tests.support.network import free_port
from waha_db.fleet import health


@pytest.fixture
def connection(engine):
    with health.autocommit_connection(engine) as connection:
        yield connection


def test_each_outcome_is_recorded_in_plain_words(connection, fake_waha):
    healthy = fake_waha("healthy")
    keyed = fake_waha("needs_key", api_key="right-key")
    hanging = fake_waha("hang")
    broken = fake_waha("error_500")
    closing = fake_waha("close")
    servers = {
        "healthy": add_waha_server(connection, USER, healthy.url, "healthy"),
        "keyed": add_waha_server(connection, USER, keyed.url, "keyed", api_key="right-key"),
        # The same fake by another name: one URL per server for a user, however it is written.
        "wrong key": add_waha_server(
            connection, USER, keyed.url.replace("127.0.0.1", "localhost"), "wrong key", api_key="wrong-key"
        ),
        "hanging": add_waha_server(connection, USER, hanging.url, "hanging"),
        "broken": add_waha_server(connection, USER, broken.url, "broken"),
        "closing": add_waha_server(connection, USER, closing.url, "closing"),
        "refused": add_waha_server(connection, USER, f"http://127.0.0.1:{free_port()}", "refused"),
        "unknown name": add_waha_server(connection, USER, "https://waha-gone.example", "unknown name"),
    }

    checked = health.test_servers(connection, health.load_servers(connection, user_id=USER), backoff=0)

    assert {item.server.nome: item.probe.reachable for item in checked} == {
        "healthy": True,
        "keyed": True,
        "wrong key": False,
        "hanging": False,
        "broken": False,
        "closing": False,
        "refused": False,
        "unknown name": False,
    }
    recorded = {name: stored_health(connection, server_id) for name, server_id in servers.items()}
    assert recorded == {
        "healthy": (0, None, False, True),
        "keyed": (0, None, False, True),
        "wrong key": (1, "API key rejected (HTTP 401)", True, False),
        "hanging": (1, "timed out after 1 s", True, False),
        "broken": (1, "server error (HTTP 500)", True, False),
        "closing": (1, "connection closed by the server before a complete answer", True, False),
        "refused": (1, "connection refused", True, False),
        "unknown name": (1, "name does not resolve: waha-gone.example", True, False),
    }
    assert all(item.health is not None and item.record_error is None for item in checked)


def test_the_rows_retry_attempts_are_used(connection, fake_waha):
    """(The row's timeout shows in the `hanging` outcome above: "timed out after 1 s".)"""
    broken = fake_waha("error_500")
    server = add_waha_server(connection, USER, broken.url, "broken", retry_attempts=2)

    [item] = health.test_servers(connection, health.load_servers(connection, server_ids=[server]), backoff=0)

    assert item.probe.attempts == 3
    assert len(broken.requests) == 3


def test_a_server_is_tested_by_id_even_when_disabled(connection, fake_waha):
    server = add_waha_server(connection, USER, fake_waha("healthy").url, "off", ativo=False)

    assert health.load_servers(connection, user_id=USER) == []
    [item] = health.test_servers(connection, health.load_servers(connection, server_ids=[server]))

    assert item.probe.reachable and item.health.consecutive_failures == 0


def test_unknown_server_id_is_an_error_naming_it(connection):
    missing = uuid.uuid4()

    with pytest.raises(health.HealthError, match=str(missing)):
        health.load_servers(connection, server_ids=[missing])


def test_repeated_failures_grow_the_cooldown_and_a_success_resets_it(connection, fake_waha):
    fake = fake_waha("error_500")
    server = add_waha_server(connection, USER, fake.url, "principal")
    servers = health.load_servers(connection, server_ids=[server])

    cooldowns = []
    for _ in range(3):
        [item] = health.test_servers(connection, servers, backoff=0)
        cooldowns.append(round((item.health.cooldown_until - item.health.last_checked_at).total_seconds()))
    fake.mode = "healthy"
    [item] = health.test_servers(connection, servers)

    assert cooldowns == [30, 60, 120]
    assert (item.health.consecutive_failures, item.health.cooldown_until) == (0, None)
    assert health.describe_health(item.health) == "healthy"


def test_a_report_refused_for_one_server_does_not_stop_the_others(engine, connection, fake_waha):
    fake = fake_waha("healthy")
    first = add_waha_server(connection, USER, fake.url, "first")
    second = add_waha_server(connection, USER, fake.url.replace("127.0.0.1", "localhost"), "second")
    servers = health.load_servers(connection, server_ids=[first, second])
    connection.execute(sa.text("DELETE FROM public.waha_servers WHERE id = :id"), {"id": first})

    checked = health.test_servers(connection, servers)

    assert checked[0].health is None
    assert checked[0].record_error == "the server was deleted while it was being probed (or this role cannot see it)"
    assert checked[1].health.consecutive_failures == 0


def test_json_entry_never_contains_the_api_key(connection, fake_waha):
    fake = fake_waha("needs_key", api_key="s3cr3t-key")
    server = add_waha_server(connection, USER, fake.url, "keyed", api_key="s3cr3t-key")

    [item] = health.test_servers(connection, health.load_servers(connection, server_ids=[server]))
    text = repr(health.checked_as_json(item))

    assert "s3cr3t-key" not in text
    assert item.probe.reachable


def test_describe_health_says_how_long_the_cooldown_lasts():
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    failing = health.Health(uuid.uuid4(), 2, now + dt.timedelta(seconds=60), "connection refused", now, None)

    assert health.describe_health(failing, now) == "failing (2 in a row), cooling down 60 s, until 12:01:00 UTC"


def test_user_health_tells_which_servers_cool_down(connection, fake_waha):
    down = add_waha_server(connection, USER, f"http://127.0.0.1:{free_port()}", "down")
    up = add_waha_server(connection, USER, fake_waha("healthy").url, "up")
    add_waha_server(connection, USER, fake_waha("healthy").url, "never tested")
    strangers = add_waha_server(connection, uuid.uuid4(), f"http://127.0.0.1:{free_port()}", "a stranger's")
    health.test_servers(connection, health.load_servers(connection, server_ids=[down, up, strangers]))
    now = connection.execute(sa.text("SELECT now()")).scalar()

    recorded = health.user_health(connection, USER)

    assert set(recorded) == {down, up}
    assert health.is_cooling_down(recorded[down], now)
    assert not health.is_cooling_down(recorded[up], now)
    assert not health.is_cooling_down(None, now)
