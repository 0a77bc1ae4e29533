"""`waha-db export supabase`: the files it writes, their names and versions, and how it treats
a folder that already holds files. No database and no Supabase CLI here (see test_push.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest

from waha_db.lifecycle import export, migrate, revisions

OWNER = "0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"

# What every waha-db release writes for the revisions released so far: the name the Supabase
# CLI records each file under, and the SHA-256 of its text. A released revision is frozen, so
# its exported file must never change: a later release only adds files. Add a line here when a
# revision is released; never change one.
RELEASED = {
    "0001": (
        "20261125000001_waha_0001_legacy_waha_config.sql",
        "9095098ce3b8c8ebb77556092e14e33f8b28fbef98610ac8319b4eb2d48b6a59",
    ),
    "0002": (
        "20261125000002_waha_0002_waha_servers_and_sessions.sql",
        "5a94a8d1579dc98dd4cac9409276f5165e7250f922b045a25e695e4fbde0c473",
    ),
    "0003": (
        "20261125000003_waha_0003_get_available_waha_server.sql",
        "998108f6b522107a1e28154ba5b0acd617af8be5fce81bf386ae096d230763a7",
    ),
    "0004": (
        "20261125000004_waha_0004_roles_grants_row_security.sql",
        "3c182218d82be7f8e7eee74c5ba34d23cdcc5be564232a871039bf532fabd6e4",
    ),
    "0005": (
        "20261125000005_waha_0005_convert_legacy_waha_config.sql",
        "cb088cf61917931f6827058a88cae49b1d488f0b437c12e0b9db25a48160166f",
    ),
    "0006": (
        "20261125000006_waha_0006_allocate_and_release_waha_session.sql",
        "2b0f9bb6d33178bead9cde4778f99017065931cfded0510ffb34888efb763845",
    ),
    "0007": (
        "20261125000007_waha_0007_waha_server_health.sql",
        "c913d933c8b817d549da096b3181076263fa49cb90f7d6e91e4fe5bbd51b182f",
    ),
    "0008": (
        "20261126000008_waha_0008_bounded_server_selection.sql",
        "e54f43a7aae799864b635d5b3cf3686d2a56fd69031612a7231b9d89b509a80f",
    ),
    "0009": (
        "20261202000009_waha_0009_waha_server_version.sql",
        "a8ca5fbde00bb36863a72ceda79eef24201921a9a779666d8a7d6f05bc83867c",
    ),
    "0010": (
        "20261202000010_waha_0010_session_names_per_user_and_one_url_per_server.sql",
        "5899a92bb808eefad7ca08c539e312fbb63b9ecdc9671c91102c3fdf4e96b982",
    ),
}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_one_migration_file_per_revision_in_revision_order():
    files = export.migration_files()
    assert [item.revision for item in files] == revisions.ids()
    names = [item.path.name for item in files]
    assert names == sorted(names), "the Supabase CLI applies files in name order"
    versions = [name.split("_", 1)[0] for name in names]
    assert len(set(versions)) == len(versions)
    assert all(export.WAHA_MIGRATION_NAME.match(name) for name in names)


def test_released_revisions_keep_their_file_name_and_text():
    files = {item.revision: item for item in export.migration_files()}
    for revision, (name, sha256) in RELEASED.items():
        assert files[revision].path.name == name
        assert digest(files[revision].text) == sha256, f"the exported file of released revision {revision} changed"


def test_files_from_0011_on_check_a_later_revision_before_they_skip_and_the_released_ones_keep_their_rule():
    """A released file's text is frozen (it trusts any value that is not one of its ancestors); from
    FIRST_VERIFYING_REVISION on, a file refuses a value that cannot have followed it."""
    verifying = "version_table_locked"
    for item in export.migration_files():
        if item.revision < export.FIRST_VERIFYING_REVISION:
            assert verifying not in item.text, item.revision
        else:
            assert verifying in item.text and "which is no waha-db revision that can follow" in item.text, item.revision


def test_revision_ids_are_four_digits_as_the_exported_files_take_a_later_one_to_be():
    """A file from 0011 on skips itself for a later revision: four digits, greater than its own."""
    ids = revisions.ids()
    assert all(re.fullmatch(r"[0-9]{4}", revision) for revision in ids)
    assert ids == sorted(ids)


def test_a_later_release_only_adds_files():
    """The export of an older head is a prefix of today's: adding revisions changes no file."""
    today = export.migration_files()
    for older_head in revisions.ids()[:-1]:
        older = export.migration_files(head=older_head)
        assert today[: len(older)] == older


def test_versions_follow_create_dates_and_always_increase():
    day = dt.datetime(2026, 11, 25)
    versions = export.migration_versions(
        [
            ("0001", day + dt.timedelta(seconds=1)),
            ("0002", day + dt.timedelta(days=7, seconds=2)),
            ("0003", day + dt.timedelta(days=3, seconds=3)),  # dated before the revision it follows
            ("0004", None),  # no date at all
        ]
    )
    assert versions == {
        "0001": "20261125000001",
        "0002": "20261202000002",
        "0003": "20261202000003",
        "0004": "20261202000004",
    }


def test_a_create_date_alone_is_second_n_of_that_day():
    assert export.create_moment("Revision ID: 0012\nCreate Date: 2027-01-15\n", "0012") == dt.datetime(
        2027, 1, 15, 0, 0, 12
    )
    assert export.create_moment("Create Date: 2027-01-15 10:20:30.123456", "0012") == dt.datetime(
        2027, 1, 15, 10, 20, 30
    )
    assert export.create_moment("no date here", "0012") is None


