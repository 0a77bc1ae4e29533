"""What an upgrade or a downgrade will do to a database, said before it is done.

The CLI shows a plan and asks for confirmation; the plan is read from the database
without changing or locking anything (plain SELECTs on the catalog and on the legacy
table), so showing it is safe on a production server.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from toolkit import migrate

# The revision that converts the legacy singleton waha_config into a waha_servers row.
CONVERSION_REVISION = "0005"
# The tables each revision creates (and so its downgrade drops), to count the rows lost.
TABLES_CREATED = {"0002": ("waha_sessions", "waha_servers")}


@dataclass
class Step:
    revision: str
    title: str


@dataclass
class LegacyConversion:
    """The legacy waha_config rows the conversion revision will turn into servers."""

    api_urls: list[str]
    owner: str | None


@dataclass
class Plan:
    direction: str  # "upgrade" or "downgrade"
    current: str | None  # None: no revision recorded
    target: str | None  # None: base
    steps: list[Step]
    legacy: LegacyConversion | None = None
    removes: list[str] = field(default_factory=list)  # what data a downgrade removes, in plain words
    problems: list[str] = field(default_factory=list)  # why it cannot run as asked; empty when it can

    @property
    def nothing_to_do(self) -> bool:
        return not self.steps


def current_revision(connection: sa.Connection) -> str | None:
    """The revision recorded in alembic_version, None when there is none (or no table)."""
    if connection.exec_driver_sql("SELECT pg_catalog.to_regclass('public.alembic_version')").scalar() is None:
        return None
    return connection.exec_driver_sql("SELECT version_num FROM public.alembic_version").scalar()


def _title(script: ScriptDirectory, revision: str) -> str:
    return (script.get_revision(revision).doc or "").strip().splitlines()[0].rstrip(".")


def _steps(script: ScriptDirectory, upper: str | None, lower: str | None) -> list[Step]:
    """Revisions above `lower` up to `upper`, newest first (alembic's iteration order)."""
    if upper is None:
        return []
    return [Step(rev.revision, _title(script, rev.revision)) for rev in script.iterate_revisions(upper, lower or "base")
            if rev.revision != lower]


def _table_exists(connection: sa.Connection, name: str) -> bool:
    return connection.exec_driver_sql(f"SELECT pg_catalog.to_regclass('{name}') IS NOT NULL").scalar()


def _count(connection: sa.Connection, table: str) -> int:
    return connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()


def legacy_api_urls(connection: sa.Connection, table: str = "public.waha_config") -> list[str]:
    """The api_urls of the legacy rows that will be converted (rows without one are not)."""
    if not _table_exists(connection, table):
        return []
    schema, name = table.split(".")
    has_api_url = connection.execute(
        sa.text("SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = :s AND table_name = :t AND column_name = 'api_url')"),
        {"s": schema, "t": name},
    ).scalar()
    if not has_api_url:
        return []
    rows = connection.exec_driver_sql(
        f"SELECT btrim(api_url::text) FROM {table} WHERE NULLIF(btrim(api_url::text), '') IS NOT NULL ORDER BY 1"
    )
    return [url for (url,) in rows]


def _owner_problem(connection: sa.Connection, owner: str | None, urls: list[str]) -> str | None:
    servers = ", ".join(urls)
    if owner is None:
        return (
            f"public.waha_config holds {len(urls)} WAHA server{'s' if len(urls) != 1 else ''} to convert ({servers}) "
            "and no owner was given: pass --owner UUID, the id of the user who will own it"
        )
    try:
        owner_id = uuid.UUID(owner)
    except ValueError:
        return f"--owner {owner!r} is not a UUID: give the id of a user, e.g. --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44"
    if _table_exists(connection, "auth.users"):
        known = connection.execute(sa.text("SELECT EXISTS (SELECT FROM auth.users WHERE id = :id)"), {"id": owner_id}).scalar()
        if not known:
            return f"--owner {owner_id} is not a user in auth.users: SELECT id, email FROM auth.users; lists them"
    return None


def _revision(script: ScriptDirectory, name: str) -> str:
    """The revision id `name` stands for ("head", "0003"...); an error that lists the known ones."""
    try:
        found = script.get_revision(name)
    except (RevisionError, CommandError):
        found = None
    if found is None:
        known = ", ".join(rev.revision for rev in reversed(list(script.walk_revisions())))
        raise migrate.MigrationError(f"no revision {name!r}: the revisions are {known} (or head, base)")
    return found.revision


def plan_upgrade(connection: sa.Connection, target: str = "head", owner: str | None = None) -> Plan:
    """The revisions an upgrade to `target` applies, and whether (and for whom) it converts the legacy singleton."""
    script = migrate.script_directory()
    current = current_revision(connection)
    target_revision = _revision(script, target)
    steps = list(reversed(_steps(script, target_revision, current)))
    plan = Plan("upgrade", current, target_revision, steps)
    if current is None and (_table_exists(connection, "public.waha_servers") or _table_exists(connection, "public.waha_sessions")):
        plan.problems.append(
            "this database has V2.1 tables made by hand (waha_servers/waha_sessions) and no Alembic revision: "
            "`waha-db adopt` checks them and brings them under management"
        )
        return plan
    if any(step.revision == CONVERSION_REVISION for step in steps):
        urls = legacy_api_urls(connection)
        if urls:
            plan.legacy = LegacyConversion(urls, owner)
            problem = _owner_problem(connection, owner, urls)
            if problem:
                plan.problems.append(problem)
    return plan


def plan_downgrade(connection: sa.Connection, target: str) -> Plan:
    """The revisions a downgrade to `target` undoes, and what data that removes, with row counts."""
    script = migrate.script_directory()
    current = current_revision(connection)
    target_revision = None if target == "base" else _revision(script, target)
    plan = Plan("downgrade", current, target_revision, [])
    if current is None:
        plan.problems.append("no revision is recorded in this database (no alembic_version): there is nothing to downgrade")
        return plan
    if target_revision is not None and target_revision not in [rev.revision for rev in script.iterate_revisions(current, "base")]:
        plan.problems.append(f"revision {target_revision} is above the current revision {current}: use `waha-db upgrade {target_revision}`")
        return plan
    plan.steps = steps = _steps(script, current, target_revision)
    for step in steps:
        dropped = [table for table in TABLES_CREATED.get(step.revision, ()) if _table_exists(connection, f"public.{table}")]
        if dropped:
            counts = " and ".join(f"{table} ({_count(connection, 'public.' + table)} rows)" for table in dropped)
            plan.removes.append(f"drops {counts}")
        if step.revision == CONVERSION_REVISION:
            if _table_exists(connection, "waha_legacy.waha_config_v1"):
                rows = _count(connection, "waha_legacy.waha_config_v1")
                plan.removes.append(
                    f"puts the legacy public.waha_config back ({rows} rows, kept in waha_legacy.waha_config_v1); "
                    "the servers converted from it stay in waha_servers until 0002 is undone"
                )
    if not plan.removes and steps:
        plan.removes.append("no table rows: only functions, policies, grants or indexes are removed")
    return plan
