"""The pure half of `sessions reconcile --live`: a server's rows compared with the sessions WAHA lists
(read by waha_db.fleet.live_waha).

The differences found on a server, in the order they are listed (`KINDS`):
- unknown_session: WAHA has a session the database does not know (started from
  WAHA's dashboard, or by another app). --apply inserts it for the server's user
  (the server says whose it is), with WAHA's status, phone number and profile name.
  A name the database refuses (its rule for session names) is left alone, but it
  still occupies a slot on WAHA: it is counted.
- missing_session: a row the database counts as occupying that WAHA does not have
  (deleted on the server, or lost when it restarted without
  WAHA_WORKER_RESTART_SESSIONS). --apply marks it STOPPED and keeps the row:
  history matters, and the app may refer to it.
- stopped_on_waha: a row the database counts as occupying that WAHA reports
  STOPPED or FAILED. --apply writes WAHA's status, which frees the slot.
- status: any other status difference (STARTING on one side, WORKING on the
  other; STOPPED in the database while WAHA runs it, which takes a slot).
  --apply writes WAHA's status. Statuses that differ only in case are the same
  status (the database's rule compares them so).
- profile: the phone number or profile name differ from WAHA's `me`. Compared only
  where WAHA says who is signed in (a STOPPED or unpaired session has no `me`, and
  that is not a reason to forget the phone; an `@lid` id is no phone number).
  --apply writes WAHA's.
- other_worker: WAHA lists the session, but its `assignedWorker` names another
  worker than this server's (servers sharing one session store list each other's
  sessions). It is not this server's: never inserted, counted, written or stopped
  here. A row of this server for it stays as it is (and counts as rows count).
- silent: WAHA calls the session WORKING, but its last activity is older than the
  threshold (`Silence`): WAHA's issues report sessions that stay WORKING while they
  receive nothing. Reported only; where WAHA sends no activity, nothing is inferred.
- settling: a row written less than `grace` seconds before WAHA was read, or while
  reconciling: allocate_waha_session inserts a STARTING row, and an app that
  commits it before creating the session on WAHA leaves a moment when WAHA does
  not have it yet; the app also writes statuses as WAHA reports them. What differs
  is reported and left alone; the next run decides.
- counter: sessions_ativas differs from the sessions that occupy the server once
  the rows say what WAHA says (the counter WAHA's truth implies). --apply sets it.
- over_capacity: more occupying sessions than max_sessions. Reported only: raising
  max_sessions or stopping sessions on the server is a person's decision.
Writing WORKING over another status also sets last_connected_at to now(): the
session was seen connected. Occupying follows the database's rule (a status other
than STOPPED, FAILED or DISCONNECTED, any case).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from waha_db.fleet.allocation import occupies
from waha_db.fleet.live_waha import WahaSession
from waha_db.fleet.servers import Server

KINDS = (
    "unknown_session",
    "missing_session",
    "stopped_on_waha",
    "status",
    "profile",
    "other_worker",
    "silent",
    "settling",
    "counter",
    "over_capacity",
)

# The CHECK waha_sessions_session_name_waha_rule of the database (WAHA's own rule).
SESSION_NAME_RULE = r"[A-Za-z0-9_-]{1,54}"
WORKING = "WORKING"
DEFAULT_SILENT_AFTER = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class SessionRow:
    """A row of public.waha_sessions, as far as the comparison needs it."""

    id: uuid.UUID
    session_name: str
    status: str
    phone_number: str | None
    profile_name: str | None
    updated_at: dt.datetime

    def as_json(self) -> dict[str, Any]:
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
    database: dict[str, Any] | None
    waha: dict[str, Any] | None
    detail: str
    action: str
    fixable: bool

    @property
    def left_out(self) -> bool:
        """A session another worker runs, with no row here: as it should be, noted rather than a difference."""
        return self.kind == "other_worker" and self.session_id is None

    def as_json(self) -> dict[str, Any]:
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
    # Of them, those no row can hold (a name the database refuses): the counter adds them to the rows.
    beyond_rows: int = 0

    @property
    def to_apply(self) -> bool:
        return any(difference.fixable for difference in self.differences)


@dataclass(frozen=True)
class Silence:
    """When a WORKING session is silent: its last activity is more than `after` before WAHA was read (`read_at`)."""

    read_at: dt.datetime
    after: dt.timedelta = DEFAULT_SILENT_AFTER

    def silent(self, session: WahaSession) -> bool:
        return (
            session.status.upper() == WORKING
            and session.activity_at is not None
            and session.activity_at < self.read_at - self.after
        )

    def detail(self, session: WahaSession) -> str:
        idle = (self.read_at - session.activity_at).total_seconds() / 60 if session.activity_at else 0
        return (
            f"WAHA: {session.status}, but its last activity was {idle:.0f} min before WAHA was read "
            f"({session.activity_at:%Y-%m-%d %H:%M:%S} UTC; the threshold is {self.after.total_seconds() / 60:g} min)"
        )


def _who(phone: str | None, profile: str | None) -> str:
    """`5511999990001 'Loja 1'`: who is signed in, as far as it is known."""
    return " ".join(part for part in (phone, f"'{profile}'" if profile else None) if part)


def _words(status: str, phone: str | None = None, profile: str | None = None) -> str:
    who = _who(phone, profile)
    return f"{status} ({who})" if who else status


def _digits(phone: str | None) -> str | None:
    return re.sub(r"\D", "", phone) or None if phone else None


def _written(session: WahaSession) -> str:
    """`WAHA's status, phone number and profile name`: exactly what an insert writes besides the name."""
    parts = ["status"] + [
        label
        for label, value in (("phone number", session.phone_number), ("profile name", session.profile_name))
        if value
    ]
    return "WAHA's " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])


def _other_worker(session: WahaSession, this_worker: str | None) -> Difference:
    here = f"worker {this_worker}" if this_worker else "no worker"
    return Difference(
        kind="other_worker",
        session_name=session.name,
        session_id=None,
        database=None,
        waha=session.as_json(),
        detail=f"WAHA: {_words(session.status, session.phone_number, session.profile_name)}, run by worker "
        f"{session.assigned_worker}; this server is {here} (servers sharing one session store list each other's)",
        action="left alone: not this server's session, so never inserted, counted or stopped here",
        fixable=False,
    )


def _row_of_other_worker(row: SessionRow, session: WahaSession, this_worker: str | None) -> Difference:
    """A row of this server for a session another worker runs: noted, never written."""
    other = _other_worker(session, this_worker)
    return dataclasses.replace(
        other,
        session_id=row.id,
        database=row.as_json(),
        detail=f"database: {row.status} on this server; " + other.detail,
        action="left alone: the row is not written or stopped (it counts as the database's rows count); "
        f"it belongs on the server whose worker is {session.assigned_worker}: move it there "
        "(`waha-db servers list --user ID` shows each server's worker)",
    )


@dataclass(frozen=True)
class _Change:
    """One way a row differs from WAHA's session, before it is known whether --apply may write it."""

    kind: str
    detail: str
    action: str


