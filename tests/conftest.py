"""Shared fixtures: one throwaway PostgreSQL per test session, one fresh database per test.

Databases are cloned from template databases built once per session:
- ``empty``: nothing in it;
- ``head``: plain PostgreSQL migrated to head;
- ``supabase_empty`` / ``supabase_head``: with Supabase's auth.users, roles and
  default privileges (waha_db.checks.supabase), before and after the migrations;
- ``legacy_head``: a V1 database with a filled waha_config, upgraded to head with
  an owner (the DBA's path).

``v21_db`` runs a behavioural test on each kind of V2.1 database (fresh plain,
fresh Supabase, upgraded legacy), so the same rules are proven on all of them.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
import sqlalchemy as sa

from waha_db.lifecycle import migrate
from waha_db.database import conninfo, create_engine  # conninfo: re-exported, tests import it from here
from waha_db.checks.pgtemp import ThrowawayPostgres
from waha_db.checks.supabase import install_auth_stub

LEGACY_OWNER = "7d3c6f0e-2a4b-4c8d-9e1f-0a1b2c3d4e5f"

# A legacy V1 database as the wild has it, in parts the upgrade tests combine
# (tests/migrations/upgrade_support.py): the singleton waha_config with every V1
# column, its one row, and a table of the rest of the application.
LEGACY_V1_TABLE = """
CREATE TABLE public.waha_config (
    id integer PRIMARY KEY CHECK (id = 1),
    api_url text, api_key text, webhook_url text, webhook_secret text,
    timeout integer, retry_attempts integer, rate_limit integer,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now()
);
"""
LEGACY_V1_ROW = """
INSERT INTO public.waha_config (id, api_url, api_key, webhook_url, webhook_secret, timeout, retry_attempts, rate_limit)
VALUES (1, 'https://waha.legacy.example', 'legacy-key', 'https://app.example/webhook', 'legacy-secret', 45, 5, 120);
"""
LEGACY_APP_TABLE = """
CREATE TABLE public.campaigns (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO public.campaigns (name) VALUES ('Black Friday'), ('Natal');
"""
LEGACY_V1_SQL = LEGACY_V1_TABLE + LEGACY_V1_ROW + LEGACY_APP_TABLE


class Cluster:
    """The session's server, its template databases, and fresh clones of them."""

    def __init__(self, server: ThrowawayPostgres) -> None:
        self.server = server
        self._templates: dict[str, str] = {}

    def url(self, database: str) -> sa.URL:
        return self.server.url(database)

    def run_sql(self, database: str, sql: str) -> None:
        with psycopg.connect(conninfo(self.url(database)), autocommit=True) as connection:
            connection.execute(sql)

    def migrate(self, database: str, revision: str = "head", **settings) -> None:
        engine = create_engine(self.url(database))
        try:
            migrate.upgrade(engine, revision, **settings)
        finally:
            engine.dispose()

    def template(self, kind: str) -> str:
        if kind not in self._templates:
            name = self.server.create_database(f"template_{kind}")
            if kind.startswith("supabase"):
                engine = create_engine(self.url(name))
                with engine.begin() as connection:
                    install_auth_stub(connection)
                engine.dispose()
            if kind == "legacy_head":
                self.run_sql(name, LEGACY_V1_SQL)
                self.migrate(name, owner=LEGACY_OWNER)
            elif kind.endswith("head"):
                self.migrate(name)
            elif kind not in ("empty", "supabase_empty"):
                raise ValueError(f"unknown template kind {kind!r}")
            self._templates[kind] = name
        return self._templates[kind]

    def clone(self, kind: str) -> str:
        return self.server.create_database(template=self.template(kind))


@pytest.fixture(scope="session")
def cluster():
    with ThrowawayPostgres() as server:
        yield Cluster(server)


@pytest.fixture
def fresh_database(cluster):
    """A factory: ``fresh_database(kind)`` -> URL of a new database cloned from that template."""
    created = []

    def make(kind: str = "empty") -> sa.URL:
        name = cluster.clone(kind)
        created.append(name)
        return cluster.url(name)

    yield make
    for name in created:
        cluster.server.drop_database(name)


@pytest.fixture(params=["head", "supabase_head", "legacy_head"])
def v21_url(request, fresh_database) -> sa.URL:
    """A V2.1 database of each kind: fresh plain, fresh Supabase, upgraded legacy."""
    return fresh_database(request.param)


@pytest.fixture
def db(v21_url):
    """A psycopg connection (autocommit) to a V2.1 database of each kind."""
    with psycopg.connect(conninfo(v21_url), autocommit=True) as connection:
        yield connection


@pytest.fixture
def new_user(db):
    """A factory of user ids; on Supabase-like databases they are also rows of auth.users."""

    def make() -> uuid.UUID:
        user_id = uuid.uuid4()
        if db.execute("SELECT to_regclass('auth.users') IS NOT NULL").fetchone()[0]:
            db.execute("INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
        return user_id

    return make


@pytest.fixture(scope="module", params=["head", "supabase_head", "legacy_head"])
def v21_module_url(request, cluster) -> sa.URL:
    """A V2.1 database of each kind, shared by the tests of one module; pair it with `v21_tx`."""
    name = cluster.clone(request.param)
    yield cluster.url(name)
    cluster.server.drop_database(name)


@pytest.fixture
def v21_tx(v21_module_url):
    """A psycopg connection in a transaction rolled back after the test.

    A clean V2.1 database of each kind for the price of a BEGIN instead of a clone.
    Wrap a statement that is expected to fail in ``with v21_tx.transaction():`` (a
    savepoint), so the test's transaction stays usable. A module overrides ``db``
    with it to run `new_user` and friends inside the transaction.
    """
    with psycopg.connect(conninfo(v21_module_url)) as connection:
        try:
            yield connection
        finally:
            connection.rollback()
