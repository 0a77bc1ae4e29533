"""WAHA's /health and worker id in `servers test` (test_servers): real HTTP to fake WAHA servers, a real database.

Each fake answers in the shapes of its version (tests/fleet/waha_shapes.py): 2026's
/health (200 ok, 503 error / shutting_down) and worker ids; before 2026.6.1 a Core
server refuses /health with 422, as the recorded 2024.10.8 server does.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.support.databases import stored_health
from tests.support.factories import FLEET_USER as USER
from tests.support.factories import add_waha_server
from waha_db.fleet import health
from waha_db.fleet.checkup import read_health, read_worker
from waha_db.fleet.probe import DRAINED_REASON, UNHEALTHY_REASON, AnswerFailure, describe_probe, read_version
from waha_db.fleet.transport import Limits
from waha_db.fleet.workers import shared_worker_warnings


@pytest.fixture
def connection(engine):
    with health.autocommit_connection(engine) as connection:
        yield connection


def check(connection, *server_ids, **options):
    return health.test_servers(connection, health.load_servers(connection, server_ids=list(server_ids)), **options)


def recorded_worker(connection, server_id):
    return connection.execute(
        sa.text("SELECT waha_worker_id FROM public.waha_server_health WHERE server_id = :id"), {"id": server_id}
    ).scalar_one()


def best(connection):
    return connection.execute(sa.text("SELECT nome FROM public.get_available_waha_server(:user)"), {"user": USER}).all()


# --- what an answer says (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "answer", "said"),
    [
        (200, {"status": "ok", "info": {}}, "ok"),
        (503, {"status": "error", "error": {"mongodb": {"status": "down"}}}, "error"),
        (503, {"status": "shutting_down"}, "shutting_down"),
        (422, {"statusCode": 422, "message": "The feature is available only in Plus version."}, None),
        (404, {"statusCode": 404, "message": "Cannot GET /health"}, None),
        (200, {"status": "shutting_down"}, None),  # not how WAHA says it: nothing is inferred
        (503, None, None),  # a proxy's page, not WAHA's answer
        (500, {"status": "error"}, None),
    ],
)
def test_health_answers_count_only_as_waha_documents_them(status, answer, said):
    assert read_health(status, answer) == said


@pytest.mark.parametrize(
    ("status", "answer", "worker"),
    [
        (200, {"worker": {"id": "worker-a"}}, "worker-a"),
        (200, {"worker": {"id": ""}}, None),  # the recorded 2024.10.8 server
        (200, {"startTimestamp": 1, "uptime": 2}, None),
        (404, {"statusCode": 404}, None),
    ],
)
def test_a_worker_id_is_read_and_none_is_none(status, answer, worker):
    assert read_worker(status, answer) == worker


@pytest.mark.parametrize(("status", "answer"), [(500, {"worker": {"id": "x"}}), (200, ["not", "an", "object"])])
def test_a_status_answer_that_does_not_tell_is_no_answer(status, answer):
    with pytest.raises(AnswerFailure):
        read_worker(status, answer)


# --- /health ------------------------------------------------------------------------------------------


def test_a_2026_server_that_answers_ok_is_healthy_and_says_so(connection, fake_waha):
    waha = fake_waha(worker="worker-a")
    server = add_waha_server(connection, USER, waha.url, "principal")

    [item] = check(connection, server)

    assert (item.probe.health, item.probe.outcome, stored_health(connection, server)) == (
        "ok",
        None,
        (0, None, False, True),
    )
    assert describe_probe(item.probe).endswith("ms, WAHA 2026.9.1 (GOWS, CORE), health ok, worker worker-a")
    assert sorted(path for path, _ in waha.requests) == ["/api/server/status", "/api/server/version", "/health"]


def test_a_server_shutting_down_is_drained_ranked_last_and_back_when_it_answers_ok(connection, fake_waha):
    leaving, staying = fake_waha(health="shutting_down"), fake_waha()
    drained = add_waha_server(connection, USER, leaving.url, "leaving", prioridade=10)
    add_waha_server(connection, USER, staying.url, "staying", prioridade=0)

    [item] = check(connection, drained)

    assert item.probe.reachable and item.probe.drained and not item.probe.unhealthy
    assert item.health.drained and item.health.state == "drained"
    assert stored_health(connection, drained) == (1, DRAINED_REASON, True, False)
    assert health.describe_checked(item)[1].startswith(
        "  recorded: drained: no new sessions while WAHA shuts down (ranked after the healthy servers), "
        "cooling down 30 s, until "
    )
    assert best(connection) == [("staying",)], "the higher priority server is drained"

    leaving.health = "ok"
    [item] = check(connection, drained)
    assert item.health.state == "healthy" and best(connection) == [("leaving",)]


def test_a_server_whose_own_health_check_fails_is_failing(connection, fake_waha):
    server = add_waha_server(connection, USER, fake_waha(tier="PLUS", health="error").url, "principal")

    [item] = check(connection, server)

    assert item.probe.unhealthy and item.health.state == "failing"
    assert stored_health(connection, server) == (1, UNHEALTHY_REASON, True, False)


@pytest.mark.parametrize(
    "options",
    [
        {"version": "2025.11.3", "health": "shutting_down"},  # WAHA Core 2025 refuses /health (422)
        {"version": "2024.10.1", "engine": "WEBJS", "health": "error"},
        {"absent": ("/health",)},  # a proxy that does not route it: 404
        {"endpoint_modes": {"/health": "not_json"}},
    ],
)
def test_where_health_is_refused_or_absent_the_version_decides(connection, fake_waha, options):
    server = add_waha_server(connection, USER, fake_waha(**options).url, "principal")

    [item] = check(connection, server)

    assert (item.probe.reachable, item.probe.health, item.health.state) == (True, None, "healthy")


def test_a_server_that_does_not_answer_its_version_is_asked_nothing_more(connection, fake_waha):
    waha = fake_waha("error_500")
    server = add_waha_server(connection, USER, waha.url, "principal", retry_attempts=1)

    check(connection, server, backoff=0)

    assert [path for path, _ in waha.requests] == ["/api/server/version"] * 2


# --- workers --------------------------------------------------------------------------------------------


def test_the_worker_id_is_recorded_and_an_empty_or_missing_one_is_none(connection, fake_waha):
    named = add_waha_server(connection, USER, fake_waha(worker="worker-a").url, "named")
    empty = add_waha_server(connection, USER, fake_waha(worker="").url, "empty")
    absent = add_waha_server(
        connection, USER, fake_waha(worker="worker-x", absent=("/api/server/status",)).url, "absent"
    )

    checked = check(connection, named, empty, absent)

    assert [(item.probe.worker_known, item.probe.worker_id) for item in checked] == [
        (True, None),
        (True, None),
        (True, "worker-a"),
    ]  # in the order of load_servers: by name
    assert [recorded_worker(connection, server) for server in (named, empty, absent)] == ["worker-a", None, None]
    assert [item.identity.worker_id for item in checked] == [None, None, "worker-a"]


def test_a_worker_that_cannot_be_read_keeps_the_one_recorded(connection, fake_waha):
    waha = fake_waha(worker="worker-a")
    server = add_waha_server(connection, USER, waha.url, "principal")
    check(connection, server)

    waha.endpoint_modes["/api/server/status"] = "error_500"
    [item] = check(connection, server)

    assert (item.probe.reachable, item.probe.worker_known) == (True, False)
    assert recorded_worker(connection, server) == "worker-a" and item.identity.worker_id == "worker-a"


def test_two_active_servers_of_a_user_with_one_worker_are_flagged(connection, fake_waha):
    first = add_waha_server(connection, USER, fake_waha(worker="worker-a").url, "first")
    second = add_waha_server(connection, USER, fake_waha(worker="worker-a").url, "second")
    add_waha_server(connection, USER, fake_waha(worker="worker-b").url, "other")
    strangers = add_waha_server(connection, uuid.uuid4(), fake_waha(worker="worker-a").url, "a stranger's")
    health.test_servers(connection, health.load_servers(connection, user_id=USER))
    check(connection, strangers)

    [warning] = shared_worker_warnings(connection, [USER])

    assert warning.startswith(
        f"first ({first}) and second ({second}) of user {USER} report the same WAHA worker 'worker-a' "
        "(GET /api/server/status): one WAHA registered twice, or two WAHA servers given one WAHA_WORKER_ID"
    )
    connection.execute(sa.text("UPDATE public.waha_servers SET ativo = false WHERE id = :id"), {"id": second})
    assert shared_worker_warnings(connection, [USER]) == []


# --- the budget ----------------------------------------------------------------------------------------


def test_the_extra_requests_keep_to_the_per_host_limit(connection, fake_waha):
    waha = fake_waha("slow", delay=0.3)
    servers = [add_waha_server(connection, uuid.uuid4(), waha.url, f"row {number}", timeout=5) for number in range(4)]

    checked = check(connection, *servers, options=health.RoundOptions(limits=Limits(concurrency=50, per_host=2)))

    assert all(item.probe.reachable and item.probe.health == "ok" for item in checked)
    assert len(waha.requests) == 12 and waha.max_in_flight == 2


def test_a_deadline_during_the_extra_requests_keeps_what_the_version_said(connection, fake_waha):
    waha = fake_waha(worker="worker-a", endpoint_modes={"/health": "hang"})
    server = add_waha_server(connection, USER, waha.url, "principal", timeout=30)

    [item] = check(connection, server, options=health.RoundOptions(deadline=1.5))

    assert item.probe.reachable and (item.probe.health, item.probe.worker_known) == (None, False)
    assert item.health.state == "healthy" and item.identity.version == "2026.9.1"


def test_what_a_server_says_it_is_comes_out_with_control_characters_escaped():
    version, engine, tier = read_version({"version": "2026.9.1\x1b[2J", "engine": "GOWS\r", "tier": "CORE"})
    worker = read_worker(200, {"worker": {"id": "w\x07"}})

    assert (version, engine, tier, worker) == ("2026.9.1\\x1b[2J", "GOWS\\r", "CORE", "w\\x07")
