"""Alembic environment of waha-db.

Where the database comes from, in this order:
  1. a Connection or Engine handed in through ``config.attributes["connection"]``
     (Alembic's cookbook hands a Connection, pytest-alembic an Engine);
  2. ``-x database_url=URL``;
  3. the ``DATABASE_URL`` environment variable;
  4. ``sqlalchemy.url`` of the ini file.

``-x`` options: ``owner=UUID`` (who owns the server converted from the legacy
``waha_config``), ``lock_timeout=SECONDS`` (default 5).

Every upgrade or downgrade runs in one transaction that first takes an advisory
lock (two deploys at once serialise), then sets ``lock_timeout`` so a migration
never queues behind a long transaction and blocks the application. The owner is
handed to the SQL as the transaction-local setting ``waha.config_owner``, so the
offline ``--sql`` script makes the same decisions in SQL that the online run makes.
"""

from __future__ import annotations

import os
import re

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from toolkit.schema import include_object, metadata

# pg_advisory_xact_lock key shared by every waha-db migration run ("waha" in ASCII).
MIGRATION_LOCK_KEY = 0x77616861
DEFAULT_LOCK_TIMEOUT_SECONDS = 5
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

config = context.config
x_arguments = context.get_x_argument(as_dictionary=True)


class MigrationSettingError(ValueError):
    """An ``-x`` option has a value the migrations cannot use."""


def database_url() -> str:
    url = x_arguments.get("database_url") or os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise MigrationSettingError(
            "no database given: use `alembic -x database_url=postgresql://USER@HOST/DB upgrade head` "
            "or set DATABASE_URL"
        )
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def owner() -> str | None:
    value = x_arguments.get("owner", config.attributes.get("owner"))
    if value is None or value == "":
        return None
    value = str(value).strip()
    if not _UUID.match(value):
        raise MigrationSettingError(
            f"owner {value!r} is not a UUID: give the id of the user (auth.users.id) who owns "
            "the legacy WAHA server, e.g. -x owner=0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"
        )
    return value.lower()


def lock_timeout_ms() -> int:
    value = x_arguments.get("lock_timeout", config.attributes.get("lock_timeout", DEFAULT_LOCK_TIMEOUT_SECONDS))
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1
    if seconds <= 0:
        raise MigrationSettingError(f"lock_timeout {value!r} is not a positive number of seconds, e.g. -x lock_timeout=5")
    return int(seconds * 1000)


def prepare_transaction() -> None:
    """Serialise concurrent runs, bound lock waits, hand the owner to SQL.

    The advisory lock comes first: lock_timeout would also cut short the wait for it.
    """
    context.execute(f"SELECT pg_catalog.pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    context.execute(f"SET LOCAL lock_timeout = {lock_timeout_ms()}")
    legacy_owner = owner()
    if legacy_owner is not None:
        context.execute(f"SELECT pg_catalog.set_config('waha.config_owner', '{legacy_owner}', true)")


def run_migrations_offline() -> None:
    context.configure(
        url=database_url() if (x_arguments.get("database_url") or os.environ.get("DATABASE_URL")) else "postgresql+psycopg://",
        target_metadata=metadata,
        include_object=include_object,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        prepare_transaction()
        context.run_migrations()


def run_with_connection(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        prepare_transaction()
        context.run_migrations()


def run_migrations_online() -> None:
    handed_in = config.attributes.get("connection")
    if isinstance(handed_in, sa.Connection):
        run_with_connection(handed_in)
        return
    engine = handed_in if isinstance(handed_in, sa.Engine) else sa.create_engine(database_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            run_with_connection(connection)
    finally:
        if engine is not handed_in:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
