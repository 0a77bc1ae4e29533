"""The overall lock deadline of a run, split into attempts (waha_db.lifecycle.locks.Deadline). Pure."""

from __future__ import annotations

import pytest

from waha_db.lifecycle.locks import Deadline, parse_lock_timeout


class Clock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("left", [5.0, 1.0, 0.5, 0.01, 0.004, 0.0001, 0.0])
def test_every_attempt_gets_a_lock_timeout_a_run_accepts(left):
    clock = Clock()
    deadline = Deadline(6, clock, attempt_limit=2)
    clock.now += 6 - left
    attempt = deadline.attempt_lock_timeout()
    assert 0 < attempt <= 2
    assert parse_lock_timeout(attempt) == attempt


def test_an_attempt_waits_its_limit_or_what_is_left():
    clock = Clock()
    deadline = Deadline(6, clock, attempt_limit=2)
    assert deadline.attempt_lock_timeout() == 2
    clock.now += 5.25
    assert deadline.attempt_lock_timeout() == 0.75
