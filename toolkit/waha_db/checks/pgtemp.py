"""A throwaway PostgreSQL server, for tests, `waha-db verify` and `waha-db bench`.

Built on testing.postgresql, extended to:
- find the server binaries in the directory given (`verify --pg-bin`), or where
  WAHA_DB_PG_BIN points, else on PATH or in /usr/lib/postgresql/*/bin, with one
  clear error when there are none; and refuse binaries of a PostgreSQL older
  than waha-db supports before starting anything;
- run as root: initdb and postgres refuse to, so they run as an unprivileged OS
  user (WAHA_DB_PG_USER, default `postgres`, else `nobody`) that owns the data
  directory; a normal user runs them as itself. Binaries that account cannot
  reach (a venv under a private /root, say) are one clear error naming the
  directory that shuts it out;
- be fast: fsync off, and databases cloned from templates (`CREATE DATABASE ...
  TEMPLATE`) instead of migrated anew.
"""

from __future__ import annotations

import glob
import grp
import itertools
import os
import pwd
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import TypedDict

import testing.postgresql
from sqlalchemy.engine import URL

from waha_db.database import create_engine, minimum_major_version, require_supported_version, version_number
from waha_db.errors import UserError

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) were not found on PATH, in "
    "/usr/lib/postgresql/*/bin, or in WAHA_DB_PG_BIN. Install them: "
    "`apt-get install postgresql` (Debian/Ubuntu), `brew install postgresql@16` (macOS), "
    "or point WAHA_DB_PG_BIN at the directory that holds initdb and postgres."
)


class PostgresNotFound(UserError):
    """No PostgreSQL server binaries on this machine."""


class PostgresNotRunnable(PostgresNotFound):
    """Server binaries were found, but the account that must run them cannot."""


def _version_key(directory: str) -> tuple[int, ...]:
    """(16,) for /usr/lib/postgresql/16/bin: versions compare as numbers, so 16 beats 9.6."""
    version = Path(directory).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def find_server_binaries(directory: str | Path | None = None) -> Path:
    """The directory holding initdb and postgres.

    `directory` when given, else WAHA_DB_PG_BIN when set, is the only place looked
    at (a wrong setting is an error, not silently ignored); otherwise PATH, then the
    newest /usr/lib/postgresql/*/bin.
    """
    chosen = directory or os.environ.get("WAHA_DB_PG_BIN")
    if chosen:
        chosen = Path(chosen)
        if (chosen / "initdb").is_file() and (chosen / "postgres").is_file():
            return chosen
        raise PostgresNotFound(
            f"the PostgreSQL bin directory {chosen} (--pg-bin or WAHA_DB_PG_BIN) holds no initdb and postgres: "
            "point it at the bin directory of a PostgreSQL installation (e.g. /usr/lib/postgresql/16/bin), "
            "or unset it to search PATH and /usr/lib/postgresql/*/bin"
        )
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise PostgresNotFound(INSTALL_HINT)


