"""Server health in the database: which servers to probe, and recording what a probe found.

Outcomes go through `public.report_waha_server_success` /
`public.report_waha_server_failure` (revision 0007), which put a failing server
into a cooldown that `get_available_waha_server` and `allocate_waha_session`
rank after every healthy server. They are recorded in batches: one statement
calls the report function for up to `BATCH` servers (each call its own row of a
set), so a round over a thousand servers costs a handful of statements, not a
thousand round trips; a batch the database refuses (a server deleted meanwhile)
is recorded server by server, so one refusal loses no other outcome. Every
function takes an explicit SQLAlchemy connection; no transaction is open while a
server is asked. The probing itself is waha_db.fleet.probe, the loop
waha_db.fleet.monitor.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from waha_db.database import database_message
from waha_db.errors import UserError
from waha_db.fleet.asking import DEFAULT_BACKOFF_SECONDS, Target
from waha_db.fleet.checkup import check_many
from waha_db.fleet.identity import WahaIdentity, capacity_warning, record_identities
from waha_db.fleet.policy import NetworkPolicy, policy_from_environment
from waha_db.fleet.probe import DRAINED_PREFIX, Probe, describe_probe, display_api_url
from waha_db.fleet.rounds import DEFAULT_DEADLINE_SECONDS, fair_order
from waha_db.fleet.servers import Server, server_columns, server_from_row
from waha_db.fleet.transport import Limits, trusted_context

# Outcomes per statement: a few hundred uuids and reasons, well under any statement limit.
BATCH = 500
# What a drain means for selection, in the words of `servers test` and the monitor.
DRAINED_RANK = "no new sessions while WAHA shuts down (ranked after the healthy servers)"


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
        """Recorded as failing (or drained): selection ranks it after the healthy servers while it cools down."""
        return self.consecutive_failures > 0

    @property
    def drained(self) -> bool:
        """Its last report was a drain (WAHA shutting down), not a failure: see waha_db.fleet.checkup."""
        return self.failing and (self.last_error or "").startswith(DRAINED_PREFIX)

    @property
    def state(self) -> str:
        """`healthy`, `failing` or `drained`: what a round's summary and the monitor's lines count."""
        return "drained" if self.drained else "failing" if self.failing else "healthy"


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


_REPORT_SQL = """
SELECT outcome.server_id, health.consecutive_failures, health.cooldown_until, health.last_error,
       health.last_checked_at, health.last_success_at
FROM ROWS FROM (pg_catalog.unnest(CAST(:ids AS uuid[])), pg_catalog.unnest(CAST(:reasons AS text[])))
     AS outcome(server_id, reason)
CROSS JOIN LATERAL (
    SELECT * FROM public.report_waha_server_success(outcome.server_id) WHERE outcome.reason IS NULL
    UNION ALL
    SELECT * FROM public.report_waha_server_failure(outcome.server_id, outcome.reason) WHERE outcome.reason IS NOT NULL
) AS health
WHERE EXISTS (SELECT FROM public.waha_servers AS server WHERE server.id = outcome.server_id)
"""


@dataclass(frozen=True)
class Recorded:
    """What recording a round's outcomes gave: the health of each server recorded, the refusal of each that was not."""

    health: dict[uuid.UUID, Health]
    identities: dict[uuid.UUID, WahaIdentity]
    errors: dict[uuid.UUID, str]


def _report_batch(
    connection: sa.Connection, outcomes: Sequence[tuple[uuid.UUID, str | None]]
) -> dict[uuid.UUID, Health]:
    rows = connection.execute(
        sa.text(_REPORT_SQL),
        {"ids": [server_id for server_id, _ in outcomes], "reasons": [reason for _, reason in outcomes]},
    ).all()
    return {row.server_id: Health(*row) for row in rows}


def record_outcomes(connection: sa.Connection, outcomes: Sequence[tuple[Server, Probe]]) -> Recorded:
    """Record each probe's outcome (and what a reachable server is) through the report functions, in batches.

    The outcome is the probe's (`Probe.outcome`): a success, a failure with its reason,
    or a drain (WAHA shutting down), recorded as a failure whose reason starts with
    `drained:`, so selection ranks the server after the healthy ones while it cools down
    (no revision needed), and the reports tell it from a failure (`Health.drained`).

    `connection` must be in autocommit mode (`autocommit_connection`): each batch is
    one statement, its own transaction. Outcomes are sorted by server id, so two
    monitors at once lock health rows in the same order. A probe cut short by a
    stop (`interrupted`) is not recorded. A server deleted before its batch is left
    out; a batch the database refuses is recorded one server at a time, and a
    server it still refuses gets its error (others are unaffected). A lost
    connection raises.
    """
    wanted = sorted(
        ((server.id, probe.outcome) for server, probe in outcomes if not probe.interrupted),
        key=lambda outcome: str(outcome[0]),
    )
    health: dict[uuid.UUID, Health] = {}
    errors: dict[uuid.UUID, str] = {}
    for start in range(0, len(wanted), BATCH):
        batch = wanted[start : start + BATCH]
        try:
            health.update(_report_batch(connection, batch))
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            for outcome in batch:
                try:
                    health.update(_report_batch(connection, [outcome]))
                except sa.exc.DBAPIError as single:
                    if single.connection_invalidated:
                        raise
                    errors[outcome[0]] = database_message(single)
    for server_id, _ in wanted:
        if server_id not in health and server_id not in errors:
            errors[server_id] = "the server was deleted while it was being probed (or this role cannot see it)"
    reachable = [(server, probe) for server, probe in outcomes if probe.reachable and server.id in health]
    identities = record_identities(connection, reachable, batch=BATCH)
    return Recorded(health, identities, errors)


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


