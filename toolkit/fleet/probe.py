"""Probing a WAHA server over HTTP: the seed's "Testar Conexão", without a database.

A WAHA server is probed with `GET {api_url}/api/server/version` (header
`X-Api-Key` when the server has an api_key), within the row's `timeout`
seconds, retried `retry_attempts` times with backoff. The outcome is told in
plain words (name does not resolve, connection refused, timed out, TLS error,
API key rejected, not a WAHA server, server error); waha_db.fleet.health
records it in the database.

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
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from waha_db.database import mask_password

VERSION_PATH = "/api/server/version"
# A WAHA version answer is a few dozen bytes; anything much larger is not one.
MAX_BODY_BYTES = 64 * 1024
DEFAULT_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
USER_AGENT = "waha-db health check"


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


class _Failure(Exception):
    """One attempt failed; `retry` says whether another attempt could do better."""

    def __init__(self, reason: str, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


def version_url(api_url: str) -> str:
    """`{api_url}/api/server/version`, tolerating a trailing slash in api_url."""
    return api_url.rstrip("/") + VERSION_PATH


def display_api_url(api_url: str) -> str:
    """The server URL as it may be printed: a password in its userinfo is masked."""
    return mask_password(api_url)


def _causes(exc: BaseException) -> Iterable[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def describe_transport_error(exc: httpx.TransportError, host: str, timeout: float) -> _Failure:
    """The plain-words reason for a request that got no HTTP response."""
    causes = list(_causes(exc))
    if isinstance(exc, httpx.TimeoutException):
        return _Failure(f"timed out after {timeout:g} s", retry=True)
    if any(isinstance(c, socket.gaierror) for c in causes):
        return _Failure(f"name does not resolve: {host}", retry=True)
    tls = next((c for c in causes if isinstance(c, ssl.SSLError)), None)
    if tls is not None:
        detail = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or str(tls)
        return _Failure(f"TLS error: {str(detail).lower().replace('_', ' ')}", retry=False)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return _Failure("connection refused", retry=True)
    if isinstance(exc, httpx.RemoteProtocolError):
        return _Failure("connection closed by the server before a complete answer", retry=True)
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)) or any(isinstance(c, ConnectionResetError) for c in causes):
        return _Failure("connection reset by the server", retry=True)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return _Failure("not an http:// or https:// URL", retry=False)
    if isinstance(exc, httpx.ConnectError):
        return _Failure(f"cannot connect: {exc}", retry=True)
    return _Failure(f"request failed: {exc.__class__.__name__}: {exc}", retry=True)


def read_version(response: httpx.Response, body: bytes, has_api_key: bool) -> tuple[str, str | None, str | None]:
    """(version, engine, tier) from an answer of /api/server/version; a _Failure when unusable."""
    status = response.status_code
    if status in (401, 403):
        if has_api_key:
            reason = f"API key rejected (HTTP {status})"
        else:
            reason = f"API key rejected (HTTP {status}): the server wants an API key and none is set"
        raise _Failure(reason, retry=False)
    if status >= 500:
        raise _Failure(f"server error (HTTP {status})", retry=True)
    if 300 <= status < 400:
        target = response.headers.get("location", "?")
        raise _Failure(
            f"redirected (HTTP {status}) to {display_api_url(target)}: not followed; set api_url to the final address",
            retry=False,
        )
    if status != 200:
        raise _Failure(f"not a WAHA server (HTTP {status} at {VERSION_PATH})", retry=False)
    try:
        answer = json.loads(body)
    except ValueError:
        raise _Failure("not a WAHA server: the answer is not JSON", retry=False) from None
    version = answer.get("version") if isinstance(answer, dict) else None
    if not isinstance(version, str) or not version.strip():
        raise _Failure("not a WAHA server: the JSON answer has no version", retry=False)
    engine = answer.get("engine")
    tier = answer.get("tier")
    return version, engine if isinstance(engine, str) else None, tier if isinstance(tier, str) else None


def _attempt(client: httpx.Client, url: str, api_key: str | None, timeout: float) -> Probe:
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
                if len(body) > MAX_BODY_BYTES:
                    raise _Failure(f"not a WAHA server: the answer is larger than {MAX_BODY_BYTES} bytes", retry=False)
                if time.perf_counter() > deadline:
                    raise _Failure(f"timed out after {timeout:g} s", retry=True)
            latency_ms = (time.perf_counter() - started) * 1000
    except httpx.TransportError as exc:
        raise describe_transport_error(exc, httpx.URL(url).host, timeout) from exc
    version, engine, tier = read_version(response, bytes(body), bool(api_key))
    return Probe(reachable=True, latency_ms=latency_ms, version=version, engine=engine, tier=tier)


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
    """Probe one WAHA server; never raises for anything the server or network does.

    Each attempt is bounded by `timeout` seconds (every network phase, and the
    whole answer). Transient failures (timeouts, refused or dropped connections,
    HTTP 5xx, name resolution) are retried `retry_attempts` times, waiting
    `backoff` seconds doubled each time (capped at 5 s); answers that another
    attempt would not change (401, not WAHA, TLS) are not. `stop`, when set,
    cuts the retries short (the monitor's shutdown). `transport` is for tests.
    """
    url = version_url(api_url)
    failure = _Failure("not probed", retry=False)
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
                found = _attempt(client, url, api_key, timeout)
            except _Failure as exc:
                failure = exc
            except httpx.InvalidURL as exc:
                failure = _Failure(f"invalid URL: {exc}", retry=False)
            except Exception as exc:  # a probe reports, it never takes the caller down
                failure = _Failure(f"unexpected error: {exc.__class__.__name__}: {exc}", retry=False)
            else:
                return Probe(
                    reachable=True,
                    latency_ms=found.latency_ms,
                    version=found.version,
                    engine=found.engine,
                    tier=found.tier,
                    attempts=attempts,
                )
            if not failure.retry:
                break
    return Probe(reachable=False, error=failure.reason, attempts=attempts)


def describe_probe(probe: Probe) -> str:
    """`reachable, 12 ms, WAHA 2024.10.1 (WEBJS, CORE)` or the reason it is not."""
    if probe.reachable:
        details = ", ".join(part for part in (probe.engine, probe.tier) if part)
        version = f"WAHA {probe.version}" + (f" ({details})" if details else "")
        return f"reachable, {probe.latency_ms:.0f} ms, {version}"
    tries = f" ({probe.attempts} attempts)" if probe.attempts > 1 else ""
    return f"unreachable: {probe.error}{tries}"
