"""`reconcile --live --apply` while the app allocates and releases: no slot lost, no server over-filled.

The race itself is tests/fleet/live_race.py.
"""

from __future__ import annotations

from tests.fleet.live_race import run_race
from waha_db.database import create_engine


def test_apply_during_allocations_and_releases_loses_no_slot_and_overfills_no_server(fresh_database):
    engine = create_engine(fresh_database("head"))
    try:
        figures = run_race(engine)
    finally:
        engine.dispose()

    report = "\n".join(figures.lines())
    assert figures.violations == 0, report
    # The race really raced: the servers filled up, sessions came and went on WAHA,
    # and the reconciler fixed differences while the app was at it.
    assert figures.refused_full > 0 and figures.releases > 0 and figures.killed_on_waha > 0, report
    assert figures.reconciles > 1 and figures.reconcile_changes > 0, report
