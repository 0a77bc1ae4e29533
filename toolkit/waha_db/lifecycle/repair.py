"""Putting back what drifted from head: the statements that restore head's definitions.

`status` measures drift against the recorded head catalog (lifecycle/head_catalog.json);
this module turns each difference it can undo exactly into SQL, from that same
catalog: grants (REVOKE ALL, then GRANT exactly head's privileges, which is valid on
PostgreSQL 15 to 18, where ALL also covers MAINTAIN), indexes, row-security
policies (an extra policy is dropped: a permissive one widens who sees what),
functions, triggers, and row security itself. What it cannot undo without a
decision only a person can take (a column, a constraint, a table, an extra index or
function) is listed, and then it repairs nothing: `waha-db repair` runs all of it
or none, in one transaction, after confirmation.

The statements run in the order of what depends on what: functions first (an index,
a policy or a trigger may call one: the 0010 unique index calls
`waha_normalized_url`), then indexes, triggers, row security and policies, and the
grants last, on objects that exist by then. A function it creates gets the privileges
new functions get here (EXECUTE to PUBLIC, and whatever default privileges add, as
Supabase's do for anon): the statements take those back too. After running them it
compares the database with head again, and rolls everything back unless no drift is
left.

The seed's "Atualizar permissões" step (`GRANT ALL ... TO authenticated`) is the case
that matters: it gives every signed-in user TRUNCATE, which ignores row security.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from waha_db.errors import UserError
from waha_db.lifecycle import catalog, locks, revisions, writable

# What runs first: what others use (functions), then what uses them; grants last.
REPAIR_ORDER = ("functions", "indexes", "triggers", "row_security", "policies", "grants")
_QUALIFIED = re.compile(r"^(?P<schema>\w+)\.(?P<table>\w+)\.(?P<name>.+)$")  # a policy's name may hold spaces


def _quote(role: str) -> str:
    return role if role == "PUBLIC" or re.fullmatch(r"[a-z_][a-z0-9_]*", role) else '"' + role.replace('"', '""') + '"'


def _privileges(entries: list[str]) -> dict[str, str]:
    """`["authenticated: DELETE, INSERT", ...]` -> {"authenticated": "DELETE, INSERT"}."""
    return dict(entry.split(": ", 1) for entry in entries)


def grant_statements(name: str, head: list[str] | None, found: list[str] | None) -> list[str]:
    """The statements that give every grantee of object `name` exactly head's privileges."""
    kind = "FUNCTION" if "(" in name else "TABLE"
    wanted, have = _privileges(head or []), _privileges(found or [])
    statements = []
    for grantee in sorted(set(wanted) | set(have)):
        if wanted.get(grantee) == have.get(grantee):
            continue
        statements.append(f"REVOKE ALL ON {kind} {name} FROM {_quote(grantee)};")
        if grantee in wanted:
            statements.append(f"GRANT {wanted[grantee]} ON {kind} {name} TO {_quote(grantee)};")
    return statements


@dataclass
class RepairPlan:
    """The statements that bring the WAHA objects back to head, or what blocks that."""

    statements: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # differences only a person can undo, or `blocked`
    differences: list[str] = field(default_factory=list)  # the drift, as status words it
    blocked: str | None = None  # why this database accepts no writes (a hot standby, read-only), when it does not

    question = "Run these statements?"
    action = "repair"

    @property
    def nothing_to_do(self) -> bool:
        return not self.statements and not self.problems

    @property
    def target(self) -> str:
        return revisions.head()

    @property
    def key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (tuple(self.statements), tuple(self.problems))

    def header(self) -> list[str]:
        if self.nothing_to_do:
            return [f"nothing to repair: the WAHA objects are as head ({revisions.head()}) has them"]
        return ["drift from head:", *(f"  {line}" for line in self.differences)]

    def describe(self) -> list[str]:
        return ["statements that restore head's definitions:", *(f"  {statement}" for statement in self.statements)]

    @property
    def by_hand(self) -> list[str]:
        """The differences only a person can undo."""
        return [problem for problem in self.problems if problem != self.blocked]

    def refusal(self) -> str:
        lines = [f"cannot repair: {self.blocked}", "Nothing was changed."] if self.blocked else []
        if self.by_hand:
            lines += [
                "cannot repair: these differences need a decision only you can take; nothing was changed:",
                *(f"  - {problem}" for problem in self.by_hand),
                "Put them back by hand as toolkit/waha_db/lifecycle/head_catalog.json has them, "
                "then run `waha-db repair` again.",
            ]
        return "\n".join(lines)

    def shown(self, notice: str) -> str | None:
        return notice

    def done(self, seconds: float) -> str:
        return (
            f"repaired: {catalog.plural(len(self.statements), 'statement')} in {seconds:.2f}s; "
            "the WAHA objects are as head has them"
        )


