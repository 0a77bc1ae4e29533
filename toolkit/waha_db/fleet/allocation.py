"""Reconciliation of the session counters (waha_servers.sessions_ativas).

`allocate_waha_session` and `release_waha_session` (revision 0006) keep each
server's counter equal to the number of its sessions that occupy capacity (status
not STOPPED, FAILED or DISCONNECTED, any case). Other writers may not: the seed's
three-statement flow, an app that crashed between its statements, a DBA's UPDATE.
Reconciliation finds every server whose counter differs from its occupying sessions
and, when asked, corrects it.

The rule for correcting (a counter may be right even when it differs):
- a counter BELOW its occupying sessions is wrong for certain: the sessions are in
  the table, and the missing slots let allocation overfill the server. `apply`
  corrects these.
- a counter ABOVE its occupying sessions may be legitimate: sessions that live
  outside waha_sessions (started on the WAHA server by hand, or by another app)
  are counted by hand. They are reported and corrected only for the servers the
  caller names explicitly (`servers=`), never silently.

Corrections lock the servers they change (`FOR UPDATE`) and count the sessions
afterwards, in a new statement, so an allocation or release running at the same
time is either fully counted or not started; the rule is applied again on what is
found then.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from waha_db.errors import UserError

# The statuses (compared case-insensitively) of a session that occupies no capacity.
NOT_OCCUPYING = ("STOPPED", "FAILED", "DISCONNECTED")
OCCUPYING = f"pg_catalog.upper(session_row.status) NOT IN {NOT_OCCUPYING!r}"


def occupies(status: str) -> bool:
    """Whether a session in `status` occupies a slot of its server: the rule of OCCUPYING, in Python."""
    return status.upper() not in NOT_OCCUPYING


_DRIFT_SQL = f"""
SELECT server.id AS server_id, server.nome AS server_name, server.user_id,
       server.sessions_ativas AS counter, server.max_sessions,
       COALESCE(occupied.sessions, 0) AS occupying
