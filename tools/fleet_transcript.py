"""The transcript of the fleet commands against rows a hostile user wrote, on a throwaway PostgreSQL.

Fake WAHA servers on 127.0.0.1 only (tests/fleet/fake_waha.py). Prints, with the
real `waha-db` console script:
1. the request lines a fake WAHA receives for api_url
   `http://127.0.0.1:PORT/admin/delete-everything?confirm=yes#` (servers test,
   sessions reconcile --live), and for a loopback server while
   WAHA_DB_PROBE_DENY=loopback (nothing: not even a connection);
2. two users registering one WAHA (written differently) under
   `sessions reconcile --live --apply --yes`, and the rows each has afterwards;
3. `monitor --once` with eight servers of one user that accept and never answer,
   at timeout = retry_attempts = 2147483647 (rows as they could be before revision
   0011), beside another user's healthy server: the time, and that server's health;
4. SIGTERM and Ctrl-C sent to `monitor` in the middle of such a round: the time to exit.

Usage: python tools/fleet_transcript.py   (from the repository root, after `pip install -e .`)
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fleet.fake_waha import FakeWaha  # noqa: E402
from tests.support.factories import AS_BEFORE_0011, OLD_MAXIMUM, add_waha_server  # noqa: E402
from waha_db.checks.pgtemp import ThrowawayPostgres  # noqa: E402
from waha_db.database import conninfo  # noqa: E402

WAHA_DB = str(Path(sys.executable).with_name("waha-db"))
ALICE = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"
MALLORY = "5e1a7d3c-9b2f-4e6a-8c0d-1f2e3a4b5c6d"


def run(environment: dict, *arguments: str) -> None:
    print(f"$ waha-db {shlex.join(arguments)}")
    done = subprocess.run([WAHA_DB, *arguments], env=environment, capture_output=True, text=True)
    print((done.stdout + done.stderr).rstrip())
    print(f"[exit {done.returncode}]\n")


def main() -> None:
    with ThrowawayPostgres() as server:
        database = server.create_database("app")
        url = server.url(database)
        environment = dict(os.environ, DATABASE_URL=url.render_as_string(hide_password=False))
        subprocess.run([WAHA_DB, "upgrade", "--yes"], env=environment, check=True, capture_output=True)
        fakes: list[FakeWaha] = []

        def fake(mode: str = "healthy") -> FakeWaha:
            fakes.append(FakeWaha(mode).start())
            return fakes[-1]

        try:
            with psycopg.connect(conninfo(url), autocommit=True) as connection:
                # Rows older than revision 0011 may hold what its rules refuse: its CHECKs dropped, its triggers bypassed.
                connection.execute(AS_BEFORE_0011)
                connection.execute("SET session_replication_role = replica")
                print("## 1. Where a hostile api_url sends the probe\n")
                target = fake()
                hostile = f"{target.url}/admin/delete-everything?confirm=yes#"
                server_id = add_waha_server(connection, MALLORY, hostile, "hostile", timeout=2)
                print(f"api_url = {hostile}\n")
                run(environment, "servers", "test", str(server_id))
                run(environment, "sessions", "reconcile", "--live", "--user", MALLORY)
                print("request lines the fake received:")
                for line in target.request_lines:
                    print(f"  {line}")
                print()
                connection.execute("DELETE FROM public.waha_servers WHERE id = %s", (server_id,))

                denied = fake()
                server_id = add_waha_server(connection, MALLORY, denied.url, "loopback", timeout=2)
                run(dict(environment, WAHA_DB_PROBE_DENY="loopback"), "servers", "test", str(server_id))
                print(
                    f"the loopback fake received {denied.connections} connection(s), {len(denied.requests)} request(s)\n"
                )
                connection.execute("DELETE FROM public.waha_servers WHERE id = %s", (server_id,))

                print("## 2. Two users, one WAHA: sessions reconcile --live --apply\n")
                shared = fake()
                shared.run_session("loja-1", phone="5511999990001", push_name="Loja 1")
                shared.run_session("loja-2", phone="5511999990002", push_name="Loja 2")
                add_waha_server(connection, ALICE, shared.url, "Principal", timeout=2)
                add_waha_server(
                    connection, MALLORY, shared.url.replace("http://", "HTTP://") + "/", "copy of Alice's", timeout=2
                )
                run(environment, "sessions", "reconcile", "--live", "--apply", "--yes")
                rows = connection.execute(
                    "SELECT user_id, count(*) FROM public.waha_sessions GROUP BY 1 ORDER BY 1"
                ).fetchall()
                print(f"rows of waha_sessions by user afterwards: {rows or 'none'}")
                print(f"requests the shared WAHA received: {len(shared.requests)}\n")
                connection.execute("DELETE FROM public.waha_servers")

                print("## 3. monitor --once: eight hanging servers at the old maxima, and another user's server\n")
                hanging = fake("hang")
                for number in range(8):
                    add_waha_server(
                        connection,
                        MALLORY,
                        f"{hanging.url}/{number}",
                        f"hang-{number}",
                        timeout=OLD_MAXIMUM,
                        retry_attempts=OLD_MAXIMUM,
                    )
                healthy = fake()
                other = add_waha_server(connection, ALICE, healthy.url, "Alice's", timeout=2)
                for arguments in (("monitor", "--once"), ("monitor", "--once", "--deadline", "10")):
                    started = time.monotonic()
                    run(environment, *arguments)
                    print(f"took {time.monotonic() - started:.1f} s")
                    state = connection.execute(
                        "SELECT consecutive_failures, last_checked_at IS NOT NULL FROM public.waha_server_health "
                        "WHERE server_id = %s",
                        (other,),
                    ).fetchone()
                    print(f"Alice's server: {len(healthy.requests)} probe(s) received, health row {state}\n")

            print("## 4. SIGTERM and Ctrl-C in the middle of a round\n")
            for signum in (signal.SIGTERM, signal.SIGINT):
                before = len(hanging.requests)
                process = subprocess.Popen(
                    [WAHA_DB, "monitor"], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                while len(hanging.requests) < before + 4:
                    time.sleep(0.05)
                sent = time.monotonic()
                process.send_signal(signum)
                output, errors = process.communicate(timeout=60)
                print(f"$ waha-db monitor   # {signum.name} once 4 probes hang")
                print((output + errors).rstrip())
                print(f"[exit {process.returncode}] {time.monotonic() - sent:.2f} s from {signum.name} to exit\n")
        finally:
            for started in fakes:
                started.stop()


if __name__ == "__main__":
    main()
