"""The benchmark behind `waha-db bench`: selection speed and race-free allocation.

Selection: calls/s of get_available_waha_server against the same query written by
hand and against `SELECT 1` (the ceiling of a round trip), measured with pgbench
(C clients, prepared statements) on 10,000 users x 5 servers plus one user with
1,000 servers. Latency percentiles are per call as pgbench logs them (client
side); the heavy user's are also timed inside the server (clock_timestamp around
each call in a plpgsql loop), which leaves out the network and the client. The
plan of the function's inner query is shown with auto_explain (needs a superuser,
as on the throwaway server); elsewhere the hand-written query's plan is shown.

Allocation: 8 psycopg clients (threads, one connection each) fill one user's 5
servers to capacity, through allocate_waha_session and through the seed's
three-statement flow (pick with get_available_waha_server, insert the session,
sessions_ativas + 1). Each client stops at its first "no server" answer.
Over-allocated slots are sessions placed beyond a server's max_sessions.

It runs on a throwaway PostgreSQL unless given a URL, and fills the database it
is given: give it an empty one.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
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

from waha_db.checks.pgtemp import ThrowawayPostgres, find_server_binaries
from waha_db.database import conninfo, create_engine, display_url, parse_url
from waha_db.errors import UserError
from waha_db.lifecycle import migrate

HEAVY_USER = "00000000-0000-4000-8000-00000000beef"

# The hand-written equivalent is the function's own query, read from the database
# (so it follows every revision of the function), with the arguments inlined.
# When the function has several RETURN QUERY statements, the first is its common path.
_FUNCTION_QUERY = re.compile(r"RETURN\s+QUERY\s+(.*?);", re.S | re.I)


def hand_written_select(connection: psycopg.Connection) -> str:
    """get_available_waha_server's query as a template with {user} in place of user_uuid."""
    source = connection.execute(
        "SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = 'public.get_available_waha_server(uuid, uuid[])'::regprocedure"
    ).fetchone()[0]
    source = "\n".join(line.split("--", 1)[0].rstrip() for line in source.splitlines())
    found = _FUNCTION_QUERY.search(source)
    if not found:
        raise BenchError(
            "get_available_waha_server's body has no RETURN QUERY statement; update toolkit/checks/bench.py"
        )
    query = "\n".join(line for line in found.group(1).splitlines() if line.strip())
    query = query.replace("{", "{{").replace("}", "}}")
    query = re.sub(r"\bexcluded_server_ids\b", "'{{}}'::uuid[]", query)
    return re.sub(r"\buser_uuid\b", "{user}", query)


# pgbench picks a random user; the same user-id expression is in both compared queries.
RANDOM_USER = "md5('user' || :u)::uuid"


class BenchError(UserError):
    """The benchmark could not run; the message says what to do."""


@dataclass
class Measure:
    name: str
    calls_per_second: float
    median_ms: float | None = None
    p99_ms: float | None = None
    ratio_to_select: float | None = None


@dataclass
class AllocationMeasure:
    name: str
    allocations: int
    seconds: float
    over_allocated: int
    counter_above_max: int

    @property
    def allocations_per_second(self) -> float:
        return self.allocations / self.seconds if self.seconds else 0.0


@dataclass
class Target:
    name: str
    wanted: str
    measured: str
    met: bool


