"""Fixtures of the health tests: fake WAHA servers, and a network jail.

The jail replaces name resolution for every test here: 127.0.0.1 and localhost
resolve, any other name fails as an unknown name would (EAI_NONAME). So the
"name does not resolve" outcome is real client behaviour on a simulated DNS
answer, and no test can ever look up or reach an outside name.
"""

from __future__ import annotations

import socket

import pytest

from tests.health.fake_waha import FakeWaha

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})


class NetworkJail:
    def __init__(self, real_getaddrinfo) -> None:
        self.real_getaddrinfo = real_getaddrinfo
        self.refused_names: list[str] = []

    def getaddrinfo(self, host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in LOOPBACK_NAMES:
            return self.real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        self.refused_names.append(name)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture(autouse=True)
def network_jail(monkeypatch):
    """Only loopback resolves; every other name is an unknown name (and is recorded)."""
    jail = NetworkJail(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", jail.getaddrinfo)
    return jail


@pytest.fixture
def fake_waha():
    """A factory of fake WAHA servers on 127.0.0.1, stopped at the end of the test."""
    started = []

    def make(mode: str = "healthy", **options) -> FakeWaha:
        fake = FakeWaha(mode, **options).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


# The rolled-back-transaction fixtures of the schema tests: each health test on
# the SQL side runs on every V2.1 kind (fresh plain, fresh Supabase, upgraded
# legacy) inside a transaction rolled back at its end.
from tests.sql.conftest import add_user, shared_v21_databases, tx  # noqa: E402,F401
