"""Roles authenticated and service_role: created where missing, or a refusal that names them.

Roles are cluster-wide, so these tests start throwaway servers of their own
(about a second each) where the roles do not exist yet.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from tests.support.databases import downgrade, run_sql, upgrade
from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.database import create_engine
from waha_db.lifecycle import migrate, revisions

ROLES_SQL = """
SELECT rolname, rolcanlogin, rolbypassrls, rolsuper FROM pg_catalog.pg_roles
WHERE rolname IN ('authenticated', 'service_role') ORDER BY rolname
"""


@pytest.fixture(scope="module")
def bare_server():
    """A server where the Supabase roles do not exist; tests using it must leave them missing."""
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture
def fresh_server():
    with ThrowawayPostgres() as server:
        yield server


def superuser_sql(server: ThrowawayPostgres, sql: str, database: str = "postgres") -> list[tuple]:
    return run_sql(server.url(database), sql)


def database_owned_by(server: ThrowawayPostgres, role: str, *attributes: str) -> sa.URL:
    """A database owned by a new non-superuser login role; its URL connects as that role."""
    superuser_sql(server, f"CREATE ROLE {role} LOGIN NOSUPERUSER {' '.join(attributes)}")
    database = server.create_database(f"{role}_app")
    superuser_sql(server, f"ALTER DATABASE {database} OWNER TO {role}")
    return server.url(database).set(username=role)


def upgrade_collecting_notices(url: sa.URL, revision: str = "head") -> list[str]:
    notices: list[str] = []
    engine = create_engine(url)
    event.listen(
        engine,
        "connect",
        lambda dbapi_connection, _record: dbapi_connection.add_notice_handler(
            lambda diagnostic: notices.append(diagnostic.message_primary)
        ),
    )
    try:
        migrate.upgrade(engine, revision)
    finally:
        engine.dispose()
    return notices


def test_missing_roles_are_created_nologin_with_a_notice(fresh_server):
    assert superuser_sql(fresh_server, ROLES_SQL) == []
    database = fresh_server.create_database("app")

    notices = upgrade_collecting_notices(fresh_server.url(database))

    assert superuser_sql(fresh_server, ROLES_SQL) == [
        ("authenticated", False, False, False),
        ("service_role", False, True, False),
    ]
    assert any(notice.startswith("created role authenticated (NOLOGIN)") for notice in notices), notices
    assert any(notice.startswith("created role service_role (NOLOGIN BYPASSRLS)") for notice in notices), notices

    # Once the roles exist, a database owner who is not a superuser (Supabase's `postgres`) migrates to head.
    owned = database_owned_by(fresh_server, "app_owner")
    assert not any("created role" in notice for notice in upgrade_collecting_notices(owned))
    assert superuser_sql(fresh_server, "SELECT version_num FROM alembic_version", owned.database) == [
        (revisions.head(),)
    ]


@pytest.mark.parametrize(
    "attributes",
    [(), ("CREATEROLE",)],
    ids=["no-createrole", "createrole-but-bypassrls-needs-superuser"],
)
def test_upgrade_without_the_right_to_create_the_roles_stops_and_names_them(bare_server, attributes):
    role = "migrator_" + ("createrole" if attributes else "plain")
    url = database_owned_by(bare_server, role, *attributes)

    with pytest.raises(migrate.RolesMissing) as caught:
        upgrade_collecting_notices(url)

    assert str(caught.value) == (
        f"the roles authenticated, service_role are missing and {role} may not create them (BYPASSRLS takes a "
        "superuser).\nCreate them as a superuser, then run the upgrade again: CREATE ROLE authenticated NOLOGIN; "
        "CREATE ROLE service_role NOLOGIN BYPASSRLS;\nNothing was changed: the upgrade runs in one transaction."
    )
    # One transaction: no role, no table, no version row was left behind.
    assert superuser_sql(bare_server, ROLES_SQL) == []
    assert superuser_sql(
        bare_server,
        "SELECT pg_catalog.to_regclass('public.waha_servers'), pg_catalog.to_regclass('public.alembic_version')",
        url.database,
    ) == [(None, None)]


def test_roles_are_kept_at_base(fresh_database):
    url = fresh_database("empty")
    upgrade(url, "head")
    downgrade(url, "base")
    assert run_sql(url, ROLES_SQL) == [("authenticated", False, False, False), ("service_role", False, True, False)]


def test_once_one_role_exists_the_refusal_names_only_the_other(fresh_server):
    superuser_sql(fresh_server, "CREATE ROLE authenticated NOLOGIN")
    url = database_owned_by(fresh_server, "migrator_plain")
    with pytest.raises(migrate.RolesMissing) as caught:
        upgrade_collecting_notices(url)
    assert str(caught.value).startswith(
        "the role service_role is missing and migrator_plain may not create it (BYPASSRLS takes a superuser).\n"
        "Create it as a superuser, then run the upgrade again: CREATE ROLE service_role NOLOGIN BYPASSRLS;\n"
    )
    assert "CREATE ROLE authenticated" not in str(caught.value)
