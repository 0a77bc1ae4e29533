"""Stairway: every revision up, down, up again, with the schema compared at each step.

For each revision R after P: upgrade to R, downgrade to P (the schema must be what
it was at P), upgrade to R again (the schema must be what the first upgrade made).
So each downgrade is the exact inverse of its upgrade, and each upgrade is
repeatable. Run on a fresh plain database, a fresh Supabase-like one, and a legacy
V1 database with a filled waha_config and a table of the rest of the app.
"""

from __future__ import annotations

import pytest

from tests.conftest import LEGACY_OWNER, LEGACY_V1_SQL
from tests.migrations.catalog import schema_dump
from tests.migrations.test_history import revisions_base_first
from tests.migrations.upgrade_support import downgrade, run_sql

LEGACY_ROWS_SQL = """
SELECT (SELECT pg_catalog.array_agg(c ORDER BY c.id)::text FROM public.waha_config AS c),
       (SELECT pg_catalog.array_agg(c ORDER BY c.id)::text FROM public.campaigns AS c)
"""


def steps():
    ids = [revision.revision for revision in revisions_base_first()]
    return list(zip(["base", *ids[:-1]], ids))


@pytest.mark.parametrize("kind", ["empty", "supabase_empty", "legacy"])
def test_every_revision_goes_up_down_and_up_again_to_the_same_schema(cluster, fresh_database, kind):
    database = fresh_database("empty" if kind == "legacy" else kind).database
    if kind == "legacy":
        cluster.run_sql(database, LEGACY_V1_SQL)
    schema_at = {"base": schema_dump(cluster, database)}

    for previous, revision in steps():
        cluster.migrate(database, revision, owner=LEGACY_OWNER)
        schema_at[revision] = schema_dump(cluster, database)
        if not (kind == "legacy" and revision == "0001"):  # 0001 keeps the legacy table that is already there
            assert schema_at[revision] != schema_at[previous], f"revision {revision} changed nothing"

        downgrade(cluster.url(database), previous)
        assert schema_dump(cluster, database) == schema_at[previous], (
            f"downgrade {revision} -> {previous} did not restore the schema of {previous}"
        )

        cluster.migrate(database, revision, owner=LEGACY_OWNER)
        assert schema_dump(cluster, database) == schema_at[revision], (
            f"upgrade {previous} -> {revision} after a downgrade made a different schema"
        )


def test_legacy_rows_survive_the_whole_stairway_down_to_base(cluster, fresh_database):
    database = fresh_database("empty").database
    cluster.run_sql(database, LEGACY_V1_SQL)
    before = run_sql(cluster.url(database), LEGACY_ROWS_SQL)

    for _, revision in steps():
        cluster.migrate(database, revision, owner=LEGACY_OWNER)
    for previous, _ in reversed(steps()):
        downgrade(cluster.url(database), previous)

    assert run_sql(cluster.url(database), LEGACY_ROWS_SQL) == before

