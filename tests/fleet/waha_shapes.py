"""What WAHA answers, as the tests (and the fake WAHA server) use it: recorded, and typed.

Three generations, each from the best source there is:

- WAHA 2024.10.8, recorded: what a real WAHA Core 2024.10.8 server (NOWEB engine,
  built from WAHA's source) answered on 127.0.0.1, one file per call, copied
  verbatim into tests/fleet/recorded/2024.10.8/ (request line, status, headers,
  body); its `session.status` webhooks in webhooks/ (what the receiving end got:
  headers and body). That server does not check the API key, answers /health with
  422 (a Plus feature then), refuses a session not named `default` with 422, and
  sends events with neither `id` nor `timestamp`.
- WAHA 2026 (2026.9.x), typed: the examples below validate against the models
  of PyPI's waha-py 2026.9.x (`waha.generated.models`, generated from WAHA's
  OpenAPI document), as tests/fleet/test_waha_shapes.py proves: the server's
  version and status (with `worker.id`), sessions with `assignedWorker`,
  `presence` and `timestamps.activity` in each of the 7 statuses, and a
  `session.status` event with `id` and `timestamp`. /health has no model there;
  its answers follow the schema of /health in the recorded server's own OpenAPI
  document and WAHA's docs (`status`: ok, error or shutting_down).
- WAHA 2025, hand-written between the two: the 2024.10.8 fields with the GOWS
  engine and `assignedWorker`, and events that carry `id` and `timestamp`
  (WAHA's events have had them since 2025); no model of that year to check them
  against.

`answers_of(version, ...)` gives what a server of that version answers, in the shape
of its generation (the fake WAHA of tests/fleet/fake_waha.py serves exactly these).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict
from waha.generated import models

from waha_db.fleet.identity import TIERS_MERGED, parse_waha_version

RECORDED = Path(__file__).parent / "recorded" / "2024.10.8"

# --------------------------------------------------------------------------
# WAHA Core 2024.10.8, recorded
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedAnswer:
    """One call to the real server: what was asked, and what it answered."""

    method: str
    path: str
    status: int
    headers: dict[str, str]
    text: str

    def json(self):
        return json.loads(self.text)


def recorded(name: str) -> RecordedAnswer:
    """The recorded call `name` (e.g. `04_server_version_good`), parsed from its .http file."""
    raw = (RECORDED / f"{name}.http").read_bytes().decode()
    request, _, response = raw.partition("\n\n")
    method, path = request.removeprefix(">>> ").split()[:2]
    head, _, body = response.partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return RecordedAnswer(method, path, int(status_line.split()[1]), headers, body.strip())


# The path /health of the recorded server's own OpenAPI document (an excerpt of its openapi.json).
RECORDED_OPENAPI_HEALTH = json.loads((RECORDED / "openapi_health.json").read_text())["paths"]["/health"]


def recorded_webhook(number: str) -> tuple[dict[str, str], dict]:
    """The headers and JSON body of recorded webhook `number` (e.g. `025`), as the receiver got them."""
    delivery = json.loads((RECORDED / "webhooks" / f"{number}.json").read_text())
    return delivery["headers"], delivery["body"]


# --------------------------------------------------------------------------
# WAHA 2026, typed by waha-py 2026.9.x
# --------------------------------------------------------------------------


class SessionStatusEvent(models.WAHAWebhookSessionStatus):
    """waha-py's `session.status` event model, with `event` as WAHA sends it.

    WAHA's OpenAPI document declares `event` as `type: object` with string values in
    its enum (the recorded 2024.10.8 document does too), and the generator made it a
    dict; WAHA sends the string "session.status" (every recorded webhook does). The
    same generator habit types each of a webhook config's `events` as an object.
    """

    event: Literal["session.status"]


class HealthIndicator(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str


class HealthCheck(BaseModel):
    """GET /health (no model in waha-py): the schema of /health in the recorded OpenAPI document,
    `status` as WAHA's docs list it."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "error", "shutting_down"]
    info: dict[str, HealthIndicator] | None = None
    error: dict[str, HealthIndicator] | None = None
    details: dict[str, HealthIndicator] | None = None


WORKER = "worker-a"  # this server's WAHA_WORKER_ID
OTHER_WORKER = "worker-b"  # another server sharing the same session store
ACTIVITY_MS = 1796578900000  # timestamps.activity: a moment of 2026, in ms

