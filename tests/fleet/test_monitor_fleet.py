"""The monitor over a fleet: one round costs the slowest server, a few statements, and one user cannot stall it."""

from __future__ import annotations

import time
import uuid

import sqlalchemy as sa

from tests.support.factories import OLD_MAXIMUM, add_servers_before_0011
from waha_db.fleet import monitor as fleet_monitor
from waha_db.fleet.health import RoundOptions
from waha_db.fleet.transport import Limits


def health_of(engine, server_ids):
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT server_id, consecutive_failures, last_error FROM public.waha_server_health "
                "WHERE server_id = ANY (:ids)"
            ),
            {"ids": list(server_ids)},
        ).all()
    return {row.server_id: (row.consecutive_failures, row.last_error) for row in rows}


def statements_of_one_round(engine, **options) -> tuple[int, list[fleet_monitor.RoundSummary]]:
    counted = []
    summaries = []

    def count(*args):
        counted.append(1)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        fleet_monitor.monitor(
            engine, once=True, emit=lambda line: None, backoff=0, on_round=summaries.append, **options
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    return len(counted), summaries


def test_a_round_records_its_outcomes_in_a_few_statements_whatever_the_fleets_size(engine, fake_waha):
    waha = fake_waha("healthy")
    broken = fake_waha("error_500")
    users = [uuid.uuid4() for _ in range(3)]
    for user in users:
        add_servers_before_0011(engine, user, [f"{waha.url}/{user}/{n}" for n in range(10)] + [f"{broken.url}/{user}"])

    small, [first] = statements_of_one_round(engine)
    for user in users:
        add_servers_before_0011(engine, user, [f"{waha.url}/{user}/more/{n}" for n in range(30)])
    large, [second] = statements_of_one_round(engine)

    assert (first.probed, first.healthy, first.failing) == (33, 30, 3)
    assert (second.probed, second.healthy, second.failing) == (123, 120, 3)
    # Reads (servers, health, identities), the outcomes, the versions: not one round trip per server.
    assert small == large <= 6, (small, large)


def test_eight_hanging_servers_at_the_old_maxima_do_not_stall_another_users_server(engine, fake_waha):
    hanging = fake_waha("hang")
    healthy = fake_waha("healthy")
    attacker, other = uuid.uuid4(), uuid.uuid4()
    stalled = add_servers_before_0011(
        engine, attacker, [f"{hanging.url}/{n}" for n in range(8)], timeout=OLD_MAXIMUM, retry_attempts=OLD_MAXIMUM
    )
    [victim] = add_servers_before_0011(engine, other, [healthy.url])
    summaries: list[fleet_monitor.RoundSummary] = []

    started = time.monotonic()
    fleet_monitor.monitor(
        engine,
        once=True,
        emit=lambda line: None,
        options=RoundOptions(Limits(concurrency=2, per_host=2), deadline=3),
        on_round=summaries.append,
    )
    elapsed = time.monotonic() - started

    recorded = health_of(engine, stalled + [victim])
    assert recorded[victim] == (0, None)
    assert {recorded[server_id] for server_id in stalled} == {(1, "no answer within the round's deadline (3 s)")}
    assert len(healthy.requests) == 1
    assert (summaries[0].probed, summaries[0].healthy, summaries[0].failing) == (9, 1, 8)
    assert 3 <= elapsed < 3 + 5, elapsed


def test_the_round_summary_line_says_probed_healthy_failing_and_time():
    summary = fleet_monitor.RoundSummary(probed=1000, healthy=850, failing=150, seconds=7.94)

    assert summary.line().split(" ", 1)[1] == "round: 1000 servers probed, 850 healthy, 150 failing, 7.9 s"
