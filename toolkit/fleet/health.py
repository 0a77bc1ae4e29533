"""Server health: the seed's "Testar Conexão", and the monitor that feeds failover.

A WAHA server is probed with `GET {api_url}/api/server/version` (header
`X-Api-Key` when the server has an api_key), within the row's `timeout`
seconds, retried `retry_attempts` times with backoff. The outcome is told in
plain words (name does not resolve, connection refused, timed out, TLS error,
API key rejected, not a WAHA server, server error) and recorded in the
database through `public.report_waha_server_success` /
`public.report_waha_server_failure` (revision 0007), which put a failing server
into a cooldown that `get_available_waha_server` and `allocate_waha_session`
rank after every healthy server.

No request goes anywhere but the server's own URL: redirects are not followed,
and proxy settings of the environment are ignored (`trust_env=False`), so an
api_key never travels to a third party.

Layout: `probe_server` is pure HTTP (no database); `load_servers`,
`record_probe` and `test_servers` take an explicit SQLAlchemy connection;
`monitor` takes an engine because it must reconnect on its own.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import sqlalchemy as sa

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
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)) or any(
        isinstance(c, ConnectionResetError) for c in causes
    ):
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
            f"redirected (HTTP {status}) to {display_api_url(target)}: not followed; "
            "set api_url to the final address",
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


# --------------------------------------------------------------------------
# The database side: which servers, and recording what a probe found
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """What a probe needs to know about a row of public.waha_servers."""

    id: uuid.UUID
    user_id: uuid.UUID
    nome: str
    api_url: str
    api_key: str | None
    timeout: int
    retry_attempts: int
    ativo: bool = True
    failing: bool = False  # consecutive_failures > 0 when it was loaded


@dataclass(frozen=True)
class Health:
    """A row of public.waha_server_health after a report."""

    server_id: uuid.UUID
    consecutive_failures: int
    cooldown_until: dt.datetime | None
    last_error: str | None
    last_checked_at: dt.datetime | None
    last_success_at: dt.datetime | None

    @property
    def failing(self) -> bool:
        return self.consecutive_failures > 0


@dataclass(frozen=True)
class Checked:
    """One server, what the probe found, and the health recorded for it (None if not recorded)."""

    server: Server
    probe: Probe
    health: Health | None
    record_error: str | None = None


def autocommit_connection(engine: sa.Engine) -> sa.Connection:
    """A connection where every statement commits on its own, as the reports want."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


class HealthError(RuntimeError):
    """A health command cannot do what was asked (unknown server, no database...)."""


_SERVERS_SQL = """
SELECT server.id, server.user_id, server.nome, server.api_url, server.api_key,
       server.timeout, server.retry_attempts, server.ativo,
       COALESCE(health.consecutive_failures, 0) > 0 AS failing
FROM public.waha_servers AS server
LEFT JOIN public.waha_server_health AS health ON health.server_id = server.id
"""
_SERVERS_ORDER = " ORDER BY server.user_id, server.prioridade DESC, server.nome, server.id"


def _server(row) -> Server:
    return Server(*row)


def load_servers(
    connection: sa.Connection,
    *,
    server_ids: Sequence[uuid.UUID | str] = (),
    user_id: uuid.UUID | str | None = None,
    every_active: bool = False,
) -> list[Server]:
    """The servers to probe: the given ids (active or not: "Testar Conexão" on the
    form works before a server is enabled), the active servers of one user, or every
    active server of every user (the monitor). Unknown ids are an error naming them."""
    if server_ids:
        wanted = [uuid.UUID(str(value)) for value in server_ids]
        rows = connection.execute(
            sa.text(_SERVERS_SQL + " WHERE server.id = ANY(:ids)" + _SERVERS_ORDER), {"ids": wanted}
        ).all()
        found = {row.id for row in rows}
        missing = [str(value) for value in wanted if value not in found]
        if missing:
            raise HealthError(
                f"no WAHA server with id {', '.join(missing)} (or not visible to this database role); "
                "list them with `waha-db servers list --user UUID`"
            )
        return [_server(row) for row in rows]
    if user_id is not None:
        rows = connection.execute(
            sa.text(_SERVERS_SQL + " WHERE server.user_id = :user_id AND server.ativo" + _SERVERS_ORDER),
            {"user_id": uuid.UUID(str(user_id))},
        ).all()
        return [_server(row) for row in rows]
    if every_active:
        rows = connection.execute(sa.text(_SERVERS_SQL + " WHERE server.ativo" + _SERVERS_ORDER)).all()
        return [_server(row) for row in rows]
    raise HealthError("say which servers to test: a server id, or --user UUID for all of a user's active servers")


_HEALTH_COLUMNS = "server_id, consecutive_failures, cooldown_until, last_error, last_checked_at, last_success_at"