SERVER_VERSION_2026 = {
    "version": "2026.9.1",
    "engine": "GOWS",
    "tier": "CORE",  # the free image: since 2026.6.1 it runs every Plus feature, unlimited sessions included
    "browser": "/usr/bin/chromium",
    "platform": "linux/x64",
    "worker": {"id": WORKER},
}

SERVER_STATUS_2026 = {"startTimestamp": 1796578800000, "uptime": 100000, "worker": {"id": WORKER}}
# Servers without WAHA_WORKER_ID: what the recorded 2024.10.8 server answers too.
SERVER_STATUS_2026_NO_WORKER = {"startTimestamp": 1796578800000, "uptime": 100000, "worker": {"id": ""}}

STATUSES_2026 = (
    "STOPPED",
    "STARTING",
    "SCAN_QR_CODE",
    "PASSKEY_REQUIRED",
    "PASSKEY_CONFIRMATION_REQUIRED",
    "WORKING",
    "FAILED",
)


def session_info_2026(
    name: str,
    status: str,
    *,
    phone: str | None = None,
    push_name: str | None = None,
    worker: str | None = WORKER,
    activity_ms: float = ACTIVITY_MS,
) -> dict:
    """An entry of GET /api/sessions?all=true as WAHA 2026 lists it (waha-py's SessionInfo)."""
    return {
        "name": name,
        "status": status,
        "config": None,
        "me": {"id": f"{phone}@c.us", "pushName": push_name or ""} if phone else None,
        "assignedWorker": worker,
        # waha-py types it as an object with no properties; nothing here reads it.
        "presence": {},
        "timestamps": {"activity": activity_ms},
    }


# One session in each of the 7 statuses, this worker's; a WORKING one of another worker.
SESSIONS_2026 = [
    session_info_2026(f"cli-{index}", status, phone=f"55119999900{index:02d}" if status == "WORKING" else None)
    for index, status in enumerate(STATUSES_2026, start=1)
] + [session_info_2026("theirs", "WORKING", phone="5511999990099", push_name="Outra", worker=OTHER_WORKER)]

# GET /health (WAHA's docs; the schema of /health in the recorded OpenAPI document).
HEALTH_OK_2026 = {
    "status": "ok",
    "info": {"mediaFiles.space": {"status": "up"}, "sessionsFiles.space": {"status": "up"}},
    "error": {},
    "details": {"mediaFiles.space": {"status": "up"}, "sessionsFiles.space": {"status": "up"}},
}
HEALTH_ERROR_2026 = {
    "status": "error",
    "info": {"mediaFiles.space": {"status": "up"}},
    "error": {"mongodb": {"status": "down", "message": "Could not connect"}},
    "details": {"mediaFiles.space": {"status": "up"}, "mongodb": {"status": "down", "message": "Could not connect"}},
}
HEALTH_SHUTTING_DOWN_2026 = {"status": "shutting_down", "info": {}, "error": {}, "details": {}}
HEALTH_ANSWERS_2026 = ((200, HEALTH_OK_2026), (503, HEALTH_ERROR_2026), (503, HEALTH_SHUTTING_DOWN_2026))

# The `environment` of every event: what GET /api/server/version answers (WAHAEnvironment, both).
ENVIRONMENT_2026 = SERVER_VERSION_2026


def session_status_event_2026(
    session: str,
    status: str,
    *,
    event_id: str = "evt_01kc5qz3w8h2m4n6p8r0t2v4x6",
    timestamp: int = 1796578941569,
    phone: str | None = None,
    push_name: str | None = None,
) -> dict:
    """A `session.status` webhook body as WAHA 2026 sends it (waha-py's WAHAWebhookSessionStatus)."""
    return {
        "id": event_id,
        "timestamp": timestamp,
        "event": "session.status",
        "session": session,
        "metadata": {},
        "me": {"id": f"{phone}@c.us", "pushName": push_name or ""} if phone else None,
        "payload": {
            "name": session,
            "status": status,
            "statuses": [
                {"status": "STARTING", "timestamp": timestamp - 2000},
                {"status": status, "timestamp": timestamp},
            ],
        },
        "engine": "GOWS",
        "environment": copy.deepcopy(ENVIRONMENT_2026),
    }


# --------------------------------------------------------------------------
# WAHA 2025, hand-written
# --------------------------------------------------------------------------

SERVER_VERSION_2025 = {"version": "2025.11.3", "engine": "GOWS", "tier": "CORE", "browser": "/usr/bin/chromium"}


