"""A WAHA look-alike on 127.0.0.1 whose behaviour a test switches at will.

Modes:
- ``healthy``: 200 with WAHA's version JSON;
- ``needs_key``: healthy only with the right ``X-Api-Key``, else 401 (as WAHA does);
- ``hang``: accepts the request and never answers (until the server stops);
- ``error_500``: HTTP 500;
- ``close``: reads the request and closes the connection without a word;
- ``not_json``: 200 with an HTML page (a web server that is not WAHA);
- ``no_version``: 200 with JSON that has no version;
- ``redirect``: 302 to another host (a client must not follow it).

Every request is kept in ``requests`` (path and headers), so a test can prove
what the client sent and where. ``healthy_after=N`` makes a server healthy from its
(N+1)th request on, whatever its mode: a server that recovers, counted in requests
rather than timed, so a loaded machine cannot move the recovery.

Run on its own for a demonstration (the health transcript):
``python -m tests.fleet.fake_waha --port 8101 [--mode healthy] [--api-key KEY]``.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WAHA_VERSION = {"version": "2024.10.1", "engine": "WEBJS", "tier": "CORE"}
MODES = ("healthy", "needs_key", "hang", "error_500", "close", "not_json", "no_version", "redirect")
REDIRECT_TARGET = "http://waha-elsewhere.example/api/server/version"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        fake = self.server.fake
        with fake.lock:
            fake.requests.append((self.path, dict(self.headers.items())))
            recovered = fake.healthy_after is not None and len(fake.requests) > fake.healthy_after
        mode = "healthy" if recovered else fake.mode
        if mode == "hang":
            fake.release.wait()
            self.close_connection = True
            return
        if mode == "close":
            self.close_connection = True
            return
        if self.path != "/api/server/version":
            self._send(404, b'{"statusCode":404,"message":"Cannot GET"}', "application/json")
            return
        if mode == "needs_key" and self.headers.get("X-Api-Key") != fake.api_key:
            self._send(401, b'{"message":"Unauthorized","statusCode":401}', "application/json")
            return
        if mode == "error_500":
            self._send(500, b'{"statusCode":500,"message":"Internal server error"}', "application/json")
            return
        if mode == "not_json":
            self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
            return
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", REDIRECT_TARGET)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "no_version":
            self._send(200, b'{"status":"ok"}', "application/json")
            return
        self._send(200, json.dumps(WAHA_VERSION).encode(), "application/json")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, fake: FakeWaha):
        self.fake = fake
        super().__init__(address, _Handler)


class FakeWaha:
    """One fake WAHA server in a background thread; a context manager."""

    def __init__(
        self, mode: str = "healthy", *, api_key: str | None = None, port: int = 0, healthy_after: int | None = None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        self.mode = mode
        self.api_key = api_key
        self.healthy_after = healthy_after
        self.requests: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self._server = _Server(("127.0.0.1", port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"fake-waha-{mode}", daemon=True
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeWaha:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeWaha:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connection refused)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake WAHA server on 127.0.0.1, for demonstrations.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="healthy")
    parser.add_argument("--api-key")
    arguments = parser.parse_args()
    fake = FakeWaha(arguments.mode, api_key=arguments.api_key, port=arguments.port)
    print(f"fake WAHA ({arguments.mode}) on {fake.url}", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.release.set()
        fake._server.server_close()


if __name__ == "__main__":
    main()
