"""`reconcile_live` on WAHA as it runs in 2026: workers sharing a session store, silent sessions, and a counter
that counts what occupies a slot on WAHA, on every kind of V2.1 database.

Each test has a user of its own in a database shared by the module (the reconcile
commits), and scopes every reconcile to that user.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
import sqlalchemy as sa

from tests.support.factories import add_user, add_waha_server
from tests.support.live import add_row, counter, found, reconcile, sessions
from waha_db.database import create_engine
from waha_db.fleet.live import WORKER_UNKNOWN
from waha_db.fleet.live_report import render_live_report

MINUTE_MS = 60_000


@pytest.fixture
def engine(v21_module_url):
    engine = create_engine(v21_module_url)
    yield engine
    engine.dispose()


@pytest.fixture
def user(engine) -> uuid.UUID:
    return add_user(engine)


def share_a_store(fake_waha, *workers: str):
    """WAHA servers, one per worker id, that list the same sessions (one session store)."""
    servers = [fake_waha(worker=worker) for worker in workers]

    def run(name, status, worker, **options):
        for server in servers:
            server.run_session(name, status, worker=worker, **options)

    return servers, run


def updated_at(engine, server) -> dict[str, object]:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                sa.text("SELECT session_name, updated_at FROM public.waha_sessions WHERE waha_server_id = :id"),
                {"id": server},
            ).all()
        )


# --- workers sharing a session store -------------------------------------------------------------------


def test_workers_sharing_a_store_each_get_their_own_sessions_and_leave_the_others(engine, user, fake_waha):
    (waha_a, waha_b), run = share_a_store(fake_waha, "worker-a", "worker-b")
    run("loja-a", "WORKING", "worker-a", phone="5511999990001", push_name="Loja A")
    run("loja-b", "WORKING", "worker-b", phone="5511999990002", push_name="Loja B")
    run("caixa-b", "SCAN_QR_CODE", "worker-b")
    server_a = add_waha_server(engine, user, waha_a.url, "A", timeout=2)
    server_b = add_waha_server(engine, user, waha_b.url, "B", timeout=2)

    report = reconcile(engine, user, apply=True)

    assert sessions(engine, server_a) == {"loja-a": (user, "WORKING", "5511999990001", "Loja A", True)}
    assert set(sessions(engine, server_b)) == {"loja-b", "caixa-b"}
    assert (counter(engine, server_a), counter(engine, server_b)) == (1, 2)
    assert found(report) == [
        ("unknown_session", "loja-a"),
        ("other_worker", "caixa-b"),
        ("other_worker", "loja-b"),
        ("counter", None),
        ("unknown_session", "caixa-b"),
        ("unknown_session", "loja-b"),
        ("other_worker", "loja-a"),
        ("counter", None),
    ]
    assert [item.worker_id for item in report.servers] == ["worker-a", "worker-b"]
    text = render_live_report(report)
    assert "  WAHA has 1 session(s) (and 2 of other workers), 1 occupying; sessions_ativas 0, max_sessions 50; " in text
    assert (
        "  other_worker    2 session(s) of worker(s) worker-b: left out, never inserted, counted or stopped here "
        "(--json lists them)"
    ) in text
    again = reconcile(engine, user)
    assert found(again) == [("other_worker", "caixa-b"), ("other_worker", "loja-b"), ("other_worker", "loja-a")]
    assert [item.in_line for item in again.servers] == [True, True], "other workers' sessions are as they should be"
    assert render_live_report(again).endswith("2 server(s): 2 in line with WAHA, 0 with 0 difference(s), 0 unreachable")


def test_a_row_for_a_session_another_worker_runs_is_neither_stopped_nor_written(engine, user, fake_waha):
    (waha_a,), run = share_a_store(fake_waha, "worker-a")
    run("moved", "WORKING", "worker-b")
    server_a = add_waha_server(engine, user, waha_a.url, "A", sessions_ativas=1, timeout=2)
    add_row(engine, user, server_a, "moved", "STARTING")
    before = updated_at(engine, server_a)

    report = reconcile(engine, user, apply=True)

    assert found(report) == [("other_worker", "moved")]
    assert sessions(engine, server_a)["moved"][1] == "STARTING" and counter(engine, server_a) == 1
    assert updated_at(engine, server_a) == before


def test_a_server_whose_worker_does_not_answer_is_skipped_when_its_sessions_name_workers(engine, user, fake_waha):
    waha = fake_waha(worker="worker-a", endpoint_modes={"/api/server/status": "error_500"})
    waha.run_session("loja", "WORKING")
    server = add_waha_server(engine, user, waha.url, "A", timeout=2)

    [item] = reconcile(engine, user, apply=True).servers

    assert (item.skipped, item.comparison, item.error) == (WORKER_UNKNOWN, None, None)
    assert sessions(engine, server) == {} and counter(engine, server) == 0


def test_a_list_that_names_no_worker_costs_no_second_request(engine, user, fake_waha):
    waha = fake_waha()
    waha.run_session("loja", "WORKING")
    add_waha_server(engine, user, waha.url, "A", timeout=2)

    reconcile(engine, user)

    assert [path for path, _ in waha.requests] == ["/api/sessions?all=true"]


def test_two_servers_of_a_user_reporting_one_worker_are_skipped(engine, user, fake_waha):
    (first, second), run = share_a_store(fake_waha, "worker-a", "worker-a")
    run("loja", "WORKING", "worker-a")
    server_1 = add_waha_server(engine, user, first.url, "Um", timeout=2)
    server_2 = add_waha_server(engine, user, second.url, "Dois", timeout=2)

    report = reconcile(engine, user, apply=True)

    skipped = {item.server.nome: item.skipped for item in report.servers}
    assert skipped["Um"].startswith(f"reports WAHA worker 'worker-a', as Dois ({server_2}) does: one WAHA registered")
    assert skipped["Dois"].startswith(f"reports WAHA worker 'worker-a', as Um ({server_1}) does")
    assert sessions(engine, server_1) == sessions(engine, server_2) == {}


# --- silent sessions -------------------------------------------------------------------------------


def test_a_working_session_silent_for_longer_than_the_threshold_is_reported_and_left_alone(engine, user, fake_waha):
    waha = fake_waha()
    now_ms = time.time() * 1000
    waha.run_session("quieta", "WORKING", activity_ms=now_ms - 95 * MINUTE_MS)
    waha.run_session("ativa", "WORKING", activity_ms=now_ms - 5 * MINUTE_MS)
    server = add_waha_server(engine, user, waha.url, "A", sessions_ativas=2, timeout=2)
    add_row(engine, user, server, "quieta", "WORKING")
    add_row(engine, user, server, "ativa", "WORKING")
    before = updated_at(engine, server)

    report = reconcile(engine, user, apply=True)

    assert found(report) == [("silent", "quieta")]
    [difference] = report.servers[0].comparison.differences
    assert difference.detail.startswith("WAHA: WORKING, but its last activity was 95 min before WAHA was read (")
    assert difference.detail.endswith("UTC; the threshold is 30 min)") and not difference.fixable
    assert updated_at(engine, server) == before and report.summary()["fixable"] == 0
    assert found(reconcile(engine, user, silent_after=dt.timedelta(minutes=120))) == []


def test_without_an_activity_from_waha_nothing_is_inferred(engine, user, fake_waha):
    waha = fake_waha(version="2025.11.3")  # WAHA 2025 sends no timestamps
    waha.run_session("quieta", "WORKING")
    server = add_waha_server(engine, user, waha.url, "A", sessions_ativas=1, timeout=2)
    add_row(engine, user, server, "quieta", "WORKING")

    assert found(reconcile(engine, user, silent_after=dt.timedelta(minutes=0.001))) == []


# --- the counter counts what occupies a slot on WAHA -----------------------------------------------------


def test_a_session_whose_name_breaks_the_rule_is_left_alone_and_counted(engine, user, fake_waha):
    waha = fake_waha()
    waha.run_session("loja.antiga", "WORKING")
    waha.run_session("loja-1", "WORKING")
    waha.run_session("loja velha", "STOPPED")
    server = add_waha_server(engine, user, waha.url, "A", max_sessions=2, timeout=2)

    reconcile(engine, user, apply=True)

    assert set(sessions(engine, server)) == {"loja-1"}
    assert counter(engine, server) == 2, "WAHA runs two sessions there: the server is full"
    assert found(reconcile(engine, user)) == [("unknown_session", "loja velha"), ("unknown_session", "loja.antiga")]
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT public.get_available_waha_server(:user)"), {"user": user}).all() == []


def test_an_lid_session_is_inserted_without_a_phone_number_and_the_report_says_so(engine, user, fake_waha):
    waha = fake_waha()
    waha.run_session("lid-01", "WORKING", phone="1234567", push_name="Loja")["me"]["id"] = "1234567@lid"
    server = add_waha_server(engine, user, waha.url, "A", timeout=2)

    report = reconcile(engine, user, apply=True)

    [insert] = [d for d in report.servers[0].comparison.differences if d.kind == "unknown_session"]
    assert insert.action.endswith("with WAHA's status and profile name")
    assert sessions(engine, server) == {"lid-01": (user, "WORKING", None, "Loja", True)}


def test_a_status_that_differs_only_in_case_is_not_rewritten(engine, user, fake_waha):
    waha = fake_waha()
    waha.run_session("loja", "WORKING")
    server = add_waha_server(engine, user, waha.url, "A", sessions_ativas=1, timeout=2)
    add_row(engine, user, server, "loja", "working")
    before = updated_at(engine, server)

    report = reconcile(engine, user, apply=True)

    assert found(report) == [] and updated_at(engine, server) == before
    assert sessions(engine, server)["loja"][1] == "working"
