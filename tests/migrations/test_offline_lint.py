"""The offline scripts as a DBA applies them with psql: linted by Squawk, silent, and refused where they do not fit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.migrations.upgrade_support import psql
from tests.support.databases import database_state, run_sql, upgrade
from waha_db.database import conninfo
from waha_db.lifecycle import revisions
from waha_db.lifecycle.migrate import FULL_SCHEMA_PATH, offline_sql

SQUAWK = shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")
# Rules the contract itself answers: the seed's column types (integer, varchar(255)) are the V2.1 schema,
# and an index is built, or a CHECK added to a table that exists, inside the upgrade's one transaction
# (CONCURRENTLY cannot be, nor a VALIDATE CONSTRAINT in a later transaction), on WAHA tables only, within
# statement_timeout; a revision that adds a CHECK lists the rows it would refuse first.
CONTRACT = "prefer-bigint-over-int,prefer-text-field,require-concurrent-index-creation,constraint-missing-not-valid"


@pytest.mark.parametrize("start", [None, "0004", revisions.previous(revisions.head())])
def test_squawk_finds_nothing_in_the_offline_scripts_but_what_the_contract_fixes(tmp_path, start):
    assert SQUAWK, "squawk is a test dependency: pip install -e '.[test]'"
    script = tmp_path / "upgrade.sql"
    script.write_text(offline_sql("head", start=start))
    done = subprocess.run([SQUAWK, f"--exclude={CONTRACT}", str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "require-statement-timeout" not in done.stdout


def test_psql_prints_no_rows_while_it_applies_the_full_schema(cluster, fresh_database):
    url = fresh_database("empty")
    done = subprocess.run(
        [
            str(cluster.server.bin_dir / "psql"),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo(url),
            "-f",
            str(FULL_SCHEMA_PATH),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "row)" not in done.stdout and "rows)" not in done.stdout, done.stdout


def test_a_script_from_nothing_run_again_on_the_database_it_upgraded_is_refused_and_changes_nothing(
    cluster, fresh_database
):
    url = fresh_database("empty")
    script = offline_sql("head")
    assert psql(cluster, url, input=script).returncode == 0
    before = database_state(url)
    again = psql(cluster, url, input=script)
    assert again.returncode != 0
    assert (
        "ERROR:  this script is for a database with no revision recorded (no alembic_version table), "
        f"but this one is at revision {revisions.head()}: nothing was changed"
    ) in again.stderr
    assert "waha-db upgrade --sql FROM:head" in again.stderr
    assert database_state(url) == before


def test_a_script_from_a_revision_refuses_a_database_at_another(cluster, fresh_database):
    url = fresh_database("empty")
    upgrade(url, "0003")
    before = database_state(url)
    applied = psql(cluster, url, input=offline_sql("head", start="0004"))
    assert applied.returncode != 0
    assert "this script is for a database at revision 0004, but this one is at revision 0003" in applied.stderr
    assert database_state(url) == before
    upgrade(url, "0004")
    assert psql(cluster, url, input=offline_sql("head", start="0004")).returncode == 0
    assert run_sql(url, "SELECT version_num FROM public.alembic_version") == [(revisions.head(),)]
