"""`waha-db export supabase`: what it prints and its exit status (the files: tests/supabase/)."""

from __future__ import annotations

from waha_db.lifecycle.export import migration_files, supabase_files

OWNER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"


def test_export_lists_every_file_and_says_how_to_push(waha_db, tmp_path):
    result = waha_db(None, "export", "supabase", "--workdir", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[: len(migration_files())] == [f"wrote      {item.path}" for item in migration_files()]
    assert "wrote      supabase/tests/waha_row_security.sql" in lines
    summary = f"{len(supabase_files())} written, 0 updated, 0 unchanged in {tmp_path / 'supabase'}."
    assert lines[-1].startswith(summary + " Apply: supabase db push --db-url URL")


def test_export_defaults_to_the_current_folder(waha_db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert waha_db(None, "export", "supabase").exit_code == 0
    assert (tmp_path / "supabase" / "migrations" / migration_files()[0].path.name).is_file()


def test_export_fails_when_a_waha_file_differs_and_writes_nothing(waha_db, tmp_path):
    assert waha_db(None, "export", "supabase", "--workdir", str(tmp_path), "--owner", OWNER).exit_code == 0
    result = waha_db(None, "export", "supabase", "--workdir", str(tmp_path))
    assert result.exit_code == 1
    assert (
        f"DIFFERS    {migration_files()[0].path}: exported with --owner {OWNER}: export with the same --owner"
        in result.output
    )
    assert "Error: a waha file differs from what this waha-db writes, so nothing was written" in result.output


def test_export_refuses_a_malformed_owner(waha_db, tmp_path):
    result = waha_db(None, "export", "supabase", "--workdir", str(tmp_path), "--owner", "ana")
    assert result.exit_code == 2  # a bad value, as --help says
    assert "Invalid value for '--owner': --owner 'ana' is not a UUID" in result.output
    assert list(tmp_path.iterdir()) == []


def test_export_into_a_folder_that_does_not_exist_is_refused_and_creates_nothing(waha_db, tmp_path):
    result = waha_db(None, "export", "supabase", "--workdir", str(tmp_path / "no" / "such"))
    assert result.exit_code != 0
    assert "is not a directory" in result.output
    assert not (tmp_path / "no").exists()
