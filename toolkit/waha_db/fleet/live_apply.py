"""`sessions reconcile --live --apply`: one server's rows and counter brought in line with WAHA, under lock.

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
import uuid
from collections.abc import Sequence

import psycopg.errors
import sqlalchemy as sa

from waha_db.database import constraint_name
from waha_db.fleet.allocation import OCCUPYING
from waha_db.fleet.live_compare import WORKING, Comparison, SessionRow, Silence, compare
from waha_db.fleet.live_report import ServerReport
from waha_db.fleet.live_waha import WahaSession
from waha_db.fleet.servers import SERVER_COLUMNS, Server, server_from_row
from waha_db.fleet.tenancy import shared_reason, shared_registrations

# How long one server's reconciliation waits for its row locks before it skips that server (not the
# migrations' overall lock wait, waha_db.lifecycle.locks.DEFAULT_LOCK_TIMEOUT_SECONDS).
RECONCILE_LOCK_TIMEOUT_SECONDS = 5.0
DEADLOCK_RETRIES = 3
# The unique index of revision 0010: a user's occupying sessions have distinct names.
OCCUPYING_NAME_KEY = "waha_sessions_user_id_session_name_occupying_key"


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