FROM public.waha_servers AS server
LEFT JOIN (
    SELECT session_row.waha_server_id, pg_catalog.count(*) AS sessions
    FROM public.waha_sessions AS session_row
    WHERE {OCCUPYING}
    GROUP BY session_row.waha_server_id
) AS occupied ON occupied.waha_server_id = server.id
WHERE server.sessions_ativas <> COALESCE(occupied.sessions, 0)
"""


class ReconcileError(UserError):
    """Reconciliation was asked for something it cannot do; the message says what to do."""


@dataclass(frozen=True)
class CounterDrift:
    """One server whose counter differs from the sessions that occupy it."""

    server_id: uuid.UUID
    server_name: str
    user_id: uuid.UUID
    counter: int
    occupying: int
    max_sessions: int

    @property
    def below(self) -> bool:
        """The counter misses sessions that are in waha_sessions: certainly wrong."""
        return self.counter < self.occupying

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "server_id": str(self.server_id), "user_id": str(self.user_id), "below": self.below}


@dataclass(frozen=True)
class Correction:
    server_id: uuid.UUID
    server_name: str
    user_id: uuid.UUID
    before: int
    after: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "server_id": str(self.server_id), "user_id": str(self.user_id)}


@dataclass
class ReconcileReport:
    """What differs, what was corrected, and what was left for the DBA to decide."""

    drifts: list[CounterDrift]
    corrections: list[Correction] = field(default_factory=list)
    applied: bool = False

    @property
    def left_alone(self) -> list[CounterDrift]:
        corrected = {correction.server_id for correction in self.corrections}
        return [drift for drift in self.drifts if drift.server_id not in corrected]

    def as_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "drifts": [drift.as_dict() for drift in self.drifts],
            "corrections": [correction.as_dict() for correction in self.corrections],
            "left_alone": [str(drift.server_id) for drift in self.left_alone] if self.applied else [],
        }


def find_counter_drift(connection: sa.Connection, server_ids: Iterable[uuid.UUID] | None = None) -> list[CounterDrift]:
    """Every server (or those of `server_ids`) whose sessions_ativas differs from its occupying sessions."""
    sql = _DRIFT_SQL
    params = {}
    if server_ids is not None:
        sql += " AND server.id = ANY (:server_ids)"
        params["server_ids"] = list(server_ids)
    rows = connection.execute(sa.text(sql + " ORDER BY server.user_id, server.nome, server.id"), params)
    return [CounterDrift(**row._mapping) for row in rows]


def to_correct(drifts: Iterable[CounterDrift], named: Iterable[uuid.UUID] = ()) -> list[CounterDrift]:
    """The drifts the rule allows correcting: counters below their sessions, and the named servers."""
    named = set(named)
    return [drift for drift in drifts if drift.below or drift.server_id in named]


def correct_counters(connection: sa.Connection, named: Iterable[uuid.UUID] = ()) -> list[Correction]:
    """Set the counters the rule allows correcting to their occupying sessions.

    Runs in the caller's transaction (commit it to keep the corrections). The
    servers are locked first, then counted again, so concurrent allocations and
    releases are neither lost nor counted twice.
    """
    named = set(named)
    unknown = named - {
        row[0]
        for row in connection.execute(
            sa.text("SELECT id FROM public.waha_servers WHERE id = ANY (:ids)"), {"ids": list(named)}
        )
    }
    if unknown:
        raise ReconcileError(
            f"no WAHA server with id {', '.join(sorted(map(str, unknown)))}; name servers by the ids the report shows"
        )
    candidates = to_correct(find_counter_drift(connection), named)
    if not candidates:
        return []
    ids = sorted(drift.server_id for drift in candidates)
    connection.execute(
        sa.text("SELECT id FROM public.waha_servers WHERE id = ANY (:ids) ORDER BY id FOR UPDATE"), {"ids": ids}
    )
    corrections = []
    for drift in to_correct(find_counter_drift(connection, ids), named):
        connection.execute(
            sa.text("UPDATE public.waha_servers SET sessions_ativas = :occupying WHERE id = :id"),
            {"occupying": drift.occupying, "id": drift.server_id},
        )
        corrections.append(
            Correction(drift.server_id, drift.server_name, drift.user_id, drift.counter, drift.occupying)
        )
    return corrections


def reconcile(connection: sa.Connection, *, apply: bool = False, servers: Iterable[uuid.UUID] = ()) -> ReconcileReport:
    """Report every counter that differs; with `apply`, correct those the rule allows (see module doc)."""
    drifts = find_counter_drift(connection)
    if not apply:
        return ReconcileReport(drifts)
    return ReconcileReport(drifts, correct_counters(connection, servers), applied=True)


def reconcile_counters(
    engine: sa.Engine,
    *,
    apply: bool = False,
    servers: Iterable[uuid.UUID] = (),
    confirm: Callable[[ReconcileReport], None] = lambda report: None,
) -> ReconcileReport:
    """`waha-db sessions reconcile`: the report; with `apply`, the corrections the rule allows, once confirmed.

    The report is read first, outside any lasting transaction; when there is
    something to correct, `confirm` sees it (and raises to refuse), then the
    corrections run in one transaction of their own, on what is found then.
    """
    servers = list(servers)
    with engine.connect() as connection:
        report = reconcile(connection)
        connection.rollback()
        if not apply or not (to_correct(report.drifts, servers) or servers):
            return report
        confirm(report)
        with connection.begin():
            return reconcile(connection, apply=True, servers=servers)


def render_report(report: ReconcileReport) -> str:
    """The report as the CLI prints it: one line per server, then what to do next."""
    if not report.drifts:
        return "Every server's sessions_ativas equals its occupying sessions."
    corrected = {correction.server_id: correction for correction in report.corrections}
    lines = [f"{'server':36}  {'name':20}  {'user':36}  counter  occupying  action"]
    for drift in report.drifts:
        if drift.server_id in corrected:
            correction = corrected[drift.server_id]
            action = f"corrected {correction.before} -> {correction.after}"
        elif drift.below:
            action = "counter misses sessions: --apply corrects it"
        else:
            action = "counter above sessions (hand-counted?): --apply --server ID corrects it"
        lines.append(
            f"{str(drift.server_id):36}  {drift.server_name[:20]:20}  {str(drift.user_id):36}  "
            f"{drift.counter:7}  {drift.occupying:9}  {action}"
        )
    return "\n".join(lines)