def target(server: Server) -> Target:
    """How a server is asked: its URL, API key, timeout and retries from its row (clamped to the database's bounds)."""
    return Target(server.api_url, server.api_key, server.timeout, server.retry_attempts)


@dataclass(frozen=True)
class RoundOptions:
    """How a round asks the servers: limits, the round's deadline, the network policy, back-off."""

    limits: Limits = Limits()
    deadline: float | None = DEFAULT_DEADLINE_SECONDS
    policy: NetworkPolicy | None = None
    backoff: float = DEFAULT_BACKOFF_SECONDS


def round_options(
    *,
    concurrency: int = Limits.concurrency,
    per_host: int = Limits.per_host,
    deadline: float | None = DEFAULT_DEADLINE_SECONDS,
) -> RoundOptions:
    """The options of a command's rounds, with the operator's network policy and CAs read (and checked) up front.

    WAHA_DB_PROBE_DENY or SSL_CERT_FILE / SSL_CERT_DIR that cannot be used are an
    error here, before anything is asked.
    """
    trusted_context()
    return RoundOptions(Limits(concurrency, per_host), deadline, policy_from_environment())


def probe_many(
    servers: Sequence[Server],
    *,
    options: RoundOptions | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[Probe]:
    """Check servers all at once within the round's limits and deadline, results in the same order.

    Each server's version, then its /health and worker id (waha_db.fleet.checkup).
    Servers are started one user at a time in turn (waha_db.fleet.rounds).
    """
    options = options or RoundOptions()
    return check_many(
        [target(server) for server in servers],
        backoff=options.backoff,
        limits=options.limits,
        policy=options.policy,
        deadline=options.deadline,
        stop=stop,
        order=fair_order(servers, lambda server: server.user_id),
        progress=progress,
    )


def test_servers(
    connection: sa.Connection,
    servers: Sequence[Server],
    *,
    options: RoundOptions | None = None,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    record: bool = True,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[Checked]:
    """`waha-db servers test`: probe the servers and record each outcome (and what a reachable server is).

    `connection` must be in autocommit mode (`autocommit_connection`); outcomes are
    recorded in batches (`record_outcomes`), after every probe is done.

    A server whose outcome cannot be recorded (deleted meanwhile, not visible to
    this role) keeps its probe and gets `record_error`; the others are unaffected.
    """
    probes = probe_many(servers, options=options or RoundOptions(backoff=backoff), progress=progress)
    if not record:
        return [Checked(server, probe, None) for server, probe in zip(servers, probes, strict=True)]
    recorded = record_outcomes(connection, list(zip(servers, probes, strict=True)))
    return [
        Checked(
            server,
            probe,
            recorded.health.get(server.id),
            record_error=recorded.errors.get(server.id),
            identity=recorded.identities.get(server.id),
        )
        for server, probe in zip(servers, probes, strict=True)
    ]


# pytest would collect test_servers as a test through `from waha_db.fleet.health import *`-style imports.
test_servers.__dict__["__test__"] = False


# --------------------------------------------------------------------------
# Plain-words rendering, shared by the CLI and the monitor
# --------------------------------------------------------------------------


def describe_health(health: Health | None, now: dt.datetime | None = None) -> str:
    """`healthy`, `failing (3 in a row), cooling down 120 s, until 12:00:30 UTC`, or `drained (...), cooling down ...`."""
    if health is None:
        return "not recorded"
    if not health.failing:
        return "healthy"
    if health.drained:
        text = "drained: " + DRAINED_RANK
    else:
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


def checked_as_json(item: Checked) -> dict[str, Any]:
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
        "health_check": item.probe.health,
        "drained": item.probe.drained,
        "worker_id": item.probe.worker_id if item.probe.worker_known else None,
        "worker_known": item.probe.worker_known,
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
