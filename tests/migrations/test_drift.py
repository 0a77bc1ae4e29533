"""toolkit.schema's metadata matches the database at head, as `alembic check` compares them; and drift is seen.

Compared with Alembic's autogenerate (compare_type=True): tables, columns and
their types, nullability, unique constraints, indexes, foreign keys. The foreign
keys to Supabase's auth.users are left out by include_object (they exist only
where auth.users does), so plain and Supabase databases compare alike.
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from toolkit.database import create_engine
from toolkit.schema import include_object, metadata


def differences(url, *changes: str) -> list:
    """Autogenerate's diffs between the metadata and the database, after `changes` (rolled back)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            for change in changes:
                connection.exec_driver_sql(change)
            context = MigrationContext.configure(
                connection,
                opts={"compare_type": True, "compare_server_default": False, "include_object": include_object, "target_metadata": metadata},
            )
            found = compare_metadata(context, metadata)
            connection.rollback()
            return found
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["head", "supabase_head", "legacy_head"])
def test_metadata_matches_the_database_at_head(fresh_database, kind):
    assert differences(fresh_database(kind)) == []


def test_dropped_index_is_detected(fresh_database):
    found = differences(fresh_database("head"), "DROP INDEX public.waha_sessions_status_idx")
    assert [(diff[0], diff[1].name) for diff in found] == [("add_index", "waha_sessions_status_idx")]


def test_changed_column_type_is_detected(fresh_database):
    found = differences(fresh_database("head"), "ALTER TABLE public.waha_servers ALTER COLUMN nome TYPE varchar(100)")
    assert len(found) == 1
    ((change, _schema, table, column, _info, old_type, new_type),) = found[0]
    assert (change, table, column, str(old_type), str(new_type)) == ("modify_type", "waha_servers", "nome", "VARCHAR(100)", "VARCHAR(255)")


def test_extra_column_and_missing_unique_constraint_are_detected(fresh_database):
    found = differences(
        fresh_database("head"),
        "ALTER TABLE public.waha_servers ADD COLUMN regiao text",
        "ALTER TABLE public.waha_servers DROP CONSTRAINT waha_servers_user_id_api_url_key",
    )
    kinds = sorted(diff[0] if isinstance(diff, tuple) else diff[0][0] for diff in found)
    assert kinds == ["add_constraint", "remove_column"]


@pytest.mark.parametrize("kind", ["head", "supabase_head"])
def test_check_constraints_of_the_model_are_those_of_the_database(fresh_database, kind):
    """Alembic does not compare CHECK constraints; their names are compared here."""
    import sqlalchemy as sa

    modelled = {
        (table.name, constraint.name)
        for table in metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, sa.CheckConstraint)
    }
    engine = create_engine(fresh_database(kind))
    try:
        with engine.connect() as connection:
            found = set(
                connection.exec_driver_sql(
                    """
                    SELECT conrelid::regclass::text, conname FROM pg_catalog.pg_constraint
                    WHERE contype = 'c' AND conrelid IN ('public.waha_servers'::regclass, 'public.waha_sessions'::regclass)
                    """
                ).fetchall()
            )
    finally:
        engine.dispose()
    assert modelled == found
