"""`waha-db sessions reconcile --live`: the database against what the WAHA servers themselves run.

Load balancing is only as good as `sessions_ativas`, and `sessions reconcile`
(waha_db.fleet.allocation) compares each counter with the rows of waha_sessions
only. Here the rows are compared with the servers: each is asked
`GET {api_url}/api/sessions?all=true` (header X-Api-Key; waha_db.fleet.live_waha),
and its answer compared with its rows (waha_db.fleet.live_compare: the kinds of
difference, and what --apply does about each).

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
no proxy, as by waha_db.fleet.asking). Every server is asked at once, within the
round's deadline (waha_db.fleet.rounds). A server that cannot be read (down, timed
out, key rejected, an answer that is not WAHA's, no answer within the deadline) is
reported and skipped: no answer is never taken as "no sessions". A server whose
URL more than one user registered is reported and skipped too, neither read nor
written (waha_db.fleet.tenancy).

Each server is applied in a transaction of its own, after every HTTP read, under
locks that keep it race-free against allocate_waha_session and
release_waha_session (waha_db.fleet.live_apply). The report and its words:
waha_db.fleet.live_report.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from waha_db.errors import UserError
from waha_db.fleet.asking import DEFAULT_BACKOFF_SECONDS
from waha_db.fleet.health import HealthError, RoundOptions, load_servers
from waha_db.fleet.live_apply import RECONCILE_LOCK_TIMEOUT_SECONDS, apply_server, session_rows
from waha_db.fleet.live_compare import DEFAULT_SILENT_AFTER, KINDS, Silence, compare
from waha_db.fleet.live_report import LiveReport, ServerReport
from waha_db.fleet.live_waha import ask_sessions
from waha_db.fleet.servers import Server
from waha_db.fleet.tenancy import shared_reason, shared_registrations
from waha_db.fleet.workers import shared_workers

# What the CLI and the tests use from here; the rest of the reconcile is in live_waha, live_compare,
# live_apply and live_report.
__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "DEFAULT_SILENT_AFTER",
    "KINDS",
    "WORKER_UNKNOWN",
    "LiveReconcileError",
    "LiveReport",
    "reconcile_fleet",
    "reconcile_live",
    "servers_in_scope",
    "shared_worker_reason",
]

DEFAULT_GRACE_SECONDS = 120.0


class LiveReconcileError(UserError):
    """The reconcile cannot do what was asked; the message says what to do."""


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
    in_scope = functools.partial(
        reconcile_live,
        user_id=user_id,
        server_ids=list(server_ids),
        grace=grace,
        silent_after=silent_after,
        options=options,
        progress=progress,
    )
    with engine.connect() as connection:
        if apply and confirm is not None:
            preview = in_scope(connection)
            if not preview.summary()["fixable"]:
                return preview
            confirm(preview)
        return in_scope(connection, apply=apply)
