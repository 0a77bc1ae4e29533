"""Why get_available_waha_server picks the server it picks: `waha-db servers best`.

The pick is the database's; `explain_pick` only puts its reasons into words, from
the user's servers and the health recorded for them (pure, tested without a server).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import sqlalchemy as sa

from waha_db.fleet import health
from waha_db.fleet.servers import SERVER_COLUMNS, Server, list_servers, server_from_row


@dataclass
class Pick:
    """The server get_available_waha_server chose, and why."""

    server: Server | None
    reasons: list[str] = field(default_factory=list)
    not_candidates: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        """`servers best`: the pick and its reasons, then the servers that were not candidates; empty without a pick."""
        if self.server is None:
            return []
        return [
            f"best: {self.server.line()}",
            *(f"  - {reason}" for reason in self.reasons),
            *(f"  not a candidate: {line}" for line in self.not_candidates),
        ]

    def no_server(self, user_id: uuid.UUID) -> str:
        """Why there is no pick, for the error line."""
        reasons = f" ({'; '.join(self.not_candidates)})" if self.not_candidates else " (the user has no servers)"
        return f"no server of user {user_id} has free capacity{reasons}"

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.server.as_json() if self.server else None,
            "reasons": self.reasons,
            "not_candidates": self.not_candidates,
        }


def best_server(connection: sa.Connection, user_id: uuid.UUID, excluded: Sequence[uuid.UUID] = ()) -> Pick:
    """The database's pick (get_available_waha_server), explained from the user's servers and their health."""
    rows = connection.execute(
        sa.text(f"SELECT {SERVER_COLUMNS} FROM public.get_available_waha_server(:user_id, CAST(:excluded AS uuid[]))"),
        {"user_id": user_id, "excluded": list(excluded)},
    )
    chosen = [server_from_row(row) for row in rows]
    now = connection.execute(sa.text("SELECT now()")).scalar_one()
    cooling = {
        server_id: record
        for server_id, record in health.user_health(connection, user_id).items()
        if health.is_cooling_down(record, now)
    }
    return explain_pick(chosen[0] if chosen else None, list_servers(connection, user_id), list(excluded), cooling)


def _percent(server: Server) -> str:
    return f"{server.sessions_ativas}/{server.max_sessions} ({float(server.load):.0%})"


def explain_pick(
    pick: Server | None,
    servers: list[Server],
    excluded: list[uuid.UUID],
    cooling: dict[uuid.UUID, health.Health] | None = None,
) -> Pick:
    """Why `pick` won among `servers` by the selection rules: servers cooling down after
    failures rank after every healthy one (the earliest cooldown end first); among the
    rest, priority, then load, then free slots, then age.

    Pure: the pick itself is the database's; this only puts its reasons into words.
    `cooling` maps the id of each server cooling down now to its health record.
    """
    cooling = cooling or {}
    not_candidates = []
    candidates = []
    for server in servers:
        if server.id in excluded:
            not_candidates.append(f"{server.nome}: excluded")
        elif not server.ativo:
            not_candidates.append(f"{server.nome}: disabled")
        elif not server.has_capacity:
            not_candidates.append(f"{server.nome}: full, {server.sessions_ativas}/{server.max_sessions} sessions")
        else:
            candidates.append(server)
    if pick is None:
        return Pick(None, [], not_candidates)
    rivals = [server for server in candidates if server.id != pick.id]
    reasons = [f"priority {pick.prioridade}, load {_percent(pick)}"]
    if pick.id in cooling:
        reasons.append(f"cooling down ({_cooldown(cooling[pick.id])}), but every other candidate is too")
    if not rivals:
        reasons.append("the only active server with free capacity")

    def rank(server: Server) -> tuple[bool, dt.datetime | None, int, Fraction, int, dt.datetime]:
        record = cooling.get(server.id)
        return (
            record is not None,
            record.cooldown_until if record else None,
            -server.prioridade,
            server.load,
            server.sessions_ativas - server.max_sessions,
            server.created_at,
        )

    for rival in sorted(rivals, key=rank):
        if rival.id in cooling and pick.id not in cooling:
            why = f"healthy, while {rival.nome} is cooling down ({_cooldown(cooling[rival.id])})"
        elif rival.id in cooling:
            why = f"its cooldown ends before that of {rival.nome}"
        elif pick.prioridade != rival.prioridade:
            why = f"higher priority than {rival.nome} ({pick.prioridade} > {rival.prioridade})"
        elif pick.load != rival.load:
            why = f"same priority as {rival.nome}, lower load ({_percent(pick)} < {_percent(rival)})"
        elif pick.max_sessions - pick.sessions_ativas != rival.max_sessions - rival.sessions_ativas:
            why = f"same priority and load as {rival.nome}, more free slots"
        else:
            why = f"same priority, load and free slots as {rival.nome}, added earlier"
        reasons.append(why)
    return Pick(pick, reasons, not_candidates)


def _cooldown(record: health.Health) -> str:
    assert record.cooldown_until is not None, "a server cooling down has a cooldown end"
    until = record.cooldown_until.strftime("%H:%M:%S %Z").strip()
    if record.drained:
        return f"{record.last_error}, until {until}"
    error = f": {record.last_error}" if record.last_error else ""
    return f"{record.consecutive_failures} failure(s) in a row{error}, until {until}"
