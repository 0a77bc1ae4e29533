"""record_waha_session_event: WAHA's session.status webhooks applied to the sessions, counters exact.

Each test runs on every V2.1 kind (fresh plain, fresh Supabase, upgraded legacy),
in a transaction rolled back at its end. The events are WAHA's own: the webhooks a
real WAHA Core 2024.10.8 sent (no id, no timestamp), and 2026-shaped events that
validate against waha-py's model (tests/fleet/waha_shapes.py). Concurrency with
allocate_waha_session and release_waha_session: test_record_waha_session_event_concurrency.py.
"""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from tests.fleet import waha_shapes
from tests.fleet.waha_shapes import SessionStatusEvent, session_status_event_2025, session_status_event_2026
from tests.support.assertions import acting_as, assert_refused, row_counts
from tests.support.factories import add_server, add_session, add_user
from tests.support.waha_calls import allocate, occupying, record_event, sessions_ativas

OCCUPYING_NAME_KEY = "waha_sessions_user_id_session_name_occupying_key"


def outcome(tx, server_id, event) -> str:
    return record_event(tx, server_id, event)[0]


def event(name, status, *, event_id=None, timestamp=None, phone=None, push_name=None) -> dict:
    """A 2026-shaped session.status event; without id or timestamp, those keys are left out (WAHA before 2025)."""
    body = session_status_event_2026(name, status, phone=phone, push_name=push_name)
    for key, value in (("id", event_id), ("timestamp", timestamp)):
        if value is None:
            del body[key]
        else:
            body[key] = value
    return body


def session(tx, server_id, name) -> tuple:
    return tx.execute(
        "SELECT status, phone_number, profile_name, last_connected_at FROM public.waha_sessions"
        " WHERE waha_server_id = %s AND session_name = %s",
        (server_id, name),
    ).fetchone()


def ms_ago(tx, seconds: float) -> int:
    """The database's now() minus `seconds`, in ms since the epoch, as WAHA writes timestamps."""
    return tx.execute("SELECT (extract(epoch FROM now()) * 1000)::bigint - %s", (int(seconds * 1000),)).fetchone()[0]


@pytest.fixture
def loja(tx):
    """A user with one server of 5 slots, and their session cli-1 allocated on it (STARTING, one slot)."""
    user = add_user(tx)
    server = add_server(tx, user, "loja", max_sessions=5)
    session_id, _ = allocate(tx, user, "cli-1")
    return user, server, session_id


# --- what an event writes -----------------------------------------------------------------------


def test_a_2026_working_event_writes_status_phone_profile_and_last_connected_at(tx, loja):
    user, server, session_id = loja
    sent_at = ms_ago(tx, 90)
    body = event("cli-1", "WORKING", event_id="evt_01kc5qz3w8h2m4n6p8r0t2v4x6", timestamp=sent_at)
    body["me"] = {"id": "5511999990001@c.us", "pushName": "Loja 1", "lid": "123123@lid"}
    SessionStatusEvent.model_validate(body)  # WAHA 2026's shape, as waha-py types it

    assert record_event(tx, server, body) == ("applied", session_id, "WORKING")
    status, phone, profile, connected_at = session(tx, server, "cli-1")
    assert (status, phone, profile) == ("WORKING", "5511999990001", "Loja 1")
    assert connected_at == tx.execute("SELECT to_timestamp(%s / 1000.0)", (sent_at,)).fetchone()[0]
    assert sessions_ativas(tx, server) == occupying(tx, server) == 1, "STARTING to WORKING: the same slot"


def test_an_event_without_me_forgets_no_phone_and_a_lid_is_no_phone(tx, loja):
    _, server, _ = loja
    record_event(tx, server, event("cli-1", "WORKING", phone="5511999990001", push_name="Loja 1"))
    record_event(tx, server, event("cli-1", "STOPPED"))
    lid = event("cli-1", "WORKING")
    lid["me"] = {"id": "123123@lid", "pushName": "Loja Nova"}
    record_event(tx, server, lid)

    assert session(tx, server, "cli-1")[:3] == ("WORKING", "5511999990001", "Loja Nova")


def test_a_future_timestamp_is_not_a_future_connection(tx, loja):
    _, server, _ = loja
    record_event(tx, server, event("cli-1", "WORKING", event_id="evt_a", timestamp=ms_ago(tx, -3600)))

    assert session(tx, server, "cli-1")[3] == tx.execute("SELECT now()").fetchone()[0]


# --- duplicates and late deliveries -------------------------------------------------------------


