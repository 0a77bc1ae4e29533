"""The monitor under test, in a thread of the test's process."""

from __future__ import annotations

import threading

from waha_db.fleet import monitor as fleet_monitor

# Generous bounds: they only cut short a test that would otherwise hang; a loaded
# CI machine can stall a process for a second or two.
STOP_WITHIN = 15.0


class RunningMonitor:
    """health.monitor in a daemon thread, its lines collected; a context manager.

    Leaving the block always sets `stop` and joins the thread, so a failed
    assertion (a `wait_until` that timed out) cannot leave a monitor looping and
    pytest waiting for it at exit.
    """

    def __init__(self, engine, **options) -> None:
        self.lines: list[str] = []
        self.stop = threading.Event()
        self.stats = None
        self.error = None
        options.setdefault("interval", 0.05)
        options.setdefault("backoff", 0)

        def run():
            try:
                self.stats = fleet_monitor.monitor(engine, stop=self.stop, emit=self.lines.append, **options)
            except BaseException as exc:  # surfaced by finish()
                self.error = exc

        self.thread = threading.Thread(target=run, name="monitor-under-test", daemon=True)

    def __enter__(self) -> RunningMonitor:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(STOP_WITHIN)

    def lines_with(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def finish(self) -> fleet_monitor.MonitorStats:
        """Stop the monitor and return its stats; it must stop promptly (it only waits on `stop`)."""
        self.stop.set()
        self.thread.join(STOP_WITHIN)
        assert not self.thread.is_alive(), f"the monitor did not stop within {STOP_WITHIN} s of being asked to"
        if self.error is not None:
            raise self.error
        return self.stats
