"""`waha-db bench --fleet` at a toy size: it measures both commands, counts statements, and stops by itself."""

from __future__ import annotations

from pathlib import Path

import pytest

import waha_db
from waha_db.checks.fake_fleet import kinds_for
from waha_db.checks.fleet_bench import FleetBenchError, render, run_fleet_benchmark, single_budget


def test_kinds_are_shared_out_as_asked():
    kinds = kinds_for(1000, 0.10, 0.05)

    assert (kinds.count("hang"), kinds.count("refuse"), kinds.count("healthy")) == (100, 50, 850)


def test_the_ideal_is_one_servers_budget():
    assert single_budget(2, 2) == 2 * 3 + 0.5 + 1.0
    assert single_budget(30, 3) == 30 * 4 + 0.5 + 1.0 + 2.0


def test_a_small_fleet_is_measured_against_its_ideal():
    result = run_fleet_benchmark(sizes=(20,), timeout=1, retry_attempts=0, limit=120)

    monitor, reconcile = result.figures
    assert (monitor.command, reconcile.command) == ("monitor --once", "sessions reconcile --live")
    assert result.servers == {"20": {"hang": 2, "healthy": 17, "refuse": 1}}
    assert monitor.status == 0 and reconcile.status == 1  # three servers could not be read
    assert monitor.ideal_seconds == 1
    assert 1 <= monitor.seconds < 30 and 1 <= reconcile.seconds < 30
    assert monitor.statements <= 6 and reconcile.statements <= 6
    assert monitor.peak_mib > 10
    assert "| 20 | `monitor --once` |" in render(result)


def test_the_toolkit_of_a_checkout_is_measured():
    toolkit = Path(waha_db.__file__).resolve().parents[1]  # this checkout's toolkit/, its command line a package

    result = run_fleet_benchmark(sizes=(10,), timeout=1, retry_attempts=0, toolkit=toolkit, limit=120)

    assert result.toolkit == str(toolkit)
    assert [figures.status for figures in result.figures] == [0, 1]  # reconcile: one server could not be read


def test_a_folder_without_waha_db_is_refused_before_anything_starts(tmp_path):
    with pytest.raises(FleetBenchError, match="holds no waha_db package"):
        run_fleet_benchmark(sizes=(10,), toolkit=tmp_path)