def test_the_same_event_delivered_twice_changes_nothing_the_second_time(tx, loja):
    user, server, session_id = loja
    working = event("cli-1", "WORKING", event_id="evt_01kc5qz3w8h2m4n6p8r0t2v4x6", timestamp=ms_ago(tx, 60))
    assert outcome(tx, server, working) == "applied"
    # The app releases the session: STOPPED, its slot free.
    assert tx.execute("SELECT public.release_waha_session(%s)", (session_id,)).fetchone()[0]

    assert record_event(tx, server, working) == ("duplicate", session_id, "STOPPED")
    assert session(tx, server, "cli-1")[0] == "STOPPED"
    assert sessions_ativas(tx, server) == occupying(tx, server) == 0


def test_an_event_older_than_the_last_applied_changes_nothing(tx, loja):
    _, server, session_id = loja
    started = event("cli-1", "WORKING", event_id="evt_01kc5qz3w8aaaaaaaaaaaaaaaa", timestamp=ms_ago(tx, 120))
    stopped = event("cli-1", "STOPPED", event_id="evt_01kc5qz9zzbbbbbbbbbbbbbbbb", timestamp=ms_ago(tx, 60))

    assert outcome(tx, server, stopped) == "applied"
    assert record_event(tx, server, started) == ("late", session_id, "STOPPED")
    assert sessions_ativas(tx, server) == occupying(tx, server) == 0


def test_2025_events_are_ordered_by_their_timestamp(tx, loja):
    _, server, _ = loja
    older = session_status_event_2025("cli-1", "WORKING", event_id="evt_01a", timestamp=1765000000000)
    newer = session_status_event_2025("cli-1", "FAILED", event_id="evt_01b", timestamp=1765000001000)

    assert [outcome(tx, server, item) for item in (newer, older, newer)] == ["applied", "late", "duplicate"]
    assert session(tx, server, "cli-1")[0] == "FAILED" and sessions_ativas(tx, server) == 0


@pytest.mark.parametrize("order", ["in order", "reversed"])
def test_events_of_one_millisecond_end_as_the_greater_id_whatever_the_order(tx, loja, order):
    _, server, _ = loja
    moment = ms_ago(tx, 30)
    first = event("cli-1", "STOPPED", event_id="evt_01kc5qz3w8000000000000000a", timestamp=moment)
    second = event("cli-1", "WORKING", event_id="evt_01kc5qz3w8000000000000000b", timestamp=moment)
    deliveries = [first, second] if order == "in order" else [second, first]

    outcomes = [outcome(tx, server, item) for item in deliveries]

    assert outcomes == (["applied", "applied"] if order == "in order" else ["applied", "late"])
    assert session(tx, server, "cli-1")[0] == "WORKING" and sessions_ativas(tx, server) == occupying(tx, server) == 1


def test_without_ids_one_timestamp_is_one_event(tx, loja):
    _, server, _ = loja
    moment = ms_ago(tx, 30)
    assert outcome(tx, server, event("cli-1", "WORKING", timestamp=moment)) == "applied"
    assert outcome(tx, server, event("cli-1", "STOPPED", timestamp=moment)) == "duplicate"
    assert outcome(tx, server, event("cli-1", "STOPPED", timestamp=moment + 1)) == "applied"


def test_the_recorded_2024_webhooks_without_id_or_timestamp_are_applied_as_they_come(tx):
    """WAHA Core 2024.10.8's own deliveries: STARTING (001, 024), STOPPED (025), STARTING (026)."""
    user = add_user(tx)
    server = add_server(tx, user, "core", max_sessions=1)
    session_id, _ = allocate(tx, user, "default")
    deliveries = ["001", "024", "025", "026", "025"]  # the last one delivered again: nothing tells it apart

    seen = []
    for number in deliveries:
        _headers, body = waha_shapes.recorded_webhook(number)
        seen.append((record_event(tx, server, body), sessions_ativas(tx, server), occupying(tx, server)))

    assert seen == [
        (("applied", session_id, "STARTING"), 1, 1),
        (("applied", session_id, "STARTING"), 1, 1),
        (("applied", session_id, "STOPPED"), 0, 0),
        (("applied", session_id, "STARTING"), 1, 1),
        (("applied", session_id, "STOPPED"), 0, 0),
    ]
    assert tx.execute("SELECT count(*) FROM public.waha_session_last_event").fetchone()[0] == 0


# --- capacity -----------------------------------------------------------------------------------


def test_passkey_statuses_occupy_a_slot(tx, loja):
    _, server, session_id = loja
    tx.execute("SELECT public.release_waha_session(%s)", (session_id,))
    steps = ["PASSKEY_REQUIRED", "PASSKEY_CONFIRMATION_REQUIRED", "WORKING", "failed", "SCAN_QR_CODE", "DISCONNECTED"]

    counters = []
    for step in steps:
        record_event(tx, server, event("cli-1", step))
        counters.append((sessions_ativas(tx, server), occupying(tx, server)))

    assert counters == [(1, 1), (1, 1), (1, 1), (0, 0), (1, 1), (0, 0)]


