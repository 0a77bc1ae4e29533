"""What alembic.ini tells a DBA who runs plain `alembic` is what env.py does."""

from __future__ import annotations

import re

from waha_db.lifecycle import locks, revisions


def test_alembic_ini_states_the_default_lock_timeout_env_py_uses():
    text = (revisions.CHECKOUT_ROOT / "alembic.ini").read_text(encoding="utf-8")
    stated = re.search(r"lock_timeout=SECONDS \(the overall limit of the run's lock waits, default (\d+)", text)
    assert stated is not None, "alembic.ini no longer documents -x lock_timeout"
    assert float(stated.group(1)) == locks.DEFAULT_LOCK_TIMEOUT_SECONDS
    attempt = re.search(r"each attempt\s*#?\s*waits at most (\d+) s", text)
    assert attempt is not None and float(attempt.group(1)) == locks.ATTEMPT_LOCK_TIMEOUT_SECONDS
