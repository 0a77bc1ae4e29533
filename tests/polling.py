"""Waiting for something another thread or process does, without a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable

# Long enough for a loaded 2-core CI machine, where a process can stall for a
# second or two; it only bounds a wait that would otherwise never end.
PATIENCE_SECONDS = 30.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = PATIENCE_SECONDS) -> None:
    """Poll `condition` until it is true; an AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)
