"""`servers list` for a user with many servers: counts by state instead of a thousand cards.

Above `SUMMARY_ABOVE` servers the screen of cards stops being readable; the
summary says how many servers are active or disabled, healthy, failing (and
cooling down) or never checked, how full they are, and names the first failing
ones with their reason. `servers list --all` still prints every card, and `--json`
every server.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from waha_db.fleet.health import Health, recorded_health
from waha_db.fleet.identity import TIERS_MERGED, WahaIdentity, capacity_warning
from waha_db.fleet.servers import Listing, Server

SUMMARY_ABOVE = 20
FAILING_NAMED = 10


@dataclass(frozen=True)
class FleetSummary:
    servers: int
    active: int
    healthy: int
    failing: int
    cooling_down: int
    drained: int
    never_checked: int
    full: int
    sessions: int
    capacity: int
    core_warnings: int
    failing_examples: tuple[str, ...]

    @property
    def disabled(self) -> int:
        return self.servers - self.active


def summarize(
    servers: Sequence[Server],
    health: Mapping[uuid.UUID, Health],
    identities: Mapping[uuid.UUID, WahaIdentity],
    now: dt.datetime,
) -> FleetSummary:
    """Counts by state of a user's servers (`health`: their recorded health by server id)."""
    failing = [server for server in servers if server.id in health and health[server.id].failing]
    cooling = [server for server in failing if _cools_down(health[server.id], now)]
    active = [server for server in servers if server.ativo]
    return FleetSummary(
        servers=len(servers),
        active=len(active),
        healthy=sum(1 for server in servers if server.id in health and not health[server.id].failing),
        failing=len(failing),
        cooling_down=len(cooling),
        drained=sum(1 for server in failing if health[server.id].drained),
        never_checked=sum(1 for server in servers if server.id not in health),
        full=sum(1 for server in active if server.sessions_ativas >= server.max_sessions),
        sessions=sum(server.sessions_ativas for server in servers),
        capacity=sum(server.max_sessions for server in active),
        core_warnings=sum(1 for server in servers if capacity_warning(server, identities.get(server.id))),
        failing_examples=tuple(
            f"{server.nome} ({health[server.id].last_error or 'failing'})" for server in failing[:FAILING_NAMED]
        ),
    )


def read_summary(connection: sa.Connection, listing: Listing) -> FleetSummary:
    """The summary of a user's listing: the servers' recorded health, and cooldowns as of the database's now."""
    now = connection.execute(sa.text("SELECT pg_catalog.now()")).scalar_one()
    recorded = recorded_health(connection, [server.id for server in listing.servers])
    return summarize(listing.servers, recorded, listing.identities, now)


def _cools_down(health: Health, now: dt.datetime) -> bool:
    return health.cooldown_until is not None and health.cooldown_until > now


def render_summary(user_id: uuid.UUID, summary: FleetSummary) -> str:
    """The summary as `servers list` prints it for a user with many servers."""
    lines = [
        f"user {user_id}: {summary.servers} WAHA servers (a summary; --all prints every server, --json every field)",
        f"  active {summary.active}, disabled {summary.disabled}",
        f"  health: {summary.healthy} healthy, {summary.failing} failing ({summary.cooling_down} cooling down"
        + (f", {summary.drained} of them drained: WAHA shutting down" if summary.drained else "")
        + f"), {summary.never_checked} never checked",
        f"  sessions: {summary.sessions} in {summary.capacity} slots of the active servers; {summary.full} full",
    ]
    if summary.failing_examples:
        more = summary.failing - len(summary.failing_examples)
        lines.append("  failing: " + ", ".join(summary.failing_examples) + (f", and {more} more" if more else ""))
    if summary.core_warnings:
        lines.append(
            f"  warning: {summary.core_warnings} WAHA CORE server(s) older than {TIERS_MERGED} (or of an unknown version) "
            "with max_sessions above 1 (`servers list --all` gives each fix)"
        )
    return "\n".join(lines)
