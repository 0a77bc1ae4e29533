"""`reconcile --live --apply` racing the app's allocations and releases, on a real database and fake WAHA servers.

Run by tests/fleet/test_live_concurrency.py, which asserts the figures.

The fleet: the three drifted servers below plus `extra_servers` more (197 by
default: 200 servers, each a fake WAHA of its own, one slot each), so every
reconcile asks 200 servers at once while the app fills them.

The app is played by worker threads: each allocates sessions through
`allocate_waha_session` and creates each on the fake WAHA server the database
picked before committing (so a failure on WAHA would give the slot back), and
releases some: it deletes the session on WAHA, then calls `release_waha_session`.
With that order no grace is needed (`grace=0`): a row the reconcile reads has its
session on WAHA already, unless the app or the chaos ended it there. A chaos thread kills
sessions on the WAHA servers behind the app's back (FAILED, or gone, as a crash or
a restart does). Reconciler threads run `reconcile_live(apply=True)` over and over
meanwhile. The servers start drifted (a counter that hand-counts two sessions WAHA
runs but the database does not know, rows WAHA lost or reports FAILED, a counter
above its sessions); a first reconcile fixes that before the race starts.

What must hold: in every committed state, no server holds more occupying sessions
than max_sessions and every counter equals its occupying sessions (allocation,
release and each server's --apply are each one transaction, so a slot lost or
counted twice shows as a difference that lasts until the next apply); an observer
thread checks that, in one statement (one snapshot) at a time, throughout the race
and once after it. When the threads are done, every session the app still holds
and WAHA still runs occupies its slot, and a last reconcile leaves the database in
line with every WAHA server.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import sqlalchemy as sa

from tests.fleet.fake_waha import FakeWaha
from tests.support.factories import add_user, add_waha_server
from tests.support.live import add_row
from waha_db.fleet.live import reconcile_live

NO_SLOT = "WAH10"


@dataclass
class RaceFigures:
    servers: int
    capacity: int
    workers: int
    reconcilers: int
    allocations: int = 0
    releases: int = 0
    refused_full: int = 0
    killed_on_waha: int = 0
    reconciles: int = 0
    reconcile_changes: int = 0
    reconcile_skips: int = 0
    initial_fixes: int = 0
    snapshots: int = 0
    seconds: float = 0.0
    over_capacity: list[str] = field(default_factory=list)
    counter_mismatches: list[str] = field(default_factory=list)
    lost_sessions: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return len(self.over_capacity) + len(self.counter_mismatches) + len(self.lost_sessions) + len(self.left_behind)

    def examples(self) -> list[str]:
        return [
            line
            for found in (self.over_capacity, self.counter_mismatches, self.lost_sessions, self.left_behind)
            for line in found[:3]
        ]

    def lines(self) -> list[str]:
        return [
            f"{self.workers} app workers and {self.reconcilers} reconcilers on {self.servers} servers ({self.capacity} slots), "
            f"{self.seconds:.1f} s:",
            f"  allocations {self.allocations}, releases {self.releases}, refused as full (WAH10) {self.refused_full}, "
            f"sessions killed on WAHA {self.killed_on_waha}",
            f"  reconcile --live --apply: {self.initial_fixes} differences fixed before the race, then "
            f"{self.reconciles} runs during it fixed {self.reconcile_changes}, servers skipped {self.reconcile_skips}",
            f"  violations {self.violations} in {self.snapshots} snapshots of the servers: "
            f"over max_sessions {len(self.over_capacity)}, counter != occupying sessions {len(self.counter_mismatches)}; "
            f"held sessions not occupying {len(self.lost_sessions)}, "
            f"differences left after a last reconcile {len(self.left_behind)}",
            *(f"    {line}" for line in self.examples()),
        ]


@dataclass
class Held:
    session_id: uuid.UUID
    name: str
    fake: FakeWaha
    since: float
    killed: bool = False


class _App:
    """The sessions the workers hold, shared with the chaos thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: list[Held] = []

    def add(self, held: Held) -> None:
        with self.lock:
            self.held.append(held)

    def take_oldest(self, worker: str) -> Held | None:
        with self.lock:
            mine = [held for held in self.held if held.name.startswith(f"{worker}-")]
            if not mine:
                return None
            self.held.remove(mine[0])
            return mine[0]

    def kill_one(self, older_than: float, rng: random.Random) -> Held | None:
        with self.lock:
            candidates = [held for held in self.held if not held.killed and time.monotonic() - held.since > older_than]
            if not candidates:
                return None
            victim = rng.choice(candidates)
            victim.killed = True
            return victim