@dataclass
class BenchResult:
    machine: dict
    sizes: dict
    selection: list[Measure] = field(default_factory=list)
    heavy_server_side: dict = field(default_factory=dict)
    plan: str = ""
    plan_uses_index: bool = False
    allocation: list[AllocationMeasure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
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


def _pgbench() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        candidate = find_server_binaries() / "pgbench"
    except Exception:
        candidate = None
    if candidate and candidate.is_file():
        return str(candidate)
    raise BenchError(
        "pgbench was not found on PATH or next to the PostgreSQL server binaries; install postgresql-client (it ships pgbench)"
    )


def load_data(connection: psycopg.Connection, users: int, servers_per_user: int, heavy_servers: int) -> None:
    """`users` users with `servers_per_user` servers each, and HEAVY_USER with `heavy_servers`.

    Priorities, capacities and loads vary, and some servers are inactive or full,
    so the ordering does real work.
    """
    connection.execute(
        """
        INSERT INTO public.waha_servers (user_id, nome, api_url, ativo, prioridade, max_sessions, sessions_ativas)
        SELECT md5('user' || u)::uuid, 'server ' || s, 'https://u' || u || '-s' || s || '.waha.example',
               (u + s) %% 7 <> 0, (u * s) %% 11, 10 + (u + s) %% 41, 0
        FROM generate_series(1, %(users)s) AS u, generate_series(1, %(per_user)s) AS s
        """,
        {"users": users, "per_user": servers_per_user},
    )
    connection.execute(
        "UPDATE public.waha_servers "
        "SET sessions_ativas = LEAST(max_sessions, (max_sessions * ((hashtext(id::text) & 1023) % 110)) / 100)"
    )
    connection.execute(
        """
        INSERT INTO public.waha_servers (user_id, nome, api_url, ativo, prioridade, max_sessions, sessions_ativas)
        SELECT %(heavy)s::uuid, 'heavy ' || s, 'https://heavy-' || s || '.waha.example',
               s %% 13 <> 0, s %% 11, 20 + s %% 80, (s * 7) %% 20
        FROM generate_series(1, %(servers)s) AS s
        """,
        {"heavy": HEAVY_USER, "servers": heavy_servers},
    )
    connection.execute("ANALYZE public.waha_servers")


def _pgbench_run(
    url: sa.URL,
    script: str,
    *,
    clients: int,
    seconds: float,
    workdir: Path,
    name: str,
    variables: dict[str, str] | None = None,
) -> tuple[float, list[float]]:
    """(transactions/s, latencies in ms) of one pgbench run of `script`."""
    script_path = workdir / f"{name}.sql"
    script_path.write_text(script)
    prefix = workdir / f"log_{name}"
    command = [
        _pgbench(),
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(clients, os.cpu_count() or 1)),
        "-T",
        str(max(1, round(seconds))),
        "-l",
        f"--log-prefix={prefix}",
        "-f",
        str(script_path),
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
    ]
    for key, value in (variables or {}).items():
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
    latencies = []
    for log in workdir.glob(f"log_{name}*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                latencies.append(int(fields[2]) / 1000.0)
        log.unlink()  # the next round of the same script logs afresh
    return float(found.group(1)), latencies


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


SELECTION_ROUNDS = 5


def measure_selection(
    url: sa.URL, hand_written: str, *, users: int, clients: int, seconds: float, workdir: Path
) -> list[Measure]:
    pick_user = f"\\set u random(1, {users})\n"
    scripts = [
        ("SELECT 1 (ceiling)", "select_1", "SELECT 1;\n"),
        ("hand-written SELECT", "hand_written", pick_user + hand_written.format(user=RANDOM_USER).strip() + ";\n"),
        (
            "get_available_waha_server",
            "function",
            pick_user + f"SELECT * FROM public.get_available_waha_server({RANDOM_USER});\n",
        ),
        (
            "get_available_waha_server, heavy user (1,000 servers)",
            "function_heavy",
            f"SELECT * FROM public.get_available_waha_server('{HEAVY_USER}'::uuid);\n",
        ),
        (
            "hand-written SELECT, heavy user",
            "hand_written_heavy",
            hand_written.format(user=f"'{HEAVY_USER}'::uuid").strip() + ";\n",
        ),
    ]
    # Rounds alternate between the queries, so a burst of load from elsewhere on the
    # machine hits every query alike and the ratios stay comparable.
    rounds = max(1, min(SELECTION_ROUNDS, int(seconds)))
    rates: dict[str, list[float]] = {name: [] for _, name, _ in scripts}
    latencies: dict[str, list[float]] = {name: [] for _, name, _ in scripts}
    for _ in range(rounds):
        for _, name, script in scripts:
            rate, logged = _pgbench_run(
                url, script, clients=clients, seconds=seconds / rounds, workdir=workdir, name=name
            )
            rates[name].append(rate)
            latencies[name] += logged
    measures = [
        Measure(
            label, statistics.fmean(rates[name]), _percentile(latencies[name], 0.5), _percentile(latencies[name], 0.99)
        )
        for label, name, _ in scripts
    ]
    ceiling = measures[0].calls_per_second
    for measure in measures:
        measure.ratio_to_select = measure.calls_per_second / ceiling if ceiling else None
    return measures


SERVER_SIDE_TIMING = """
CREATE TEMPORARY TABLE bench_timing (query text, micros double precision);
DO $$
DECLARE
    started timestamptz;
    heavy constant uuid := '{heavy}';
BEGIN
    FOR i IN 1..{calls} LOOP
        started := clock_timestamp();
        PERFORM * FROM public.get_available_waha_server(heavy);
        INSERT INTO bench_timing VALUES ('function', extract(epoch FROM clock_timestamp() - started) * 1e6);
        started := clock_timestamp();
        PERFORM * FROM ({hand_written}) AS hand_written;
        INSERT INTO bench_timing VALUES ('hand-written', extract(epoch FROM clock_timestamp() - started) * 1e6);
    END LOOP;
END
$$;
"""


def measure_heavy_server_side(connection: psycopg.Connection, calls: int) -> dict:
    """Median and p99 (ms) of the heavy user's selection timed inside the server."""
    connection.execute(
        SERVER_SIDE_TIMING.format(
            heavy=HEAVY_USER, calls=calls, hand_written=hand_written_select(connection).format(user="heavy").strip()
        )
    )
    rows = connection.execute(
        """
        SELECT query, percentile_cont(0.5) WITHIN GROUP (ORDER BY micros) / 1000,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY micros) / 1000, count(*)
        FROM bench_timing GROUP BY query
        """
    ).fetchall()
    connection.execute("DROP TABLE bench_timing")
    return {query: {"median_ms": median, "p99_ms": p99, "calls": count} for query, median, p99, count in rows}


def selection_plan(connection: psycopg.Connection) -> str:
    """The plan of the function's inner query for the heavy user (auto_explain), else the hand-written query's."""
    notices: list[str] = []
    connection.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    try:
        connection.execute("LOAD 'auto_explain'")
        # plpgsql plans its query for the given user the first five calls, then may
        # settle on a generic plan: show the plan that later calls use.
        for _ in range(8):
            connection.execute("SELECT * FROM public.get_available_waha_server(%s::uuid)", (HEAVY_USER,))
        connection.execute(
            "SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on; "
            "SET auto_explain.log_level = 'notice'; SET auto_explain.log_analyze = on; "
            "SET auto_explain.log_timing = off"
        )
        connection.execute("SELECT * FROM public.get_available_waha_server(%s::uuid)", (HEAVY_USER,))
        connection.execute("SET auto_explain.log_min_duration = -1")
        inner = [notice for notice in notices if "waha_servers" in notice]
        if inner:
            return inner[0]
    except psycopg.Error:
        pass
    rows = connection.execute(
        "EXPLAIN " + hand_written_select(connection).format(user=f"'{HEAVY_USER}'::uuid")
    ).fetchall()
    return "\n".join(row[0] for row in rows)


def _reset_allocation(connection: psycopg.Connection, user: str) -> None:
    connection.execute("DELETE FROM public.waha_sessions WHERE user_id = %s", (user,))
    connection.execute("UPDATE public.waha_servers SET sessions_ativas = 0 WHERE user_id = %s", (user,))


def _fill(url: sa.URL, user: str, clients: int, allocate_one) -> tuple[int, float]:
    """Clients allocate until their first refusal; (allocations, seconds)."""
    barrier = threading.Barrier(clients + 1)

    def client(index: int) -> int:
        made = 0
        with psycopg.connect(conninfo(url), autocommit=True, prepare_threshold=0) as connection:
            barrier.wait()
            while allocate_one(connection, user, f"c{index}_{made}"):
                made += 1
        return made

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, index) for index in range(clients)]
        barrier.wait()
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


