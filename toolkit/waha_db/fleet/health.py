"""Server health in the database: which servers to probe, and recording what a probe found.

Outcomes go through `public.report_waha_server_success` /
`public.report_waha_server_failure` (revision 0007), which put a failing server
into a cooldown that `get_available_waha_server` and `allocate_waha_session`
rank after every healthy server. Every function takes an explicit SQLAlchemy
connection; the probing itself is waha_db.fleet.probe, the loop waha_db.fleet.monitor.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa

from waha_db.database import database_message
from waha_db.errors import UserError
from waha_db.fleet.identity import WahaIdentity, capacity_warning, record_identity
from waha_db.fleet.probe import DEFAULT_BACKOFF_SECONDS, Probe, describe_probe, display_api_url, probe_server
from waha_db.fleet.servers import Server, server_columns, server_from_row

T = TypeVar("T")


@dataclass(frozen=True)
class Health:
    """A row of public.waha_server_health after a report."""

    server_id: uuid.UUID
    consecutive_failures: int
    cooldown_until: dt.datetime | None
    last_error: str | None
    last_checked_at: dt.datetime | None
    last_success_at: dt.datetime | None

    @property
    def failing(self) -> bool:
        return self.consecutive_failures > 0


@dataclass(frozen=True)
class Checked:
    """One server, what the probe found, and the health and identity recorded for it (None if not recorded)."""

    server: Server
    probe: Probe
    health: Health | None
    record_error: str | None = None
    identity: WahaIdentity | None = None

    @property
    def warning(self) -> str | None:
        """What the server's answer says is wrong with its configuration (a Core server with max_sessions > 1)."""
        return capacity_warning(self.server, self.identity)


def autocommit_connection(engine: sa.Engine) -> sa.Connection:
    """A connection where every statement commits on its own, as the reports want."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


class HealthError(UserError):
    """A health command cannot do what was asked (unknown server, no database...)."""


_SERVERS_SQL = f"SELECT {server_columns('server')} FROM public.waha_servers AS server"
_SERVERS_ORDER = " ORDER BY server.user_id, server.prioridade DESC, server.nome, server.id"


def load_servers(
    connection: sa.Connection,
    *,
    server_ids: Sequence[uuid.UUID | str] = (),
    user_id: uuid.UUID | str | None = None,
    every_active: bool = False,
) -> list[Server]:
    """The servers to probe: the given ids (active or not: "Testar Conexão" on the
    form works before a server is enabled), the active servers of one user, or every
    active server of every user (the monitor). Unknown ids are an error naming them."""
    if server_ids:
        wanted = [uuid.UUID(str(value)) for value in server_ids]
        rows = connection.execute(
            sa.text(_SERVERS_SQL + " WHERE server.id = ANY(:ids)" + _SERVERS_ORDER), {"ids": wanted}
        ).all()
        found = {row.id for row in rows}
        missing = [str(value) for value in wanted if value not in found]
        if missing:
            raise HealthError(
                f"no WAHA server with id {', '.join(missing)} (or not visible to this database role); "
                "list them with `waha-db servers list --user UUID`"
            )
        return [server_from_row(row) for row in rows]
    if user_id is not None:
        rows = connection.execute(
            sa.text(_SERVERS_SQL + " WHERE server.user_id = :user_id AND server.ativo" + _SERVERS_ORDER),
            {"user_id": uuid.UUID(str(user_id))},
        ).all()
        return [server_from_row(row) for row in rows]
    if every_active:
        rows = connection.execute(sa.text(_SERVERS_SQL + " WHERE server.ativo" + _SERVERS_ORDER)).all()
        return [server_from_row(row) for row in rows]
    raise HealthError("say which servers to test: a server id, or --user UUID for all of a user's active servers")


_HEALTH_COLUMNS = "server_id, consecutive_failures, cooldown_until, last_error, last_checked_at, last_success_at"


def record_probe(connection: sa.Connection, server_id: uuid.UUID, probe: Probe) -> Health:
    """Record a probe's outcome through the database's report functions; the health after it.

    The caller owns the transaction (the monitor and the CLI use autocommit).
    """
    if probe.reachable:
        row = connection.execute(
            sa.text(f"SELECT {_HEALTH_COLUMNS} FROM public.report_waha_server_success(:server_id)"),
            {"server_id": server_id},
        ).one()
    else:
        row = connection.execute(
            sa.text(f"SELECT {_HEALTH_COLUMNS} FROM public.report_waha_server_failure(:server_id, :reason)"),
            {"server_id": server_id, "reason": probe.error},
        ).one()
    return Health(*row)


def user_health(connection: sa.Connection, user_id: uuid.UUID | str) -> dict[uuid.UUID, Health]:
    """The recorded health of each of a user's servers that was ever reported on, by server id.

    For explanations of the selection (`servers best`): a server whose
    `cooldown_until` is still ahead ranks after every healthy one.
    """
    rows = connection.execute(
        sa.text(f"SELECT {_HEALTH_COLUMNS} FROM public.waha_server_health WHERE user_id = :user_id"),
        {"user_id": uuid.UUID(str(user_id))},
    ).all()
    return {row.server_id: Health(*row) for row in rows}


def recorded_health(connection: sa.Connection, server_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Health]:
    """The recorded health of the given servers that were ever reported on, by server id."""
    rows = connection.execute(
        sa.text(f"SELECT {_HEALTH_COLUMNS} FROM public.waha_server_health WHERE server_id = ANY (:ids)"),
        {"ids": list(server_ids)},
    ).all()
    return {row.server_id: Health(*row) for row in rows}


def is_cooling_down(health: Health | None, now: dt.datetime) -> bool:
    """Whether selection ranks the server after the healthy ones at `now` (the database's rule)."""
    return health is not None and health.cooldown_until is not None and health.cooldown_until > now


def ask_each(servers: Sequence[Server], ask: Callable[[Server], T], *, concurrency: int = 8) -> list[T]:
    """`ask(server)` for every server, at most `concurrency` at once; the answers in the servers' order."""
    if not servers:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(servers))), thread_name_prefix="waha-ask") as pool:
        return list(pool.map(ask, servers))


