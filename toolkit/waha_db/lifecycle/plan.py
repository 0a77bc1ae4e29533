"""What an upgrade or a downgrade will do to a database, said before it is done.

The CLI shows a plan and asks for confirmation; the plan is read from the database
without changing anything (plain SELECTs on the catalog and on the legacy table,
which take no lock the application's statements wait for), so showing it is safe on
a production server.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa

from waha_db.lifecycle import catalog, conversion, migrate, revisions, state, writable

# How a plan is carried out once confirmed; the CLI takes both from here, with the plans.
from waha_db.lifecycle.change import Change as Change
from waha_db.lifecycle.change import carry_out as carry_out
from waha_db.lifecycle.revisions import Revision


@dataclass(frozen=True)
class LegacyConversion:
    """The legacy waha_config rows the conversion revision will turn into servers."""

    api_urls: tuple[str, ...]
    owner: uuid.UUID | None  # given, or the owner of the servers converted before
    converted_before: tuple[str, ...] = ()  # ids of the servers those rows were converted into before (kept)

    def describe(self) -> str:
        servers = f"{len(self.api_urls)} server(s) ({', '.join(self.api_urls)})"
        if self.converted_before and len(self.converted_before) == len(self.api_urls):
            return (
                f"legacy waha_config: {servers} converted before into server {', '.join(self.converted_before)} "
                f"of user {self.owner}, equal to it: kept as it is"
            )
        return f"legacy waha_config: {servers} will become 'Servidor Padrão' of user {self.owner}, priority 10, 50 sessions"


# What the conversion's downgrade (frozen) says of the server it converted: true unless waha_servers goes too.
_STAYS_IN_SERVERS = "; the converted server stays in waha_servers"


@dataclass
class Plan:
    direction: str  # "upgrade" or "downgrade"
    current: str | None  # None: no revision recorded
    target: str | None  # None: base
    steps: list[Revision]  # in the order they run
    legacy: LegacyConversion | None = None
    converts: bool = False  # the steps include the conversion of the legacy waha_config
    drops: list[tuple[str, int]] = field(
        default_factory=list
    )  # tables of public a downgrade drops, with their rows now
    # columns a downgrade drops from tables of public that stay: (table, column)
    drops_columns: list[tuple[str, str]] = field(default_factory=list)
    removes: list[str] = field(default_factory=list)  # what data a downgrade removes, in plain words
    problems: list[str] = field(default_factory=list)  # why it cannot run as asked; empty when it can
    had_legacy_table: bool = False  # public.waha_config (or its kept copy) existed before the run
    recorded: str = ""  # what alembic_version says, in words (state.recorded_revision)

    @property
    def nothing_to_do(self) -> bool:
        return not self.steps

    @property
    def target_name(self) -> str:
        return self.target or "base"

    @property
    def needs_owner(self) -> bool:
        """Whether the legacy waha_config holds servers to convert and nobody is known to own them."""
        return self.legacy is not None and self.legacy.owner is None

    @property
    def owner(self) -> uuid.UUID | None:
        """The owner handed to the conversion (given, or the converted server's)."""
        return self.legacy.owner if self.legacy else None

    @property
    def key(self) -> tuple[object, ...]:
        """What it will do, row counts aside (the application keeps writing between two attempts)."""
        return (
            self.direction,
            self.current,
            self.target,
            tuple(self.steps),
            self.legacy,
            self.converts,
            tuple(self.problems),
            tuple(table for table, _rows in self.drops),
        )

    def shown(self, notice: str) -> str | None:
        """A server notice as printed: the legacy conversion's only for a database that had a legacy waha_config,
        and none that the rest of the run made untrue (the converted server does not stay in a waha_servers
        that the same downgrade drops)."""
        if not (self.had_legacy_table or "waha_config" not in notice):
            return None
        if _STAYS_IN_SERVERS in notice and "waha_servers" in (table for table, _rows in self.drops):
            return notice.replace(_STAYS_IN_SERVERS, "; the converted server went with waha_servers, dropped below it")
        return notice

    @property
    def question(self) -> str:
        return f"{self.direction.capitalize()} to {self.target_name}?"

    @property
    def action(self) -> str:
        return self.direction

    def header(self) -> list[str]:
        lines = [f"current revision: {self.recorded or self.current or 'none (no alembic_version)'}"]
        if self.nothing_to_do and not self.problems:
            lines.append(f"nothing to do: the database is at {self.current}")
        return lines

    def refusal(self) -> str:
        return f"cannot {self.direction}: " + "\n".join(self.problems) + "\nNothing was changed."

    def describe(self) -> list[str]:
        verb = "apply" if self.direction == "upgrade" else "undo"
        lines = [f"revisions to {verb} ({len(self.steps)}):"]
        lines += [f"  {step.id}  {step.title}" for step in self.steps]
        if self.legacy:
            lines.append(self.legacy.describe())
        elif self.converts and self.direction == "upgrade":
            lines.append("legacy waha_config: no server to convert")
        if self.direction == "downgrade":
            lines.append("data removed:")
            lines += [f"  {line}" for line in self.removes]
        return lines

    def done(self, seconds: float) -> str:
        return f"{self.direction}d to {self.target_name} in {seconds:.2f}s"


def _steps(upper: str | None, lower: str | None) -> list[Revision]:
    """The revisions above `lower` up to `upper`, oldest first."""
    return [Revision(revision, revisions.title(revision)) for revision in revisions.between(upper, lower)]


def _table_exists(connection: sa.Connection, name: str) -> bool:
    exists: bool = connection.exec_driver_sql(f"SELECT pg_catalog.to_regclass('{name}') IS NOT NULL").scalar_one()
    return exists


def _columns_exist(connection: sa.Connection, table: str, columns: tuple[str, ...]) -> bool:
    found: int = connection.execute(
        sa.text(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = :table AND column_name = ANY (:columns)"
        ),
        {"table": table, "columns": list(columns)},
    ).scalar_one()
    return found == len(columns)


def _count(connection: sa.Connection, table: str) -> int:
    rows: int = connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
    return rows


def _unknown_revision(found: state.DatabaseState, direction: str) -> str:
    return (
        f"this database is at revision {found.revision}, which this waha-db does not know "
        f"(it knows {', '.join(revisions.ids())}): a newer release of waha-db wrote it. "
        f"Upgrade waha-db (pip install --upgrade waha-db) and {direction} with that release"
    )


def plan_upgrade(connection: sa.Connection, target: str = "head", owner: uuid.UUID | None = None) -> Plan:
    """The revisions an upgrade to `target` applies, and whether (and for whom) it converts the legacy singleton."""
    found = state.database_state(connection)
    current = found.revision
    if found.kind == state.UNKNOWN_REVISION:
        return Plan("upgrade", current, None, [], problems=[_unknown_revision(found, "upgrade")])
    target_revision = revisions.resolve(target)
    steps = _steps(target_revision, current)
    converts = migrate.conversion_revision() in [step.id for step in steps]
    plan = Plan("upgrade", current, target_revision, steps, converts=converts, recorded=found.recorded)
    plan.had_legacy_table = _has_legacy_table(connection)
    if steps:
        _check_writable(connection, plan)
        _check_roles(connection, plan)
        _check_guards(connection, plan)
    if found.kind == state.HAND_MADE:
        plan.problems.append(
            "this database has V2.1 tables made by hand (waha_servers/waha_sessions) and no Alembic revision: "
            "`waha-db adopt` checks them and brings them under management"
        )
        return plan
    if converts:
        checked = conversion.check(connection, owner)
        if checked.refusal:
            plan.problems.append(checked.refusal)
        urls = state.legacy_api_urls(connection)
        if urls:
            converted = _converted_before(connection)
            owners = {user for _server, user in converted}
            if owner is None and len(converted) == len(urls) and len(owners) == 1:
                owner = owners.pop()  # as the checks do: the servers converted before keep their owner
            plan.legacy = LegacyConversion(
                tuple(urls), checked.owner or owner, tuple(server for server, user in converted if user == owner)
            )
    return plan


def _converted_before(connection: sa.Connection) -> list[tuple[str, uuid.UUID]]:
    """(server id, owner) of the servers the legacy rows were converted into before (0005 derives the id from the row's)."""
    if not _table_exists(connection, "public.waha_servers"):
        return []
    ids = [
        str(uuid.UUID(hashlib.md5(f"waha-db legacy waha_config {legacy_id}".encode()).hexdigest()))
        for legacy_id in state.legacy_ids(connection)
    ]
    rows = connection.execute(
        sa.text("SELECT id::text, user_id FROM public.waha_servers WHERE id = ANY (CAST(:ids AS uuid[])) ORDER BY 1"),
        {"ids": ids},
    )
    return [(server, user) for server, user in rows]


def _created_marker() -> str:
    """The comment the first revision puts on the (empty) waha_config it creates where there is none."""
    marker: str = revisions.script_directory().get_revision(revisions.base()).module.CREATED_MARKER
    return marker


def _has_legacy_table(connection: sa.Connection) -> bool:
    """Whether the database holds a real legacy waha_config (not the empty one the first revision makes)."""
    if _table_exists(connection, "waha_legacy.waha_config_v1"):
        return True
    if not _table_exists(connection, "public.waha_config"):
        return False
    comment = connection.exec_driver_sql(
        "SELECT pg_catalog.obj_description('public.waha_config'::regclass, 'pg_class')"
    ).scalar()
    return comment != _created_marker() or bool(_count(connection, "public.waha_config"))


def _legacy_table_dropped(connection: sa.Connection, undone: list[str]) -> str | None:
    """Where the waha_config that the first revision's downgrade will drop is now; None when it drops none.

    The first revision drops waha_config only when it made it (its comment is that
    revision's marker); a DBA's legacy table stays. When the same downgrade undoes the
    conversion, the table is the one the conversion kept in waha_legacy and puts back.
    """
    where = "public.waha_config"
    if migrate.conversion_revision() in undone and _table_exists(connection, "waha_legacy.waha_config_v1"):
        where = "waha_legacy.waha_config_v1"
    if not _table_exists(connection, where):
        return None
    marker = _created_marker()
    comment = connection.execute(
        sa.text("SELECT pg_catalog.obj_description(CAST(:t AS regclass), 'pg_class')"), {"t": where}
    ).scalar()
    return where if comment == marker else None


def plan_downgrade(connection: sa.Connection, target: str) -> Plan:
    """The revisions a downgrade to `target` undoes, and what data that removes, with row counts."""
    found = state.database_state(connection)
    current = found.revision
    if found.kind == state.UNKNOWN_REVISION:
        return Plan("downgrade", current, None, [], problems=[_unknown_revision(found, "downgrade")])
    target_revision = revisions.resolve(target)
    plan = Plan("downgrade", current, target_revision, [], recorded=found.recorded)
    plan.had_legacy_table = _has_legacy_table(connection)
    if current is None:
        plan.problems.append(
            f"no revision is recorded in this database ({found.recorded.removeprefix('none (').rstrip(')')}): "
            "there is nothing to downgrade"
        )
        return plan
    if target_revision is not None and target_revision not in revisions.between(current, None):
        plan.problems.append(
            f"revision {target_revision} is above the current revision {current}: use `waha-db upgrade {target_revision}`"
        )
        return plan
    plan.steps = list(reversed(_steps(current, target_revision)))
    undone = [step.id for step in plan.steps]
    servers_revision = next(
        revision for revision in revisions.ids() if "waha_servers" in migrate.tables_created(revision)
    )
    for revision in undone:
        dropped = []
        for table in reversed(migrate.tables_created(revision)):
            where = (
                _legacy_table_dropped(connection, undone)
                if revision == revisions.base()
                else f"public.{table}"
                if _table_exists(connection, f"public.{table}")
                else None
            )
            if where is not None:
                dropped.append((table, _count(connection, where)))
        if dropped:
            plan.drops.extend(dropped)
            plan.removes.append(
                "drops " + " and ".join(f"{table} ({catalog.plural(rows, 'row')})" for table, rows in dropped)
            )
        for table, columns in migrate.columns_added(revision).items():
            if _table_exists(connection, f"public.{table}") and _columns_exist(connection, table, columns):
                holding = " OR ".join(f"{column} IS NOT NULL" for column in columns)
                rows = connection.exec_driver_sql(f"SELECT count(*) FROM public.{table} WHERE {holding}").scalar_one()
                plan.drops_columns.extend((table, column) for column in columns)
                holds = f"{catalog.plural(rows, 'row')} hold{'s' if rows == 1 else ''} values"
                plan.removes.append(f"drops columns {', '.join(columns)} of {table} ({holds})")
        if revision == migrate.conversion_revision() and _table_exists(connection, "waha_legacy.waha_config_v1"):
            rows = _count(connection, "waha_legacy.waha_config_v1")
            servers = (
                f"the servers converted from it go with waha_servers ({servers_revision} is undone too)"
                if servers_revision in undone
                else f"the servers converted from it stay in waha_servers until {servers_revision} is undone"
            )
            plan.removes.append(
                f"puts the legacy public.waha_config back ({catalog.plural(rows, 'row')}, kept in "
                f"waha_legacy.waha_config_v1); {servers}"
            )
    if not plan.removes and plan.steps:
        plan.removes.append("no table rows: only functions, policies, grants or indexes are removed")
    if plan.steps:
        _check_writable(connection, plan)
    return plan


def _check_writable(connection: sa.Connection, plan: Plan) -> None:
    """A hot standby, or a database whose transactions are read-only, refuses every write: said before asking."""
    problem = writable.writable_problem(connection)
    if problem:
        plan.problems.insert(0, problem)


def _check_guards(connection: sa.Connection, plan: Plan) -> None:
    """The first revision to run checks that the one recorded before it really ran (migrate.revision_guards):
    run here in a savepoint, read-only, so its refusal is said before asking, in its own words."""
    for guard in migrate.revision_guards(plan.steps[0].id):
        try:
            with connection.begin_nested():
                connection.exec_driver_sql(guard.replace("%", "%%"))
        except sa.exc.DBAPIError as error:
            diagnostic = getattr(error.orig, "diag", None)
            if getattr(error.orig, "sqlstate", None) != "WAH06" or diagnostic is None:
                raise
            plan.problems.append("\n".join(filter(None, (diagnostic.message_primary, diagnostic.message_detail))))


def _check_roles(connection: sa.Connection, plan: Plan) -> None:
    """The roles the roles revision creates where missing: when some are and the role running the upgrade may
    not create them, the revision will stop; said before asking, naming only the missing ones."""
    if migrate.roles_revision() not in [step.id for step in plan.steps]:
        return
    wanted = list(migrate.roles_created())
    missing, user, superuser, createrole = connection.execute(
        sa.text(
            "SELECT ARRAY(SELECT wanted FROM pg_catalog.unnest(CAST(:wanted AS text[])) AS wanted "
            "WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = wanted) ORDER BY 1), "
            "current_user, r.rolsuper, r.rolcreaterole FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user"
        ),
        {"wanted": wanted},
    ).one()
    if missing and not (superuser or (createrole and not any(migrate.needs_superuser(role) for role in missing))):
        plan.problems.append(migrate.missing_roles_refusal(list(missing), user))
