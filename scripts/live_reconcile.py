"""The transcript of `waha-db sessions reconcile --live`, on a throwaway PostgreSQL and fake WAHA servers.

Six WAHA look-alikes on 127.0.0.1 (tests/fleet/fake_waha.py) and a database whose
rows drifted from them in every way the reconcile knows (docs: toolkit/waha_db/fleet/live.py):
- Principal (WAHA Plus, API key): a session started from WAHA's dashboard, one the
  server lost, one that FAILED there, one whose status moved on, one whose phone
  changed, a counter that drifted, and a session allocated a moment ago that the app
  is still creating on WAHA;
- Backup (WAHA Plus): a session the database thinks STOPPED that WAHA runs;
- Core (WAHA Core, max_sessions 50): in line, but Core runs a single session;
- Pequeno (WAHA Plus, max_sessions 2): runs three sessions, one unknown to the database;
- Morto: nothing listens (connection refused); Lento: answers after its timeout.
The transcript runs the report, `--apply --yes`, the report again, `servers test`
and `servers list` (the Core warning), then the concurrency run of
tests/fleet/live_race.py with its figures.

Usage: python scripts/live_reconcile.py   (from the repository root, after `pip install -e .`)
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.transcripts import USER, WAHA_DB, run  # noqa: E402
from tests.fleet.fake_waha import FakeWaha, free_port  # noqa: E402
from tests.fleet.live_race import run_race  # noqa: E402
from waha_db.checks.pgtemp import ThrowawayPostgres  # noqa: E402
from waha_db.database import conninfo, create_engine  # noqa: E402


def add_server(connection, name: str, url: str, *, api_key=None, priority=0, max_sessions=50, counter=0, timeout=2):
    return connection.execute(
        "INSERT INTO public.waha_servers (id, user_id, nome, api_url, api_key, prioridade, max_sessions, sessions_ativas,"
        " timeout, retry_attempts) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 0) RETURNING id",
        (uuid.uuid5(uuid.NAMESPACE_URL, name), USER, name, url, api_key, priority, max_sessions, counter, timeout),
    ).fetchone()[0]


def add_row(connection, server_id, name: str, status: str, phone=None, profile=None):
    """A session row written an hour ago (well before any grace)."""
    connection.execute(
        "INSERT INTO public.waha_sessions (user_id, waha_server_id, session_name, status, phone_number, profile_name,"
        " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, now() - interval '1 hour', now() - interval '1 hour')",
        (USER, server_id, name, status, phone, profile),
    )


def main() -> None:
    with ThrowawayPostgres() as server:
        database = server.create_database("app")
        url = server.url(database)
        environment = dict(os.environ, DATABASE_URL=url.render_as_string(hide_password=False))
        principal = FakeWaha("needs_key", api_key="key1", tier="PLUS", version="2025.1.2", engine="NOWEB").start()
        backup = FakeWaha("healthy", tier="PLUS", version="2025.1.2", engine="GOWS").start()
        core = FakeWaha("healthy", tier="CORE", version="2025.1.2", engine="WEBJS").start()
        lento = FakeWaha("slow", delay=5, tier="PLUS").start()
        pequeno = FakeWaha("healthy", tier="PLUS", version="2025.1.2", engine="NOWEB").start()
        fakes = (principal, backup, core, lento, pequeno)
        try:
            subprocess.run([WAHA_DB, "upgrade", "--yes"], env=environment, check=True, capture_output=True)
            with psycopg.connect(conninfo(url), autocommit=True) as connection:
                p = add_server(connection, "Principal", principal.url, api_key="key1", priority=10, counter=9)
                add_row(connection, p, "loja-01", "WORKING", "5511999990001", "Loja 1")
                add_row(connection, p, "loja-02", "STARTING")
                add_row(connection, p, "loja-03", "WORKING", "5511999990003", "Loja 3")
                add_row(connection, p, "loja-04", "WORKING", "5511999990004", "Loja 4")
                add_row(connection, p, "loja-05", "WORKING", "5511999990005", "Loja Cinco")
                add_row(connection, p, "loja-00", "STOPPED", "5511999990000", "Loja antiga")
                b = add_server(connection, "Backup", backup.url, priority=5, max_sessions=30, counter=0)
                add_row(connection, b, "loja-10", "STOPPED", "5511999990010", "Loja 10")
                c = add_server(connection, "Core", core.url, max_sessions=50, counter=1)
                add_row(connection, c, "default", "WORKING", "5511999990020", "Matriz")
                m = add_server(connection, "Morto", f"http://127.0.0.1:{free_port()}", counter=2)
                add_row(connection, m, "loja-30", "WORKING")
                add_row(connection, m, "loja-31", "WORKING")
                add_server(connection, "Lento", lento.url, timeout=1, counter=0)
                q = add_server(connection, "Pequeno", pequeno.url, max_sessions=2, counter=2)
                add_row(connection, q, "filial-1", "WORKING", "5511999990041", "Filial 1")
                add_row(connection, q, "filial-2", "WORKING", "5511999990042", "Filial 2")
                # The app allocates a session right now, and has not created it on WAHA yet.
                connection.execute("SELECT public.allocate_waha_session(%s, 'loja-06')", (USER,))
            principal.run_session("loja-01", "WORKING", phone="5511999990001", push_name="Loja 1", worker="w1")
            principal.run_session("loja-02", "WORKING", phone="5511999990002", push_name="Loja 2", worker="w1")
            principal.run_session("loja-04", "FAILED", worker="w1")
            principal.run_session("loja-05", "WORKING", phone="5511988880005", push_name="Loja 5", worker="w2")
            principal.run_session("loja-00", "STOPPED")
            principal.run_session("painel-01", "SCAN_QR_CODE", worker="w2")
            backup.run_session("loja-10", "WORKING", phone="5511999990010", push_name="Loja 10")
            core.run_session("default", "WORKING", phone="5511999990020", push_name="Matriz")
            for number in (1, 2, 3):
                pequeno.run_session(
                    f"filial-{number}", "WORKING", phone=f"551199999004{number}", push_name=f"Filial {number}"
                )
            print(
                f"# fake WAHA servers: Principal {principal.url} (Plus, key1), Backup {backup.url} (Plus), "
                f"Core {core.url} (Core), Pequeno {pequeno.url} (Plus), Lento {lento.url} (answers after 5 s, timeout 1 s); "
                "Morto refuses connections\n"
            )
            print("## 1. The report\n")
            run(environment, "sessions", "reconcile", "--live")
            print("## 2. --apply\n")
            run(environment, "sessions", "reconcile", "--live", "--apply", "--yes")
            print("## 3. The report again\n")
            run(environment, "sessions", "reconcile", "--live")
            run(environment, "sessions", "reconcile", "--live", "--server", str(b), "--json")
            print("## 4. What each server is\n")
            run(environment, "servers", "test", "--user", USER)
            run(environment, "servers", "list", "--user", USER)
        finally:
            for fake in fakes:
                fake.stop()

        print("## 5. --apply while allocations and releases run\n")
        race_database = server.create_database("race")
        engine = create_engine(server.url(race_database))
        try:
            subprocess.run(
                [
                    WAHA_DB,
                    "--database-url",
                    server.url(race_database).render_as_string(hide_password=False),
                    "upgrade",
                    "--yes",
                ],
                check=True,
                capture_output=True,
            )
            figures = run_race(engine)
        finally:
            engine.dispose()
        for line in figures.lines():
            print(line)


if __name__ == "__main__":
    main()
