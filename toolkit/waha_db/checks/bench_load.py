"""What the benchmark (waha_db.checks.bench) loads: the measured users and their table, the allocation fleets."""

from __future__ import annotations

from typing import Any

import psycopg

from waha_db.checks.bench_database import BenchError, check_table_sizes

ALLOCATION_SERVERS_PER_USER = 5


def measured_user(servers: int) -> str:
    """The id of the measured user who has `servers` servers."""
    return f"00000000-0000-4000-8000-{servers:012d}"


def allocation_user(fleet_users: int, index: int) -> str:
    """The id of user `index` of the allocation fleet of `fleet_users` users."""
    return f"00000000-0000-4000-a000-{fleet_users:06d}{index:06d}"


def load_table(connection: psycopg.Connection, table_servers: int, user_servers: tuple[int, ...]) -> None:
    """A waha_servers table of `table_servers` rows: the measured users, then users with 5 servers each.

    Priorities, capacities and loads vary, some servers are inactive or full, and
    one server in 50 is cooling down after a failure, so the selection does real
    work. Everything the benchmark wrote before is removed first.
    """
    check_table_sizes((table_servers,), user_servers)
    filler_users = (table_servers - sum(user_servers)) // 5
    connection.execute(
        "TRUNCATE public.waha_session_last_event, public.waha_sessions, public.waha_server_health, public.waha_servers"
    )
    connection.execute(
        """
        INSERT INTO public.waha_servers (user_id, nome, api_url, ativo, prioridade, max_sessions, sessions_ativas)
        SELECT ('00000000-0000-4000-8000-' || lpad(servers::text, 12, '0'))::uuid, 'measured ' || s,
               'https://m' || servers || '-' || s || '.waha.example', s %% 13 <> 0, s %% 11, 20 + s %% 80, (s * 7) %% 20
        FROM unnest(%(user_servers)s::integer[]) AS servers, generate_series(1, servers) AS s
        """,
        {"user_servers": list(user_servers)},
    )
    connection.execute(
        """
        INSERT INTO public.waha_servers (user_id, nome, api_url, ativo, prioridade, max_sessions, sessions_ativas)
        SELECT md5('user' || u)::uuid, 'server ' || s, 'https://u' || u || '-s' || s || '.waha.example',
               (u + s) %% 7 <> 0, (u * s) %% 11, capacity, LEAST(capacity, capacity * ((u * 31 + s * 17) %% 110) / 100)
        FROM generate_series(1, %(users)s) AS u, generate_series(1, 5) AS s, LATERAL (SELECT 10 + (u + s) %% 41) AS c (capacity)
        """,
        {"users": filler_users},
    )
    connection.execute(
        """
        INSERT INTO public.waha_server_health (server_id, user_id, last_failure_at, consecutive_failures, last_error, cooldown_until)
        SELECT id, user_id, now(), 1, 'connection refused', now() + interval '1 hour'
        FROM public.waha_servers WHERE hashtext(api_url) % 50 = 0
        """
    )
    connection.execute("ANALYZE public.waha_servers")
    connection.execute("ANALYZE public.waha_server_health")


def add_allocation_fleet(connection: psycopg.Connection, users: int, slots: int) -> list[str]:
    """`users` users with 5 empty servers each, `slots` slots in all (at least one a server); the users' ids."""
    fleet = [allocation_user(users, index) for index in range(1, users + 1)]
    per_server = max(1, slots // (users * ALLOCATION_SERVERS_PER_USER))
    connection.execute(
        """
        INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, max_sessions)
        SELECT user_id::uuid, 'alloc ' || s, 'https://alloc-' || user_id || '-' || s || '.waha.example', s %% 2, %s
        FROM unnest(%s::text[]) AS user_id, generate_series(1, %s) AS s
        """,
        (per_server, fleet, ALLOCATION_SERVERS_PER_USER),
    )
    return fleet


def reset_allocation(connection: psycopg.Connection, users: list[str]) -> None:
    connection.execute("DELETE FROM public.waha_sessions WHERE user_id = ANY (%s::uuid[])", (users,))
    connection.execute("UPDATE public.waha_servers SET sessions_ativas = 0 WHERE user_id = ANY (%s::uuid[])", (users,))


def one_row(connection: psycopg.Connection, query: str, parameters: Any = None) -> tuple[Any, ...]:
    """The row of a query that returns exactly one (an aggregate, SHOW)."""
    row = connection.execute(query, parameters).fetchone()
    if row is None:
        raise BenchError(f"the benchmark's query returned no row: {query.strip()}")
    return row
