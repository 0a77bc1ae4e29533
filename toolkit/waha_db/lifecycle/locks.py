"""How a waha-db run waits for locks without keeping the application waiting.

A migration that asks for a lock a long transaction holds is queued, and every
statement of the application on that table is queued behind it. So, as
strong_migrations and GitLab's lock retries do, a run never waits long for one lock:

- each attempt waits at most `ATTEMPT_LOCK_TIMEOUT_SECONDS` (2 s) for any one table
  lock (`SET LOCAL lock_timeout`): that is the longest the application's statements
  on a WAHA table queue behind it;
- an attempt that times out is rolled back whole (the run is one transaction), and
  tried again after a back-off (0.5 s, 1 s, 2 s, 4 s, 4 s...) during which the
  application runs freely;
- until the overall limit the user gives (`--lock-timeout`, `-x lock_timeout`,
  default `DEFAULT_LOCK_TIMEOUT_SECONDS`) is spent; then the run stops, names the
  backends that blocked it, and says what to do.

Who blocked an attempt is read while it waits (`BlockerWatch`: `pg_blocking_pids()` of
the waiting backend, polled from a second connection), not after its rollback: by
then the application's statements that queued behind it have been granted their
locks, and would be named beside (or instead of) the real blocker.

The migrations' advisory lock (one waha-db run at a time) is polled within the same
limit, so a second run waits in plain sight (who holds it, since when) instead of
silently, and never plans before it holds it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from waha_db.database import driver_error
from waha_db.errors import UserError

# pg_advisory_xact_lock key shared by every waha-db migration run and by adoption ("waha" in ASCII).
MIGRATION_LOCK_KEY = 0x77616861
ATTEMPT_LOCK_TIMEOUT_SECONDS = 2.0
DEFAULT_LOCK_TIMEOUT_SECONDS = 30.0
# A migration statement holds its locks while it runs: past this it is cancelled (and rolled back).
STATEMENT_TIMEOUT_SECONDS = 60
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0)
ADVISORY_POLL_SECONDS = 0.1
# The relations a migration run locks (besides PostgreSQL's catalogs).
WAHA_TABLES = (
    "public.waha_config",
    "public.waha_servers",
    "public.waha_sessions",
    "public.waha_server_health",
    "public.waha_session_last_event",
    "public.alembic_version",
    "waha_legacy.waha_config_v1",
)
# Server notices of the migrations (what the conversion did, roles created...): env.py logs them here.
NOTICES = logging.getLogger("alembic.env")


class LockTimeoutSetting(UserError):
    """A lock timeout that is not a number of seconds in range."""


def parse_lock_timeout(value: str | float | None) -> float:
    """The overall lock limit in seconds, from `-x lock_timeout=2.5` or `--lock-timeout 2.5`."""
    try:
        seconds = float(value) if value is not None else -1
    except (TypeError, ValueError):
        seconds = -1
    if not 0 < seconds < 86400:
        raise LockTimeoutSetting(
            f"lock_timeout {value!r} is not a number of seconds between 0 and 86400, e.g. -x lock_timeout=30"
        )
    return seconds


def milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@dataclass(frozen=True)
class Holder:
    """A backend that holds a lock waha-db waits for, as pg_stat_activity shows it."""

    pid: int
    application_name: str
    user: str
    state: str  # empty when pg_stat_activity hides it from this role
    since: str  # when its transaction began; empty when none, or hidden
    query: str  # its last statement, shortened; HIDDEN when this role may not see it

    def describe(self) -> str:
        application = f"application_name {self.application_name!r}" if self.application_name else "no application_name"
        if self.query == HIDDEN:
            return (
                f"pid {self.pid} ({application}, user {self.user}): its state and statement are hidden from this "
                "role (pg_read_all_stats shows them)"
            )
        since = f"in a transaction since {self.since}" if self.since else "no transaction open"
        return (
            f"pid {self.pid} ({application}, user {self.user}, {self.state or 'state unknown'}, {since}): {self.query}"
        )


HIDDEN = "<insufficient privilege>"  # what pg_stat_activity shows of another role's backend without pg_read_all_stats
_HOLDER_COLUMNS = """
    activity.pid, COALESCE(activity.application_name, ''), COALESCE(activity.usename::text, ''),
    COALESCE(activity.state, ''),
    COALESCE(pg_catalog.to_char(activity.xact_start, 'YYYY-MM-DD HH24:MI:SS TZ'), ''),
    pg_catalog.left(pg_catalog.regexp_replace(COALESCE(activity.query, ''), '\\s+', ' ', 'g'), 100)
