"""The throwaway-PostgreSQL harness: finding the binaries, running unprivileged, cleaning up."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from waha_db.checks import pgtemp
from waha_db.checks.pgtemp import PostgresNotFound, ThrowawayPostgres, find_server_binaries


def fake_bin_dir(root: Path, version: str) -> Path:
    directory = root / version / "bin"
    directory.mkdir(parents=True)
    for program in ("initdb", "postgres"):
        (directory / program).write_text("#!/bin/sh\n")
        (directory / program).chmod(0o755)
    return directory


def test_waha_db_pg_bin_is_used_first(tmp_path, monkeypatch):
    chosen = fake_bin_dir(tmp_path, "custom")
    monkeypatch.setenv("WAHA_DB_PG_BIN", str(chosen))
    assert find_server_binaries() == chosen


def test_waha_db_pg_bin_pointing_nowhere_is_an_error_that_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("WAHA_DB_PG_BIN", str(tmp_path / "missing"))
    with pytest.raises(PostgresNotFound, match="WAHA_DB_PG_BIN"):
        find_server_binaries()


def test_the_newest_debian_version_wins_by_number_not_by_text(tmp_path, monkeypatch):
    fake_bin_dir(tmp_path, "9.6")
    newest = fake_bin_dir(tmp_path, "16")
    monkeypatch.delenv("WAHA_DB_PG_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(pgtemp.glob, "glob", lambda pattern: [str(tmp_path / "9.6" / "bin"), str(newest)])
    assert find_server_binaries() == newest


def test_no_binaries_anywhere_is_one_error_that_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("WAHA_DB_PG_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(pgtemp.glob, "glob", lambda pattern: [])
    with pytest.raises(PostgresNotFound) as refused:
        find_server_binaries()
    assert "apt-get install postgresql" in str(refused.value)
    assert "brew install" in str(refused.value)


def test_server_runs_unprivileged_survives_a_restart_and_leaves_nothing_behind():
    with ThrowawayPostgres() as server:
        base_dir = Path(server._server.base_dir)
        dsn = server.url().set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE kept (value int); INSERT INTO kept VALUES (42)")
        if os.geteuid() == 0:
            assert (base_dir / "data").stat().st_uid == pgtemp.unprivileged_account().pw_uid
        server.halt()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn, connect_timeout=2)
        server.resume()
        with psycopg.connect(dsn) as connection:
            assert connection.execute("SELECT value FROM kept").fetchone() == (42,)
    assert not base_dir.exists()


def test_server_is_stopped_even_when_the_body_fails():
    with pytest.raises(RuntimeError, match="boom"):
        with ThrowawayPostgres() as server:
            base_dir = Path(server._server.base_dir)
            raise RuntimeError("boom")
    assert not base_dir.exists()
