"""What an upgrade or a downgrade will do to a database, said before it is done.

The CLI shows a plan and asks for confirmation; the plan is read from the database
without changing anything (plain SELECTs on the catalog and on the legacy table,
which take no lock the application's statements wait for), so showing it is safe on
a production server.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import sqlalchemy as sa

from waha_db import database
from waha_db.errors import UserError
from waha_db.lifecycle import catalog, conversion, locks, migrate, revisions, state, writable
from waha_db.lifecycle.revisions import Revision


class Change(Protocol):
    """What the CLI shows of a planned change (an upgrade, a downgrade, an adoption) before asking."""

    problems: list[str]

    @property
    def question(self) -> str: ...  # asked before running, e.g. "Upgrade to 0007?"

    @property
    def action(self) -> str: ...  # what --yes does without asking, e.g. "upgrade"

    @property
    def nothing_to_do(self) -> bool: ...

    @property
    def key(self) -> tuple: ...  # what it will do; a retry carries out only the plan that was confirmed

    @property
    def target(self) -> str | None: ...  # the revision the database is at once it is done

    def header(self) -> list[str]: ...  # printed first: where the database stands

    def describe(self) -> list[str]: ...  # what running it will do

    def refusal(self) -> str: ...  # why it will not run, when there are problems

    def shown(self, notice: str) -> str | None: ...  # a server notice of its run as printed; None: not shown

    def done(self, seconds: float) -> str: ...


PlannedChange = TypeVar("PlannedChange", bound=Change)


class PlanChanged(UserError):
    """Between two attempts the database changed, so the confirmed plan is no longer what would run."""


def what_changed(confirmed: Change, now: Change) -> list[str]:
    """The lines of the plan shown that no longer hold, and those that hold instead, for a person to read."""
    before = [*confirmed.header(), *confirmed.describe(), *confirmed.problems]
    after = [*now.header(), *now.describe(), *now.problems]
    return [f"  was: {line.strip()}" for line in before if line not in after] + [
        f"  now: {line.strip()}" for line in after if line not in before
    ]


class NotCarriedOut(UserError):
    """The run ended without error but the database is not where the plan said it would be."""


@dataclass
class Outcome(Generic[PlannedChange]):
    """How carry_out ended: the plan, the seconds of the run that committed (None: nothing ran), the notices."""

    plan: PlannedChange
    seconds: float | None = None
    notices: list[str] = field(default_factory=list)  # the server's notices of the committed attempt
    attempts: int = 0
    note: str | None = None  # why nothing ran although a plan was confirmed


def carry_out(
    engine: sa.Engine,
    make_plan: Callable[[sa.Connection], PlannedChange],
    confirm: Callable[[PlannedChange], bool],
    run: Callable[[sa.Connection, PlannedChange, float], None],
    *,
    lock_timeout: float = locks.DEFAULT_LOCK_TIMEOUT_SECONDS,
    attempt_lock_timeout: float = locks.ATTEMPT_LOCK_TIMEOUT_SECONDS,
    progress: Callable[[str], None] = lambda line: None,
    command: str = "waha-db",
) -> Outcome[PlannedChange]:
    """Plan, have the plan confirmed, carry it out: the one sequence of every command that changes the schema.

    The plan is made under the migrations' advisory lock (waited for at most
    `lock_timeout`, saying who holds it), in a transaction that is then ended: no
    transaction, and no lock, stays open while `confirm` shows the plan and a person
    reads it (it returns whether to go on, or raises to refuse). Each attempt then is
    one transaction that takes the lock again and plans again: only the plan that was
    confirmed is carried out. A different one is PlanChanged, saying what changed (or,
    when another run did the work meanwhile, nothing to do).

    `run(connection, plan, attempt_seconds)` may wait at most `attempt_seconds` for any
    one lock; an attempt that times out (or meets a role another upgrade on the server
    creates at the same moment) is rolled back whole and tried again after a back-off,
    until `lock_timeout` (counted from the confirmation) is spent. Who blocked an
    attempt is read while it waits (locks.BlockerWatch). A connection lost, terminated
    or timed out during an attempt is `database.Interrupted`, saying so and that the
    attempt was rolled back (or that it was lost while committing). The server's notices
    are those of the attempt that committed, never those of a rolled-back one.
    """
    with engine.connect() as connection:
        planned = _interrupted_as_words(
            engine, command, lambda: _plan_released(connection, make_plan, lock_timeout, progress)
        )
    if not confirm(planned):
        return Outcome(planned)
    deadline = locks.Deadline(lock_timeout, attempt_limit=attempt_lock_timeout)  # a person's time is not lock waiting
    watch = locks.BlockerWatch(engine)
    attempt = 1
    try:
        with engine.connect() as connection:
            while True:
                committing = False
                try:
                    with locks.collected_notices() as notices, connection.begin():
                        locks.take_migration_lock(connection, deadline, progress)
                        plan = make_plan(connection)
                        if plan.key != planned.key:
                            if plan.nothing_to_do and not plan.problems:
                                return Outcome(plan, note="another run carried it out meanwhile: nothing to do")
                            raise PlanChanged(
                                "the database changed after the plan was shown (another run, or a DBA), so the plan "
                                "confirmed is not what would run now; nothing was changed:\n"
                                + "\n".join(what_changed(planned, plan))
                                + "\nRun the command again to see the new plan."
                            )
                        pid = connection.exec_driver_sql("SELECT pg_catalog.pg_backend_pid()").scalar()
                        started = time.perf_counter()
                        with watch.watching(pid):
                            run(connection, plan, deadline.attempt_lock_timeout())
                        now_at = revisions.current_revision(connection)
                        if now_at != plan.target:
                            raise NotCarriedOut(
                                f"the run ended at revision {now_at or 'none'}, not at {plan.target or 'base'} as "
                                "planned: it was rolled back, nothing was changed"
                            )
                        seconds = time.perf_counter() - started
                        committing = True
                    shown = [text for text in map(plan.shown, notices) if text is not None]
                    return Outcome(plan, seconds, shown, attempt)
                except Exception as error:
                    said = database.describe_interruption(
                        engine.url, error, command=command, rolled_back=not committing
                    )
                    if said is not None:
                        raise database.Interrupted(said) from None
                    if isinstance(error, migrate.RetryableConflict):
                        conflict = error
                    elif locks.is_lock_timeout(error):
                        conflict = migrate.LockTimeout(
                            str(error), where="the run", attempt_seconds=deadline.attempt_lock_timeout()
                        )
                    else:
                        raise
                    conflict.wait_before_retry(connection, deadline, attempt, progress, watch)
                    attempt += 1
    finally:
        watch.close()


def _plan_released(
    connection: sa.Connection,
    make_plan: Callable[[sa.Connection], PlannedChange],
    lock_timeout: float,
    progress: Callable[[str], None],
) -> PlannedChange:
    """The plan, made under the migrations' lock in a transaction that is rolled back before it is returned."""
    with connection.begin() as transaction:
        locks.take_migration_lock(connection, locks.Deadline(lock_timeout), progress)
        planned = make_plan(connection)
        transaction.rollback()
    return planned


def _interrupted_as_words(engine: sa.Engine, command: str, work: Callable[[], PlannedChange]) -> PlannedChange:
    """`work()`, with a connection lost or timed out while planning said as what it is (planning changes nothing)."""
    try:
        return work()
    except Exception as error:
        said = database.describe_interruption(engine.url, error, command=command)
        if said is None:
            raise
        raise database.Interrupted(said + " Planning changes nothing.") from None


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
    def key(self) -> tuple:
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
    return revisions.script_directory().get_revision(revisions.base()).module.CREATED_MARKER


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
                rows = connection.exec_driver_sql(f"SELECT count(*) FROM public.{table} WHERE {holding}").scalar()
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
