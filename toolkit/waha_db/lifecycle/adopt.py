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

from waha_db.lifecycle import app_objects, catalog, conversion, locks, migrate, revisions, writable

ADOPTED_TABLES = ("waha_servers", "waha_sessions")  # the seed's tables, in copy order
SCRATCH_SCHEMA = "waha_adopt"

# Source types a head column accepts, by the head type without its length.
_COMPATIBLE = {
    "uuid": {"uuid"},
    "integer": {"smallint", "integer", "bigint"},
    "boolean": {"boolean"},
    "text": {"text", "character varying", "character"},
    "character varying": {"text", "character varying", "character"},
    "timestamp with time zone": {"timestamp with time zone", "timestamp without time zone"},
}
# The cast used to read a source column as the head type, without a length (lengths are checked, not truncated).
_READ_AS = {"character varying": "text", "integer": "bigint"}
_COLUMN = re.compile(r"^(?P<name>\S+) (?P<type>.+?)(?P<not_null> NOT NULL)?(?: DEFAULT (?P<default>.+))?$")


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
class HeadColumn:
    name: str
    type: str  # as format_type renders it, e.g. "character varying(255)"
    not_null: bool
    default: str | None

    @property
    def base_type(self) -> str:
        return self.type.split("(")[0]

    @property
    def length(self) -> int | None:
        found = re.search(r"\((\d+)\)", self.type)
        return int(found.group(1)) if found and self.base_type == "character varying" else None


@dataclass
class AdoptionPlan:
    """What adopting this database would do, or why it cannot be adopted."""

    problems: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
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
    def key(self) -> tuple:
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


def head_columns(table: str, head: dict | None = None) -> list[HeadColumn]:
    head = head or catalog.load_head_catalog()
    columns = []
    for text in head["columns"][f"public.{table}"]:
        match = _COLUMN.match(text)
        columns.append(HeadColumn(match["name"], match["type"], bool(match["not_null"]), match["default"]))
    return columns


def _head_constraints(table: str, head: dict) -> dict[str, str]:
    prefix = f"public.{table}."
    return {
        name[len(prefix) :]: definition for name, definition in head["constraints"].items() if name.startswith(prefix)
    }


def _columns_of(connection: sa.Connection, schema: str, table: str) -> dict[str, str]:
    rows = connection.exec_driver_sql(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a "
        "WHERE a.attrelid = pg_catalog.to_regclass(%(name)s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        {"name": f"{schema}.{table}"},
    ).all()
    return dict(rows)


def _exists(connection: sa.Connection, name: str) -> bool:
    return connection.exec_driver_sql("SELECT pg_catalog.to_regclass(%(name)s) IS NOT NULL", {"name": name}).scalar()


def _projection(table: str, source_schema: str, source_columns: dict[str, str], head: dict) -> str:
    """A SELECT of the hand-made table as the head table would hold it: head columns, defaults for NULLs."""
    expressions = []
    for column in head_columns(table, head):
        read_as = _READ_AS.get(column.base_type, column.base_type)
        if column.name in source_columns and source_columns[column.name].split("(")[0] in _COMPATIBLE.get(
            column.base_type, {column.base_type}
        ):
            value = f"source.{_quote(column.name)}::{read_as}"
            if column.default is not None and column.not_null:
                value = f"COALESCE({value}, {column.default})"
        else:
            value = f"{column.default}" if column.default is not None else f"NULL::{read_as}"
        expressions.append(f"{value} AS {_quote(column.name)}")
    return f"SELECT {', '.join(expressions)} FROM {source_schema}.{table} AS source"


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _column_list(definition: str) -> list[str]:
    return [name.strip() for name in re.search(r"\(([^)]*)\)", definition).group(1).split(",")]


