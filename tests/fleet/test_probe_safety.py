"""A user's row cannot move the admin's probe: where it goes, what it asks, what it writes back.

Every signed-in user writes waha_servers.api_url; the admin's monitor then connects
there. These tests stay on loopback: a refused target is refused before any
connection, and the one name that resolves elsewhere is answered by the test's own
fake resolver, never by DNS.
"""

from __future__ import annotations

import socket

import httpcore
import pytest

from tests.fleet.fake_waha import SERVER_TEXT
from waha_db.fleet.asking import get_json, request_url
from waha_db.fleet.live_waha import SESSIONS_PATH, read_sessions
from waha_db.fleet.policy import NetworkPolicy, PolicyError, category, parse_policy, policy_from_environment
from waha_db.fleet.probe import VERSION_PATH, probe_server

HOSTILE = "/admin/delete-everything?confirm=yes#"


@pytest.mark.parametrize(
    ("api_url", "path", "expected"),
    [
        (
            f"http://127.0.0.1:8080{HOSTILE}",
            VERSION_PATH,
            "http://127.0.0.1:8080/admin/delete-everything/api/server/version",
        ),
        (
            f"http://127.0.0.1:8080{HOSTILE}",
            SESSIONS_PATH,
            "http://127.0.0.1:8080/admin/delete-everything/api/sessions?all=true",
        ),
        ("https://waha.example/prefix/", VERSION_PATH, "https://waha.example/prefix/api/server/version"),
        ("https://user:pass@waha.example?x=1#frag", VERSION_PATH, "https://waha.example/api/server/version"),
        ("http://waha.example/?all=false", SESSIONS_PATH, "http://waha.example/api/sessions?all=true"),
    ],
)
def test_request_url_appends_the_fixed_path_and_keeps_nothing_else_of_api_url(api_url, path, expected):
    assert str(request_url(api_url, path)) == expected


def test_a_query_or_fragment_in_api_url_never_reaches_the_server(fake_waha):
    server = fake_waha("healthy")

    probe_server(server.url + HOSTILE, timeout=2, retry_attempts=0)
    get_json(server.url + HOSTILE, SESSIONS_PATH, read_sessions, timeout=2, retry_attempts=0)

    assert server.request_lines == [
        "GET /admin/delete-everything/api/server/version HTTP/1.1",
        "GET /admin/delete-everything/api/sessions?all=true HTTP/1.1",
    ]
    assert not any("confirm=yes" in line for line in server.request_lines)


def test_userinfo_in_api_url_is_never_sent(fake_waha):
    server = fake_waha("healthy")

    probe = probe_server(server.url.replace("http://", "http://admin:hunter2@"), timeout=2, retry_attempts=0)

    assert probe.reachable
    [(_, headers)] = server.requests
    assert "Authorization" not in headers


@pytest.mark.parametrize("mode", ["redirect", "error_500", "not_json", "garbled"])
def test_no_reason_quotes_the_servers_answer(fake_waha, mode):
    server = fake_waha(mode)

    probe = probe_server(server.url, timeout=2, retry_attempts=0)
    sessions = get_json(server.url, SESSIONS_PATH, read_sessions, timeout=2, retry_attempts=0)

    assert not probe.reachable and not sessions.ok
    assert SERVER_TEXT not in probe.error and SERVER_TEXT not in sessions.error


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.20.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("8.8.8.8", "public"),
        ("2001:4860::1", "public"),
    ],
)
def test_each_address_has_its_kind(address, kind):
    import ipaddress

    assert category(ipaddress.ip_address(address)) == kind


def test_the_default_policy_refuses_only_what_never_hosts_waha():
    import ipaddress

    policy = policy_from_environment({})

    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "link-local address, never probed"
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.0.0.5")) is None


def test_an_unknown_kind_in_the_policy_is_an_error_that_says_what_to_write():
    with pytest.raises(PolicyError, match="intranet is not a kind of address; use a comma-separated list of"):
        parse_policy("private,intranet")

    assert parse_policy(" Private , loopback ").denied == {"private", "loopback"}


@pytest.fixture
def connections(monkeypatch):
    """Every TCP connection the probes' backend asks for, recorded; made only to loopback.

    So a policy that failed to refuse would fail the test here, never send a packet.
    """
    made: list[tuple[str, int]] = []
    real = httpcore.AnyIOBackend.connect_tcp

    async def recording(self, host, port, *args, **kwargs):
        made.append((host, port))
        if host not in ("127.0.0.1", "::1"):
            raise AssertionError(f"a probe tried to connect to {host}:{port}")
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", recording)
    return made


def test_a_link_local_target_is_refused_before_any_connection(connections):
    probe = probe_server("http://169.254.169.254/latest/meta-data", timeout=2, retry_attempts=3, backoff=0)

    assert probe.error == "refused by the network policy (link-local address, never probed): not probed"
    assert probe.attempts == 1  # not retried: another attempt would be refused the same
    assert connections == []


def test_a_name_with_any_refused_address_is_refused_whole(connections, network_jail, monkeypatch, fake_waha):
    """Every address a name resolves to is checked: one loopback, one link-local is refused, and nothing connects."""
    server = fake_waha("healthy")
    loopback = network_jail.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        if host == "metadata.internal":
            return loopback("127.0.0.1", port, *args, **kwargs) + [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))
            ]
        return loopback(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)

    probe = probe_server(f"http://metadata.internal:{server.port}", timeout=2, retry_attempts=0)

    assert probe.error == "refused by the network policy (link-local address, never probed): not probed"
    assert connections == [] and server.connections == 0


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected_to(
    connections, network_jail, monkeypatch, fake_waha
):
    server = fake_waha("healthy")
    looked_up: list[str] = []

    def resolver(host, port, *args, **kwargs):
        looked_up.append(host)
        return network_jail.getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)

    probe = probe_server(f"http://localhost:{server.port}", timeout=2, retry_attempts=0)

    assert probe.reachable
    assert looked_up == ["localhost"]
    assert connections == [("127.0.0.1", server.port)]


def test_denying_loopback_refuses_a_loopback_server_which_receives_nothing(fake_waha, connections):
    server = fake_waha("healthy")

    for url in (server.url, f"http://localhost:{server.port}"):
        probe = probe_server(url, timeout=2, retry_attempts=2, policy=parse_policy("loopback"))
        assert (
            probe.error == "refused by the network policy (loopback address, denied by WAHA_DB_PROBE_DENY): not probed"
        )

    assert server.connections == 0 and server.requests == [] and connections == []
    assert probe_server(server.url, timeout=2, retry_attempts=0, policy=NetworkPolicy()).reachable
