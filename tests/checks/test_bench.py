"""Smoke test of the benchmark at toy sizes: every measure runs and the table renders.

The real figures come from `waha-db bench` (docs/BENCHMARKS.md), never from the suite.
"""

from __future__ import annotations

from waha_db.checks import bench


def test_benchmark_runs_every_measure_on_an_empty_database(fresh_database):
    url = fresh_database("empty")

    result = bench.run_benchmark(
        url.render_as_string(hide_password=False),
        users=50,
        heavy_servers=40,
        seconds=1,
        selection_clients=2,
        allocation_clients=4,
        allocation_servers=2,
        slots_per_server=10,
        allocation_rounds=1,
        server_side_calls=20,
    )

    assert [measure.name for measure in result.selection][:3] == [
        "SELECT 1 (ceiling)",
        "hand-written SELECT",
        "get_available_waha_server",
    ]
    assert all(measure.calls_per_second > 0 for measure in result.selection)
    ours = result.allocation[0]
    assert (ours.name, ours.allocations, ours.over_allocated, ours.counter_above_max) == (
        "allocate_waha_session",
        20,
        0,
        0,
    )
    assert result.plan_uses_index, result.plan
    table = bench.render(result)
    assert "allocate_waha_session" in table and "seed 3-statement flow" in table and "targets:" in table


def test_benchmark_refuses_a_database_that_holds_servers(fresh_database):
    url = fresh_database("head")
    import psycopg

    from tests.conftest import conninfo

    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        connection.execute(
            "INSERT INTO public.waha_servers (user_id, nome, api_url) VALUES (gen_random_uuid(), 'prod', 'https://prod.waha.example')"
        )
    try:
        bench.run_benchmark(url.render_as_string(hide_password=False), users=1)
    except bench.BenchError as error:
        assert "empty database" in str(error)
    else:
        raise AssertionError("the benchmark ran on a database that holds servers")
