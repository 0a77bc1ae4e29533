"""Ports on 127.0.0.1 for the servers a test starts, and for connections that must find nothing there."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released): for a server to start on, or to be refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
