"""The benchmark behind `waha-db bench`: selection by the user's fleet size, and race-free allocation.

Selection, on tables of 10,000 and 1,000,000 servers (by default): most users have
5 servers; the measured users have 5, 100 and 1,000. For each measured user,
get_available_waha_server is compared with its own query run by hand (read from
pg_proc, so it follows every revision of the function), like with like: the user
and the excluded list are parameters on both sides, so both go through the same
plan caching (custom plans, then the generic plan PostgreSQL keeps).
- calls/s: pgbench, C clients, prepared statements; the queries run in windows,
  rounds alternating between them so that load from elsewhere on the machine hits
  them alike; the figure is the median over the windows, and a ratio (function
  against query, one user against another) is the median of the ratios of the
  windows of one round, measured seconds apart. `SELECT 1` is the ceiling of one
  round trip.
- latency, server side: clock_timestamp() around each call in a plpgsql loop,
  function and query alternating, which leaves out the network and the client.
  (pgbench's per-transaction log is not used: it reuses one clock reading across
  transactions and logs 0 µs for many short ones.)
- rows read: the rows of waha_servers one call reads under the generic plan,
  counted by PostgreSQL (pg_stat_xact_user_tables), against the user's active
  servers at its best level and above, plus the chosen row read again by id.
- the plan of the function's query for the largest measured user under the
  generic plan (auto_explain, which needs a superuser, as on the throwaway
  server; elsewhere the same query prepared and explained).
The load average is sampled before every measured window and printed.

Allocation: 8 and 32 psycopg clients (threads, one connection each) fill, until
refused, one user's 5 servers and then the 5 servers of each of 100 users (each
client picks a random user that still has room), through allocate_waha_session
and through the seed's three-statement flow (pick with get_available_waha_server,
insert the session, sessions_ativas + 1). Over-allocated slots are sessions placed
beyond a server's max_sessions; afterwards each counter is compared with the
sessions that occupy its server.

It runs on a throwaway PostgreSQL unless given a URL. A database it is given must
be empty, and is emptied again afterwards; the options are checked before anything
is started or written (waha_db.checks.bench_database).
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import psycopg
import sqlalchemy as sa

from waha_db.checks.bench_allocation import (
    ALLOCATION_FLOWS,
    OCCUPYING,
    allocate_with_function,
    allocate_with_seed_flow,
    fill,
    measure_allocation,
)
from waha_db.checks.bench_database import (
    BenchError,
    check_options,
    migrated_then_emptied,
    pgbench,
    refuse_unless_empty,
)
from waha_db.checks.bench_figures import (
    AllocationMeasure,
    BenchResult,
    Goal,
    Latency,
    LoadAverage,
    TableSelection,
    UserSelection,
    paired_ratio,
)
from waha_db.checks.bench_load import (
    ALLOCATION_SERVERS_PER_USER,
    add_allocation_fleet,
    allocation_user,
    load_table,
    measured_user,
    one_row,
    reset_allocation,
)
from waha_db.checks.bench_report import evaluate, render
from waha_db.checks.bench_selection import (
    FUNCTION_CALL,
    function_query,
    measure_server_side,
    measure_throughput,
    pgbench_run,
    rows_read,
    selection_plan,
)
from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import conninfo, create_engine, display_url, parse_url
from waha_db.lifecycle import migrate

# The benchmark's parts, for those who drive them one by one (its tests, tools/selection_designs.py).
__all__ = [
    "ALLOCATION_CLIENTS",
    "ALLOCATION_FLOWS",
    "ALLOCATION_SERVERS_PER_USER",
    "ALLOCATION_USERS",
    "FUNCTION_CALL",
    "OCCUPYING",
    "TABLE_SERVERS",
    "USER_SERVERS",
    "AllocationMeasure",
    "BenchError",
    "BenchOptions",
    "BenchResult",
    "Goal",
    "Latency",
    "LoadAverage",
    "TableSelection",
    "UserSelection",
    "add_allocation_fleet",
    "allocate_with_function",
    "allocate_with_seed_flow",
    "allocation_user",
    "evaluate",
    "fill",
    "function_query",
    "load_table",
    "machine",
    "measure_allocation",
    "measure_server_side",
    "measure_throughput",
    "measured_user",
    "paired_ratio",
    "pgbench_run",
    "render",
    "reset_allocation",
    "rows_read",
    "run_benchmark",
    "selection_plan",
]

TABLE_SERVERS = (10_000, 1_000_000)
USER_SERVERS = (5, 100, 1_000)
ALLOCATION_CLIENTS = (8, 32)
ALLOCATION_USERS = (1, 100)


class BenchOptions(TypedDict):
    """The sizes a run measures at; its result's `sizes`."""

    table_servers: tuple[int, ...]
    user_servers: tuple[int, ...]
    seconds: float
    windows: int
    selection_clients: int
    server_side_calls: int
    allocation_clients: tuple[int, ...]
    allocation_users: tuple[int, ...]
    allocation_slots: int
    allocation_rounds: int


