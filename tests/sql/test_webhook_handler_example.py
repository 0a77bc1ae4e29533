"""The Python webhook handler of docs/WEBHOOKS.md, run as written: WAHA's deliveries in, outcomes out.

The block marked `<!-- example: tests/sql/test_webhook_handler_example.py -->` is executed
as a module and served on 127.0.0.1; deliveries are signed as WAHA signs them
(HMAC-SHA512 of the raw body with the server's webhook_secret, hex).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import types
from pathlib import Path

import httpx
import pytest

from tests.fleet import waha_shapes
from tests.support.concurrency import accounting, connect
from tests.support.factories import add_server, add_user
from waha_db.database import conninfo

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "WEBHOOKS.md"
MARKER = "<!-- example: tests/sql/test_webhook_handler_example.py -->"
SECRET = "s3cr3t-of-the-server"


def documented_handler(database_url: str, monkeypatch) -> types.ModuleType:
    text = DOCUMENT.read_text()
    block = re.search(re.escape(MARKER) + r"\n```python\n(.*?)\n```", text, re.DOTALL)
    assert block, f"{DOCUMENT.name} has no python block after {MARKER}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    module = types.ModuleType("waha_webhook_example")
    exec(compile(block.group(1), str(DOCUMENT), "exec"), module.__dict__)
    return module


@pytest.fixture
def endpoint(fresh_database, monkeypatch):
    """(post, server_id, admin): the documented handler serving a fresh database with one server of the user."""
    url = fresh_database("head")
    handler = documented_handler(conninfo(url), monkeypatch)
    admin = connect(url)
    user = add_user(admin)
    server = add_server(admin, user, "loja", max_sessions=5, webhook_secret=SECRET)
    # The URL as docs/WEBHOOKS.md has WAHA configured, kept in the server's row.
    admin.execute(
        "UPDATE public.waha_servers SET webhook_url = %s WHERE id = %s",
        (f"https://project.supabase.example/functions/v1/waha-webhook/{server}", server),
    )
    http = handler.ThreadingHTTPServer(("127.0.0.1", 0), handler.WahaWebhook)
    http.RequestHandlerClass.log_message = lambda *args: None  # quiet in the test's output
    threading.Thread(target=http.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{http.server_address[1]}/waha-webhook"

    def post(body, *, server_id=server, secret=SECRET, algorithm="sha512", signed=True):
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if signed:
            headers["X-Webhook-Hmac"] = hmac.new(secret.encode(), raw, hashlib.sha512).hexdigest()
            headers["X-Webhook-Hmac-Algorithm"] = algorithm
        return httpx.post(f"{base}/{server_id}", content=raw, headers=headers, timeout=30)

    yield post, server, admin
    http.shutdown()
    http.server_close()
    admin.close()


def test_a_signed_2026_delivery_is_applied_once(endpoint):
    post, _server, admin = endpoint
    body = waha_shapes.session_status_event_2026("cli-1", "WORKING", phone="5511999990001", push_name="Loja")

    first, again = post(body), post(body)

    assert (first.status_code, first.json()["outcome"], first.json()["session_status"]) == (200, "inserted", "WORKING")
    assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
    assert accounting(admin) == {"loja": (5, 1, 1)}


def test_an_older_delivery_after_a_newer_one_is_late(endpoint):
    post, _server, admin = endpoint
    newer = waha_shapes.session_status_event_2026("cli-1", "STOPPED", event_id="evt_b", timestamp=1796578942000)
    older = waha_shapes.session_status_event_2026("cli-1", "WORKING", event_id="evt_a", timestamp=1796578941000)

    assert [post(body).json()["outcome"] for body in (newer, older)] == ["inserted", "late"]
    assert accounting(admin) == {"loja": (5, 0, 0)}


@pytest.mark.parametrize(
    "change",
    [{"secret": "another secret"}, {"algorithm": "sha256"}, {"signed": False}],
    ids=["wrong-secret", "other-algorithm", "unsigned"],
)
def test_a_delivery_not_signed_with_the_servers_secret_is_refused_and_changes_nothing(endpoint, change):
    post, _server, admin = endpoint
    answer = post(waha_shapes.session_status_event_2026("cli-1", "WORKING"), **change)

    assert answer.status_code == 401
    assert admin.execute("SELECT count(*) FROM public.waha_sessions").fetchone() == (0,)


def test_the_recorded_unsigned_core_2024_delivery_is_refused(endpoint):
    """WAHA Core 2024.10.8 does not sign: such a server is left to the live reconcile."""
    post, _server, _admin = endpoint
    headers, body = waha_shapes.recorded_webhook("001")
    assert "X-Webhook-Hmac" not in headers
    assert post(body, signed=False).status_code == 401


def test_other_events_are_ignored_and_bad_ones_refused(endpoint):
    post, server, _admin = endpoint
    message = post({"event": "message", "session": "cli-1", "payload": {"body": "oi"}})
    no_status = post({"event": "session.status", "session": "cli-1", "payload": {}})
    stranger = post(waha_shapes.session_status_event_2026("cli-1", "WORKING"), server_id="0" * 8 + str(server)[8:])

    assert (message.status_code, message.json()) == (200, {"ignored": "message"})
    assert no_status.status_code == 400
    assert stranger.status_code == 404


def test_an_invalid_name_is_answered_and_left_alone(endpoint):
    post, _server, admin = endpoint
    answer = post(waha_shapes.session_status_event_2026("nome inválido!", "WORKING"))

    assert (answer.status_code, answer.json()) == (
        200,
        {"outcome": "invalid_name", "session_id": None, "session_status": None},
    )
    assert accounting(admin) == {"loja": (5, 0, 0)}
