"""The throwaway-PostgreSQL harness: finding the binaries, running unprivileged, cleaning up."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from waha_db.checks import pgtemp
from waha_db.checks.pgtemp import PostgresNotFound, PostgresNotRunnable, ThrowawayPostgres, find_server_binaries


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


def test_a_directory_given_explicitly_beats_waha_db_pg_bin(tmp_path, monkeypatch):
    monkeypatch.setenv("WAHA_DB_PG_BIN", str(fake_bin_dir(tmp_path, "from-environment")))
    chosen = fake_bin_dir(tmp_path, "given")
    assert find_server_binaries(chosen) == chosen


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


def test_the_binaries_version_is_the_version_of_the_server_they_start(cluster):
    version = pgtemp.binaries_version(cluster.server.bin_dir, pgtemp.unprivileged_account())
    running = psycopg.connect(
        cluster.url("postgres").set(drivername="postgresql").render_as_string(hide_password=False)
    )
    with running:
        assert version == running.execute("SHOW server_version").fetchone()[0].split()[0]
    assert cluster.server.version == version


@pytest.fixture
def open_tmp():
    """A directory every account may enter (pytest's tmp_path sits under a private one when run as root)."""
    directory = Path(tempfile.mkdtemp(prefix="waha-db-test-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def account(uid: int, gid: int) -> pwd.struct_passwd:
    return pwd.struct_passwd(("waha-test-account", "x", uid, gid, "", "/", "/bin/sh"))


def test_closed_directory_is_the_first_on_the_way_that_the_account_may_not_enter(open_tmp):
    private = open_tmp / "private"
    (private / "venv" / "bin").mkdir(parents=True)
    stranger = account(uid=os.getuid() + 4242, gid=os.getgid() + 4242)

    private.chmod(0o700)
    assert pgtemp.closed_directory(private / "venv" / "bin", stranger) == private
    private.chmod(0o755)
    assert pgtemp.closed_directory(private / "venv" / "bin", stranger) is None
    # The owner of a 0700 directory may enter it.
    private.chmod(0o700)
    assert pgtemp.closed_directory(private / "venv" / "bin", account(uid=os.getuid(), gid=os.getgid() + 4242)) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another account")
def test_binaries_the_server_account_cannot_reach_are_one_error_naming_the_directory(open_tmp, cluster):
    """A venv under a private directory (/root, say): the account that runs the server is shut out."""
    private = open_tmp / "root-only"
    private.mkdir(mode=0o700)
    (private / "bin").symlink_to(cluster.server.bin_dir)
    with pytest.raises(PostgresNotRunnable) as refused:
        ThrowawayPostgres(private / "bin").start()
    message = str(refused.value)
    assert (
        f"the PostgreSQL binaries in {private / 'bin'} cannot be run by the account {pgtemp.unprivileged_account().pw_name}"
        in message
    )
    assert f"{private} (mode drwx------, owner uid 0) shuts it out" in message
