"""Downgrade to base removes every object the migrations created (roles excepted) and nothing else.

Decision: alembic_version stays, empty, as Alembic leaves it; it records that the
database is at base, and a later `upgrade head` reuses it.
"""

from __future__ import annotations

import pytest

from tests.conftest import LEGACY_APP_TABLE, LEGACY_OWNER, LEGACY_V1_SQL
from tests.migrations.catalog import schema_dump
from tests.migrations.upgrade_support import downgrade, run_sql

LEFTOVERS_SQL = """
SELECT 'relation ' || n.nspname || '.' || c.relname FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'auth')
  AND c.relname NOT IN ('campaigns', 'campaigns_pkey', 'campaigns_id_seq', 'alembic_version', 'alembic_version_pkc')
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text FROM pg_catalog.pg_proc AS p
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
UNION ALL
SELECT 'schema ' || nspname FROM pg_catalog.pg_namespace WHERE nspname = 'waha_legacy'
UNION ALL
SELECT 'policy ' || policyname FROM pg_catalog.pg_policies
UNION ALL
SELECT 'trigger ' || tgname FROM pg_catalog.pg_trigger WHERE NOT tgisinternal
"""


def query(cluster, database: str, sql: str):
    return run_sql(cluster.url(database), sql)


@pytest.mark.parametrize("kind", ["empty", "supabase_empty"])
def test_downgrade_to_base_leaves_no_trace_and_the_apps_table_intact(cluster, fresh_database, kind):
    database = fresh_database(kind).database
    cluster.run_sql(database, LEGACY_APP_TABLE)
    before = schema_dump(cluster, database)

    cluster.migrate(database, "head")
    downgrade(cluster.url(database), "base")

    assert query(cluster, database, LEFTOVERS_SQL) == []
    assert schema_dump(cluster, database) == before
    assert query(cluster, database, "SELECT count(*) FROM public.alembic_version") == [(0,)]
    assert query(cluster, database, "SELECT id, name FROM public.campaigns ORDER BY id") == [(1, "Black Friday"), (2, "Natal")]


def test_leftover_query_sees_what_the_migrations_create(cluster, fresh_database):
    """The query above can fail: at head it lists the WAHA objects."""
    database = fresh_database("head").database
    found = {row[0] for row in query(cluster, database, LEFTOVERS_SQL)}
    assert {"relation public.waha_servers", "relation public.waha_sessions", "policy waha_servers_select_own"} <= found
    assert "function get_available_waha_server(uuid,uuid[])" in found


def test_downgrade_to_base_of_an_upgraded_legacy_database_gives_back_its_waha_config(cluster, fresh_database):
    database = fresh_database("empty").database
    cluster.run_sql(database, LEGACY_V1_SQL)
    before = schema_dump(cluster, database)
    rows_before = query(cluster, database, "SELECT * FROM public.waha_config")

    cluster.migrate(database, "head", owner=LEGACY_OWNER)
    assert query(cluster, database, "SELECT pg_catalog.to_regclass('public.waha_config')") == [(None,)]
    downgrade(cluster.url(database), "base")

    assert schema_dump(cluster, database) == before
    assert query(cluster, database, "SELECT * FROM public.waha_config") == rows_before
    assert query(cluster, database, "SELECT name FROM public.campaigns ORDER BY id") == [("Black Friday",), ("Natal",)]


def test_roles_are_kept_at_base(cluster, fresh_database):
    database = fresh_database("empty").database
    cluster.migrate(database, "head")
    downgrade(cluster.url(database), "base")
    roles = query(cluster, database, "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname IN ('authenticated', 'service_role') ORDER BY 1")
    assert roles == [("authenticated",), ("service_role",)]