def plan_repair(connection: sa.Connection) -> RepairPlan:
    """What `waha-db repair` would run on this database (it must be at head), read with SELECTs only."""
    plan = RepairPlan()
    current = revisions.current_revision(connection)
    if current != revisions.head():
        plan.problems.append(
            f"the database is at revision {current or 'none'}, not at head ({revisions.head()}): "
            "`waha-db status` says what to do first"
        )
        return plan
    head = catalog.load_head_catalog()
    found = catalog.waha_objects(catalog.catalog_snapshot(connection))
    plan.differences = catalog.diff_snapshots(head, found, expected_label="head has", actual_label="database has")
    if not plan.differences:
        return plan
    created_functions = set(head.get("functions", {})) - set(found.get("functions", {}))
    for section in REPAIR_ORDER:
        wanted, have = head.get(section, {}), found.get(section, {})
        if section == "grants" and created_functions:
            granted_when_created = new_function_grants(connection)
            have = {**have, **{name: granted_when_created for name in created_functions if name not in have}}
        for name in sorted(set(wanted) | set(have)):
            if wanted.get(name) == have.get(name):
                continue
            statements = _restore(section, name, wanted.get(name), have.get(name))
            if statements is None:
                plan.problems.append(_line_for(plan.differences, name) or f"{section} {name} differs")
            else:
                plan.statements += statements
    for section in ("relations", "columns", "constraints"):
        wanted, have = head.get(section, {}), found.get(section, {})
        for name in sorted(set(wanted) | set(have)):
            if wanted.get(name) != have.get(name):
                plan.problems.append(_line_for(plan.differences, name) or f"{section} {name} differs")
    plan.blocked = writable.writable_problem(connection)
    if plan.blocked:
        plan.problems.insert(0, plan.blocked)
    return plan


def new_function_grants(connection: sa.Connection) -> list[str]:
    """The grants a function gets when this role creates it in schema public, as the catalog lists them.

    PostgreSQL's built-in default (EXECUTE to PUBLIC), or this role's global default
    privileges where it has some, plus its default privileges in schema public (on
    Supabase: anon, authenticated and service_role); the owner's own grant aside.
    """
    rows = connection.exec_driver_sql(
        """
        WITH me AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user),
        global AS (
            SELECT d.defaclacl FROM pg_catalog.pg_default_acl AS d, me
            WHERE d.defaclrole = me.oid AND d.defaclnamespace = 0 AND d.defaclobjtype = 'f'
        ),
        granted AS (
            SELECT acl.grantee, acl.privilege_type
            FROM me, pg_catalog.aclexplode(
                COALESCE((SELECT defaclacl FROM global), pg_catalog.acldefault('f', me.oid))
            ) AS acl
            UNION
            SELECT acl.grantee, acl.privilege_type
            FROM pg_catalog.pg_default_acl AS d
            JOIN me ON d.defaclrole = me.oid
            CROSS JOIN LATERAL pg_catalog.aclexplode(d.defaclacl) AS acl
            WHERE d.defaclnamespace = 'public'::pg_catalog.regnamespace AND d.defaclobjtype = 'f'
        )
        SELECT CASE WHEN granted.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(granted.grantee) END,
               pg_catalog.string_agg(granted.privilege_type, ', ' ORDER BY granted.privilege_type)
        FROM granted, me WHERE granted.grantee <> me.oid
        GROUP BY 1 ORDER BY 1
        """
    ).all()
    return [f"{grantee}: {privileges}" for grantee, privileges in rows]


def _line_for(differences: list[str], name: str) -> str | None:
    return next((line for line in differences if f" {name}" in line), None)


def _restore(section: str, name: str, head: Any, found: Any) -> list[str] | None:
    """The statements that make object `name` of `section` what head has; None when only a person can.

    `head` and `found` are the object's definitions in the two snapshots (lines for grants, text
    otherwise), None where it is absent.
    """
    if section == "grants":
        return grant_statements(name, head, found)
    if section == "functions":
        return None if head is None else [head.rstrip() + ";"]
    if section == "row_security":
        table = name
        return [f"ALTER TABLE {table} {'FORCE' if head == 'forced' else 'ENABLE'} ROW LEVEL SECURITY;"] + (
            [f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;"] if head == "on" and found == "forced" else []
        )
    parts = _QUALIFIED.match(name)
    assert parts is not None, f"{section} {name} is not schema.table.name"  # the catalog names them so
    table, object_name = f"{parts['schema']}.{parts['table']}", _quote(parts["name"])
    drop = {
        "indexes": f"DROP INDEX {parts['schema']}.{object_name};",
        "policies": f"DROP POLICY {object_name} ON {table};",
        "triggers": f"DROP TRIGGER {object_name} ON {table};",
    }[section]
    if head is None:
        return [drop] if section == "policies" else None  # an extra index or trigger may be a DBA's own
    create = {
        "indexes": f"{head};",
        "policies": f"CREATE POLICY {object_name} ON {table} AS {head};",
        "triggers": f"{head};",
    }[section]
    return [create] if found is None else [drop, create]


class RepairIncomplete(UserError):
    """The statements ran, yet the WAHA objects still differ from head: rolled back."""


def repair(connection: sa.Connection, plan: RepairPlan, *, lock_timeout: float) -> None:
    """Run the plan's statements in the caller's transaction, each lock waited for at most `lock_timeout`;
    RepairIncomplete (so the caller rolls back) unless the database is then as head has it.

    Function bodies are not checked while they are created (as pg_dump restores them):
    a function may call another that the statements create after it.
    """
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = {locks.milliseconds(lock_timeout)}")
    connection.exec_driver_sql(f"SET LOCAL statement_timeout = {locks.STATEMENT_TIMEOUT_SECONDS * 1000}")
    connection.exec_driver_sql("SET LOCAL check_function_bodies = off")
    for statement in plan.statements:
        connection.exec_driver_sql(statement.replace("%", "%%"))
    left = catalog.detect_drift(connection)
    if left:
        raise RepairIncomplete(
            f"the repair ran its {catalog.plural(len(plan.statements), 'statement')}, yet the WAHA objects still differ "
            "from head, so it was rolled back and nothing was changed:\n"
            + "\n".join(f"  {line}" for line in left)
            + "\nPut these back by hand as toolkit/waha_db/lifecycle/head_catalog.json has them."
        )
