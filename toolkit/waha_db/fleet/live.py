"""`waha-db sessions reconcile --live`: the database against what the WAHA servers themselves run.

Load balancing is only as good as `sessions_ativas`, and `sessions reconcile`
(waha_db.fleet.allocation) compares each counter with the rows of waha_sessions
only. Here the rows are compared with the servers: WAHA answers
`GET {api_url}/api/sessions?all=true` (header X-Api-Key) with every session it has:
`name`, `status`, `me` (the signed-in phone: `id` like `5511999990001@c.us`,
`pushName`) and, on newer releases, `engine` and `assignedWorker`.

The differences found on a server, in the order they are listed (`KINDS`):
- unknown_session: WAHA has a session the database does not know (started from
  WAHA's dashboard, or by another app). --apply inserts it for the server's user
  (the server says whose it is), with WAHA's status, phone number and profile name.
- missing_session: a row the database counts as occupying that WAHA does not have
  (deleted on the server, or lost when it restarted without
  WAHA_WORKER_RESTART_SESSIONS). --apply marks it STOPPED and keeps the row:
  history matters, and the app may refer to it.
- stopped_on_waha: a row the database counts as occupying that WAHA reports
  STOPPED or FAILED. --apply writes WAHA's status, which frees the slot.
- status: any other status difference (STARTING on one side, WORKING on the
  other; STOPPED in the database while WAHA runs it, which takes a slot).
  --apply writes WAHA's status.
- profile: the phone number or profile name differ from WAHA's `me`. Compared only
  where WAHA says who is signed in (a STOPPED or unpaired session has no `me`, and
  that is not a reason to forget the phone). --apply writes WAHA's.
- settling: a row written less than `grace` seconds before WAHA was read, or while
  reconciling: allocate_waha_session inserts a STARTING row, and an app that
  commits it before creating the session on WAHA leaves a moment when WAHA does
  not have it yet; the app also writes statuses as WAHA reports them. What differs
  is reported and left alone; the next run decides. (The rows are read before
  WAHA is asked, so a row committed after that is never compared with an answer
  that may predate it.)
- counter: sessions_ativas differs from the sessions that occupy the server once
  the rows say what WAHA says (the counter WAHA's truth implies). --apply sets it.
- over_capacity: more occupying sessions than max_sessions. Reported only: raising
  max_sessions or stopping sessions on the server is a person's decision.
Writing WORKING over another status also sets last_connected_at to now(): the
session was seen connected. Occupying follows the database's rule (a status other
than STOPPED, FAILED or DISCONNECTED, any case).

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
transaction. release_waha_session locks a session row, then
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
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psycopg.errors
import sqlalchemy as sa

from waha_db.database import constraint_name
from waha_db.errors import UserError
from waha_db.fleet.allocation import OCCUPYING, occupies
from waha_db.fleet.health import HealthError, RoundOptions, load_servers, target
from waha_db.fleet.probe import DEFAULT_BACKOFF_SECONDS, Answer, AnswerFailure, ask_many, display_api_url
from waha_db.fleet.rounds import fair_order
from waha_db.fleet.servers import SERVER_COLUMNS, Server, server_from_row
from waha_db.fleet.tenancy import shared_reason, shared_registrations

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

KINDS = (
    "unknown_session",
    "missing_session",
    "stopped_on_waha",
    "status",
    "profile",
    "settling",
    "counter",
    "over_capacity",
)

# The CHECK waha_sessions_session_name_waha_rule of the database (WAHA's own rule).
SESSION_NAME_RULE = r"[A-Za-z0-9_-]{1,54}"
# A WhatsApp chat id of a phone: digits, an optional device (NOWEB's `:12`), a phone domain.
PHONE_CHAT_ID = re.compile(r"(\d{1,20})(?::\d+)?@(?:c\.us|s\.whatsapp\.net)")
PROFILE_NAME_LENGTH = 255  # waha_sessions.profile_name varchar(255)
STATUS_LENGTH = 50  # waha_sessions.status varchar(50)
WORKING = "WORKING"


class LiveReconcileError(UserError):
    """The reconcile cannot do what was asked; the message says what to do."""


# --------------------------------------------------------------------------
# WAHA's side: GET /api/sessions?all=true
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class WahaSession:
    """A session as WAHA lists it."""

    name: str
    status: str
    phone_number: str | None = None  # the digits of `me.id`, when it is a phone's chat id
    profile_name: str | None = None  # `me.pushName`
    engine: str | None = None
    assigned_worker: str | None = None

    def as_json(self) -> dict:
        return {
            "status": self.status,
            "phone_number": self.phone_number,
            "profile_name": self.profile_name,
            "engine": self.engine,
            "assigned_worker": self.assigned_worker,
        }


def _text(value: object, length: int | None = None) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()[:length] if length else value.strip()


def _phone(chat_id: object) -> str | None:
    """`5511999990001@c.us` -> `5511999990001`; None for anything else (a @lid is not a phone number)."""
    found = PHONE_CHAT_ID.fullmatch(chat_id) if isinstance(chat_id, str) else None
    return found.group(1) if found else None


def _engine(value: object) -> str | None:
    """WAHA gives the engine as a name, or as an object `{"engine": "NOWEB", ...}`."""
    if isinstance(value, dict):
        value = value.get("engine")
    return _text(value)


def read_sessions(answer: object) -> tuple[WahaSession, ...]:
    """The sessions of WAHA's answer to /api/sessions, by name; AnswerFailure when it is not WAHA's."""
    if not isinstance(answer, list):
        raise AnswerFailure("not a WAHA server: /api/sessions did not answer a list of sessions", retry=False)
    sessions: dict[str, WahaSession] = {}
    for position, entry in enumerate(answer):
        name = entry.get("name") if isinstance(entry, dict) else None
        status = _text(entry.get("status")) if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or status is None or len(status) > STATUS_LENGTH:
            raise AnswerFailure(
                f"not a WAHA answer: entry {position} of /api/sessions has no session name or status", retry=False
            )
        if name in sessions:
            raise AnswerFailure("not a WAHA answer: /api/sessions lists one session name twice", retry=False)
        me = entry.get("me") if isinstance(entry.get("me"), dict) else {}
        sessions[name] = WahaSession(
            name=name,
            status=status,
            phone_number=_phone(me.get("id")),
            profile_name=_text(me.get("pushName"), PROFILE_NAME_LENGTH),
            engine=_engine(entry.get("engine")),
            assigned_worker=_text(entry.get("assignedWorker")),
        )
    return tuple(sorted(sessions.values(), key=lambda session: session.name))


def ask_sessions(
    servers: Sequence[Server],
    *,
    options: RoundOptions | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[Answer[tuple[WahaSession, ...]]]:
    """Each server's sessions as WAHA lists them, asked all at once, within each server's budget and the round's deadline."""
    options = options or RoundOptions()
    return ask_many(
        [target(server) for server in servers],
        SESSIONS_PATH,
        read_sessions,
        backoff=options.backoff,
        max_body_bytes=MAX_SESSIONS_BODY_BYTES,
        limits=options.limits,
        policy=options.policy,
        deadline=options.deadline,
        stop=stop,
        order=fair_order(servers, lambda server: server.user_id),
        progress=progress,
    )


