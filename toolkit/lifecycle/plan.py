"""What an upgrade or a downgrade will do to a database, said before it is done.

The CLI shows a plan and asks for confirmation; the plan is read from the database
without changing or locking anything (plain SELECTs on the catalog and on the legacy
table), so showing it is safe on a production server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import sqlalchemy as sa

from waha_db.lifecycle import migrate, revisions, state
from waha_db.lifecycle.revisions import Revision


class Change(Protocol):
    """What the CLI shows of a planned change (an upgrade, a downgrade, an adoption) before asking."""

    problems: list[str]
    question: str  # asked before running, e.g. "Upgrade to 0007?"
    action: str  # what --yes does without asking, e.g. "upgrade"

    @property
    def nothing_to_do(self) -> bool: ...

    def header(self) -> list[str]: ...  # printed first: where the database stands

    def describe(self) -> list[str]: ...  # what running it will do

    def refusal(self) -> str: ...  # why it will not run, when there are problems

    def done(self, seconds: float) -> str: ...


PlannedChange = TypeVar("PlannedChange", bound=Change)


def carry_out(
    engine: sa.Engine,
    make_plan: Callable[[sa.Connection], PlannedChange],
    confirm: Callable[[PlannedChange], bool],
    run: Callable[[sa.Connection, PlannedChange], None],
) -> tuple[PlannedChange, float | None]:
    """Plan, have the plan confirmed, carry it out: the one sequence of every command that changes the schema.

    All in one transaction that first takes the migrations' advisory lock, so the
    plan shown is the plan carried out: no other waha-db run can change the database
    between them, and the run (migrations or adoption) commits or rolls back as one.
    `confirm` shows the plan and returns whether to go on (it raises to refuse).
    Returns the plan and the seconds the run took (None when it did not run).
    """
    with engine.connect() as connection, connection.begin():
        connection.exec_driver_sql(f"SELECT pg_catalog.pg_advisory_xact_lock({migrate.MIGRATION_LOCK_KEY})")
        plan = make_plan(connection)
        if not confirm(plan):
            return plan, None
        started = time.perf_counter()
        run(connection, plan)
        return plan, time.perf_counter() - started


@dataclass
class LegacyConversion:
    """The legacy waha_config rows the conversion revision will turn into servers."""

    api_urls: list[str]
    owner: uuid.UUID | None


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

    @property
    def nothing_to_do(self) -> bool:
        return not self.steps

    @property
    def target_name(self) -> str:
        return self.target or "base"

    @property
    def question(self) -> str:
        return f"{self.direction.capitalize()} to {self.target_name}?"

    @property
    def action(self) -> str:
        return self.direction

    def header(self) -> list[str]:
        lines = [f"current revision: {self.current or 'none (no alembic_version)'}"]
        if self.nothing_to_do and not self.problems:
            lines.append(f"nothing to do: the database is at {self.current}")
        return lines

    def refusal(self) -> str:
        ending = ". Nothing was changed." if self.direction == "upgrade" else ""
        return f"cannot {self.direction}: " + "; ".join(self.problems) + ending

    def describe(self) -> list[str]:
        verb = "apply" if self.direction == "upgrade" else "undo"
        lines = [f"revisions to {verb} ({len(self.steps)}):"]
        lines += [f"  {step.id}  {step.title}" for step in self.steps]
        if self.legacy:
            lines.append(
                f"legacy waha_config: {len(self.legacy.api_urls)} server(s) ({', '.join(self.legacy.api_urls)}) will become "
                f"'Servidor Padrão' of user {self.legacy.owner}, priority 10, 50 sessions"
            )
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
    return connection.exec_driver_sql(f"SELECT pg_catalog.to_regclass('{name}') IS NOT NULL").scalar()


def _columns_exist(connection: sa.Connection, table: str, columns: tuple[str, ...]) -> bool:
    found = connection.execute(
        sa.text(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = :table AND column_name = ANY (:columns)"
        ),
        {"table": table, "columns": list(columns)},
    ).scalar()
    return found == len(columns)


def _count(connection: sa.Connection, table: str) -> int:
    return connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()


def _owner_problem(connection: sa.Connection, owner: uuid.UUID | None, urls: list[str]) -> str | None:
    """Why the legacy servers at `urls` cannot be given to `owner`; None when they can."""
    if owner is None:
        servers = ", ".join(urls)
        return (
            f"public.waha_config holds {len(urls)} WAHA server{'s' if len(urls) != 1 else ''} to convert ({servers}) "
            "and no owner was given: pass --owner UUID, the id of the user who will own it"
        )
    if _table_exists(connection, "auth.users"):
        known = connection.execute(
            sa.text("SELECT EXISTS (SELECT FROM auth.users WHERE id = :id)"), {"id": owner}
        ).scalar()
        if not known:
            return f"--owner {owner} is not a user in auth.users: SELECT id, email FROM auth.users; lists them"
    return None


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
    plan = Plan("upgrade", current, target_revision, steps, converts=converts)
    if found.kind == state.HAND_MADE:
        plan.problems.append(
            "this database has V2.1 tables made by hand (waha_servers/waha_sessions) and no Alembic revision: "
            "`waha-db adopt` checks them and brings them under management"
        )
        return plan
    if converts:
        urls = state.legacy_api_urls(connection)
        if urls:
            plan.legacy = LegacyConversion(urls, owner)
            problem = _owner_problem(connection, owner, urls)
            if problem:
                plan.problems.append(problem)
    return plan


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
    marker = revisions.script_directory().get_revision(revisions.base()).module.CREATED_MARKER
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
    plan = Plan("downgrade", current, target_revision, [])
    if current is None:
        plan.problems.append(
            "no revision is recorded in this database (no alembic_version): there is nothing to downgrade"
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
            plan.removes.append("drops " + " and ".join(f"{table} ({rows} rows)" for table, rows in dropped))
        for table, columns in migrate.columns_added(revision).items():
            if _table_exists(connection, f"public.{table}") and _columns_exist(connection, table, columns):
                holding = " OR ".join(f"{column} IS NOT NULL" for column in columns)
                rows = connection.exec_driver_sql(f"SELECT count(*) FROM public.{table} WHERE {holding}").scalar()
                plan.drops_columns.extend((table, column) for column in columns)
                plan.removes.append(f"drops columns {', '.join(columns)} of {table} ({rows} rows hold values)")
        if revision == migrate.conversion_revision() and _table_exists(connection, "waha_legacy.waha_config_v1"):
            rows = _count(connection, "waha_legacy.waha_config_v1")
            plan.removes.append(
                f"puts the legacy public.waha_config back ({rows} rows, kept in waha_legacy.waha_config_v1); "
                f"the servers converted from it stay in waha_servers until {servers_revision} is undone"
            )
    if not plan.removes and plan.steps:
        plan.removes.append("no table rows: only functions, policies, grants or indexes are removed")
    return plan
