"""sql/schema.sql: the full V2.1 schema for fresh installs, generated from the migrations."""

from __future__ import annotations

from tests.migrations.upgrade_support import psql, run_sql, schema_dump, upgrade
from waha_db.lifecycle.migrate import FULL_SCHEMA_PATH, full_schema_sql
from waha_db.lifecycle.revisions import head as head_revision


def test_schema_file_is_up_to_date_with_the_migrations():
    assert FULL_SCHEMA_PATH.read_text(encoding="utf-8") == full_schema_sql(), (
        "sql/schema.sql is stale: regenerate it with `python -m waha_db.lifecycle.migrate` and commit it"
    )


def test_schema_file_applied_by_psql_gives_the_online_schema_and_stays_managed(cluster, fresh_database):
    from_file, online = fresh_database("empty"), fresh_database("empty")
    applied = psql(cluster, from_file, "-f", str(FULL_SCHEMA_PATH))
    assert applied.returncode == 0, applied.stderr
    upgrade(online)
    assert schema_dump(cluster, from_file) == schema_dump(cluster, online)
    assert run_sql(from_file, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    upgrade(from_file)  # Alembic manages it afterwards: nothing to do, no error
    assert run_sql(from_file, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


def test_schema_file_names_its_revision_and_how_to_regenerate():
    head = FULL_SCHEMA_PATH.read_text(encoding="utf-8").splitlines()[:3]
    assert f"revision {head_revision()}" in head[0]
    assert "python -m waha_db.lifecycle.migrate" in head[2]
