"""`waha-db sessions reconcile --live`: the database against what the WAHA servers themselves run.

Load balancing is only as good as `sessions_ativas`, and `sessions reconcile`
(waha_db.fleet.allocation) compares each counter with the rows of waha_sessions
only. Here the rows are compared with the servers: each is asked
`GET {api_url}/api/sessions?all=true` (header X-Api-Key), and its answer compared
with its rows (waha_db.fleet.live_compare: the kinds of difference, and what
--apply does about each).

Workers: WAHA servers that share one session store (WAHA_WORKER_ID per worker)
list each other's sessions, each naming its `assignedWorker`. When a server's list
names a worker, the server is also asked whose it is, `GET /api/server/status`
(`worker.id`; empty, absent or a 404: none), one attempt within its timeout, in the
same round: a session another worker runs is never inserted, counted or stopped on
it. If that answer does not come, which sessions are its own cannot be told, and the
server is skipped, nothing changed. Two servers of one user that report the same
worker are skipped too (waha_db.fleet.workers). A list that names no worker costs no
second request.

Nothing is ever changed on a WAHA server (only GETs are sent, with no redirects and
no proxy, as by waha_db.fleet.probe). Every server is asked at once, within the
round's deadline (waha_db.fleet.rounds). A server that cannot be read (down, timed
out, key rejected, an answer that is not WAHA's, no answer within the deadline) is
reported and skipped: no answer is never taken as "no sessions". A server whose
URL more than one user registered is reported and skipped too, neither read nor
written (waha_db.fleet.tenancy).

Race-freedom against allocate_waha_session and release_waha_session: each server
is applied in a transaction of its own, after the HTTP reads (no transaction is
open while WAHA is asked). It locks the session rows it is about to change, in id
order, then the server's row (FOR UPDATE), reads the rows again, compares them
with WAHA's answer again (writing only rows still as they were before WAHA was
asked), writes, and sets the counter to the occupying rows counted in that same
transaction, plus the occupying sessions WAHA runs that no row can hold (a name the
database refuses). release_waha_session locks a session row, then
its server's: the same order, so the two never deadlock. allocate_waha_session
takes the server's row first, so it either committed before (and its session is
among the rows counted) or waits and adds its slot to the counter set here. A
release waiting on a locked row sees it as it was left: already STOPPED, it frees
nothing. The locks wait at most `lock_timeout` seconds; then the server is
skipped, and the report says so, rather than the application's traffic queueing
behind a reconcile.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg.errors
import sqlalchemy as sa

from waha_db.database import constraint_name
from waha_db.errors import UserError
from waha_db.fleet.allocation import OCCUPYING
from waha_db.fleet.checkup import ask_worker
from waha_db.fleet.health import HealthError, RoundOptions, load_servers, target
from waha_db.fleet.live_compare import (
    DEFAULT_SILENT_AFTER,
    KINDS,
    WORKING,
    Comparison,
    SessionRow,
    Silence,
    WahaSession,
    compare,
    read_sessions,
)
from waha_db.fleet.probe import (
    DEFAULT_BACKOFF_SECONDS,
    Answer,
    Tally,
    Target,
    ask,
    ask_round,
    display_api_url,
    unanswered,
)
from waha_db.fleet.rounds import fair_order
from waha_db.fleet.servers import SERVER_COLUMNS, Server, server_from_row
from waha_db.fleet.tenancy import shared_reason, shared_registrations
from waha_db.fleet.workers import shared_workers

SESSIONS_PATH = "/api/sessions?all=true"
# A session entry is under a kilobyte (more with many webhooks); a Plus server runs hundreds.
MAX_SESSIONS_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_GRACE_SECONDS = 120.0
# How long one server's reconciliation waits for its row locks before it skips that server (not the
# migrations' overall lock wait, waha_db.lifecycle.locks.DEFAULT_LOCK_TIMEOUT_SECONDS).
RECONCILE_LOCK_TIMEOUT_SECONDS = 5.0
DEADLOCK_RETRIES = 3
# The unique index of revision 0010: a user's occupying sessions have distinct names.
OCCUPYING_NAME_KEY = "waha_sessions_user_id_session_name_occupying_key"


class LiveReconcileError(UserError):
    """The reconcile cannot do what was asked; the message says what to do."""


# --------------------------------------------------------------------------
# WAHA's side: the sessions, and whose they are
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class WahaReading:
    """What one server said: its sessions and, when they name workers, its own worker id."""

    sessions: Answer[tuple[WahaSession, ...]]
    worker_asked: bool = False  # the sessions name a worker, so GET /api/server/status was asked
    worker_known: bool = False  # ...and it answered
    worker_id: str | None = None  # this server's worker (None: none)

    @property
    def ok(self) -> bool:
        return self.sessions.ok


async def read_server(fleet, target: Target, *, backoff: float, tally: Tally, known: list[WahaReading]) -> WahaReading:
    """The sessions (with the server's retries), then its worker id only if a session names a worker."""
    sessions = await ask(
        fleet,
        target,
        SESSIONS_PATH,
        read_sessions,
        backoff=backoff,
        max_body_bytes=MAX_SESSIONS_BODY_BYTES,
        tally=tally,
    )
    if not sessions.ok or not any(session.assigned_worker for session in sessions.value):
        return WahaReading(sessions)
    known.append(WahaReading(sessions, worker_asked=True))  # what is known if the deadline passes meanwhile
    worker_known, worker_id = await ask_worker(fleet, target)
    return WahaReading(sessions, True, worker_known, worker_id)


def ask_sessions(
    servers: Sequence[Server],
    *,
    options: RoundOptions | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[WahaReading]:
    """Each server's sessions (and worker) as WAHA gives them, asked all at once, within each server's budget and
    the round's deadline."""
    options = options or RoundOptions()
    targets = [target(server) for server in servers]
    tallies = [Tally() for _ in servers]
    known: list[list[WahaReading]] = [[] for _ in servers]

    def unfinished(position: int, why: str) -> WahaReading:
        if why == "deadline" and known[position]:
            return known[position][0]
        return WahaReading(unanswered(why, options.deadline, tallies[position].attempts))

    return ask_round(
        len(servers),
        lambda fleet, position: read_server(
            fleet, targets[position], backoff=options.backoff, tally=tallies[position], known=known[position]
        ),
        unfinished=unfinished,
        failed=lambda reading: not reading.ok,
        limits=options.limits,
        policy=options.policy,
        deadline=options.deadline,
        stop=stop,
        order=fair_order(servers, lambda server: server.user_id),
        progress=progress,
    )


WORKER_UNKNOWN = (
    "its sessions name WAHA workers, and its own worker id did not come (GET /api/server/status): "
    "which sessions are its own cannot be told; nothing changed. Run again"
)


def shared_worker_reason(worker_id: str, others: Sequence[Server]) -> str:
    names = ", ".join(f"{server.nome} ({server.id})" for server in others)
    return (
        f"reports WAHA worker {worker_id!r}, as {names} does: one WAHA registered twice, or two WAHA servers given "
        "one WAHA_WORKER_ID, whose sessions would be counted twice; nothing changed. Keep one registration "
        "(waha-db servers disable ID), or give each WAHA its own WAHA_WORKER_ID"
    )


# --------------------------------------------------------------------------
# The report, and bringing the database in line
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerReport:
    """One server: what WAHA said (or why it could not be read), and how the database differs."""

    server: Server
    error: str | None = None  # WAHA could not be read: skipped, nothing changed
    attempts: int = 0
    waha_sessions: tuple[WahaSession, ...] = ()
    comparison: Comparison | None = None
    applied: bool = False  # the comparison is the one --apply made under lock, and its fixable differences are done
    skipped: str | None = None  # read, but --apply could not change it (why)
    worker_id: str | None = None  # this server's WAHA worker, when its sessions name workers

    @property
    def in_line(self) -> bool:
        """Read, and nothing differs (other workers' sessions, left out, are as they should be)."""
        return self.comparison is not None and all(d.left_out for d in self.comparison.differences)

    def as_json(self) -> dict:
        comparison = self.comparison
        return {
            "server_id": str(self.server.id),
            "nome": self.server.nome,
            "user_id": str(self.server.user_id),
            "api_url": display_api_url(self.server.api_url),
            "reachable": self.error is None,
            "error": self.error,
            "attempts": self.attempts,
            "worker_id": self.worker_id,
            "max_sessions": self.server.max_sessions,
            "sessions_ativas": self.server.sessions_ativas,
            "waha_sessions": [{"name": session.name} | session.as_json() for session in self.waha_sessions],
            "occupying": None if comparison is None else comparison.occupying,
            "differences": []
            if comparison is None
            else [difference.as_json() for difference in comparison.differences],
            "applied": self.applied,
            "skipped": self.skipped,
        }


@dataclass
class LiveReport:
    servers: list[ServerReport]
    applied: bool
    grace_seconds: float
    silent_after_minutes: float = DEFAULT_SILENT_AFTER.total_seconds() / 60

    @property
    def problems(self) -> list[ServerReport]:
        """The servers that could not be read, or not brought in line by --apply."""
        return [item for item in self.servers if item.error is not None or item.skipped is not None]

    def problems_line(self) -> str:
        """`2 of 5 server(s) not reconciled: Lento (timed out after 1 s), ...`, for the error line."""
        names = ", ".join(f"{item.server.nome} ({item.error or item.skipped})" for item in self.problems)
        return f"{len(self.problems)} of {len(self.servers)} server(s) not reconciled: {names}"

    def summary(self) -> dict:
        differences = [d for item in self.servers if item.comparison for d in item.comparison.differences]
        return {
            "servers": len(self.servers),
            "in_line": sum(item.in_line for item in self.servers),
            "unreachable": sum(item.error is not None for item in self.servers),
            "skipped": sum(item.skipped is not None for item in self.servers),
            "differences": {kind: sum(d.kind == kind for d in differences) for kind in KINDS},
            "fixable": sum(d.fixable for d in differences),
        }

    def as_json(self) -> dict:
        return {
            "applied": self.applied,
            "grace_seconds": self.grace_seconds,
            "silent_after_minutes": self.silent_after_minutes,
            "servers": [item.as_json() for item in self.servers],
            "summary": self.summary(),
        }


_ROWS_SQL = """
SELECT id, waha_server_id, session_name, status, phone_number, profile_name, updated_at
FROM public.waha_sessions
WHERE waha_server_id = ANY (:server_ids)
ORDER BY waha_server_id, session_name
"""


def session_rows(connection: sa.Connection, server_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[SessionRow]]:
    """The rows of waha_sessions of the given servers, by server id."""
    found: dict[uuid.UUID, list[SessionRow]] = {server_id: [] for server_id in server_ids}
    for row in connection.execute(sa.text(_ROWS_SQL), {"server_ids": list(server_ids)}):
        found[row.waha_server_id].append(
            SessionRow(row.id, row.session_name, row.status, row.phone_number, row.profile_name, row.updated_at)
        )
    return found


def servers_in_scope(
    connection: sa.Connection, *, user_id: uuid.UUID | None = None, server_ids: Sequence[uuid.UUID] = ()
) -> list[Server]:
    """The named servers (active or not), else the user's active servers, else every active server."""
    if not server_ids:
        return load_servers(connection, user_id=user_id) if user_id else load_servers(connection, every_active=True)
    servers = load_servers(connection, server_ids=server_ids)
    strangers = [str(server.id) for server in servers if user_id is not None and server.user_id != user_id]
    if strangers:
        raise LiveReconcileError(
            f"server {', '.join(strangers)} is not a server of user {user_id}; "
            "name the user's servers, or leave out --user"
        )
    return servers


def _write(connection: sa.Connection, server: Server, comparison: Comparison) -> None:
    for update in comparison.updates:
        connection.execute(
            sa.text(
                "UPDATE public.waha_sessions SET status = COALESCE(:status, status), "
                "phone_number = COALESCE(:phone_number, phone_number), "
                "profile_name = COALESCE(:profile_name, profile_name), "
                "last_connected_at = CASE WHEN :connected THEN pg_catalog.now() ELSE last_connected_at END "
                "WHERE id = :id"
            ),
            {
                "id": update.session_id,
                "status": update.status,
                "phone_number": update.phone_number,
                "profile_name": update.profile_name,
                "connected": update.connected,
            },
        )
    for session in comparison.inserts:
        connection.execute(
            sa.text(
                "INSERT INTO public.waha_sessions "
                "(user_id, waha_server_id, session_name, status, phone_number, profile_name, last_connected_at) "
                "VALUES (:user_id, :server_id, :name, :status, :phone_number, :profile_name, "
                "CASE WHEN :connected THEN pg_catalog.now() END) "
                "ON CONFLICT ON CONSTRAINT waha_sessions_waha_server_id_session_name_key DO NOTHING"
            ),
            {
                "user_id": server.user_id,
                "server_id": server.id,
                "name": session.name,
                "status": session.status,
                "phone_number": session.phone_number,
                "profile_name": session.profile_name,
                "connected": session.status == WORKING,
            },
        )
    # The counter from the rows as they are now, in this transaction, under the server's lock, plus
    # the occupying sessions WAHA runs that no row can hold (a name the database refuses).
    connection.execute(
        sa.text(
            "UPDATE public.waha_servers AS server SET sessions_ativas = occupied.sessions "
            "FROM (SELECT pg_catalog.count(*) + :beyond_rows AS sessions FROM public.waha_sessions AS session_row "
            f"      WHERE session_row.waha_server_id = :id AND {OCCUPYING}) AS occupied "
            "WHERE server.id = :id AND server.sessions_ativas <> occupied.sessions"
        ),
        {"id": server.id, "beyond_rows": comparison.beyond_rows},
    )


def apply_server(
    connection: sa.Connection,
    server: Server,
    waha_sessions: tuple[WahaSession, ...],
    rows_before: Sequence[SessionRow],
    planned: Comparison,
    settled_before: dt.datetime,
    *,
    attempts: int = 0,
    lock_timeout: float = RECONCILE_LOCK_TIMEOUT_SECONDS,
    this_worker: str | None = None,
    silence: Silence | None = None,
) -> ServerReport:
    """Bring one server's rows and counter in line with WAHA's answer, in one transaction (see module doc).

    `rows_before` are the server's rows as read before WAHA was asked, and `planned`
    their comparison with WAHA's answer: the rows it would change are the ones
    locked, and only those of them still as they were before WAHA was asked are
    written (a row that changed since, or appeared since, is settling: WAHA's answer
    may be older than it). The connection must not be in a transaction.
    """
    to_lock = sorted(update.session_id for update in planned.updates)
    before = {row.id: row for row in rows_before}
    for attempt in range(DEADLOCK_RETRIES):
        try:
            with connection.begin():
                connection.execute(
                    sa.text("SELECT pg_catalog.set_config('lock_timeout', :value, true)"),
                    {"value": f"{max(1, round(lock_timeout * 1000))}ms"},
                )
                connection.execute(
                    sa.text("SELECT id FROM public.waha_sessions WHERE id = ANY (:ids) ORDER BY id FOR UPDATE"),
                    {"ids": to_lock},
                )
                row = connection.execute(
                    sa.text(f"SELECT {SERVER_COLUMNS} FROM public.waha_servers WHERE id = :id FOR UPDATE"),
                    {"id": server.id},
                ).one_or_none()
                if row is None:
                    return ServerReport(
                        server,
                        attempts=attempts,
                        waha_sessions=waha_sessions,
                        comparison=planned,
                        skipped="the server was deleted while reconciling: nothing changed",
                        worker_id=this_worker,
                    )
                shared = shared_registrations(connection, [server.id]).get(server.id)
                if shared:
                    return ServerReport(server, attempts=attempts, skipped=shared_reason(shared))
                locked = server_from_row(row)
                rows = session_rows(connection, [server.id])[server.id]
                unchanged = frozenset(row.id for row in rows if row.id in to_lock and before.get(row.id) == row)
                comparison = compare(
                    locked,
                    rows,
                    waha_sessions,
                    settled_before,
                    writable=unchanged,
                    this_worker=this_worker,
                    silence=silence,
                )
                _write(connection, locked, comparison)
            return ServerReport(
                locked,
                attempts=attempts,
                waha_sessions=waha_sessions,
                comparison=comparison,
                applied=True,
                worker_id=this_worker,
            )
        except sa.exc.IntegrityError as error:
            if constraint_name(error) != OCCUPYING_NAME_KEY:
                raise
            # A session name identifies one session of its user: WAHA runs here a name the
            # user already occupies on another server, which the database cannot hold twice.
            return ServerReport(
                server,
                attempts=attempts,
                waha_sessions=waha_sessions,
                comparison=planned,
                worker_id=this_worker,
                skipped="a session WAHA runs here has the name of a session its user already occupies on "
                "another server (a name identifies one session of its user): nothing changed on it; "
                "stop one of the two on its WAHA server, then run the reconcile again",
            )
        except sa.exc.OperationalError as error:
            if isinstance(error.orig, psycopg.errors.LockNotAvailable):
                return ServerReport(
                    server,
                    attempts=attempts,
                    waha_sessions=waha_sessions,
                    comparison=planned,
                    worker_id=this_worker,
                    skipped=f"another transaction held its rows locked for more than {lock_timeout:g} s: "
                    "nothing changed on it; run the reconcile again",
                )
            if not isinstance(error.orig, psycopg.errors.DeadlockDetected) or attempt == DEADLOCK_RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def reconcile_live(
    connection: sa.Connection,
    *,
    user_id: uuid.UUID | None = None,
    server_ids: Sequence[uuid.UUID] = (),
    apply: bool = False,
    grace: float = DEFAULT_GRACE_SECONDS,
    silent_after: dt.timedelta = DEFAULT_SILENT_AFTER,
    lock_timeout: float = RECONCILE_LOCK_TIMEOUT_SECONDS,
    options: RoundOptions | None = None,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    progress: Callable[[int, int, int], None] | None = None,
) -> LiveReport:
    """`waha-db sessions reconcile --live`: compare every server in scope with what WAHA runs; with `apply`, fix it.

    Scope: the servers of `server_ids` (active or not), else the active servers of
    `user_id`, else every active server. A WORKING session whose last activity is
    more than `silent_after` before WAHA was read is reported as silent. The
    connection must not be in a transaction: the reads are committed before WAHA is
    asked, and each server is applied in a transaction of its own.
    """
    if grace < 0:
        raise LiveReconcileError(f"the grace must be 0 seconds or more, not {grace:g}")
    if silent_after <= dt.timedelta(0):
        raise LiveReconcileError(f"the silence threshold must be more than 0 minutes, not {silent_after}")
    try:
        servers = servers_in_scope(connection, user_id=user_id, server_ids=server_ids)
    except HealthError as error:
        raise LiveReconcileError(str(error)) from None
    # The database first, then WAHA: a row committed after this read is not compared with
    # an answer that may predate it.
    read_at = connection.execute(sa.text("SELECT pg_catalog.clock_timestamp()")).scalar_one()
    shared = shared_registrations(connection, [server.id for server in servers])
    rows = session_rows(connection, [server.id for server in servers])
    connection.commit()  # no snapshot and no lock is held while the servers are asked
    options = options or RoundOptions(backoff=backoff)
    asked = [server for server in servers if server.id not in shared]
    readings = dict(
        zip((server.id for server in asked), ask_sessions(asked, options=options, progress=progress), strict=True)
    )
    settled_before = read_at - dt.timedelta(seconds=grace)
    silence = Silence(read_at, silent_after)
    same_worker = {
        server.id: group
        for group in shared_workers(
            [server for server in asked if readings[server.id].worker_known],
            {server_id: reading.worker_id for server_id, reading in readings.items()},
        )
        for server in group.servers
    }
    reports = []
    for server in servers:
        if server.id in shared:
            reports.append(ServerReport(server, skipped=shared_reason(shared[server.id])))
            continue
        reading = readings[server.id]
        answer = reading.sessions
        if not answer.ok:
            reports.append(ServerReport(server, error=answer.error, attempts=answer.attempts))
            continue
        listed = answer.value or ()

        # What was read of this server; each outcome adds comparison, applied or skipped.
        read = functools.partial(
            ServerReport, server, attempts=answer.attempts, waha_sessions=listed, worker_id=reading.worker_id
        )
        if reading.worker_asked and not reading.worker_known:
            reports.append(read(skipped=WORKER_UNKNOWN))
            continue
        if server.id in same_worker:
            group = same_worker[server.id]
            others = [other for other in group.servers if other.id != server.id]
            reports.append(read(skipped=shared_worker_reason(group.worker_id, others)))
            continue
        planned = compare(
            server, rows[server.id], listed, settled_before, this_worker=reading.worker_id, silence=silence
        )
        if apply and planned.to_apply:
            reports.append(
                apply_server(
                    connection,
                    server,
                    listed,
                    rows[server.id],
                    planned,
                    settled_before,
                    attempts=answer.attempts,
                    lock_timeout=lock_timeout,
                    this_worker=reading.worker_id,
                    silence=silence,
                )
            )
        else:
            reports.append(read(comparison=planned, applied=apply))
    return LiveReport(
        reports, applied=apply, grace_seconds=grace, silent_after_minutes=silent_after.total_seconds() / 60
    )


def reconcile_fleet(
    engine: sa.Engine,
    *,
    user_id: uuid.UUID | None = None,
    server_ids: Sequence[uuid.UUID] = (),
    apply: bool = False,
    grace: float = DEFAULT_GRACE_SECONDS,
    silent_after: dt.timedelta = DEFAULT_SILENT_AFTER,
    confirm: Callable[[LiveReport], None] | None = None,
    options: RoundOptions | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> LiveReport:
    """`waha-db sessions reconcile --live`: the report; with `apply`, the database brought in line, once confirmed.

    With `confirm`, the report is made first (nothing changed) and, when it has
    something to apply, `confirm` sees it (and raises to refuse); then WAHA is asked
    again and what is found then is applied. Without it, `apply` applies at once.
    """
    scope = {
        "user_id": user_id,
        "server_ids": list(server_ids),
        "grace": grace,
        "silent_after": silent_after,
        "options": options,
        "progress": progress,
    }
    with engine.connect() as connection:
        if apply and confirm is not None:
            preview = reconcile_live(connection, **scope)
            if not preview.summary()["fixable"]:
                return preview
            confirm(preview)
        return reconcile_live(connection, apply=apply, **scope)