# --------------------------------------------------------------------------
# The database's side, and the comparison (pure)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    """A row of public.waha_sessions, as far as the comparison needs it."""

    id: uuid.UUID
    session_name: str
    status: str
    phone_number: str | None
    profile_name: str | None
    updated_at: dt.datetime

    def as_json(self) -> dict:
        return {
            "session_id": str(self.id),
            "status": self.status,
            "phone_number": self.phone_number,
            "profile_name": self.profile_name,
        }


@dataclass(frozen=True)
class Difference:
    """One way a server's rows (or its counter) differ from what WAHA says.

    `database` and `waha` are what each side holds (None: that side has no such
    session); `detail` says it in words; `action` is what --apply does about it, or,
    when `fixable` is false, why it leaves it alone and what a person can do.
    """

    kind: str
    session_name: str | None
    session_id: uuid.UUID | None
    database: dict | None
    waha: dict | None
    detail: str
    action: str
    fixable: bool

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "session_name": self.session_name,
            "session_id": None if self.session_id is None else str(self.session_id),
            "database": self.database,
            "waha": self.waha,
            "detail": self.detail,
            "action": self.action,
            "fixable": self.fixable,
        }


@dataclass(frozen=True)
class RowUpdate:
    """What --apply writes into one existing row (None: the column stays)."""

    session_id: uuid.UUID
    status: str | None = None
    phone_number: str | None = None
    profile_name: str | None = None
    connected: bool = False  # last_connected_at = now()


