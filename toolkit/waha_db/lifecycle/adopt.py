"""Adopting a database whose V2.1 tables were made by hand from the seed document.

Such a database has `waha_servers` / `waha_sessions` (maybe the UNIQUEs, maybe the
function, maybe `waha_config` still there) and no `alembic_version`; `upgrade head`
refuses it (it would die on "relation already exists").

Adoption reuses the migrations' own SQL instead of a second copy of the schema: in
one transaction, the hand-made tables are moved aside (schema `waha_adopt`), the
migrations build the exact head shape (column order, constraints, indexes, triggers,
function, grants, row security) and record the head revision, every hand-made row is
copied in, and the moved tables are dropped. Before that, `plan_adoption` checks the
hand-made tables column by column and row by row against the head schema (the
recorded catalog `toolkit/waha_db/lifecycle/head_catalog.json`: its column types, NOT NULLs, defaults,
CHECKs, UNIQUEs and foreign keys), and lists either the problems (adoption refused,
nothing touched) or the actions.

A NULL in a column that has a default takes the default (as the legacy conversion
does); a NULL in a required column without one is a problem. `timestamp` columns
(the seed's type) become `timestamptz`, read in the session's TimeZone.

What the application built on the hand-made tables is kept, and the plan says so
(waha_db.lifecycle.app_objects): its own triggers and row-security policies are
created again on the rebuilt tables as they were (one with the name of V2.1's own is
replaced by V2.1's; a trigger that runs one of V2.1's functions is dropped, V2.1's
trigger doing that job), the tables' memberships of publications (Supabase Realtime's
`supabase_realtime`) are added again, and so is their REPLICA IDENTITY. What the
rebuild drops without making again (the hand-made indexes, constraints and grants)
is listed as dropped.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa

from waha_db.lifecycle import adopt_checks, app_objects, catalog, conversion, locks, migrate, revisions, writable
from waha_db.lifecycle.adopt_checks import ADOPTED_TABLES, Findings

SCRATCH_SCHEMA = "waha_adopt"


class AdoptionRefused(migrate.MigrationError):
    """The hand-made tables cannot be adopted as they stand; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "this hand-made V2.1 database cannot be adopted as it stands; nothing was changed:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
            + "\nCorrect these in the database (or ask for help with the data), then run `waha-db adopt` again."
        )


@dataclass
class AdoptionPlan(Findings):
    """What adopting this database would do (`actions`), or why it cannot be adopted (`problems`)."""

    owner: uuid.UUID | None = None  # the owner of the legacy waha_config server, given or inferred
    has_legacy_config: bool = False  # a legacy public.waha_config sits beside the hand-made tables
    restore: list[str] = field(default_factory=list)  # what puts the application's objects back after the rebuild

    question = "Adopt this database?"
    action = "adopt"
    nothing_to_do = False

    @property
    def adoptable(self) -> bool:
        return not self.problems

    @property
    def target(self) -> str:
        return revisions.head()

    @property
    def key(self) -> tuple[object, ...]:
        """What adoption will do, row counts aside (the application keeps writing between two attempts)."""
        return (tuple(self.problems), self.owner, tuple(re.sub(r"\d+", "N", action) for action in self.actions))

    def shown(self, notice: str) -> str | None:
        """The legacy conversion's notices concern only a database that has a legacy waha_config."""
        return notice if self.has_legacy_config or "waha_config" not in notice else None

    def header(self) -> list[str]:
        return ["cannot adopt:", *(f"  - {problem}" for problem in self.problems)] if self.problems else []

    def refusal(self) -> str:
        return f"{len(self.problems)} problem(s) block the adoption; nothing was changed"

    def describe(self) -> list[str]:
        return ["adoption plan:", *(f"  + {action}" for action in self.actions)]

    def done(self, seconds: float) -> str:
        return f"adopted: the database is managed by waha-db, at {revisions.head()} ({seconds:.2f}s)"


def plan_adoption(
    connection: sa.Connection, owner: uuid.UUID | None = None, *, source_schema: str = "public"
) -> AdoptionPlan:
    """The problems that block adopting this database, or the actions adoption would take.

    Reads only (the catalog and the hand-made rows); never changes or locks anything
    beyond what SELECT takes.
    """
    head = catalog.load_head_catalog()
    plan = AdoptionPlan(owner=owner)
    present = [table for table in ADOPTED_TABLES if adopt_checks.exists(connection, f"{source_schema}.{table}")]
    refusal = _not_hand_made(connection, present)
    if refusal:
        plan.problems.append(refusal)
        return plan
    blocked = writable.writable_problem(connection)
    if blocked:
        plan.problems.append(blocked)
    projections = _readable_tables(connection, plan, present, source_schema, head)
    if projections is None:
        return plan
    for table in present:
        adopt_checks.check_rows(connection, plan, table, projections[table], source_schema, head)
    adopt_checks.check_references(connection, plan, present, projections)
    adopt_checks.check_dependents(connection, plan, present, source_schema)
    _plan_legacy_owner(connection, plan, source_schema)
    if plan.has_legacy_config and not plan.problems and source_schema == "public":
        # What the conversion will refuse once the tables are rebuilt: the same checks, on the same rows.
        refusal = conversion.check(connection, plan.owner).refusal
        if refusal:
            plan.problems.append(refusal)
    _plan_head_objects(connection, plan, present, head)
    if source_schema == "public":
        kept = app_objects.read(connection, present, head)
        plan.actions += kept.actions
        plan.problems += kept.problems
        plan.restore = kept.statements
    plan.actions.append(f"record revision {revisions.head()} in alembic_version")
    return plan


