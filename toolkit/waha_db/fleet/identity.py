"""What each WAHA server is: the version, engine and tier it last reported, and what that implies.

`servers test` and `monitor` ask `GET {api_url}/api/server/version` anyway; the
answer is kept in public.waha_server_health (revision 0009) through
`public.report_waha_server_version`, so `servers list` can show it without asking
the server again. The worker id the server gave at `GET /api/server/status`
(waha_db.fleet.checkup) is kept with it, through `public.report_waha_server_worker`
(revision 0012), in the same statement.

The one thing it reveals about the configuration is how many sessions the server
runs, and that depends on the version before the tier:
- before WAHA 2026.6.1, WAHA Core runs a single session, named `default` (it
  refuses any other name with HTTP 422, as a recorded 2024.10.8 Core server does),
  and only WAHA Plus runs many;
- since 2026.6.1 every Plus feature ships in the Core image, unlimited sessions
  included: the tier (still reported, `CORE` for the free image) says nothing
  about capacity any more.
A Core server older than 2026.6.1 whose max_sessions is above 1 keeps being offered
by get_available_waha_server and allocate_waha_session for sessions it cannot run:
`capacity_warning` says so, with the fix. When the version does not read as WAHA
writes it (YYYY.M.BUILD), the warning says what is known instead of guessing.

The pure functions (`parse_waha_version`, `session_limit`, `is_single_session`,
`accepts_session_name`) take plain values and are what the probe, the monitor and
the live reconcile ask.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from waha_db.fleet.probe import Probe, describe_waha

if TYPE_CHECKING:
    from waha_db.fleet.servers import Server

CORE_TIER = "CORE"
PLUS_TIER = "PLUS"
# The only session name a single-session Core server accepts.
DEFAULT_SESSION = "default"


@dataclass(frozen=True, order=True)
class WahaVersion:
    """A WAHA release as WAHA numbers it: YYYY.M.BUILD (2024.10.8, 2026.9.1), ordered as released."""

    year: int
    month: int
    build: int

    def __str__(self) -> str:
        return f"{self.year}.{self.month}.{self.build}"


# Since this release the Core image ships every Plus feature, unlimited sessions included
# (WAHA's changelog: "2026.6.1 - WAHA Plus features are now part of the WAHA Core image").
TIERS_MERGED = WahaVersion(2026, 6, 1)

# WAHA writes `2024.10.8` (GET /api/server/version, the User-Agent `WAHA/2024.10.8` of its
# webhooks); its docs write the form as `YYYY.MM.BUILD`, so a zero-padded month is read too.
# A leading `v` (a git tag) and a suffix after `-` or `+` (a local or pre-release build:
# `2026.9.1-dev`) are allowed; the suffix does not change the comparison. Anything else
# (`latest`, `YYYY.MM.BUILD` itself, the 0.0.x releases before calendar versions) is not
# a version this module can compare.
_VERSION = re.compile(r"[vV]?(?P<year>\d{4})\.(?P<month>\d{1,2})\.(?P<build>\d{1,6})(?:[-+][0-9A-Za-z.+-]*)?")


def parse_waha_version(text: str | None) -> WahaVersion | None:
    """`2024.10.8` -> WahaVersion(2024, 10, 8); None when the text is not a WAHA version (see _VERSION)."""
    found = _VERSION.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        return None
    version = WahaVersion(int(found["year"]), int(found["month"]), int(found["build"]))
    return version if 1 <= version.month <= 12 else None


class SessionLimit(enum.Enum):
    """How many sessions a WAHA server runs, as far as what it reported tells."""

    SINGLE = "single"  # one session, named `default`: WAHA Core before 2026.6.1
    MANY = "many"  # WAHA Plus, or any tier since 2026.6.1
    UNKNOWN = "unknown"  # no answer yet, or an answer that does not tell (see session_limit)


@dataclass(frozen=True)
class WahaIdentity:
    """What a WAHA server last said it is, and when; `worker_id` the WAHA worker it last named (None: none)."""

    version: str
    engine: str | None
    tier: str | None
    identified_at: dt.datetime
    worker_id: str | None = None

    @property
    def is_core(self) -> bool:
        return (self.tier or "").upper() == CORE_TIER

    @property
    def release(self) -> WahaVersion | None:
        """The version as WAHA numbers it; None when it does not read as YYYY.M.BUILD."""
        return parse_waha_version(self.version)

    def describe(self) -> str:
        """`WAHA 2026.9.1 (GOWS, CORE)`, and `, worker w1` when it runs as a worker of a shared session store."""
        text = describe_waha(self.version, self.engine, self.tier)
        return text + (f", worker {self.worker_id}" if self.worker_id else "")

    def _said(self) -> tuple[str, str | None, str | None, str | None]:
        return (self.version, self.engine, self.tier, self.worker_id)

    def same_as(self, other: WahaIdentity | None) -> bool:
        """Whether `other` says the same (the time it was said aside)."""
        return other is not None and self._said() == other._said()

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "engine": self.engine,
            "tier": self.tier,
            "identified_at": self.identified_at.isoformat(),
            "worker_id": self.worker_id,
        }


_COLUMNS = "waha_version, waha_engine, waha_tier, identified_at, waha_worker_id"


def _identity(row: sa.Row[Any]) -> WahaIdentity | None:
    if row is None or row.waha_version is None:
        return None
    return WahaIdentity(
        version=row.waha_version,
        engine=row.waha_engine,
        tier=row.waha_tier,
        identified_at=row.identified_at,
        worker_id=row.waha_worker_id,
    )


# The version through report_waha_server_version (0009) and, where GET /api/server/status
# answered, the worker through report_waha_server_worker (0012), in one statement: the CASE
# calls the worker's function only for the servers whose worker is known, after the version's.
_VERSIONS_SQL = """
SELECT answer.server_id, health.waha_version, health.waha_engine, health.waha_tier, health.identified_at,
       CASE WHEN answer.worker_known
            THEN (public.report_waha_server_worker(answer.server_id, answer.worker_id)).waha_worker_id
            ELSE health.waha_worker_id END AS waha_worker_id