def record_probe(connection: sa.Connection, server_id: uuid.UUID, probe: Probe) -> Health:
    """Record a probe's outcome through the database's report functions; the health after it.

    The caller owns the transaction (the monitor and the CLI use autocommit).
    """
    if probe.reachable:
        row = connection.execute(
            sa.text(f"SELECT {_HEALTH_COLUMNS} FROM public.report_waha_server_success(:server_id)"),
            {"server_id": server_id},
        ).one()
    else:
        row = connection.execute(
            sa.text(f"SELECT {_HEALTH_COLUMNS} FROM public.report_waha_server_failure(:server_id, :reason)"),
            {"server_id": server_id, "reason": probe.error},
        ).one()
    return Health(*row)


def user_health(connection: sa.Connection, user_id: uuid.UUID | str) -> dict[uuid.UUID, Health]:
    """The recorded health of each of a user's servers that was ever reported on, by server id.

    For explanations of the selection (`servers best`): a server whose
    `cooldown_until` is still ahead ranks after every healthy one.
    """
    rows = connection.execute(
        sa.text(f"SELECT {_HEALTH_COLUMNS} FROM public.waha_server_health WHERE user_id = :user_id"),
        {"user_id": uuid.UUID(str(user_id))},
    ).all()
    return {row.server_id: Health(*row) for row in rows}


def is_cooling_down(health: Health | None, now: dt.datetime) -> bool:
    """Whether selection ranks the server after the healthy ones at `now` (the database's rule)."""
    return health is not None and health.cooldown_until is not None and health.cooldown_until > now


def probe_many(
    servers: Sequence[Server],
    *,
    concurrency: int = 8,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    stop: threading.Event | None = None,
) -> list[Probe]:
    """Probe servers in parallel (at most `concurrency` at once), results in the same order."""

    def one(server: Server) -> Probe:
        return probe_server(
            server.api_url,
            api_key=server.api_key,
            timeout=server.timeout,
            retry_attempts=server.retry_attempts,
            backoff=backoff,
            stop=stop,
        )

    if not servers:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(servers))), thread_name_prefix="waha-probe") as pool:
        return list(pool.map(one, servers))


def test_servers(
    connection: sa.Connection,
    servers: Sequence[Server],
    *,
    concurrency: int = 8,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    record: bool = True,
) -> list[Checked]:
    """`waha-db servers test`: probe the servers and record each outcome.

    `connection` must be in autocommit mode (`autocommit_connection`): each report
    is its own transaction, so one refused report does not undo the others.

    A server whose outcome cannot be recorded (deleted meanwhile, not visible to
    this role) keeps its probe and gets `record_error`; the others are unaffected.
    """
    probes = probe_many(servers, concurrency=concurrency, backoff=backoff)
    checked = []
    for server, probe in zip(servers, probes):
        if not record:
            checked.append(Checked(server, probe, None))
            continue
        try:
            health = record_probe(connection, server.id, probe)
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            checked.append(Checked(server, probe, None, record_error=_database_reason(exc)))
        else:
            checked.append(Checked(server, probe, health))
    return checked


# pytest would collect test_servers as a test through `from waha_db.fleet.health import *`-style imports.
test_servers.__test__ = False


def _database_reason(exc: sa.exc.DBAPIError) -> str:
    original = exc.orig
    diag = getattr(original, "diag", None)
    message = getattr(diag, "message_primary", None) or str(original).splitlines()[0]
    return mask_password(message)


# --------------------------------------------------------------------------
# Plain-words rendering, shared by the CLI and the monitor
# --------------------------------------------------------------------------


def describe_probe(probe: Probe) -> str:
    """`reachable, 12 ms, WAHA 2024.10.1 (WEBJS, CORE)` or the reason it is not."""
    if probe.reachable:
        details = ", ".join(part for part in (probe.engine, probe.tier) if part)
        version = f"WAHA {probe.version}" + (f" ({details})" if details else "")
        return f"reachable, {probe.latency_ms:.0f} ms, {version}"
    tries = f" ({probe.attempts} attempts)" if probe.attempts > 1 else ""
    return f"unreachable: {probe.error}{tries}"


def describe_health(health: Health | None, now: dt.datetime | None = None) -> str:
    """`healthy`, or `failing (3 in a row), cooling down 120 s, until 12:00:30 UTC`."""
    if health is None:
        return "not recorded"
    if not health.failing:
        return "healthy"
    text = f"failing ({health.consecutive_failures} in a row)"
    if health.cooldown_until is not None:
        now = now or dt.datetime.now(dt.timezone.utc)
        left = max(0, round((health.cooldown_until - now).total_seconds()))
        until = health.cooldown_until.astimezone(dt.timezone.utc).strftime("%H:%M:%S UTC")
        text += f", cooling down {left} s, until {until}"
    return text