def measure_allocation(
    url: sa.URL, *, clients: int, servers: int, slots_per_server: int, rounds: int
) -> list[AllocationMeasure]:
    user = "00000000-0000-4000-8000-0000000a110c"
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        connection.execute(
            """
            INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade, max_sessions)
            SELECT %s::uuid, 'alloc ' || s, 'https://alloc-' || s || '.waha.example', s %% 2, %s
            FROM generate_series(1, %s) AS s
            """,
            (user, slots_per_server, servers),
        )
        measures = []
        for label, allocate_one in (
            ("allocate_waha_session", allocate_with_function),
            ("seed 3-statement flow", allocate_with_seed_flow),
        ):
            total, seconds, over, above = 0, 0.0, 0, 0
            for _ in range(rounds):
                _reset_allocation(connection, user)
                made, elapsed = _fill(url, user, clients, allocate_one)
                total, seconds = total + made, seconds + elapsed
                placed_over, counter_over = connection.execute(
                    """
                    SELECT COALESCE(sum(GREATEST(placed - max_sessions, 0)), 0), COALESCE(sum(GREATEST(sessions_ativas - max_sessions, 0)), 0)
                    FROM (SELECT server.max_sessions, server.sessions_ativas,
                                 (SELECT count(*) FROM public.waha_sessions AS s WHERE s.waha_server_id = server.id) AS placed
                          FROM public.waha_servers AS server WHERE server.user_id = %s) AS per_server
                    """,
                    (user,),
                ).fetchone()
                over, above = over + placed_over, above + counter_over
            measures.append(AllocationMeasure(label, total, seconds, int(over), int(above)))
        _reset_allocation(connection, user)
    return measures


