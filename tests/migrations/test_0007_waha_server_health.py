"""Revision 0007 up and down: the downgrade gives back exactly what 0006 had."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from waha_db.database import create_engine
from waha_db.lifecycle import migrate

SELECTION_STATE = """
SELECT pg_catalog.pg_get_functiondef(proc.oid), proc.proacl::text,
       pg_catalog.obj_description(proc.oid, 'pg_proc'), proc.proowner
FROM pg_catalog.pg_proc AS proc
WHERE proc.oid = 'public.get_available_waha_server(uuid, uuid[])'::regprocedure
"""
HEALTH_OBJECTS = """
SELECT pg_catalog.to_regclass('public.waha_server_health') IS NOT NULL,
       pg_catalog.to_regprocedure('public.report_waha_server_failure(uuid, text)') IS NOT NULL,
       pg_catalog.to_regprocedure('public.report_waha_server_success(uuid)') IS NOT NULL
"""


@pytest.mark.parametrize("kind", ["empty", "supabase_empty"])
def test_downgrade_restores_the_selection_of_0006_exactly(fresh_database, kind):
    engine = create_engine(fresh_database(kind))
    try:
        migrate.upgrade(engine, "0006")
        with engine.connect() as connection:
            before = connection.execute(sa.text(SELECTION_STATE)).one()

        migrate.upgrade(engine, "0007")
        with engine.connect() as connection:
            upgraded = connection.execute(sa.text(SELECTION_STATE)).one()
            assert connection.execute(sa.text(HEALTH_OBJECTS)).one() == (True, True, True)

        migrate.downgrade(engine, "0006")
        with engine.connect() as connection:
            after = connection.execute(sa.text(SELECTION_STATE)).one()
            assert connection.execute(sa.text(HEALTH_OBJECTS)).one() == (False, False, False)
    finally:
        engine.dispose()

    definition, grants, _, owner = upgraded
    assert "waha_server_health" in definition
    assert (grants, owner) == (before[1], before[3]), "CREATE OR REPLACE must keep the grants and owner"
    assert after == before


def test_upgrade_keeps_existing_servers_and_their_order_of_columns(fresh_database):
    engine = create_engine(fresh_database("empty"))
    columns = """
        SELECT pg_catalog.array_agg(attname::text ORDER BY attnum) FROM pg_catalog.pg_attribute
        WHERE attrelid = 'public.waha_servers'::regclass AND attnum > 0 AND NOT attisdropped
    """
    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO public.waha_servers (user_id, nome, api_url, prioridade)"
                    " VALUES (gen_random_uuid(), 'Principal', 'https://waha1.example', 10)"
                )
            )
            columns_before = connection.execute(sa.text(columns)).scalar()
        migrate.upgrade(engine, "0007")
        with engine.connect() as connection:
            assert connection.execute(sa.text(columns)).scalar() == columns_before
            user = connection.execute(sa.text("SELECT user_id FROM public.waha_servers")).scalar()
            picked = connection.execute(
                sa.text("SELECT nome FROM public.get_available_waha_server(:user)"), {"user": user}
            ).scalar()
    finally:
        engine.dispose()

    assert picked == "Principal"
