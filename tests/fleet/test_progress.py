"""Progress on a terminal: shown after a few seconds, refreshed on one line, wiped at the end; never when piped."""

from __future__ import annotations

import io

from waha_db.fleet.progress import TerminalProgress, terminal_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_only_after_a_few_seconds_and_wiped_at_the_end(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("waha_db.fleet.progress.time.monotonic", lambda: clock[0])
    screen = Terminal()
    progress = TerminalProgress(screen, show_after=3)

    progress(1, 1000, 0)
    assert screen.getvalue() == ""  # a quick round shows nothing
    clock[0] += 4
    progress(412, 1000, 37)
    clock[0] += 1
    progress(1000, 1000, 150)

    assert (
        screen.getvalue()
        == "\r\x1b[2K412/1000 servers answered, 37 failing\r\x1b[2K1000/1000 servers answered, 150 failing\r\x1b[2K"
    )


def test_nothing_extra_when_piped_or_json():
    assert terminal_progress(io.StringIO()) is None
    assert terminal_progress(Terminal(), quiet=True) is None
    assert isinstance(terminal_progress(Terminal()), TerminalProgress)
