"""Designs of the selection side by side: what each gives the 1,000-server user, and what it costs allocation.

A user with 1,000 servers reads the ~85 candidates of its best priority level on
every call of get_available_waha_server and sorts them. An index ordered by the
exact load within a level would let a call read one candidate per level, but it
names sessions_ativas, which every allocation changes: no allocation's UPDATE of
waha_servers is a HOT update any more, so each one writes an entry into every
index of the table. This script measures both sides, on one throwaway PostgreSQL,
on databases that differ only by the design:

- head: the schema as the migrations leave it;
- load index: CREATE INDEX ON waha_servers (user_id, prioridade, <the function's
  own ORDER BY>) WHERE ativo AND sessions_ativas < max_sessions, which the
  function's query uses as it is (its generic plan reads one row per level);
- HOT lost alone: an index that holds no row but names sessions_ativas, so that
  allocations lose HOT and nothing else changes (what the load index costs
  beyond losing HOT is the difference between the two).

Each database holds `waha-db bench`'s table of 10,000 servers (the users with 5,
100 and 1,000 servers among users with 5) and its allocation fleets. In rounds,
the designs in an order that alternates from round to round:
- selection: pgbench windows (4 clients, prepared statements) of the function for
  the 5- and the 1,000-server user; the ratio of the two windows of each round;
- allocation: allocate_waha_session fills 1,000 slots with 8 and 32 clients, on
  one user's 5 servers and on 100 users' (as `waha-db bench` does); each design's
  allocations/s against head's in the same round.
Printed: the median and the range of the per-round figures, the rows one call
reads under the generic plan, and the share of the table's updates that were HOT.

Usage (from the repository root, after `pip install -e .`):

    python tools/selection_designs.py [--rounds 10] [--allocation-rounds 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import psycopg

from waha_db.checks import bench
from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import conninfo, create_engine
from waha_db.lifecycle import migrate

TABLE_SERVERS = 10_000
LIGHT, HEAVY = 5, 1_000
DESIGNS = {
    "head": "",
    # The function's own ORDER BY within a level, so that its query (unchanged) reads the level in load order.
    "load index": """
        CREATE INDEX waha_servers_user_id_prioridade_load_idx ON public.waha_servers (
            user_id,
            prioridade,
            ((sessions_ativas::int8 << 31) / max_sessions),
            ((((sessions_ativas::int8 << 31) % max_sessions) << 31) / max_sessions),
            (max_sessions - sessions_ativas) DESC,
            created_at,
            id)
        WHERE ativo AND sessions_ativas < max_sessions
    """,
    # No row (sessions_ativas is never negative), but it names sessions_ativas: no allocation is a HOT update.
    "HOT lost alone": "CREATE INDEX waha_servers_no_hot_idx ON public.waha_servers (id) WHERE sessions_ativas < 0",
}
ALLOCATIONS = [(clients, users) for clients in bench.ALLOCATION_CLIENTS for users in bench.ALLOCATION_USERS]


def spread(values: list[float], digits: int = 2) -> str:
    """`median (lowest-highest)`."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="selection rounds (one 1 s window per user and design)")
    parser.add_argument("--allocation-rounds", type=int, default=6, help="allocation rounds per clients and users")
    arguments = parser.parse_args()

    with ThrowawayPostgres() as server, tempfile.TemporaryDirectory(prefix="waha-designs-") as workdir:
        template = server.create_database("designs_template")
        engine = create_engine(server.url(template))
        migrate.upgrade(engine, "head")
        engine.dispose()
        fleets = {}
        with psycopg.connect(conninfo(server.url(template)), autocommit=True) as connection:
            bench.load_table(connection, TABLE_SERVERS, bench.USER_SERVERS)
            for users in bench.ALLOCATION_USERS:
                fleets[users] = bench.add_allocation_fleet(connection, users, 1_000)
        urls = {}
        for index, (design, ddl) in enumerate(DESIGNS.items()):
            name = server.create_database(f"design_{index}", template=template)
            urls[design] = server.url(name)
            with psycopg.connect(conninfo(urls[design]), autocommit=True) as connection:
                if ddl:
                    connection.execute(ddl)
                connection.execute("ANALYZE public.waha_servers")
                read, bound = bench.rows_read(connection, HEAVY)
                print(
                    f"{design}: one call of the {HEAVY:,}-server user reads {read} rows of waha_servers under the "
                    f"generic plan (its active servers at its best level, + 1: {bound})"
                )

        load = bench.LoadAverage()
        ratios: dict[str, list[float]] = {design: [] for design in DESIGNS}
        for round_number in range(arguments.rounds):
            order = list(DESIGNS) if round_number % 2 == 0 else list(reversed(DESIGNS))
            for design in order:
                calls = {}
                for servers in (LIGHT, HEAVY):
                    load.sample()
                    calls[servers] = bench.pgbench_run(
                        urls[design],
                        bench.FUNCTION_CALL,
                        clients=4,
                        seconds=1,
                        workdir=Path(workdir),
                        name=f"function_{servers}",
                        variables={"user": bench.measured_user(servers), "excluded": "{}"},
                    )
                ratios[design].append(calls[HEAVY] / calls[LIGHT])
        print(
            f"\nselection, {HEAVY:,}-server user vs {LIGHT}-server user, calls/s, median (range) of {arguments.rounds} rounds:"
        )
        for design in DESIGNS:
            print(f"  {design:15} {spread(ratios[design])}")

        rates: dict[tuple[str, int, int], list[float]] = {}
        for round_number in range(arguments.allocation_rounds):
            for clients, users in ALLOCATIONS:
                order = list(DESIGNS) if round_number % 2 == 0 else list(reversed(DESIGNS))
                for design in order:
                    with psycopg.connect(conninfo(urls[design]), autocommit=True) as connection:
                        bench.reset_allocation(connection, fleets[users])
                    load.sample()
                    made, seconds = bench.fill(urls[design], fleets[users], clients, bench.allocate_with_function)
                    rates.setdefault((design, clients, users), []).append(made / seconds)
        print(
            f"\nallocate_waha_session, allocations/s filling 1,000 slots, median (range) of {arguments.allocation_rounds} "
            "rounds; against head: the median (range) of the ratios of the same round"
        )
        for clients, users in ALLOCATIONS:
            head = rates[("head", clients, users)]
            line = [f"  {clients:2} clients {users:3} users  head {spread(head, 0)}"]
            for design in list(DESIGNS)[1:]:
                against = [rate / base for rate, base in zip(rates[(design, clients, users)], head, strict=True)]
                line.append(f"{design} {spread(against)}")
            print(" | ".join(line))
        print("\nHOT updates of waha_servers:")
        for design in DESIGNS:
            with psycopg.connect(conninfo(urls[design]), autocommit=True) as connection:
                updates, hot = connection.execute(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_catalog.pg_stat_user_tables WHERE relid = 'public.waha_servers'::regclass"
                ).fetchone()
            print(f"  {design:15} {hot:,} of {updates:,}")
        summary = load.summary()
        print(
            f"\nload average (1 min) before each window: median {summary['median']:.2f}, "
            f"{summary['min']:.2f}-{summary['max']:.2f}, on {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()