"""


def advisory_lock_holders(connection: sa.Connection) -> list[Holder]:
    """Who holds the migrations' advisory lock in this database (a bigint key: classid 0, objid KEY, objsubid 1)."""
    rows = connection.exec_driver_sql(
        f"SELECT DISTINCT {_HOLDER_COLUMNS} FROM pg_catalog.pg_locks AS lock "
        "JOIN pg_catalog.pg_stat_activity AS activity ON activity.pid = lock.pid "
        "WHERE lock.locktype = 'advisory' AND lock.granted AND lock.classid = 0 "
        f"AND lock.objid = {MIGRATION_LOCK_KEY} AND lock.objsubid = 1 "
        "AND lock.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) "
        "AND lock.pid <> pg_catalog.pg_backend_pid() ORDER BY 1"
    ).all()
    return [Holder(*row) for row in rows]


def table_lock_holders(connection: sa.Connection) -> list[Holder]:
    """The other backends that hold a lock on a WAHA table (what made an attempt time out)."""
    listed = ", ".join(f"'{table}'" for table in WAHA_TABLES)
    rows = connection.exec_driver_sql(
        f"SELECT DISTINCT {_HOLDER_COLUMNS} FROM pg_catalog.pg_locks AS lock "
        "JOIN pg_catalog.pg_class AS locked ON locked.oid = lock.relation "
        "JOIN pg_catalog.pg_namespace AS schema ON schema.oid = locked.relnamespace "
        "JOIN pg_catalog.pg_stat_activity AS activity ON activity.pid = lock.pid "
        f"WHERE lock.locktype = 'relation' AND lock.granted AND schema.nspname || '.' || locked.relname IN ({listed}) "
        "AND lock.pid <> pg_catalog.pg_backend_pid() ORDER BY 1"
    ).all()
    return [Holder(*row) for row in rows]


def blocking_holders(connection: sa.Connection, pid: int) -> list[Holder]:
    """The backends that block backend `pid` now: those holding a lock it waits for, or queued for one before it."""
    rows = connection.exec_driver_sql(
        f"SELECT {_HOLDER_COLUMNS} FROM pg_catalog.pg_stat_activity AS activity "
        "WHERE activity.pid = ANY (pg_catalog.pg_blocking_pids(%(pid)s)) ORDER BY 1",
        {"pid": pid},
    ).all()
    return [Holder(*row) for row in rows]


class BlockerWatch:
    """Who blocks a backend while it waits for a lock, read from a second connection of the same engine.

    `watching(pid)` polls pg_blocking_pids(pid) every `POLL_SECONDS` while its block runs;
    `blockers` is then what the last poll that found any saw (the backends holding
    what the attempt waited for when it gave up). When it saw none (a role or pooler
    refused the second connection, or the wait was shorter than a poll), the caller
    falls back to the lock holders read after the rollback, and says so.
    """

    POLL_SECONDS = 0.05

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.blockers: list[Holder] = []
        self._connection: sa.Connection | None = None
        self._broken = False

    @property
    def seen(self) -> bool:
        """Whether the last watch saw who blocked the backend (else the caller reads the holders after the rollback)."""
        return bool(self.blockers)

    def _poll(self, connection: sa.Connection, pid: int, stop: threading.Event) -> None:
        try:
            while True:
                found = blocking_holders(connection, pid)
                if found:
                    self.blockers = found
                if stop.wait(self.POLL_SECONDS):
                    return
        except Exception:  # the watch only informs the message: without it, the run goes on
            self._broken = True

    @contextmanager
    def watching(self, pid: int) -> Iterator[None]:
        self.blockers = []
        if not self._broken and self._connection is None:
            try:
                self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            except Exception:  # a role or a pooler may refuse a second connection
                self._broken = True
        connection = self._connection
        if self._broken or connection is None:
            yield
            return
        stop = threading.Event()
        poller = threading.Thread(
            target=self._poll, args=(connection, pid, stop), name="waha-db blocker watch", daemon=True
        )
        poller.start()
        try:
            yield
        finally:
            stop.set()
            poller.join()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class MigrationLockBusy(UserError):
    """Another run held the migrations' advisory lock for the whole limit."""

    def __init__(self, holders: list[Holder], seconds: float) -> None:
        self.holders = holders
        held_by = "; ".join(holder.describe() for holder in holders) or "a backend that has since let it go"
        pids = ", ".join(str(holder.pid) for holder in holders) or "PID"
        super().__init__(
            f"another run held the migrations' lock for the whole {seconds:g} s this one may wait: {held_by}. "
            "Nothing was changed and no plan was made.\n"
            "If it is a waha-db or alembic run still working, wait for it and run again. If it is a run that was "
            "killed, its server process keeps the lock until it notices; end it with "
            f"SELECT pg_catalog.pg_terminate_backend({pids}); then run again."
        )


