"""What `waha-db status` reports: the state of a database, and the one command to run next.

The `next:` line is never a guess: for a database an upgrade would change, it comes
from the upgrade's own plan (with the legacy conversion's checks run read-only), so
the command it gives either works as printed or fails with exactly the refusal the
report shows, whose fix the report shows too; at head, from the repair's plan.
Reads only: safe on a production database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sqlalchemy as sa

from waha_db.database import server_version
from waha_db.errors import UserError
from waha_db.lifecycle import catalog, repair, revisions, state, writable
from waha_db.lifecycle import plan as plans

DRIFTED = "drifted"


@dataclass(frozen=True)
class Status:
    """The state of a database as `waha-db status` reports it: the classification, plus drift at head."""

    state: str  # one of waha_db.lifecycle.state's kinds, or DRIFTED
    summary: str
    current: str | None
    head: str
    pending: tuple[str, ...]
    details: tuple[str, ...]  # the legacy servers to convert, adoption problems, drift and its repair
    drift: tuple[str, ...]
    next: str  # the command to run next; empty at head without drift
    server_version: str = ""  # the PostgreSQL server's, e.g. "17.4"
    refusal: str | None = None  # what the command of `next` will refuse until the database is corrected
    recorded: str = ""  # what alembic_version says: the revision, or "none (alembic_version is empty)"...

    @property
    def at_head(self) -> bool:
        """At head with no drift: what `status --check` (and a deploy script) wants."""
        return not self.next

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state,
            "summary": self.summary,
            "current": self.current,
            "recorded": self.recorded,
            "head": self.head,
            "pending": list(self.pending),
            "details": list(self.details),
            "drift": list(self.drift),
            "next": self.next,
            "refusal": self.refusal,
            "at_head": self.at_head,
            "server_version": self.server_version,
        }


def database_status(connection: sa.Connection) -> Status:
    """The classification of `state.database_state`, the upgrade's plan, and drift from head."""
    found = state.database_state(connection)
    status = Status(
        found.kind,
        found.summary,
        found.revision,
        revisions.head(),
        found.pending,
        tuple(found.adoption_problems),
        (),
        "",
        server_version(connection)[1],
        recorded=found.recorded,
    )
    if found.version_table and found.revision is None and found.kind != state.HAND_MADE:
        status = replace(status, details=(EMPTY_VERSION_TABLE,))
    if found.kind == state.UNKNOWN_REVISION:
        return replace(
            status,
            next="install the waha-db release that wrote this revision (pip install --upgrade waha-db), "
            "then `waha-db upgrade`",
            refusal=plans.plan_upgrade(connection).problems[0],
        )
    if found.kind == state.HAND_MADE:
        if not found.adoption_problems:
            return replace(status, next="waha-db adopt")
        owner = any("--owner" in problem for problem in found.adoption_problems)
        command = "waha-db adopt --owner UUID" if owner else "waha-db adopt"
        standby = any(writable.is_standby(problem) for problem in found.adoption_problems)
        return replace(
            status,
            next=_on_primary(command) if standby else f"correct the problems above, then `{command}`",
            refusal="\n".join(found.adoption_problems),
        )
    if found.at_head:
        return _drift(connection, status)
    upgrade = plans.plan_upgrade(connection)
    command = "waha-db upgrade --owner UUID" if upgrade.needs_owner else "waha-db upgrade"
    details = status.details + tuple(
        f"to convert: {url}" for url in (upgrade.legacy.api_urls if upgrade.legacy else ())
    )
    problems = [
        problem for problem in upgrade.problems if not (upgrade.needs_owner and "no owner was given" in problem)
    ]
    if not problems:
        if upgrade.legacy and upgrade.legacy.converted_before:
            details += (upgrade.legacy.describe(),)
        return replace(status, details=details, next=command)
    refusal = "\n".join(problems)
    return replace(
        status,
        summary=f"{status.summary}; the upgrade will refuse it as it stands",
        details=details + tuple(refusal.splitlines()),
        next=_on_primary(command)
        if writable.is_standby(problems[0])
        else f"correct the database as said above, then `{command}`",
        refusal=refusal,
    )


EMPTY_VERSION_TABLE = "no revision recorded: alembic_version exists but is empty (a downgrade to base leaves it so)"


def _on_primary(command: str) -> str:
    return f"run `{command}` against the primary server (this one is a hot standby)"


def _drift(connection: sa.Connection, status: Status) -> Status:
    planned = repair.plan_repair(connection)
    if not planned.differences:
        return status
    drift = tuple(planned.differences)
    summary = f"at head ({status.current}) but drifted from it: {catalog.plural(len(drift), 'difference')}"
    if planned.by_hand:
        return replace(
            status,
            state=DRIFTED,
            summary=summary,
            details=drift,
            drift=drift,
            next="put back by hand what `waha-db repair` cannot (it lists them), "
            "as toolkit/waha_db/lifecycle/head_catalog.json has it",
            refusal=planned.refusal(),
        )
    details = (
        drift
        + ("`waha-db repair` restores head's definitions with:",)
        + tuple(f"  {statement}" for statement in planned.statements)
    )
    if planned.blocked:
        return replace(
            status,
            state=DRIFTED,
            summary=f"{summary}; the repair will refuse it as it stands",
            details=details + tuple(planned.refusal().splitlines()),
            drift=drift,
            next=_on_primary("waha-db repair")
            if writable.is_standby(planned.blocked)
            else "correct the database as said above, then `waha-db repair`",
            refusal=planned.refusal(),
        )
    return replace(status, state=DRIFTED, summary=summary, details=details, drift=drift, next="waha-db repair")


# One statement, whatever the role: whether the tables exist (alembic_version is not read: revision 0011 closes
# it to the API roles, service_role included, and the admin runs these commands as one of them).
_WHERE_IT_STANDS = """
SELECT pg_catalog.to_regclass('public.waha_servers') IS NOT NULL,
       pg_catalog.to_regclass('public.alembic_version') IS NOT NULL
"""


def not_upgraded(has_servers: bool, has_version_table: bool) -> str | None:
    """Why a fleet command cannot run on this database, and what to run first; None when its tables are there. Pure."""
    if not has_servers:
        return (
            "this database has no WAHA V2.1 schema yet (no waha_servers table): run `waha-db upgrade` first "
            "(`waha-db status` shows where it stands and the plan). Nothing was read or changed."
        )
    if not has_version_table:
        return (
            "this database's V2.1 tables were made by hand and are not managed yet: run `waha-db adopt` first "
            "(`waha-db status` shows where it stands). Nothing was read or changed."
        )
    return None


class NotUpgraded(UserError):
    """A fleet command met a database without the V2.1 schema it works on; the message says what to run."""


def require_upgraded(connection: sa.Connection) -> None:
    """NotUpgraded, saying what to run first, when the database has no managed V2.1 schema: the fleet's commands
    (servers, sessions, monitor) would otherwise fail on a missing relation. One statement, reads only."""
    has_servers, has_version_table = connection.exec_driver_sql(_WHERE_IT_STANDS).one()
    why = not_upgraded(has_servers, has_version_table)
    if why:
        raise NotUpgraded(why)