def unprivileged_account() -> pwd.struct_passwd | None:
    """The OS account that runs the server when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("WAHA_DB_PG_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and no unprivileged account (postgres, nobody) exists to run PostgreSQL")


def closed_directory(path: Path, account: pwd.struct_passwd) -> Path | None:
    """The first directory on the way from / to `path` that `account` may not enter, by its mode bits; None when all are open."""
    groups = {account.pw_gid} | {group.gr_gid for group in grp.getgrall() if account.pw_name in group.gr_mem}
    for directory in [*reversed(path.parents), path]:
        info = directory.stat()
        if info.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return directory
    return None


class RunAs(TypedDict):
    """The arguments of subprocess.run and Popen that run a program as another account."""

    user: int | None
    group: int | None
    extra_groups: list[int] | None


def run_as(account: pwd.struct_passwd | None) -> RunAs:
    """Run as `account`, without our supplementary groups; None: as we are."""
    if account is None:
        return {"user": None, "group": None, "extra_groups": None}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def binaries_version(binaries: Path, account: pwd.struct_passwd | None) -> str:
    """The PostgreSQL version of the server binaries in `binaries`, e.g. '18.6', as `postgres --version`
    says when run by the account that will run the server; PostgresNotRunnable when it cannot run them."""
    try:
        done = subprocess.run(
            [str(binaries / "postgres"), "--version"], capture_output=True, text=True, timeout=60, **run_as(account)
        )
    except OSError as error:  # exec refused: permissions, or not a program for this machine
        detail = error.strerror or str(error)
    else:
        found = re.search(r"\(PostgreSQL\) (\S+)", done.stdout)
        if done.returncode == 0 and found:
            return found.group(1)
        detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
    if account is None:
        raise PostgresNotRunnable(f"{binaries / 'postgres'} --version failed: {detail}")
    closed = closed_directory(Path(os.path.abspath(binaries)), account)
    why = (
        f"{closed} (mode {stat.filemode(closed.stat().st_mode)}, owner uid {closed.stat().st_uid}) shuts it out"
        if closed
        else f"{detail}: the files themselves are not readable and executable by it"
    )
    raise PostgresNotRunnable(
        f"the PostgreSQL binaries in {binaries} cannot be run by the account {account.pw_name}, which runs the "
        f"throwaway server because waha-db runs as root (initdb and postgres refuse root): {why}. Install them "
        "where every account can read them (e.g. a venv outside /root, or chmod -R o+rX the installation), set "
        "WAHA_DB_PG_USER to an account that can run them, or run waha-db as a normal user."
    )


class _Postgresql(testing.postgresql.Postgresql):
    """testing.postgresql's server, started as an unprivileged account when we are root."""

    child_process: subprocess.Popen[bytes] | None  # the running server, set by start()

    def __init__(self, *, account: pwd.struct_passwd | None, **settings: str) -> None:
        self.account = account  # set first: the base constructor runs initdb and starts the server
        super().__init__(**settings)

    def _as_account(self) -> RunAs:
        return run_as(self.account)

    def _chown_base_dir(self) -> None:
        if self.account is None:
            return
        for root, dirs, files in os.walk(self.base_dir):
            for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
                os.chown(name, self.account.pw_uid, self.account.pw_gid)

    def initialize_database(self) -> None:
        self._chown_base_dir()
        data = os.path.join(self.base_dir, "data")
        if os.path.exists(os.path.join(data, "PG_VERSION")):
            return
        args = [self.initdb, "-D", data, "--lc-messages=C", *self.settings["initdb_args"].split()]
        done = subprocess.run(args, capture_output=True, text=True, **self._as_account())
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")

    def start(self) -> None:
        if self.child_process:
            return
        self.prestart()
        log_path = os.path.join(self.base_dir, f"{self.name}.log")
        with open(log_path, "w") as log:
            self.child_process = subprocess.Popen(
                self.get_server_commandline(), stdout=log, stderr=log, **self._as_account()
            )
        try:
            self.wait_booting()
            self.poststart()
        except Exception:
            self.stop()
            raise


class ThrowawayPostgres:
    """One PostgreSQL server in a temporary directory, removed on `stop()`.

    Use as a context manager. `url(database)` gives a URL on 127.0.0.1 for the
    superuser `postgres` (trust authentication, no password).
    """

    def __init__(self, bin_dir: str | Path | None = None) -> None:
        self._server: _Postgresql | None = None
        self._names = itertools.count(1)
        self._chosen_bin_dir = bin_dir
        self.version: str | None = None

    def start(self) -> ThrowawayPostgres:
        binaries = find_server_binaries(self._chosen_bin_dir)
        account = unprivileged_account()
        self.version = binaries_version(binaries, account)
        require_supported_version(
            version_number(self.version),
            self.version,
            remedy=f"Nothing was started. Point --pg-bin or WAHA_DB_PG_BIN at the bin directory of PostgreSQL "
            f"{minimum_major_version()} or later (these binaries are in {binaries}).",
        )
        self._server = _Postgresql(
            account=account,
            initdb=str(binaries / "initdb"),
            postgres=str(binaries / "postgres"),
            initdb_args="-U postgres -A trust -E UTF8 --locale=C --no-sync",
            postgres_args=(
                "-h 127.0.0.1 -F -c logging_collector=off -c full_page_writes=off "
                "-c synchronous_commit=off -c max_connections=200 -c shared_buffers=128MB"
            ),
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _started(self) -> _Postgresql:
        if self._server is None:
            raise RuntimeError("the throwaway PostgreSQL is not started: use start() or a with block")
        return self._server

    def halt(self) -> None:
        """Shut the server down (fast shutdown), keeping its data and port for `resume()`:
        what a database restart looks like to its clients."""
        self._started().terminate()

    def resume(self) -> None:
        """Start a halted server again on the same port and data."""
        self._started().start()

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._started().settings["port"])

    @property
    def log_path(self) -> Path:
        """The server's log (its stderr): what PostgreSQL writes there, a refused statement's DETAIL included."""
        server = self._started()
        return Path(server.base_dir) / f"{server.name}.log"

    @property
    def bin_dir(self) -> Path:
        return Path(self._started().postgres).parent

    def url(self, database: str = "postgres") -> URL:
        return URL.create(
            "postgresql+psycopg", username="postgres", host="127.0.0.1", port=self.port, database=database
        )

    def execute_autocommit(self, *statements: str, database: str = "postgres") -> None:
        """Statements that cannot run in a transaction (CREATE/DROP DATABASE)."""
        engine = create_engine(self.url(database))
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                for statement in statements:
                    connection.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """A new database, empty or cloned from `template` (which must have no connections)."""
        name = name or f"waha_{next(self._names)}"
        clause = f" TEMPLATE {template}" if template else ""
        self.execute_autocommit(f'CREATE DATABASE "{name}"{clause}')
        return name

    def drop_database(self, name: str) -> None:
        self.execute_autocommit(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