def _setup(
    engine: sa.Engine, fakes: list[FakeWaha], extras: list[FakeWaha], max_sessions: int
) -> tuple[uuid.UUID, dict[uuid.UUID, FakeWaha]]:
    with engine.begin() as connection:
        user = add_user(connection)
        ids = [
            add_waha_server(
                connection,
                user,
                fake.url,
                f"race-{number}",
                max_sessions=max_sessions,
                sessions_ativas=counter,
                timeout=5,
                retry_attempts=1,
            )
            for number, (fake, counter) in enumerate(zip(fakes, (5, 8, 6), strict=True))
        ]
        first, second, third = ids
        # race-0: 3 known sessions, and 2 more that only WAHA knows, hand-counted in the counter (5).
        for name in ("a1", "a2", "a3"):
            add_row(connection, user, first, name, "WORKING")
            fakes[0].run_session(name)
        fakes[0].run_session("dash-1")
        fakes[0].run_session("dash-2")
        # race-1: 8 rows counted; WAHA runs 5, reports 2 FAILED, lost 1.
        for number in range(8):
            add_row(connection, user, second, f"b{number}", "WORKING")
            if number < 5:
                fakes[1].run_session(f"b{number}")
            elif number < 7:
                fakes[1].run_session(f"b{number}", "FAILED")
        # race-2: a counter of 6 for 2 sessions.
        for name in ("c1", "c2"):
            add_row(connection, user, third, name, "WORKING")
            fakes[2].run_session(name)
        extra_ids = connection.execute(
            sa.text(
                "INSERT INTO public.waha_servers (user_id, nome, api_url, max_sessions, timeout, retry_attempts) "
                "SELECT :user, 'extra-' || url.position, url.api_url, 1, 5, 1 "
                "FROM unnest(CAST(:urls AS text[])) WITH ORDINALITY AS url(api_url, position) "
                "ORDER BY url.position RETURNING id"
            ),
            {"user": user, "urls": [fake.url for fake in extras]},
        ).scalars()
        extra_ids = list(extra_ids)
    return user, dict(zip(ids + extra_ids, fakes + extras, strict=True))


