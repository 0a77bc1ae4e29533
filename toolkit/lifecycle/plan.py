"""What an upgrade or a downgrade will do to a database, said before it is done.

The CLI shows a plan and asks for confirmation; the plan is read from the database
without changing or locking anything (plain SELECTs on the catalog and on the legacy
table), so showing it is safe on a production server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from waha_db.lifecycle import migrate

from waha_db.lifecycle import state

# The revision that converts the legacy singleton waha_config into a waha_servers row.
CONVERSION_REVISION = "0005"
# The revision that creates waha_config where it is missing, and whose downgrade drops only that one.
LEGACY_TABLE_REVISION = "0001"
# The tables of schema public each revision creates, and so its downgrade drops, to count the rows
# lost. tests/cli/test_downgrade.py undoes every revision and fails when one drops a table not here.
TABLES_CREATED = {
    LEGACY_TABLE_REVISION: ("waha_config",),  # only when 0001 made it (see _legacy_table_dropped)
    "0002": ("waha_sessions", "waha_servers"),
    "0007": ("waha_server_health",),
}


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
    drops: list[tuple[str, int]] = field(default_factory=list)  # tables of public a downgrade drops, with their rows now
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


def _malformed_owner(owner: str | None) -> str | None:
    """Why `owner` is refused, by the very rule the migrations apply (migrate.parse_owner); None when it is not."""
    try:
        migrate.parse_owner(owner)
    except migrate.LegacyConversionRefused:
        return (f"--owner {owner!r} is not a UUID in its usual form (8-4-4-4-12 hexadecimal digits): "
                "give the id of a user, e.g. --owner 0b6f3c1e-8a9d-4d57-9a51-3c1f0e2b7a44")
    return None


def _owner_problem(connection: sa.Connection, owner_id: str | None, urls: list[str]) -> str | None:
    """Why the legacy servers at `urls` cannot be given to `owner_id` (a well-formed UUID or None); None when they can."""
    if owner_id is None:
        servers = ", ".join(urls)
        return (
            f"public.waha_config holds {len(urls)} WAHA server{'s' if len(urls) != 1 else ''} to convert ({servers}) "
            "and no owner was given: pass --owner UUID, the id of the user who will own it"
        )
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


def _unknown_revision(found: state.DatabaseState, direction: str) -> str:
    return (
        f"this database is at revision {found.revision}, which this waha-db does not know "
        f"(it knows {', '.join(state.known_revisions())}): a newer release of waha-db wrote it. "
        f"Upgrade waha-db (pip install --upgrade waha-db) and {direction} with that release"
    )


def plan_upgrade(connection: sa.Connection, target: str = "head", owner: str | None = None) -> Plan:
    """The revisions an upgrade to `target` applies, and whether (and for whom) it converts the legacy singleton."""
    script = migrate.script_directory()
    found = state.database_state(connection)
    current = found.revision
    if found.kind == state.UNKNOWN_REVISION:
        return Plan("upgrade", current, None, [], problems=[_unknown_revision(found, "upgrade")])
    target_revision = _revision(script, target)
    steps = list(reversed(_steps(script, target_revision, current)))
    plan = Plan("upgrade", current, target_revision, steps)
    if found.kind == state.HAND_MADE:
        plan.problems.append(
            "this database has V2.1 tables made by hand (waha_servers/waha_sessions) and no Alembic revision: "
            "`waha-db adopt` checks them and brings them under management"
        )
        return plan
    malformed = _malformed_owner(owner)
    if malformed:
        # Refused now, whether or not there is a legacy server to convert: the migrations would refuse it.
        plan.problems.append(malformed)
        return plan
    owner_id = migrate.parse_owner(owner)
    if any(step.revision == CONVERSION_REVISION for step in steps):
        urls = legacy_api_urls(connection)
        if urls:
            plan.legacy = LegacyConversion(urls, owner_id)
            problem = _owner_problem(connection, owner_id, urls)
            if problem:
                plan.problems.append(problem)
    return plan


def _legacy_table_dropped(connection: sa.Connection, script: ScriptDirectory, steps: list[Step]) -> str | None:
    """Where the waha_config that 0001's downgrade will drop is now, None when it drops none.

    0001 drops waha_config only when it made it (its comment is 0001's marker); a DBA's
    legacy table stays. When the same downgrade undoes the conversion, the table is the
    one the conversion kept in waha_legacy and puts back.
    """
    undone = {step.revision for step in steps}
    where = "public.waha_config"
    if CONVERSION_REVISION in undone and _table_exists(connection, "waha_legacy.waha_config_v1"):
        where = "waha_legacy.waha_config_v1"
    if not _table_exists(connection, where):
        return None
    marker = script.get_revision(LEGACY_TABLE_REVISION).module.CREATED_MARKER
    comment = connection.execute(sa.text("SELECT pg_catalog.obj_description(CAST(:t AS regclass), 'pg_class')"), {"t": where}).scalar()
    return where if comment == marker else None


def plan_downgrade(connection: sa.Connection, target: str) -> Plan:
    """The revisions a downgrade to `target` undoes, and what data that removes, with row counts."""
    script = migrate.script_directory()
    found = state.database_state(connection)
    current = found.revision
    if found.kind == state.UNKNOWN_REVISION:
        return Plan("downgrade", current, None, [], problems=[_unknown_revision(found, "downgrade")])
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
        dropped = []
        for table in TABLES_CREATED.get(step.revision, ()):
            where = (_legacy_table_dropped(connection, script, steps) if step.revision == LEGACY_TABLE_REVISION
                     else f"public.{table}" if _table_exists(connection, f"public.{table}") else None)
            if where is not None:
                dropped.append((table, _count(connection, where)))
        if dropped:
            plan.drops.extend(dropped)
            plan.removes.append("drops " + " and ".join(f"{table} ({rows} rows)" for table, rows in dropped))
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
