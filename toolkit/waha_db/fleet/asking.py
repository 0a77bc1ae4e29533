"""Asking a WAHA server over HTTP: one GET, retried and bounded, its failure told in our words.

`ask` is the one way the toolkit asks WAHA anything (waha_db.fleet.probe reads
/api/server/version through it, waha_db.fleet.checkup /health and the worker id,
waha_db.fleet.live_waha /api/sessions), many servers at once on one event loop
(`ask_round`, `ask_many`). The outcome is told in plain words (name does not
resolve, connection refused, timed out, TLS error, API key rejected, not a WAHA
server, server error, refused by the network policy: waha_db.fleet.reasons).

Every value of a server's row is written by the app's users, so:
- the request URL is built with a URL library: the fixed path is appended to the
  path of api_url; api_url's query, fragment and user:password never reach the
  request;
- the row's timeout and retries are clamped to what the database allows since
  revision 0011 (1..120 s, 0..10), for rows written before it;
- redirects are not followed, proxy variables are ignored (an api_key never
  travels to a third party), and connections go only where the operator's network
  policy allows (waha_db.fleet.policy, waha_db.fleet.transport);
- a reason is written into waha_server_health.last_error, which the server's user
  reads: it is always our own words and numbers, never text of the server's answer
  (no header, no body, no exception text that could quote them).
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

from waha_db.fleet.policy import NetworkPolicy, policy_from_environment
from waha_db.fleet.reasons import AnswerFailure, check_answer, describe_transport_error
from waha_db.fleet.rounds import DEFAULT_DEADLINE_SECONDS, run_round
from waha_db.fleet.transport import FleetClient, Limits, TargetRefused, trusted_context

# A WAHA version answer is a few dozen bytes; anything much larger is not one.
MAX_BODY_BYTES = 64 * 1024
DEFAULT_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
USER_AGENT = "waha-db health check"
# The bounds revision 0011 puts on waha_servers; rows older than it are clamped when read.
TIMEOUT_RANGE = (1, 120)
RETRY_RANGE = (0, 10)
T = TypeVar("T")


def clamp_timeout(timeout: float) -> float:
    return float(min(max(timeout, TIMEOUT_RANGE[0]), TIMEOUT_RANGE[1]))


def clamp_retries(retry_attempts: int) -> int:
    return min(max(retry_attempts, RETRY_RANGE[0]), RETRY_RANGE[1])


def budget(timeout: float, retry_attempts: int, backoff: float = DEFAULT_BACKOFF_SECONDS) -> float:
    """The longest one server can take: every attempt times out, with the back-off between them."""
    pauses: float = sum(min(backoff * 2**attempt, MAX_BACKOFF_SECONDS) for attempt in range(retry_attempts))
    return timeout * (retry_attempts + 1) + pauses


def request_url(api_url: str, path: str) -> httpx.URL:
    """`{api_url}{path}` built as a URL: `path` (and its query) appended to api_url's path, nothing else of api_url's.

    `http://h:1/admin?confirm=yes#` with `/api/server/version` is
    `http://h:1/admin/api/server/version`: a query, fragment or user:password in
    api_url never reaches the request.
    """
    try:
        base = httpx.URL(api_url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise AnswerFailure("invalid URL", retry=False) from None
    if base.scheme not in ("http", "https") or not base.host:
        raise AnswerFailure("not an http:// or https:// URL", retry=False)
    fixed = httpx.URL(path)
    return base.copy_with(
        path=base.path.rstrip("/") + fixed.path, query=fixed.query or None, fragment=None, userinfo=b""
    )


@dataclass(frozen=True)
class Answer(Generic[T]):
    """What one GET of a WAHA endpoint gave: the value read from its JSON, or the reason there is none."""

    value: T | None
    latency_ms: float | None
    error: str | None
    attempts: int
    interrupted: bool = False  # cancelled because the command was stopped: says nothing of the server

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Target:
    """A server as the probes ask it: its URL and key, and its timeout and retries clamped to the database's bounds."""

    api_url: str
    api_key: str | None = None
    timeout: float = 30
    retry_attempts: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeout", clamp_timeout(self.timeout))
        object.__setattr__(self, "retry_attempts", clamp_retries(self.retry_attempts))


class Tally:
    """The attempts one server's requests made so far (kept outside the request, so a cut-short one still tells)."""

    attempts = 0


async def _attempt(
    fleet: FleetClient,
    url: httpx.URL,
    path: str,
    api_key: str | None,
    timeout: float,
    max_body_bytes: int,
    read: Callable[[object], T],
    read_other: Callable[[int, object], T] | None = None,
) -> tuple[T, float]:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if api_key:
        headers["X-Api-Key"] = api_key
    started = time.perf_counter()
    try:
        async with fleet.client.stream("GET", url, headers=headers, timeout=httpx.Timeout(timeout)) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_body_bytes:
                    raise AnswerFailure(
                        f"not a WAHA server: the answer is larger than {max_body_bytes} bytes", retry=False
                    )
            latency_ms = (time.perf_counter() - started) * 1000
    except httpx.TransportError as exc:
        raise describe_transport_error(exc, url.host, timeout) from exc
    if read_other is not None and response.status_code != 200:
        try:
            other = json.loads(bytes(body))
        except ValueError:
            other = None
        return read_other(response.status_code, other), latency_ms
    check_answer(response, bool(api_key), path)
    try:
        answer = json.loads(bytes(body))
    except ValueError:
        raise AnswerFailure("not a WAHA server: the answer is not JSON", retry=False) from None
    return read(answer), latency_ms


