"""The rest of a server's check, once its version answered: WAHA's own health check and its worker id.

`servers test` and `monitor` ask `GET {api_url}/api/server/version` first, with the
row's retries (waha_db.fleet.probe): that answer says whether the server is reachable
and what it is. Only then, and only for a server that answered, two more requests
go out together, one attempt each, within the row's timeout:

- `GET /health`: WAHA's health check (NestJS Terminus). 200 with `status: ok`;
  503 with `status: error` (one of its indicators is down: the server is failing) or
  `shutting_down` (it is stopping: drained, no new sessions, but not failed). WAHA
  Core before 2026.6.1 refuses it with 422 (a Plus feature then, as the recorded
  2024.10.8 server answers); that, a 404, or any answer not in that form says
  nothing, and the version's answer decides, as before /health was asked.
- `GET /api/server/status`: `worker.id` is the server's WAHA_WORKER_ID. Servers
  that share one session store list each other's sessions, each naming its
  `assignedWorker` (waha_db.fleet.live). An empty id, no `worker`, or a 404 means
  none (the recorded 2024.10.8 server answers `{"worker": {"id": ""}}`); a request
  that fails leaves the recorded id as it was.

The budget: a server that does not answer its version costs what it did (no more
requests); one that does costs at most one more timeout, its two requests at once,
each through the round's global and per-host caps (waha_db.fleet.transport). A
round's deadline that passes during them keeps what the version said: the server
is recorded as the version's answer has it, health and worker unknown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from collections.abc import Callable, Sequence

from waha_db.fleet.asking import DEFAULT_BACKOFF_SECONDS, Tally, Target, ask, ask_round, unanswered
from waha_db.fleet.policy import NetworkPolicy
from waha_db.fleet.probe import (
    HEALTH_ERROR,
    HEALTH_OK,
    HEALTH_SHUTTING_DOWN,
    VERSION_PATH,
    Probe,
    printable,
    probe_from_answer,
    read_version,
)
from waha_db.fleet.reasons import AnswerFailure
from waha_db.fleet.rounds import DEFAULT_DEADLINE_SECONDS
from waha_db.fleet.transport import FleetClient, Limits

HEALTH_PATH = "/health"
STATUS_PATH = "/api/server/status"
# report_waha_server_worker keeps at most this much of an id (revision 0012).
WORKER_ID_LENGTH = 100


def worker_name(value: object) -> str | None:
    """A worker id as WAHA writes it (`worker.id`, `assignedWorker`): trimmed, printable; None for none."""
    if not isinstance(value, str) or not value.strip():
        return None
    return printable(value.strip())[:WORKER_ID_LENGTH]


def read_health(status: int, answer: object) -> str | None:
    """What GET /health said, when WAHA said it as documented; None when it says nothing (see module doc)."""
    said = answer.get("status") if isinstance(answer, dict) else None
    if status == 200 and said == HEALTH_OK:
        return HEALTH_OK
    if status == 503 and said in (HEALTH_ERROR, HEALTH_SHUTTING_DOWN):
        return str(said)
    return None


def read_worker(status: int, answer: object) -> str | None:
    """The worker id of GET /api/server/status (None: none); AnswerFailure when the answer does not tell."""
    if status == 404:
        return None
    if status != 200 or not isinstance(answer, dict):
        raise AnswerFailure(f"no worker id (HTTP {status} at {STATUS_PATH})", retry=False)
    worker = answer.get("worker")
    return worker_name(worker.get("id")) if isinstance(worker, dict) else None


async def ask_worker(fleet: FleetClient, target: Target) -> tuple[bool, str | None]:
    """(known, worker id) of one server: one attempt of GET /api/server/status."""
    once = dataclasses.replace(target, retry_attempts=0)
    answer = await ask(fleet, once, STATUS_PATH, functools.partial(read_worker, 200), read_other=read_worker)
    return answer.ok, answer.value if answer.ok else None


async def ask_health(fleet: FleetClient, target: Target) -> str | None:
    """What GET /health said (see read_health), in one attempt; None when it did not tell."""
    once = dataclasses.replace(target, retry_attempts=0)
    answer = await ask(fleet, once, HEALTH_PATH, functools.partial(read_health, 200), read_other=read_health)
    return answer.value if answer.ok else None


async def check_server(
    fleet: FleetClient, target: Target, *, backoff: float, tally: Tally, known: list[Probe]
) -> Probe:
    """The version (with retries), then health and worker at once; what the version said is put in `known` first."""
    probe = probe_from_answer(await ask(fleet, target, VERSION_PATH, read_version, backoff=backoff, tally=tally))
    if not probe.reachable:
        return probe
    known.append(probe)
    health, (worker_known, worker_id) = await asyncio.gather(ask_health(fleet, target), ask_worker(fleet, target))
    return dataclasses.replace(probe, health=health, worker_known=worker_known, worker_id=worker_id)


def check_many(
    targets: Sequence[Target],
    *,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    limits: Limits | None = None,
    policy: NetworkPolicy | None = None,
    deadline: float | None = DEFAULT_DEADLINE_SECONDS,
    stop: threading.Event | None = None,
    order: Sequence[int] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[Probe]:
    """check_server for every target at once, as one round; the probes in the targets' order."""
    tallies = [Tally() for _ in targets]
    known: list[list[Probe]] = [[] for _ in targets]

    def unfinished(position: int, why: str) -> Probe:
        if why == "deadline" and known[position]:
            return known[position][0]  # the version answered; health and worker are unknown this round
        return probe_from_answer(unanswered(why, deadline, tallies[position].attempts))

    return ask_round(
        len(targets),
        lambda fleet, position: check_server(
            fleet, targets[position], backoff=backoff, tally=tallies[position], known=known[position]
        ),
        unfinished=unfinished,
        failed=lambda probe: probe.outcome is not None and not probe.drained,
        limits=limits,
        policy=policy,
        deadline=deadline,
        stop=stop,
        order=order,
        progress=progress,
    )
