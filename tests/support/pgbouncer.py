"""A throwaway PgBouncer in transaction pooling mode, in front of a throwaway PostgreSQL.

Supabase's pooler serves port 6543 in transaction mode: each transaction of a client
may run on another server connection, so anything a client leaves on a connection
between transactions (a prepared statement, a session `SET`, a session advisory
lock) is gone, or somebody else's, at its next transaction. This pooler reproduces
that for the tests: several server connections per database (`pool_size`), handed
out in turn (`server_round_robin`), so consecutive transactions of one client run
on different server connections, as they do on a busy pooler.

PgBouncer refuses to run as root: like the throwaway PostgreSQL, it runs as the
unprivileged account then. Listens on 127.0.0.1 only; trusts every user, as the
throwaway server does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

from tests.support.network import free_port
from waha_db.checks.pgtemp import unprivileged_account
from waha_db.database import conninfo

INSTALL_HINT = "PgBouncer was not found on PATH: install it (`apt-get install pgbouncer` on Debian/Ubuntu)."


class PgBouncerNotFound(RuntimeError):
    """No pgbouncer binary on this machine."""


def find_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise PgBouncerNotFound(INSTALL_HINT)
    return found


class ThrowawayPgBouncer:
    """PgBouncer on 127.0.0.1 in transaction mode, pooling every database of `server_port`.

    Use as a context manager; `url(database)` is the URL a client gives instead of
    the server's (user `postgres`, no password).
    """

    def __init__(self, server_port: int, *, pool_size: int = 4) -> None:
        self.server_port = server_port
        self.pool_size = pool_size
        self.port = 0
        self._directory: Path | None = None
        self._process: subprocess.Popen | None = None
        self._filled: set[str] = set()

    def config(self) -> str:
        """The pgbouncer.ini: transaction pooling, `pool_size` server connections kept open and used in turn."""
        return "\n".join(
            [
                "[databases]",
                f"* = host=127.0.0.1 port={self.server_port}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {self.port}",
                "unix_socket_dir =",
                "pool_mode = transaction",
                f"default_pool_size = {self.pool_size}",
                f"min_pool_size = {self.pool_size}",
                "server_round_robin = 1",
                "max_client_conn = 200",
                "auth_type = trust",
                f"auth_file = {self._directory / 'users.txt'}",
                f"logfile = {self._directory / 'pgbouncer.log'}",
                f"pidfile = {self._directory / 'pgbouncer.pid'}",
                "",
            ]
        )

    def start(self) -> ThrowawayPgBouncer:
        binary = find_pgbouncer()
        account = unprivileged_account()
        self._directory = Path(tempfile.mkdtemp(prefix="waha-db-pgbouncer-"))
        self.port = free_port()
        (self._directory / "users.txt").write_text('"postgres" ""\n')
        (self._directory / "pgbouncer.ini").write_text(self.config())
        as_account = {}
        if account is not None:
            for path in (self._directory, *self._directory.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
            as_account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        self._process = subprocess.Popen(
            [binary, str(self._directory / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **as_account,
        )
        self._wait_listening()
        return self

    def _wait_listening(self, patience: float = 30.0) -> None:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on 127.0.0.1:{self.port} within {patience:g} s")

    def log(self) -> str:
        path = self._directory / "pgbouncer.log" if self._directory else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def __enter__(self) -> ThrowawayPgBouncer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def url(self, database: str = "postgres") -> URL:
        """The URL of `database` through the pooler, its pool filled first (see `fill_pool`)."""
        if database not in self._filled:
            self.fill_pool(database)
            self._filled.add(database)
        return self._url(database)

    def _url(self, database: str) -> URL:
        return URL.create(
            "postgresql+psycopg", username="postgres", host="127.0.0.1", port=self.port, database=database
        )

    def fill_pool(self, database: str) -> None:
        """Open all `pool_size` server connections of `database` now: as many clients each hold
        a transaction at once, so each needs its own. PgBouncer opens them lazily otherwise,
        and a lone client would keep meeting the same one."""
        clients = [
            psycopg.connect(conninfo(self._url(database)), prepare_threshold=None) for _ in range(self.pool_size)
        ]
        try:
            backends = {client.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()[0] for client in clients}
        finally:
            for client in clients:
                client.rollback()  # back to the pool clean: a server connection left in a transaction is dropped
                client.close()
        if len(backends) != self.pool_size:
            raise RuntimeError(
                f"pgbouncer gave {len(backends)} server connections for {self.pool_size} clients in a transaction"
            )
