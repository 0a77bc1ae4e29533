"""Every `next:` line of `waha-db status`, run as printed, works, or fails with exactly the refusal it explains.

One case per state status can report. Each runs the command of `next` (a `UUID`
placeholder becomes a real user, and `--yes` answers the question a person would),
and asserts that it succeeds and leaves the database at head without drift, or
that it fails with every line of the refusal status showed; where status showed
the statements that correct the database, they are applied and the command then
succeeds.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support.databases import run_sql, upgrade
from tests.support.factories import LEGACY_OWNER, add_legacy_config, hand_made_v21
from tests.support.other_servers import HotStandby
from waha_db.checks.legacy import LEGACY_V1_SQL, LEGACY_V1_TABLE
from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import create_engine
from waha_db.lifecycle import migrate, revisions

HEAD = revisions.head()


def status_of(waha_db, url) -> dict:
    result = waha_db(url, "status", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def command_of(report: dict) -> list[str]:
    """The waha-db command `next` names, as the DBA runs it: a real owner for UUID, --yes for the question."""
    text = report["next"]
    quoted = re.search(r"`(waha-db [^`]+)`", text)
    line = quoted.group(1) if quoted else text
    assert line.startswith("waha-db "), f"next names no waha-db command: {text!r}"
    words = line.replace("UUID", LEGACY_OWNER).split()[1:]
    return words + (["--yes"] if words[0] in ("upgrade", "adopt", "repair") else [])


def fixes_in(refusal: str) -> list[str]:
    """The statements a refusal gives to correct the database (the first choice when it offers two)."""
    starts = ("UPDATE ", "BEGIN READ WRITE; ALTER DATABASE ")
    statements = [line.strip() for line in refusal.splitlines() if line.strip().startswith(starts)]
    chosen = [line.split(": ", 1)[1] for line in refusal.splitlines() if "keep waha_config's values: " in line]
    return [statement.split("  --")[0] for statement in statements] + chosen


def follow(waha_db, url) -> dict:
    """Run what status says to run; when it explains a refusal, check it is exactly that, correct, run again."""
    report = status_of(waha_db, url)
    result = waha_db(url, *command_of(report))
    if report["refusal"]:
        assert result.exit_code == 1, result.output
        for line in report["refusal"].splitlines():
            assert line.strip() in result.output, f"{line!r} missing from:\n{result.output}"
        fixes = fixes_in(report["refusal"])
        if not fixes:
            return report
        for statement in fixes:
            run_sql(url, statement)
        result = waha_db(url, *command_of(status_of(waha_db, url)))
    assert result.exit_code == 0, result.output
    assert status_of(waha_db, url)["at_head"], status_of(waha_db, url)
    return report


def test_empty(waha_db, fresh_database):
    assert follow(waha_db, fresh_database("empty"))["next"] == "waha-db upgrade"


def test_legacy_with_a_server_to_convert(waha_db, fresh_database):
    assert follow(waha_db, fresh_database("empty", LEGACY_V1_SQL))["next"] == "waha-db upgrade --owner UUID"


def test_legacy_with_nothing_to_convert(waha_db, fresh_database):
    url = fresh_database("empty", LEGACY_V1_TABLE)
    add_legacy_config(url)
    assert follow(waha_db, url)["next"] == "waha-db upgrade"


@pytest.mark.parametrize(
    "values",
    [
        "UPDATE public.waha_config SET api_url = 'waha.example.com:3000', timeout = -5",
        "ALTER TABLE public.waha_config ALTER COLUMN timeout TYPE bigint; UPDATE public.waha_config SET timeout = 99999999999",
        "ALTER TABLE public.waha_config ALTER COLUMN rate_limit TYPE text; UPDATE public.waha_config SET rate_limit = '100/min'",
    ],
    ids=["url-without-scheme-and-negative-timeout", "bigint-out-of-range", "text-not-a-number"],
)
def test_legacy_with_values_v21_refuses(waha_db, fresh_database, values):
    report = follow(waha_db, fresh_database("empty", LEGACY_V1_SQL, values))
    assert report["next"] == "correct the database as said above, then `waha-db upgrade --owner UUID`"


def test_bigint_out_of_range_is_said_so_and_the_fix_names_its_column(waha_db, fresh_database):
    url = fresh_database(
        "empty",
        LEGACY_V1_SQL,
        "ALTER TABLE public.waha_config ALTER COLUMN timeout TYPE bigint; UPDATE public.waha_config SET timeout = 99999999999",
    )
    refusal = status_of(waha_db, url)["refusal"]
    assert "timeout 99999999999 is out of range (V2.1 stores an integer, at most 2147483647)" in refusal
    assert "not a whole number" not in refusal
    assert fixes_in(refusal) == ["UPDATE public.waha_config SET timeout = 30 WHERE id = 1;"]


def test_hand_made_and_adoptable(waha_db, fresh_database):
    url = fresh_database("empty", hand_made_v21())
    assert follow(waha_db, url)["next"] == "waha-db adopt"


def test_hand_made_and_not_adoptable(waha_db, fresh_database):
    url = fresh_database("empty", hand_made_v21(42))
    report = status_of(waha_db, url)
    result = waha_db(url, *command_of(report))
    assert result.exit_code == 1
    assert report["details"] and all(problem in result.output for problem in report["details"])


def test_managed_with_revisions_pending(waha_db, fresh_database):
    url = fresh_database("empty")
    upgrade(url, "0003")
    assert follow(waha_db, url)["next"] == "waha-db upgrade"


def test_at_head_there_is_nothing_next(waha_db, fresh_database):
    report = status_of(waha_db, fresh_database("head"))
    assert report["next"] == "" and report["at_head"] and report["refusal"] is None


def test_drifted_by_a_dropped_index(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "DROP INDEX public.waha_servers_ativo_idx")
    assert follow(waha_db, url)["next"] == "waha-db repair"


@pytest.mark.parametrize("kind", ["head", "supabase_head"])
def test_drifted_by_a_dropped_function_and_the_index_that_calls_it(waha_db, fresh_database, kind):
    url = fresh_database(kind)
    run_sql(url, "DROP FUNCTION public.waha_normalized_url(text) CASCADE")
    assert follow(waha_db, url)["next"] == "waha-db repair"


def test_a_push_that_skipped_0010_is_foreseen_and_its_fix_shown(waha_db, fresh_database):
    url = fresh_database("supabase_empty")
    upgrade(url, "0009")
    run_sql(url, "UPDATE public.alembic_version SET version_num = '0010'")  # recorded, never applied
    report = follow(waha_db, url)
    assert report["refusal"].startswith("alembic_version says revision 0010, but what revision 0010 makes is missing")
    assert "UPDATE public.alembic_version SET version_num = '0009';" in report["refusal"]
    run_sql(url, "UPDATE public.alembic_version SET version_num = '0009'")  # the fix the refusal gives
    assert follow(waha_db, url)["next"] == "waha-db upgrade"


def test_drifted_by_the_seeds_grant_all(waha_db, fresh_database):
    url = fresh_database("supabase_head")
    run_sql(url, "GRANT ALL ON public.waha_servers TO authenticated, service_role")  # the seed's "Atualizar permissões"
    run_sql(url, "GRANT ALL ON public.waha_sessions TO authenticated, service_role")
    report = follow(waha_db, url)
    assert report["next"] == "waha-db repair"
    assert "  REVOKE ALL ON TABLE public.waha_sessions FROM authenticated;" in report["details"]
    assert "  GRANT DELETE, INSERT, SELECT, UPDATE ON TABLE public.waha_sessions TO authenticated;" in report["details"]


def test_drifted_in_a_way_only_a_person_can_undo(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "ALTER TABLE public.waha_servers ALTER COLUMN timeout SET DEFAULT 60")
    report = follow(waha_db, url)
    assert report["state"] == "drifted" and "by hand" in report["next"]
    assert "changed column public.waha_servers.timeout" in report["refusal"]


def test_unknown_revision(waha_db, fresh_database):
    url = fresh_database("head")
    run_sql(url, "UPDATE public.alembic_version SET version_num = '9999'")
    report = follow(waha_db, url)
    assert "pip install --upgrade waha-db" in report["next"]


@pytest.fixture
def downgraded_below_the_conversion(waha_db, fresh_database):
    url = fresh_database("empty", LEGACY_V1_SQL)
    for args in (("upgrade", "--owner", LEGACY_OWNER), ("downgrade", "0004")):
        assert waha_db(url, *args, "--yes").exit_code == 0
    return url


def test_downgraded_below_the_conversion_with_the_converted_server_kept(waha_db, downgraded_below_the_conversion):
    report = follow(waha_db, downgraded_below_the_conversion)
    assert report["next"] == "waha-db upgrade"  # its owner is the converted server's


def test_downgraded_then_waha_config_changed(waha_db, downgraded_below_the_conversion):
    url = downgraded_below_the_conversion
    run_sql(url, "UPDATE public.waha_config SET api_url = 'https://new-legacy.example', api_key = 'rotated-key'")
    report = follow(waha_db, url)
    assert report["next"] == "correct the database as said above, then `waha-db upgrade`"
    assert run_sql(url, "SELECT user_id::text, api_url, api_key FROM public.waha_servers") == [
        (LEGACY_OWNER, "https://new-legacy.example", "rotated-key")
    ]


def test_an_upgrade_after_a_rollback_with_another_owner_is_refused_and_changes_nothing(
    waha_db, downgraded_below_the_conversion
):
    url = downgraded_below_the_conversion
    other = "5e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b"
    result = waha_db(url, "upgrade", "--owner", other, "--yes")
    assert result.exit_code == 1
    assert f"which belongs to user {LEGACY_OWNER}, not to the owner given ({other})" in result.output
    assert "run the upgrade without an owner" in result.output
    assert run_sql(url, "SELECT version_num FROM public.alembic_version") == [("0004",)]
    assert run_sql(url, "SELECT user_id::text FROM public.waha_servers") == [(LEGACY_OWNER,)]


# --- a database that accepts no writes, and roles the owner may not create ---------------------------------


READ_ONLY = "ALTER DATABASE {database} SET default_transaction_read_only = on"


@pytest.mark.parametrize("kind", ["empty", "legacy", "drifted", "hand_made"])
def test_a_read_only_database(waha_db, fresh_database, kind):
    url = fresh_database("head" if kind == "drifted" else "empty")
    if kind == "legacy":
        run_sql(url, LEGACY_V1_SQL)
    elif kind == "drifted":
        run_sql(url, "DROP INDEX public.waha_servers_ativo_idx")
    elif kind == "hand_made":
        run_sql(url, hand_made_v21())
    run_sql(url, READ_ONLY.format(database=f'"{url.database}"'))
    report = follow(waha_db, url)
    assert "this database is read-only: default_transaction_read_only is on for database" in report["refusal"]
    assert report["next"].startswith("correct the ")


@pytest.fixture(scope="module")
def primary():
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture(scope="module")
def standby(primary):
    """A hot standby of `primary`, and a factory of databases made on the primary, read on the standby."""
    replica = HotStandby(primary).start()

    def make(kind: str, *statements: str):
        name = primary.create_database()
        if kind == "head":
            engine = create_engine(primary.url(name))
            try:
                migrate.upgrade(engine)
            finally:
                engine.dispose()
        for statement in statements:
            run_sql(primary.url(name), statement)
        replica.caught_up()
        return replica.url(name)

    yield make
    replica.stop()


@pytest.mark.parametrize(
    "kind, statements",
    [
        ("empty", ()),
        ("head", ("DROP INDEX public.waha_servers_ativo_idx",)),
        ("empty", (hand_made_v21(),)),
    ],
    ids=["empty", "drifted", "hand-made"],
)
def test_a_hot_standby(waha_db, standby, kind, statements):
    url = standby(kind, *statements)
    report = follow(waha_db, url)
    assert "this server is a hot standby (pg_is_in_recovery() is true)" in report["refusal"]
    assert report["next"].startswith("run `waha-db ") and report["next"].endswith(
        "` against the primary server (this one is a hot standby)"
    )


@pytest.fixture
def roleless():
    """A database of a new server where authenticated and service_role were never created, owned by a role
    that may not create roles; its URL as that role, and the superuser's."""
    with ThrowawayPostgres() as server:
        run_sql(server.url(), "CREATE ROLE app_owner LOGIN")
        run_sql(server.url(), "CREATE DATABASE app OWNER app_owner")
        yield server.url("app").set(username="app_owner"), server.url("app")


