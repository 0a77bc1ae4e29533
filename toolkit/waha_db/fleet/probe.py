"""Probing a WAHA server: the seed's "Testar Conexão", without a database.

A WAHA server is probed with `GET {api_url}/api/server/version` (header
`X-Api-Key` when the server has an api_key), within the row's `timeout`
seconds, retried `retry_attempts` times with backoff, through
waha_db.fleet.asking (which builds the request from the row's untrusted values
and tells a failure in our words). waha_db.fleet.checkup then asks a server that
answered its /health and worker id; waha_db.fleet.health records it all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from waha_db.database import mask_password
from waha_db.fleet.asking import DEFAULT_BACKOFF_SECONDS, Answer, get_json
from waha_db.fleet.policy import NetworkPolicy
from waha_db.fleet.reasons import AnswerFailure

VERSION_PATH = "/api/server/version"
# WAHA's health check (NestJS Terminus): 200 `ok`; 503 `error` (an indicator is down) or
# `shutting_down` (the server is stopping). WAHA Core before 2026.6.1 refuses it with 422.
HEALTH_OK = "ok"
HEALTH_ERROR = "error"
HEALTH_SHUTTING_DOWN = "shutting_down"
# Recorded through report_waha_server_failure: selection ranks the server after the healthy
# ones while its cooldown lasts. The words are waha-db's own; `drained:` marks a drain.
DRAINED_PREFIX = "drained:"
DRAINED_REASON = (
    f"{DRAINED_PREFIX} WAHA is shutting down (GET /health answered 503 shutting_down); "
    "no new sessions until it answers ok"
)
UNHEALTHY_REASON = "unhealthy: WAHA's own health check fails (GET /health answered 503 with status error)"


@dataclass(frozen=True)
class Probe:
    """What probing one WAHA server found.

    `reachable` means usable: it answered as a WAHA server and accepted our key.
    A server that answers 401 is up but useless to us, so it is not reachable.
    `error` is the reason in plain words when it is not; `attempts` counts requests.
    `interrupted`: the probe was cancelled because the command was stopped; it says
    nothing about the server and is not recorded.

    Once the version answered, WAHA's own health check and worker id are asked too
    (waha_db.fleet.checkup): `health` is what GET /health said when WAHA answered it as
    documented (`ok`, or `error` / `shutting_down` with HTTP 503), None when it was not
    asked, is absent or refused (WAHA Core before 2026.6.1 answers 422), or said
    nothing readable; `worker_known` says whether GET /api/server/status answered,
    `worker_id` the id it gave (None: none).
    """

    reachable: bool
    latency_ms: float | None = None
    version: str | None = None
    engine: str | None = None
    tier: str | None = None
    error: str | None = None
    attempts: int = 0
    interrupted: bool = False
    health: str | None = None
    worker_id: str | None = None
    worker_known: bool = False

    @property
    def drained(self) -> bool:
        """WAHA answers, and says it is shutting down: no new sessions, but not failed."""
        return self.reachable and self.health == HEALTH_SHUTTING_DOWN

    @property
    def unhealthy(self) -> bool:
        """WAHA answers, and its own health check fails (GET /health: 503 with status error)."""
        return self.reachable and self.health == HEALTH_ERROR

    @property
    def outcome(self) -> str | None:
        """What is recorded: None for a success, else the reason of the failure (or of the drain)."""
        if not self.reachable:
            return self.error or "unreachable"
        if self.drained:
            return DRAINED_REASON
        if self.unhealthy:
            return UNHEALTHY_REASON
        return None


def display_api_url(api_url: str) -> str:
    """The server URL as it may be printed: a password in its userinfo is masked."""
    return mask_password(api_url)


def printable(text: str) -> str:
    """A server's text as it may be printed to a terminal: control characters escaped (`\\x1b`), never interpreted."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def read_version(answer: object) -> tuple[str, str | None, str | None]:
    """(version, engine, tier) from the JSON of /api/server/version; a AnswerFailure when it is not WAHA's.

    They are the server's words, printed by the CLI: control characters come out escaped.
    """
    fields = answer if isinstance(answer, dict) else {}
    version = fields.get("version")
    if not isinstance(version, str) or not version.strip():
        raise AnswerFailure("not a WAHA server: the JSON answer has no version", retry=False)
    engine = fields.get("engine")
    tier = fields.get("tier")
    return (
        printable(version),
        printable(engine) if isinstance(engine, str) else None,
        printable(tier) if isinstance(tier, str) else None,
    )


def probe_from_answer(answer: Answer[tuple[str, str | None, str | None]]) -> Probe:
    """The Probe of an answer of /api/server/version."""
    if not answer.ok or answer.value is None:
        return Probe(reachable=False, error=answer.error, attempts=answer.attempts, interrupted=answer.interrupted)
    version, engine, tier = answer.value
    return Probe(
        reachable=True,
        latency_ms=answer.latency_ms,
        version=version,
        engine=engine,
        tier=tier,
        attempts=answer.attempts,
    )


def probe_server(
    api_url: str,
    *,
    api_key: str | None = None,
    timeout: float = 30,
    retry_attempts: int = 3,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    stop: threading.Event | None = None,
    policy: NetworkPolicy | None = None,
) -> Probe:
    """Probe one WAHA server at /api/server/version (see `ask` for timeouts and retries); never raises."""
    answer = get_json(
        api_url,
        VERSION_PATH,
        read_version,
        api_key=api_key,
        timeout=timeout,
        retry_attempts=retry_attempts,
        backoff=backoff,
        stop=stop,
        policy=policy,
    )
    return probe_from_answer(answer)


def describe_waha(version: str, engine: str | None, tier: str | None) -> str:
    """`WAHA 2024.10.1 (WEBJS, CORE)`: what a server said it is."""
    details = ", ".join(part for part in (engine, tier) if part)
    return f"WAHA {version}" + (f" ({details})" if details else "")


def describe_probe(probe: Probe) -> str:
    """`reachable, 12 ms, WAHA 2026.9.1 (GOWS, CORE), health ok, worker w1` or the reason it is not.

    What GET /health said is told only when WAHA answered it (WAHA Core before 2026.6.1
    refuses it), the worker only when there is one.
    """
    if probe.reachable:
        text = f"reachable, {probe.latency_ms:.0f} ms, {describe_waha(probe.version or '', probe.engine, probe.tier)}"
        if probe.health == HEALTH_OK:
            text += ", health ok"
        if probe.worker_id:
            text += f", worker {probe.worker_id}"
        if probe.drained or probe.unhealthy:
            text += f"; {probe.outcome}"
        return text
    tries = f" ({probe.attempts} attempts)" if probe.attempts > 1 else ""
    return f"unreachable: {probe.error}{tries}"
