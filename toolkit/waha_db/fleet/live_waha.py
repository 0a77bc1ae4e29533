"""`sessions reconcile --live`, WAHA's side: the sessions each server runs, and whose they are.

WAHA answers `GET {api_url}/api/sessions?all=true` with every session it has:
`name`, `status`, `me` (the signed-in phone: `id` like `5511999990001@c.us`,
`pushName`) and, on newer releases, `assignedWorker` (the WAHA_WORKER_ID of the
worker that runs it, when servers share one session store) and, since WAHA 2026,
`timestamps.activity` (ms since the epoch: when the session last did something).
`read_sessions` reads that answer (pure); `ask_sessions` asks every server at once,
and a server whose list names a worker its own worker id too (waha_db.fleet.live).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from waha_db.fleet.asking import Answer, Tally, Target, ask, ask_round, unanswered
from waha_db.fleet.checkup import ask_worker, worker_name
from waha_db.fleet.health import RoundOptions, target
from waha_db.fleet.reasons import AnswerFailure
from waha_db.fleet.rounds import fair_order
from waha_db.fleet.servers import Server
from waha_db.fleet.transport import FleetClient

SESSIONS_PATH = "/api/sessions?all=true"
# A session entry is under a kilobyte (more with many webhooks); a Plus server runs hundreds.
MAX_SESSIONS_BODY_BYTES = 16 * 1024 * 1024
# A WhatsApp chat id of a phone: digits, an optional device (NOWEB's `:12`), a phone domain.
PHONE_CHAT_ID = re.compile(r"(\d{1,20})(?::\d+)?@(?:c\.us|s\.whatsapp\.net)")
PROFILE_NAME_LENGTH = 255  # waha_sessions.profile_name varchar(255)
STATUS_LENGTH = 50  # waha_sessions.status varchar(50)
# timestamps.activity is read as ms since the epoch between these (anything else is no activity).
_ACTIVITY_RANGE_MS = (946684800000, 4102444800000)  # 2000-01-01 .. 2100-01-01


@dataclass(frozen=True)
class WahaSession:
    """A session as WAHA lists it."""

    name: str
    status: str
    phone_number: str | None = None  # the digits of `me.id`, when it is a phone's chat id
    profile_name: str | None = None  # `me.pushName`
    engine: str | None = None
    assigned_worker: str | None = None
    activity_at: dt.datetime | None = None  # `timestamps.activity` (WAHA 2026)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "phone_number": self.phone_number,
            "profile_name": self.profile_name,
            "engine": self.engine,
            "assigned_worker": self.assigned_worker,
            "activity_at": None if self.activity_at is None else self.activity_at.isoformat(),
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


def _activity(timestamps: object) -> dt.datetime | None:
    """`timestamps.activity` (ms since the epoch) as a time; None when absent or not a plausible time."""
    value = timestamps.get("activity") if isinstance(timestamps, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if not _ACTIVITY_RANGE_MS[0] <= value <= _ACTIVITY_RANGE_MS[1]:
        return None
    return dt.datetime.fromtimestamp(value / 1000, dt.timezone.utc)


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
            assigned_worker=worker_name(entry.get("assignedWorker")),
            activity_at=_activity(entry.get("timestamps")),
        )
    return tuple(sorted(sessions.values(), key=lambda session: session.name))


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


async def read_server(
    fleet: FleetClient, target: Target, *, backoff: float, tally: Tally, known: list[WahaReading]
) -> WahaReading:
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
    if not sessions.ok or not any(session.assigned_worker for session in sessions.value or ()):
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