class Deadline:
    """The overall limit of one run's lock waits, from the moment it starts, and the limit of each attempt."""

    def __init__(
        self,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        attempt_limit: float = ATTEMPT_LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self.ends = clock() + seconds
        self.attempt_limit = attempt_limit

    @property
    def remaining(self) -> float:
        return max(0.0, self.ends - self.clock())

    def attempt_lock_timeout(self, attempt_limit: float | None = None) -> float:
        """How long the next attempt may wait for one lock: the attempt's limit, or what is left."""
        limit = self.attempt_limit if attempt_limit is None else attempt_limit
        # Rounded to the hundredth first, then at least one: a remainder under 5 ms must not round to a
        # lock_timeout of 0, which PostgreSQL reads as "wait forever" and parse_lock_timeout refuses.
        return max(0.01, round(min(limit, self.remaining), 2))

    def backoff(self, attempt: int) -> float | None:
        """The pause before attempt `attempt + 1`; None when no attempt fits in what is left."""
        pause = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS)) - 1]
        return pause if self.remaining > pause + 0.05 else None


def take_migration_lock(
    connection: sa.Connection, deadline: Deadline, waiting: Callable[[str], None] = lambda line: None
) -> None:
    """Take the migrations' advisory lock (transaction-scoped), polling within the deadline.

    Says once who holds it when it is taken; MigrationLockBusy, naming the holder, when
    the deadline passes.
    """
    said = False
    while not connection.exec_driver_sql(f"SELECT pg_catalog.pg_try_advisory_xact_lock({MIGRATION_LOCK_KEY})").scalar():
        holders = advisory_lock_holders(connection)
        if deadline.remaining <= 0:
            raise MigrationLockBusy(holders, deadline.seconds)
        if not said:
            held_by = "; ".join(holder.describe() for holder in holders) or "another run"
            waiting(f"waiting up to {deadline.remaining:.0f} s for the migrations' lock, held by {held_by}")
            said = True
        time.sleep(min(ADVISORY_POLL_SECONDS, deadline.remaining))


def is_lock_timeout(error: BaseException) -> bool:
    """Whether a statement gave up waiting for a lock (SQLSTATE 55P03), or a migration said so (its LockTimeout)."""
    return "55P03" in (getattr(error, "sqlstate", None), getattr(driver_error(error), "sqlstate", None))


def gave_up_message(
    *,
    attempts: int,
    seconds: float,
    attempt_seconds: float,
    where: str,
    holders: list[Holder],
    last_attempt_seconds: float | None = None,
    seen_waiting: bool = True,
) -> str:
    """What a run that never got its locks says: what it tried, who blocked it, what the application felt, what to do.

    `attempt_seconds` is the limit of each attempt (what the application's statements
    could queue behind one); the last attempt may have had less, what was left of the
    overall limit (`last_attempt_seconds`). `holders` are the backends that blocked the
    last attempt, read while it waited (`seen_waiting`), or, when no watch could read
    them, the holders of locks on WAHA tables after its rollback, said to be that.
    """
    last = (
        f" (the last one {last_attempt_seconds:g} s, what was left of the {seconds:g} s)"
        if attempts > 1 and last_attempt_seconds is not None and last_attempt_seconds < attempt_seconds - 0.05
        else ""
    )
    if seen_waiting:
        blocked_by = "were blocked by"
        held_by = (
            "\n".join(f"  {holder.describe()}" for holder in holders) or "  (none seen: they finished as it gave up)"
        )
    else:
        blocked_by = (
            "were blocked; who blocked them could not be read while they waited. Holding locks on WAHA tables now"
        )
        held_by = "\n".join(f"  {holder.describe()}" for holder in holders) or "  (none now: they have just finished)"
    pids = ", ".join(str(holder.pid) for holder in holders) or "PID"
    return (
        f"{where} could not lock the WAHA tables within {seconds:g} s: {attempts} attempt(s), each waiting at most "
        f"{attempt_seconds:g} s for a lock{last}, {blocked_by}:\n{held_by}\n"
        "Nothing was changed: every attempt was rolled back. While an attempt waited, the application's statements "
        f"on the table it waited for queued behind it, for at most {attempt_seconds:g} s; between attempts they ran.\n"
        f"Let those transactions finish (or end them: SELECT pg_catalog.pg_terminate_backend({pids});), then run the "
        "upgrade again, or wait longer: `waha-db upgrade --lock-timeout 120` / `alembic -x lock_timeout=120 upgrade head`."
    )


@contextmanager
def collected_notices() -> Iterator[list[str]]:
    """The migrations' server notices logged meanwhile, collected instead of shown (they are shown after commit)."""
    collected: list[str] = []

    class Collector(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(record.getMessage())

    handler = Collector()
    previous, propagate = NOTICES.level, NOTICES.propagate
    NOTICES.addHandler(handler)
    NOTICES.setLevel(logging.INFO)
    NOTICES.propagate = False
    try:
        yield collected
    finally:
        NOTICES.removeHandler(handler)
        NOTICES.setLevel(previous)
        NOTICES.propagate = propagate
