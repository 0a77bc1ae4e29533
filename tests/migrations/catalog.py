"""What a database's schema is, as pg_dump prints it: the oracle of the round-trip tests.

pg_dump is independent of the toolkit's own catalog code, and prints every object
the migrations can create or change: schemas, tables, columns, defaults,
constraints, indexes, functions, triggers, policies, row security, grants,
comments. alembic_version is left out (Alembic keeps it, empty, at base).
"""

from __future__ import annotations

import re
import subprocess

from tests.conftest import Cluster


def schema_dump(cluster: Cluster, database: str) -> str:
    """`pg_dump --schema-only` of `database`, without alembic_version and pg_dump's volatile header lines."""
    url = cluster.url(database)
    done = subprocess.run(
        [
            str(cluster.server.bin_dir / "pg_dump"),
            "--schema-only",
            "--exclude-table=public.alembic_version",
            f"--host={url.host}",
            f"--port={url.port}",
            f"--username={url.username}",
            f"--dbname={database}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    # "\restrict <random key>" lines (pg_dump >= 15.14) differ on every run.
    return re.sub(r"^\\(un)?restrict .*$", "", done.stdout, flags=re.M)
