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

A network jail replaces Python's name resolution for every test: 127.0.0.1 and
localhost resolve, any other name fails as an unknown name would (EAI_NONAME). So
"name does not resolve" is real client behaviour on a simulated DNS answer, and no
test can ever look up or reach an outside name. Fake WAHA servers
(tests/fleet/fake_waha.py) listen on 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import time
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from tests.fleet.fake_waha import FakeWaha
from waha_db.checks.legacy import LEGACY_V1_SQL
from waha_db.checks.pgtemp import (
    PostgresNotFound,
    ThrowawayPostgres,
    binaries_version,
    find_server_binaries,
    unprivileged_account,
)
from waha_db.checks.supabase import install_auth_stub
from waha_db.database import conninfo, create_engine
from waha_db.lifecycle import migrate

LEGACY_OWNER = "7d3c6f0e-2a4b-4c8d-9e1f-0a1b2c3d4e5f"
# A login role that must authenticate with a password (see `password_role`).
PASSWORD_ROLE = "waha_cli_password_user"
PASSWORD = "correct-horse-battery-staple"


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

    def query(self, database: str, sql: str) -> list[tuple]:
        with psycopg.connect(conninfo(self.url(database)), autocommit=True) as connection:
            return connection.execute(sql).fetchall()

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


def pytest_report_header(config):
    """The PostgreSQL every test of this run uses (WAHA_DB_PG_BIN chooses it), at the top of the run."""
    try:
        binaries = find_server_binaries()
        return f"PostgreSQL {binaries_version(binaries, unprivileged_account())} from {binaries}"
    except (PostgresNotFound, RuntimeError) as error:
        return f"PostgreSQL: {error}"


@pytest.fixture(scope="session")
def cluster():
    with ThrowawayPostgres() as server:
        yield Cluster(server)


@pytest.fixture(scope="session")
def password_role(cluster):
    """A login role that must authenticate with a password over TCP (the harness trusts everyone else).

    A pg_hba.conf line for this role alone is put first, so the rest of the suite keeps
    trust authentication.
    """
    cluster.run_sql("postgres", f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
    hba_file = cluster.query("postgres", "SHOW hba_file")[0][0]
    with open(hba_file) as handle:
        original = handle.read()
    with open(hba_file, "w") as handle:
        handle.write(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{original}")
    cluster.run_sql("postgres", "SELECT pg_reload_conf()")
    wrong = cluster.url("postgres").set(username=PASSWORD_ROLE, password="not-the-password")
    for _ in range(600):  # the reload is asynchronous; up to 30 s on a loaded machine
        try:
            psycopg.connect(conninfo(wrong)).close()
        except psycopg.OperationalError:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("pg_hba.conf reload did not take effect")
    yield PASSWORD_ROLE
    with open(hba_file, "w") as handle:
        handle.write(original)
    cluster.run_sql("postgres", "SELECT pg_reload_conf()")


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


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})


class NetworkJail:
    def __init__(self, real_getaddrinfo) -> None:
        self.real_getaddrinfo = real_getaddrinfo
        self.refused_names: list[str] = []

    def getaddrinfo(self, host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in LOOPBACK_NAMES:
            return self.real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        self.refused_names.append(name)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture(autouse=True)
def network_jail(monkeypatch):
    """Only loopback resolves; every other name is an unknown name (and is recorded)."""
    jail = NetworkJail(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", jail.getaddrinfo)
    return jail


@pytest.fixture
def fake_waha():
    """A factory of fake WAHA servers on 127.0.0.1, stopped at the end of the test."""
    started = []

    def make(mode: str = "healthy", **options) -> FakeWaha:
        fake = FakeWaha(mode, **options).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()
