"""Upgrade, downgrade, offline SQL and history, over alembic.command.

The Alembic configuration is built here, pointing at the migrations shipped with
the package, so the toolkit works from any directory and from an installed wheel.
"""

from __future__ import annotations

import io
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(
    connection: sa.Connection | sa.Engine | None = None,
    *,
    database_url: str | None = None,
    owner: str | None = None,
    lock_timeout: float | None = None,
    output: io.TextIOBase | None = None,
) -> Config:
    """An Alembic Config for our migrations; a connection, when given, is handed to env.py."""
    config = Config(output_buffer=output, stdout=output) if output is not None else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    if owner is not None:
        config.attributes["owner"] = owner
    if lock_timeout is not None:
        config.attributes["lock_timeout"] = lock_timeout
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the migrations have {len(heads)} heads ({', '.join(heads)}); expected one")
    return heads[0]


def upgrade(connection: sa.Connection | sa.Engine, revision: str = "head", **settings) -> None:
    command.upgrade(alembic_config(connection, **settings), revision)


def downgrade(connection: sa.Connection | sa.Engine, revision: str, **settings) -> None:
    command.downgrade(alembic_config(connection, **settings), revision)


def offline_sql(revision: str = "head", *, start: str | None = None, downgrade_to: bool = False, owner: str | None = None) -> str:
    """The SQL script of an upgrade (or downgrade) without a database, as `alembic upgrade --sql` prints it."""
    buffer = io.StringIO()
    config = alembic_config(owner=owner, output=buffer)
    target = f"{start}:{revision}" if start else revision
    if downgrade_to:
        command.downgrade(config, target, sql=True)
    else:
        command.upgrade(config, target, sql=True)
    return buffer.getvalue()