async def ask(
    fleet: FleetClient,
    target: Target,
    path: str,
    read: Callable[[object], T],
    *,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    max_body_bytes: int = MAX_BODY_BYTES,
    tally: Tally | None = None,
    read_other: Callable[[int, object], T] | None = None,
) -> Answer[T]:
    """GET `path` under the target's api_url and `read` its JSON; never raises for anything the server or network does.

    With `read_other`, an answer other than 200 is not a failure by itself: its status
    code and JSON (None when it is not JSON) go to `read_other`, which gives the value
    or raises AnswerFailure (for endpoints whose 404 or 503 says something).

    Each attempt is bounded by the target's timeout, the whole answer included.
    Transient failures (timeouts, refused or dropped connections, HTTP 5xx, name
    resolution) are retried `retry_attempts` times, waiting `backoff` seconds
    doubled each time (capped at 5 s) without holding a place of the round;
    answers that another attempt would not change (401, not WAHA, TLS, refused by
    the network policy, an answer `read` refuses) are not.
    """
    tally = tally or Tally()
    try:
        url = request_url(target.api_url, path)
    except AnswerFailure as refused:
        return Answer(None, None, refused.reason, 0)
    failure = AnswerFailure("not asked", retry=False)
    for attempt in range(target.retry_attempts + 1):
        if attempt:
            await asyncio.sleep(min(backoff * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))
        async with fleet.gate(url):
            tally.attempts += 1
            try:
                value, latency_ms = await asyncio.wait_for(
                    _attempt(fleet, url, path, target.api_key, target.timeout, max_body_bytes, read, read_other),
                    target.timeout,
                )
            except AnswerFailure as exc:
                failure = exc
            except asyncio.TimeoutError:
                failure = AnswerFailure(f"timed out after {target.timeout:g} s", retry=True)
            except TargetRefused as exc:
                failure = AnswerFailure(f"refused by the network policy ({exc.reason}): not probed", retry=False)
            except httpx.InvalidURL:
                failure = AnswerFailure("invalid URL", retry=False)
            except Exception as exc:  # a probe reports, it never takes the caller down
                failure = AnswerFailure(f"unexpected error ({exc.__class__.__name__})", retry=False)
            else:
                return Answer(value, latency_ms, None, tally.attempts)
        if not failure.retry:
            break
    return Answer(None, None, failure.reason, tally.attempts)


def unanswered(why: str, deadline: float | None, attempts: int) -> Answer[T]:
    """The answer of a request cut short by the round: its deadline passed, or the command was stopped."""
    if why == "deadline":
        return Answer(None, None, f"no answer within the round's deadline ({deadline:g} s)", attempts)
    return Answer(None, None, "not finished: stopped", attempts, interrupted=True)


def ask_round(
    size: int,
    job: Callable[[FleetClient, int], Awaitable[T]],
    *,
    unfinished: Callable[[int, str], T],
    failed: Callable[[T], bool],
    limits: Limits | None = None,
    policy: NetworkPolicy | None = None,
    deadline: float | None = DEFAULT_DEADLINE_SECONDS,
    stop: threading.Event | None = None,
    order: Sequence[int] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[T]:
    """`job(fleet, position)` for every position in 0..size-1 at once, as one round (waha_db.fleet.rounds).

    Every request of every job shares one FleetClient: the global and per-host caps
    bound them all, and the round's deadline and stop cut them all short (then
    `unfinished(position, why)` is that job's result). `progress(done, total, failing)`
    is called as jobs end (`failed` tells a failure). The policy is the operator's
    (WAHA_DB_PROBE_DENY) unless given; SSL_CERT_FILE / SSL_CERT_DIR add trusted CAs.
    """
    policy = policy if policy is not None else policy_from_environment()
    context = trusted_context()
    if not size:
        return []
    counts = {"done": 0, "failing": 0}

    def finished(result: T) -> None:
        counts["done"] += 1
        counts["failing"] += failed(result)
        if progress is not None:
            progress(counts["done"], size, counts["failing"])

    async def round_of_jobs() -> list[T]:
        fleet = FleetClient(policy, limits or Limits(), context)
        try:
            return await run_round(
                [functools.partial(job, fleet, position) for position in range(size)],
                unfinished=unfinished,
                deadline=deadline,
                stop=stop,
                finished=finished,
                order=order,
            )
        finally:
            await fleet.aclose()

    return asyncio.run(round_of_jobs())


def ask_many(
    targets: Sequence[Target],
    path: str,
    read: Callable[[object], T],
    *,
    backoff: float = DEFAULT_BACKOFF_SECONDS,
    max_body_bytes: int = MAX_BODY_BYTES,
    limits: Limits | None = None,
    policy: NetworkPolicy | None = None,
    deadline: float | None = DEFAULT_DEADLINE_SECONDS,
    stop: threading.Event | None = None,
    order: Sequence[int] | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[Answer[T]]:
    """Ask every target `path` at once (see ask_round); the answers in the targets' order."""
    tallies = [Tally() for _ in targets]
    return ask_round(
        len(targets),
        lambda fleet, position: ask(
            fleet,
            targets[position],
            path,
            read,
            backoff=backoff,
            max_body_bytes=max_body_bytes,
            tally=tallies[position],
        ),
        unfinished=lambda position, why: unanswered(why, deadline, tallies[position].attempts),
        failed=lambda answer: not answer.ok,
        limits=limits,
        policy=policy,
        deadline=deadline,
        stop=stop,
        order=order,
        progress=progress,
    )


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
    policy: NetworkPolicy | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Answer[T]:
    """One server asked on its own (ask_many of one, with no round deadline but its own budget)."""
    [answer] = ask_many(
        [Target(api_url, api_key, timeout, retry_attempts)],
        path,
        read,
        backoff=backoff,
        max_body_bytes=max_body_bytes,
        limits=Limits(1, 1),
        policy=policy,
        deadline=None,
        stop=stop,
    )
    return answer
