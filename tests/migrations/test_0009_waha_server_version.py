"""Revision 0009 up and down: the downgrade gives back the health table of 0007, rows and all."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.support.factories import add_server, add_user
from waha_db.database import create_engine
from waha_db.lifecycle import migrate

COLUMNS = """
SELECT pg_catalog.array_agg(attname::text ORDER BY attnum) FROM pg_catalog.pg_attribute
WHERE attrelid = 'public.waha_server_health'::regclass AND attnum > 0 AND NOT attisdropped
"""
HEALTH_STATE = """
SELECT (SELECT pg_catalog.array_agg(conname::text ORDER BY conname) FROM pg_catalog.pg_constraint
        WHERE conrelid = 'public.waha_server_health'::regclass),
       pg_catalog.to_regprocedure('public.report_waha_server_version(uuid, text, text, text)') IS NOT NULL
"""


@pytest.mark.parametrize("kind", ["empty", "supabase_empty"])
def test_downgrade_gives_back_the_health_table_of_0007_with_its_rows(fresh_database, kind):
    engine = create_engine(fresh_database(kind))
    try:
        migrate.upgrade(engine, "0007")
        with engine.begin() as connection:
            user = add_user(connection)
            server = add_server(connection, user, "Principal", api_url="https://waha1.example")
            connection.execute(sa.text("SELECT public.report_waha_server_failure(:id, 'timed out')"), {"id": server})
            before = connection.execute(sa.text(COLUMNS)).scalar(), connection.execute(sa.text(HEALTH_STATE)).one()

        migrate.upgrade(engine, "0009")
        with engine.begin() as connection:
            connection.execute(
                sa.text("SELECT public.report_waha_server_version(:id, '2025.1.2', 'WEBJS', 'CORE')"), {"id": server}
            )
            upgraded = connection.execute(sa.text(COLUMNS)).scalar()

        migrate.downgrade(engine, "0007")
        with engine.connect() as connection:
            after = connection.execute(sa.text(COLUMNS)).scalar(), connection.execute(sa.text(HEALTH_STATE)).one()
            kept = connection.execute(
                sa.text("SELECT consecutive_failures, last_error FROM public.waha_server_health")
            ).one()
    finally:
        engine.dispose()

    assert upgraded == before[0] + ["waha_version", "waha_engine", "waha_tier", "identified_at"]
    assert after == before
    assert tuple(kept) == (1, "timed out")
