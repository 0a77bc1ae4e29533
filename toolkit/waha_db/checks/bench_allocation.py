"""Allocation measures of the benchmark (waha_db.checks.bench): clients racing to fill the servers.

allocate_waha_session against the seed's three-statement flow; afterwards the
sessions placed beyond max_sessions, and the counters that differ from the sessions
occupying their server.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import sqlalchemy as sa

from waha_db.checks.bench_figures import AllocationMeasure, LoadAverage
from waha_db.checks.bench_load import add_allocation_fleet, one_row, reset_allocation
from waha_db.database import conninfo

OCCUPYING = "pg_catalog.upper(session_row.status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED')"
# How one client allocates one session for a user: whether it got one (False: the user's servers are full).
Allocate = Callable[[psycopg.Connection, str, str], bool]


def fill(url: sa.URL, users: list[str], clients: int, allocate_one: Allocate) -> tuple[int, float]:
    """Clients allocate for random users that still have room, until every user is refused; (allocations, seconds)."""
    barrier = threading.Barrier(clients + 1)
    open_users = list(users)
    guard = threading.Lock()

    def client(index: int) -> int:
        made, draw = 0, random.Random(index)
        try:
            connection = psycopg.connect(conninfo(url), autocommit=True, prepare_threshold=0)
        except psycopg.Error:
            barrier.abort()  # the others, and the clock, stop waiting for a client that will never come
            raise
        with connection:
            barrier.wait()
            while True:
                with guard:
                    if not open_users:
                        return made
                    user = draw.choice(open_users)
                if allocate_one(connection, user, f"c{index}_{made}"):
                    made += 1
                else:
                    with guard:
                        if user in open_users:
                            open_users.remove(user)

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, index) for index in range(clients)]
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            errors = [future.exception() for future in futures]
            raise next(
                error for error in errors if error and not isinstance(error, threading.BrokenBarrierError)
            ) from None
        started = time.perf_counter()
        made = sum(future.result() for future in futures)
        return made, time.perf_counter() - started


def allocate_with_function(connection: psycopg.Connection, user: str, name: str) -> bool:
    try:
        connection.execute("SELECT id FROM public.allocate_waha_session(%s::uuid, %s)", (user, name))
        return True
    except psycopg.Error as error:
        if error.sqlstate == "WAH10":
            return False
        raise


def allocate_with_seed_flow(connection: psycopg.Connection, user: str, name: str) -> bool:
    """The seed's flow: pick, insert, increment, three autocommitted statements."""
    picked = connection.execute("SELECT id FROM public.get_available_waha_server(%s::uuid)", (user,)).fetchone()
    if picked is None:
        return False
    connection.execute(
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status) VALUES (%s, %s, %s, 'connecting')",
        (user, picked[0], name),
    )
    connection.execute(
        "UPDATE public.waha_servers SET sessions_ativas = sessions_ativas + 1 WHERE id = %s", (picked[0],)
    )
    return True


ALLOCATION_FLOWS: tuple[tuple[str, Allocate], ...] = (
    ("allocate_waha_session", allocate_with_function),
    ("seed 3-statement flow", allocate_with_seed_flow),
)

ALLOCATION_OUTCOME = f"""
SELECT COALESCE(sum(GREATEST(occupying - max_sessions, 0)), 0),
       COALESCE(sum(GREATEST(sessions_ativas - max_sessions, 0)), 0),
       count(*) FILTER (WHERE sessions_ativas <> occupying)
FROM (SELECT server.max_sessions, server.sessions_ativas,
             (SELECT count(*) FROM public.waha_sessions AS session_row
              WHERE session_row.waha_server_id = server.id AND {OCCUPYING}) AS occupying
      FROM public.waha_servers AS server WHERE server.user_id = ANY (%s::uuid[])) AS per_server
"""


def measure_allocation(
    url: sa.URL, *, clients: tuple[int, ...], users: tuple[int, ...], slots: int, rounds: int, load: LoadAverage
) -> list[AllocationMeasure]:
    """For each number of clients and of users: both flows fill `slots` slots (split over the users' servers), `rounds` times."""
    measures = []
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        for user_count in users:
            fleet = add_allocation_fleet(connection, user_count, slots)
            for client_count in clients:
                for flow, allocate_one in ALLOCATION_FLOWS:
                    made, seconds, over, above, off = 0, 0.0, 0, 0, 0
                    for _ in range(rounds):
                        reset_allocation(connection, fleet)
                        load.sample()
                        allocations, elapsed = fill(url, fleet, client_count, allocate_one)
                        outcome = one_row(connection, ALLOCATION_OUTCOME, (fleet,))
                        made, seconds = made + allocations, seconds + elapsed
                        over, above, off = over + outcome[0], above + outcome[1], off + outcome[2]
                    measures.append(
                        AllocationMeasure(
                            client_count, user_count, flow, made, seconds, int(over), int(above), int(off)
                        )
                    )
            reset_allocation(connection, fleet)
    return measures
