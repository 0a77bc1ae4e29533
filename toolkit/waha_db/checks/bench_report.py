"""What a benchmark run's figures mean, and how `waha-db bench` prints them: pure, from the figures alone."""

from __future__ import annotations

from waha_db.checks.bench_figures import BenchResult, Goal, paired_ratio, ratio_or_zero
from waha_db.checks.bench_load import ALLOCATION_SERVERS_PER_USER


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
            ratio = ratio_or_zero(
                smallest.user(most).function_calls_per_second, largest.user(most).function_calls_per_second
            )
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
            ratio_or_zero(measure.allocations_per_second, seed[(measure.clients, measure.users)].allocations_per_second)
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
                f"{ratio_or_zero(measure.function_calls_per_second, ceiling):10.2f} "
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
    for allocation in result.allocation:
        lines.append(
            f"  {allocation.clients:>7} {allocation.users:>5} {allocation.flow:24} {allocation.allocations_per_second:9,.0f} "
            f"{allocation.allocations:7} {allocation.over_allocated:14} {allocation.counter_above_max:13} "
            f"{allocation.counters_off:12}"
        )
    lines += ["", "goals:"]
    for goal in result.goals:
        lines.append(f"  {'met ' if goal.met else 'MISSED'} {goal.name}: {goal.measured} (wanted {goal.wanted})")
    return "\n".join(lines)