def evaluate(result: BenchResult) -> list[Target]:
    by_name = {measure.name: measure for measure in result.selection}
    function, hand = by_name["get_available_waha_server"], by_name["hand-written SELECT"]
    heavy_p99 = result.heavy_server_side.get("function", {}).get("p99_ms")
    allocation = {measure.name: measure for measure in result.allocation}
    ours, seed = allocation["allocate_waha_session"], allocation["seed 3-statement flow"]
    selection_ratio = function.calls_per_second / hand.calls_per_second if hand.calls_per_second else 0.0
    allocation_ratio = ours.allocations_per_second / seed.allocations_per_second if seed.allocations_per_second else 0.0
    return [
        Target(
            "selection function vs hand-written SELECT", ">= 0.80x", f"{selection_ratio:.2f}x", selection_ratio >= 0.8
        ),
        Target(
            "heavy user p99, server side",
            "< 1 ms",
            f"{heavy_p99:.3f} ms" if heavy_p99 is not None else "n/a",
            heavy_p99 is not None and heavy_p99 < 1.0,
        ),
        Target(
            "allocate_waha_session over-allocated slots",
            "0",
            str(ours.over_allocated + ours.counter_above_max),
            ours.over_allocated == 0 and ours.counter_above_max == 0,
        ),
        Target(
            "allocate_waha_session vs seed flow throughput",
            ">= 0.50x",
            f"{allocation_ratio:.2f}x",
            allocation_ratio >= 0.5,
        ),
        Target(
            "plan of the selection uses an index on waha_servers",
            "no Seq Scan",
            "index" if result.plan_uses_index else "seq scan",
            result.plan_uses_index,
        ),
    ]


def run_benchmark(
    database_url: str | None = None,
    *,
    users: int = 10_000,
    servers_per_user: int = 5,
    heavy_servers: int = 1_000,
    seconds: float = 5.0,
    selection_clients: int | None = None,
    allocation_clients: int = 8,
    allocation_servers: int = 5,
    slots_per_server: int = 200,
    allocation_rounds: int = 3,
    server_side_calls: int = 2_000,
    progress=lambda message: None,
) -> BenchResult:
    """Run every measure on a throwaway PostgreSQL, or on the empty database at `database_url`."""
    selection_clients = selection_clients or max(2, (os.cpu_count() or 1) * 2)
    if database_url:
        return _run(parse_url(database_url), locals(), progress)
    progress("starting a throwaway PostgreSQL")
    with ThrowawayPostgres() as server:
        name = server.create_database("waha_bench")
        return _run(server.url(name), locals(), progress)


