"""Progress of a long round on a terminal: `412/1000 servers answered, 37 failing`, on one line.

Shown only on a terminal, only once a round has taken more than a few seconds, at
most a few times a second, and wiped when the round ends; nothing at all when the
output is piped or JSON (the caller then passes no progress).
"""

from __future__ import annotations

import time
from typing import TextIO

SHOW_AFTER_SECONDS = 3.0
REFRESH_SECONDS = 0.25


class TerminalProgress:
    """A `progress(done, total, failing)` callback that writes one refreshed line to a terminal."""

    def __init__(self, stream: TextIO, *, show_after: float = SHOW_AFTER_SECONDS, noun: str = "servers answered"):
        self.stream = stream
        self.show_after = show_after
        self.noun = noun
        self._started = time.monotonic()
        self._last_done = 0
        self._last_write = 0.0
        self._shown = False

    def __call__(self, done: int, total: int, failing: int) -> None:
        now = time.monotonic()
        if done <= self._last_done:  # a new round began
            self.clear()
            self._started = now
        self._last_done = done
        if now - self._started < self.show_after or (now - self._last_write < REFRESH_SECONDS and done < total):
            return
        self._last_write = now
        self.stream.write(f"\r\x1b[2K{done}/{total} {self.noun}, {failing} failing")
        self.stream.flush()
        self._shown = True
        if done >= total:
            self.clear()

    def clear(self) -> None:
        """Wipe the line, so what the command prints next starts clean."""
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False


def terminal_progress(stream: TextIO, *, quiet: bool = False) -> TerminalProgress | None:
    """A TerminalProgress when `stream` is a terminal and the output is not JSON (`quiet`), else None."""
    isatty = getattr(stream, "isatty", None)
    if quiet or isatty is None or not isatty():
        return None
    return TerminalProgress(stream)
