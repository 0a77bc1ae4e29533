"""Many connections at once: workers released together behind a barrier, and what the servers' counters say after.

The races of allocation, release and webhook events are run for real: K threads, one
psycopg connection each (autocommit, as the app's API connections are), started at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa

from tests.support.waha_calls import OCCUPYING
from waha_db.database import conninfo

Result = TypeVar("Result")


def connect(url: sa.URL, acting_user: Any = None) -> psycopg.Connection:
    """An autocommit connection; a statement stuck for a minute fails instead of hanging the suite.

    With `acting_user`, it acts as that signed-in user (role authenticated, JWT sub), as Supabase's API does.
    """
    connection = psycopg.connect(conninfo(url), autocommit=True, options="-c statement_timeout=60s")
    if acting_user is not None:
        connection.execute("SET ROLE authenticated")
        connection.execute(
            "SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": str(acting_user)}),)
        )
    return connection


def together(workers: int, work: Callable[[int, Barrier], Result]) -> list[Result]:
    """Run work(index, barrier) in `workers` threads released at once; re-raise their errors.

    A worker that fails before the barrier breaks it, so the others stop waiting
    for it (BrokenBarrierError) instead of hanging; the barrier's timeout covers
    any other way of never arriving.
    """
    barrier = Barrier(workers, timeout=60)

    def guarded(index: int) -> Result:
        try:
            return work(index, barrier)
        except BaseException:
            barrier.abort()
            raise

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(guarded, index) for index in range(workers)]
        return [future.result() for future in futures]


def slow_down_sessions(connection: psycopg.Connection, command: str, seconds: float) -> None:
    """Widen a race window: every `command` (INSERT or UPDATE) of a session takes `seconds` longer.

    Between choosing a server and committing, a concurrent call now almost surely waits
    on the same row: the case where a `SELECT ... FOR UPDATE` flow gives up while other
    servers still have room, or where a session's row stays locked while its server's is wanted.
    """
    name = f"public.test_slow_{command.lower()}"
    connection.execute(
        f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_catalog.pg_sleep({seconds}); RETURN NEW; END $$;
        CREATE TRIGGER test_slow_{command.lower()} BEFORE {command} ON public.waha_sessions
            FOR EACH ROW EXECUTE FUNCTION {name}();
        """
    )


def accounting(connection: psycopg.Connection) -> dict[str, tuple]:
    """Per server, by name: (max_sessions, sessions_ativas, occupying sessions)."""
    return {
        row[0]: row[1:]
        for row in connection.execute(
            f"""
            SELECT server.nome, server.max_sessions, server.sessions_ativas,
                   (SELECT count(*) FROM public.waha_sessions AS session_row
                    WHERE session_row.waha_server_id = server.id AND {OCCUPYING})
            FROM public.waha_servers AS server
            """
        )
    }
