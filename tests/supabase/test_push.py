"""The export pushed with the real Supabase CLI (`supabase db push --db-url`), and the hand-over
between the CLI and waha-db in both directions, on throwaway databases."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.databases import PASSWORD, database_state, recorded_revisions, run_sql, servers, upgrade
from tests.support.factories import LEGACY_OWNER
from tests.support.pushes import (
    CLI_HISTORY_SCHEMA,
    exported_workdir,
    listed_migrations,
    push,
    pushed,
    recorded_by_cli,
    schema_of,
    versions_of,
    without_cli_history,
)
from waha_db.checks.legacy import LEGACY_V1_SQL
from waha_db.lifecycle import revisions

pytestmark = pytest.mark.supabase_cli


def state_without_cli_history(url) -> dict:
    """The catalog and every row, the Supabase CLI's history left out."""
    state = database_state(url)
    state["rows"] = {
        table: values for table, values in state["rows"].items() if not table.startswith(CLI_HISTORY_SCHEMA + ".")
    }
    state["catalog"] = without_cli_history(state["catalog"])
    return state


@pytest.mark.parametrize(
    ("empty", "upgraded"), [("supabase_empty", "supabase_head"), ("empty", "head")], ids=["supabase", "postgres"]
)
def test_pushed_export_yields_the_schema_of_an_upgrade(supabase_cli, export, fresh_database, empty, upgraded):
    url = fresh_database(empty)
    pushed(supabase_cli, url, export)
    assert schema_of(url) == schema_of(fresh_database(upgraded))
    assert recorded_revisions(url) == [revisions.head()]


def test_migration_list_shows_every_file_applied(supabase_cli, export, fresh_database):
    url = fresh_database("supabase_empty")
    pushed(supabase_cli, url, export)
    assert listed_migrations(supabase_cli, url, export) == [(version, version) for version in versions_of(export)]


def test_waha_db_manages_a_pushed_database(supabase_cli, export, fresh_database, waha_db):
    url = fresh_database("supabase_empty")
    pushed(supabase_cli, url, export)
    status = waha_db(url, "status", "--check")
    assert status.exit_code == 0, status.output
    assert f"state: at head ({revisions.head()})" in status.output
    upgraded = waha_db(url, "upgrade", "--yes")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"nothing to do: the database is at {revisions.head()}" in upgraded.output


def test_cli_and_waha_db_take_turns_without_applying_anything_twice(supabase_cli, fresh_database, waha_db, tmp_path):
    """An older release's export pushed; waha-db upgrades the rest; today's export pushed on top."""
    older_head = revisions.ids()[4]
    older = exported_workdir(tmp_path / "older", head=older_head)
    url = fresh_database("supabase_empty")
    pushed(supabase_cli, url, older)
    assert recorded_revisions(url) == [older_head]

    upgraded = waha_db(url, "upgrade", "--yes")
    assert upgraded.exit_code == 0, upgraded.output
    newer = revisions.ids()[5:]
    assert f"revisions to apply ({len(newer)}):" in upgraded.output
    assert [line.split()[0] for line in upgraded.output.splitlines() if line.startswith("  0")] == newer

    today = exported_workdir(tmp_path / "today")
    before = state_without_cli_history(url)
    pushed(supabase_cli, url, today)
    assert state_without_cli_history(url) == before, "the files of revisions waha-db applied must change nothing"
    assert recorded_by_cli(url) == versions_of(today)
    assert schema_of(url) == schema_of(fresh_database("supabase_head"))


def test_push_after_a_waha_db_upgrade_changes_nothing_and_records_every_file(supabase_cli, export, fresh_database):
    url = fresh_database("legacy_head")
    before = state_without_cli_history(url)
    pushed(supabase_cli, url, export)
    assert state_without_cli_history(url) == before
    assert listed_migrations(supabase_cli, url, export) == [(version, version) for version in versions_of(export)]


def test_push_completes_a_partial_waha_db_upgrade(supabase_cli, export, fresh_database):
    url = fresh_database("supabase_empty")
    upgrade(url, revisions.ids()[2])
    pushed(supabase_cli, url, export)
    assert recorded_revisions(url) == [revisions.head()]
    assert schema_of(url) == schema_of(fresh_database("supabase_head"))