def asking(server: Server, *, backoff: float = DEFAULT_BACKOFF_SECONDS, stop: threading.Event | None = None) -> dict:
    """How a server is asked (probe.get_json's options): its API key, timeout and retries, from its row."""
    return {
        "api_key": server.api_key,
        "timeout": server.timeout,
        "retry_attempts": server.retry_attempts,
        "backoff": backoff,
        "stop": stop,
    }


def probe_many(
    servers: Sequence[Server],
    *,
    concurrency: int = 8,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    stop: threading.Event | None = None,
) -> list[Probe]:
    """Probe servers in parallel (at most `concurrency` at once), results in the same order."""
    return ask_each(
        servers,
        lambda server: probe_server(server.api_url, **asking(server, backoff=backoff, stop=stop)),
        concurrency=concurrency,
    )


def test_servers(
    connection: sa.Connection,
    servers: Sequence[Server],
    *,
    concurrency: int = 8,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    record: bool = True,
) -> list[Checked]:
    """`waha-db servers test`: probe the servers and record each outcome (and what a reachable server is).

    `connection` must be in autocommit mode (`autocommit_connection`): each report
    is its own transaction, so one refused report does not undo the others.

    A server whose outcome cannot be recorded (deleted meanwhile, not visible to
    this role) keeps its probe and gets `record_error`; the others are unaffected.
    """
    probes = probe_many(servers, concurrency=concurrency, backoff=backoff)
    checked = []
    for server, probe in zip(servers, probes, strict=True):
        if not record:
            checked.append(Checked(server, probe, None))
            continue
        try:
            health = record_probe(connection, server.id, probe)
            identity = record_identity(connection, server.id, probe)
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            checked.append(Checked(server, probe, None, record_error=database_message(exc)))
        else:
            checked.append(Checked(server, probe, health, identity=identity))
    return checked


# pytest would collect test_servers as a test through `from waha_db.fleet.health import *`-style imports.
test_servers.__test__ = False


# --------------------------------------------------------------------------
# Plain-words rendering, shared by the CLI and the monitor
# --------------------------------------------------------------------------


def describe_health(health: Health | None, now: dt.datetime | None = None) -> str:
    """`healthy`, or `failing (3 in a row), cooling down 120 s, until 12:00:30 UTC`."""
    if health is None:
        return "not recorded"
    if not health.failing:
        return "healthy"
    text = f"failing ({health.consecutive_failures} in a row)"
    if health.cooldown_until is not None:
        now = now or dt.datetime.now(dt.timezone.utc)
        left = max(0, round((health.cooldown_until - now).total_seconds()))
        until = health.cooldown_until.astimezone(dt.timezone.utc).strftime("%H:%M:%S UTC")
        text += f", cooling down {left} s, until {until}"
    return text


def describe_checked(item: Checked) -> list[str]:
    """`servers test`: the server and what the probe found, then what was recorded, and the warning if any."""
    recorded = (
        f"  not recorded: {item.record_error}" if item.record_error else f"  recorded: {describe_health(item.health)}"
    )
    warning = [f"  warning: {item.warning}"] if item.warning else []
    return [
        f"{item.server.nome} ({display_api_url(item.server.api_url)}): {describe_probe(item.probe)}",
        recorded,
        *warning,
    ]


def checked_as_json(item: Checked) -> dict:
    """One `servers test --json` entry (never the api_key)."""
    health = item.health
    return {
        "server_id": str(item.server.id),
        "user_id": str(item.server.user_id),
        "nome": item.server.nome,
        "api_url": display_api_url(item.server.api_url),
        "reachable": item.probe.reachable,
        "latency_ms": None if item.probe.latency_ms is None else round(item.probe.latency_ms, 1),
        "version": item.probe.version,
        "engine": item.probe.engine,
        "tier": item.probe.tier,
        "error": item.probe.error,
        "attempts": item.probe.attempts,
        "recorded": health is not None,
        "record_error": item.record_error,
        "warning": item.warning,
        "health": None
        if health is None
        else {
            "consecutive_failures": health.consecutive_failures,
            "cooldown_until": None if health.cooldown_until is None else health.cooldown_until.isoformat(),
            "last_error": health.last_error,
            "last_checked_at": None if health.last_checked_at is None else health.last_checked_at.isoformat(),
            "last_success_at": None if health.last_success_at is None else health.last_success_at.isoformat(),
        },
    }
