"""A round of probes: all at once, bounded by the slowest server and by the round's deadline, stopped on request."""

from __future__ import annotations

import threading
import time
import uuid

from tests.support.network import free_port
from waha_db.fleet.asking import Target, ask_many, budget
from waha_db.fleet.probe import VERSION_PATH, read_version
from waha_db.fleet.rounds import fair_order
from waha_db.fleet.transport import Limits


def test_a_round_costs_the_slowest_servers_budget_not_the_sum(fake_waha):
    """40 hanging servers of 1 s each: with the former 8 threads, 5 s at least; at once, about 1 s."""
    hanging = fake_waha("hang")
    healthy = fake_waha("healthy")
    targets = [Target(f"{hanging.url}/h{number}", timeout=1, retry_attempts=0) for number in range(40)]
    targets += [Target(healthy.url, timeout=5, retry_attempts=0)] * 10

    started = time.monotonic()
    answers = ask_many(targets, VERSION_PATH, read_version, limits=Limits(concurrency=500, per_host=100))
    elapsed = time.monotonic() - started

    assert [answer.error for answer in answers[:40]] == ["timed out after 1 s"] * 40
    assert all(answer.ok for answer in answers[40:])
    assert elapsed < 1.5 * budget(1, 0) + 2, elapsed  # slack for a loaded machine, still far below 5 s


def test_no_more_requests_at_once_to_one_address_than_the_per_host_limit(fake_waha):
    slow = fake_waha("slow", delay=0.3)
    targets = [Target(f"{slow.url}/w{number}", timeout=5, retry_attempts=0) for number in range(12)]

    ask_many(targets, VERSION_PATH, read_version, limits=Limits(concurrency=100, per_host=3))

    assert len(slow.requests) == 12
    assert slow.max_in_flight == 3


def test_no_more_requests_at_once_in_all_than_the_global_cap(fake_waha):
    fakes = [fake_waha("slow", delay=0.3) for _ in range(6)]
    targets = [Target(fake.url, timeout=5, retry_attempts=0) for fake in fakes for _ in range(2)]
    in_flight = []
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.02):
            in_flight.append(sum(fake.in_flight for fake in fakes))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    ask_many(targets, VERSION_PATH, read_version, limits=Limits(concurrency=2, per_host=4))
    sampling.set()
    sampler.join()

    assert sum(len(fake.requests) for fake in fakes) == 12
    assert max(in_flight) == 2


def test_the_rounds_deadline_cuts_a_server_whose_own_budget_is_longer(fake_waha):
    hanging = fake_waha("hang")
    healthy = fake_waha("healthy")
    targets = [Target(hanging.url, timeout=120, retry_attempts=10), Target(healthy.url, timeout=2, retry_attempts=0)]

    started = time.monotonic()
    slow, quick = ask_many(targets, VERSION_PATH, read_version, deadline=1.5)
    elapsed = time.monotonic() - started

    assert slow.error == "no answer within the round's deadline (1.5 s)" and not slow.interrupted
    assert slow.attempts == 1
    assert quick.ok
    assert 1.5 <= elapsed < 1.5 + 5


def test_a_stop_cancels_the_probes_in_flight_at_once(fake_waha):
    hanging = fake_waha("hang")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()

    started = time.monotonic()
    [answer] = ask_many([Target(hanging.url, timeout=120, retry_attempts=10)], VERSION_PATH, read_version, stop=stop)

    assert time.monotonic() - started < 0.5 + 2
    assert answer.interrupted and answer.error == "not finished: stopped"


def test_refused_connections_wait_for_their_retries_without_holding_a_place(fake_waha):
    """Back-off sleeps outside the global cap: three refusing servers with 1 + 2 s of back-off each, one place
    in all: about 3 s, not the 9 s of back-offs taken one after the other."""
    refusing = [Target(f"http://127.0.0.1:{free_port()}", timeout=2, retry_attempts=2) for _ in range(3)]
    healthy = fake_waha("healthy")

    started = time.monotonic()
    answers = ask_many(
        refusing + [Target(healthy.url, timeout=2, retry_attempts=0)],
        VERSION_PATH,
        read_version,
        limits=Limits(concurrency=1, per_host=1),
        backoff=1,
    )
    elapsed = time.monotonic() - started

    assert [answer.attempts for answer in answers[:3]] == [3, 3, 3]
    assert answers[3].ok
    assert 3 <= elapsed < 6, elapsed


def test_progress_counts_answers_and_failures_as_they_come(fake_waha):
    healthy = fake_waha("healthy")
    seen = []

    ask_many(
        [Target(healthy.url, timeout=2, retry_attempts=0), Target(f"http://127.0.0.1:{free_port()}", retry_attempts=0)],
        VERSION_PATH,
        read_version,
        progress=lambda done, total, failing: seen.append((done, total, failing)),
    )

    assert seen[-1] == (2, 2, 1)
    assert [done for done, _, _ in seen] == [1, 2]


def test_fair_order_takes_one_server_of_each_user_in_turn():
    alice, bob, carol = (uuid.uuid4() for _ in range(3))
    owners = [alice] * 4 + [bob, carol, carol]

    order = fair_order(owners, lambda owner: owner)

    assert [owners[position] for position in order] == [alice, bob, carol, alice, carol, alice, alice]
    assert sorted(order) == list(range(len(owners)))