def run_race(
    engine: sa.Engine,
    *,
    max_sessions: int = 20,
    extra_servers: int = 197,
    workers: int = 4,
    operations: int = 150,
    pause: float = 0.03,
    grace: float = 0.0,
    reconcilers: int = 2,
    seed: int = 13,
) -> RaceFigures:
    """Run the race on a database at head reached through `engine`; the figures, violations included."""
    fakes = [FakeWaha("healthy", tier="PLUS").start() for _ in range(3)]
    extras = [FakeWaha("healthy", tier="PLUS").start() for _ in range(extra_servers)]
    figures = RaceFigures(
        servers=len(fakes) + len(extras),
        capacity=len(fakes) * max_sessions + len(extras),
        workers=workers,
        reconcilers=reconcilers,
    )
    count = threading.Lock()
    errors: list[BaseException] = []
    app = _App()
    done = threading.Event()
    try:
        user, fake_of = _setup(engine, fakes, extras, max_sessions)

        def release(connection, held: Held) -> None:
            held.fake.forget_session(held.name)  # the app deletes it on WAHA, then gives the slot back
            with connection.begin():
                connection.execute(sa.text("SELECT public.release_waha_session(:id)"), {"id": held.session_id})
            with count:
                figures.releases += 1

        def worker(name: str) -> None:
            try:
                with engine.connect() as connection:
                    for number in range(operations):
                        if number % 4 == 3 and (held := app.take_oldest(name)) is not None:
                            release(connection, held)
                        else:
                            try:
                                with connection.begin():
                                    row = connection.execute(
                                        sa.text(
                                            "SELECT id, waha_server_id FROM public.allocate_waha_session(:user, :name)"
                                        ),
                                        {"user": user, "name": f"{name}-{number}"},
                                    ).one()
                                    # The app creates the session on the server it was given, then commits.
                                    fake = fake_of[row.waha_server_id]
                                    fake.run_session(f"{name}-{number}")
                            except sa.exc.DBAPIError as error:
                                if getattr(error.orig, "sqlstate", None) != NO_SLOT:
                                    raise
                                with count:
                                    figures.refused_full += 1
                                if (held := app.take_oldest(name)) is not None:
                                    release(connection, held)
                            else:
                                app.add(Held(row.id, f"{name}-{number}", fake, time.monotonic()))
                                with count:
                                    figures.allocations += 1
                        time.sleep(pause)
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        def chaos() -> None:
            rng = random.Random(seed)
            while not done.wait(0.02):
                victim = app.kill_one(older_than=0.2, rng=rng)
                if victim is None:
                    continue
                if rng.random() < 0.5:
                    victim.fake.run_session(victim.name, "FAILED")
                else:
                    victim.fake.forget_session(victim.name)
                figures.killed_on_waha += 1

        def reconciler() -> None:
            try:
                while not done.is_set():
                    with engine.connect() as connection:
                        report = reconcile_live(connection, user_id=user, apply=True, grace=grace, backoff=0)
                    with count:
                        figures.reconciles += 1
                        figures.reconcile_skips += sum(item.skipped is not None for item in report.servers)
                        figures.reconcile_changes += sum(
                            difference.fixable
                            for item in report.servers
                            if item.applied and item.comparison
                            for difference in item.comparison.differences
                        )
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        def observer() -> None:
            try:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    while not done.wait(0.005):
                        _check_snapshot(connection, user, figures, "during the race")
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        with engine.connect() as connection:
            first = reconcile_live(connection, user_id=user, apply=True, grace=grace, backoff=0)
        figures.initial_fixes = sum(d.fixable for item in first.servers for d in item.comparison.differences)

        started = time.monotonic()
        app_threads = [threading.Thread(target=worker, args=(f"w{number}",), daemon=True) for number in range(workers)]
        helpers = [threading.Thread(target=chaos, daemon=True), threading.Thread(target=observer, daemon=True)]
        helpers += [threading.Thread(target=reconciler, daemon=True) for _ in range(reconcilers)]
        for thread in app_threads + helpers:
            thread.start()
        for thread in app_threads:
            thread.join(timeout=120)
        done.set()
        for thread in helpers:
            thread.join(timeout=60)
        figures.seconds = time.monotonic() - started
        if any(thread.is_alive() for thread in app_threads + helpers):
            raise AssertionError("a thread of the race is stuck")
        if errors:
            raise errors[0]

        with engine.connect() as connection:
            _check_snapshot(connection, user, figures, "after the race")
        _check_held(engine, user, app, figures)
        with engine.connect() as connection:
            reconcile_live(connection, user_id=user, apply=True, grace=0, backoff=0)
        with engine.connect() as connection:
            last = reconcile_live(connection, user_id=user, grace=0, backoff=0)
        figures.left_behind = [
            f"{item.server.nome}: {difference.kind} {difference.session_name or ''}: {difference.detail}"
            for item in last.servers
            for difference in (item.comparison.differences if item.comparison else ())
        ] + [f"{item.server.nome}: {item.error}" for item in last.servers if item.error]
    finally:
        with ThreadPoolExecutor(max_workers=16) as stopping:
            list(stopping.map(FakeWaha.stop, fakes + extras))
    return figures


_SNAPSHOT_SQL = """
SELECT server.nome, server.sessions_ativas, server.max_sessions,
       (SELECT count(*) FROM public.waha_sessions AS session_row
        WHERE session_row.waha_server_id = server.id
          AND upper(session_row.status) NOT IN ('STOPPED', 'FAILED', 'DISCONNECTED')) AS occupying
FROM public.waha_servers AS server
WHERE server.user_id = :user
ORDER BY server.nome
"""


def _check_snapshot(connection, user: uuid.UUID, figures: RaceFigures, moment: str) -> None:
    """The servers' invariants in one statement, that is one committed state."""
    for server in connection.execute(sa.text(_SNAPSHOT_SQL), {"user": user}):
        if server.occupying > server.max_sessions:
            figures.over_capacity.append(
                f"{moment}: {server.nome}: {server.occupying} occupying sessions, max_sessions {server.max_sessions}"
            )
        if server.sessions_ativas != server.occupying:
            figures.counter_mismatches.append(
                f"{moment}: {server.nome}: sessions_ativas {server.sessions_ativas}, occupying sessions {server.occupying}"
            )
    figures.snapshots += 1


def _check_held(engine: sa.Engine, user: uuid.UUID, app: _App, figures: RaceFigures) -> None:
    """Every session the app holds, and WAHA still runs, occupies its slot."""
    with engine.connect() as connection:
        statuses = dict(
            connection.execute(
                sa.text("SELECT id, status FROM public.waha_sessions WHERE user_id = :user"), {"user": user}
            ).all()
        )
    for held in app.held:
        status = statuses.get(held.session_id)
        if not held.killed and (status is None or status.upper() in ("STOPPED", "FAILED", "DISCONNECTED")):
            figures.lost_sessions.append(f"{held.name}: the app holds it and WAHA runs it, the database says {status}")
