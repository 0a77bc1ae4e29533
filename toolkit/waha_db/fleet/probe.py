"""Asking a WAHA server over HTTP: the seed's "Testar Conexão", without a database.

A WAHA server is probed with `GET {api_url}/api/server/version` (header
`X-Api-Key` when the server has an api_key), within the row's `timeout`
seconds, retried `retry_attempts` times with backoff. The outcome is told in
plain words (name does not resolve, connection refused, timed out, TLS error,
API key rejected, not a WAHA server, server error); waha_db.fleet.health
records it in the database. `get_json` is the one way the toolkit asks WAHA
anything (waha_db.fleet.live reads /api/sessions through it too).

No request goes anywhere but the server's own URL: redirects are not followed,
and proxy settings of the environment are ignored (`trust_env=False`), so an
api_key never travels to a third party.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from waha_db.database import mask_password

VERSION_PATH = "/api/server/version"
# A WAHA version answer is a few dozen bytes; anything much larger is not one.
MAX_BODY_BYTES = 64 * 1024
DEFAULT_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
USER_AGENT = "waha-db health check"
T = TypeVar("T")


# --------------------------------------------------------------------------
# Probing (HTTP only, no database)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What probing one WAHA server found.

    `reachable` means usable: it answered as a WAHA server and accepted our key.
    A server that answers 401 is up but useless to us, so it is not reachable.
    `error` is the reason in plain words when it is not; `attempts` counts requests.
    """

    reachable: bool
    latency_ms: float | None = None
    version: str | None = None
    engine: str | None = None
    tier: str | None = None
    error: str | None = None
    attempts: int = 0


class AnswerFailure(Exception):
    """One attempt failed; `retry` says whether another attempt could do better.

    The readers of get_json raise it for an answer that is JSON but not WAHA's.
    """

    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


def display_api_url(api_url: str) -> str:
    """The server URL as it may be printed: a password in its userinfo is masked."""
    return mask_password(api_url)


def _causes(exc: BaseException) -> Iterable[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def describe_transport_error(exc: httpx.TransportError, host: str, timeout: float) -> AnswerFailure:
    """The plain-words reason for a request that got no HTTP response."""
    causes = list(_causes(exc))
    if isinstance(exc, httpx.TimeoutException):
        return AnswerFailure(f"timed out after {timeout:g} s", retry=True)
    if any(isinstance(c, socket.gaierror) for c in causes):
        return AnswerFailure(f"name does not resolve: {host}", retry=True)
    tls = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
    if tls is not None:
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or str(tls)
        return AnswerFailure(f"TLS error: {str(detail).lower().replace('_', ' ')}", retry=False)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return AnswerFailure("connection refused", retry=True)
    if isinstance(exc, httpx.RemoteProtocolError):
        return AnswerFailure("connection closed by the server before a complete answer", retry=True)
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)) or any(isinstance(c, ConnectionResetError) for c in causes):
        return AnswerFailure("connection reset by the server", retry=True)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return AnswerFailure("not an http:// or https:// URL", retry=False)
    if isinstance(exc, httpx.ConnectError):
        return AnswerFailure(f"cannot connect: {exc}", retry=True)
    return AnswerFailure(f"request failed: {exc.__class__.__name__}: {exc}", retry=True)


def check_answer(response: httpx.Response, has_api_key: bool, path: str) -> None:
    """Raise the plain-words AnswerFailure of an HTTP answer that is not a usable 200 from WAHA."""
    status = response.status_code
    if status in (401, 403):
        if has_api_key:
            reason = f"API key rejected (HTTP {status})"
        else:
            reason = f"API key rejected (HTTP {status}): the server wants an API key and none is set"
        raise AnswerFailure(reason, retry=False)
    if status >= 500:
        raise AnswerFailure(f"server error (HTTP {status})", retry=True)
    if 300 <= status < 400:
        target = response.headers.get("location", "?")
        raise AnswerFailure(
            f"redirected (HTTP {status}) to {display_api_url(target)}: not followed; set api_url to the final address",
            retry=False,
        )
    if status != 200:
        raise AnswerFailure(f"not a WAHA server (HTTP {status} at {path.split('?')[0]})", retry=False)


def read_version(answer: object) -> tuple[str, str | None, str | None]:
    """(version, engine, tier) from the JSON of /api/server/version; a AnswerFailure when it is not WAHA's."""
    version = answer.get("version") if isinstance(answer, dict) else None
    if not isinstance(version, str) or not version.strip():
        raise AnswerFailure("not a WAHA server: the JSON answer has no version", retry=False)
    engine = answer.get("engine")
    tier = answer.get("tier")
    return version, engine if isinstance(engine, str) else None, tier if isinstance(tier, str) else None


