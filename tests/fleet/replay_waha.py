"""The recorded WAHA Core 2024.10.8, replayed on 127.0.0.1: its own bytes, for the paths the toolkit asks.

Each GET is answered with the response recorded for that path in
tests/fleet/recorded/2024.10.8/ (status line, headers and body as that server sent
them; only the file's final newline, which is no part of the answer, is left out):

- ``/api/server/version``: 04 (`{"version":"2024.10.8","engine":"NOWEB","tier":"CORE",...}`);
- ``/api/server/status``: 05 (`"worker":{"id":""}`);
- ``/health``: 02 (422: a Plus feature in that release);
- ``/api/sessions?all=true``: ``sessions`` names which listing (07: `default`
  STOPPED, the default; 28: `default` STARTING; 33: STOPPED again);
- ``/api/sessions``: 08 (`[]`);
- anything else: 56 (NestJS's 404).

``requests`` keeps each request's path; a connection serves requests until the
client closes it (the recorded answers say `Connection: keep-alive`).
"""

from __future__ import annotations

import socketserver
import threading

from tests.fleet.waha_shapes import RECORDED

ROUTES = {
    "/api/server/version": "04_server_version_good",
    "/api/server/status": "05_server_status_good",
    "/health": "02_health_good",
    "/api/sessions": "08_sessions_list_good",
}
LISTINGS = ("07_sessions_list_all_good", "28_list_all_while_starting", "33_list_all_after_stop")
NOT_FOUND = "56_unknown_route"


def recorded_response(name: str) -> bytes:
    """The response part of recorded call `name`, byte for byte, its body cut to its Content-Length."""
    raw = (RECORDED / f"{name}.http").read_bytes()
    response = raw.partition(b"\n\n")[2]
    head, _, body = response.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head + b"\r\n\r\n" + body[:length]


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        """Requests on one connection, answered in turn until the client closes it (keep-alive, as recorded)."""
        while True:
            parts = self.rfile.readline(65536).decode("latin-1").split()
            while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                pass  # the headers: nothing in them changes the recorded answer (GETs have no body)
            if len(parts) < 2:
                return
            target = parts[1]
            replay = self.server.replay
            with replay.lock:
                replay.requests.append(target)
            path = target.split("?", 1)[0].rstrip("/")
            name = replay.sessions if path == "/api/sessions" and "all=true" in target else ROUTES.get(path, NOT_FOUND)
            self.wfile.write(recorded_response(name))
            self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False  # a client's idle keep-alive connection must not hold the test's end
    allow_reuse_address = True

    def __init__(self, replay: RecordedWaha) -> None:
        self.replay = replay
        super().__init__(("127.0.0.1", 0), _Handler)


class RecordedWaha:
    """The replaying server in a background thread; a context manager."""

    def __init__(self, sessions: str = LISTINGS[0]) -> None:
        if sessions not in LISTINGS:
            raise ValueError(f"no recorded listing {sessions!r}; one of {', '.join(LISTINGS)}")
        self.sessions = sessions
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordedWaha:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
