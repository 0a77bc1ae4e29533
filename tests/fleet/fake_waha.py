"""A WAHA look-alike on 127.0.0.1 whose behaviour a test switches at will.

It answers the endpoints the toolkit asks exactly as tests/fleet/waha_shapes.py says a
server of its version does (its generation's shapes: the recorded 2024.10.8 ones, 2025's,
or 2026's, which validate against waha-py's models; tests/fleet/test_fake_waha.py checks):
- ``GET /api/server/version``: ``{"version", "engine", "tier", "browser", ...}``;
- ``GET /api/server/status``: ``{"startTimestamp", "uptime", "worker": {"id"}}``;
- ``GET /health``: 200 ``ok``, or 503 ``error`` / ``shutting_down`` (``health``); 422
  with the recorded body on WAHA Core before 2026.6.1;
- ``GET /api/sessions?all=true``: the sessions run with ``run_session``; without
  ``all=true``, STOPPED sessions are left out, as WAHA does.
Anything else, and the endpoints named in ``absent``, is WAHA's (NestJS's) 404.
``endpoint_modes`` gives one endpoint a mode of its own (``{"/health": "hang"}``).

The default is a WAHA 2026.9.1 Core server (GOWS), no worker id, healthy.

Modes:
- ``healthy``: 200 with those answers;
- ``needs_key``: healthy only with the right ``X-Api-Key``, else 401 with
  NestJS's ``{"message": "Unauthorized", "statusCode": 401}`` (as WAHA does);
- ``slow``: healthy, but each answer comes after ``delay`` seconds;
- ``hang``: accepts the request and never answers (until the server stops);
- ``error_500``: HTTP 500;
- ``close``: reads the request and closes the connection without a word;
- ``not_json``: 200 with an HTML page (a web server that is not WAHA);
- ``no_version``: 200 with JSON that has no version;
- ``redirect``: 302 to another host (a client must not follow it);
- ``garbled``: an answer that is not HTTP, quoting ``SERVER_TEXT`` (a reason must not).

Every answer that is not WAHA's carries ``SERVER_TEXT`` in a header or its body, so a
test can prove that no reason quotes the server. ``connections`` counts the
connections accepted (a refused target must make none), and ``max_in_flight`` the
most requests it was answering at once. ``ssl_context`` serves HTTPS.

Every GET is kept in ``requests`` (path and headers), and any other method in
``writes``, so a test can prove what the client sent and where. ``healthy_after=N``
makes a server healthy from its (N+1)th request on, whatever its mode: a server that
recovers, counted in requests rather than timed, so a loaded machine cannot move the
recovery.

Run on its own for a demonstration (the health transcript):
``python -m tests.fleet.fake_waha --port 8101 [--mode healthy] [--api-key KEY]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.fleet.waha_shapes import SERVER_VERSION_2026, Answers

WAHA_VERSION = {key: SERVER_VERSION_2026[key] for key in ("version", "engine", "tier")}
MODES = ("healthy", "needs_key", "slow", "hang", "error_500", "close", "not_json", "no_version", "redirect", "garbled")
ENDPOINTS = ("/api/server/version", "/api/server/status", "/api/sessions", "/health")
# What an internal server might answer: no reason the user can read may quote it.
SERVER_TEXT = "secret-admin.internal.example"
REDIRECT_TARGET = f"http://{SERVER_TEXT}:8443/api/server/version"


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

    def _send_json(self, status: int, document) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _refuse_method(self):
        """WAHA's writes (POST /api/sessions/x/start, DELETE ...): recorded, so a test can prove none was sent."""
        self.server.fake.writes.append((self.command, self.path))
        self._send_json(405, {"message": f"{self.command} is not served by this fake", "statusCode": 405})

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse_method

    def do_GET(self):
        fake = self.server.fake
        with fake.lock:
            fake.requests.append((self.path, dict(self.headers.items())))
            fake.request_lines.append(self.requestline)
            recovered = fake.healthy_after is not None and len(fake.requests) > fake.healthy_after
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            endpoint = next((e for e in ENDPOINTS if urlsplit(self.path).path.rstrip("/").endswith(e)), None)
            mode = "healthy" if recovered else fake.endpoint_modes.get(endpoint, fake.mode)
            self._answer(fake, mode)
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def _answer(self, fake, mode):
        if mode == "hang":
            fake.release.wait()
            self.close_connection = True
            return
        if mode == "close":
            self.close_connection = True
            return
        if mode == "garbled":
            self.wfile.write(f"HTTP/1.1 2OO {SERVER_TEXT}\r\n{SERVER_TEXT}\r\n\r\n".encode())
            self.close_connection = True
            return
        if mode == "slow" and fake.release.wait(fake.delay):
            self.close_connection = True
            return
        path = urlsplit(self.path)
        # WAHA may sit under a path of a reverse proxy (api_url https://host/waha): any prefix.
        endpoint = next((e for e in ENDPOINTS if path.path.rstrip("/").endswith(e)), None)
        if endpoint is None or endpoint in fake.absent:
            self._send_json(404, {"statusCode": 404, "message": f"Cannot GET {path.path}", "error": "Not Found"})
            return
        if mode == "needs_key" and self.headers.get("X-Api-Key") != fake.api_key:
            self._send_json(401, {"message": "Unauthorized", "statusCode": 401})
            return
        if mode == "error_500":
            self._send_json(500, {"statusCode": 500, "message": f"Internal server error at {SERVER_TEXT}"})
            return
        if mode == "not_json":
            self._send(200, f"<html><body>Welcome to {SERVER_TEXT}</body></html>".encode(), "text/html")
            return
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", REDIRECT_TARGET)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if endpoint == "/api/sessions":
            every = parse_qs(path.query).get("all") == ["true"]
            self._send_json(200, [s for s in fake.session_list() if every or s["status"] != "STOPPED"])
            return
        if endpoint == "/health":
            self._send_json(*fake.answers.health_check())
            return
        if endpoint == "/api/server/status":
            self._send_json(200, fake.answers.server_status())
            return
        if mode == "no_version":
            self._send_json(200, {"status": "ok"})
            return
        self._send_json(200, fake.version_answer())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many probes at once to one fake (the default 5 would make them wait)

    def __init__(self, address, fake: FakeWaha, ssl_context=None):
        self.fake = fake
        self.ssl_context = ssl_context
        super().__init__(address, _Handler)

    def get_request(self):
        connection, address = super().get_request()
        with self.fake.lock:
            self.fake.connections += 1
        if self.ssl_context is not None:
            connection = self.ssl_context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address

    def finish_request(self, request, client_address):
        if self.ssl_context is not None:
            try:
                request.do_handshake()
            except (OSError, ValueError):  # a client that refused our certificate
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        """A client that gave up (a timeout) closes the connection under a slow answer: not an error here."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeWaha:
    """One fake WAHA server in a background thread; a context manager."""

    def __init__(
        self,
        mode: str = "healthy",
        *,
        api_key: str | None = None,
        port: int = 0,
        healthy_after: int | None = None,
        version: str = WAHA_VERSION["version"],
        engine: str = WAHA_VERSION["engine"],
        tier: str = WAHA_VERSION["tier"],
        worker: str = "",
        health: str = "ok",
        absent: tuple[str, ...] = (),
        endpoint_modes: dict[str, str] | None = None,
        delay: float = 2.0,
        ssl_context=None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        self.mode = mode
        self.api_key = api_key
        self.healthy_after = healthy_after
        self.version, self.engine, self.tier = version, engine, tier
        self.worker, self.health, self.absent = worker, health, absent
        self.endpoint_modes = dict(endpoint_modes or {})
        unknown = sorted(set(self.endpoint_modes.values()) - set(MODES)) + sorted(
            set(self.endpoint_modes) - set(ENDPOINTS)
        )
        if unknown:
            raise ValueError(f"unknown endpoint modes {unknown}")
        self.delay = delay
        self.requests: list[tuple[str, dict]] = []
        self.request_lines: list[str] = []
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.writes: list[tuple[str, str]] = []
        self.release = threading.Event()
        self._sessions: dict[str, dict] = {}
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), self, ssl_context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"fake-waha-{mode}", daemon=True
        )

    @property
    def answers(self) -> Answers:
        """What this server answers now (a test may change its version, tier, worker or health)."""
        return Answers(self.version, self.engine, self.tier, self.worker, self.health)

    def version_answer(self) -> dict:
        return self.answers.server_version()

    def run_session(
        self,
        name: str,
        status: str = "WORKING",
        *,
        phone: str | None = None,
        push_name: str | None = None,
        worker: str | None = None,
        activity_ms: float | None = None,
    ) -> dict:
        """Make the server run (or know) session `name`, as WAHA of its version lists it; `phone` gives it a `me`.

        `worker`: the session's assignedWorker (None: this server's worker, if it has one);
        `activity_ms`: its last activity, WAHA 2026 (None: now).
        """
        session = self.answers.session(
            name, status, phone=phone, push_name=push_name, worker=worker, activity_ms=activity_ms
        )
        with self.lock:
            self._sessions[name] = session
        return session

    def forget_session(self, name: str) -> None:
        """The session is gone from the server (deleted, or lost in a restart)."""
        with self.lock:
            self._sessions.pop(name, None)

    def session_list(self) -> list[dict]:
        with self.lock:
            return [dict(session) for session in self._sessions.values()]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self._server.ssl_context is not None else "http"
        host = "localhost" if self._server.ssl_context is not None else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}"

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
