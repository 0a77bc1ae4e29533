"""probe_server against fake WAHA servers on 127.0.0.1: every outcome in plain words."""

from __future__ import annotations

import threading
import time

from tests.fleet.fake_waha import SERVER_TEXT
from tests.support.network import free_port
from waha_db.fleet.probe import describe_probe, probe_server


def test_healthy_server_is_reachable_with_its_version(fake_waha):
    server = fake_waha("healthy")

    probe = probe_server(server.url, timeout=2, retry_attempts=0)

    assert probe.reachable
    assert (probe.version, probe.engine, probe.tier) == ("2026.9.1", "GOWS", "CORE")
    assert probe.latency_ms > 0
    assert probe.error is None
    assert probe.attempts == 1
    assert describe_probe(probe).startswith("reachable, ")
    assert describe_probe(probe).endswith("ms, WAHA 2026.9.1 (GOWS, CORE)")


def test_probe_asks_only_for_the_version_and_sends_no_key_when_there_is_none(fake_waha):
    server = fake_waha("healthy")

    probe_server(server.url + "/", timeout=2, retry_attempts=0)

    [(path, headers)] = server.requests
    assert path == "/api/server/version"
    assert "X-Api-Key" not in headers


def test_right_api_key_is_sent_and_accepted(fake_waha):
    server = fake_waha("needs_key", api_key="right-key")

    probe = probe_server(server.url, api_key="right-key", timeout=2, retry_attempts=0)

    assert probe.reachable
    assert server.requests[0][1]["X-Api-Key"] == "right-key"


def test_wrong_api_key_is_rejected_without_retrying(fake_waha):
    server = fake_waha("needs_key", api_key="right-key")

    probe = probe_server(server.url, api_key="wrong-key", timeout=2, retry_attempts=3, backoff=0)

    assert not probe.reachable
    assert probe.error == "API key rejected (HTTP 401)"
    assert probe.attempts == 1
    assert len(server.requests) == 1


def test_missing_api_key_is_rejected_and_says_none_is_set(fake_waha):
    server = fake_waha("needs_key", api_key="right-key")

    probe = probe_server(server.url, timeout=2, retry_attempts=0)

    assert probe.error == "API key rejected (HTTP 401): the server wants an API key and none is set"


def test_hanging_server_times_out_within_the_timeout_on_every_attempt(fake_waha):
    server = fake_waha("hang")

    started = time.monotonic()
    probe = probe_server(server.url, timeout=1, retry_attempts=1, backoff=0)
    elapsed = time.monotonic() - started

    assert not probe.reachable
    assert probe.error == "timed out after 1 s"
    assert probe.attempts == 2
    # At least both timeouts; the upper bound only proves neither attempt hung on
    # the server that never answers (slack for a loaded machine).
    assert 2 <= elapsed < 2 + 7


def test_a_timeout_below_the_databases_bound_is_raised_to_one_second(fake_waha):
    """Rows written before revision 0011 may hold any timeout: the probe clamps it to 1..120 s."""
    server = fake_waha("hang")

    probe = probe_server(server.url, timeout=0, retry_attempts=0)

    assert probe.error == "timed out after 1 s"


def test_server_error_is_retried_then_reported(fake_waha):
    server = fake_waha("error_500")

    probe = probe_server(server.url, timeout=2, retry_attempts=2, backoff=0)

    assert probe.error == "server error (HTTP 500)"
    assert probe.attempts == 3
    assert len(server.requests) == 3


def test_retry_waits_with_doubling_backoff(fake_waha):
    server = fake_waha("error_500")

    started = time.monotonic()
    probe_server(server.url, timeout=2, retry_attempts=2, backoff=0.1)
    elapsed = time.monotonic() - started

    assert elapsed >= 0.1 + 0.2


def test_a_server_that_recovers_between_attempts_is_reachable(fake_waha):
    server = fake_waha("error_500", healthy_after=2)

    probe = probe_server(server.url, timeout=2, retry_attempts=5, backoff=0.01)

    assert probe.reachable
    assert probe.attempts == 3
    assert len(server.requests) == 3


def test_connection_closed_without_an_answer(fake_waha):
    server = fake_waha("close")

    probe = probe_server(server.url, timeout=2, retry_attempts=0)

    assert probe.error == "connection closed by the server before a complete answer"


def test_nothing_listening_is_connection_refused():
    probe = probe_server(f"http://127.0.0.1:{free_port()}", timeout=2, retry_attempts=0)

    assert probe.error == "connection refused"


def test_unknown_name_does_not_resolve(network_jail):
    probe = probe_server("https://waha-principal.example", timeout=2, retry_attempts=0)

    assert probe.error == "name does not resolve: waha-principal.example"
    assert network_jail.refused_names == ["waha-principal.example"]


def test_tls_to_a_plain_http_server_is_a_tls_error(fake_waha):
    server = fake_waha("healthy")

    probe = probe_server(f"https://127.0.0.1:{server.port}", timeout=2, retry_attempts=2, backoff=0)

    assert probe.error.startswith("TLS error: ")
    assert probe.attempts == 1


def test_html_answer_is_not_a_waha_server(fake_waha):
    server = fake_waha("not_json")

    probe = probe_server(server.url, timeout=2, retry_attempts=2, backoff=0)

    assert probe.error == "not a WAHA server: the answer is not JSON"
    assert probe.attempts == 1


def test_json_without_a_version_is_not_a_waha_server(fake_waha):
    server = fake_waha("no_version")

    probe = probe_server(server.url, timeout=2, retry_attempts=0)

    assert probe.error == "not a WAHA server: the JSON answer has no version"


def test_redirect_is_not_followed_anywhere(fake_waha, network_jail):
    server = fake_waha("redirect")

    probe = probe_server(server.url, timeout=2, retry_attempts=0)

    assert probe.error == "redirected (HTTP 302): not followed; set api_url to the address WAHA answers at"
    assert SERVER_TEXT not in probe.error  # the Location header is the server's text
    assert network_jail.refused_names == []


def test_proxy_settings_of_the_environment_are_ignored(fake_waha, monkeypatch):
    server = fake_waha("healthy")
    proxy = fake_waha("healthy")
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)

    probe = probe_server(server.url, api_key="secret", timeout=2, retry_attempts=0)

    assert probe.reachable
    assert proxy.requests == []


def test_stop_event_cuts_retries_short(fake_waha):
    server = fake_waha("error_500")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()

    started = time.monotonic()
    probe = probe_server(server.url, timeout=2, retry_attempts=5, backoff=10, stop=stop)

    assert time.monotonic() - started < 5  # not the 10 s back-off
    assert probe.attempts == 1
    assert probe.interrupted and not probe.reachable


def test_a_url_that_is_not_http_is_reported_not_raised():
    probe = probe_server("ftp://127.0.0.1/", timeout=1, retry_attempts=0)

    assert not probe.reachable
    assert probe.error == "not an http:// or https:// URL"