@dataclass(frozen=True)
class Answer(Generic[T]):
    """What one GET of a WAHA endpoint gave: the value read from its JSON, or the reason there is none."""

    value: T | None
    latency_ms: float | None
    error: str | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.error is None


def _attempt(
    client: httpx.Client,
    url: str,
    path: str,
    api_key: str | None,
    timeout: float,
    max_body_bytes: int,
    read: Callable[[object], T],
) -> tuple[T, float]:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if api_key:
        headers["X-Api-Key"] = api_key
    started = time.perf_counter()
    deadline = started + timeout
    try:
        with client.stream("GET", url, headers=headers) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_body_bytes:
                    raise AnswerFailure(
                        f"not a WAHA server: the answer is larger than {max_body_bytes} bytes", retry=False
                    )
                if time.perf_counter() > deadline:
                    raise AnswerFailure(f"timed out after {timeout:g} s", retry=True)
            latency_ms = (time.perf_counter() - started) * 1000
    except httpx.TransportError as exc:
        raise describe_transport_error(exc, httpx.URL(url).host, timeout) from exc
    check_answer(response, bool(api_key), path)
    try:
        answer = json.loads(bytes(body))
    except ValueError:
        raise AnswerFailure("not a WAHA server: the answer is not JSON", retry=False) from None
    return read(answer), latency_ms


def get_json(
    api_url: str,
    path: str,
    read: Callable[[object], T],
    *,
    api_key: str | None = None,
    timeout: float = 30,
    retry_attempts: int = 3,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    stop: threading.Event | None = None,
    transport: httpx.BaseTransport | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Answer[T]:
    """GET `{api_url}{path}` from a WAHA server and `read` its JSON; never raises for anything the server or network does.

    Each attempt is bounded by `timeout` seconds (every network phase, and the
    whole answer). Transient failures (timeouts, refused or dropped connections,
    HTTP 5xx, name resolution) are retried `retry_attempts` times, waiting
    `backoff` seconds doubled each time (capped at 5 s); answers that another
    attempt would not change (401, not WAHA, TLS, an answer `read` refuses with a
    AnswerFailure) are not. `stop`, when set, cuts the retries short (the monitor's
    shutdown). `transport` is for tests.
    """
    url = api_url.rstrip("/") + path
    failure = AnswerFailure("not asked", retry=False)
    attempts = 0
    with httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
        transport=transport,
    ) as client:
        for attempt in range(retry_attempts + 1):
            if attempt:
                pause = min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
                if stop is not None and stop.wait(pause):
                    break
                if stop is None and pause > 0:
                    time.sleep(pause)
            attempts += 1
            try:
                value, latency_ms = _attempt(client, url, path, api_key, timeout, max_body_bytes, read)
            except AnswerFailure as exc:
                failure = exc
            except httpx.InvalidURL as exc:
                failure = AnswerFailure(f"invalid URL: {exc}", retry=False)
            except Exception as exc:  # a probe reports, it never takes the caller down
                failure = AnswerFailure(f"unexpected error: {exc.__class__.__name__}: {exc}", retry=False)
            else:
                return Answer(value, latency_ms, None, attempts)
            if not failure.retry:
                break
    return Answer(None, None, failure.reason, attempts)


def probe_server(
    api_url: str,
    *,
    api_key: str | None = None,
    timeout: float = 30,
    retry_attempts: int = 3,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    stop: threading.Event | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Probe:
    """Probe one WAHA server at /api/server/version (see get_json for timeouts and retries); never raises."""
    answer = get_json(
        api_url,
        VERSION_PATH,
        read_version,
        api_key=api_key,
        timeout=timeout,
        retry_attempts=retry_attempts,
        backoff=backoff,
        stop=stop,
        transport=transport,
    )
    if not answer.ok:
        return Probe(reachable=False, error=answer.error, attempts=answer.attempts)
    version, engine, tier = answer.value
    return Probe(
        reachable=True,
        latency_ms=answer.latency_ms,
        version=version,
        engine=engine,
        tier=tier,
        attempts=answer.attempts,
    )


def describe_waha(version: str, engine: str | None, tier: str | None) -> str:
    """`WAHA 2024.10.1 (WEBJS, CORE)`: what a server said it is."""
    details = ", ".join(part for part in (engine, tier) if part)
    return f"WAHA {version}" + (f" ({details})" if details else "")


def describe_probe(probe: Probe) -> str:
    """`reachable, 12 ms, WAHA 2024.10.1 (WEBJS, CORE)` or the reason it is not."""
    if probe.reachable:
        return f"reachable, {probe.latency_ms:.0f} ms, {describe_waha(probe.version, probe.engine, probe.tier)}"
    tries = f" ({probe.attempts} attempts)" if probe.attempts > 1 else ""
    return f"unreachable: {probe.error}{tries}"
