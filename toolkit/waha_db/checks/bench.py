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
import random
import re
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
import sqlalchemy as sa

from waha_db.checks.bench_database import (
    BenchError,
    check_options,
    check_table_sizes,
    migrated_then_emptied,
    pgbench,
    refuse_unless_empty,
)
from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import conninfo, create_engine, display_url, parse_url
from waha_db.lifecycle import migrate

TABLE_SERVERS = (10_000, 1_000_000)
USER_SERVERS = (5, 100, 1_000)
ALLOCATION_CLIENTS = (8, 32)
ALLOCATION_USERS = (1, 100)
ALLOCATION_SERVERS_PER_USER = 5
OCCUPYING = "pg_catalog.upper(session_row.status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED')"


def measured_user(servers: int) -> str:
    """The id of the measured user who has `servers` servers."""
    return f"00000000-0000-4000-8000-{servers:012d}"


def allocation_user(fleet_users: int, index: int) -> str:
    """The id of user `index` of the allocation fleet of `fleet_users` users."""
    return f"00000000-0000-4000-a000-{fleet_users:06d}{index:06d}"


# The function's own query is its first RETURN QUERY statement (its common path),
# read from the database with user_uuid and excluded_server_ids left as names.
_FUNCTION_QUERY = re.compile(r"RETURN\s+QUERY\s+(.*?);", re.S | re.I)


def function_query(connection: psycopg.Connection, *, user: str, excluded: str) -> str:
    """get_available_waha_server's query with `user` and `excluded` (SQL text) in place of its arguments."""
    source = connection.execute(
        "SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = 'public.get_available_waha_server(uuid, uuid[])'::regprocedure"
    ).fetchone()[0]
    source = "\n".join(line.split("--", 1)[0].rstrip() for line in source.splitlines())
    found = _FUNCTION_QUERY.search(source)
    if not found:
        raise BenchError(
            "get_available_waha_server's body has no RETURN QUERY statement; update toolkit/waha_db/checks/bench.py"
        )
    query = "\n".join(line for line in found.group(1).splitlines() if line.strip())
    query = re.sub(r"\bexcluded_server_ids\b", lambda _: excluded, query)
    return re.sub(r"\buser_uuid\b", lambda _: user, query)


