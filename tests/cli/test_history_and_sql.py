"""`waha-db history` and `waha-db sql`."""

from __future__ import annotations

import subprocess
import sys

from tests.support.databases import upgrade
from waha_db.lifecycle import migrate, revisions

HEAD = revisions.head()


def test_history_lists_every_revision_oldest_first_with_head_marked(waha_db):
    result = waha_db(None, "history")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("  0001  Legacy V1 state")
    assert lines[-1].startswith(f"  {HEAD}  ") and lines[-1].endswith("(head)")


def test_history_marks_the_current_revision(waha_db, fresh_database):
    url = fresh_database("empty")
    upgrade(url, "0003")
    lines = waha_db(url, "history").output.splitlines()
    assert [line for line in lines if line.startswith("*")] == [next(line for line in lines if " 0003 " in line)]
    assert lines[2].endswith("(current)")


def test_sql_writes_the_generated_schema(waha_db, tmp_path):
    target = tmp_path / "schema.sql"
    result = waha_db(None, "sql", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_text() == migrate.full_schema_sql()
    assert waha_db(None, "sql", "--output", str(target), "--check").exit_code == 0


def test_sql_check_fails_on_a_stale_file(waha_db, tmp_path):
    target = tmp_path / "schema.sql"
    target.write_text(migrate.full_schema_sql().replace("waha_servers_ativo_idx", "old_index_name"))
    result = waha_db(None, "sql", "--output", str(target), "--check")
    assert result.exit_code == 1
    assert "is stale" in result.output and "waha-db sql" in result.output


def test_sql_to_stdout(waha_db):
    result = waha_db(None, "sql", "--output", "-")
    assert result.exit_code == 0
    assert result.output == migrate.full_schema_sql()


def test_sql_from_an_installed_package_needs_an_output(waha_db, monkeypatch):
    monkeypatch.setattr(migrate, "checkout_schema_file", lambda: None)
    result = waha_db(None, "sql")
    assert result.exit_code == 2
    assert "give --output FILE" in result.output


def test_checkout_schema_file_is_the_repository_file():
    assert migrate.checkout_schema_file() == revisions.CHECKOUT_ROOT / "sql" / "schema.sql"


def test_sql_into_a_folder_that_does_not_exist_is_refused_and_creates_nothing(waha_db, tmp_path):
    target = tmp_path / "no" / "such" / "x.sql"
    result = waha_db(None, "sql", "--output", str(target))
    assert result.exit_code == 2
    assert f"Invalid value for '--output': the folder {target.parent} does not exist: create it first" in result.output
    assert not (tmp_path / "no").exists()


def test_the_schema_module_run_with_help_prints_help_and_writes_nothing(tmp_path):
    target = tmp_path / "schema.sql"
    target.write_text("untouched")
    for arguments in (["--help"], ["--help", str(target)], [str(target), "--check"]):
        done = subprocess.run(
            [sys.executable, "-m", "waha_db.lifecycle.migrate", *arguments], capture_output=True, text=True
        )
        assert target.read_text() == "untouched", arguments
        assert ("usage: python -m waha_db.lifecycle.migrate" in done.stdout) == ("--help" in arguments)
    assert done.returncode == 1 and "is stale" in done.stderr
    assert migrate.FULL_SCHEMA_PATH.read_text() == migrate.full_schema_sql()
