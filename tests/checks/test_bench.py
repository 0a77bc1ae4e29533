"""The benchmark at toy sizes: every measure runs, compares like with like, and its goals read the figures.

The real figures come from `waha-db bench` (docs/BENCHMARKS.md), never from the suite:
nothing here asserts a speed.
"""

from __future__ import annotations

import json
import statistics
import threading

import psycopg
import pytest
from click.testing import CliRunner

from tests.support.databases import run_sql
from waha_db import cli
from waha_db.checks import bench, suite
from waha_db.checks.legacy import LEGACY_APP_TABLE
from waha_db.checks.verify import contents_of_public
from waha_db.database import conninfo, create_engine

TOY_SIZES = dict(
    table_servers=(600, 300),
    user_servers=(40, 5),
    seconds=1,
    windows=1,
    selection_clients=2,
    server_side_calls=20,
    allocation_clients=(2, 4),
    allocation_users=(1, 4),
    allocation_slots=20,
    allocation_rounds=1,
)


def left_in_public(url) -> list[str]:
    """What the database holds in schema public, as verify's refusal names it."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return contents_of_public(connection)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def toy_run(cluster):
    """One benchmark run on two small tables, users with 5 and 40 servers, 2 and 4 allocating clients.

    Yields the result, and what the database held in schema public after the run.
    """
    name = cluster.server.create_database("bench_toy")
    try:
        result = bench.run_benchmark(cluster.url(name).render_as_string(hide_password=False), **TOY_SIZES)
        yield result, left_in_public(cluster.url(name))
    finally:
        cluster.server.drop_database(name)


@pytest.fixture
def bench_command():
    """``bench_command(*args)``: `waha-db bench ARGS` in-process; the click Result."""
    runner = CliRunner()
    return lambda *args: runner.invoke(cli.main, ["bench", *args], catch_exceptions=False)


def test_selection_is_measured_for_every_table_and_user(toy_run):
    toy_run, _ = toy_run
    measured = [(table.table_servers, [user.user_servers for user in table.users]) for table in toy_run.tables]
    assert measured == [(300, [5, 40]), (600, [5, 40])]
    for table in toy_run.tables:
        assert table.select_1_calls_per_second > 0
        for user in table.users:
            assert user.function_calls_per_second > 0 and user.query_calls_per_second > 0
            assert user.function_server_side.median_ms > 0 and user.query_server_side.median_ms > 0


def test_a_call_under_the_generic_plan_reads_no_more_than_the_users_best_levels(toy_run):
    toy_run, _ = toy_run
    for table in toy_run.tables:
        for user in table.users:
            assert 0 < user.rows_read <= user.rows_bound, (table.table_servers, user)


def test_allocate_waha_session_fills_every_slot_and_keeps_the_counters_exact(toy_run):
    toy_run, _ = toy_run
    ours = [measure for measure in toy_run.allocation if measure.flow == "allocate_waha_session"]
    assert [(measure.clients, measure.users) for measure in ours] == [(2, 1), (4, 1), (2, 4), (4, 4)]
    for measure in ours:
        assert (measure.allocations, measure.over_allocated, measure.counter_above_max, measure.counters_off) == (
            20,
            0,
            0,
            0,
        )


def test_the_report_shows_each_part_and_the_figures_are_json(toy_run):
    toy_run, _ = toy_run
    table = bench.render(toy_run)
    for part in (
        "load average",
        "table of 300 servers",
        "table of 600 servers",
        "generic plan",
        "Index Cond",
        "allocate_waha_session",
        "seed 3-statement flow",
        "goals:",
    ):
        assert part in table
    figures = json.loads(json.dumps(toy_run.as_dict(), default=str))
    assert figures["tables"][0]["users"][0]["function_vs_query"] > 0
    assert figures["allocation"][0]["allocations_per_second"] > 0


def test_the_functions_own_query_with_parameters_answers_as_the_function(fresh_database):
    url = fresh_database("head")
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        bench.load_table(connection, 1_200, (5, 100))
        connection.execute(
            f"PREPARE own_query (uuid, uuid[]) AS {bench.function_query(connection, user='$1', excluded='$2')}"
        )
        for servers in (5, 100):
            user = bench.measured_user(servers)
            best = connection.execute("SELECT id FROM public.get_available_waha_server(%s::uuid)", (user,)).fetchone()[
                0
            ]
            for excluded in ([], [best]):
                # EXECUTE takes no bound parameters: the client writes the arguments in.
                by_hand = (
                    psycopg.ClientCursor(connection)
                    .execute("EXECUTE own_query (%s::uuid, %s::uuid[])", (user, excluded))
                    .fetchall()
                )
                by_function = connection.execute(
                    "SELECT * FROM public.get_available_waha_server(%s::uuid, %s::uuid[])", (user, excluded)
                ).fetchall()
                assert len(by_function) == 1 and by_hand == by_function


def test_a_table_too_small_for_the_measured_users_is_refused_before_anything_is_written(fresh_database):
    url = fresh_database("head")
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        connection.execute(
            "INSERT INTO public.waha_servers (user_id, nome, api_url) VALUES (gen_random_uuid(), 'kept', 'https://kept.waha.example')"
        )
        with pytest.raises(bench.BenchError, match="cannot hold the measured users' 1,005 servers"):
            bench.load_table(connection, 1_000, (5, 1_000))
        assert connection.execute("SELECT nome FROM public.waha_servers").fetchall() == [("kept",)]


def test_a_run_leaves_the_database_it_was_given_empty(toy_run):
    _, left = toy_run
    assert left == []


def test_benchmark_refuses_a_database_that_holds_servers(fresh_database):
    url = fresh_database("head")
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        connection.execute(
            "INSERT INTO public.waha_servers (user_id, nome, api_url) VALUES (gen_random_uuid(), 'prod', 'https://prod.waha.example')"
        )
    with pytest.raises(bench.BenchError, match="empty database"):
        bench.run_benchmark(url.render_as_string(hide_password=False), table_servers=(1_200,))
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        assert connection.execute("SELECT nome FROM public.waha_servers").fetchall() == [("prod",)]


def test_benchmark_refuses_an_application_database_and_changes_nothing(cluster, fresh_database, bench_command):
    url = fresh_database("empty")
    run_sql(url, LEGACY_APP_TABLE)
    database = suite.Database(url)
    try:
        result = bench_command(
            "--database-url",
            url.render_as_string(hide_password=False),
            "--table",
            "2000",
            "--seconds",
            "1",
            "--windows",
            "1",
        )

        assert result.exit_code == 1
        assert "is not empty (schema public holds relation campaigns" in result.output
        assert database.schema() == database.baseline and database.rows() == database.baseline_rows
    finally:
        database.close()


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        (
            {"table_servers": (1_000, 10_000), "user_servers": (5, 100, 1_000)},
            "a table of 1,000 servers cannot hold the measured users' 1,105 servers",
        ),
        ({"allocation_clients": (0, 8)}, "the benchmark's allocation_clients must be 1 or more"),
        ({"windows": 0}, "the benchmark's windows must be 1 or more"),
        # The throwaway server accepts 200 connections less the superuser's 3.
        ({"allocation_clients": (8, 300)}, "accepts 197 connections .* the benchmark opens 301 at once"),
    ],
)
def test_options_that_cannot_work_are_refused_before_anything_is_written(fresh_database, options, refusal):
    url = fresh_database("empty")
    with pytest.raises(bench.BenchError, match=refusal):
        bench.run_benchmark(url.render_as_string(hide_password=False), **{**TOY_SIZES, **options})
    assert left_in_public(url) == []


def test_a_table_too_small_is_refused_by_the_command_before_the_database_is_migrated(fresh_database, bench_command):
    url = fresh_database("empty")
    result = bench_command("--database-url", url.render_as_string(hide_password=False), "--table", "1000")

    assert result.exit_code == 1
    assert "Error: a table of 1,000 servers cannot hold the measured users' 1,105 servers" in result.output
    assert "migrating" not in result.output
    assert left_in_public(url) == []


def test_options_of_the_selection_benchmark_are_refused_with_fleet_before_anything_runs(fresh_database, bench_command):
    url = fresh_database("empty")
    result = bench_command("--fleet", "--database-url", url.render_as_string(hide_password=False), "--table", "2000")

    assert result.exit_code == 2
    assert "--database-url, --table go without --fleet" in result.output
    assert left_in_public(url) == []


def test_a_supabase_database_is_refused_before_anything_is_written(fresh_database):
    # Its auth.users does not hold the benchmark's made-up users, which the servers' foreign key would refuse.
    url = fresh_database("supabase_empty")
    with pytest.raises(bench.BenchError, match="has auth.users"):
        bench.run_benchmark(url.render_as_string(hide_password=False), **TOY_SIZES)
    assert left_in_public(url) == []


def test_a_client_that_cannot_connect_stops_the_allocation_run_with_its_error(cluster, fresh_database):
    url = fresh_database("head")
    role = "bench_two_connections"
    run_sql(cluster.url("postgres"), f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
    try:
        outcome: list[BaseException] = []

        def fill() -> None:
            try:
                bench.fill(url.set(username=role), [bench.allocation_user(1, 1)], 4, bench.allocate_with_function)
            except BaseException as error:  # noqa: BLE001 - handed to the test's thread
                outcome.append(error)

        # A daemon thread: were the clients to wait for each other forever, the test fails instead of hanging.
        runner = threading.Thread(target=fill, daemon=True)
        runner.start()
        runner.join(timeout=120)

        assert not runner.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], psycopg.OperationalError)
        assert "too many connections for role" in str(outcome[0])
    finally:
        run_sql(cluster.url("postgres"), f"DROP ROLE {role}")


def figures(
    *,
    light: float,
    heavy: float,
    heavy_on_large: float,
    function_vs_query: float = 0.9,
    rows_read: int = 10,
    over_allocated: int = 0,
    counters_off: int = 0,
) -> bench.BenchResult:
    """A result made by hand: two tables, a 5- and a 1,000-server user, one allocation run per flow."""
    latency = bench.Latency(0.05, 0.1)

    def user(servers: int, calls: float) -> bench.UserSelection:
        windows = [calls * 0.9, calls, calls * 1.1]  # one slower and one faster round, as load comes and goes
        return bench.UserSelection(
            servers, windows, [window / function_vs_query for window in windows], latency, latency, rows_read, 85
        )

    return bench.BenchResult(
        machine={},
        sizes={},
        tables=[
            bench.TableSelection(10_000, [80_000], [user(5, light), user(1_000, heavy)]),
            bench.TableSelection(1_000_000, [80_000], [user(5, light), user(1_000, heavy_on_large)]),
        ],
        allocation=[
            bench.AllocationMeasure(32, 1, "allocate_waha_session", 1_000, 1.0, over_allocated, 0, counters_off),
            bench.AllocationMeasure(32, 1, "seed 3-statement flow", 1_050, 1.0, 50, 50, 0),
        ],
    )


def goals_missed(result: bench.BenchResult) -> list[str]:
    return [goal.name for goal in bench.evaluate(result) if not goal.met]


def test_goals_are_met_by_figures_that_meet_them():
    assert goals_missed(figures(light=16_000, heavy=9_000, heavy_on_large=9_000)) == []


@pytest.mark.parametrize(
    ("changed", "missed"),
    [
        ({"heavy": 7_000, "heavy_on_large": 7_000}, "1,000-server user vs 5-server user, calls/s, 10,000-server table"),
        (
            {"heavy_on_large": 11_000},
            "1,000-server user on the 10,000-server table vs the 1,000,000-server one, calls/s",
        ),
        ({"function_vs_query": 0.7}, "function vs its own query with a parameter, every table and user"),
        ({"rows_read": 1_001}, "rows one call reads under the generic plan, every table and user"),
        ({"over_allocated": 1}, "allocate_waha_session over-allocated slots at 32 clients"),
        ({"counters_off": 1}, "allocate_waha_session counters that differ from their occupying sessions"),
    ],
)
def test_each_goal_is_missed_by_figures_that_miss_it(changed, missed):
    measured = {"light": 16_000, "heavy": 9_000, "heavy_on_large": 9_000, **changed}
    assert goals_missed(figures(**measured)) == [missed]


def test_a_ratio_pairs_the_windows_of_each_round_so_a_burst_of_load_cancels_out():
    # The machine is loaded in rounds 2 and 3; in round 3 the load arrived between the two windows.
    function, query = [100, 40, 40], [125, 50, 125]

    assert bench.paired_ratio(function, query) == pytest.approx(0.8)
    assert statistics.median(function) / statistics.median(query) == pytest.approx(0.32)  # what medians alone would say
