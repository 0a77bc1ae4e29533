"""sql/schema.sql: the full V2.1 schema for fresh installs, generated from the migrations.

That it is fresh, yields the online schema and stays managed is suite.check_schema_file,
run on every kind of database by tests/checks/test_suite.py.
"""

from __future__ import annotations

from waha_db.lifecycle.migrate import FULL_SCHEMA_PATH
from waha_db.lifecycle.revisions import head as head_revision


def test_schema_file_names_its_revision_and_how_to_regenerate():
    head = FULL_SCHEMA_PATH.read_text(encoding="utf-8").splitlines()[:3]
    assert f"revision {head_revision()}" in head[0]
    assert "python -m waha_db.lifecycle.migrate" in head[2]
