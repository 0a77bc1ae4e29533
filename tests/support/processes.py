"""`waha-db` run as a real process, as two deploys or a DBA's terminal start it, and the backends it opens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.support.databases import run_sql
from waha_db.database import conninfo

# The console script of the interpreter running the tests (the venv's waha-db), whatever the PATH.
WAHA_DB = str(Path(sys.executable).with_name("waha-db"))


def start_waha_db(url: sa.URL, *args: str) -> subprocess.Popen:
    """`waha-db --database-url URL ARGS` started, stdout and stderr together; DATABASE_URL left out."""
    environment = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    return subprocess.Popen(
        [WAHA_DB, "--database-url", conninfo(url), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment,
    )


def finish(process: subprocess.Popen) -> str:
    """What the process printed, once it ended (killed after two minutes)."""
    try:
        return process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def backend_of(
    url: sa.URL, application_name: str, *, waiting: str | None = None, other_than: int = 0, running: str = ""
) -> int | None:
    """The pid of a backend of the named application in this database: waiting on `waiting` events, if given,
    its last statement holding `running`."""
    rows = run_sql(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s "
        "AND (%s::text IS NULL OR wait_event_type = %s) AND pid <> %s AND strpos(query, %s) > 0",
        (url.database, application_name, waiting, waiting, other_than, running),
    )
    return rows[0][0] if rows else None
