"""Reconciliation of sessions_ativas with the sessions that occupy each server."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from tests.support.factories import add_server, add_session, add_user
from waha_db.database import create_engine
from waha_db.fleet.allocation import (
    CounterDrift,
    ReconcileError,
    find_counter_drift,
    reconcile,
    render_report,
    to_correct,
)


@pytest.fixture
def connection(v21_module_url):
    """A SQLAlchemy connection in a transaction rolled back after the test, on each kind of V2.1 database."""
    engine = create_engine(v21_module_url)
    try:
        with engine.connect() as connection:
            yield connection
            connection.rollback()
    finally:
        engine.dispose()


def add_counted_server(connection, user_id, name, counter, statuses=()):
    """A server whose counter says `counter`, with one session per status."""
    server_id = add_server(connection, user_id, name, sessions_ativas=counter)
    for number, status in enumerate(statuses):
        add_session(connection, user_id, server_id, f"{name}-{number}", status=status)
    return server_id


def counters(connection, user_id) -> dict[str, int]:
    return dict(
        connection.execute(
            sa.text("SELECT nome, sessions_ativas FROM public.waha_servers WHERE user_id = :user"), {"user": user_id}
        ).all()
    )


def test_agreeing_counters_report_nothing(connection):
    user = add_user(connection)
    # FAILED and disconnected (any case) occupy no slot; WORKING and connecting do.
    add_counted_server(connection, user, "alpha", 2, ["WORKING", "connecting", "FAILED", "disconnected", "Stopped"])

    report = reconcile(connection)

    assert report.drifts == []
    assert render_report(report) == "Every server's sessions_ativas equals its occupying sessions."


def test_every_difference_is_reported_and_report_only_changes_nothing(connection):
    user = add_user(connection)
    below = add_counted_server(connection, user, "below", 1, ["WORKING", "WORKING", "SCAN_QR_CODE"])
    above = add_counted_server(connection, user, "above", 5, ["WORKING"])
    add_counted_server(connection, user, "agrees", 1, ["WORKING"])

    report = reconcile(connection)

    assert [(d.server_id, d.server_name, d.user_id, d.counter, d.occupying) for d in report.drifts] == [
        (above, "above", user, 5, 1),
        (below, "below", user, 1, 3),
    ]
    assert counters(connection, user) == {"below": 1, "above": 5, "agrees": 1}
    text = render_report(report)
    assert str(above) in text and str(below) in text and "agrees" not in text


def test_apply_corrects_counters_below_their_sessions_and_keeps_hand_counted_ones(connection):
    user = add_user(connection)
    add_counted_server(connection, user, "below", 1, ["WORKING", "WORKING", "SCAN_QR_CODE"])
    above = add_counted_server(connection, user, "above", 5, ["WORKING"])

    report = reconcile(connection, apply=True)

    assert counters(connection, user) == {"below": 3, "above": 5}
    assert [(c.server_name, c.before, c.after) for c in report.corrections] == [("below", 1, 3)]
    assert [drift.server_id for drift in report.left_alone] == [above]
    assert "--apply --server" in render_report(report)


def test_apply_corrects_a_named_server_above_its_sessions(connection):
    user = add_user(connection)
    above = add_counted_server(connection, user, "above", 5, ["WORKING"])
    add_counted_server(connection, user, "also-above", 4)

    report = reconcile(connection, apply=True, servers=[above])

    assert counters(connection, user) == {"above": 1, "also-above": 4}
    assert [(c.server_id, c.before, c.after) for c in report.corrections] == [(above, 5, 1)]


def test_naming_an_unknown_server_is_refused_before_any_change(connection):
    user = add_user(connection)
    add_counted_server(connection, user, "below", 0, ["WORKING"])
    missing = uuid.uuid4()

    with pytest.raises(ReconcileError, match=str(missing)):
        reconcile(connection, apply=True, servers=[missing])

    assert counters(connection, user) == {"below": 0}


def test_rule_corrects_below_and_named_only():
    user = uuid.uuid4()
    below = CounterDrift(uuid.uuid4(), "below", user, counter=1, occupying=2, max_sessions=10)
    above = CounterDrift(uuid.uuid4(), "above", user, counter=3, occupying=2, max_sessions=10)
    named_above = CounterDrift(uuid.uuid4(), "named", user, counter=9, occupying=0, max_sessions=10)

    assert to_correct([below, above, named_above], named=[named_above.server_id]) == [below, named_above]


def test_correction_during_concurrent_allocations_counts_every_session(fresh_database):
    """Allocations and releases keep running while reconcile --apply corrects a broken counter."""
    url = fresh_database("head")
    engine = create_engine(url)
    try:
        with engine.begin() as setup:
            user = add_user(setup)
            server = add_counted_server(setup, user, "busy", 0, ["WORKING"] * 5)  # counter misses 5 sessions
            setup.execute(sa.text("UPDATE public.waha_servers SET max_sessions = 500 WHERE id = :id"), {"id": server})

        def allocate(worker):
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as worker_connection:
                for number in range(60):
                    session = worker_connection.execute(
                        sa.text("SELECT id FROM public.allocate_waha_session(:user, :name)"),
                        {"user": user, "name": f"w{worker}-{number}"},
                    ).scalar_one()
                    if number % 3 == 0:
                        worker_connection.execute(sa.text("SELECT public.release_waha_session(:id)"), {"id": session})

        workers = [threading.Thread(target=allocate, args=(worker,), daemon=True) for worker in range(4)]
        for worker in workers:
            worker.start()
        corrections = 0
        while any(worker.is_alive() for worker in workers) or not corrections:
            with engine.begin() as reconciling:
                corrections += len(reconcile(reconciling, apply=True).corrections)
        for worker in workers:
            worker.join(timeout=60)
        assert not any(worker.is_alive() for worker in workers), "an allocating worker is stuck"

        with engine.connect() as check:
            assert find_counter_drift(check) == []
            assert (
                check.execute(
                    sa.text("SELECT sessions_ativas FROM public.waha_servers WHERE id = :id"), {"id": server}
                ).scalar_one()
                == 5 + 4 * 40
            )
    finally:
        engine.dispose()
