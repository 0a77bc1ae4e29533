"""waha-db and the WAHA functions through PgBouncer in transaction mode, as Supabase's pooler
serves port 6543: several server connections, consecutive transactions of one client on
different ones (tests/support/pgbouncer.py)."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from tests.polling import wait_until
from tests.support.concurrency import together
from tests.support.databases import run_sql
from tests.support.factories import add_seed_servers, add_server, add_user
from tests.support.monitor import RunningMonitor
from tests.support.pgbouncer import PgBouncerNotFound, ThrowawayPgBouncer
from waha_db.database import conninfo, create_engine

pytestmark = pytest.mark.pgbouncer

ROUNDS = 12  # psycopg would prepare a statement after its fifth run on a connection


@pytest.fixture(scope="module")
def pooler(cluster):
    try:
        with ThrowawayPgBouncer(cluster.server.port, pool_size=4) as bouncer:
            yield bouncer
    except PgBouncerNotFound as missing:
        pytest.fail(str(missing), pytrace=False)


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_the_pooler_moves_a_client_between_server_connections(pooler, fresh_database):
    """What the other tests rely on: one client's transactions do not stick to one server connection."""
    url = pooler.url(fresh_database("empty").database)
    with psycopg.connect(conninfo(url), autocommit=True, prepare_threshold=None) as client:
        backends = {client.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()[0] for _ in range(8)}
    assert len(backends) > 1


def test_waha_db_commands_work_through_the_pooler(pooler, fresh_database, waha_db):
    direct = fresh_database("supabase_empty")
    url = pooler.url(direct.database)
    assert "upgraded to" in ok(waha_db(url, "upgrade", "--yes"))
    assert "state: at head" in ok(waha_db(url, "status", "--check"))
    user = str(add_user(direct))
    ids = add_seed_servers(waha_db, url, user)
    principal = ids["Servidor Principal"]
    assert "Servidor Backup" in ok(waha_db(url, "servers", "list", "--user", user))
    assert (
        json.loads(ok(waha_db(url, "servers", "best", "--user", user, "--json")))["server"]["nome"]
        == "Servidor Principal"
    )
    ok(waha_db(url, "servers", "update", principal, "--max-sessions", "60"))
    ok(waha_db(url, "servers", "disable", principal))
    assert "Servidor Backup" in ok(waha_db(url, "servers", "best", "--user", user))
    ok(waha_db(url, "servers", "enable", principal))
    ok(waha_db(url, "servers", "remove", ids["Servidor de Teste"], "--yes"))
    ok(waha_db(url, "sessions", "reconcile"))
    assert run_sql(direct, "SELECT nome, max_sessions, ativo FROM public.waha_servers ORDER BY prioridade DESC") == [
        ("Servidor Principal", 60, True),
        ("Servidor Backup", 30, True),
    ]


def rounds_recorded(url) -> int:
    return run_sql(url, "SELECT coalesce(max(consecutive_failures), 0) FROM public.waha_server_health")[0][0]


def test_monitor_runs_many_rounds_through_the_pooler(pooler, fresh_database, fake_waha):
    direct = fresh_database("head")
    user = str(uuid.uuid4())
    healthy, failing = fake_waha("healthy"), fake_waha("error_500")
    for name, fake in (("Principal", healthy), ("Backup", failing)):
        add_server(direct, user, name, api_url=fake.url, timeout=5, retry_attempts=0)
    engine = create_engine(pooler.url(direct.database))
    try:
        with RunningMonitor(engine, interval=0.01) as monitor:
            # Each round records one more failure of Backup; a monitor that died ends the wait too.
            wait_until(
                lambda: not monitor.thread.is_alive() or rounds_recorded(direct) >= ROUNDS, f"{ROUNDS} monitor rounds"
            )
            stats = monitor.finish()
    finally:
        engine.dispose()
    assert stats.cycles >= ROUNDS
    assert monitor.lines_with("not recorded") == [] and monitor.lines_with("connection lost") == []
    assert len(monitor.lines_with("healthy -> failing")) == 1


def test_selection_and_allocation_from_concurrent_clients_through_the_pooler(pooler, fresh_database):
    """Signed-in clients as Supabase's API runs them: role and JWT claims set per transaction."""
    direct = fresh_database("supabase_head")
    user = str(add_user(direct))
    for name, priority, capacity in (("Principal", 10, 5), ("Backup A", 5, 4), ("Backup B", 5, 3)):
        add_server(direct, user, name, prioridade=priority, max_sessions=capacity)
    url = pooler.url(direct.database)
    workers, calls = 6, 4  # 24 calls for 12 slots
    claims = json.dumps({"sub": user, "role": "authenticated"})

    def work(index, barrier):
        outcomes = []
        with psycopg.connect(conninfo(url), autocommit=True, prepare_threshold=None) as client:
            barrier.wait()
            for number in range(calls):
                try:
                    with client.transaction():
                        client.execute("SET LOCAL ROLE authenticated")
                        client.execute("SELECT pg_catalog.set_config('request.jwt.claims', %s, true)", (claims,))
                        picked = client.execute(
                            "SELECT nome FROM public.get_available_waha_server(%s)", (user,)
                        ).fetchall()
                        taken = client.execute(
                            "SELECT waha_server_id FROM public.allocate_waha_session(%s, %s)",
                            (user, f"w{index}-{number}"),
                        ).fetchone()
                    outcomes.append(("allocated", len(picked), taken[0]))
                except psycopg.Error as error:
                    outcomes.append((error.sqlstate, None, None))
        return outcomes

    outcomes = [outcome for outcomes in together(workers, work) for outcome in outcomes]
    allocated = [outcome for outcome in outcomes if outcome[0] == "allocated"]
    assert len(allocated) == 12 and all(picked == 1 for _, picked, _ in allocated)
    assert sorted(outcome[0] for outcome in outcomes if outcome[0] != "allocated") == ["WAH10"] * 12
    assert run_sql(
        direct,
        "SELECT nome, sessions_ativas, max_sessions, (SELECT count(*) FROM public.waha_sessions AS s "
        "WHERE s.waha_server_id = server.id) FROM public.waha_servers AS server ORDER BY nome",
    ) == [
        ("Backup A", 4, 4, 4),
        ("Backup B", 3, 3, 3),
        ("Principal", 5, 5, 5),
    ]