@dataclass(frozen=True)
class Comparison:
    """A server's differences, and the writes that bring its rows in line with WAHA."""

    differences: tuple[Difference, ...]
    updates: tuple[RowUpdate, ...]
    inserts: tuple[WahaSession, ...]
    occupying: int  # occupying sessions once the rows say what WAHA says: the counter WAHA's truth implies

    @property
    def to_apply(self) -> bool:
        return any(difference.fixable for difference in self.differences)


def _who(phone: str | None, profile: str | None) -> str:
    """`5511999990001 'Loja 1'`: who is signed in, as far as it is known."""
    return " ".join(part for part in (phone, f"'{profile}'" if profile else None) if part)


def _words(status: str, phone: str | None = None, profile: str | None = None) -> str:
    who = _who(phone, profile)
    return f"{status} ({who})" if who else status


def _digits(phone: str | None) -> str | None:
    return re.sub(r"\D", "", phone) or None if phone else None


def compare(
    server: Server,
    rows: Iterable[SessionRow],
    waha: Iterable[WahaSession],
    settled_before: dt.datetime,
    *,
    writable: frozenset[uuid.UUID] | None = None,
) -> Comparison:
    """Every difference between a server's rows and WAHA's sessions, and what --apply writes (see module doc).

    Rows written at or after `settled_before` are settling: reported, never written.
    `writable`, when given, are the only rows that may be written (the rows --apply
    has locked); a row outside it that would need a write is settling too.
    """
    rows = list(rows)
    on_waha = {session.name: session for session in waha}
    known = {row.session_name for row in rows}
    differences: list[Difference] = []
    updates: list[RowUpdate] = []
    inserts: list[WahaSession] = []
    occupying = 0

    for row in rows:
        session = on_waha.get(row.session_name)
        found: list[tuple[str, str, str]] = []  # (kind, detail, action)
        update = RowUpdate(row.id)
        if session is None:
            if occupies(row.status):
                found.append(
                    (
                        "missing_session",
                        f"database: {row.status}, occupying a slot; WAHA does not have it",
                        "mark it STOPPED (the row stays, as history)",
                    )
                )
                update = RowUpdate(row.id, status="STOPPED")
        else:
            if row.status != session.status:
                frees = occupies(row.status) and not occupies(session.status)
                takes = occupies(session.status) and not occupies(row.status)
                effect = " (it frees its slot)" if frees else " (it takes a slot)" if takes else ""
                found.append(
                    (
                        "stopped_on_waha" if frees else "status",
                        f"database: {row.status}; WAHA: {session.status}",
                        f"write WAHA's status {session.status}{effect}"
                        + (", and last_connected_at = now()" if session.status == WORKING else ""),
                    )
                )
                update = RowUpdate(row.id, status=session.status, connected=session.status == WORKING)
            phone = session.phone_number if session.phone_number != _digits(row.phone_number) else None
            profile = session.profile_name if session.profile_name not in (None, row.profile_name) else None
            if phone or profile:
                found.append(
                    (
                        "profile",
                        f"database: {_who(row.phone_number, row.profile_name) or 'no phone number, no profile name'}; "
                        f"WAHA's me: {_who(session.phone_number, session.profile_name)}",
                        "write WAHA's "
                        + " and ".join(n for n, v in (("phone number", phone), ("profile name", profile)) if v),
                    )
                )
                update = RowUpdate(update.session_id, update.status, phone, profile, update.connected)
        settling = row.updated_at >= settled_before or (writable is not None and row.id not in writable)
        if found and settling:
            differences.append(
                Difference(
                    "settling",
                    row.session_name,
                    row.id,
                    row.as_json(),
                    session.as_json() if session else None,
                    "; ".join(f"{kind}: {detail}" for kind, detail, _ in found),
                    "left alone: the row was written moments ago (the app may still be creating or updating the "
                    "session on WAHA); the next run decides",
                    False,
                )
            )
        else:
            differences.extend(
                Difference(
                    kind,
                    row.session_name,
                    row.id,
                    row.as_json(),
                    session.as_json() if session else None,
                    detail,
                    action,
                    True,
                )
                for kind, detail, action in found
            )
            if found:
                updates.append(update)
        final_status = row.status if settling or update.status is None else update.status
        occupying += occupies(final_status)

    for session in on_waha.values():
        if session.name in known:
            continue
        recordable = re.fullmatch(SESSION_NAME_RULE, session.name) is not None
        differences.append(
            Difference(
                "unknown_session",
                session.name,
                None,
                None,
                session.as_json(),
                f"WAHA: {_words(session.status, session.phone_number, session.profile_name)}; the database does not know it",
                f"insert it for the server's user ({server.user_id}) with WAHA's status"
                + (", phone number and profile name" if session.phone_number or session.profile_name else "")
                if recordable
                else f"left alone: its name breaks the database's rule for session names (^{SESSION_NAME_RULE}$); "
                "rename it on the WAHA server",
                recordable,
            )
        )
        if recordable:
            inserts.append(session)
            occupying += occupies(session.status)

    if server.sessions_ativas != occupying:
        differences.append(
            Difference(
                "counter",
                None,
                None,
                {"sessions_ativas": server.sessions_ativas},
                {"sessions_ativas": occupying},
                f"sessions_ativas is {server.sessions_ativas}; the sessions WAHA runs make it {occupying}",
                f"set sessions_ativas to the occupying sessions ({occupying})",
                True,
            )
        )
    if occupying > server.max_sessions:
        differences.append(
            Difference(
                "over_capacity",
                None,
                None,
                {"max_sessions": server.max_sessions},
                {"sessions_ativas": occupying},
                f"{occupying} occupying sessions on a server with max_sessions {server.max_sessions}",
                f"left alone: raise max_sessions (waha-db servers update {server.id} --max-sessions {occupying}) "
                "or stop sessions on the WAHA server",
                False,
            )
        )
    differences.sort(key=lambda d: (KINDS.index(d.kind), d.session_name or ""))
    return Comparison(tuple(differences), tuple(updates), tuple(inserts), occupying)


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

    @property
    def in_line(self) -> bool:
        return self.comparison is not None and not self.comparison.differences

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
    # The counter from the rows as they are now, in this transaction, under the server's lock.
    connection.execute(
        sa.text(
            "UPDATE public.waha_servers AS server SET sessions_ativas = occupied.sessions "
            "FROM (SELECT pg_catalog.count(*) AS sessions FROM public.waha_sessions AS session_row "
            f"      WHERE session_row.waha_server_id = :id AND {OCCUPYING}) AS occupied "
            "WHERE server.id = :id AND server.sessions_ativas <> occupied.sessions"
        ),
        {"id": server.id},
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
                    )
                shared = shared_registrations(connection, [server.id]).get(server.id)
                if shared:
                    return ServerReport(server, attempts=attempts, skipped=shared_reason(shared))
                locked = server_from_row(row)
                rows = session_rows(connection, [server.id])[server.id]
                unchanged = frozenset(row.id for row in rows if row.id in to_lock and before.get(row.id) == row)
                comparison = compare(locked, rows, waha_sessions, settled_before, writable=unchanged)
                _write(connection, locked, comparison)
            return ServerReport(
                locked, attempts=attempts, waha_sessions=waha_sessions, comparison=comparison, applied=True
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
    lock_timeout: float = RECONCILE_LOCK_TIMEOUT_SECONDS,
    options: RoundOptions | None = None,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    progress: Callable[[int, int, int], None] | None = None,
) -> LiveReport:
    """`waha-db sessions reconcile --live`: compare every server in scope with what WAHA runs; with `apply`, fix it.

    Scope: the servers of `server_ids` (active or not), else the active servers of
    `user_id`, else every active server. The connection must not be in a
    transaction: the reads are committed before WAHA is asked, and each server is
    applied in a transaction of its own.
    """
    if grace < 0:
        raise LiveReconcileError(f"the grace must be 0 seconds or more, not {grace:g}")
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
    answers = dict(
        zip((server.id for server in asked), ask_sessions(asked, options=options, progress=progress), strict=True)
    )
    settled_before = read_at - dt.timedelta(seconds=grace)
    reports = []
    for server in servers:
        if server.id in shared:
            reports.append(ServerReport(server, skipped=shared_reason(shared[server.id])))
            continue
        answer = answers[server.id]
        if not answer.ok:
            reports.append(ServerReport(server, error=answer.error, attempts=answer.attempts))
            continue
        planned = compare(server, rows[server.id], answer.value, settled_before)
        if apply and planned.to_apply:
            reports.append(
                apply_server(
                    connection,
                    server,
                    answer.value,
                    rows[server.id],
                    planned,
                    settled_before,
                    attempts=answer.attempts,
                    lock_timeout=lock_timeout,
                )
            )
        else:
            reports.append(
                ServerReport(
                    server, attempts=answer.attempts, waha_sessions=answer.value, comparison=planned, applied=apply
                )
            )
    return LiveReport(reports, applied=apply, grace_seconds=grace)


