"""record_waha_session_event at the same time as allocate_waha_session and release_waha_session.

Threads with a psycopg connection each, released together behind a barrier, on a
fresh clone per test (the work must commit to be seen). The counters must end equal
to the occupying sessions of each server, and no allocation or release may fail
for any reason but a full fleet (WAH10): never a deadlock because of an event.

(An allocation and a release of one name at once, on one server, can deadlock each
other without any event: release_waha_session locks the session's row, then the
server's; allocate_waha_session locks the server's, then waits on that row through
the name's unique index. So the allocating workers here each use names of their own.)
"""

from __future__ import annotations

import itertools
import random
import threading
import time

import psycopg
import pytest

from tests.fleet.waha_shapes import session_status_event_2026
from tests.support.concurrency import accounting, connect, slow_down_sessions, together
from tests.support.factories import add_server, add_user
from tests.support.waha_calls import record_event

STATUSES = ["STARTING", "WORKING", "PASSKEY_REQUIRED", "STOPPED", "FAILED", "SCAN_QR_CODE"]


def test_one_event_delivered_many_times_at_once_is_applied_once(fresh_database):
    url = fresh_database("head")
    with connect(url) as admin:
        user = add_user(admin)
        server = add_server(admin, user, "loja", max_sessions=5)
        (session_id,) = admin.execute("SELECT id FROM public.allocate_waha_session(%s, 'cli-1')", (user,)).fetchone()
        admin.execute("SELECT public.release_waha_session(%s)", (session_id,))
        body = session_status_event_2026("cli-1", "WORKING", event_id="evt_01kc5qz3w8h2m4n6p8r0t2v4x6")

        def work(index, barrier):
            with connect(url) as connection:
                barrier.wait()
                return [record_event(connection, server, body)[0] for _ in range(3)]

        outcomes = [outcome for calls in together(8, work) for outcome in calls]

        assert sorted(outcomes) == ["applied"] + ["duplicate"] * 23
        assert accounting(admin) == {"loja": (5, 1, 1)}


def test_an_event_never_deadlocks_with_an_allocation_holding_the_server(fresh_database):
    """allocate_waha_session's order, played by hand: the server's row, then the stopped row it reuses.

    The event locks that row first and then wants the server's: the two wait on each
    other. The event lets go within a short lock_timeout and tries again, so the
    allocation goes through, and the event then applies to the session it started.
    """
    url = fresh_database("head")
    with connect(url) as admin, connect(url) as allocation:
        user = add_user(admin)
        server = add_server(admin, user, "loja", max_sessions=5)
        (session_id,) = admin.execute("SELECT id FROM public.allocate_waha_session(%s, 'cli-1')", (user,)).fetchone()
        admin.execute("SELECT public.release_waha_session(%s)", (session_id,))

        allocation.execute("BEGIN")
        allocation.execute(
            "UPDATE public.waha_servers SET sessions_ativas = sessions_ativas + 1 WHERE id = %s", (server,)
        )
        result = {}

        def deliver():
            with connect(url) as connection:
                result["outcome"] = record_event(connection, server, session_status_event_2026("cli-1", "WORKING"))[0]

        thread = threading.Thread(target=deliver)
        thread.start()
        time.sleep(0.3)  # the event is in its retries now: it keeps taking the session's row
        allocation.execute(
            "UPDATE public.waha_sessions SET status = 'STARTING' WHERE id = %s AND status = 'STOPPED'", (session_id,)
        )
        allocation.execute("COMMIT")
        thread.join(timeout=30)

        assert result == {"outcome": "applied"}
        assert admin.execute("SELECT status FROM public.waha_sessions WHERE id = %s", (session_id,)).fetchone() == (
            "WORKING",
        )
        assert accounting(admin) == {"loja": (5, 1, 1)}


