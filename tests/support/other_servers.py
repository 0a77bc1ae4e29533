"""Servers besides the session's: a fresh one whose roles nobody has created yet, and a hot standby.

Roles belong to a server, not to a database: once any database of the session's server
is upgraded, `authenticated` and `service_role` exist for all of them. A case about
missing roles, or about two databases creating them at once, needs a server of its own.

A hot standby is made as a DBA makes one: `pg_basebackup -R` from a running primary
(its WAL streamed over a replication connection, which initdb's pg_hba.conf trusts on
127.0.0.1), then started on its own port; it replays what the primary writes and
refuses every write of its own (`pg_is_in_recovery()` is true).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL

from tests.polling import wait_until
from tests.support.databases import run_sql
from tests.support.network import free_port
from waha_db.checks.pgtemp import ThrowawayPostgres, unprivileged_account


class HotStandby:
    """A hot standby of `primary`, streaming from it; `url(database)` as ThrowawayPostgres gives them."""

    def __init__(self, primary: ThrowawayPostgres) -> None:
        self.primary = primary
        self.account = unprivileged_account()
        self.binaries = Path(os.path.realpath(primary.bin_dir / "postgres")).parent
        self.directory = Path(tempfile.mkdtemp(prefix="waha-standby-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def _as_account(self) -> dict:
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def start(self) -> HotStandby:
        if self.account is not None:
            os.chown(self.directory, self.account.pw_uid, self.account.pw_gid)
        data = self.directory / "data"
        subprocess.run(
            [str(self.binaries / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres"]
            + ["-D", str(data), "-R", "-X", "stream", "-c", "fast", "--no-sync"],
            check=True,
            capture_output=True,
            **self._as_account(),
        )
        # A standby needs at least the primary's max_connections (and the like), or recovery stops.
        (connections,) = run_sql(self.primary.url(), "SHOW max_connections")[0]
        with open(self.directory / "standby.log", "w") as log:
            self.process = subprocess.Popen(
                [str(self.binaries / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1", "-F"]
                + ["-c", "hot_standby=on", "-c", "logging_collector=off", "-c", f"max_connections={connections}"],
                stdout=log,
                stderr=log,
                **self._as_account(),
            )
        wait_until(self._in_recovery, "the hot standby accepting connections")
        return self

    def _in_recovery(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the hot standby stopped: {(self.directory / 'standby.log').read_text()[-2000:]}")
        try:
            return run_sql(self.url("postgres"), "SELECT pg_is_in_recovery()")[0][0]
        except psycopg.OperationalError:
            return False

    def url(self, database: str = "postgres") -> URL:
        return URL.create(
            "postgresql+psycopg", username="postgres", host="127.0.0.1", port=self.port, database=database
        )

    def caught_up(self) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        (lsn,) = run_sql(self.primary.url("postgres"), "SELECT pg_current_wal_lsn()::text")[0]
        wait_until(
            lambda: run_sql(self.url(), "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0],
            "the hot standby replaying the primary's writes",
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
