"""allocate_waha_session and release_waha_session under real concurrency.

K threads, one psycopg connection each, start together behind a barrier and call
the functions M times. The database is a fresh clone per test, because the work
must commit to be seen by the other connections.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest

from tests.support.concurrency import accounting, connect, slow_down_sessions, together
from tests.support.factories import add_server, add_user
from tests.support.waha_calls import OCCUPYING

WORKERS = 8


@dataclass
class Call:
    worker: int
    started: float
    ended: float
    server_id: uuid.UUID | None = None
    sqlstate: str | None = None


def allocate_concurrently(url, user_id, *, workers, calls_per_worker, acting_user=None):
    def work(index, barrier):
        calls = []
        with connect(url, acting_user) as connection:
            barrier.wait()
            for number in range(calls_per_worker):
                call = Call(index, time.monotonic(), 0.0)
                try:
                    call.server_id = connection.execute(
                        "SELECT waha_server_id FROM public.allocate_waha_session(%s, %s)",
                        (user_id, f"w{index}-{number}"),
                    ).fetchone()[0]
                except psycopg.Error as error:
                    call.sqlstate = error.sqlstate
                call.ended = time.monotonic()
                calls.append(call)
        return calls

    return [call for calls in together(workers, work) for call in calls]


@pytest.mark.parametrize("kind", ["head", "supabase_head"])
def test_contended_allocation_fills_capacity_exactly_and_never_beyond(fresh_database, kind):
    """8 workers x 40 calls = 320 against 31 free slots on three servers of different priorities.

    On Supabase the workers are the signed-in owner (row security applies); another
    user's free server and an inactive one must stay untouched.
    """
    url = fresh_database(kind)
    with connect(url) as admin:
        user, stranger = add_user(admin), add_user(admin)
        add_server(admin, user, "primary", prioridade=10, max_sessions=7)
        add_server(admin, user, "backup-a", prioridade=5, max_sessions=11)
        add_server(admin, user, "backup-b", prioridade=5, max_sessions=13)
        add_server(admin, user, "inactive", prioridade=10, max_sessions=50, ativo=False)
        add_server(admin, stranger, "strangers", prioridade=10, max_sessions=50)
        slow_down_sessions(admin, "INSERT", 0.002)

        calls = allocate_concurrently(
            url, user, workers=WORKERS, calls_per_worker=40, acting_user=user if kind == "supabase_head" else None
        )

        successes = [call for call in calls if call.sqlstate is None]
        failures = [call for call in calls if call.sqlstate is not None]
        assert len(successes) == 31
        assert {call.sqlstate for call in failures} == {"WAH10"}
        # No call failed while a slot was still free: without releases, capacity only
        # shrinks, so every failure ends after the last successful call started.
        assert min(call.ended for call in failures) >= max(call.started for call in successes)
        assert accounting(admin) == {
            "primary": (7, 7, 7),
            "backup-a": (11, 11, 11),
            "backup-b": (13, 13, 13),
            "inactive": (50, 0, 0),
            "strangers": (50, 0, 0),
        }


def test_allocation_within_capacity_always_succeeds(fresh_database):
    """8 workers x 10 calls = 80 against 90 free slots: every call gets one."""
    url = fresh_database("head")
    with connect(url) as admin:
        user = add_user(admin)
        add_server(admin, user, "primary", prioridade=10, max_sessions=30)
        add_server(admin, user, "backup", prioridade=0, max_sessions=60)

        calls = allocate_concurrently(url, user, workers=WORKERS, calls_per_worker=10)

        assert [call.sqlstate for call in calls if call.sqlstate] == []
        # Priority first: the primary is filled before the backup takes any.
        assert accounting(admin) == {"primary": (30, 30, 30), "backup": (60, 50, 50)}


def test_concurrent_releases_of_one_session_free_one_slot(fresh_database):
    url = fresh_database("head")
    with connect(url) as admin:
        user = add_user(admin)
        add_server(admin, user, "primary", prioridade=0, max_sessions=5)
        session_id = admin.execute("SELECT id FROM public.allocate_waha_session(%s, 'loja-01')", (user,)).fetchone()[0]
        admin.execute("SELECT public.allocate_waha_session(%s, 'loja-02')", (user,))

        def work(index, barrier):
            with connect(url) as connection:
                barrier.wait()
                return connection.execute("SELECT public.release_waha_session(%s)", (session_id,)).fetchone()[0]

        freed = together(WORKERS, work)

        assert sorted(freed) == [False] * (WORKERS - 1) + [True]
        assert accounting(admin) == {"primary": (5, 1, 1)}


def test_churn_of_allocations_and_releases_keeps_counters_equal_to_sessions(fresh_database):
    """Each worker allocates and releases its own sessions at random, 30 steps, on 12 slots."""
    url = fresh_database("head")
    with connect(url) as admin:
        user = add_user(admin)
        add_server(admin, user, "primary", prioridade=10, max_sessions=4)
        add_server(admin, user, "backup", prioridade=0, max_sessions=8)

        def work(index, barrier):
            chance = random.Random(index)
            held, outcomes = [], []
            with connect(url) as connection:
                barrier.wait()
                for number in range(30):
                    if held and chance.random() < 0.45:
                        session_id = held.pop(chance.randrange(len(held)))
                        assert connection.execute("SELECT public.release_waha_session(%s)", (session_id,)).fetchone()[0]
                        outcomes.append("released")
                        continue
                    try:
                        held.append(
                            connection.execute(
                                "SELECT id FROM public.allocate_waha_session(%s, %s)", (user, f"w{index}-{number}")
                            ).fetchone()[0]
                        )
                        outcomes.append("allocated")
                    except psycopg.Error as error:
                        outcomes.append(error.sqlstate)
            return len(held), outcomes

        results = together(WORKERS, work)

        outcomes = {outcome for _, worker_outcomes in results for outcome in worker_outcomes}
        assert outcomes <= {"allocated", "released", "WAH10"}
        still_held = sum(held for held, _ in results)
        state = accounting(admin)
        for name, (max_sessions, counter, occupying) in state.items():
            assert counter == occupying <= max_sessions, (
                f"{name}: counter {counter}, occupying {occupying}, max {max_sessions}"
            )
        assert sum(counter for _, counter, _ in state.values()) == still_held


@pytest.mark.parametrize("released_before", [False, True], ids=["new-name", "released-name"])
def test_one_name_allocated_at_once_by_every_worker_is_one_session_on_one_slot(fresh_database, released_before):
    """8 workers x 5 calls for the same name, on two servers with room: every call returns the same session.

    Exact: one occupying session of that name, one slot taken in all, whichever
    server the first call got; the other calls gave back the slot they had taken.
    """
    url = fresh_database("head")
    with connect(url) as admin:
        user = add_user(admin)
        add_server(admin, user, "alpha", prioridade=10, max_sessions=3)
        add_server(admin, user, "beta", prioridade=10, max_sessions=3)
        slow_down_sessions(admin, "INSERT", 0.002)
        if released_before:
            (released,) = admin.execute("SELECT id FROM public.allocate_waha_session(%s, 'c1_1')", (user,)).fetchone()
            admin.execute("SELECT public.release_waha_session(%s)", (released,))

        def work(index, barrier):
            with connect(url) as connection:
                barrier.wait()
                return [
                    connection.execute("SELECT id FROM public.allocate_waha_session(%s, 'c1_1')", (user,)).fetchone()[0]
                    for _ in range(5)
                ]

        returned = {session for calls in together(WORKERS, work) for session in calls}
        occupying = admin.execute(
            f"SELECT id FROM public.waha_sessions AS session_row WHERE session_name = 'c1_1' AND {OCCUPYING}"
        ).fetchall()
        assert returned == {occupying[0][0]} and len(occupying) == 1
        if released_before:
            assert returned == {released}
        counters = accounting(admin)
        assert sorted(counter for _max, counter, _occupying in counters.values()) == [0, 1]
        assert all(counter == occupying for _max, counter, occupying in counters.values())