def _run(url: sa.URL, options: dict, progress) -> BenchResult:
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        if connection.execute("SELECT to_regclass('public.waha_servers') IS NOT NULL").fetchone()[0]:
            if connection.execute("SELECT EXISTS (SELECT FROM public.waha_servers)").fetchone()[0]:
                raise BenchError(
                    f"{display_url(url)} already holds WAHA servers; the benchmark fills the database it runs on: "
                    "give it an empty database, or omit --database-url to use a throwaway PostgreSQL"
                )
        version = connection.execute("SHOW server_version").fetchone()[0]
    progress(f"migrating {display_url(url)} to head")
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, "head")
    finally:
        engine.dispose()
    result = BenchResult(
        machine={**machine(), "postgresql": version},
        sizes={
            key: options[key]
            for key in (
                "users",
                "servers_per_user",
                "heavy_servers",
                "seconds",
                "selection_clients",
                "allocation_clients",
                "allocation_servers",
                "slots_per_server",
                "allocation_rounds",
                "server_side_calls",
            )
        },
    )
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        progress(
            f"loading {options['users']} users x {options['servers_per_user']} servers + 1 user x {options['heavy_servers']}"
        )
        load_data(connection, options["users"], options["servers_per_user"], options["heavy_servers"])
        result.plan = selection_plan(connection)
        result.plan_uses_index = "Seq Scan" not in result.plan and "Index" in result.plan
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        progress("timing the heavy user inside the server")
        result.heavy_server_side = measure_heavy_server_side(connection, options["server_side_calls"])
    with tempfile.TemporaryDirectory(prefix="waha-bench-") as workdir:
        progress("selection throughput with pgbench")
        with psycopg.connect(conninfo(url), autocommit=True) as connection:
            hand_written = hand_written_select(connection)
        result.selection = measure_selection(
            url,
            hand_written,
            users=options["users"],
            clients=options["selection_clients"],
            seconds=options["seconds"],
            workdir=Path(workdir),
        )
    progress("allocation under contention")
    result.allocation = measure_allocation(
        url,
        clients=options["allocation_clients"],
        servers=options["allocation_servers"],
        slots_per_server=options["slots_per_server"],
        rounds=options["allocation_rounds"],
    )
    result.targets = evaluate(result)
    return result


def _ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def render(result: BenchResult) -> str:
    """The result as a table, as `waha-db bench` prints it."""
    sizes, host = result.sizes, result.machine
    lines = [
        f"machine: {host['cpus']} CPUs, {host['cpu_model']}, PostgreSQL {host['postgresql']}",
        "",
        f"selection: pgbench, {sizes['selection_clients']} clients, prepared, "
        f"{sizes['seconds']:g} s per row in {SELECTION_ROUNDS} alternating rounds; "
        f"{sizes['users']:,} users x {sizes['servers_per_user']} servers + 1 user x {sizes['heavy_servers']:,} servers",
        f"  {'query':56} {'calls/s':>9} {'x SELECT 1':>10} {'median ms':>9} {'p99 ms':>8}",
    ]
    for measure in result.selection:
        lines.append(
            f"  {measure.name:56} {measure.calls_per_second:9.0f} {measure.ratio_to_select or 0:10.2f} "
            f"{_ms(measure.median_ms):>9} {_ms(measure.p99_ms):>8}"
        )
    lines += ["", f"heavy user, timed inside the server ({sizes['server_side_calls']:,} calls each)"]
    for query, timing in sorted(result.heavy_server_side.items()):
        lines.append(f"  {query:56} median {_ms(timing['median_ms'])} ms   p99 {_ms(timing['p99_ms'])} ms")
    lines += ["", "plan of the selection for the heavy user:"]
    lines += ["  " + line for line in result.plan.strip().splitlines()]
    lines += [
        "",
        f"allocation: {sizes['allocation_clients']} clients fill 1 user's {sizes['allocation_servers']} servers x "
        f"{sizes['slots_per_server']} slots, {sizes['allocation_rounds']} rounds",
        f"  {'flow':56} {'allocs/s':>9} {'allocs':>7} {'over-allocated':>14} {'counter > max':>13}",
    ]
    for measure in result.allocation:
        lines.append(
            f"  {measure.name:56} {measure.allocations_per_second:9.0f} {measure.allocations:7} "
            f"{measure.over_allocated:14} {measure.counter_above_max:13}"
        )
    lines += ["", "targets:"]
    for target in result.targets:
        lines.append(
            f"  {'met ' if target.met else 'MISSED'} {target.name}: {target.measured} (wanted {target.wanted})"
        )
    return "\n".join(lines)