def machine() -> dict[str, object]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


def run_benchmark(
    database_url: str | sa.URL | None = None,
    *,
    table_servers: tuple[int, ...] = TABLE_SERVERS,
    user_servers: tuple[int, ...] = USER_SERVERS,
    seconds: float = 10.0,
    windows: int = 10,
    selection_clients: int | None = None,
    server_side_calls: int = 2_000,
    allocation_clients: tuple[int, ...] = ALLOCATION_CLIENTS,
    allocation_users: tuple[int, ...] = ALLOCATION_USERS,
    allocation_slots: int = 1_000,
    allocation_rounds: int = 3,
    progress: Callable[[str], None] = lambda message: None,
) -> BenchResult:
    """Run every measure on a throwaway PostgreSQL, or on the empty database at `database_url` (emptied afterwards)."""
    options = BenchOptions(
        table_servers=tuple(sorted(set(table_servers))),
        user_servers=tuple(sorted(set(user_servers))),
        seconds=seconds,
        windows=windows,
        selection_clients=selection_clients or max(2, (os.cpu_count() or 1) * 2),
        server_side_calls=server_side_calls,
        allocation_clients=tuple(allocation_clients),
        allocation_users=tuple(allocation_users),
        allocation_slots=allocation_slots,
        allocation_rounds=allocation_rounds,
    )
    check_options(
        table_servers=options["table_servers"],
        user_servers=options["user_servers"],
        counts={
            "seconds": options["seconds"],
            "windows": options["windows"],
            "selection_clients": options["selection_clients"],
            "server_side_calls": options["server_side_calls"],
            "allocation_clients": options["allocation_clients"],
            "allocation_users": options["allocation_users"],
            "allocation_slots": options["allocation_slots"],
            "allocation_rounds": options["allocation_rounds"],
        },
    )
    pgbench()
    if database_url:
        url = parse_url(database_url)
        # pgbench's clients, or the allocating clients and the connection that resets their servers.
        clients = max(options["selection_clients"], max(options["allocation_clients"]) + 1)
        refuse_unless_empty(url, clients=clients)
        progress(f"migrating {display_url(url)} to head (it is emptied again afterwards)")
        with migrated_then_emptied(url):
            return _run(url, options, progress)
    progress("starting a throwaway PostgreSQL")
    with ThrowawayPostgres() as server:
        url = server.url(server.create_database("waha_bench"))
        engine = create_engine(url)
        try:
            migrate.upgrade(engine, "head")
        finally:
            engine.dispose()
        return _run(url, options, progress)


def _run(url: sa.URL, options: BenchOptions, progress: Callable[[str], None]) -> BenchResult:
    """Every measure, on the database at `url` (at head)."""
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        version = one_row(connection, "SHOW server_version")[0]
    result = BenchResult(machine={**machine(), "postgresql": version}, sizes=dict(options))
    load = LoadAverage()
    user_servers = options["user_servers"]
    with tempfile.TemporaryDirectory(prefix="waha-bench-") as workdir:
        for table_servers in options["table_servers"]:
            with psycopg.connect(conninfo(url), autocommit=True) as connection:
                progress(f"loading a table of {table_servers:,} servers")
                load_table(connection, table_servers, user_servers)
                if not result.plan:
                    result.plan = selection_plan(connection, user_servers[-1])
                progress(f"timing the selection inside the server ({table_servers:,} servers)")
                server_side = {
                    servers: measure_server_side(connection, servers, options["server_side_calls"])
                    for servers in user_servers
                }
                reads = {servers: rows_read(connection, servers) for servers in user_servers}
                own_query = function_query(connection, user=":user::uuid", excluded=":excluded::uuid[]")
            progress(f"selection throughput with pgbench ({table_servers:,} servers)")
            rates = measure_throughput(
                url,
                own_query,
                user_servers=user_servers,
                clients=options["selection_clients"],
                seconds=options["seconds"],
                windows=options["windows"],
                workdir=Path(workdir),
                load=load,
            )
            table = TableSelection(table_servers, rates["select_1"])
            for servers in user_servers:
                table.users.append(
                    UserSelection(
                        servers,
                        rates[f"function_{servers}"],
                        rates[f"query_{servers}"],
                        server_side[servers]["function"],
                        server_side[servers]["query"],
                        *reads[servers],
                    )
                )
            result.tables.append(table)
    progress("allocation under contention")
    result.allocation = measure_allocation(
        url,
        clients=options["allocation_clients"],
        users=options["allocation_users"],
        slots=options["allocation_slots"],
        rounds=options["allocation_rounds"],
        load=load,
    )
    result.load_average = load.summary()
    result.goals = evaluate(result)
    return result
