"""`waha-db upgrade`: the plan, the confirmation, the owner of the legacy server, --sql, --lock-timeout."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.databases import revision_of, run_sql
from tests.support.factories import LEGACY_OWNER
from waha_db.checks.legacy import LEGACY_V1_SQL
from waha_db.database import conninfo
from waha_db.lifecycle import revisions

HEAD = revisions.head()


def test_upgrade_with_yes_takes_an_empty_database_to_head(waha_db, fresh_database):
    url = fresh_database("empty")
    result = waha_db(url, "upgrade", "--yes")
    assert result.exit_code == 0, result.output
    assert "current revision: none" in result.output
    assert "  0001  Legacy V1 state" in result.output and f"  {HEAD}  " in result.output
    assert f"upgraded to {HEAD}" in result.output
    assert revision_of(url) == HEAD


def test_upgrade_refuses_without_a_terminal_and_without_yes(waha_db, fresh_database):
    url = fresh_database("empty")
    result = waha_db(url, "upgrade")
    assert result.exit_code == 1
    assert "revisions to apply" in result.output  # the plan is shown first
    assert "no terminal to ask on" in result.output and "--yes" in result.output
    assert revision_of(url) is None


def test_upgrade_asks_at_a_terminal_and_runs_when_confirmed(waha_db, fresh_database, terminal):
    url = fresh_database("empty")
    result = waha_db(url, "upgrade", input="y\n")
    assert result.exit_code == 0, result.output
    assert f"Upgrade to {HEAD}? [y/N]" in result.output
    assert revision_of(url) == HEAD


def test_upgrade_answered_no_changes_nothing(waha_db, fresh_database, terminal):
    url = fresh_database("empty")
    result = waha_db(url, "upgrade", input="n\n")
    assert result.exit_code == 1
    assert "not confirmed: nothing was done" in result.output
    assert revision_of(url) is None


def test_upgrade_at_head_has_nothing_to_do(waha_db, fresh_database):
    result = waha_db(fresh_database("head"), "upgrade")
    assert result.exit_code == 0
    assert f"nothing to do: the database is at {HEAD}" in result.output


def test_upgrade_refuses_a_legacy_row_without_owner(waha_db, legacy_url):
    result = waha_db(legacy_url, "upgrade", "--yes")
    assert result.exit_code == 1
    assert (
        "public.waha_config holds 1 WAHA server(s) to convert (https://waha.legacy.example) and no owner was given"
        in result.output
    )
    assert "`waha-db upgrade --owner UUID`" in result.output
    assert revision_of(legacy_url) is None
    assert run_sql(legacy_url, "SELECT api_url FROM public.waha_config") == [("https://waha.legacy.example",)]


def test_upgrade_refuses_a_malformed_owner(waha_db, legacy_url):
    result = waha_db(legacy_url, "upgrade", "--yes", "--owner", "bob")
    assert result.exit_code == 2  # a bad value, as --help says
    assert "--owner 'bob' is not a UUID" in result.output
    assert revision_of(legacy_url) is None


def test_upgrade_plan_names_the_owner_and_converts(waha_db, legacy_url):
    result = waha_db(legacy_url, "upgrade", "--yes", "--owner", LEGACY_OWNER)
    assert result.exit_code == 0, result.output
    assert (
        f"legacy waha_config: 1 server(s) (https://waha.legacy.example) will become 'Servidor Padrão' of user {LEGACY_OWNER}"
        in result.output
    )
    assert run_sql(legacy_url, "SELECT user_id::text, nome, prioridade FROM public.waha_servers") == [
        (LEGACY_OWNER, "Servidor Padrão", 10)
    ]
    # The rest of the app is untouched.
    assert run_sql(legacy_url, "SELECT name FROM public.campaigns ORDER BY id") == [("Black Friday",), ("Natal",)]


def test_upgrade_refuses_a_hand_made_schema_and_points_to_adopt(waha_db, fresh_database):
    url = fresh_database("empty", "CREATE TABLE public.waha_servers (id uuid PRIMARY KEY, user_id uuid NOT NULL)")
    result = waha_db(url, "upgrade", "--yes")
    assert result.exit_code == 1
    assert "waha-db adopt" in result.output


def test_upgrade_to_a_revision_stops_there(waha_db, fresh_database):
    url = fresh_database("empty")
    result = waha_db(url, "upgrade", "0003", "--yes")
    assert result.exit_code == 0, result.output
    assert revision_of(url) == "0003"
    assert "0004" not in result.output


def test_upgrade_sql_needs_no_database_and_writes_the_owner(waha_db):
    result = waha_db(None, "upgrade", "--sql", "--owner", LEGACY_OWNER.upper())
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE public.waha_servers" in result.output
    assert f"SET LOCAL waha.config_owner = '{LEGACY_OWNER}';" in result.output
    assert result.output.rstrip().endswith("COMMIT;")


def test_upgrade_sql_refuses_a_malformed_owner(waha_db):
    result = waha_db(None, "upgrade", "--sql", "--owner", "bob")
    assert result.exit_code == 2
    assert "is not a UUID" in result.output


def test_upgrade_gives_up_on_a_held_lock_after_lock_timeout(waha_db, legacy_at_0004):
    # A long transaction of the application that read waha_config and is still open.
    with psycopg.connect(conninfo(legacy_at_0004)) as app:
        app.execute("SELECT * FROM public.waha_config")
        result = waha_db(legacy_at_0004, "upgrade", "--yes", "--owner", LEGACY_OWNER, "--lock-timeout", "0.3")
        app.rollback()
    assert result.exit_code == 1
    assert "could not lock" in result.output and "0.3 s" in result.output
    assert revision_of(legacy_at_0004) == "0004"


def test_upgrade_sql_to_an_unknown_revision_is_one_line(waha_db):
    result = waha_db(None, "upgrade", "9999", "--sql")
    assert result.exit_code == 1
    assert result.output == "Error: Can't locate revision identified by '9999'\n"


# --- the owner is checked by the plan with the migrations' own rule, before anything is asked --------


@pytest.mark.parametrize(
    "owner",
    [
        LEGACY_OWNER.replace("-", ""),  # Python's uuid.UUID() takes these three; the migrations do not
        "{" + LEGACY_OWNER + "}",
        "urn:uuid:" + LEGACY_OWNER,
    ],
)
def test_owner_the_migrations_would_refuse_is_refused_by_the_plan_before_asking(waha_db, legacy_url, terminal, owner):
    result = waha_db(legacy_url, "upgrade", "--owner", owner, input="y\n")
    assert result.exit_code == 2
    assert f"--owner {owner!r} is not a UUID in its usual form" in result.output
    assert "Upgrade to" not in result.output  # refused before the question
    assert revision_of(legacy_url) is None


def test_malformed_owner_is_refused_before_asking_even_with_nothing_to_convert(waha_db, fresh_database, terminal):
    url = fresh_database("empty")
    result = waha_db(url, "upgrade", "--owner", "bob", input="y\n")
    assert result.exit_code == 2
    assert "--owner 'bob' is not a UUID" in result.output and "Nothing was changed" in result.output
    assert "Upgrade to" not in result.output
    assert revision_of(url) is None


def test_owner_in_capitals_is_accepted_and_shown_as_the_migrations_write_it(waha_db, legacy_url):
    result = waha_db(legacy_url, "upgrade", "--yes", "--owner", LEGACY_OWNER.upper())
    assert result.exit_code == 0, result.output
    assert f"of user {LEGACY_OWNER}," in result.output
    assert run_sql(legacy_url, "SELECT user_id::text FROM public.waha_servers") == [(LEGACY_OWNER,)]


def test_owner_who_is_not_in_auth_users_is_refused(waha_db, fresh_database):
    url = fresh_database("supabase_empty", LEGACY_V1_SQL)
    result = waha_db(url, "upgrade", "--yes", "--owner", LEGACY_OWNER)
    assert result.exit_code == 1
    assert f"the owner of the legacy WAHA server, {LEGACY_OWNER}, is not a user in auth.users" in result.output
    assert revision_of(url) is None


# --- a revision written by a newer waha-db ----------------------------------------------------------


def test_upgrade_of_a_database_at_an_unknown_revision_is_refused_and_says_to_upgrade_waha_db(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "UPDATE public.alembic_version SET version_num = '9999'")
    result = waha_db(url, "upgrade", "--yes")
    assert result.exit_code == 1
    assert "current revision: 9999" in result.output
    assert "this database is at revision 9999, which this waha-db does not know" in result.output
    assert "Upgrade waha-db" in result.output
    assert revision_of(url) == "9999"