def test_the_callers_lock_timeout_is_given_back(tx, loja):
    _, server, _ = loja
    tx.execute("SET LOCAL lock_timeout = '7s'")
    record_event(tx, server, event("cli-1", "STOPPED"))  # gives back a slot: the server's row is waited for briefly

    assert tx.execute("SHOW lock_timeout").fetchone() == ("7s",)
    assert sessions_ativas(tx, server) == 0


# --- sessions the database does not know -------------------------------------------------------


def test_an_unknown_session_is_inserted_for_the_servers_user_as_reconcile_does(tx, loja):
    user, server, _ = loja
    painel = record_event(tx, server, event("painel-01", "WORKING", phone="5511999990009", push_name="Painel"))
    arquivo = record_event(tx, server, event("arquivo", "STOPPED"))

    assert painel[0] == "inserted" and arquivo[0] == "inserted"
    rows = tx.execute(
        "SELECT id, user_id, status, phone_number, profile_name, last_connected_at IS NOT NULL"
        " FROM public.waha_sessions WHERE waha_server_id = %s AND session_name IN ('painel-01', 'arquivo')"
        " ORDER BY session_name",
        (server,),
    ).fetchall()
    assert rows == [
        (arquivo[1], user, "STOPPED", None, None, False),
        (painel[1], user, "WORKING", "5511999990009", "Painel", True),
    ]
    assert sessions_ativas(tx, server) == occupying(tx, server) == 2, "cli-1 and painel-01"
    assert outcome(tx, server, event("painel-01", "WORKING", phone="5511999990009")) == "applied"


@pytest.mark.parametrize("name", ["nome inválido!", "x" * 55, "", "a/b"])
def test_an_unknown_session_whose_name_breaks_the_rule_is_left_alone(tx, loja, name):
    _, server, _ = loja
    before = row_counts(tx), sessions_ativas(tx, server)

    assert record_event(tx, server, event(name, "WORKING", event_id="evt_x", timestamp=ms_ago(tx, 1))) == (
        "invalid_name",
        None,
        None,
    )
    assert (row_counts(tx), sessions_ativas(tx, server)) == before


def test_a_name_its_user_occupies_on_another_server_is_wah21_and_changes_nothing(tx):
    user = add_user(tx)
    primary = add_server(tx, user, "primary", prioridade=10)
    backup = add_server(tx, user, "backup", prioridade=0)
    allocate(tx, user, "c1")  # occupies on primary
    add_session(tx, user, backup, "c2", status="STOPPED")
    allocate(tx, user, "c2")  # the stopped c2 of backup stays; c2 occupies on primary

    for name in ("c1", "c2"):  # unknown on backup, and known there but stopped
        error = assert_refused(
            tx,
            "SELECT public.record_waha_session_event(%s, %s)",
            (backup, Jsonb(event(name, "WORKING", event_id="evt_1", timestamp=ms_ago(tx, 1)))),
            sqlstate="WAH21",
        )
        assert f"already occupies that name on WAHA server {primary}" in str(error)
    assert (sessions_ativas(tx, primary), sessions_ativas(tx, backup)) == (2, 0)
    assert outcome(tx, backup, event("c1", "STOPPED")) == "inserted", "a stopped one may stay on both"


# --- refusals, rights, memory ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        ["session.status"],
        {"event": "message", "session": "cli-1", "payload": {"status": "WORKING"}},
        {"session": "cli-1", "payload": {"status": "WORKING"}},
        {"event": "session.status", "payload": {"status": "WORKING"}},
        {"event": "session.status", "session": "cli-1", "payload": {}},
        {"event": "session.status", "session": "cli-1", "payload": {"status": "W" * 51}},
        {"event": "session.status", "session": "cli-1", "payload": {"status": "WORKING"}, "id": 7},
        {"event": "session.status", "session": "cli-1", "payload": {"status": "WORKING"}, "id": "e" * 256},
        {"event": "session.status", "session": "cli-1", "payload": {"status": "WORKING"}, "timestamp": "1765000000000"},
        {"event": "session.status", "session": "cli-1", "payload": {"status": "WORKING"}, "timestamp": -1},
    ],
    ids=["array", "message", "no-event", "no-session", "no-status", "long-status", "id-number", "long-id",
         "timestamp-text", "timestamp-negative"],
)  # fmt: skip
def test_what_is_not_a_session_status_event_is_22023(tx, loja, body):
    _, server, _ = loja
    assert_refused(tx, "SELECT public.record_waha_session_event(%s, %s)", (server, Jsonb(body)), sqlstate="22023")