FROM ROWS FROM (pg_catalog.unnest(CAST(:ids AS uuid[])), pg_catalog.unnest(CAST(:versions AS text[])),
               pg_catalog.unnest(CAST(:engines AS text[])), pg_catalog.unnest(CAST(:tiers AS text[])),
               pg_catalog.unnest(CAST(:worker_known AS boolean[])), pg_catalog.unnest(CAST(:workers AS text[])))
     AS answer(server_id, version, engine, tier, worker_known, worker_id)
CROSS JOIN LATERAL public.report_waha_server_version(answer.server_id, answer.version, answer.engine, answer.tier) AS health
WHERE EXISTS (SELECT FROM public.waha_servers AS server WHERE server.id = answer.server_id)
"""


def record_identities(
    connection: sa.Connection, reachable: Sequence[tuple[Server, Probe]], *, batch: int = 500
) -> dict[uuid.UUID, WahaIdentity]:
    """What each server that answered is (version, engine, tier, and its worker when GET /api/server/status
    answered), `batch` per statement (sorted by id); a refused batch goes one by one.

    A server the database refuses (deleted meanwhile) is left out of the result. A
    server whose worker could not be read keeps the worker recorded before.
    """
    wanted = sorted(
        ((server.id, probe) for server, probe in reachable if probe.reachable), key=lambda item: str(item[0])
    )
    found: dict[uuid.UUID, WahaIdentity] = {}

    def report(items: Sequence[tuple[uuid.UUID, Probe]]) -> None:
        rows = connection.execute(
            sa.text(_VERSIONS_SQL),
            {
                "ids": [server_id for server_id, _ in items],
                "versions": [probe.version for _, probe in items],
                "engines": [probe.engine for _, probe in items],
                "tiers": [probe.tier for _, probe in items],
                "worker_known": [probe.worker_known for _, probe in items],
                "workers": [probe.worker_id for _, probe in items],
            },
        ).all()
        for row in rows:
            identity = _identity(row)
            if identity is not None:
                found[row.server_id] = identity

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
    identities = ((row.server_id, _identity(row)) for row in rows)
    return {server_id: identity for server_id, identity in identities if identity is not None}


def session_limit(identity: WahaIdentity | None) -> SessionLimit:
    """How many sessions the server runs, from what it reported (pure).

    - no answer yet: UNKNOWN;
    - version 2026.6.1 or later: MANY, whatever the tier says (Core ships Plus features since);
    - an older version: CORE is SINGLE, PLUS is MANY, any other tier (or none) UNKNOWN;
    - a version that does not parse: PLUS is still MANY (Plus always ran many sessions);
      CORE is UNKNOWN, since which side of 2026.6.1 it is on cannot be told.
    """
    if identity is None:
        return SessionLimit.UNKNOWN
    release = identity.release
    if release is not None and release >= TIERS_MERGED:
        return SessionLimit.MANY
    tier = (identity.tier or "").strip().upper()
    if tier == PLUS_TIER:
        return SessionLimit.MANY
    if tier == CORE_TIER and release is not None:
        return SessionLimit.SINGLE
    return SessionLimit.UNKNOWN


def is_single_session(identity: WahaIdentity | None) -> bool:
    """Whether the server is known to run a single session named `default` (WAHA Core before 2026.6.1)."""
    return session_limit(identity) is SessionLimit.SINGLE


def accepts_session_name(identity: WahaIdentity | None, name: str) -> bool:
    """False when the server is known to refuse the name (HTTP 422): a name other than `default` on a
    single-session Core server; True otherwise, including when what the server is remains unknown."""
    return name == DEFAULT_SESSION or not is_single_session(identity)


def capacity_warning(server: Server, identity: WahaIdentity | None) -> str | None:
    """The fix for a Core server that selection would send more sessions than it can run; None when fine.

    Only servers that said CORE are warned about, and only while max_sessions is above 1:
    a Core server older than 2026.6.1 gets the fix; a Core server whose version cannot be
    read gets what is known and how to find out; 2026.6.1 and later get nothing.
    """
    if identity is None or not identity.is_core or server.max_sessions <= 1:
        return None
    head = f"{server.nome} ({server.id})"
    limit = session_limit(identity)
    if limit is SessionLimit.SINGLE:
        return (
            f"{head} is WAHA CORE, which runs a single session (named 'default'), "
            f"but its max_sessions is {server.max_sessions}: selection would send it sessions it cannot run; "
            f"fix: waha-db servers update {server.id} --max-sessions 1 "
            f"(or upgrade it to WAHA {TIERS_MERGED} or later, whose Core runs many sessions, or run WAHA Plus there). "
            f"WAHA {identity.release} Core also refuses, with HTTP 422, any session not named 'default'."
        )
    if limit is SessionLimit.UNKNOWN:
        return (
            f"{head} is WAHA CORE, version {identity.version!r}, which does not read as WAHA's YYYY.M.BUILD: "
            f"before {TIERS_MERGED} WAHA Core runs a single session (named 'default', any other name refused "
            f"with HTTP 422), since {TIERS_MERGED} it runs many; its max_sessions is {server.max_sessions}, "
            f"so whether selection would send it sessions it cannot run is unknown; check the version it runs, "
            f"and if it is older than {TIERS_MERGED}: waha-db servers update {server.id} --max-sessions 1"
        )
    return None
