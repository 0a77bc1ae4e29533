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

The seed's "Atualizar permissões" step (`GRANT ALL ... TO authenticated`) is the case
that matters: it gives every signed-in user TRUNCATE, which ignores row security.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlalchemy as sa

from waha_db.lifecycle import catalog, locks, revisions

_QUALIFIED = re.compile(r"^(?P<schema>\w+)\.(?P<table>\w+)\.(?P<name>\w+)$")


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
    problems: list[str] = field(default_factory=list)  # differences only a person can undo
    differences: list[str] = field(default_factory=list)  # the drift, as status words it

    question = "Run these statements?"
    action = "repair"

    @property
    def nothing_to_do(self) -> bool:
        return not self.statements and not self.problems

    @property
    def target(self) -> str:
        return revisions.head()

    @property
    def key(self) -> tuple:
        return (tuple(self.statements), tuple(self.problems))

    def header(self) -> list[str]:
        if self.nothing_to_do:
            return [f"nothing to repair: the WAHA objects are as head ({revisions.head()}) has them"]
        return ["drift from head:", *(f"  {line}" for line in self.differences)]

    def describe(self) -> list[str]:
        return ["statements that restore head's definitions:", *(f"  {statement}" for statement in self.statements)]

    def refusal(self) -> str:
        return (
            "cannot repair: these differences need a decision only you can take; nothing was changed:\n"
            + "\n".join(f"  - {problem}" for problem in self.problems)
            + "\nPut them back by hand as toolkit/waha_db/lifecycle/head_catalog.json has them, then run `waha-db repair` again."
        )

    def shows(self, notice: str) -> bool:
        return True

    def done(self, seconds: float) -> str:
        return f"repaired: {len(self.statements)} statement(s) in {seconds:.2f}s; the WAHA objects are as head has them"


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
    for section in ("indexes", "policies", "functions", "triggers", "row_security", "grants"):
        wanted, have = head.get(section, {}), found.get(section, {})
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
    return plan


def _line_for(differences: list[str], name: str) -> str | None:
    return next((line for line in differences if f" {name}" in line), None)


def _restore(section: str, name: str, head, found) -> list[str] | None:
    """The statements that make object `name` of `section` what head has; None when only a person can."""
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
    table, object_name = f"{parts['schema']}.{parts['table']}", parts["name"]
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


def repair(connection: sa.Connection, plan: RepairPlan, *, lock_timeout: float) -> None:
    """Run the plan's statements in the caller's transaction, each lock waited for at most `lock_timeout`."""
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = {locks.milliseconds(lock_timeout)}")
    connection.exec_driver_sql(f"SET LOCAL statement_timeout = {locks.STATEMENT_TIMEOUT_SECONDS * 1000}")
    for statement in plan.statements:
        connection.exec_driver_sql(statement.replace("%", "%%"))