def test_a_server_held_for_long_makes_the_event_fail_with_55p03_having_changed_nothing(fresh_database):
    """Another transaction keeps the server's row (as an allocation does until it commits) for seconds:
    the event gives up (WAHA delivers it again) rather than queue while it holds the session's row."""
    url = fresh_database("head")
    with connect(url) as admin, connect(url) as holder:
        user = add_user(admin)
        server = add_server(admin, user, "loja", max_sessions=5)
        (session_id,) = admin.execute("SELECT id FROM public.allocate_waha_session(%s, 'cli-1')", (user,)).fetchone()
        admin.execute("SELECT public.release_waha_session(%s)", (session_id,))
        holder.execute("BEGIN")
        holder.execute("SELECT 1 FROM public.waha_servers WHERE id = %s FOR NO KEY UPDATE", (server,))

        started = time.monotonic()
        with pytest.raises(psycopg.Error) as caught:
            record_event(admin, server, session_status_event_2026("cli-1", "WORKING"))[0]
        waited = time.monotonic() - started
        holder.execute("ROLLBACK")

        assert caught.value.sqlstate == "55P03" and "deliver" in caught.value.diag.message_hint
        assert 1 < waited < 20
        assert admin.execute("SELECT status FROM public.waha_sessions WHERE id = %s", (session_id,)).fetchone() == (
            "STOPPED",
        )
        assert accounting(admin) == {"loja": (5, 0, 0)}


@pytest.mark.parametrize("kind", ["head", "supabase_head"])
def test_events_allocations_and_releases_at_once_keep_every_counter_exact(fresh_database, kind):
    """4 workers allocate and release their own names, 4 deliver events for all of those names, 40 steps each,
    on 2 servers of 3 slots.

    Each allocating worker has names of its own (allocations and releases of one name at
    once are another matter: see the module's note). Events carry increasing timestamps;
    some are delivered twice, and some to the other server (a name the user occupies
    there is WAH21, nothing changed). On Supabase every worker is the signed-in owner.
    """
    url = fresh_database(kind)
    with connect(url) as admin:
        user = add_user(admin)
        servers = [add_server(admin, user, "primary", prioridade=10, max_sessions=3)]
        servers.append(add_server(admin, user, "backup", prioridade=0, max_sessions=3))
        slow_down_sessions(admin, "INSERT", 0.002)
        slow_down_sessions(admin, "UPDATE", 0.005)
        acting = user if kind == "supabase_head" else None
        names = {worker: [f"w{worker}-{number}" for number in range(3)] for worker in range(4)}
        clock = itertools.count(1_765_000_000_000, 7)
        clock_lock = threading.Lock()

        def tick() -> int:
            with clock_lock:
                return next(clock)

        def allocator(index, barrier):
            chance = random.Random(index)
            outcomes = []
            with connect(url, acting) as connection:
                barrier.wait()
                for _ in range(40):
                    name = chance.choice(names[index])
                    try:
                        if chance.random() < 0.5:
                            connection.execute("SELECT public.allocate_waha_session(%s, %s)", (user, name))
                            outcomes.append("allocated")
                        else:
                            for (session_id,) in connection.execute(
                                "SELECT id FROM public.waha_sessions WHERE session_name = %s", (name,)
                            ).fetchall():
                                connection.execute("SELECT public.release_waha_session(%s)", (session_id,))
                            outcomes.append("released")
                    except psycopg.Error as error:
                        outcomes.append(error.sqlstate)
            return outcomes

        def deliverer(index, barrier):
            chance = random.Random(100 + index)
            every_name = [name for owned in names.values() for name in owned]
            outcomes = []
            with connect(url, acting) as connection:
                barrier.wait()
                for number in range(40):
                    body = session_status_event_2026(
                        chance.choice(every_name),
                        chance.choice(STATUSES),
                        event_id=f"evt_{index}_{number:03d}",
                        timestamp=tick(),
                    )
                    server = servers[0] if chance.random() < 0.7 else servers[1]
                    for _ in range(2 if chance.random() < 0.2 else 1):
                        try:
                            outcomes.append(record_event(connection, server, body)[0])
                        except psycopg.Error as error:
                            outcomes.append(error.sqlstate)
            return outcomes

        results = together(8, lambda index, barrier: (allocator if index < 4 else deliverer)(index, barrier))

        allocations = {outcome for outcomes in results[:4] for outcome in outcomes}
        events = {outcome for outcomes in results[4:] for outcome in outcomes}
        assert allocations <= {"allocated", "released", "WAH10"}, allocations
        assert events <= {"applied", "inserted", "duplicate", "late", "WAH21"}, events
        assert {"applied", "inserted"} <= events
        for name, (_max_sessions, counter, occupying) in accounting(admin).items():
            assert counter == occupying, f"{name}: sessions_ativas {counter}, occupying sessions {occupying}"