def _not_hand_made(connection: sa.Connection, present: list[str]) -> str | None:
    """Why this database is no hand-made V2.1 one to adopt (none of its tables, or managed already); None when it is."""
    if not present:
        return "there is no hand-made public.waha_servers or public.waha_sessions to adopt"
    if revisions.current_revision(connection) is not None:
        return "alembic_version records a revision: this database is managed by the migrations; use `waha-db upgrade`"
    return None


def _readable_tables(
    connection: sa.Connection, plan: AdoptionPlan, present: list[str], source_schema: str, head: catalog.Snapshot
) -> dict[str, str] | None:
    """Each hand-made table's SELECT in the head shape; None when a column's type does not fit or a
    required column is missing in any of them (the rows are then not read)."""
    projections: dict[str, str] = {}
    for table in present:
        source = adopt_checks.check_columns(connection, plan, table, source_schema, head)
        if source is not None:
            projections[table] = adopt_checks.projection(table, source_schema, source, head)
    return projections if len(projections) == len(present) else None


def _plan_head_objects(
    connection: sa.Connection, plan: AdoptionPlan, present: list[str], head: catalog.Snapshot
) -> None:
    """What the migrations create that the database lacks, and what becomes of the hand-made objects."""
    found = catalog.waha_objects(catalog.catalog_snapshot(connection))
    differences = catalog.diff_snapshots(head, found, expected_label="head has", actual_label="database has")
    for line in differences:
        if line.startswith("missing relation ") and "missing table " + line[len("missing relation ") :] in differences:
            continue  # the same table, said once
        if catalog.VERSION_TABLE in line:
            continue  # alembic_version comes with the migrations, as head has it: the last action says so
        if line.startswith("missing "):
            plan.actions.append("create " + line[len("missing ") :])
    plan.actions += hand_made_objects(head, found, present)


def hand_made_objects(head: catalog.Snapshot, found: catalog.Snapshot, adopted: list[str]) -> list[str]:
    """What becomes of the hand-made objects that V2.1 does not have, or has otherwise, in plain words. Pure.

    What hangs on an adopted table (an index, a constraint, grants) goes with the rebuild:
    dropped, or replaced by V2.1's of the same name. A function with the name of one of
    V2.1's is replaced by it; anything else with `waha` in its name is left alone.
    Triggers and policies of the adopted tables are the application's (`app_objects`).
    """
    on_adopted = tuple(f"public.{table}" for table in adopted)
    ours = {name.split("(")[0] for name in head.get("functions", {})}
    lines = []
    for section in ("relations", "constraints", "indexes", "functions", "row_security", "grants"):
        wanted, have = head.get(section, {}), found.get(section, {})
        for name in sorted(have):
            what = catalog.describe_object(section, name)
            table = ".".join(name.split("(")[0].split(".")[:2])
            if name not in wanted:
                if section == "functions" and name.split("(")[0] in ours:
                    lines.append(f"drop hand-made {what}: V2.1's {name.split('(')[0]} replaces it")
                elif table in on_adopted and section != "functions":
                    lines.append(f"drop hand-made {what}: {catalog.short(have[name])}")
                elif section in ("functions", "relations"):
                    lines.append(f"keep {what}: not part of V2.1, adoption leaves it as it is")
            elif wanted[name] != have[name] and section != "relations":
                if section == "grants":
                    lines.append(f"grants on {name}: V2.1's; the hand-made ones go ({catalog.short(have[name])})")
                elif section == "row_security":
                    lines.append(f"row security of {name}: {wanted[name]}, as V2.1 has it (was {have[name]})")
                else:
                    lines.append(f"replace the hand-made {what} with V2.1's")
    return lines