def test_missing_roles_the_owner_may_not_create_are_named_and_only_those(waha_db, roleless):
    url, superuser = roleless
    both = follow(waha_db, url)
    assert both["refusal"].startswith(
        "the roles authenticated, service_role are missing and app_owner may not create them"
    )
    assert both["refusal"].endswith(
        "run the upgrade again: CREATE ROLE authenticated NOLOGIN; CREATE ROLE service_role NOLOGIN BYPASSRLS;"
    )
    run_sql(superuser, "CREATE ROLE authenticated NOLOGIN")
    one = follow(waha_db, url)
    assert one["refusal"].startswith("the role service_role is missing and app_owner may not create it")
    assert one["refusal"].endswith("run the upgrade again: CREATE ROLE service_role NOLOGIN BYPASSRLS;")
    assert "authenticated" not in one["refusal"]
    run_sql(superuser, "CREATE ROLE service_role NOLOGIN BYPASSRLS")
    assert follow(waha_db, url)["next"] == "waha-db upgrade"


def test_a_role_the_owner_may_create_is_no_refusal(waha_db, roleless):
    url, superuser = roleless
    run_sql(superuser, "ALTER ROLE app_owner CREATEROLE; CREATE ROLE service_role NOLOGIN BYPASSRLS")
    assert follow(waha_db, url)["next"] == "waha-db upgrade"
    assert run_sql(superuser, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'authenticated'") == [(False,)]