def test_the_servers_user_and_service_role_may_record_nobody_else(tx):
    ana, bruno = add_user(tx), add_user(tx)
    brunos = add_server(tx, bruno, "bruno")
    sent = event("cli-1", "WORKING", event_id="evt_1", timestamp=ms_ago(tx, 5))

    with acting_as(tx, "authenticated", ana):
        assert_refused(tx, "SELECT public.record_waha_session_event(%s, %s)", (brunos, Jsonb(sent)), sqlstate="WAH20")
    with acting_as(tx, "authenticated", bruno):
        assert outcome(tx, brunos, sent) == "inserted"
        assert tx.execute("SELECT count(*) FROM public.waha_session_last_event").fetchone()[0] == 1
    with acting_as(tx, "authenticated", ana):
        assert tx.execute("SELECT count(*) FROM public.waha_session_last_event").fetchone()[0] == 0
    with acting_as(tx, "service_role"):
        assert outcome(tx, brunos, event("cli-1", "STOPPED", event_id="evt_2", timestamp=ms_ago(tx, 1))) == "applied"
    assert sessions_ativas(tx, brunos) == 0


def test_a_user_cannot_write_the_memory_of_a_strangers_session(tx):
    ana, bruno = add_user(tx), add_user(tx)
    brunos = add_server(tx, bruno, "bruno")
    add_session(tx, bruno, brunos, "cli-1")

    with acting_as(tx, "authenticated", ana):
        assert_refused(
            tx,
            "INSERT INTO public.waha_session_last_event (server_id, session_name, user_id, event_timestamp)"
            " VALUES (%s, 'cli-1', %s, 9007199254740991)",
            (brunos, ana),
            sqlstate="23503",
        )
        assert_refused(
            tx,
            "INSERT INTO public.waha_session_last_event (server_id, session_name, user_id, event_timestamp)"
            " VALUES (%s, 'cli-1', %s, 9007199254740991)",
            (brunos, bruno),
            sqlstate="42501",
        )


@pytest.mark.parametrize(
    "signature", ["public.record_waha_session_event(uuid, jsonb)", "public.report_waha_server_worker(uuid, text)"]
)
def test_only_authenticated_and_service_role_may_call_with_invoker_rights_and_no_search_path(tx, signature):
    allowed = [
        role
        for (role,) in tx.execute(
            "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname IN ('authenticated', 'service_role', 'anon')"
            "   AND pg_catalog.has_function_privilege(oid, %s, 'EXECUTE') ORDER BY rolname",
            (signature,),
        )
    ]
    definition = tx.execute(
        "SELECT prosecdef, provolatile, proconfig, bool_or(acl.grantee = 0)"
        " FROM pg_catalog.pg_proc AS proc, pg_catalog.aclexplode(proc.proacl) AS acl"
        " WHERE proc.oid = %s::regprocedure GROUP BY 1, 2, 3",
        (signature,),
    ).fetchone()

    assert allowed == ["authenticated", "service_role"]
    assert definition == (False, "v", ['search_path=""'], False)


def test_the_memory_is_one_row_per_session_and_goes_with_it(tx, loja):
    _, server, session_id = loja
    start = ms_ago(tx, 600)
    for number in range(50):
        record_event(tx, server, event("cli-1", "WORKING" if number % 2 else "STOPPED", event_id=f"evt_{number:03d}",
                                 timestamp=start + number))  # fmt: skip

    def memory():
        return tx.execute(
            "SELECT session_name, event_id, event_timestamp - %s FROM public.waha_session_last_event"
            " WHERE server_id = %s",
            (start, server),
        ).fetchall()

    assert memory() == [("cli-1", "evt_049", 49)]
    tx.execute("UPDATE public.waha_sessions SET session_name = 'cli-1b' WHERE id = %s", (session_id,))
    assert memory() == [("cli-1b", "evt_049", 49)]
    tx.execute("SELECT public.release_waha_session(%s)", (session_id,))
    tx.execute("DELETE FROM public.waha_sessions WHERE id = %s", (session_id,))
    assert memory() == []


def test_a_deleted_session_comes_back_with_its_next_event(tx, loja):
    """As the live reconcile's unknown_session: WAHA runs it, so the database knows it again."""
    _, server, session_id = loja
    tx.execute("SELECT public.release_waha_session(%s)", (session_id,))
    tx.execute("DELETE FROM public.waha_sessions WHERE id = %s", (session_id,))

    inserted = record_event(tx, server, event("cli-1", "WORKING", event_id="evt_9", timestamp=ms_ago(tx, 1)))

    assert inserted[0] == "inserted" and inserted[1] != session_id
    assert sessions_ativas(tx, server) == occupying(tx, server) == 1


def test_a_session_name_that_differs_only_in_case_is_another_session(tx, loja):
    """WAHA compares names exactly, as the database does."""
    _, server, _ = loja
    assert outcome(tx, server, event("CLI-1", "STARTING")) == "inserted"
    assert sessions_ativas(tx, server) == occupying(tx, server) == 2
