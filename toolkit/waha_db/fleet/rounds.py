"""A round: many probes at once on one event loop, bounded by a deadline, stopped on request.

The monitor and `sessions reconcile --live` ask every server of every user in one
round. Each server's own budget is its timeout times its attempts plus the
back-off; the round adds a deadline of its own, so however the users set their
servers, a round ends: what is not done by then is cut short and reported as such
("no answer within the round's deadline"), and the next round starts on time. A
`stop` event (SIGTERM, Ctrl-C) cancels every probe in flight within a tenth of a
second.

Servers are started user by user in turn (the first server of every user, then
the second...), so when the global cap is below the fleet's size no user's servers
wait behind another's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TypeVar

T = TypeVar("T")
S = TypeVar("S")

DEFAULT_DEADLINE_SECONDS = 60.0
STOP_POLL_SECONDS = 0.1
# How long cancelled probes get to close their connections before the round returns anyway.
CANCEL_GRACE_SECONDS = 2.0


def fair_order(items: Sequence[S], owner: Callable[[S], Hashable]) -> list[int]:
    """The positions of `items`, taking one of each owner in turn (owners in order of first appearance)."""
    queues: dict[Hashable, list[int]] = {}
    for position, item in enumerate(items):
        queues.setdefault(owner(item), []).append(position)
    order: list[int] = []
    depth = 0
    while len(order) < len(items):
        order.extend(queue[depth] for queue in queues.values() if depth < len(queue))
        depth += 1
    return order


async def run_round(
    jobs: Sequence[Callable[[], Awaitable[T]]],
    *,
    unfinished: Callable[[int, str], T],
    deadline: float | None = DEFAULT_DEADLINE_SECONDS,
    stop: threading.Event | None = None,
    finished: Callable[[T], None] | None = None,
    order: Sequence[int] | None = None,
) -> list[T]:
    """Run every job at once (started in `order`); the results in the jobs' order.

    A job not done when `deadline` seconds have passed, or when `stop` is set, is
    cancelled and its result is `unfinished(position, why)`, `why` being
    "deadline" or "stopped". `finished` sees each result as it comes (progress).
    """
    loop = asyncio.get_running_loop()
    ends_at = None if deadline is None else loop.time() + deadline
    tasks: dict[int, asyncio.Task[T]] = {}
    pending: set[asyncio.Task[T]] = set()
    woken = asyncio.Event()

    def settled(task: asyncio.Task[T]) -> None:
        # One callback per task, rather than asyncio.wait over every pending task at each
        # wake-up, which costs a round the square of its size.
        pending.discard(task)
        if finished is not None and not task.cancelled() and task.exception() is None:
            finished(task.result())
        woken.set()

    for position in order if order is not None else range(len(jobs)):
        task = asyncio.ensure_future(jobs[position]())
        tasks[position] = task
        pending.add(task)
        task.add_done_callback(settled)
    why = ""
    while pending:
        if stop is not None and stop.is_set():
            why = "stopped"
            break
        wait = STOP_POLL_SECONDS
        if ends_at is not None:
            left = ends_at - loop.time()
            if left <= 0:
                why = "deadline"
                break
            wait = min(wait, left)
        woken.clear()
        try:
            await asyncio.wait_for(woken.wait(), timeout=wait)
        except asyncio.TimeoutError:
            pass
    pending = set(pending)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=CANCEL_GRACE_SECONDS)
    results: list[T] = []
    for position in range(len(jobs)):
        task = tasks[position]
        if task.done() and not task.cancelled():
            results.append(task.result())  # a job that raised raises here: the jobs report, they never raise
        else:
            results.append(unfinished(position, why or "stopped"))
    return results
