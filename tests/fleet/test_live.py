"""`reconcile_live`: the rows of waha_sessions against fake WAHA servers, on every kind of V2.1 database.

Each test has a user of its own in a database shared by the module (the reconcile
commits, so a rolled-back transaction cannot hold it), and scopes every reconcile
to that user.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa

from tests.support.factories import add_user, add_waha_server
from tests.support.live import HOUR, add_row, counter, found, reconcile, sessions
from tests.support.network import free_port
from waha_db.database import create_engine
from waha_db.fleet.live import KINDS, LiveReconcileError, reconcile_live


@pytest.fixture
def engine(v21_module_url):
    engine = create_engine(v21_module_url)
    yield engine
    engine.dispose()


@pytest.fixture
def user(engine) -> uuid.UUID:
    return add_user(engine)


# --- each kind of difference: found, then fixed by apply ------------------------------------------


def test_a_session_only_waha_knows_is_inserted_for_the_servers_user(engine, user, fake_waha):
    waha = fake_waha(tier="PLUS")
    waha.run_session("painel-01", "WORKING", phone="5511999990009", push_name="Painel")
    server = add_waha_server(engine, user, waha.url, sessions_ativas=1, timeout=2)  # counted by hand

    assert found(reconcile(engine, user)) == [("unknown_session", "painel-01")]
    assert sessions(engine, server) == {}

    reconcile(engine, user, apply=True)
    assert sessions(engine, server) == {"painel-01": (user, "WORKING", "5511999990009", "Painel", True)}
    assert counter(engine, server) == 1
    assert found(reconcile(engine, user)) == []


def test_a_name_the_user_already_occupies_elsewhere_skips_that_server_and_says_why(engine, user, fake_waha):
    """A session name identifies one session of its user: WAHA B running the name the user occupies on A
    cannot be inserted; B is skipped whole, A is brought in line, and the run goes on."""
    first, second = fake_waha(tier="PLUS"), fake_waha(tier="PLUS")
    first.run_session("loja", "WORKING")
    second.run_session("loja", "WORKING")
    second.run_session("caixa", "WORKING")
    server_a = add_waha_server(engine, user, first.url, sessions_ativas=1, timeout=2)
    server_b = add_waha_server(engine, user, second.url, timeout=2)
    add_row(engine, user, server_a, "loja", "WORKING")

    report = reconcile(engine, user, apply=True)

    skipped = {item.server.id: item.skipped for item in report.servers}
    assert skipped[server_a] is None
    assert "has the name of a session its user already occupies on another server" in skipped[server_b]
    assert sessions(engine, server_b) == {} and counter(engine, server_b) == 0
    assert list(sessions(engine, server_a)) == ["loja"]


def test_an_occupying_row_waha_does_not_have_is_marked_stopped_and_kept(engine, user, fake_waha):
    waha = fake_waha()
    server = add_waha_server(engine, user, waha.url, sessions_ativas=1, timeout=2)
    add_row(engine, user, server, "loja-03", "WORKING", "5511999990003", "Loja 3")
    add_row(engine, user, server, "loja-00", "STOPPED")

    assert found(reconcile(engine, user)) == [("missing_session", "loja-03"), ("counter", None)]

    reconcile(engine, user, apply=True)
    assert sessions(engine, server) == {
        "loja-03": (user, "STOPPED", "5511999990003", "Loja 3", False),
        "loja-00": (user, "STOPPED", None, None, False),
    }
    assert counter(engine, server) == 0


def test_a_row_waha_reports_failed_frees_its_slot(engine, user, fake_waha):
    waha = fake_waha()
    waha.run_session("loja-04", "FAILED")
    server = add_waha_server(engine, user, waha.url, sessions_ativas=1, timeout=2)
    add_row(engine, user, server, "loja-04", "WORKING")

    assert found(reconcile(engine, user)) == [("stopped_on_waha", "loja-04"), ("counter", None)]

    reconcile(engine, user, apply=True)
    assert sessions(engine, server)["loja-04"][1] == "FAILED"
    assert counter(engine, server) == 0


def test_a_status_difference_takes_wahas_status_and_working_sets_last_connected_at(engine, user, fake_waha):
    waha = fake_waha()
    waha.run_session("loja-02", "WORKING")
    waha.run_session("loja-10", "SCAN_QR_CODE")
    server = add_waha_server(engine, user, waha.url, sessions_ativas=1, timeout=2)
    add_row(engine, user, server, "loja-02", "connecting")
    add_row(engine, user, server, "loja-10", "STOPPED")

    assert found(reconcile(engine, user)) == [("status", "loja-02"), ("status", "loja-10"), ("counter", None)]

    reconcile(engine, user, apply=True)
    assert {name: row[1:] for name, row in sessions(engine, server).items()} == {
        "loja-02": ("WORKING", None, None, True),
        "loja-10": ("SCAN_QR_CODE", None, None, False),
    }
    assert counter(engine, server) == 2


def test_the_phone_number_and_profile_name_follow_wahas_me(engine, user, fake_waha):
    waha = fake_waha()
    waha.run_session("loja-05", "WORKING", phone="5511988880005", push_name="Loja 5")
    waha.run_session("loja-06", "STOPPED")  # no `me`: the phone stays
    server = add_waha_server(engine, user, waha.url, sessions_ativas=1, timeout=2)
    add_row(engine, user, server, "loja-05", "WORKING", "5511999990005", "Loja Cinco")
    add_row(engine, user, server, "loja-06", "STOPPED", "5511999990006", "Loja 6")

    assert found(reconcile(engine, user)) == [("profile", "loja-05")]

    reconcile(engine, user, apply=True)
    assert sessions(engine, server)["loja-05"][2:4] == ("5511988880005", "Loja 5")
    assert sessions(engine, server)["loja-06"][2:4] == ("5511999990006", "Loja 6")


@pytest.mark.parametrize("drifted", [0, 7])
def test_the_counter_becomes_the_occupying_sessions(engine, user, fake_waha, drifted):
    waha = fake_waha()
    server = add_waha_server(engine, user, waha.url, sessions_ativas=drifted, timeout=2)
    for name in ("a", "b", "c"):
        waha.run_session(name)
        add_row(engine, user, server, name, "WORKING")

    assert found(reconcile(engine, user)) == [("counter", None)]

    reconcile(engine, user, apply=True)
    assert counter(engine, server) == 3


def test_a_session_allocated_moments_ago_is_settling_until_the_grace_is_over(engine, user, fake_waha):
    waha = fake_waha()
    server = add_waha_server(engine, user, waha.url, timeout=2)
    with engine.begin() as connection:
        connection.execute(sa.text("SELECT public.allocate_waha_session(:user, 'loja-07')"), {"user": user})

    settling = reconcile(engine, user, apply=True)
    assert found(settling) == [("settling", "loja-07")]
    assert sessions(engine, server)["loja-07"][1] == "STARTING" and counter(engine, server) == 1

    reconcile(engine, user, apply=True, grace=0)
    assert sessions(engine, server)["loja-07"][1] == "STOPPED" and counter(engine, server) == 0


def test_more_sessions_on_waha_than_max_sessions_is_reported_and_counted_as_they_are(engine, user, fake_waha):
    waha = fake_waha(tier="CORE")
    waha.run_session("default")
    waha.run_session("extra")
    server = add_waha_server(engine, user, waha.url, max_sessions=1, sessions_ativas=1, timeout=2)
    add_row(engine, user, server, "default", "WORKING")

    report = reconcile(engine, user, apply=True)

    assert found(report) == [("unknown_session", "extra"), ("counter", None), ("over_capacity", None)]
    assert counter(engine, server) == 2, "the counter tells the truth; max_sessions is a person's decision"


# --- what is never done -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("dead", "connection refused"),
        ("slow", "timed out after 1 s"),
        ("needs_key", "API key rejected (HTTP 401)"),
        ("not_json", "not a WAHA server: the answer is not JSON"),
        ("error_500", "server error (HTTP 500)"),
    ],
)
def test_a_server_that_cannot_be_read_is_reported_and_nothing_changes(engine, user, fake_waha, mode, error):
    url = f"http://127.0.0.1:{free_port()}" if mode == "dead" else fake_waha(mode, api_key="right", delay=3).url
    server = add_waha_server(engine, user, url, api_key="wrong", timeout=1, sessions_ativas=2)
    add_row(engine, user, server, "loja-30", "WORKING")
    add_row(engine, user, server, "loja-31", "STARTING")
    before = sessions(engine, server)

    report = reconcile(engine, user, apply=True)

    [item] = report.servers
    assert (item.error, item.comparison, item.applied) == (error, None, False)
    assert report.problems == [item]
    assert sessions(engine, server) == before and counter(engine, server) == 2


def test_only_gets_with_the_api_key_reach_waha(engine, user, fake_waha):
    waha = fake_waha("needs_key", api_key="key1")
    server = add_waha_server(engine, user, waha.url, api_key="key1", sessions_ativas=1, timeout=2)
    add_row(engine, user, server, "loja-03", "WORKING")

    reconcile(engine, user, apply=True)

    assert waha.writes == []
    assert [(path, headers.get("X-Api-Key")) for path, headers in waha.requests] == [("/api/sessions?all=true", "key1")]
    assert sessions(engine, server)["loja-03"][1] == "STOPPED"


def test_a_server_locked_by_another_transaction_is_skipped_after_the_lock_timeout(engine, user, fake_waha):
    waha = fake_waha()
    server = add_waha_server(engine, user, waha.url, sessions_ativas=3, timeout=2)
    with engine.connect() as blocker:
        blocker.execute(sa.text("SELECT 1 FROM public.waha_servers WHERE id = :id FOR UPDATE"), {"id": server})

        report = reconcile(engine, user, apply=True, lock_timeout=0.2)

        blocker.rollback()
    [item] = report.servers
    assert item.skipped.startswith("another transaction held its rows locked for more than 0.2 s: nothing changed")
    assert counter(engine, server) == 3


# --- scope ---------------------------------------------------------------------------------------------


def test_the_scope_is_the_users_active_servers_or_the_named_ones(engine, user, fake_waha):
    active = add_waha_server(engine, user, fake_waha().url, timeout=2)
    disabled = add_waha_server(engine, user, fake_waha().url, ativo=False, timeout=2)

    assert [item.server.id for item in reconcile(engine, user).servers] == [active]
    with engine.connect() as connection:
        named = reconcile_live(connection, server_ids=[disabled], backoff=0)
    assert [item.server.id for item in named.servers] == [disabled]


def test_naming_another_users_server_or_an_unknown_one_is_refused(engine, user, fake_waha):
    users_server = add_waha_server(engine, user, fake_waha().url, timeout=2)
    someone_else = uuid.uuid4()
    missing = uuid.uuid4()
    with engine.connect() as connection:
        with pytest.raises(LiveReconcileError, match=f"server {users_server} is not a server of user {someone_else}"):
            reconcile_live(connection, user_id=someone_else, server_ids=[users_server])
        with pytest.raises(LiveReconcileError, match=f"no WAHA server with id {missing}"):
            reconcile_live(connection, server_ids=[missing])


# --- the JSON report ---------------------------------------------------------------------------------------


def test_the_json_report_is_stable_and_has_the_documented_fields(engine, user, fake_waha):
    waha = fake_waha(worker="w1")
    waha.run_session("loja-01", "WORKING", phone="5511999990001", push_name="Loja 1")
    waha.run_session("painel", "SCAN_QR_CODE")
    server = add_waha_server(engine, user, waha.url, "Principal", sessions_ativas=4, timeout=2)
    add_row(engine, user, server, "loja-01", "STARTING")
    add_waha_server(engine, user, f"http://127.0.0.1:{free_port()}", "Reserva", timeout=2)

    first, second = (json.dumps(reconcile(engine, user).as_json()) for _ in range(2))

    assert first == second
    document = json.loads(first)
    assert list(document) == ["applied", "grace_seconds", "silent_after_minutes", "servers", "summary"]
    reachable, dead = document["servers"]
    assert list(reachable) == [
        "server_id",
        "nome",
        "user_id",
        "api_url",
        "reachable",
        "error",
        "attempts",
        "worker_id",
        "max_sessions",
        "sessions_ativas",
        "waha_sessions",
        "occupying",
        "differences",
        "applied",
        "skipped",
    ]
    assert list(reachable["differences"][0]) == [
        "kind",
        "session_name",
        "session_id",
        "database",
        "waha",
        "detail",
        "action",
        "fixable",
    ]
    assert [d["kind"] for d in reachable["differences"]] == ["unknown_session", "status", "profile", "counter"]
    assert (
        dt.datetime.fromisoformat(reachable["waha_sessions"][0].pop("activity_at"))
        > dt.datetime.now(dt.timezone.utc) - HOUR
    )
    assert reachable["waha_sessions"][0] == {
        "name": "loja-01",
        "status": "WORKING",
        "phone_number": "5511999990001",
        "profile_name": "Loja 1",
        "engine": None,
        "assigned_worker": "w1",
    }
    assert reachable["worker_id"] == "w1"
    assert (dead["reachable"], dead["error"], dead["differences"]) == (False, "connection refused", [])
    assert list(document["summary"]["differences"]) == list(KINDS)
    assert document["summary"] | {"differences": None} == {
        "servers": 2,
        "in_line": 0,
        "unreachable": 1,
        "skipped": 0,
        "differences": None,
        "fixable": 4,
    }