def test_owner_is_written_only_into_the_files_up_to_the_conversion():
    plain = {item.revision: item.text for item in export.migration_files()}
    owned = {item.revision: item.text for item in export.migration_files(owner=OWNER.upper())}
    changed = [revision for revision in plain if plain[revision] != owned[revision]]
    assert changed == revisions.between(migrate.conversion_revision(), None)
    assert f"set_config('waha.config_owner', '{OWNER}', true)" in owned["0005"]


def test_a_malformed_owner_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(migrate.MigrationError, match="is not a UUID"):
        export.export_supabase(tmp_path, owner="not-a-uuid")
    assert list(tmp_path.iterdir()) == []


def test_export_writes_migrations_and_pgtap_tests(tmp_path):
    report = export.export_supabase(tmp_path)
    assert report.ok
    written = sorted(str(entry.path) for entry in report.having(export.WRITTEN))
    assert written == sorted(str(item.path) for item in export.supabase_files())
    tests = sorted(path.name for path in (tmp_path / "supabase" / "tests").iterdir())
    assert tests == [
        "waha_allocation.sql",
        "waha_row_security.sql",
        "waha_schema.sql",
        "waha_selection.sql",
        "waha_session_events.sql",
    ]


def test_the_apps_own_files_are_left_alone(tmp_path):
    migrations = tmp_path / "supabase" / "migrations"
    migrations.mkdir(parents=True)
    (migrations / "20250101120000_create_campaigns.sql").write_text("CREATE TABLE public.campaigns ();\n")
    (tmp_path / "supabase" / "tests").mkdir()
    (tmp_path / "supabase" / "tests" / "campaigns.sql").write_text("SELECT 1;\n")
    report = export.export_supabase(tmp_path)
    assert report.ok
    assert [str(entry.path) for entry in report.having(export.FOREIGN)] == [
        "supabase/migrations/20250101120000_create_campaigns.sql"
    ]
    assert (migrations / "20250101120000_create_campaigns.sql").read_text() == "CREATE TABLE public.campaigns ();\n"
    assert (tmp_path / "supabase" / "tests" / "campaigns.sql").read_text() == "SELECT 1;\n"


def test_exporting_again_changes_nothing(tmp_path):
    export.export_supabase(tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*.sql")}
    report = export.export_supabase(tmp_path)
    assert report.ok and not report.having(export.WRITTEN)
    assert len(report.having(export.UNCHANGED)) == len(before)
    assert {path: path.read_bytes() for path in tmp_path.rglob("*.sql")} == before


def test_an_edited_waha_file_is_reported_and_nothing_is_written(tmp_path):
    export.export_supabase(tmp_path, head="0003")
    edited = tmp_path / "supabase" / "migrations" / RELEASED["0002"][0]
    edited.write_text(edited.read_text() + "-- a DBA's note\n")
    report = export.export_supabase(tmp_path)
    assert not report.ok
    assert [(entry.path.name, entry.why) for entry in report.having(export.DIFFERS)] == [
        (RELEASED["0002"][0], "not the text this waha-db writes (edited by hand?)")
    ]
    assert edited.read_text().endswith("-- a DBA's note\n")
    assert not (tmp_path / "supabase" / "migrations" / RELEASED["0004"][0]).exists(), "nothing may be written"


def test_an_edited_pgtap_test_file_is_brought_to_this_release(tmp_path):
    export.export_supabase(tmp_path)
    schema_tests = tmp_path / "supabase" / "tests" / "waha_schema.sql"
    schema_tests.write_text("-- an older release's tests\n")
    report = export.export_supabase(tmp_path)
    assert report.ok
    assert [str(entry.path) for entry in report.having(export.UPDATED)] == ["supabase/tests/waha_schema.sql"]
    assert schema_tests.read_text() == next(
        item.text for item in export.pgtap_test_files() if item.path.name == "waha_schema.sql"
    )


def test_a_file_exported_with_another_owner_is_reported_as_such(tmp_path):
    export.export_supabase(tmp_path, owner=OWNER)
    report = export.export_supabase(tmp_path)
    assert not report.ok
    reasons = {entry.why for entry in report.having(export.DIFFERS)}
    assert reasons == {f"exported with --owner {OWNER}: export with the same --owner"}
    assert export.export_supabase(tmp_path, owner=OWNER).ok


def test_a_waha_file_of_a_known_revision_under_another_name_differs(tmp_path):
    migrations = tmp_path / "supabase" / "migrations"
    migrations.mkdir(parents=True)
    (migrations / "20240101000000_waha_0002_renamed.sql").write_text("-- old\n")
    report = export.export_supabase(tmp_path)
    assert [(entry.path.name, entry.why) for entry in report.having(export.DIFFERS)] == [
        ("20240101000000_waha_0002_renamed.sql", f"revision 0002 is exported as {RELEASED['0002'][0]}")
    ]


def test_a_newer_releases_waha_file_is_kept(tmp_path):
    migrations = tmp_path / "supabase" / "migrations"
    migrations.mkdir(parents=True)
    newer = migrations / "20991231000000_waha_9999_from_the_future.sql"
    newer.write_text("-- a later release\n")
    report = export.export_supabase(tmp_path)
    assert report.ok
    assert [entry.path.name for entry in report.having(export.NEWER)] == [newer.name]
    assert newer.read_text() == "-- a later release\n"


def test_a_workdir_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(export.ExportError, match="is not a directory"):
        export.export_supabase(tmp_path / "missing")