def plan_adoption(
    connection: sa.Connection, owner: uuid.UUID | None = None, *, source_schema: str = "public"
) -> AdoptionPlan:
    """The problems that block adopting this database, or the actions adoption would take.

    Reads only (the catalog and the hand-made rows); never changes or locks anything
    beyond what SELECT takes.
    """
    head = catalog.load_head_catalog()
    plan = AdoptionPlan(owner=owner)
    present = [table for table in ADOPTED_TABLES if _exists(connection, f"{source_schema}.{table}")]
    if not present:
        plan.problems.append("there is no hand-made public.waha_servers or public.waha_sessions to adopt")
        return plan
    if revisions.current_revision(connection) is not None:
        plan.problems.append(
            "alembic_version records a revision: this database is managed by the migrations; use `waha-db upgrade`"
        )
        return plan
    blocked = writable.writable_problem(connection)
    if blocked:
        plan.problems.append(blocked)

    projections: dict[str, str] = {}
    type_problems = False
    for table in present:
        source = _columns_of(connection, source_schema, table)
        wanted = {column.name: column for column in head_columns(table, head)}
        for name, source_type in source.items():
            if name not in wanted:
                plan.problems.append(
                    f"{table}.{name} ({source_type}) is not a V2.1 column: adoption would lose its values; drop it or move them elsewhere first"
                )
        for column in wanted.values():
            if column.name not in source:
                if column.not_null and column.default is None:
                    plan.problems.append(
                        f"{table}.{column.name} is missing and V2.1 requires it ({column.type} NOT NULL, no default)"
                    )
                    type_problems = True
                else:
                    plan.actions.append(
                        f"add column {table}.{column.name} {column.type}"
                        + (f" DEFAULT {column.default}" if column.default else "")
                    )
                continue
            source_type = source[column.name]
            if source_type.split("(")[0] not in _COMPATIBLE.get(column.base_type, {column.base_type}):
                plan.problems.append(f"{table}.{column.name} is {source_type}, expected {column.type}")
                type_problems = True
            elif source_type != column.type:
                note = (
                    " (values read in the session's time zone)" if source_type == "timestamp without time zone" else ""
                )
                plan.actions.append(f"change {table}.{column.name} from {source_type} to {column.type}{note}")
        if not type_problems:
            projections[table] = _projection(table, source_schema, source, head)
    if type_problems:
        return plan

    for table in present:
        projected = projections[table]
        count = connection.exec_driver_sql(f"SELECT count(*) FROM {source_schema}.{table}").scalar()
        plan.actions.append(f"rebuild {table} in the V2.1 shape and copy its {count} row(s)")
        for column in head_columns(table, head):
            if column.name not in _columns_of(connection, source_schema, table):
                continue
            if column.length is not None:
                too_long = connection.exec_driver_sql(
                    f"SELECT count(*) FROM ({projected}) AS p WHERE length(p.{_quote(column.name)}) > {column.length}"
                ).scalar()
                if too_long:
                    plan.problems.append(
                        f"{too_long} row(s) of {table} have a {column.name} longer than {column.length} characters"
                    )
            if column.base_type == "integer":
                out_of_range = connection.exec_driver_sql(
                    f"SELECT count(*) FROM ({projected}) AS p WHERE p.{_quote(column.name)} NOT BETWEEN -2147483648 AND 2147483647"
                ).scalar()
                if out_of_range:
                    plan.problems.append(
                        f"{out_of_range} row(s) of {table} have a {column.name} outside the integer range"
                    )
            nulls = connection.exec_driver_sql(
                f"SELECT count(*) FROM {source_schema}.{table} AS source WHERE source.{_quote(column.name)} IS NULL"
            ).scalar()
            if nulls and column.not_null:
                if column.default is None:
                    plan.problems.append(f"{nulls} row(s) of {table} have no {column.name} (NULL), which V2.1 requires")
                else:
                    plan.actions.append(
                        f"{nulls} row(s) of {table}: NULL {column.name} becomes the default {column.default}"
                    )
        for name, definition in _head_constraints(table, head).items():
            if definition.startswith("CHECK"):
                expression = definition[len("CHECK ") :]
                rows = (
                    connection.exec_driver_sql(
                        f"SELECT p.id::text FROM ({projected}) AS p WHERE NOT {expression} ORDER BY 1"
                    )
                    .scalars()
                    .all()
                )
                if rows:
                    plan.problems.append(
                        f"{len(rows)} row(s) of {table} violate {name} {definition}: id {', '.join(rows[:5])}"
                        + (" ..." if len(rows) > 5 else "")
                    )
            elif definition.startswith(("UNIQUE", "PRIMARY KEY")):
                columns = _column_list(definition)
                listed = ", ".join(f"p.{_quote(c)}" for c in columns)
                duplicates = connection.exec_driver_sql(
                    f"SELECT count(*), ({listed})::text FROM ({projected}) AS p GROUP BY {listed} HAVING count(*) > 1 ORDER BY 2"
                ).all()
                for repeated, values in duplicates:
                    plan.problems.append(f"{repeated} rows of {table} share ({', '.join(columns)}) = {values}")
    if "waha_sessions" in present:
        servers = projections.get("waha_servers", "SELECT NULL::uuid AS id, NULL::uuid AS user_id WHERE false")
        orphans = connection.exec_driver_sql(
            f"SELECT s.id::text, s.user_id::text, s.waha_server_id::text, o.user_id::text "
            f"FROM ({projections['waha_sessions']}) AS s LEFT JOIN ({servers}) AS o ON o.id = s.waha_server_id "
            f"WHERE o.id IS NULL OR o.user_id IS DISTINCT FROM s.user_id ORDER BY 1"
        ).all()
        for session, user, server, server_user in orphans:
            if server_user is None:
                plan.problems.append(f"waha_sessions id={session} is on server {server}, which is not in waha_servers")
            else:
                plan.problems.append(
                    f"waha_sessions id={session} of user {user} is on server {server} of another user ({server_user})"
                )
    if _exists(connection, "auth.users"):
        for table in present:
            strangers = connection.exec_driver_sql(
                f"SELECT count(*) FROM ({projections[table]}) AS p WHERE NOT EXISTS (SELECT FROM auth.users u WHERE u.id = p.user_id)"
            ).scalar()
            if strangers:
                plan.problems.append(f"{strangers} row(s) of {table} have a user_id that is not in auth.users")

    for table in present:
        dependents = (
            connection.exec_driver_sql(
                """
            SELECT DISTINCT description FROM (
                SELECT 'view ' || v.oid::regclass::text AS description
                FROM pg_catalog.pg_depend d
                JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
                JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
                WHERE d.refobjid = pg_catalog.to_regclass(%(table)s) AND v.oid <> d.refobjid
                UNION ALL
                SELECT 'foreign key ' || k.conname || ' of ' || k.conrelid::regclass::text
                FROM pg_catalog.pg_constraint k
                WHERE k.confrelid = pg_catalog.to_regclass(%(table)s) AND k.conrelid <> k.confrelid
                  AND k.conrelid::regclass::text NOT IN ('waha_servers', 'waha_sessions', 'public.waha_servers', 'public.waha_sessions')
            ) AS found ORDER BY 1
            """,
                {"table": f"{source_schema}.{table}"},
            )
            .scalars()
            .all()
        )
        for dependent in dependents:
            plan.problems.append(
                f"{dependent} depends on {table}: adoption rebuilds the table; drop it first and recreate it after adoption"
            )

    _plan_legacy_owner(connection, plan, source_schema)
    if plan.has_legacy_config and not plan.problems and source_schema == "public":
        # What the conversion will refuse once the tables are rebuilt: the same checks, on the same rows.
        refusal = conversion.check(connection, plan.owner).refusal
        if refusal:
            plan.problems.append(refusal)
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
    if source_schema == "public":
        kept = app_objects.read(connection, present, head)
        plan.actions += kept.actions
        plan.problems += kept.problems
        plan.restore = kept.statements
    plan.actions.append(f"record revision {revisions.head()} in alembic_version")
    return plan


