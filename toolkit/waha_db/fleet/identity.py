"""What each WAHA server is: the version, engine and tier it last reported, and what that implies.

`servers test` and `monitor` ask `GET {api_url}/api/server/version` anyway; the
answer is kept in public.waha_server_health (revision 0009) through
`public.report_waha_server_version`, so `servers list` can show it without asking
the server again.

The one thing it reveals about the configuration: WAHA Core runs a single session
(named `default`), only WAHA Plus runs many. A Core server whose max_sessions is
above 1 keeps being offered by get_available_waha_server and allocate_waha_session
for sessions it cannot run.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from waha_db.fleet.probe import Probe, describe_waha

if TYPE_CHECKING:
    from waha_db.fleet.servers import Server

CORE_TIER = "CORE"


@dataclass(frozen=True)
class WahaIdentity:
    """What a WAHA server last said it is, and when."""

    version: str
    engine: str | None
    tier: str | None
    identified_at: dt.datetime

    @property
    def is_core(self) -> bool:
        return (self.tier or "").upper() == CORE_TIER

    def describe(self) -> str:
        return describe_waha(self.version, self.engine, self.tier)

    def same_as(self, other: WahaIdentity | None) -> bool:
        """Whether `other` says the same (the time it was said aside)."""
        return other is not None and (self.version, self.engine, self.tier) == (other.version, other.engine, other.tier)

    def as_json(self) -> dict:
        return {
            "version": self.version,
            "engine": self.engine,
            "tier": self.tier,
            "identified_at": self.identified_at.isoformat(),
        }


_COLUMNS = "waha_version, waha_engine, waha_tier, identified_at"


def _identity(row) -> WahaIdentity | None:
    return None if row is None or row.waha_version is None else WahaIdentity(*row[-4:])


def record_identity(connection: sa.Connection, server_id: uuid.UUID, probe: Probe) -> WahaIdentity | None:
    """Keep what a successful probe learnt (version, engine, tier); None, and nothing written, for a failed one.

    A failed probe says nothing about what the server is: the last known answer stays.
    The caller owns the transaction (the monitor and the CLI use autocommit).
    """
    if not probe.reachable:
        return None
    row = connection.execute(
        sa.text(f"SELECT {_COLUMNS} FROM public.report_waha_server_version(:server_id, :version, :engine, :tier)"),
        {"server_id": server_id, "version": probe.version, "engine": probe.engine, "tier": probe.tier},
    ).one()
    return _identity(row)


_VERSIONS_SQL = f"""
SELECT answer.server_id, health.{_COLUMNS.replace(", ", ", health.")}
FROM ROWS FROM (pg_catalog.unnest(CAST(:ids AS uuid[])), pg_catalog.unnest(CAST(:versions AS text[])),
               pg_catalog.unnest(CAST(:engines AS text[])), pg_catalog.unnest(CAST(:tiers AS text[])))
     AS answer(server_id, version, engine, tier)
CROSS JOIN LATERAL public.report_waha_server_version(answer.server_id, answer.version, answer.engine, answer.tier) AS health
WHERE EXISTS (SELECT FROM public.waha_servers AS server WHERE server.id = answer.server_id)
"""


def record_identities(
    connection: sa.Connection, reachable: Sequence[tuple[Server, Probe]], *, batch: int = 500
) -> dict[uuid.UUID, WahaIdentity]:
    """record_identity for many servers, `batch` per statement (sorted by id); a refused batch goes one by one.

    A server the database refuses (deleted meanwhile) is left out of the result.
    """
    wanted = sorted(
        ((server.id, probe) for server, probe in reachable if probe.reachable), key=lambda item: str(item[0])
    )
    found: dict[uuid.UUID, WahaIdentity] = {}

    def report(items) -> None:
        rows = connection.execute(
            sa.text(_VERSIONS_SQL),
            {
                "ids": [server_id for server_id, _ in items],
                "versions": [probe.version for _, probe in items],
                "engines": [probe.engine for _, probe in items],
                "tiers": [probe.tier for _, probe in items],
            },
        ).all()
        found.update((row.server_id, _identity(row)) for row in rows)

    for start in range(0, len(wanted), batch):
        items = wanted[start : start + batch]
        try:
            report(items)
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            for item in items:
                try:
                    report([item])
                except sa.exc.DBAPIError as single:
                    if single.connection_invalidated:
                        raise
    return found


def recorded_identities(connection: sa.Connection, server_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, WahaIdentity]:
    """What each of the given servers last reported, by server id (servers never identified are left out)."""
    rows = connection.execute(
        sa.text(
            f"SELECT server_id, {_COLUMNS} FROM public.waha_server_health "
            "WHERE server_id = ANY (:ids) AND waha_version IS NOT NULL"
        ),
        {"ids": list(server_ids)},
    ).all()
    return {row.server_id: _identity(row) for row in rows}


def capacity_warning(server: Server, identity: WahaIdentity | None) -> str | None:
    """The fix for a Core server that selection would send more sessions than it can run; None when fine."""
    if identity is None or not identity.is_core or server.max_sessions <= 1:
        return None
    return (
        f"{server.nome} ({server.id}) is WAHA {identity.tier}, which runs a single session (named 'default'), "
        f"but its max_sessions is {server.max_sessions}: selection would send it sessions it cannot run; "
        f"fix: waha-db servers update {server.id} --max-sessions 1 (or run WAHA Plus there)"
    )
