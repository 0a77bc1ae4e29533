"""Selection measures of the benchmark (waha_db.checks.bench): the function against its own query.

Calls/s with pgbench in alternating windows, latency timed inside the server, the rows
one call reads under the generic plan, and that plan.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg
import sqlalchemy as sa

from waha_db.checks.bench_database import BenchError, pgbench
from waha_db.checks.bench_figures import Latency, LoadAverage
from waha_db.checks.bench_load import measured_user, one_row
from waha_db.database import display_url

# The function's own query is its first RETURN QUERY statement (its common path),
# read from the database with user_uuid and excluded_server_ids left as names.
_FUNCTION_QUERY = re.compile(r"RETURN\s+QUERY\s+(.*?);", re.S | re.I)


def function_query(connection: psycopg.Connection, *, user: str, excluded: str) -> str:
    """get_available_waha_server's query with `user` and `excluded` (SQL text) in place of its arguments."""
    source: str = one_row(
        connection,
        "SELECT prosrc FROM pg_catalog.pg_proc WHERE oid = 'public.get_available_waha_server(uuid, uuid[])'::regprocedure",
    )[0]
    source = "\n".join(line.split("--", 1)[0].rstrip() for line in source.splitlines())
    found = _FUNCTION_QUERY.search(source)
    if not found:
        raise BenchError(
            "get_available_waha_server's body has no RETURN QUERY statement; update toolkit/waha_db/checks/bench_selection.py"
        )
    query = "\n".join(line for line in found.group(1).splitlines() if line.strip())
    query = re.sub(r"\bexcluded_server_ids\b", lambda _: excluded, query)
    return re.sub(r"\buser_uuid\b", lambda _: user, query)


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
    if url.database:
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
    runs: list[tuple[str, str, dict[str, str]]] = [("select_1", "SELECT 1;\n", {})]
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
        before = one_row(connection, ROWS_READ)[0]
        picked = connection.execute(
            "SELECT prioridade FROM public.get_available_waha_server(%s::uuid)", (user,)
        ).fetchone()
        read = one_row(connection, ROWS_READ)[0] - before
        bound = one_row(
            connection,
            "SELECT count(*) + 1 FROM public.waha_servers WHERE user_id = %s::uuid AND ativo AND prioridade >= %s",
            (user, picked[0] if picked else 0),
        )[0]
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