def hand_made_objects(head: dict, found: dict, adopted: list[str]) -> list[str]:
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
    plan.has_legacy_config = _exists(connection, "public.waha_config")
    if not plan.has_legacy_config or "api_url" not in _columns_of(connection, "public", "waha_config"):
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
    owners = []
    if _exists(connection, f"{source_schema}.waha_servers") and "api_url" in _columns_of(
        connection, source_schema, "waha_servers"
    ):
        owners = (
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
    present = [table for table in ADOPTED_TABLES if _exists(connection, f"public.{table}")]
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

    migrate.upgrade(connection, revisions.previous(migrate.conversion_revision()), lock_timeout=lock_timeout)
    head = catalog.load_head_catalog()
    for table in present:
        source = _columns_of(connection, SCRATCH_SCHEMA, table)
        target = _columns_of(connection, "public", table)
        projected = _projection(table, SCRATCH_SCHEMA, source, head)
        head_names = {column.name for column in head_columns(table, head)}
        columns = ", ".join(_quote(name) for name in target if name in head_names)
        connection.exec_driver_sql(f"INSERT INTO public.{table} ({columns}) SELECT {columns} FROM ({projected}) AS p")
    migrate.upgrade(connection, "head", owner=plan.owner, lock_timeout=lock_timeout)
    for statement in plan.restore:  # after the rows are in: the application's triggers never saw the copy
        connection.exec_driver_sql(statement.replace("%", "%%"))
    for table in reversed(present):
        connection.exec_driver_sql(f"DROP TABLE {SCRATCH_SCHEMA}.{table}")
    connection.exec_driver_sql(f"DROP SCHEMA {SCRATCH_SCHEMA}")
