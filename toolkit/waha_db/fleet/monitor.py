"""`waha-db monitor`: every active server of every user probed on a schedule, outcomes recorded.

Takes an engine rather than a connection because it reconnects on its own when
the database goes away; one server's failure never stops the others. A round
probes every server at once (waha_db.fleet.rounds): it lasts about the slowest
server's budget, at most the round's deadline, and then its outcomes are
recorded in a few statements on the monitor's one connection (autocommit: no
transaction is open while servers are asked). A stop (SIGTERM, Ctrl-C) cancels
the probes in flight; what had finished is recorded, the rest is not.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import sqlalchemy as sa

from waha_db.database import database_message
from waha_db.errors import UserError
from waha_db.fleet.asking import DEFAULT_BACKOFF_SECONDS
from waha_db.fleet.health import (
    Health,
    RoundOptions,
    autocommit_connection,
    describe_health,
    load_servers,
    probe_many,
    record_outcomes,
    recorded_health,
)
from waha_db.fleet.identity import WahaIdentity, capacity_warning, recorded_identities
from waha_db.fleet.probe import Probe, describe_probe, display_api_url
from waha_db.fleet.servers import Server
from waha_db.fleet.workers import shared_workers


class MonitorError(UserError):
    """The monitor cannot run (e.g. `--once` and the database is unreachable)."""


@dataclass(frozen=True)
class RoundSummary:
    """One round: servers probed (recorded), how many are healthy and failing after it, and how long it took."""

    probed: int
    healthy: int
    failing: int
    seconds: float
    not_recorded: int = 0
    stopped: bool = False
    drained: int = 0

    def line(self) -> str:
        """`2026-12-06T19:00:00Z round: 1000 servers probed, 850 healthy, 150 failing, 7.9 s` (and `2 drained`)."""
        drained = f", {self.drained} drained" if self.drained else ""
        text = (
            f"{_stamp()} round: {self.probed} servers probed, {self.healthy} healthy, {self.failing} failing"
            f"{drained}, {self.seconds:.1f} s"
        )
        if self.not_recorded:
            text += f", {self.not_recorded} not recorded"
        return text + (" (stopped: probes in flight cancelled, not recorded)" if self.stopped else "")


@dataclass
class MonitorStats:
    """What a monitor run did, for its caller and tests."""

    cycles: int = 0
    probes: int = 0
    state_changes: int = 0
    reconnects: int = 0
    identity_changes: int = 0


def _stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def monitor(
    engine: sa.Engine,
    *,
    interval: float = 60,
    once: bool = False,
    options: RoundOptions | None = None,
    stop: threading.Event | None = None,
    emit: Callable[[str], None] = print,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    reconnect_delay: float = 1.0,
    max_reconnect_delay: float = 30.0,
    on_round: Callable[[RoundSummary], None] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> MonitorStats:
    """`waha-db monitor`: probe every active server of every user, every `interval` seconds.

    Runs as the role of the engine's URL (the admin or service_role: it must see
    every server). Prints one line per state change (healthy -> failing,
    failing -> healthy), one when a server reports another version, engine or
    tier than recorded (and a warning when a Core server has max_sessions > 1),
    plus a line when the database connection is lost and when it is back. One
    server's failure never stops the others; a lost database connection is retried
    with backoff (`reconnect_delay` doubling to `max_reconnect_delay`) until `stop`
    is set. With `once`, one cycle, and a database that cannot be reached is a
    MonitorError. `options` bound each round (limits, deadline, network policy);
    `on_round` sees each round's summary, `progress` each answer as it comes.
    """
    stop = stop or threading.Event()
    options = options or RoundOptions(backoff=backoff)
    stats = MonitorStats()
    connection: sa.Connection | None = None
    delay = reconnect_delay
    lost = False
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if connection is None:
                    connection = autocommit_connection(engine)
                    if lost:
                        emit(f"{_stamp()} database connection restored")
                        stats.reconnects += 1
                        lost = False
                summary = _monitor_cycle(connection, options, stop, emit, stats, progress)
                if on_round is not None:
                    on_round(summary)
                delay = reconnect_delay
            except Exception as exc:
                if not _is_connection_lost(exc):
                    raise
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        pass
                    connection = None
                reason = database_message(exc) if isinstance(exc, sa.exc.DBAPIError) else str(exc)
                if once:
                    raise MonitorError(f"the database cannot be reached: {reason}") from None
                if not lost:
                    emit(f"{_stamp()} database connection lost ({reason}); reconnecting")
                    lost = True
                stop.wait(delay)
                delay = min(delay * 2, max_reconnect_delay)
                continue
            if once:
                break
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if connection is not None:
            connection.close()
    return stats


def _monitor_cycle(
    connection: sa.Connection,
    options: RoundOptions,
    stop: threading.Event,
    emit: Callable[[str], None],
    stats: MonitorStats,
    progress: Callable[[int, int, int], None] | None,
) -> RoundSummary:
    started = time.monotonic()
    servers = load_servers(connection, every_active=True)
    server_ids = [server.id for server in servers]
    state_before = {server_id: health.state for server_id, health in recorded_health(connection, server_ids).items()}
    identities_before = recorded_identities(connection, server_ids)
    probes = probe_many(servers, options=options, stop=stop, progress=progress)
    recorded = record_outcomes(connection, list(zip(servers, probes, strict=True)))
    for server, probe in zip(servers, probes, strict=True):
        if server.id in recorded.errors:
            emit(f"{_stamp()} {server.nome} ({server.id}): outcome not recorded: {recorded.errors[server.id]}")
            continue
        health = recorded.health.get(server.id)
        if health is None:
            continue  # cut short by a stop: says nothing of the server
        stats.probes += 1
        before = state_before.get(server.id, "healthy")
        if health.state != before:
            stats.state_changes += 1
            emit(state_change_line(server, probe, health, before))
        identity = recorded.identities.get(server.id)
        if identity is not None and not identity.same_as(identities_before.get(server.id)):
            stats.identity_changes += 1
            emit(identity_line(server, identity, identities_before.get(server.id)))
            warning = capacity_warning(server, identity)
            if warning:
                emit(f"{_stamp()} warning: {warning}")
    for warning in new_shared_workers(servers, identities_before, recorded.identities):
        emit(f"{_stamp()} warning: {warning}")
    stats.cycles += 1
    states = [health.state for health in recorded.health.values()]
    return RoundSummary(
        probed=len(recorded.health),
        healthy=states.count("healthy"),
        failing=states.count("failing"),
        drained=states.count("drained"),
        seconds=time.monotonic() - started,
        not_recorded=len(recorded.errors),
        stopped=any(probe.interrupted for probe in probes),
    )


def new_shared_workers(
    servers: list[Server], before: dict[uuid.UUID, WahaIdentity], now: dict[uuid.UUID, WahaIdentity]
) -> list[str]:
    """Warnings for active servers of one user that report one worker id, said once: when it starts (pure).

    A server that did not answer this round keeps the worker it last reported.
    """

    def workers(identities: dict[uuid.UUID, WahaIdentity]) -> dict[uuid.UUID, str | None]:
        return {server_id: identity.worker_id for server_id, identity in identities.items()}

    known = {group.key for group in shared_workers(servers, workers(before))}
    return [
        group.warning() for group in shared_workers(servers, workers(before) | workers(now)) if group.key not in known
    ]


def state_change_line(server: Server, probe: Probe, health: Health, before: str = "healthy") -> str:
    """`... Principal (id) https://...: healthy -> failing: connection refused; cooling down 30 s`.

    The states are a Health's: healthy, failing, drained (WAHA shutting down).
    """
    head = f"{_stamp()} {server.nome} ({server.id}) {display_api_url(server.api_url)}"
    if health.state == "healthy":
        return f"{head}: {before} -> healthy: {describe_probe(probe)}"
    if health.state == "drained":
        return (
            f"{head}: {before} -> drained: WAHA answers GET /health with 503 shutting_down; {describe_health(health)}"
        )
    return f"{head}: {before} -> failing: {probe.outcome}; {describe_health(health)}"


def identity_line(server: Server, identity: WahaIdentity, before: WahaIdentity | None) -> str:
    """`... Principal (id) https://...: WAHA 2024.10.1 (WEBJS, CORE), was WAHA 2024.9.3 (WEBJS, CORE)`."""
    head = f"{_stamp()} {server.nome} ({server.id}) {display_api_url(server.api_url)}"
    return f"{head}: {identity.describe()}, " + (f"was {before.describe()}" if before else "first identified")


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Set `stop` on SIGTERM and SIGINT (Ctrl-C), so the monitor ends its cycle cleanly.

    Returns a function that puts the previous handlers back. Main thread only.
    """
    previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore
