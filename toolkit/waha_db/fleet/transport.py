"""The HTTP client of the probes: where it may connect, whom it trusts, how many at once.

- Connections go through `GuardedBackend`: the host is resolved once, every
  address is checked against the operator's NetworkPolicy, and the connection goes
  to a checked address only. TLS still checks the certificate against the URL's
  host name (httpcore passes it as the server name).
- Trust: the public CAs (certifi, as httpx by default), plus the operator's own CA
  from `SSL_CERT_FILE` (a PEM bundle) and `SSL_CERT_DIR` (a folder of hashed
  certificates, as `openssl rehash` makes), for a WAHA behind a company CA. Proxy
  variables stay ignored: an api_key never travels through a third party.
- Limits: at most `concurrency` requests at once in all, and `per_host` at once to
  one address (scheme, host and port), so many users registering one WAHA do not
  multiply the load on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

import certifi
import httpcore
import httpx

from waha_db.errors import UserError
from waha_db.fleet.policy import Address, NetworkPolicy

DEFAULT_CONCURRENCY = 500
DEFAULT_PER_HOST = 4
# Sockets kept for everything else (the database, files) when the open-files limit caps the concurrency.
RESERVED_FILES = 64


class TrustError(UserError):
    """SSL_CERT_FILE or SSL_CERT_DIR names something that is not a usable CA."""


class TargetRefused(Exception):
    """The network policy refused every address of a probe's host; `reason` says which kind."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def trusted_context(environment: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """The TLS context of the probes: the public CAs plus SSL_CERT_FILE / SSL_CERT_DIR when set."""
    environment = os.environ if environment is None else environment
    context = ssl.create_default_context(cafile=certifi.where())
    cafile = environment.get("SSL_CERT_FILE") or None
    capath = environment.get("SSL_CERT_DIR") or None
    if cafile or capath:
        try:
            context.load_verify_locations(cafile=cafile, capath=capath)
        except (OSError, ssl.SSLError) as error:
            named = " and ".join(
                f"{name}={value}" for name, value in (("SSL_CERT_FILE", cafile), ("SSL_CERT_DIR", capath)) if value
            )
            raise TrustError(
                f"{named}: not a readable PEM certificate ({error.__class__.__name__}); point it at the CA's "
                "certificate in PEM form (or a folder prepared with `openssl rehash`), or unset it"
            ) from None
    return context


async def resolve(host: str, port: int) -> list[Address]:
    """Every address of `host`, looked up once (an IP literal is its own address, no look-up)."""
    literal = host.strip("[]")
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise httpcore.ConnectError("name does not resolve") from error
    addresses: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows (see module doc)."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self.policy = policy
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve(host, port)
        for address in addresses:
            reason = self.policy.refusal(address)
            if reason is not None:
                raise TargetRefused(reason)
        failure: Exception = httpcore.ConnectError("no address")
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as error:
                failure = error
        raise failure

    async def connect_unix_socket(  # pragma: no cover - never used
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("unix socket, never probed")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose every connection goes through GuardedBackend.

    httpx takes no network backend, so the pool it builds is replaced by one that
    does (the same settings); everything else (mapping requests and errors) is
    httpx's own.
    """

    def __init__(self, backend: GuardedBackend, context: ssl.SSLContext, connections: int) -> None:
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


class PerAddressTransport(httpx.AsyncBaseTransport):
    """One small GuardedTransport per address (scheme, host, port).

    httpcore's pool looks through all its connections for every request, so one pool
    of a thousand connections costs a round the square of its size in CPU; a pool
    per address holds at most `per_host` connections.
    """

    def __init__(self, policy: NetworkPolicy, context: ssl.SSLContext, per_host: int) -> None:
        self._backend = GuardedBackend(policy)
        self._context = context
        self._per_host = per_host
        self._transports: dict[tuple[bytes, bytes, int | None], GuardedTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        transport = self._transports.get(key)
        if transport is None:
            transport = self._transports[key] = GuardedTransport(self._backend, self._context, self._per_host)
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()


def open_files_allowance() -> int:
    """Sockets the probes may hold at once: the open-files limit, raised to its maximum, less a reserve."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
                soft = wanted
    except ImportError:  # pragma: no cover - not on Linux
        return DEFAULT_CONCURRENCY
    return max(1, soft - RESERVED_FILES)


@dataclass(frozen=True)
class Limits:
    """How many requests at once: in all (`concurrency`), and to one address (`per_host`)."""

    concurrency: int = DEFAULT_CONCURRENCY
    per_host: int = DEFAULT_PER_HOST

    def effective_concurrency(self) -> int:
        return max(1, min(self.concurrency, open_files_allowance()))


class FleetClient:
    """One AsyncClient for a round of probes, and the gates that bound it (see module doc)."""

    def __init__(self, policy: NetworkPolicy, limits: Limits, context: ssl.SSLContext) -> None:
        self.policy = policy
        concurrency = limits.effective_concurrency()
        self.per_host = max(1, limits.per_host)
        self._all = asyncio.Semaphore(concurrency)
        self._hosts: dict[tuple[str, str, int | None], asyncio.Semaphore] = {}
        self.client = httpx.AsyncClient(
            transport=PerAddressTransport(policy, context, self.per_host),
            follow_redirects=False,
            trust_env=False,
        )

    @contextlib.asynccontextmanager
    async def gate(self, url: httpx.URL) -> AsyncIterator[None]:
        """A place for one request: first its address's (so a busy WAHA holds no global place), then the global one."""
        key = (url.scheme, url.host, url.port)
        host = self._hosts.setdefault(key, asyncio.Semaphore(self.per_host))
        async with host, self._all:
            yield

    async def aclose(self) -> None:
        await self.client.aclose()