@dataclass
class Latency:
    median_ms: float
    p99_ms: float


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the ratios of windows measured side by side (the same round), so load from elsewhere cancels out."""
    ratios = [
        numerator / denominator for numerator, denominator in zip(numerators, denominators, strict=True) if denominator
    ]
    return statistics.median(ratios) if ratios else 0.0


@dataclass
class UserSelection:
    """The selection for one measured user: the function against its own query."""

    user_servers: int
    function_windows: list[float]  # calls/s of each window, in round order
    query_windows: list[float]
    function_server_side: Latency
    query_server_side: Latency
    rows_read: int  # rows of waha_servers one call reads under the generic plan
    rows_bound: int  # the user's active servers at its best level and above, + 1: the chosen row, read again

    @property
    def function_calls_per_second(self) -> float:
        return statistics.median(self.function_windows)

    @property
    def query_calls_per_second(self) -> float:
        return statistics.median(self.query_windows)

    @property
    def function_vs_query(self) -> float:
        return paired_ratio(self.function_windows, self.query_windows)


@dataclass
class TableSelection:
    table_servers: int
    select_1_windows: list[float]
    users: list[UserSelection] = field(default_factory=list)

    @property
    def select_1_calls_per_second(self) -> float:
        return statistics.median(self.select_1_windows)

    def user(self, servers: int) -> UserSelection:
        return next(measure for measure in self.users if measure.user_servers == servers)


@dataclass
class AllocationMeasure:
    clients: int
    users: int
    flow: str
    allocations: int
    seconds: float
    over_allocated: int  # sessions placed beyond max_sessions
    counter_above_max: int  # sum of sessions_ativas beyond max_sessions
    counters_off: int  # servers whose sessions_ativas differs from the sessions occupying them

    @property
    def allocations_per_second(self) -> float:
        return self.allocations / self.seconds if self.seconds else 0.0


@dataclass
class Goal:
    name: str
    wanted: str
    measured: str
    met: bool


@dataclass
class LoadAverage:
    """The 1-minute load average, sampled before every measured window."""

    samples: list[float] = field(default_factory=list)

    def sample(self) -> None:
        try:
            self.samples.append(os.getloadavg()[0])
        except OSError:
            pass

    def summary(self) -> dict:
        if not self.samples:
            return {}
        return {"median": statistics.median(self.samples), "min": min(self.samples), "max": max(self.samples)}


@dataclass
class BenchResult:
    machine: dict
    sizes: dict
    load_average: dict = field(default_factory=dict)
    tables: list[TableSelection] = field(default_factory=list)
    plan: str = ""
    allocation: list[AllocationMeasure] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        for table, table_row in zip(self.tables, data["tables"], strict=True):
            table_row["select_1_calls_per_second"] = round(table.select_1_calls_per_second, 1)
            for measure, row in zip(table.users, table_row["users"], strict=True):
                row["function_calls_per_second"] = round(measure.function_calls_per_second, 1)
                row["query_calls_per_second"] = round(measure.query_calls_per_second, 1)
                row["function_vs_query"] = round(measure.function_vs_query, 3)
        for measure, row in zip(self.allocation, data["allocation"], strict=True):
            row["allocations_per_second"] = round(measure.allocations_per_second, 1)
        return data


def machine() -> dict:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


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


def pgbench_run(
    url: sa.URL, script: str, *, clients: int, seconds: int, workdir: Path, name: str, variables: dict[str, str]
) -> float:
    """Transactions/s of one pgbench run of `script`."""
    script_path = workdir / f"{name}.sql"
    script_path.write_text(script)
    command = [
        pgbench(),
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(clients, os.cpu_count() or 1)),
        "-T",
        str(seconds),
        "-f",
        str(script_path),
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
    ]
    for key, value in variables.items():
        command += ["-D", f"{key}={value}"]
    command.append(url.database)
    environment = dict(os.environ)
    if url.password:
        environment["PGPASSWORD"] = url.password
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=workdir)
    if done.returncode != 0:
        raise BenchError(f"pgbench failed on {name} against {display_url(url)}: {done.stderr.strip()[-2000:]}")
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    if not found:
        raise BenchError(f"could not read the throughput from pgbench's output:\n{done.stdout}")
    return float(found.group(1))


FUNCTION_CALL = "SELECT * FROM public.get_available_waha_server(:user::uuid, :excluded::uuid[]);\n"


def measure_throughput(
    url: sa.URL,
    own_query: str,
    *,
    user_servers: tuple[int, ...],
    clients: int,
    seconds: float,
    windows: int,
    workdir: Path,
    load: LoadAverage,
) -> dict[str, list[float]]:
    """Calls/s of each of `windows` rounds of SELECT 1 and, per measured user, of the function and its query.

    Keys: "select_1", "function_N", "query_N" (N: the user's servers); each round runs every one once, in that order.
    """
    runs = [("select_1", "SELECT 1;\n", {})]
    for servers in user_servers:
        arguments = {"user": measured_user(servers), "excluded": "{}"}
        runs += [(f"function_{servers}", FUNCTION_CALL, arguments), (f"query_{servers}", own_query + ";\n", arguments)]
    window = max(1, round(seconds / windows))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    for _ in range(windows):
        for name, script, arguments in runs:
            load.sample()
            rates[name].append(
                pgbench_run(
                    url, script, clients=clients, seconds=window, workdir=workdir, name=name, variables=arguments
                )
            )
    return rates


SERVER_SIDE_TIMING = """
CREATE TEMPORARY TABLE IF NOT EXISTS bench_timing (query text, micros double precision);
TRUNCATE bench_timing;
DO $$
DECLARE
    started timestamptz;
    measured constant uuid := '{user}';
    excluded constant uuid[] := '{{}}';
BEGIN
    FOR i IN 1..{calls} LOOP
        started := clock_timestamp();
        PERFORM * FROM public.get_available_waha_server(measured, excluded);
        INSERT INTO bench_timing VALUES ('function', extract(epoch FROM clock_timestamp() - started) * 1e6);
        started := clock_timestamp();
        PERFORM * FROM ({query}) AS own_query;
        INSERT INTO bench_timing VALUES ('query', extract(epoch FROM clock_timestamp() - started) * 1e6);
    END LOOP;
END
$$;
"""


def measure_server_side(connection: psycopg.Connection, servers: int, calls: int) -> dict[str, Latency]:
    """Median and p99 (ms) of the function and of its query for one measured user, timed inside the server."""
    query = function_query(connection, user="measured", excluded="excluded")
    connection.execute(SERVER_SIDE_TIMING.format(user=measured_user(servers), calls=calls, query=query))
    rows = connection.execute(
        """
        SELECT query, percentile_cont(0.5) WITHIN GROUP (ORDER BY micros) / 1000,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY micros) / 1000
        FROM bench_timing GROUP BY query
        """
    ).fetchall()
    return {query: Latency(median, p99) for query, median, p99 in rows}


ROWS_READ = """
SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0)
FROM pg_catalog.pg_stat_xact_user_tables WHERE relid = 'public.waha_servers'::regclass
"""


def rows_read(connection: psycopg.Connection, servers: int) -> tuple[int, int]:
    """(rows of waha_servers one generic-plan call reads, what it should read at most).

    At most: the user's active servers at its best level and above, and the chosen row again.
    """
    user = measured_user(servers)
    with connection.transaction():
        connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        before = connection.execute(ROWS_READ).fetchone()[0]
        picked = connection.execute(
            "SELECT prioridade FROM public.get_available_waha_server(%s::uuid)", (user,)
        ).fetchone()
        read = connection.execute(ROWS_READ).fetchone()[0] - before
        bound = connection.execute(
            "SELECT count(*) + 1 FROM public.waha_servers WHERE user_id = %s::uuid AND ativo AND prioridade >= %s",
            (user, picked[0] if picked else 0),
        ).fetchone()[0]
    return read, bound


def selection_plan(connection: psycopg.Connection, servers: int) -> str:
    """The generic plan of the function's query for a measured user: auto_explain, else the query prepared and explained."""
    user = measured_user(servers)
    notices: list[str] = []
    connection.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    try:
        with connection.transaction():
            connection.execute("LOAD 'auto_explain'")
            connection.execute(
                "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL auto_explain.log_min_duration = 0; "
                "SET LOCAL auto_explain.log_nested_statements = on; SET LOCAL auto_explain.log_level = 'notice'; "
                "SET LOCAL auto_explain.log_analyze = on; SET LOCAL auto_explain.log_timing = off"
            )
            connection.execute("SELECT * FROM public.get_available_waha_server(%s::uuid)", (user,))
        inner = [notice for notice in notices if "waha_servers" in notice]
        if inner:
            return inner[0]
    except psycopg.Error:
        pass
    with connection.transaction():
        connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        connection.execute(
            f"PREPARE bench_selection (uuid, uuid[]) AS {function_query(connection, user='$1', excluded='$2')}"
        )
        rows = connection.execute(
            f"EXPLAIN (ANALYZE, TIMING off) EXECUTE bench_selection ('{user}', '{{}}')"
        ).fetchall()
        connection.execute("DEALLOCATE bench_selection")
    return "\n".join(row[0] for row in rows)


def fill(url: sa.URL, users: list[str], clients: int, allocate_one) -> tuple[int, float]:
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


ALLOCATION_FLOWS = (
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
                        outcome = connection.execute(ALLOCATION_OUTCOME, (fleet,)).fetchone()
                        made, seconds = made + allocations, seconds + elapsed
                        over, above, off = over + outcome[0], above + outcome[1], off + outcome[2]
                    measures.append(
                        AllocationMeasure(
                            client_count, user_count, flow, made, seconds, int(over), int(above), int(off)
                        )
                    )
            reset_allocation(connection, fleet)
    return measures


def reset_allocation(connection: psycopg.Connection, users: list[str]) -> None:
    connection.execute("DELETE FROM public.waha_sessions WHERE user_id = ANY (%s::uuid[])", (users,))
    connection.execute("UPDATE public.waha_servers SET sessions_ativas = 0 WHERE user_id = ANY (%s::uuid[])", (users,))


def evaluate(result: BenchResult) -> list[Goal]:
    """The goals the figures must meet (pure: from the figures alone)."""
    goals = []
    if result.tables:
        smallest, largest = result.tables[0], result.tables[-1]
        fewest, most = smallest.users[0].user_servers, smallest.users[-1].user_servers
        if fewest != most:
            ratio = paired_ratio(smallest.user(most).function_windows, smallest.user(fewest).function_windows)
            goals.append(
                Goal(
                    f"{most:,}-server user vs {fewest}-server user, calls/s, {smallest.table_servers:,}-server table",
                    ">= 0.50x",
                    f"{ratio:.2f}x",
                    ratio >= 0.5,
                )
            )
        if smallest is not largest:
            ratio = _ratio(smallest.user(most).function_calls_per_second, largest.user(most).function_calls_per_second)
            goals.append(
                Goal(
                    f"{most:,}-server user on the {smallest.table_servers:,}-server table vs the {largest.table_servers:,}-server one, calls/s",
                    ">= 0.90x (no slower, within one run's noise)",
                    f"{ratio:.2f}x",
                    ratio >= 0.9,
                )
            )
        lowest = min(
            ((table, measure) for table in result.tables for measure in table.users),
            key=lambda pair: pair[1].function_vs_query,
        )
        table, measure = lowest
        goals.append(
            Goal(
                "function vs its own query with a parameter, every table and user",
                ">= 0.80x",
                f"{measure.function_vs_query:.2f}x (lowest: {measure.user_servers:,}-server user, "
                f"{table.table_servers:,}-server table)",
                measure.function_vs_query >= 0.8,
            )
        )
        overread = [
            (table.table_servers, measure)
            for table in result.tables
            for measure in table.users
            if measure.rows_read > measure.rows_bound
        ]
        goals.append(
            Goal(
                "rows one call reads under the generic plan, every table and user",
                "<= the user's servers at its best level and above, + 1",
                "within"
                if not overread
                else "; ".join(
                    f"{measure.rows_read} > {measure.rows_bound} ({measure.user_servers:,}-server user, {servers:,}-server table)"
                    for servers, measure in overread
                ),
                not overread,
            )
        )
    ours = [measure for measure in result.allocation if measure.flow == "allocate_waha_session"]
    if ours:
        over = sum(measure.over_allocated + measure.counter_above_max for measure in ours)
        off = sum(measure.counters_off for measure in ours)
        clients = " and ".join(str(count) for count in sorted({measure.clients for measure in ours}))
        goals.append(
            Goal(f"allocate_waha_session over-allocated slots at {clients} clients", "0", str(over), over == 0)
        )
        goals.append(
            Goal("allocate_waha_session counters that differ from their occupying sessions", "0", str(off), off == 0)
        )
        seed = {
            (measure.clients, measure.users): measure
            for measure in result.allocation
            if measure.flow != "allocate_waha_session"
        }
        ratios = [
            _ratio(measure.allocations_per_second, seed[(measure.clients, measure.users)].allocations_per_second)
            for measure in ours
            if (measure.clients, measure.users) in seed
        ]
        if ratios:
            goals.append(
                Goal(
                    "allocate_waha_session vs the seed's flow, allocations/s, lowest",
                    ">= 0.50x",
                    f"{min(ratios):.2f}x",
                    min(ratios) >= 0.5,
                )
            )
    return goals


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


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
    progress=lambda message: None,
) -> BenchResult:
    """Run every measure on a throwaway PostgreSQL, or on the empty database at `database_url` (emptied afterwards)."""
    options = dict(
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
        counts={name: value for name, value in options.items() if name not in ("table_servers", "user_servers")},
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


def _run(url: sa.URL, options: dict, progress) -> BenchResult:
    """Every measure, on the database at `url` (at head)."""
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        version = connection.execute("SHOW server_version").fetchone()[0]
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


def render(result: BenchResult) -> str:
    """The result as a table, as `waha-db bench` prints it."""
    sizes, host, load = result.sizes, result.machine, result.load_average
    window = max(1, round(sizes["seconds"] / sizes["windows"]))
    lines = [f"machine: {host['cpus']} CPUs, {host['cpu_model']}, PostgreSQL {host['postgresql']}"]
    if load:
        lines.append(
            f"load average (1 min) before each measured window: median {load['median']:.2f}, "
            f"{load['min']:.2f}-{load['max']:.2f}, on {host['cpus']} CPUs"
        )
    lines += [
        "",
        f"selection: pgbench, {sizes['selection_clients']} clients, prepared statements, the user and the excluded list "
        "as parameters of both the function and its own query;",
        f"  calls/s: median of {sizes['windows']} windows of {window} s, rounds alternating between the queries; f/query: "
        "median of the ratios of the two windows of each round;",
        f"  server side: median/p99 of {sizes['server_side_calls']:,} calls each, timed with clock_timestamp() in plpgsql;",
        "  rows read: rows of waha_servers one call reads under the generic plan / the user's active servers at its "
        "best level and above, + 1 (the chosen row, read again)",
    ]
    for table in result.tables:
        ceiling = table.select_1_calls_per_second
        lines += [
            "",
            f"table of {table.table_servers:,} servers; SELECT 1: {ceiling:,.0f} calls/s "
            f"({sizes['selection_clients'] / ceiling * 1000 if ceiling else 0:.3f} ms per round trip)",
            f"  {'user':>13} {'function/s':>10} {'query/s':>9} {'f/query':>7} {'x SELECT 1':>10} "
            f"{'function ms med/p99':>19} {'query ms med/p99':>17} {'rows read':>11}",
        ]
        for measure in table.users:
            function, query = measure.function_server_side, measure.query_server_side
            lines.append(
                f"  {measure.user_servers:>5,} servers {measure.function_calls_per_second:10,.0f} "
                f"{measure.query_calls_per_second:9,.0f} {measure.function_vs_query:7.2f} "
                f"{_ratio(measure.function_calls_per_second, ceiling):10.2f} "
                f"{function.median_ms:>9.3f}/{function.p99_ms:<9.3f} {query.median_ms:>8.3f}/{query.p99_ms:<8.3f} "
                f"{measure.rows_read:>5}/{measure.rows_bound:<5}"
            )
    if result.tables:
        lines += [
            "",
            f"generic plan of the selection for the {sizes['user_servers'][-1]:,}-server user, "
            f"{result.tables[0].table_servers:,}-server table:",
        ]
        lines += ["  " + line for line in result.plan.strip().splitlines()]
    rounds = sizes["allocation_rounds"]
    lines += [
        "",
        f"allocation: clients fill {sizes['allocation_slots']:,} slots (the users' servers x {ALLOCATION_SERVERS_PER_USER}) "
        f"until refused, {rounds} rounds; over-allocated: sessions beyond max_sessions; counters off: servers whose "
        "sessions_ativas differs from their occupying sessions",
        f"  {'clients':>7} {'users':>5} {'flow':24} {'allocs/s':>9} {'allocs':>7} {'over-allocated':>14} "
        f"{'counter > max':>13} {'counters off':>12}",
    ]
    for measure in result.allocation:
        lines.append(
            f"  {measure.clients:>7} {measure.users:>5} {measure.flow:24} {measure.allocations_per_second:9,.0f} "
            f"{measure.allocations:7} {measure.over_allocated:14} {measure.counter_above_max:13} {measure.counters_off:12}"
        )
    lines += ["", "goals:"]
    for goal in result.goals:
        lines.append(f"  {'met ' if goal.met else 'MISSED'} {goal.name}: {goal.measured} (wanted {goal.wanted})")
    return "\n".join(lines)