def _row_changes(row: SessionRow, session: WahaSession | None) -> tuple[list[_Change], RowUpdate]:
    """How one row of this server differs from WAHA's session of its name (None: WAHA has none), and the write
    that brings it in line."""
    changes: list[_Change] = []
    update = RowUpdate(row.id)
    if session is None:
        if occupies(row.status):
            changes.append(
                _Change(
                    kind="missing_session",
                    detail=f"database: {row.status}, occupying a slot; WAHA does not have it",
                    action="mark it STOPPED (the row stays, as history)",
                )
            )
            update = RowUpdate(row.id, status="STOPPED")
        return changes, update
    if row.status.upper() != session.status.upper():
        frees = occupies(row.status) and not occupies(session.status)
        takes = occupies(session.status) and not occupies(row.status)
        effect = " (it frees its slot)" if frees else " (it takes a slot)" if takes else ""
        changes.append(
            _Change(
                kind="stopped_on_waha" if frees else "status",
                detail=f"database: {row.status}; WAHA: {session.status}",
                action=f"write WAHA's status {session.status}{effect}"
                + (", and last_connected_at = now()" if session.status == WORKING else ""),
            )
        )
        update = RowUpdate(row.id, status=session.status, connected=session.status == WORKING)
    phone = session.phone_number if session.phone_number != _digits(row.phone_number) else None
    profile = session.profile_name if session.profile_name not in (None, row.profile_name) else None
    if phone or profile:
        changes.append(
            _Change(
                kind="profile",
                detail=f"database: {_who(row.phone_number, row.profile_name) or 'no phone number, no profile name'}; "
                f"WAHA's me: {_who(session.phone_number, session.profile_name)}",
                action="write WAHA's "
                + " and ".join(n for n, v in (("phone number", phone), ("profile name", profile)) if v),
            )
        )
        update = dataclasses.replace(update, phone_number=phone, profile_name=profile)
    return changes, update


def _row_differences(
    row: SessionRow, session: WahaSession | None, changes: list[_Change], settling: bool
) -> list[Difference]:
    """The changes of a row as differences: each one fixable, or all of them settling (left alone)."""
    waha = session.as_json() if session else None
    if changes and settling:
        return [
            Difference(
                kind="settling",
                session_name=row.session_name,
                session_id=row.id,
                database=row.as_json(),
                waha=waha,
                detail="; ".join(f"{change.kind}: {change.detail}" for change in changes),
                action="left alone: the row was written moments ago (the app may still be creating or updating the "
                "session on WAHA); the next run decides",
                fixable=False,
            )
        ]
    return [
        Difference(
            kind=change.kind,
            session_name=row.session_name,
            session_id=row.id,
            database=row.as_json(),
            waha=waha,
            detail=change.detail,
            action=change.action,
            fixable=True,
        )
        for change in changes
    ]