def checked_as_json(item: Checked) -> dict:
    """One `servers test --json` entry (never the api_key)."""
    health = item.health
    return {
        "server_id": str(item.server.id),
        "user_id": str(item.server.user_id),
        "nome": item.server.nome,
        "api_url": display_api_url(item.server.api_url),
        "reachable": item.probe.reachable,
        "latency_ms": None if item.probe.latency_ms is None else round(item.probe.latency_ms, 1),
        "version": item.probe.version,
        "engine": item.probe.engine,
        "tier": item.probe.tier,
        "error": item.probe.error,
        "attempts": item.probe.attempts,
        "recorded": health is not None,
        "record_error": item.record_error,
        "health": None
        if health is None
        else {
            "consecutive_failures": health.consecutive_failures,
            "cooldown_until": None if health.cooldown_until is None else health.cooldown_until.isoformat(),
            "last_error": health.last_error,
            "last_checked_at": None if health.last_checked_at is None else health.last_checked_at.isoformat(),
            "last_success_at": None if health.last_success_at is None else health.last_success_at.isoformat(),
        },
    }


# --------------------------------------------------------------------------
# The monitor
# --------------------------------------------------------------------------


class MonitorError(RuntimeError):
    """The monitor cannot run (e.g. `--once` and the database is unreachable)."""


@dataclass
class MonitorStats:
    """What a monitor run did, for its caller and tests."""

    cycles: int = 0
    probes: int = 0
    state_changes: int = 0
    reconnects: int = 0


def _stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))


def monitor(
    engine: sa.Engine,
    *,
    interval: float = 60,
    once: bool = False,
    concurrency: int = 8,
    stop: threading.Event | None = None,
    emit: Callable[[str], None] = print,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    reconnect_delay: float = 1.0,
    max_reconnect_delay: float = 30.0,
) -> MonitorStats:
    """`waha-db monitor`: probe every active server of every user, every `interval` seconds.

    Runs as the role of the engine's URL (the admin or service_role: it must see
    every server). Prints one line per state change (healthy -> failing,
    failing -> healthy), plus a line when the database connection is lost and
    when it is back. One server's failure never stops the others; a lost
    database connection is retried with backoff (`reconnect_delay` doubling to
    `max_reconnect_delay`) until `stop` is set. With `once`, one cycle, and a
    database that cannot be reached is a MonitorError.
    """
    stop = stop or threading.Event()
    stats = MonitorStats()
    connection: sa.Connection | None = None
    delay = reconnect_delay
    lost = False
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                if connection is None:
                    connection = autocommit_connection(engine)
                    if lost:
                        emit(f"{_stamp()} database connection restored")
                        stats.reconnects += 1
                        lost = False
                _monitor_cycle(connection, concurrency, backoff, stop, emit, stats)
                delay = reconnect_delay
            except Exception as exc:
                if not _is_connection_lost(exc):
                    raise
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        pass
                    connection = None
                reason = _database_reason(exc) if isinstance(exc, sa.exc.DBAPIError) else str(exc)
                if once:
                    raise MonitorError(f"the database cannot be reached: {reason}") from None
                if not lost:
                    emit(f"{_stamp()} database connection lost ({reason}); reconnecting")
                    lost = True
                stop.wait(delay)
                delay = min(delay * 2, max_reconnect_delay)
                continue
            if once:
                break
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        if connection is not None:
            connection.close()
    return stats


def _monitor_cycle(
    connection: sa.Connection,
    concurrency: int,
    backoff: float,
    stop: threading.Event,
    emit: Callable[[str], None],
    stats: MonitorStats,
) -> None:
    servers = load_servers(connection, every_active=True)
    probes = probe_many(servers, concurrency=concurrency, backoff=backoff, stop=stop)
    for server, probe in zip(servers, probes):
        try:
            health = record_probe(connection, server.id, probe)
        except sa.exc.DBAPIError as exc:
            if _is_connection_lost(exc):
                raise
            emit(f"{_stamp()} {server.nome} ({server.id}): outcome not recorded: {_database_reason(exc)}")
            continue
        stats.probes += 1
        if health.failing != server.failing:
            stats.state_changes += 1
            emit(state_change_line(server, probe, health))
    stats.cycles += 1


def state_change_line(server: Server, probe: Probe, health: Health) -> str:
    """`... Principal (id) https://...: healthy -> failing: connection refused; cooling down 30 s`."""
    head = f"{_stamp()} {server.nome} ({server.id}) {display_api_url(server.api_url)}"
    if health.failing:
        return f"{head}: healthy -> failing: {probe.error}; {describe_health(health)}"
    return f"{head}: failing -> healthy: {describe_probe(probe)}"


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Set `stop` on SIGTERM and SIGINT (Ctrl-C), so the monitor ends its cycle cleanly.

    Returns a function that puts the previous handlers back. Main thread only.
    """
    previous = {}

    def handler(signum, frame):
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore
