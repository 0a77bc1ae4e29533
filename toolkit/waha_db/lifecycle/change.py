"""A change to the schema, shown before it is made, and how it is carried out once confirmed.

Every command that changes the schema (upgrade, downgrade, adopt, repair) makes a plan
that satisfies `Change`, and `carry_out` runs it: lock -> plan -> release -> confirm ->
lock -> the same plan? -> run, retried when a lock is not obtained.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import sqlalchemy as sa

from waha_db import database
from waha_db.errors import UserError
from waha_db.lifecycle import locks, migrate, revisions


class Change(Protocol):
    """What the CLI shows of a planned change (an upgrade, a downgrade, an adoption) before asking."""

    problems: list[str]

    @property
    def question(self) -> str: ...  # asked before running, e.g. "Upgrade to 0007?"

    @property
    def action(self) -> str: ...  # what --yes does without asking, e.g. "upgrade"

    @property
    def nothing_to_do(self) -> bool: ...

    @property
    def key(self) -> tuple[object, ...]: ...  # what it will do; a retry carries out only the plan that was confirmed

    @property
    def target(self) -> str | None: ...  # the revision the database is at once it is done

    def header(self) -> list[str]: ...  # printed first: where the database stands

    def describe(self) -> list[str]: ...  # what running it will do

    def refusal(self) -> str: ...  # why it will not run, when there are problems

    def shown(self, notice: str) -> str | None: ...  # a server notice of its run as printed; None: not shown

    def done(self, seconds: float) -> str: ...


PlannedChange = TypeVar("PlannedChange", bound=Change)


class PlanChanged(UserError):
    """Between two attempts the database changed, so the confirmed plan is no longer what would run."""


def what_changed(confirmed: Change, now: Change) -> list[str]:
    """The lines of the plan shown that no longer hold, and those that hold instead, for a person to read."""
    before = [*confirmed.header(), *confirmed.describe(), *confirmed.problems]
    after = [*now.header(), *now.describe(), *now.problems]
    return [f"  was: {line.strip()}" for line in before if line not in after] + [
        f"  now: {line.strip()}" for line in after if line not in before
    ]


class NotCarriedOut(UserError):
    """The run ended without error but the database is not where the plan said it would be."""


@dataclass
class Outcome(Generic[PlannedChange]):
    """How carry_out ended: the plan, the seconds of the run that committed (None: nothing ran), the notices."""

    plan: PlannedChange
    seconds: float | None = None
    notices: list[str] = field(default_factory=list)  # the server's notices of the committed attempt
    attempts: int = 0
    note: str | None = None  # why nothing ran although a plan was confirmed


def carry_out(
    engine: sa.Engine,
    make_plan: Callable[[sa.Connection], PlannedChange],
    confirm: Callable[[PlannedChange], bool],
    run: Callable[[sa.Connection, PlannedChange, float], None],
    *,
    lock_timeout: float = locks.DEFAULT_LOCK_TIMEOUT_SECONDS,
    attempt_lock_timeout: float = locks.ATTEMPT_LOCK_TIMEOUT_SECONDS,
    progress: Callable[[str], None] = lambda line: None,
    command: str = "waha-db",
) -> Outcome[PlannedChange]:
    """Plan, have the plan confirmed, carry it out: the one sequence of every command that changes the schema.

    The plan is made under the migrations' advisory lock (waited for at most
    `lock_timeout`, saying who holds it), in a transaction that is then ended: no
    transaction, and no lock, stays open while `confirm` shows the plan and a person
    reads it (it returns whether to go on, or raises to refuse). Each attempt then is
    one transaction that takes the lock again and plans again: only the plan that was
    confirmed is carried out. A different one is PlanChanged, saying what changed (or,
    when another run did the work meanwhile, nothing to do).

    `run(connection, plan, attempt_seconds)` may wait at most `attempt_seconds` for any
    one lock; an attempt that times out (or meets a role another upgrade on the server
    creates at the same moment) is rolled back whole and tried again after a back-off,
    until `lock_timeout` (counted from the confirmation) is spent. Who blocked an
    attempt is read while it waits (locks.BlockerWatch). A connection lost, terminated
    or timed out during an attempt is `database.Interrupted`, saying so and that the
    attempt was rolled back (or that it was lost while committing). The server's notices
    are those of the attempt that committed, never those of a rolled-back one.
    """
    with engine.connect() as connection:
        planned = _interrupted_as_words(
            engine, command, lambda: _plan_released(connection, make_plan, lock_timeout, progress)
        )
    if not confirm(planned):
        return Outcome(planned)
    deadline = locks.Deadline(lock_timeout, attempt_limit=attempt_lock_timeout)  # a person's time is not lock waiting
    watch = locks.BlockerWatch(engine)
    attempt = 1
    try:
        with engine.connect() as connection:
            while True:
                committing = False
                try:
                    with locks.collected_notices() as notices, connection.begin():
                        locks.take_migration_lock(connection, deadline, progress)
                        plan = make_plan(connection)
                        if plan.key != planned.key:
                            if plan.nothing_to_do and not plan.problems:
                                return Outcome(plan, note="another run carried it out meanwhile: nothing to do")
                            raise PlanChanged(
                                "the database changed after the plan was shown (another run, or a DBA), so the plan "
                                "confirmed is not what would run now; nothing was changed:\n"
                                + "\n".join(what_changed(planned, plan))
                                + "\nRun the command again to see the new plan."
                            )
                        pid = connection.exec_driver_sql("SELECT pg_catalog.pg_backend_pid()").scalar_one()
                        started = time.perf_counter()
                        with watch.watching(pid):
                            run(connection, plan, deadline.attempt_lock_timeout())
                        now_at = revisions.current_revision(connection)
                        if now_at != plan.target:
                            raise NotCarriedOut(
                                f"the run ended at revision {now_at or 'none'}, not at {plan.target or 'base'} as "
                                "planned: it was rolled back, nothing was changed"
                            )
                        seconds = time.perf_counter() - started
                        committing = True
                    shown = [text for text in map(plan.shown, notices) if text is not None]
                    return Outcome(plan, seconds, shown, attempt)
                except Exception as error:
                    said = database.describe_interruption(
                        engine.url, error, command=command, rolled_back=not committing
                    )
                    if said is not None:
                        raise database.Interrupted(said) from None
                    if isinstance(error, migrate.RetryableConflict):
                        conflict = error
                    elif locks.is_lock_timeout(error):
                        conflict = migrate.LockTimeout(
                            str(error), where="the run", attempt_seconds=deadline.attempt_lock_timeout()
                        )
                    else:
                        raise
                    conflict.wait_before_retry(connection, deadline, attempt, progress, watch)
                    attempt += 1
    finally:
        watch.close()


def _plan_released(
    connection: sa.Connection,
    make_plan: Callable[[sa.Connection], PlannedChange],
    lock_timeout: float,
    progress: Callable[[str], None],
) -> PlannedChange:
    """The plan, made under the migrations' lock in a transaction that is rolled back before it is returned."""
    with connection.begin() as transaction:
        locks.take_migration_lock(connection, locks.Deadline(lock_timeout), progress)
        planned = make_plan(connection)
        transaction.rollback()
    return planned


def _interrupted_as_words(engine: sa.Engine, command: str, work: Callable[[], PlannedChange]) -> PlannedChange:
    """`work()`, with a connection lost or timed out while planning said as what it is (planning changes nothing)."""
    try:
        return work()
    except Exception as error:
        said = database.describe_interruption(engine.url, error, command=command)
        if said is None:
            raise
        raise database.Interrupted(said + " Planning changes nothing.") from None