def test_waha_files_older_than_the_apps_applied_migrations_go_in_with_include_all(
    supabase_cli, fresh_database, tmp_path
):
    url = fresh_database("supabase_empty")
    migrations = tmp_path / "supabase" / "migrations"
    migrations.mkdir(parents=True)
    (migrations / "20991231120000_create_campaigns.sql").write_text(
        "CREATE TABLE public.campaigns (id serial PRIMARY KEY);\n"
    )
    pushed(supabase_cli, url, tmp_path)
    exported_workdir(tmp_path)
    refused = push(supabase_cli, url, tmp_path)
    assert refused.returncode != 0 and "Rerun the command with --include-all flag" in refused.stdout + refused.stderr
    done = supabase_cli.run("db", "push", "--yes", "--include-all", workdir=tmp_path, url=url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert recorded_revisions(url) == [revisions.head()]
    assert recorded_by_cli(url) == versions_of(tmp_path)


def test_a_push_with_a_file_missing_stops_at_the_gap(supabase_cli, fresh_database, tmp_path):
    workdir = exported_workdir(tmp_path)
    missing = next((workdir / "supabase" / "migrations").glob("*_waha_0003_*.sql"))
    missing.unlink()
    url = fresh_database("supabase_empty")
    done = push(supabase_cli, url, workdir)
    assert done.returncode != 0
    assert (
        "ERROR: waha-db revision 0004 applies on top of revision 0003, but the database is at 0002 (SQLSTATE WAH06)"
        in done.stderr
    )
    assert recorded_revisions(url) == ["0002"]


def test_a_push_onto_tables_made_by_hand_is_refused_before_anything_is_applied(supabase_cli, export, fresh_database):
    url = fresh_database("empty")
    run_sql(
        url, "CREATE TABLE public.waha_servers (id uuid PRIMARY KEY, user_id uuid NOT NULL, nome varchar(255) NOT NULL)"
    )
    before = state_without_cli_history(url)
    done = push(supabase_cli, url, export)
    assert done.returncode != 0
    assert "(SQLSTATE WAH05)" in done.stderr and "Adopt the database first with `waha-db adopt`" in done.stderr
    assert state_without_cli_history(url) == before


def test_a_password_in_the_push_url_never_reaches_the_output(supabase_cli, export, fresh_database, password_role):
    wrong = "not-" + PASSWORD
    url = fresh_database("supabase_empty").set(username=password_role, password=wrong)
    done = push(supabase_cli, url, export)
    assert done.returncode != 0
    assert f'password authentication failed for user "{password_role}"' in done.stderr
    assert wrong not in done.stdout + done.stderr + " ".join(done.args)


# --- the legacy waha_config, converted through a push ------------------------------------------------


def test_legacy_conversion_with_the_owner_written_into_the_export(supabase_cli, fresh_database, tmp_path):
    url = fresh_database("empty", LEGACY_V1_SQL)
    pushed(supabase_cli, url, exported_workdir(tmp_path, owner=LEGACY_OWNER))
    upgraded = fresh_database("legacy_head")
    assert servers(url) == servers(upgraded)
    assert servers(url)[0]["user_id"] == LEGACY_OWNER and servers(url)[0]["nome"] == "Servidor Padrão"
    assert schema_of(url) == schema_of(upgraded)
    assert run_sql(url, "SELECT name FROM public.campaigns ORDER BY id") == [("Black Friday",), ("Natal",)]


def test_legacy_conversion_with_the_owner_in_the_push_url(supabase_cli, export, fresh_database):
    url = fresh_database("empty", LEGACY_V1_SQL)
    pushed(supabase_cli, url_with_owner(url, LEGACY_OWNER), export)
    assert servers(url) == servers(fresh_database("legacy_head"))


def url_with_owner(url, owner: str) -> str:
    """The push's --db-url carrying the owner as a session setting (libpq's `options`)."""
    return (
        f"postgresql://postgres@127.0.0.1:{url.port}/{url.database}"
        f"?sslmode=disable&options=-c%20waha.config_owner%3D{owner}"
    )


@pytest.mark.parametrize(
    ("kind", "owner", "message", "way_out"),
    [
        (
            "empty",
            None,
            "waha_config holds a WAHA server to convert, but no owner was given (SQLSTATE WAH01)",
            "Give the id of the user who will own it (auth.users.id), then push again: "
            "export the files with `waha-db export supabase --owner UUID`",
        ),
        (
            "empty",
            "not-a-uuid",
            "the owner of the legacy WAHA server, 'not-a-uuid', is not a UUID (SQLSTATE WAH02)",
            "Give the id of a user",
        ),
        (
            "supabase_empty",
            "1f7e6b0a-5c4d-4e3f-8a2b-9c0d1e2f3a4b",
            "the owner of the legacy WAHA server, 1f7e6b0a-5c4d-4e3f-8a2b-9c0d1e2f3a4b, is not a user in auth.users"
            " (SQLSTATE WAH02)",
            "Give the id of an existing user",
        ),
    ],
    ids=["no owner", "not a uuid", "not a user"],
)
def test_push_without_a_usable_owner_stops_before_anything_is_applied(
    supabase_cli, export, fresh_database, kind, owner, message, way_out
):
    url = fresh_database(kind)
    run_sql(url, LEGACY_V1_SQL)
    before = state_without_cli_history(url)
    done = push(supabase_cli, url if owner is None else url_with_owner(url, owner), export)
    assert done.returncode != 0
    assert f"ERROR: {message}" in done.stderr
    assert f"Nothing was applied. {way_out}" in done.stderr
    assert recorded_by_cli(url) == []
    assert state_without_cli_history(url) == before


# --- alembic_version: closed to the API roles, and never trusted beyond what can be checked ------------------


def api_roles_on_alembic_version(url) -> set[str]:
    """The outcomes of SELECT, UPDATE and DELETE on alembic_version as anon and as authenticated."""
    outcomes = set()
    for role in ("anon", "authenticated"):
        for statement in (
            "SELECT version_num FROM public.alembic_version",
            "UPDATE public.alembic_version SET version_num = '0004'",
            "DELETE FROM public.alembic_version",
        ):
            try:
                run_sql(url, f"BEGIN; SET LOCAL ROLE {role}; {statement}; ROLLBACK")
                outcomes.add(f"{role} allowed")
            except psycopg.errors.InsufficientPrivilege:
                outcomes.add("refused")
    return outcomes


def as_anon(url, statement: str) -> None:
    """`statement` run as anon, committed: what any visitor of the app could do before revision 0011."""
    run_sql(url, f"BEGIN; SET LOCAL ROLE anon; {statement}; COMMIT")


def test_a_pushed_database_keeps_alembic_version_from_the_api_roles(supabase_cli, export, fresh_database):
    url = fresh_database("supabase_empty")
    pushed(supabase_cli, url, export)
    assert api_roles_on_alembic_version(url) == {"refused"}


def test_before_revision_0011_a_pushed_database_gave_alembic_version_to_the_api_roles(
    supabase_cli, fresh_database, tmp_path
):
    url = fresh_database("supabase_empty")
    pushed(supabase_cli, url, exported_workdir(tmp_path, head="0010"))
    assert api_roles_on_alembic_version(url) == {"anon allowed", "authenticated allowed"}


@pytest.mark.parametrize(
    ("written", "refusal"),
    [
        ("0011", "alembic_version says revision 0011, but the API roles may still write it (row security is off)"),
        ("0042", "alembic_version says revision 0042, but the API roles may still write it (row security is off)"),
        ("pwned", "alembic_version holds pwned, which is no waha-db revision that can follow revision 0010"),
        ("0003", "waha-db revision 0011 applies on top of revision 0010, but the database is at 0003"),
    ],
    ids=["this revision", "a later one", "no revision", "an earlier one"],
)
def test_a_revision_written_by_anon_makes_the_push_fail_instead_of_skipping(
    supabase_cli, export, fresh_database, tmp_path, written, refusal
):
    """A database that pushed the files up to 0010, then a visitor moved alembic_version: file 0011 must not
    take the value for "applied" (the files before it did, and must keep their text)."""
    url = fresh_database("supabase_empty")
    pushed(supabase_cli, url, exported_workdir(tmp_path / "older", head="0010"))
    as_anon(url, f"UPDATE public.alembic_version SET version_num = '{written}'")
    done = push(supabase_cli, url, export)
    assert done.returncode != 0
    assert f"ERROR: {refusal}" in done.stderr and "(SQLSTATE WAH06)" in done.stderr
    assert "Nothing was applied." in done.stderr
    assert recorded_revisions(url) == [written]
    assert api_roles_on_alembic_version(url) == {"anon allowed", "authenticated allowed"}

    run_sql(url, "UPDATE public.alembic_version SET version_num = '0010'")
    pushed(supabase_cli, url, export)
    assert recorded_revisions(url) == [revisions.head()]
    assert api_roles_on_alembic_version(url) == {"refused"}
    assert schema_of(url) == schema_of(fresh_database("supabase_head"))


def test_file_0010_skipped_on_a_written_revision_is_caught_by_file_0011(supabase_cli, export, fresh_database, tmp_path):
    """The released file 0010 trusts any value that is not one of its ancestors; file 0011 checks what 0010 made."""
    url = fresh_database("supabase_empty")
    pushed(supabase_cli, url, exported_workdir(tmp_path / "older", head="0009"))
    as_anon(url, "UPDATE public.alembic_version SET version_num = '0010'")
    done = push(supabase_cli, url, export)
    assert done.returncode != 0
    assert "ERROR: alembic_version says revision 0010, but what revision 0010 makes is missing" in done.stderr
    assert "UPDATE public.alembic_version SET version_num = '0009';" in done.stderr
    repair = f"supabase migration repair --status reverted {versions_of(export)[9]}"
    assert repair in done.stderr

    run_sql(url, "UPDATE public.alembic_version SET version_num = '0009'")
    repaired = supabase_cli.run(*repair.split()[1:], "--yes", workdir=export, remote=url)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    pushed(supabase_cli, url, export)
    assert recorded_revisions(url) == [revisions.head()]
    assert schema_of(url) == schema_of(fresh_database("supabase_head"))


def test_a_later_revision_is_trusted_where_alembic_version_is_closed(supabase_cli, export, fresh_database):
    """A newer waha-db upgraded the database past this release: every file skips itself, nothing changes."""
    url = fresh_database("supabase_head")
    run_sql(url, "UPDATE public.alembic_version SET version_num = '0042'")
    before = state_without_cli_history(url)
    done = push(supabase_cli, url, export)
    assert done.returncode == 0, done.stdout + done.stderr
    assert state_without_cli_history(url) == before
    assert recorded_by_cli(url) == versions_of(export)