def session_status_event_2025(session: str, status: str, *, event_id: str, timestamp: int) -> dict:
    """A `session.status` webhook body of WAHA 2025: with `id` and `timestamp`, the 2024.10.8 environment."""
    return {
        "id": event_id,
        "timestamp": timestamp,
        "event": "session.status",
        "session": session,
        "me": None,
        "payload": {"name": session, "status": status},
        "engine": "GOWS",
        "environment": dict(SERVER_VERSION_2025),
    }


# --------------------------------------------------------------------------
# WAHA Core 2024.10.8's shapes, for other values (what the recorded files hold)
# --------------------------------------------------------------------------


def session_info_2024(name: str, status: str, *, phone: str | None = None, push_name: str | None = None) -> dict:
    """An entry of GET /api/sessions?all=true as the recorded 2024.10.8 lists it (07, 28, 33)."""
    return {
        "name": name,
        "status": status,
        "config": None,
        "me": {"id": f"{phone}@c.us", "pushName": push_name or ""} if phone else None,
    }


SERVER_VERSION_2024 = recorded("04_server_version_good").json()
HEALTH_REFUSED_2024 = (422, recorded("02_health_good").json())


def session_info_2025(
    name: str, status: str, *, phone: str | None = None, push_name: str | None = None, worker: str | None = None
) -> dict:
    """An entry of GET /api/sessions?all=true of WAHA 2025: the recorded 2024.10.8 fields and `assignedWorker`."""
    return session_info_2024(name, status, phone=phone, push_name=push_name) | {"assignedWorker": worker}


# --------------------------------------------------------------------------
# Any version: what a server of that version answers
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answers:
    """What a WAHA server of one version answers: its generation's shapes, with the given values."""

    version: str
    engine: str
    tier: str
    worker: str = ""
    health: str = "ok"  # what /health says, where the server has it: ok, error, shutting_down

    @property
    def generation(self) -> int:
        """2024 (the recorded shapes), 2025 or 2026, by the version's year; 2026 for one that does not parse."""
        release = parse_waha_version(self.version)
        return 2026 if release is None else min(max(release.year, 2024), 2026)

    @property
    def statuses(self) -> tuple[str, ...]:
        return (
            STATUSES_2026 if self.generation == 2026 else ("STOPPED", "STARTING", "SCAN_QR_CODE", "WORKING", "FAILED")
        )

    def server_version(self) -> dict:
        if self.generation == 2026:
            return SERVER_VERSION_2026 | {
                "version": self.version,
                "engine": self.engine,
                "tier": self.tier,
                "worker": {"id": self.worker},
            }
        return SERVER_VERSION_2024 | {"version": self.version, "engine": self.engine, "tier": self.tier}

    def server_status(self) -> dict:
        """The same shape in every generation (the recorded 2024.10.8 answer has `worker.id` already)."""
        return SERVER_STATUS_2026 | {"worker": {"id": self.worker}}

    def health_check(self) -> tuple[int, dict]:
        """(HTTP status, body) of GET /health: refused with 422 by WAHA Core before 2026.6.1, as recorded."""
        release = parse_waha_version(self.version)
        if self.tier.upper() == "CORE" and (release is None or release < TIERS_MERGED):
            return HEALTH_REFUSED_2024
        return {"ok": (200, HEALTH_OK_2026), "error": (503, HEALTH_ERROR_2026)}.get(
            self.health, (503, HEALTH_SHUTTING_DOWN_2026)
        )

    def session(
        self,
        name: str,
        status: str,
        *,
        phone: str | None = None,
        push_name: str | None = None,
        worker: str | None = None,
        activity_ms: float | None = None,
    ) -> dict:
        """An entry of GET /api/sessions?all=true; `worker` its assignedWorker (None: this server's, if any)."""
        if status not in self.statuses:
            raise ValueError(f"WAHA {self.version} has no status {status!r}; one of {', '.join(self.statuses)}")
        assigned = worker if worker is not None else (self.worker or None)
        if self.generation == 2024:
            return session_info_2024(name, status, phone=phone, push_name=push_name)
        if self.generation == 2025:
            return session_info_2025(name, status, phone=phone, push_name=push_name, worker=assigned)
        return session_info_2026(
            name,
            status,
            phone=phone,
            push_name=push_name,
            worker=assigned,
            activity_ms=time.time() * 1000 if activity_ms is None else activity_ms,
        )
