"""How fast the throwaway-PostgreSQL harness is: time to start a server, time to hand a test a fresh database.

The test suite pays the start once per session and a clone per test (or per
parametrised kind), so these two numbers bound how fast the suite can be. Tests
that only need a clean slate (tests/sql) use a transaction rolled back at the
end instead; its cost is printed too.

Run it from the repository root:

    python scripts/harness_timing.py [--starts 3] [--clones 10]

It prints the median and the range of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import create_engine
from waha_db.lifecycle import migrate


def timed(action) -> float:
    """Seconds `action()` took."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def describe(label: str, seconds: list[float]) -> str:
    milliseconds = sorted(s * 1000 for s in seconds)
    return (
        f"{label}: median {statistics.median(milliseconds):.0f} ms "
        f"(min {milliseconds[0]:.0f}, max {milliseconds[-1]:.0f}, n={len(milliseconds)})"
    )


def measure_start(times: int) -> list[float]:
    """initdb + server start + stop, `times` times; what a test session pays once."""
    results = []
    for _ in range(times):
        server = ThrowawayPostgres()
        results.append(timed(server.start))
        server.stop()
    return results


def measure_clones(server: ThrowawayPostgres, template: str, times: int) -> tuple[list[float], list[float]]:
    """CREATE DATABASE ... TEMPLATE, then DROP DATABASE, `times` times each."""
    creates, drops = [], []
    for _ in range(times):
        name = None

        def create() -> None:
            nonlocal name
            name = server.create_database(template=template)

        creates.append(timed(create))
        drops.append(timed(lambda name=name: server.drop_database(name)))
    return creates, drops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3, help="server starts to measure (default 3)")
    parser.add_argument("--clones", type=int, default=10, help="database clones to measure (default 10)")
    arguments = parser.parse_args()

    print(describe("start a throwaway server (initdb + start)", measure_start(arguments.starts)))

    with ThrowawayPostgres() as server:
        template = server.create_database("template_head")
        engine = create_engine(server.url(template))
        migrate_seconds = timed(lambda: migrate.upgrade(engine, "head"))
        engine.dispose()
        print(describe("migrate an empty database to head (once per template)", [migrate_seconds]))

        creates, drops = measure_clones(server, template, arguments.clones)
        print(describe("hand a test a fresh database at head (CREATE DATABASE ... TEMPLATE)", creates))
        print(describe("drop it afterwards", drops))

        conninfo = server.url(template).set(drivername="postgresql").render_as_string(hide_password=False)

        def rolled_back_transaction() -> None:
            with psycopg.connect(conninfo) as connection:
                connection.execute("SELECT pg_catalog.txid_current()")
                connection.rollback()

        print(
            describe(
                "hand a test a rolled-back transaction instead (connect, begin, rollback)",
                [timed(rolled_back_transaction) for _ in range(arguments.clones)],
            )
        )


if __name__ == "__main__":
    main()
