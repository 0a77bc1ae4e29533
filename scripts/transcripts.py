"""The transcripts of the README's user journeys, on a throwaway PostgreSQL and fake WAHA servers.

Runs the real `waha-db` console script against a database and three WAHA
look-alikes on 127.0.0.1 (tests/fleet/fake_waha.py), printing each command and
its output:

1. a new user's session: status, upgrade, the seed's three servers, the server
   screen, the best server;
2. failover: Principal stops answering, `servers test` records it, `servers best`
   moves to Backup; Principal comes back, `servers best` returns to it.

Usage: python scripts/transcripts.py   (from the repository root, after `pip install -e .`)
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fleet.fake_waha import FakeWaha  # noqa: E402
from waha_db.checks.pgtemp import ThrowawayPostgres  # noqa: E402

USER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"
WAHA_DB = str(Path(sys.executable).with_name("waha-db"))


def run(environment: dict, *arguments: str) -> None:
    print(f"$ waha-db {shlex.join(arguments)}")
    done = subprocess.run([WAHA_DB, *arguments], env=environment, capture_output=True, text=True)
    print((done.stdout + done.stderr).rstrip())
    print(f"[exit {done.returncode}]\n")


def main() -> None:
    with ThrowawayPostgres() as server:
        database = server.create_database("app")
        environment = dict(os.environ, DATABASE_URL=server.url(database).render_as_string(hide_password=False))
        principal = FakeWaha("needs_key", api_key="key1").start()
        backup = FakeWaha("needs_key", api_key="key2").start()
        teste = FakeWaha("healthy").start()
        print(f"# fake WAHA servers: Principal {principal.url} (key1), Backup {backup.url} (key2), Teste {teste.url}\n")
        try:
            print("## 1. A new user's session\n")
            run(environment, "status")
            run(environment, "upgrade")
            run(environment, "upgrade", "--yes")
            run(environment, "status", "--check")
            run(
                environment,
                "servers",
                "add",
                "--user",
                USER,
                "--name",
                "Servidor Principal",
                "--url",
                principal.url,
                "--api-key",
                "key1",
                "--description",
                "Servidor principal de produção",
                "--priority",
                "10",
                "--max-sessions",
                "50",
            )
            run(
                environment,
                "servers",
                "add",
                "--user",
                USER,
                "--name",
                "Servidor Backup",
                "--url",
                backup.url,
                "--api-key",
                "key2",
                "--priority",
                "5",
                "--max-sessions",
                "30",
            )
            run(
                environment,
                "servers",
                "add",
                "--user",
                USER,
                "--name",
                "Servidor de Teste",
                "--url",
                teste.url,
                "--inactive",
                "--max-sessions",
                "10",
            )
            run(environment, "servers", "list", "--user", USER)
            run(environment, "servers", "best", "--user", USER)
            run(
                environment,
                "servers",
                "add",
                "--user",
                USER,
                "--name",
                "Bad",
                "--url",
                "waha.example.com",
                "--priority",
                "11",
            )

            print("## 2. Failover: Principal fails, then recovers\n")
            run(environment, "servers", "test", "--user", USER)
            port = principal.port
            principal.stop()
            print(f"# Principal ({port}) stopped: connections are refused\n")
            run(environment, "servers", "test", "--user", USER)
            run(environment, "servers", "best", "--user", USER)
            principal = FakeWaha("needs_key", api_key="key1", port=port).start()
            print(f"# Principal back on {principal.url}\n")
            run(environment, "servers", "test", "--user", USER)
            run(environment, "servers", "best", "--user", USER)
        finally:
            for fake in (principal, backup, teste):
                fake.stop()


if __name__ == "__main__":
    main()