def _plan_legacy_owner(connection: sa.Connection, plan: AdoptionPlan, source_schema: str) -> None:
    """A legacy waha_config left beside the hand-made tables is converted by revision 0005, which needs an owner.

    When none is given and the legacy server is already in waha_servers for exactly one
    user (the seed's manual INSERT ... SELECT), that user is the owner.
    """
    plan.has_legacy_config = adopt_checks.exists(connection, "public.waha_config")
    if not plan.has_legacy_config or "api_url" not in adopt_checks.columns_of(connection, "public", "waha_config"):
        return
    urls = (
        connection.exec_driver_sql(
            "SELECT DISTINCT pg_catalog.btrim(api_url::text) FROM public.waha_config WHERE NULLIF(pg_catalog.btrim(api_url::text), '') IS NOT NULL"
        )
        .scalars()
        .all()
    )
    if not urls or plan.owner is not None:
        return
    owners: list[str] = []
    if adopt_checks.exists(connection, f"{source_schema}.waha_servers") and "api_url" in adopt_checks.columns_of(
        connection, source_schema, "waha_servers"
    ):
        owners = list(
            connection.exec_driver_sql(
                f"SELECT DISTINCT user_id::text FROM {source_schema}.waha_servers WHERE api_url::text = ANY (%(urls)s)",
                {"urls": urls},
            )
            .scalars()
            .all()
        )
    if len(owners) == 1:
        plan.owner = uuid.UUID(owners[0])
        plan.actions.append(
            f"waha_config's server ({', '.join(urls)}) is already in waha_servers for user {owners[0]}: kept; "
            "waha_config moves to waha_legacy.waha_config_v1"
        )
    else:
        plan.problems.append(
            f"waha_config still holds a WAHA server ({', '.join(urls)}) and no owner was given: "
            "pass the id of its user (`waha-db adopt --owner UUID`)"
        )


def adopt(
    connection: sa.Connection,
    owner: uuid.UUID | None = None,
    *,
    lock_timeout: float = locks.ATTEMPT_LOCK_TIMEOUT_SECONDS,
    plan: AdoptionPlan | None = None,
) -> AdoptionPlan:
    """Adopt a hand-made V2.1 database: rebuild its tables in the head shape, keep every row, stamp head.

    One transaction (the caller's, when the connection is already in one): with any
    problem, AdoptionRefused lists them all and nothing is changed. `plan`, when
    given, is one `plan_adoption` made in this transaction (waha_db.lifecycle.plan's
    carry_out plans under the migrations' advisory lock, then runs, retrying when a
    lock is not obtained); otherwise the lock is taken and the plan made here. Each
    lock is waited for at most `lock_timeout` seconds (one attempt).
    """
    transaction = None if connection.in_transaction() else connection.begin()
    try:
        if plan is None:
            locks.take_migration_lock(connection, locks.Deadline(locks.DEFAULT_LOCK_TIMEOUT_SECONDS))
            plan = plan_adoption(connection, owner)
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {locks.milliseconds(lock_timeout)}")
        if not plan.adoptable:
            raise AdoptionRefused(plan.problems)
        _rebuild(connection, plan, lock_timeout=lock_timeout)
    except BaseException:
        if transaction is not None:
            transaction.rollback()
        raise
    if transaction is not None:
        transaction.commit()
    return plan


def _rebuild(connection: sa.Connection, plan: AdoptionPlan, *, lock_timeout: float) -> None:
    present = [table for table in ADOPTED_TABLES if adopt_checks.exists(connection, f"public.{table}")]
    connection.exec_driver_sql(f"CREATE SCHEMA {SCRATCH_SCHEMA}")
    for table in present:
        connection.exec_driver_sql(f"ALTER TABLE public.{table} SET SCHEMA {SCRATCH_SCHEMA}")
        for trigger in (
            connection.exec_driver_sql(
                "SELECT tgname FROM pg_catalog.pg_trigger WHERE tgrelid = pg_catalog.to_regclass(%(t)s) AND NOT tgisinternal",
                {"t": f"{SCRATCH_SCHEMA}.{table}"},
            )
            .scalars()
            .all()
        ):
            connection.exec_driver_sql(f'DROP TRIGGER "{trigger}" ON {SCRATCH_SCHEMA}.{table}')
    # Hand-made functions with the names of ours (the seed's get_available_waha_server) make way for the migrations'.
    our_functions = sorted({name.split("(")[0].split(".", 1)[1] for name in catalog.load_head_catalog()["functions"]})
    for signature in (
        connection.exec_driver_sql(
            "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p "
            "WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY (%(names)s)",
            {"names": our_functions},
        )
        .scalars()
        .all()
    ):
        connection.exec_driver_sql(f"DROP FUNCTION {signature}")

    before_conversion = revisions.previous(migrate.conversion_revision()) or "base"
    migrate.upgrade(connection, before_conversion, lock_timeout=lock_timeout)
    head = catalog.load_head_catalog()
    for table in present:
        source = adopt_checks.columns_of(connection, SCRATCH_SCHEMA, table)
        target = adopt_checks.columns_of(connection, "public", table)
        projected = adopt_checks.projection(table, SCRATCH_SCHEMA, source, head)
        head_names = {column.name for column in adopt_checks.head_columns(table, head)}
        columns = ", ".join(adopt_checks.quote(name) for name in target if name in head_names)
        connection.exec_driver_sql(f"INSERT INTO public.{table} ({columns}) SELECT {columns} FROM ({projected}) AS p")
    migrate.upgrade(connection, "head", owner=plan.owner, lock_timeout=lock_timeout)
    for statement in plan.restore:  # after the rows are in: the application's triggers never saw the copy
        connection.exec_driver_sql(statement.replace("%", "%%"))
    for table in reversed(present):
        connection.exec_driver_sql(f"DROP TABLE {SCRATCH_SCHEMA}.{table}")
    connection.exec_driver_sql(f"DROP SCHEMA {SCRATCH_SCHEMA}")
