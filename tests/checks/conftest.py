"""Fixtures of the checks' tests: databases of every kind wrapped as the checks see them, with two schema oracles."""

from __future__ import annotations

import difflib
import uuid

import pytest

from tests.support.databases import pg_dump_schema
from tests.support.factories import LEGACY_OWNER
from waha_db.checks import suite
from waha_db.checks.legacy import LEGACY_APP_TABLE, LEGACY_V1_SQL


class DumpedDatabase(suite.Database):
    """A Database whose schema is what `pg_dump --schema-only` prints: an oracle independent of the catalog code.

    pg_dump prints every object the migrations can create or change (schemas, tables,
    columns, defaults, constraints, indexes, functions, triggers, policies, row
    security, grants, comments); alembic_version and pg_dump's random \\restrict key
    are left out.
    """

    def __init__(self, url, label="", *, owner=None, pg_dump: str) -> None:
        self.pg_dump = pg_dump
        super().__init__(url, label, owner=owner)

    def schema(self) -> str:
        return pg_dump_schema(self.pg_dump, self.url, "--exclude-table=public.alembic_version")

    def differences(self, expected, actual, expected_label, actual_label) -> list[str]:
        diff = difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), expected_label, actual_label, lineterm="", n=0
        )
        return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.fixture(params=["catalog", "pg_dump"])
def oracle(request) -> str:
    return request.param


@pytest.fixture
def checked_database(cluster, fresh_database, oracle):
    """``checked_database(kind)``: a fresh database of that kind as a suite.Database, closed after the test.

    Kinds: ``empty`` (plain PostgreSQL, an application table beside), ``supabase_empty``
    (Supabase-like), ``legacy`` (a V1 waha_config with its row and the application's
    table; converted with LEGACY_OWNER).
    """
    made = []

    def make(kind: str) -> suite.Database:
        url = fresh_database(
            "supabase_empty" if kind == "supabase_empty" else "empty",
            LEGACY_V1_SQL if kind == "legacy" else LEGACY_APP_TABLE,
        )
        owner = uuid.UUID(LEGACY_OWNER) if kind == "legacy" else None
        if oracle == "pg_dump":
            database = DumpedDatabase(url, kind, owner=owner, pg_dump=str(cluster.server.bin_dir / "pg_dump"))
        else:
            database = suite.Database(url, kind, owner=owner)
        made.append(database)
        return database

    yield make
    for database in made:
        database.close()