def _silent(session: WahaSession, row: SessionRow | None, silence: Silence) -> Difference:
    return Difference(
        kind="silent",
        session_name=session.name,
        session_id=row.id if row else None,
        database=row.as_json() if row else None,
        waha=session.as_json(),
        detail=silence.detail(session),
        action="left alone (a report only): it may have stopped receiving anything; look at it in WAHA's "
        "dashboard, and restart it on the WAHA server if it stays silent",
        fixable=False,
    )


def _unknown_session(server: Server, session: WahaSession, recordable: bool) -> Difference:
    return Difference(
        kind="unknown_session",
        session_name=session.name,
        session_id=None,
        database=None,
        waha=session.as_json(),
        detail=f"WAHA: {_words(session.status, session.phone_number, session.profile_name)}; the database does not know it",
        action=f"insert it for the server's user ({server.user_id}) with {_written(session)}"
        if recordable
        else f"left alone: its name breaks the database's rule for session names (^{SESSION_NAME_RULE}$); "
        "rename it on the WAHA server"
        + (" (it occupies a slot there, so it is counted)" if occupies(session.status) else ""),
        fixable=recordable,
    )


def _counter_differences(server: Server, occupying: int) -> list[Difference]:
    """The server's counter against the sessions WAHA runs, and its capacity."""
    differences = []
    if server.sessions_ativas != occupying:
        differences.append(
            Difference(
                kind="counter",
                session_name=None,
                session_id=None,
                database={"sessions_ativas": server.sessions_ativas},
                waha={"sessions_ativas": occupying},
                detail=f"sessions_ativas is {server.sessions_ativas}; the sessions WAHA runs make it {occupying}",
                action=f"set sessions_ativas to the occupying sessions ({occupying})",
                fixable=True,
            )
        )
    if occupying > server.max_sessions:
        differences.append(
            Difference(
                kind="over_capacity",
                session_name=None,
                session_id=None,
                database={"max_sessions": server.max_sessions},
                waha={"sessions_ativas": occupying},
                detail=f"{occupying} occupying sessions on a server with max_sessions {server.max_sessions}",
                action=f"left alone: raise max_sessions (waha-db servers update {server.id} --max-sessions {occupying}) "
                "or stop sessions on the WAHA server",
                fixable=False,
            )
        )
    return differences


def compare(
    server: Server,
    rows: Iterable[SessionRow],
    waha: Iterable[WahaSession],
    settled_before: dt.datetime,
    *,
    writable: frozenset[uuid.UUID] | None = None,
    this_worker: str | None = None,
    silence: Silence | None = None,
) -> Comparison:
    """Every difference between a server's rows and WAHA's sessions, and what --apply writes (see module doc).

    Rows written at or after `settled_before` are settling: reported, never written.
    `writable`, when given, are the only rows that may be written (the rows --apply
    has locked); a row outside it that would need a write is settling too.
    `this_worker` is the server's WAHA worker id (None: none): a session whose
    assignedWorker names another is another worker's. `silence` says when a WORKING
    session is silent (None: not looked for).
    """
    rows = list(rows)
    rows_by_name = {row.session_name: row for row in rows}
    on_waha = {session.name: session for session in waha}
    theirs = {
        name
        for name, session in on_waha.items()
        if session.assigned_worker is not None and session.assigned_worker != this_worker
    }
    differences: list[Difference] = []
    updates: list[RowUpdate] = []
    inserts: list[WahaSession] = []
    occupying = 0
    beyond_rows = 0

    for row in rows:
        if row.session_name in theirs:
            differences.append(_row_of_other_worker(row, on_waha[row.session_name], this_worker))
            occupying += occupies(row.status)
            continue
        session = on_waha.get(row.session_name)
        changes, update = _row_changes(row, session)
        settling = row.updated_at >= settled_before or (writable is not None and row.id not in writable)
        differences.extend(_row_differences(row, session, changes, settling))
        if changes and not settling:
            updates.append(update)
        final_status = row.status if settling or update.status is None else update.status
        occupying += occupies(final_status)

    for session in on_waha.values():
        if session.name in theirs:
            if session.name not in rows_by_name:
                differences.append(_other_worker(session, this_worker))
            continue
        if silence is not None and silence.silent(session):
            differences.append(_silent(session, rows_by_name.get(session.name), silence))
        if session.name in rows_by_name:
            continue
        recordable = re.fullmatch(SESSION_NAME_RULE, session.name) is not None
        differences.append(_unknown_session(server, session, recordable))
        occupying += occupies(session.status)
        if recordable:
            inserts.append(session)
        else:
            beyond_rows += occupies(session.status)

    differences.extend(_counter_differences(server, occupying))
    differences.sort(key=lambda d: (KINDS.index(d.kind), d.session_name or ""))
    return Comparison(
        differences=tuple(differences),
        updates=tuple(updates),
        inserts=tuple(inserts),
        occupying=occupying,
        beyond_rows=beyond_rows,
    )