def reconcile_fleet(
    engine: sa.Engine,
    *,
    user_id: uuid.UUID | None = None,
    server_ids: Sequence[uuid.UUID] = (),
    apply: bool = False,
    grace: float = DEFAULT_GRACE_SECONDS,
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


# --------------------------------------------------------------------------
# Plain words, for the CLI
# --------------------------------------------------------------------------


def render_live_report(report: LiveReport) -> str:
    """The report as `sessions reconcile --live` prints it: a block per server, then a summary line."""
    if not report.servers:
        return "no WAHA server to reconcile: the scope holds no active server (name one with --server ID)"
    lines = []
    for item in report.servers:
        server = item.server
        lines.append(f"{server.nome} ({display_api_url(server.api_url)})  server {server.id}  user {server.user_id}")
        if item.error is not None:
            tries = f" ({item.attempts} attempts)" if item.attempts > 1 else ""
            lines.append(f"  unreachable: {item.error}{tries}; skipped: nothing read, nothing changed")
            continue
        if item.comparison is None:
            lines.append(f"  skipped: {item.skipped}")
            continue
        comparison = item.comparison
        running = sum(occupies(session.status) for session in item.waha_sessions)
        lines.append(
            f"  WAHA has {len(item.waha_sessions)} session(s), {running} occupying; "
            f"sessions_ativas {server.sessions_ativas}, max_sessions {server.max_sessions}"
        )
        if not comparison.differences:
            lines.append("  in line with WAHA")
        for difference in comparison.differences:
            if not difference.fixable:
                verdict = ""
            elif item.applied:
                verdict = "done: "
            else:
                verdict = "--apply: "
            lines.append(f"  {difference.kind:<16}{difference.session_name or '':<20} {difference.detail}")
            lines.append(f"  {'':<16}{'':<20} {verdict}{difference.action}")
        if item.skipped:
            lines.append(f"  skipped: {item.skipped}")
    summary = report.summary()
    found = sum(summary["differences"].values())
    text = (
        f"{summary['servers']} server(s): {summary['in_line']} in line with WAHA, "
        f"{summary['servers'] - summary['in_line'] - summary['unreachable']} with {found} difference(s), "
        f"{summary['unreachable']} unreachable"
    )
    if report.applied:
        brought = summary["servers"] - summary["unreachable"] - summary["skipped"]
        text += (
            f"; applied to {brought} server(s), one transaction each ({summary['skipped']} skipped)"
            if brought
            else "; nothing applied: no server could be read and brought in line"
        )
    elif summary["fixable"]:
        text += f"; {summary['fixable']} to apply: run again with --apply (nothing is ever changed on a WAHA server)"
    lines.append(text)
    return "\n".join(lines)
