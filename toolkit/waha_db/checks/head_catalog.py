"""Recording toolkit/waha_db/lifecycle/head_catalog.json: the catalog of the WAHA objects at head.

After changing the migrations: `python -m waha_db.checks.head_catalog --write`. The
snapshot is taken on a throwaway PostgreSQL migrated to head, so `status` and
`verify` compare a database with what the migrations make, without a scratch
database on the server they inspect.
"""

from __future__ import annotations

import sys

from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import create_engine
from waha_db.lifecycle import catalog, migrate


def build_head_catalog() -> str:
    """head_catalog.json as the migrations make it today, built on a throwaway PostgreSQL."""
    with ThrowawayPostgres() as server:
        engine = create_engine(server.url(server.create_database()))
        try:
            migrate.upgrade(engine)
            with engine.connect() as connection:
                return catalog.render_head_catalog(connection)
        finally:
            engine.dispose()


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(
            "usage: python -m waha_db.checks.head_catalog --write   (regenerates toolkit/waha_db/lifecycle/head_catalog.json)"
        )
    catalog.HEAD_CATALOG.write_text(build_head_catalog())
    print(f"wrote {catalog.HEAD_CATALOG}")
